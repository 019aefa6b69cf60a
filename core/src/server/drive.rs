//! Driving admitted transfers: a turn of data at a time, the waits between
//! turns (readiness, the disk threads, open-file deadlines), and the end.
//!
//! This file moves data only through the backend (via the pump), writes
//! only to a transfer's status channel (through its `StatusWriter`), and is
//! the only place that ends a transfer ([`Server::end`],
//! [`Server::end_client_gone`], then [`Server::release`]).
//! What may block on a client's object it never does itself: writes to a
//! regular file go to the disk threads, closes that may linger to the
//! closer threads.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Instant;

use crate::backend::{DestKind, TransferBackend};
use crate::sys::{self, errno as errno_of, errno::Errno};

use super::caught;
use super::closer::CloseJob;
use super::disk::{DiskJob, Finished, Refused, Work};
use super::engine::{Engine, Interest};
use super::pump::{pump, Cursor, Limits, PumpStop};
use super::status::{Final, Flush};
use super::table::Slot;
use super::transfer::{Dest, Outcome, State, Transfer};
use super::{dest_token, status_token, Server};

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
    pub(super) fn enqueue(&mut self, slot: Slot) {
        if let Some(t) = self.table.get_mut(slot) {
            if !t.queued {
                t.queued = true;
                self.runq.push(t.peer_uid, slot);
            }
        }
    }

    /// Gives queued transfers one turn each, uids taking turns (those queued
    /// during the pass wait for the next), for at most
    /// [`super::RUN_QUEUE_BUDGET`]: the rest keep their places.
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
            if started.elapsed() >= super::RUN_QUEUE_BUDGET {
                break;
            }
        }
    }

    /// One turn of one transfer: move up to a quantum, then report. A
    /// regular-file destination's turn is a write job for the disk threads.
    pub(super) fn turn(&mut self, slot: Slot) {
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
                if !self.queue_disk_job(job) {
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
        if !self.queue_disk_job(job) {
            return;
        }
        if flush {
            self.flush_status(slot);
        }
    }

    /// Registers what a blocked transfer waits on: its destination, and its
    /// status channel (so a client that goes away is noticed). With `rearm`,
    /// a destination already registered is registered again, which queues
    /// an event at once if it is writable.
    fn register_waits(&mut self, slot: Slot, rearm: bool) -> io::Result<()> {
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

    /// Queues a disk job for its transfer. If the pool refuses it (its
    /// threads gone: `EIO`; its queue at its bound: `EAGAIN`, which the
    /// slots make unreachable) the transfer ends, and what the job held
    /// closes as the transfer's. Returns whether it was queued.
    pub(super) fn queue_disk_job(&mut self, job: DiskJob) -> bool {
        let slot = job.slot;
        let (job, errno) = match self.disk.submit(job) {
            Ok(()) => return true,
            Err(Refused::Stopped(job)) => {
                log::error!("disk threads are gone");
                (job, Errno::EIO)
            }
            Err(Refused::Full(job)) => {
                log::error!("disk queue full ({} jobs)", self.disk.queued());
                (job, Errno::EAGAIN)
            }
        };
        self.job_returned(*job);
        self.end(slot, Outcome::Failed(errno));
        false
    }

    /// Takes the queued disk job of the transfer in `slot` back (it is
    /// ending): a job that never ran must not keep its descriptors, nor its
    /// place in the queue, beyond its transfer. A job a thread is running
    /// comes back through [`Server::disk_finished`].
    fn recall_disk_job(&mut self, slot: Slot) {
        let Some((txnid, t)) = self.table.get(slot) else {
            return;
        };
        let waiting = matches!(
            t.state,
            State::Opening { .. } | State::WaitingForDisk { .. } | State::WritingFile { .. }
        );
        if waiting {
            for job in self.disk.cancel(txnid) {
                self.job_returned(job);
            }
        }
    }

    /// A disk job that never ran is back: a write job's destination closes
    /// with its transfer (before the status channel, off the loop); a
    /// prefetch's file clone and an open's path just drop.
    pub(super) fn job_returned(&mut self, job: DiskJob) {
        let Work::Write { dest, cursor, .. } = job.work else {
            return;
        };
        if let Some(removed) = self.removed_with_write_out.remove(&job.txnid) {
            self.to_close.push(CloseJob::new(
                removed.peer_uid,
                Some(dest),
                Box::new(removed),
            ));
            return;
        }
        let live = self.table.get(job.slot).map(|(id, _)| id) == Some(job.txnid);
        let dest = match self.table.get_mut(job.slot).filter(|_| live) {
            // Running again with its destination and cursor (it is being
            // ended: the recall comes from its end or a refused job), or
            // ended already and keeping the destination to close with it.
            Some(t) => match t.write_came_back(dest) {
                Ok(true) => {
                    t.cursor = cursor;
                    return;
                }
                Ok(false) => return,
                Err(dest) => dest,
            },
            None => dest,
        };
        self.to_close
            .push(CloseJob::new(job.uid, Some(dest), Box::new(())));
    }

    /// Ends the open files whose deadline has passed with `ETIMEDOUT`.
    pub(super) fn expire_open_files(&mut self) {
        let now = Instant::now();
        while let Some(txnid) = self.timers.pop_due(now) {
            let Some(slot) = self.table.slot_of(txnid) else {
                continue;
            };
            let expired = self.table.get(slot).is_some_and(
                |(_, t)| matches!(t.state, State::Opened { deadline, .. } if deadline <= now),
            );
            if expired {
                log::debug!("txn {txnid:x}: open file expired");
                self.end(slot, Outcome::Failed(Errno::ETIMEDOUT));
            }
        }
    }

    /// Takes the disk threads' finished jobs: their transfers run again.
    pub(super) fn disk_finished(&mut self) {
        for done in self.disk.take_done() {
            match done.work {
                Finished::Prefetched { offset, len, read } => {
                    self.prefetched(done.slot, done.txnid, offset, len, read)
                }
                Finished::Wrote {
                    cursor,
                    dest,
                    moved,
                    stop,
                } => self.wrote(done.slot, done.txnid, done.uid, cursor, dest, moved, stop),
                Finished::Opened(opened) => self.opened(done.slot, done.txnid, opened),
            }
        }
    }

    fn prefetched(
        &mut self,
        slot: Slot,
        txnid: u64,
        offset: u64,
        len: usize,
        read: Result<(), Errno>,
    ) {
        if self.table.get(slot).map(|(id, _)| id) != Some(txnid) {
            return;
        }
        let Some(t) = self.table.get_mut(slot) else {
            return;
        };
        if !matches!(t.state, State::WaitingForDisk { .. }) {
            return;
        }
        if let Err(errno) = read {
            log::warn!(
                "txn {txnid:x}: reading from disk failed: {}",
                io::Error::from(errno)
            );
            self.end(slot, Outcome::Failed(errno));
            return;
        }
        t.cursor.mark_prefetched(offset, len);
        // The disk's time is not the client's stall.
        t.last_progress = Instant::now();
        // Anything but WaitingForDisk (a transfer ended meanwhile) stays.
        let _ = t.step(State::disk_done);
        self.enqueue(slot);
    }

    /// A write job came back with the destination and the cursor.
    #[allow(clippy::too_many_arguments)]
    fn wrote(
        &mut self,
        slot: Slot,
        txnid: u64,
        uid: Option<u32>,
        cursor: Cursor,
        dest: std::os::fd::OwnedFd,
        moved: u64,
        stop: PumpStop,
    ) {
        if let Some(removed) = self.removed_with_write_out.remove(&txnid) {
            self.to_close.push(CloseJob::new(
                removed.peer_uid,
                Some(dest),
                Box::new(removed),
            ));
            return;
        }
        let live = self.table.get(slot).map(|(id, _)| id) == Some(txnid);
        let Some(t) = self.table.get_mut(slot).filter(|_| live) else {
            self.to_close
                .push(CloseJob::new(uid, Some(dest), Box::new(())));
            return;
        };
        match t.write_came_back(dest) {
            Ok(true) => {}
            // Ended meanwhile (and not removed: its final message is owed):
            // it keeps the destination, to close with it before its status
            // channel.
            Ok(false) => return,
            Err(dest) => {
                self.to_close
                    .push(CloseJob::new(uid, Some(dest), Box::new(())));
                return;
            }
        }
        t.cursor = cursor;
        let stop = match stop {
            // A regular file is never full for long: try again next turn.
            PumpStop::DestinationFull | PumpStop::Blocked => PumpStop::BudgetSpent,
            s => s,
        };
        self.after_moving(slot, txnid, moved, stop);
    }
}
