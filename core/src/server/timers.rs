//! Open-file deadlines: when each opened file must have been sent.
//!
//! A deadline outlives its transfer when the file is sent or cancelled in
//! time; such entries are dropped in a compaction once they outnumber the
//! live transfers, so memory follows the transfers alive, not the request
//! rate times the timeout. Pure data: no clock reads of its own, no I/O.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

/// Entries always allowed before a compaction is considered.
const SLACK: usize = 64;

/// A min-heap of (deadline, transfer id).
#[derive(Debug, Default)]
pub struct OpenFileTimers {
    heap: BinaryHeap<Reverse<(Instant, u64)>>,
}

impl OpenFileTimers {
    /// Adds the deadline of transfer `txnid`.
    pub fn push(&mut self, deadline: Instant, txnid: u64) {
        self.heap.push(Reverse((deadline, txnid)));
    }

    /// The earliest deadline, for the loop's sleep.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((t, _))| *t)
    }

    /// Removes and returns the id of the earliest entry due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<u64> {
        match self.heap.peek() {
            Some(Reverse((t, _))) if *t <= now => self.heap.pop().map(|Reverse((_, id))| id),
            _ => None,
        }
    }

    /// How many entries are held (live or stale).
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Drops the entries of transfers no longer waiting, once the heap holds
    /// more than twice `live` (plus some slack): amortised O(1) per push.
    /// Returns how many entries were dropped.
    pub fn compact_if_stale(&mut self, live: usize, still_waiting: impl Fn(u64) -> bool) -> usize {
        let before = self.heap.len();
        if before <= 2 * live + SLACK {
            return 0;
        }
        self.heap.retain(|Reverse((_, id))| still_waiting(*id));
        before - self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn entries_come_out_in_deadline_order_when_due() {
        let t0 = Instant::now();
        let mut t = OpenFileTimers::default();
        t.push(t0 + Duration::from_millis(30), 3);
        t.push(t0 + Duration::from_millis(10), 1);
        t.push(t0 + Duration::from_millis(20), 2);
        assert_eq!(t.next_deadline(), Some(t0 + Duration::from_millis(10)));
        assert_eq!(t.pop_due(t0), None, "nothing is due yet");
        let later = t0 + Duration::from_millis(25);
        assert_eq!(t.pop_due(later), Some(1));
        assert_eq!(t.pop_due(later), Some(2));
        assert_eq!(t.pop_due(later), None);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn stale_entries_are_dropped_so_memory_follows_live_transfers() {
        let t0 = Instant::now() + Duration::from_secs(60);
        let mut t = OpenFileTimers::default();
        // 100,000 opens, each sent at once: one stays waiting.
        for id in 0..100_000u64 {
            t.push(t0, id);
            t.compact_if_stale(1, |x| x == 7);
        }
        assert!(t.len() <= 2 + SLACK + 1, "{} entries held", t.len());
        // The waiting one is still there.
        let mut ids = Vec::new();
        while let Some(id) = t.pop_due(t0) {
            ids.push(id);
        }
        assert!(ids.contains(&7));
    }

    #[test]
    fn live_entries_survive_compaction() {
        let t0 = Instant::now();
        let mut t = OpenFileTimers::default();
        for id in 0..200u64 {
            t.push(t0, id);
        }
        t.compact_if_stale(200, |_| true);
        assert_eq!(t.len(), 200);
        t.compact_if_stale(10, |id| id < 10);
        assert_eq!(t.len(), 10);
    }
}
