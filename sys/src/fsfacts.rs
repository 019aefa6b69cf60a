//! Facts about a filesystem, learnt once per device (`st_dev`) and shared
//! by every open and probe after: whether its opens never wait (the local
//! kernel and its disks answer them, no server or FUSE daemon), whether it
//! refused the page-cache probe, and what the kernel turned out to lack.
//! Lock-free for readers: the daemon's loop and its disk threads, or a
//! client's threads, read them on every request.

use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// Something [`FsFacts`] learnt, for whoever keeps a log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Note {
    /// The kernel has no `openat2` (`ENOSYS`): opens walk.
    NoOpenat2,
    /// `openat2` has no `RESOLVE_CACHED` (`EINVAL`, before Linux 5.12).
    NoResolveCached,
    /// Opens on this device may wait on a server or a FUSE daemon.
    OpensMayWait {
        /// The device.
        dev: libc::dev_t,
        /// Its filesystem type, as `fstatfs(2)` says.
        fs_type: u64,
    },
    /// This device's filesystem refused `preadv2(RWF_NOWAIT)`
    /// (`EOPNOTSUPP`): its files are not probed.
    NowaitRefused {
        /// The device.
        dev: libc::dev_t,
    },
    /// The kernel has no `RWF_NOWAIT` (`EINVAL`, `ENOSYS`): nothing is probed.
    NoNowait,
}

/// What is known of the filesystems seen so far. One per process side (the
/// daemon's backend, a client's connection).
#[derive(Debug, Default)]
pub struct FsFacts {
    /// Devices whose opens never wait.
    local: DeviceSet,
    /// Devices whose opens may wait (a server, a FUSE daemon).
    remote: DeviceSet,
    /// Devices whose filesystem refused `RWF_NOWAIT`.
    nowait_refused: DeviceSet,
    /// Devices whose filesystem answered `RWF_NOWAIT` (a read that came
    /// back, or `EAGAIN`).
    nowait_answered: DeviceSet,
    no_openat2: AtomicBool,
    no_resolve_cached: AtomicBool,
    no_nowait: AtomicBool,
    on_note: Option<fn(&Note)>,
}

impl FsFacts {
    /// Nothing known yet; nothing reported.
    pub fn new() -> Self {
        Self::default()
    }

    /// Nothing known yet; each fact learnt is passed to `on_note` once (the
    /// daemon logs them).
    pub fn with_notes(on_note: fn(&Note)) -> Self {
        FsFacts {
            on_note: Some(on_note),
            ..Self::default()
        }
    }

    fn note(&self, n: Note) {
        if let Some(f) = self.on_note {
            f(&n);
        }
    }

    /// Whether opens on `dev` are known never to wait.
    pub fn opens_never_wait(&self, dev: libc::dev_t) -> bool {
        self.local.contains(dev)
    }

    /// Whether `dev` was learnt at all (either way).
    pub fn knows(&self, dev: libc::dev_t) -> bool {
        self.local.contains(dev) || self.remote.contains(dev)
    }

    /// Learns, once per filesystem, whether the local kernel answers its
    /// opens (the `fstatfs(2)` type of `file`, which lives on `dev`). Call
    /// it where waiting is allowed: the `fstatfs` itself may ask a server.
    /// Where the system says nothing usable, nothing is learnt.
    pub fn learn_filesystem(&self, file: BorrowedFd<'_>, dev: libc::dev_t) {
        if self.knows(dev) {
            return;
        }
        match crate::os::filesystem_of(file) {
            Some((_, true)) => {
                self.local.insert(dev);
            }
            Some((fs_type, false)) if self.remote.insert(dev) => {
                self.note(Note::OpensMayWait { dev, fs_type });
            }
            Some(_) | None => {}
        }
    }

    /// Records that `dev` is local: opens on it never wait (tests, and a
    /// side told so by the other).
    pub fn mark_local(&self, dev: libc::dev_t) {
        self.local.insert(dev);
    }

    /// Records that opens on `dev` may wait (tests; a filesystem learnt
    /// elsewhere).
    pub fn mark_remote(&self, dev: libc::dev_t) {
        self.remote.insert(dev);
    }

    /// Whether the kernel has no `openat2`.
    pub fn no_openat2(&self) -> bool {
        self.no_openat2.load(Ordering::Relaxed)
    }

    /// Records that the kernel has no `openat2`.
    pub fn set_no_openat2(&self) {
        if !self.no_openat2.swap(true, Ordering::Relaxed) {
            self.note(Note::NoOpenat2);
        }
    }

    /// Whether the kernel has no `RESOLVE_CACHED`.
    pub fn no_resolve_cached(&self) -> bool {
        self.no_resolve_cached.load(Ordering::Relaxed)
    }

    /// Records that `openat2` has no `RESOLVE_CACHED`.
    pub fn set_no_resolve_cached(&self) {
        if !self.no_resolve_cached.swap(true, Ordering::Relaxed) {
            self.note(Note::NoResolveCached);
        }
    }

    /// Whether the kernel has no `RWF_NOWAIT`.
    pub fn no_nowait(&self) -> bool {
        self.no_nowait.load(Ordering::Relaxed)
    }

    pub(crate) fn set_no_nowait(&self) {
        if !self.no_nowait.swap(true, Ordering::Relaxed) {
            self.note(Note::NoNowait);
        }
    }

    /// Whether any filesystem refused `RWF_NOWAIT` (the probe then asks for
    /// the file's device first).
    pub fn any_nowait_refused(&self) -> bool {
        !self.nowait_refused.is_empty()
    }

    /// Whether `dev`'s filesystem refused `RWF_NOWAIT`.
    pub fn nowait_refused(&self, dev: libc::dev_t) -> bool {
        self.nowait_refused.contains(dev)
    }

    /// Whether `dev`'s filesystem answered `RWF_NOWAIT` before.
    pub fn nowait_answered(&self, dev: libc::dev_t) -> bool {
        self.nowait_answered.contains(dev)
    }

    /// Records that `dev`'s filesystem answered `RWF_NOWAIT`.
    pub fn set_nowait_answered(&self, dev: libc::dev_t) {
        if !self.nowait_answered.contains(dev) {
            self.nowait_answered.insert(dev);
        }
    }

    /// Records that `dev`'s filesystem refused `RWF_NOWAIT`; true the first
    /// time.
    pub fn set_nowait_refused(&self, dev: libc::dev_t) -> bool {
        let fresh = self.nowait_refused.insert(dev);
        if fresh {
            self.note(Note::NowaitRefused { dev });
        }
        fresh
    }
}

/// How many filesystems a [`DeviceSet`] remembers. A daemon's root spans a
/// handful of filesystems at most; past this many, files on further ones are
/// still answered correctly, only more slowly: a refused probe counts as
/// cached (one failed `preadv2` per chunk), and an open on a filesystem not
/// learnt is a disk thread's.
pub const DEVICE_SET_SLOTS: usize = 16;

/// A set of devices (`st_dev`), for facts about a filesystem (it refused
/// `RWF_NOWAIT`; it answers opens locally): a small fixed set of slots,
/// lock-free for readers, filled once per filesystem. 0 marks a free slot (a device number of 0 is kept in a flag of
/// its own).
#[derive(Debug, Default)]
pub struct DeviceSet {
    slots: [AtomicU64; DEVICE_SET_SLOTS],
    dev_zero: AtomicBool,
    used: AtomicUsize,
}

impl DeviceSet {
    /// Whether no filesystem has been remembered yet (the common case: then
    /// the probe needs no `fstat`).
    pub fn is_empty(&self) -> bool {
        self.used.load(Ordering::Acquire) == 0
    }

    /// Whether `dev` was remembered.
    pub fn contains(&self, dev: libc::dev_t) -> bool {
        if dev == 0 {
            return self.dev_zero.load(Ordering::Acquire);
        }
        self.slots
            .iter()
            .any(|s| s.load(Ordering::Acquire) == key(dev))
    }

    /// Remembers `dev`; true if it was not remembered before (and now is).
    /// False when already there, or when every slot is taken.
    pub fn insert(&self, dev: libc::dev_t) -> bool {
        if dev == 0 {
            let fresh = !self.dev_zero.swap(true, Ordering::AcqRel);
            if fresh {
                self.used.fetch_add(1, Ordering::AcqRel);
            }
            return fresh;
        }
        for s in &self.slots {
            match s.compare_exchange(0, key(dev), Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    self.used.fetch_add(1, Ordering::AcqRel);
                    return true;
                }
                Err(there) if there == key(dev) => return false,
                Err(_) => {}
            }
        }
        false
    }
}

/// A device number as a slot's value (`dev_t` is 32 bits on macOS).
#[allow(clippy::unnecessary_cast)]
fn key(dev: libc::dev_t) -> u64 {
    dev as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nowait_memory_remembers_each_device_once() {
        let m = DeviceSet::default();
        assert!(m.is_empty());
        assert!(!m.contains(7));
        assert!(m.insert(7), "first time");
        assert!(!m.is_empty());
        assert!(m.contains(7));
        assert!(!m.insert(7), "already there");
        assert!(!m.contains(8), "another device is not refused");
        // Device 0 is not confused with a free slot.
        assert!(!m.contains(0));
        assert!(m.insert(0));
        assert!(m.contains(0));
        assert!(!m.insert(0));
        // Fill the rest; past the capacity nothing more is remembered.
        for dev in 100..(100 + DEVICE_SET_SLOTS as libc::dev_t - 1) {
            assert!(m.insert(dev), "{dev}");
        }
        assert!(!m.insert(5000), "full");
        assert!(!m.contains(5000));
        assert!(m.contains(7) && m.contains(100));
    }
}
