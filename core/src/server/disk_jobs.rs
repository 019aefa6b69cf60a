//! The loop's side of the disk threads (`disk.rs`): handing a transfer's
//! job to the pool, taking a queued job back when its transfer ends, and
//! booking a finished job's return (a write job's destination and cursor,
//! a prefetched chunk, an open) before its transfer goes on.
//!
//! Rule: the bottom of the server's phases, with `waits.rs`: it calls no
//! other phase. A refused job's errno goes back to whoever queued it, which
//! ends the transfer; what a finished job means for its transfer is handed
//! back as an [`AfterJob`] for `drive.rs` to act on. Descriptors a job held
//! that outlive their transfer close on the closer threads.

use std::time::Instant;

use crate::backend::TransferBackend;
use crate::sys::errno::Errno;

use super::closer::CloseJob;
use super::disk::{DiskDone, DiskJob, Finished, Refused, Work};
use super::open::Opened;
use super::pump::{Cursor, PumpStop};
use super::table::Slot;
use super::transfer::State;
use super::Server;

/// What a finished disk job leaves its transfer to do, once the job's
/// return is booked.
#[derive(Debug)]
pub(super) enum AfterJob {
    /// The file is open, or the open was refused.
    Opened {
        /// The transfer's slot.
        slot: Slot,
        /// Its id (the slot may hold another transfer by now).
        txnid: u64,
        /// The file, or the errno.
        opened: Opened,
    },
    /// The missing chunk is in memory: the transfer runs again.
    Run {
        /// The transfer's slot.
        slot: Slot,
    },
    /// Reading the chunk in failed: the transfer ends with `errno`.
    PrefetchFailed {
        /// The transfer's slot.
        slot: Slot,
        /// Its id, for the log.
        txnid: u64,
        /// Why.
        errno: Errno,
    },
    /// A write job moved `moved` bytes and stopped for `stop`; the
    /// destination and the cursor are back in the transfer.
    Moved {
        /// The transfer's slot.
        slot: Slot,
        /// Its id.
        txnid: u64,
        /// Bytes the job moved.
        moved: u64,
        /// Why it stopped (a full regular file counts as its budget spent).
        stop: PumpStop,
    },
}

impl<B: TransferBackend> Server<B> {
    /// Queues a disk job for its transfer. If the pool refuses it (its
    /// threads gone: `EIO`; its queue at its bound: `EAGAIN`, which the
    /// slots make unreachable), what the job held is taken back as the
    /// transfer's and the errno is returned, for the caller to end the
    /// transfer with ([`Server::queue_or_end`]).
    pub(super) fn queue_disk_job(&mut self, job: DiskJob) -> Result<(), Errno> {
        let (job, errno) = match self.disk.submit(job) {
            Ok(()) => return Ok(()),
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
        Err(errno)
    }

    /// Takes the queued disk job of the transfer in `slot` back (it is
    /// ending): a job that never ran must not keep its descriptors, nor its
    /// place in the queue, beyond its transfer. A job a thread is running
    /// comes back through [`Server::job_finished`].
    pub(super) fn recall_disk_job(&mut self, slot: Slot) {
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

    /// Books a finished disk job's return (see `prefetched` and `wrote`);
    /// what its transfer does next is the caller's (`drive.rs`).
    pub(super) fn job_finished(&mut self, done: DiskDone) -> Option<AfterJob> {
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
            Finished::Opened(opened) => Some(AfterJob::Opened {
                slot: done.slot,
                txnid: done.txnid,
                opened,
            }),
        }
    }

    /// A prefetch came back: a transfer still waiting for it has the chunk
    /// marked in memory and is Running again, for `drive.rs` to queue (or
    /// to end, if the read failed).
    fn prefetched(
        &mut self,
        slot: Slot,
        txnid: u64,
        offset: u64,
        len: usize,
        read: Result<(), Errno>,
    ) -> Option<AfterJob> {
        if self.table.get(slot).map(|(id, _)| id) != Some(txnid) {
            return None;
        }
        let t = self.table.get_mut(slot)?;
        if !matches!(t.state, State::WaitingForDisk { .. }) {
            return None;
        }
        if let Err(errno) = read {
            return Some(AfterJob::PrefetchFailed { slot, txnid, errno });
        }
        t.cursor.mark_prefetched(offset, len);
        // The disk's time is not the client's stall.
        t.last_progress = Instant::now();
        // Anything but WaitingForDisk (a transfer ended meanwhile) stays.
        let _ = t.step(State::disk_done);
        Some(AfterJob::Run { slot })
    }

    /// A write job came back with the destination and the cursor: a
    /// transfer still writing has them back, a removed or ended one closes
    /// the destination with it.
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
    ) -> Option<AfterJob> {
        if let Some(removed) = self.removed_with_write_out.remove(&txnid) {
            self.to_close.push(CloseJob::new(
                removed.peer_uid,
                Some(dest),
                Box::new(removed),
            ));
            return None;
        }
        let live = self.table.get(slot).map(|(id, _)| id) == Some(txnid);
        let Some(t) = self.table.get_mut(slot).filter(|_| live) else {
            self.to_close
                .push(CloseJob::new(uid, Some(dest), Box::new(())));
            return None;
        };
        match t.write_came_back(dest) {
            Ok(true) => {}
            // Ended meanwhile (and not removed: its final message is owed):
            // it keeps the destination, to close with it before its status
            // channel.
            Ok(false) => return None,
            Err(dest) => {
                self.to_close
                    .push(CloseJob::new(uid, Some(dest), Box::new(())));
                return None;
            }
        }
        t.cursor = cursor;
        let stop = match stop {
            // A regular file is never full for long: try again next turn.
            PumpStop::DestinationFull | PumpStop::Blocked => PumpStop::BudgetSpent,
            s => s,
        };
        Some(AfterJob::Moved {
            slot,
            txnid,
            moved,
            stop,
        })
    }
}
