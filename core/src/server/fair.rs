//! A queue that shares its workers fairly between owners (uids): a FIFO per
//! owner, served round-robin, so that one owner's thousand queued jobs cost
//! another owner's single job at most one job per owner ahead of it, not
//! the thousand. The disk threads ([`super::disk`]) and the closer threads
//! ([`super::closer`]) take their work from one, as the transfer slots are
//! shared ([`super::share`]).
//!
//! This file is data only: no locks, no threads, no system calls.

use std::collections::VecDeque;

/// One owner's jobs, in the order they came.
#[derive(Debug)]
struct Lane<K, J> {
    owner: K,
    jobs: VecDeque<J>,
}

/// Jobs by owner, taken round-robin between owners and in order within one.
#[derive(Debug)]
pub struct FairQueue<K, J> {
    /// Owners with jobs; the front one is served next.
    lanes: VecDeque<Lane<K, J>>,
    len: usize,
}

impl<K, J> Default for FairQueue<K, J> {
    fn default() -> Self {
        FairQueue {
            lanes: VecDeque::new(),
            len: 0,
        }
    }
}

impl<K: PartialEq + Copy, J> FairQueue<K, J> {
    /// Jobs queued, every owner's.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Jobs `owner` has queued.
    pub fn len_of(&self, owner: K) -> usize {
        self.lanes
            .iter()
            .find(|l| l.owner == owner)
            .map_or(0, |l| l.jobs.len())
    }

    /// Every owner with jobs queued, and how many.
    pub fn owners(&self) -> impl Iterator<Item = (K, usize)> + '_ {
        self.lanes.iter().map(|l| (l.owner, l.jobs.len()))
    }

    /// Queues `job` behind `owner`'s others. A new owner is served after
    /// those already waiting.
    pub fn push(&mut self, owner: K, job: J) {
        self.len += 1;
        match self.lanes.iter_mut().find(|l| l.owner == owner) {
            Some(lane) => lane.jobs.push_back(job),
            None => self.lanes.push_back(Lane {
                owner,
                jobs: VecDeque::from([job]),
            }),
        }
    }

    /// The next job of the first owner in turn that `may_run` allows (an
    /// owner already using its part of the workers waits), with its owner;
    /// that owner goes to the back of the turn.
    pub fn pop_where(&mut self, mut may_run: impl FnMut(K) -> bool) -> Option<(K, J)> {
        let i = self.lanes.iter().position(|l| may_run(l.owner))?;
        let mut lane = self.lanes.remove(i)?;
        let job = lane.jobs.pop_front()?;
        self.len -= 1;
        let owner = lane.owner;
        if !lane.jobs.is_empty() {
            self.lanes.push_back(lane);
        }
        Some((owner, job))
    }

    /// The next job in turn, whoever owns it.
    pub fn pop(&mut self) -> Option<(K, J)> {
        self.pop_where(|_| true)
    }

    /// Takes out every queued job `matches` picks (a cancelled transfer's),
    /// in queue order.
    pub fn remove_where(&mut self, mut matches: impl FnMut(&J) -> bool) -> Vec<J> {
        let mut out = Vec::new();
        for lane in &mut self.lanes {
            let mut i = 0;
            while i < lane.jobs.len() {
                if matches(&lane.jobs[i]) {
                    if let Some(j) = lane.jobs.remove(i) {
                        out.push(j);
                    }
                } else {
                    i += 1;
                }
            }
        }
        self.lanes.retain(|l| !l.jobs.is_empty());
        self.len -= out.len();
        out
    }

    /// Takes out everything (shutdown).
    pub fn drain(&mut self) -> Vec<J> {
        self.len = 0;
        self.lanes.drain(..).flat_map(|l| l.jobs).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_owners_backlog_costs_another_one_turn() {
        let mut q = FairQueue::default();
        for i in 0..600 {
            q.push(Some(1000u32), i);
        }
        q.push(Some(2000), 9999);
        assert_eq!(q.len(), 601);
        assert_eq!(q.len_of(Some(1000)), 600);
        // The backlog's first job, then the late owner's: not 600 later.
        assert_eq!(q.pop(), Some((Some(1000), 0)));
        assert_eq!(q.pop(), Some((Some(2000), 9999)));
        assert_eq!(q.pop(), Some((Some(1000), 1)));
        assert_eq!(q.len(), 598);
    }

    #[test]
    fn owners_alternate_and_each_keeps_its_order() {
        let mut q = FairQueue::default();
        for i in 0..3 {
            q.push(1u32, (1, i));
            q.push(2u32, (2, i));
        }
        q.push(3u32, (3, 0));
        let order: Vec<_> = std::iter::from_fn(|| q.pop().map(|(_, j)| j)).collect();
        assert_eq!(
            order,
            [(1, 0), (2, 0), (3, 0), (1, 1), (2, 1), (1, 2), (2, 2)]
        );
        assert!(q.is_empty());
    }

    #[test]
    fn an_owner_at_its_limit_waits_and_others_go_by() {
        let mut q = FairQueue::default();
        q.push(1u32, "a1");
        q.push(1u32, "a2");
        q.push(2u32, "b1");
        assert_eq!(q.pop_where(|o| o != 1), Some((2, "b1")));
        assert_eq!(q.pop_where(|o| o != 1), None);
        assert_eq!(q.pop(), Some((1, "a1")));
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn a_cancelled_transfers_jobs_leave_the_queue() {
        let mut q = FairQueue::default();
        for id in 0..10u64 {
            q.push(id % 2, id);
        }
        let gone = q.remove_where(|&id| id == 3 || id == 4);
        assert_eq!(gone, [4, 3]);
        assert_eq!(q.len(), 8);
        let gone = q.remove_where(|&id| id % 2 == 1);
        assert_eq!(gone.len(), 4);
        assert_eq!(q.len_of(1), 0);
        assert_eq!(q.len(), 4);
        // The emptied owner is out of the turn: the other is served.
        assert_eq!(q.pop(), Some((0, 0)));
        assert_eq!(q.drain(), [2, 6, 8]);
        assert!(q.is_empty());
    }
}
