//! What the interrupt backstop caught: open file descriptions (and uids)
//! on which a call blocked although every call is made non-blocking per
//! call. The mark is on the description, never on one transfer: a client
//! that passes one pipe or socket to a hundred transfers and flips its
//! `O_NONBLOCK` pays at most one backstop tick for all of them, not one per
//! transfer (issue 23, rows 1-3).
//!
//! What a mark changes: file data to a marked socket never goes by
//! `sendfile` (a copy with `MSG_DONTWAIT` instead), whatever its flag says
//! at the moment. Everything else is non-blocking per call already; a
//! catch there (a pipe whose kernel refuses `RWF_NOWAIT`, its room
//! misreported) still counts against the uid.
//!
//! A description is known by its object's identity, `st_dev`/`st_ino` of
//! `fstat` (a pipe's, a socket's inode): both ends of a pipe share it, which
//! errs on the strict side. Transfers look at the marks lazily: each keeps
//! the [`Caught::generation`] it last checked, and takes an `fstat` only
//! when a new mark came since. A uid caught [`UID_STRIKES`] times has every
//! transfer strict from then on, so a client that makes a new socket or
//! pipe for each catch runs out after a few ticks.
//!
//! This file holds data and makes `fstat` calls only; it writes nothing.

use std::collections::{HashMap, HashSet, VecDeque};
use std::os::fd::BorrowedFd;

use crate::sys;

/// Catches of one uid after which all its transfers are strict.
pub const UID_STRIKES: u32 = 4;

/// Most descriptions remembered; the oldest mark goes first. A forgotten
/// mark costs at most one more tick when its description blocks again.
const MAX_MARKS: usize = 4096;

/// An open file description's object: `(st_dev, st_ino)`.
pub type Identity = (u64, u64);

/// The identity of `fd`'s object (`None` if the stat fails), as the kernel
/// holds it ([`sys::stat_cached`]: no filesystem server is asked).
// dev_t and ino_t are not u64 everywhere (macOS).
#[allow(clippy::unnecessary_cast)]
pub fn identity_of(fd: BorrowedFd<'_>) -> Option<Identity> {
    sys::stat_cached(fd)
        .ok()
        .map(|st| (st.st_dev as u64, st.st_ino as u64))
}

/// The marks.
#[derive(Debug, Default)]
pub struct Caught {
    marks: HashSet<Identity>,
    order: VecDeque<Identity>,
    strikes: HashMap<u32, u32>,
    generation: u64,
}

impl Caught {
    /// Records that a call on `id` (of a transfer of `uid`) blocked.
    pub fn catch(&mut self, id: Option<Identity>, uid: Option<u32>) {
        if let Some(id) = id {
            if self.marks.insert(id) {
                self.order.push_back(id);
                if self.order.len() > MAX_MARKS {
                    if let Some(old) = self.order.pop_front() {
                        self.marks.remove(&old);
                    }
                }
            }
        }
        if let Some(uid) = uid {
            let n = self.strikes.entry(uid).or_insert(0);
            *n = n.saturating_add(1);
            if *n == UID_STRIKES {
                log::warn!(
                    "uid {uid}: {UID_STRIKES} calls on its descriptors blocked; none of its \
                     transfers uses sendfile any more"
                );
            }
        }
        self.generation += 1;
    }

    /// Changes with every catch: a transfer that saw this value needs no
    /// new look.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether `id` was caught.
    pub fn is_marked(&self, id: Option<Identity>) -> bool {
        id.is_some_and(|id| self.marks.contains(&id))
    }

    /// Whether `uid` was caught [`UID_STRIKES`] times.
    pub fn uid_is_caught(&self, uid: Option<u32>) -> bool {
        !self.strikes.is_empty()
            && uid.is_some_and(|u| self.strikes.get(&u).is_some_and(|&n| n >= UID_STRIKES))
    }

    /// Whether `fd` (last checked at `*seen`) is marked now; updates
    /// `*seen`. An `fstat` only when a catch happened since.
    pub fn check(&self, fd: BorrowedFd<'_>, seen: &mut u64) -> bool {
        if *seen == self.generation {
            return false;
        }
        *seen = self.generation;
        !self.marks.is_empty() && self.is_marked(identity_of(fd))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn a_mark_is_per_description_and_seen_once() {
        let mut c = Caught::default();
        let (r, w) = sys::pipe().unwrap();
        let (_r2, w2) = sys::pipe().unwrap();
        let mut seen_w = 0;
        let mut seen_w2 = 0;
        assert!(!c.check(w.as_fd(), &mut seen_w));
        c.catch(identity_of(w.as_fd()), Some(7));
        assert!(c.check(w.as_fd(), &mut seen_w));
        // Checked at this generation: no new look until the next catch.
        assert!(!c.check(w.as_fd(), &mut seen_w));
        assert!(!c.check(w2.as_fd(), &mut seen_w2), "another pipe");
        // Both ends of a pipe are one object.
        assert!(c.is_marked(identity_of(r.as_fd())));
        assert!(!c.uid_is_caught(Some(7)));
        for _ in 1..UID_STRIKES {
            c.catch(None, Some(7));
        }
        assert!(c.uid_is_caught(Some(7)));
        assert!(!c.uid_is_caught(Some(8)));
        assert!(!c.uid_is_caught(None));
    }

    #[test]
    fn marks_are_bounded() {
        let mut c = Caught::default();
        for i in 0..(MAX_MARKS as u64 + 10) {
            c.catch(Some((1, i)), None);
        }
        assert_eq!(c.marks.len(), MAX_MARKS);
        assert!(!c.is_marked(Some((1, 0))), "the oldest went first");
        assert!(c.is_marked(Some((1, MAX_MARKS as u64 + 9))));
    }
}
