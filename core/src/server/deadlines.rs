//! Deadlines: an opened file's wait for its Send Open (`open_timeout`,
//! kept in `timers.rs`), and the stall timeout: a transfer that moves no
//! byte for `stall_timeout` gives its slot back.
//!
//! Each transfer carries the time it last moved data
//! ([`Transfer::last_progress`](super::transfer::Transfer)); once per tick
//! (a quarter of the timeout, at most a second) the loop sweeps the table.
//! Nothing is kept per transfer beyond that timestamp, so a transfer that
//! ends leaves nothing behind, and a sweep over 1024 slots once a second
//! costs microseconds.
//!
//! - Data waiting on a destination nobody drains (or a Read's pipe nobody
//!   reads): ended with `ETIMEDOUT` on its status channel (a Read's pipe
//!   just closes). If the status pipe has no room for that either, the
//!   client is not listening at all: the transfer is closed at once.
//! - Data done, final message waiting for room in a status pipe nobody
//!   reads: closed (it cannot be told).
//! - Opened files have their own deadline (`-t`) and are left alone, as are
//!   transfers waiting for the disk threads (the daemon's wait, not the
//!   client's) and transfers queued for a turn.
//!
//! Rule: a phase of the loop's own, beside admission and driving: it
//! decides, and calls down only into `finish.rs` ([`Server::end`],
//! [`Server::release`]); it does no I/O of its own.

use std::time::{Duration, Instant};

use crate::backend::TransferBackend;
use crate::sys::errno::Errno;

use super::transfer::{Outcome, State};
use super::Server;

/// How often the table is swept for a stall timeout of `timeout`.
pub fn tick(timeout: Duration) -> Duration {
    (timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(1))
}

/// What the sweep does with one transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Not stalled, or not the stall timeout's business.
    Keep,
    /// Data stalled: end it with `ETIMEDOUT`.
    TimeOut,
    /// Only its final message is left, and nobody reads it: close.
    Close,
}

/// The rule for one transfer in `state`, `queued` or not, last moving data
/// at `last_progress`.
pub fn verdict(
    state: &State,
    queued: bool,
    last_progress: Instant,
    now: Instant,
    timeout: Duration,
) -> Verdict {
    if timeout.is_zero() || queued || now.saturating_duration_since(last_progress) < timeout {
        return Verdict::Keep;
    }
    match state {
        State::Running { .. } => Verdict::TimeOut,
        State::Finishing { .. } => Verdict::Close,
        // A disk thread's time (opening the file, reading it in, writing a
        // regular-file destination) is not the client's stall.
        State::Opened { .. }
        | State::Opening { .. }
        | State::WaitingForDisk { .. }
        | State::WritingFile { .. } => Verdict::Keep,
    }
}

impl<B: TransferBackend> Server<B> {
    /// The earliest deadline, an open file's or the next sweep's, for the
    /// loop's sleep.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        match (self.timers.next_deadline(), self.next_stall_sweep()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The next sweep, if one is due at all.
    fn next_stall_sweep(&self) -> Option<Instant> {
        if self.config.stall_timeout.is_zero() || self.table.is_empty() {
            None
        } else {
            Some(self.next_sweep)
        }
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

    /// Ends the transfers that moved nothing for the stall timeout, once
    /// per tick.
    pub(super) fn expire_stalled(&mut self) {
        let timeout = self.config.stall_timeout;
        if timeout.is_zero() {
            return;
        }
        let now = Instant::now();
        if now < self.next_sweep {
            return;
        }
        self.next_sweep = now + tick(timeout);
        for slot in self.table.slots() {
            let Some((txnid, t)) = self.table.get(slot) else {
                continue;
            };
            match verdict(&t.state, t.queued, t.last_progress, now, timeout) {
                Verdict::Keep => {}
                Verdict::TimeOut => {
                    log::debug!(
                        "txn {txnid:x}: no byte moved for {} ms: ETIMEDOUT",
                        timeout.as_millis()
                    );
                    self.end(slot, Outcome::Failed(Errno::ETIMEDOUT));
                    // Still here: its status pipe has no room for the
                    // error either.
                    self.release(slot);
                }
                Verdict::Close => {
                    log::debug!(
                        "txn {txnid:x}: final message unread for {} ms: closed",
                        timeout.as_millis()
                    );
                    self.release(slot);
                }
            }
        }
    }
}
