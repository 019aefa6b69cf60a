//! Driving admitted transfers: a transfer's start once its file is open,
//! a turn of data at a time, and what a turn's stop calls for (a wait for
//! readiness, a disk job, the end), with the readiness events and the disk
//! threads' answers that let it go on.
//!
//! Rule: the advancing phase. It moves data only through the backend (via
//! the pump), writes only to a transfer's status channel (through
//! `finish.rs`'s [`Server::flush_status`]), and calls down only: into
//! `finish.rs` when a transfer ends, `disk_jobs.rs` to hand work to the
//! disk threads and book what comes back, `waits.rs` to wait. What may
//! block on a client's object it never does itself: writes to a regular
//! file go to the disk threads, closes that may linger to the closer
//! threads.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::backend::{DestKind, TransferBackend};
use crate::protocol::{Command, FileInfo, HeaderTrailer};
use crate::sys::{errno as errno_of, errno::Errno};

use super::caught;
use super::disk::{DiskJob, Work};
use super::disk_jobs::AfterJob;
use super::open::{self, Opened};
use super::pump::{pump, Cursor, Limits, PumpStop};
use super::status::Flush;
use super::table::Slot;
use super::transfer::{Dest, Outcome, State, Transfer};
use super::Server;

/// Most time one pass over the run queue takes before the loop goes round
/// (closes made, events and requests taken): the transfers left keep their
/// place for the next pass. Without it a pass over hundreds of runnable
/// transfers delayed every close and every new request by all of them.
const RUN_QUEUE_BUDGET: Duration = Duration::from_millis(1);

impl<B: TransferBackend> Server<B> {
    /// A disk thread's open of a transfer in [`State::Opening`] is done.
    fn opened(&mut self, slot: usize, txnid: u64, opened: Opened) {
        let live = self.table.get(slot).is_some_and(|(id, t)| {
            id == txnid && matches!(t.state, State::Opening { .. }) && t.outcome.is_none()
        });
        if !live {
            // Ended meanwhile (shutdown, a share taken back): the file, if
            // any, closes here.
            return;
        }
        match opened {
            Ok(file) => self.run_opened(slot, txnid, file),
            Err(errno) => {
                let (errno, cause) = open::refusal(errno);
                if let Some((_, t)) = self.table.get(slot) {
                    if let State::Opening { path, .. } = &t.state {
                        log::info!(
                            "{:?} {}: {}",
                            t.command,
                            path.to_string_lossy(),
                            open::refused(errno, cause)
                        );
                    }
                }
                self.end(slot, Outcome::Failed(errno));
            }
        }
    }

    /// A transfer in [`State::Opening`] has its file: the file info is
    /// owed, and it waits for Send Open (Open) or runs its first turn.
    pub(super) fn run_opened(
        &mut self,
        slot: usize,
        txnid: u64,
        (file, st): (OwnedFd, libc::stat),
    ) {
        let Some(t) = self.table.get_mut(slot) else {
            return;
        };
        let State::Opening {
            path,
            range,
            done,
            info_written,
            ..
        } = &t.state
        else {
            return;
        };
        let (path, range, done, info_written) = (path.clone(), *range, *done, *info_written);
        let command = t.command;
        let is_read = t.is_read();
        let size = range.clip(st.st_size as u64);
        if done > size {
            // A hand-off claiming more than the file holds (it shrank since
            // the client's attempt, or the request lies).
            log::info!(
                "{command:?} {}: {done} bytes handed on of {size} (EINVAL)",
                path.to_string_lossy()
            );
            return self.end(slot, Outcome::Failed(Errno::EINVAL));
        }
        let info = FileInfo::ok(size, st.st_atime, st.st_mtime, st.st_ctime, txnid);
        if is_read {
            self.backend.grow_pipe(t.status.fd(), size);
        }
        // A Read or Open handed on by a client carries the client's file
        // info already (the channel's first message); a Send handed on does
        // not (the client wrote nothing on its status channel).
        if !info_written {
            t.status.queue_info(info);
        }
        if is_read && t.status.flush() != Flush::Clear {
            // A fresh pipe always has room for the info; if not, the client
            // is gone.
            log::info!(
                "{command:?} {}: client gone before the file info",
                path.to_string_lossy()
            );
            return self.end_client_gone(slot, "client gone before the file info");
        }
        let open_until =
            (command == Command::Open).then(|| Instant::now() + self.config.open_timeout);
        let Ok(hdtr) = t.step(|s| s.opened(Arc::new(file), open_until)) else {
            return;
        };
        // A hand-off continues where the client stopped: its header bytes
        // are the ones not yet written, its file part what is left.
        t.cursor = Cursor::new(hdtr.header, range.offset + done, size - done, hdtr.trailer);
        t.last_progress = Instant::now();
        let deadline = match &t.state {
            State::Opened { deadline, .. } => Some(*deadline),
            _ => None,
        };
        log::debug!(
            "txn {txnid:x}: {command:?} {} ({size} bytes)",
            path.to_string_lossy()
        );
        if let Some(deadline) = deadline {
            self.timers.push(deadline, txnid);
            let live = self.table.len();
            let table = &self.table;
            let dropped = self.timers.compact_if_stale(live, |id| {
                table
                    .slot_of(id)
                    .and_then(|s| table.get(s))
                    .is_some_and(|(_, t)| matches!(t.state, State::Opened { .. }))
            });
            if dropped > 0 {
                log::debug!(
                    "open-file timers compacted: {dropped} stale, {} held for {live} live",
                    self.timers.len()
                );
            }
            self.flush_status(slot);
        } else {
            // The first turn runs now: a small file is often done before the
            // loop comes round, with info and completion in one write and no
            // readiness registration at all.
            self.turn(slot);
        }
    }

    /// An open file's Send Open came and passed admission's checks (among
    /// them that `done` is at most the file's part): it runs to `dest`,
    /// after the `done` file bytes a client already wrote, with `hdtr`
    /// around the rest.
    pub(super) fn send_opened(&mut self, slot: Slot, dest: Dest, hdtr: HeaderTrailer, done: u64) {
        let Some(t) = self.table.get_mut(slot) else {
            return;
        };
        #[allow(clippy::result_large_err)] // a state by value (transfer.rs)
        let sent = t.step(|s| s.send_open(dest));
        if sent.is_err() {
            return;
        }
        // A Send Open the client began continues where it stopped.
        t.cursor = Cursor::new(
            hdtr.header,
            t.cursor.file_offset + done,
            t.cursor.file_len - done,
            hdtr.trailer,
        );
        // The stall timeout counts from here, not from the Open.
        t.last_progress = Instant::now();
        self.turn(slot);
    }

    /// Gives queued transfers one turn each, uids taking turns (those queued
    /// during the pass wait for the next), for at most
    /// [`RUN_QUEUE_BUDGET`]: the rest keep their places.
    pub(super) fn run_queue(&mut self) {
        let started = Instant::now();
        for _ in 0..self.runq.len() {
            let Some((_, slot)) = self.runq.pop() else {
                break;
            };
            if let Some(t) = self.table.get_mut(slot) {
                t.queued = false;
                self.turn(slot);
            }
            if started.elapsed() >= RUN_QUEUE_BUDGET {
                break;
            }
        }
    }

    /// One turn of one transfer: move up to a quantum, then report. A
    /// regular-file destination's turn is a write job for the disk threads.
    fn turn(&mut self, slot: Slot) {
        let backend = Arc::clone(&self.backend);
        let Some((txnid, _)) = self.table.get(slot) else {
            return;
        };
        let Some(t) = self.table.get_mut(slot) else {
            return;
        };
        let Transfer {
            state,
            status,
            cursor,
            peer_uid,
            ..
        } = t;
        let State::Running {
            file,
            dest,
            dest_ready: true,
        } = state
        else {
            return;
        };
        // Strict if this destination's open file description, or its uid,
        // was caught blocking (for this transfer or another).
        let uid_caught = self.caught.uid_is_caught(*peer_uid);
        let strict = match dest {
            Dest::Status => {
                status.notice(&self.caught);
                status.is_strict() || uid_caught
            }
            Dest::Fd {
                kind: DestKind::RegularFile,
                ..
            } => return self.write_off_loop(slot, txnid),
            Dest::Fd {
                fd, strict, seen, ..
            } => {
                if !*strict && self.caught.check(fd.as_fd(), seen) {
                    *strict = true;
                }
                *strict || uid_caught
            }
        };
        let limits = Limits {
            chunk: self.config.chunk,
            budget: self.config.quantum,
            probe_cache: self.config.probe_cache,
            strict,
        };
        let (dest_fd, kind) = Transfer::dest_fd(status, dest);
        let (moved, stop) = pump(&*backend, cursor, file.as_fd(), dest_fd, kind, limits);
        if stop == PumpStop::Blocked {
            // Interrupted by the backstop: the open file description is
            // marked, for every transfer that shares it, and the uid counts
            // a strike.
            let id = match dest {
                Dest::Status => {
                    status.caught_blocking();
                    let _ = status.take_caught();
                    caught::identity_of(status.fd())
                }
                Dest::Fd { fd, strict, .. } => {
                    *strict = true;
                    caught::identity_of(fd.as_fd())
                }
            };
            log::info!(
                "txn {txnid:x}: a call on its destination blocked and was interrupted; \
                 its open file description is marked"
            );
            self.caught.catch(id, *peer_uid);
        }
        self.after_moving(slot, txnid, moved, stop);
    }

    /// Acts on why a transfer's data stopped moving (on the loop or on a
    /// disk thread).
    fn after_moving(&mut self, slot: Slot, txnid: u64, moved: u64, stop: PumpStop) {
        let Some(t) = self.table.get_mut(slot) else {
            return;
        };
        // Progress counts the file's bytes, not the header's or trailer's
        // (the channel's sizes add up to the file info's size).
        let pos = t.cursor.pos;
        t.status
            .moved(t.cursor.file_bytes_between(pos.saturating_sub(moved), pos));
        if moved > 0 {
            t.last_progress = Instant::now();
        }
        self.counters.bytes += moved;
        match stop {
            PumpStop::Done => self.end(slot, Outcome::Complete),
            PumpStop::BudgetSpent => {
                let flush = t.status.worth_flushing();
                self.enqueue(slot);
                if flush {
                    self.flush_status(slot);
                }
            }
            PumpStop::DestinationFull | PumpStop::Blocked => {
                if let State::Running { dest_ready, .. } = &mut t.state {
                    *dest_ready = false;
                }
                // Progress sums below the file's size: once every file byte
                // is out (the trailer waits), the rest is the completion's
                // to say.
                if !t.cursor.file_done() {
                    t.status.stopped_to_wait();
                }
                let flush = t.status.worth_flushing();
                // Full before a single byte moved: the readiness edge that
                // woke us may be spent although the destination has room (an
                // EAGAIN with space, as fault injection makes). Re-arming
                // asks for a fresh edge if it is writable now. An
                // interrupted call may have left room too.
                let rearm = moved == 0 || stop == PumpStop::Blocked;
                if let Err(e) = self.register_waits(slot, rearm) {
                    log::error!("registering a transfer for readiness: {e}");
                    return self.end(slot, Outcome::Failed(errno_of(&e)));
                }
                if flush {
                    self.flush_status(slot);
                }
            }
            PumpStop::NotCached { offset, len } => {
                let Ok(file) = t.step(State::wait_for_disk) else {
                    return;
                };
                let job = DiskJob {
                    slot,
                    txnid,
                    uid: t.peer_uid,
                    work: Work::Prefetch { file, offset, len },
                };
                t.status.stopped_to_wait();
                // The file info goes out now, not after the disk.
                let flush = t.status.worth_flushing();
                if !self.queue_or_end(job) {
                    return;
                }
                if flush {
                    self.flush_status(slot);
                }
            }
            PumpStop::Failed(errno) => {
                log::debug!("transfer in slot {slot} failed: {}", io::Error::from(errno));
                self.end(slot, Outcome::Failed(errno));
            }
        }
    }

    /// Hands the next chunk of a transfer to a regular file to the disk
    /// threads: such a write can take as long as the filesystem likes.
    fn write_off_loop(&mut self, slot: Slot, txnid: u64) {
        let limits = Limits {
            chunk: self.config.chunk,
            // One chunk per job, so that the disk threads take turns.
            budget: self.config.chunk,
            // Misses are reported as on the loop (and prefetched as a job
            // of their own), so that both paths read a file alike.
            probe_cache: self.config.probe_cache,
            strict: false,
        };
        let Some(t) = self.table.get_mut(slot) else {
            return;
        };
        let Ok((file, fd)) = t.step(State::write_on_disk_thread) else {
            return;
        };
        let cursor = std::mem::replace(&mut t.cursor, Cursor::new(Vec::new(), 0, 0, Vec::new()));
        let job = DiskJob {
            slot,
            txnid,
            uid: t.peer_uid,
            work: Work::Write {
                file,
                cursor,
                dest: fd,
                limits,
            },
        };
        let flush = t.status.worth_flushing();
        if !self.queue_or_end(job) {
            return;
        }
        if flush {
            self.flush_status(slot);
        }
    }

    /// Queues a disk job ([`Server::queue_disk_job`]); a job the pool
    /// refuses ends its transfer with the refusal's errno. Returns whether
    /// it was queued.
    pub(super) fn queue_or_end(&mut self, job: DiskJob) -> bool {
        let slot = job.slot;
        match self.queue_disk_job(job) {
            Ok(()) => true,
            Err(errno) => {
                self.end(slot, Outcome::Failed(errno));
                false
            }
        }
    }

    /// A readiness event for a transfer's status channel or destination.
    pub(super) fn transfer_event(&mut self, slot: Slot, is_dest: bool, closed: bool) {
        let Some(t) = self.table.get_mut(slot) else {
            return;
        };
        let mut wake = false;
        if let State::Running {
            dest, dest_ready, ..
        } = &mut t.state
        {
            if is_dest || matches!(dest, Dest::Status) {
                *dest_ready = true;
                wake = true;
            }
        }
        if wake {
            self.enqueue(slot);
        }
        if !is_dest {
            if closed {
                // The client closed its end of the status channel.
                self.end_client_gone(slot, "client closed its status channel");
                return;
            }
            // Writable is no reason to speak: progress below the step
            // waits for a later wait, as in `turn`.
            if self
                .table
                .get_mut(slot)
                .is_some_and(|t| t.status.worth_flushing())
            {
                self.flush_status(slot);
            }
        }
    }

    /// Takes the disk threads' finished jobs: their transfers go on (see
    /// [`Server::job_finished`] for what is booked first).
    pub(super) fn disk_finished(&mut self) {
        for done in self.disk.take_done() {
            match self.job_finished(done) {
                Some(AfterJob::Opened {
                    slot,
                    txnid,
                    opened,
                }) => self.opened(slot, txnid, opened),
                Some(AfterJob::Run { slot }) => self.enqueue(slot),
                Some(AfterJob::PrefetchFailed { slot, txnid, errno }) => {
                    log::warn!(
                        "txn {txnid:x}: reading from disk failed: {}",
                        io::Error::from(errno)
                    );
                    self.end(slot, Outcome::Failed(errno));
                }
                Some(AfterJob::Moved {
                    slot,
                    txnid,
                    moved,
                    stop,
                }) => self.after_moving(slot, txnid, moved, stop),
                None => {}
            }
        }
    }
}
