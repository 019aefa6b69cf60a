//! What a transfer waits on between turns: its place in the run queue and
//! its readiness registrations (its destination, and its status channel so
//! that a client going away is noticed), under the tokens that name them
//! (`tokens.rs`).
//!
//! Rule: the bottom of the server's phases, with `disk_jobs.rs`. It
//! touches only the run queue, the engine's registrations and a transfer's
//! own flags, and calls no other phase: driving (`drive.rs`) and finishing
//! (`finish.rs`, whose status channel may have to wait for room) both come
//! down to it.

use std::io;
use std::os::fd::AsRawFd;

use crate::backend::TransferBackend;

use super::engine::Interest;
use super::table::Slot;
use super::tokens::{dest_token, status_token};
use super::transfer::{Dest, State};
use super::Server;

impl<B: TransferBackend> Server<B> {
    /// Puts a transfer in the run queue, once: it gets a turn in the next
    /// pass (see `drive.rs`).
    pub(super) fn enqueue(&mut self, slot: Slot) {
        if let Some(t) = self.table.get_mut(slot) {
            if !t.queued {
                t.queued = true;
                self.runq.push(t.peer_uid, slot);
            }
        }
    }

    /// Registers what a blocked transfer waits on: its destination, and its
    /// status channel (so a client that goes away is noticed). With `rearm`,
    /// a destination already registered is registered again, which queues
    /// an event at once if it is writable.
    pub(super) fn register_waits(&mut self, slot: Slot, rearm: bool) -> io::Result<()> {
        let Some(t) = self.table.get_mut(slot) else {
            return Ok(());
        };
        let status_fd = t.status.fd().as_raw_fd();
        let data_on_status = matches!(
            t.state,
            State::Running {
                dest: Dest::Status,
                ..
            }
        );
        if !t.status_registered {
            self.engine
                .register(status_fd, status_token(slot), Interest::Writable)?;
            t.status_registered = true;
        } else if rearm && data_on_status {
            self.engine
                .reregister(status_fd, status_token(slot), Interest::Writable)?;
        }
        let mut retry_now = false;
        if let State::Running {
            dest:
                Dest::Fd {
                    fd,
                    kind,
                    registered,
                    ..
                },
            dest_ready,
            ..
        } = &mut t.state
        {
            if kind.is_pollable() && (!*registered || rearm) {
                let raw = fd.as_raw_fd();
                if *registered {
                    self.engine
                        .reregister(raw, dest_token(slot), Interest::Writable)?;
                } else {
                    self.engine
                        .register(raw, dest_token(slot), Interest::Writable)?;
                }
                *registered = true;
            }
            if !kind.is_pollable() {
                // A regular file is never full for long: try again next turn.
                *dest_ready = true;
                retry_now = true;
            }
        }
        if retry_now {
            self.enqueue(slot);
        }
        Ok(())
    }
}
