//! Finishing a transfer: its end, its status channel's last messages, and
//! the release of its slot.
//!
//! [`Server::end`] stops the data part (the destination gets nothing more,
//! the file closes) and queues what the status channel owes for the
//! outcome; [`Server::flush_status`] writes what a channel owes (progress
//! too, when `drive.rs` asks) and, once a finished channel owes nothing,
//! [`Server::release`] frees the slot and closes what it held: the file and
//! destination before the status channel. A transfer whose client is gone
//! ([`Server::end_client_gone`]) is released at once.
//!
//! Rule: the only place a transfer ends and its slot is freed. It writes
//! only to a transfer's status channel (through its `StatusWriter`), leaves
//! closes that may block to the closer threads, and calls down only: into
//! `disk_jobs.rs` to take back a job an ended transfer still has queued,
//! and into `waits.rs` when a status channel must wait for room.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::Arc;

use crate::backend::{DestKind, TransferBackend};
use crate::sys;

use super::caught;
use super::closer::CloseJob;
use super::engine::Engine;
use super::status::{Final, Flush};
use super::table::Slot;
use super::tokens::{dest_token, status_token};
use super::transfer::{Dest, Outcome, State, Transfer};
use super::Server;

/// Whether a destination's last close cannot block: a pipe's, a UNIX
/// socket's (neither lingers nor flushes). Those close on the loop, which
/// costs the closer threads nothing on the small-file path; TCP and other
/// network sockets (`SO_LINGER`), files (NFS/FUSE flush on close) and
/// devices go to the closer threads.
fn closes_quickly(kind: DestKind, fd: &std::os::fd::OwnedFd) -> bool {
    match kind {
        DestKind::Pipe => true,
        DestKind::StreamSocket | DestKind::OtherSocket => sys::is_unix_socket(fd.as_fd()),
        DestKind::RegularFile | DestKind::Other => false,
    }
}

/// Takes a transfer's file and destination out of it (see
/// [`Transfer::take_data_part`]): the destination stops being watched, and
/// what closes quickly goes to `quick_closes`, to close with the turn's
/// other quick closes, before the status channel. A file a disk job still
/// holds a clone of closes when the job is done. Returns a destination
/// whose close may block, for the closer threads.
fn release_data_part(
    engine: &mut Engine,
    quick_closes: &mut Vec<OwnedFd>,
    slot: Slot,
    t: &mut Transfer,
) -> Option<OwnedFd> {
    let (file, dest) = t.take_data_part();
    if let Some(file) = file.and_then(|f| Arc::try_unwrap(f).ok()) {
        quick_closes.push(file);
    }
    let Some(Dest::Fd {
        fd,
        kind,
        registered,
        ..
    }) = dest
    else {
        return None;
    };
    if registered {
        let _ = engine.deregister(fd.as_raw_fd(), dest_token(slot));
    }
    if closes_quickly(kind, &fd) {
        quick_closes.push(fd);
        None
    } else {
        Some(fd)
    }
}

impl<B: TransferBackend> Server<B> {
    /// Writes what the status channel owes; removes a finished transfer.
    pub(super) fn flush_status(&mut self, slot: Slot) {
        let Some(t) = self.table.get_mut(slot) else {
            return;
        };
        t.status.notice(&self.caught);
        let flushed = t.status.flush();
        if t.status.take_caught() {
            let id = caught::identity_of(t.status.fd());
            self.caught.catch(id, t.peer_uid);
        }
        match flushed {
            Flush::Clear => {
                if t.status.is_finished() {
                    self.release(slot);
                }
            }
            Flush::Pending => {
                if let Err(e) = self.register_waits(slot, false) {
                    log::error!("registering a status channel: {e}");
                    self.end_client_gone(slot, "cannot wait for its status channel");
                }
            }
            Flush::Gone => self.end_client_gone(slot, "status channel closed"),
        }
    }

    /// Ends a transfer: the destination gets nothing more, the file closes,
    /// and the status channel owes what `outcome` calls for (the
    /// completion, an error, or nothing for a cancel and for a Read). A
    /// transfer already ending keeps its first outcome.
    pub(super) fn end(&mut self, slot: Slot, outcome: Outcome) {
        if self
            .table
            .get(slot)
            .is_some_and(|(_, t)| t.outcome.is_none())
        {
            self.recall_disk_job(slot);
        }
        let Some(t) = self.table.get_mut(slot) else {
            return;
        };
        if t.outcome.is_some() {
            return;
        }
        t.outcome = Some(outcome);
        // Before the file info, an error takes its place, as a refusal's
        // does, a Read's too.
        let opening = matches!(t.state, State::Opening { .. });
        // A destination that may block on close waits for the transfer's
        // removal and a closer thread (see `release`).
        if let Some(slow) = release_data_part(&mut self.engine, &mut self.quick_closes, slot, t) {
            if let Err(fd) = t.keep_slow_dest(slow) {
                // Not reached: the data part just left, so it is Finishing
                // with nothing kept. Closed off the loop all the same.
                self.to_close
                    .push(CloseJob::new(t.peer_uid, Some(fd), Box::new(())));
            }
        }
        let fin = match outcome {
            Outcome::Failed(errno) if opening => Final::Error {
                cmd: crate::protocol::SFD_FILE_INFO,
                errno,
            },
            _ if t.is_read() => Final::Close,
            Outcome::Complete => Final::Complete,
            Outcome::Failed(errno) => Final::Error {
                cmd: crate::protocol::SFD_XFER_STAT,
                errno,
            },
            Outcome::Cancelled | Outcome::ClientGone => Final::Close,
        };
        t.status.queue_final(fin);
        if outcome.is_success() {
            self.counters.completed += 1;
        } else {
            self.counters.failed += 1;
        }
        self.flush_status(slot);
    }

    /// Ends a transfer whose client is gone (its status channel closed or
    /// unusable): nothing more can be said on it, so it is released at
    /// once. "End" is the one word for a transfer's ending ([`Self::end`]
    /// when its channel still owes a final message); [`Self::release`] is
    /// what follows every end: the slot freed and what it held closed.
    pub(super) fn end_client_gone(&mut self, slot: Slot, why: &str) {
        if let Some(t) = self.table.get_mut(slot) {
            log::debug!("transfer in slot {slot}: {why}");
            if t.outcome.is_none() {
                t.outcome = Some(Outcome::ClientGone);
                self.counters.failed += 1;
            }
        }
        self.release(slot);
    }

    /// Releases an ended transfer's slot: takes it out of the table and
    /// closes all it holds.
    pub(super) fn release(&mut self, slot: Slot) {
        self.recall_disk_job(slot);
        let Some((txnid, mut t)) = self.table.remove(slot) else {
            return;
        };
        self.shares.give_back(t.peer_uid);
        if t.status_registered {
            let _ = self
                .engine
                .deregister(t.status.fd().as_raw_fd(), status_token(slot));
        }
        // The file and destination close before the status channel, so a
        // client that sees end of file there knows the daemon holds nothing
        // of the transfer any more. A destination that may block on close
        // (a socket's SO_LINGER, a file's flush) closes on a closer thread,
        // and the status channel after it there.
        let off_loop = release_data_part(&mut self.engine, &mut self.quick_closes, slot, &mut t)
            .or_else(|| t.take_slow_dest());
        if log::log_enabled!(log::Level::Debug) {
            let outcome = t.outcome.unwrap_or(Outcome::Cancelled);
            let uid = t.peer_uid.map(|u| format!(" uid {u}")).unwrap_or_default();
            log::debug!(
                "txn {txnid:x}: {:?} {outcome} after {} of {} bytes in {:?}{uid}",
                t.command,
                t.cursor.pos,
                t.cursor.total(),
                t.started.elapsed()
            );
        }
        if t.write_out() {
            // Its destination is with a disk thread: it closes when the
            // write comes back, and the status channel after it.
            self.removed_with_write_out.insert(txnid, t);
        } else if let Some(fd) = off_loop {
            self.to_close
                .push(CloseJob::new(t.peer_uid, Some(fd), Box::new(t)));
        } else {
            self.quick_closes.push(t.status.into_fd());
        }
    }
}
