//! The Linux [`TransferBackend`]: `splice(2)` into pipes, `sendfile(2)` to
//! everything else, a page-cache probe with `preadv2(RWF_NOWAIT)`, and path
//! confinement with `openat2(RESOLVE_BENEATH)`.
//!
//! | destination | file data | header/trailer bytes |
//! |---|---|---|
//! | pipe | `splice` (`SPLICE_F_NONBLOCK`) | `write` |
//! | stream socket | `sendfile` | `send(MSG_DONTWAIT | MSG_NOSIGNAL [| MSG_MORE])` |
//! | other socket | `sendfile` | `send(MSG_DONTWAIT | MSG_NOSIGNAL)` |
//! | socket whose client cleared `O_NONBLOCK` | `pread` + `send(MSG_DONTWAIT)` | as above |
//! | regular file, other | `sendfile` | `write` |
//!
//! Where `splice`/`sendfile` refuse a destination (`EINVAL`, `ENOSYS`) the
//! portable [`ReadWriteCopy`] takes over. There is no native header/trailer
//! call: the server uses [`write_bytes`](TransferBackend::write_bytes) with
//! `MSG_MORE`, then [`send_file`](TransferBackend::send_file).
//!
//! `sendfile`, `splice` and `write` raise `SIGPIPE` when the reader has gone
//! (only `send` can be told not to): the daemon must ignore `SIGPIPE` and
//! take `EPIPE` as the error.
//!
//! The crate is empty on other systems.
#![cfg(target_os = "linux")]

use std::ffi::{CStr, OsStr};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use sendfiled_core::backend::{
    DestKind, FileChunk, Moved, OpenAttempt, ReadWriteCopy, TransferBackend,
};
use sendfiled_core::{confine, sys};

#[cfg(test)]
mod tests;

/// The environment variable that, set to `1`, makes [`new_backend`] use the
/// portable paths only (see [`LinuxOptions::from_env_value`]).
pub const FORCE_FALLBACK_ENV: &str = "SENDFILED_FORCE_FALLBACK";

/// Switches that make the Linux backend take the portable paths the other
/// systems use, so that the Linux test suite exercises them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinuxOptions {
    /// Confine opens with [`confine::open_beneath_by_walk`] (the macOS path)
    /// instead of `openat2`.
    pub force_walk: bool,
    /// Move file data with [`ReadWriteCopy`] (the FreeBSD/macOS path for
    /// pipes and files) instead of `splice`/`sendfile`.
    pub force_read_write: bool,
}

impl LinuxOptions {
    /// The options for a value of [`FORCE_FALLBACK_ENV`]: `1` forces both
    /// portable paths, anything else (or unset) neither.
    pub fn from_env_value(value: Option<&OsStr>) -> Self {
        let on = value.is_some_and(|v| v == "1");
        LinuxOptions {
            force_walk: on,
            force_read_write: on,
        }
    }
}

/// The Linux backend. Cheap to share: its state remembers what the kernel
/// turned out not to support (three flags), which filesystems answer no
/// page-cache probe, and which answer opens without a server
/// ([`DeviceSet`]s).
#[derive(Debug, Default)]
pub struct LinuxBackend {
    opts: LinuxOptions,
    /// The kernel has no `preadv2(RWF_NOWAIT)` at all (`ENOSYS`, `EINVAL`
    /// for the flag): stop probing (see [`LinuxBackend::is_cached`]).
    no_nowait: AtomicBool,
    /// The filesystems (by `st_dev`) that refused `RWF_NOWAIT` with
    /// `EOPNOTSUPP`: files there are not probed.
    nowait_refused: DeviceSet,
    /// `openat2` is missing (Linux < 5.6, or filtered): walk instead.
    no_openat2: AtomicBool,
    /// `openat2` refused `RESOLVE_CACHED` (Linux < 5.12): every open is
    /// made on the loop.
    no_resolve_cached: AtomicBool,
    /// Filesystems (by `st_dev`) whose opens, stats and locks the local
    /// kernel answers (ext4, xfs, btrfs, tmpfs, ...): a cached lookup there
    /// opens on the loop, and a file opened there keeps the `O_NONBLOCK` of
    /// its open (its reads ignore it). A filesystem not in it yet is learnt
    /// by the first open, on a disk thread
    /// ([`LinuxBackend::learn_filesystem`]).
    local_fs: DeviceSet,
    /// Filesystems whose opens may wait on a server or a FUSE daemon (NFS,
    /// CIFS, FUSE, anything not known to be local): every open there is a
    /// disk thread's.
    remote_fs: DeviceSet,
    /// `/dev/null`, where [`prefetch`](TransferBackend::prefetch) sends
    /// file data to wait for it without copying it (absent in a chroot
    /// without `/dev`: the data is then read into a buffer).
    devnull: Option<OwnedFd>,
}

/// The backend of this system, under the name every backend crate exports
/// (see [`sendfiled_core::backend`]'s "What a backend crate exports").
pub type Backend = LinuxBackend;

/// The backend of this system, configured from the environment
/// ([`FORCE_FALLBACK_ENV`]).
pub fn new_backend() -> Backend {
    let value = std::env::var_os(FORCE_FALLBACK_ENV);
    let opts = LinuxOptions::from_env_value(value.as_deref());
    if opts != LinuxOptions::default() {
        log::info!("{FORCE_FALLBACK_ENV}=1: using the portable read/write copy and path walk");
    }
    LinuxBackend::with_options(opts)
}

impl LinuxBackend {
    /// The backend with every Linux facility enabled.
    pub fn new() -> Self {
        Self::with_options(LinuxOptions::default())
    }

    /// The backend with some portable paths forced (for tests).
    pub fn with_options(opts: LinuxOptions) -> Self {
        let devnull = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/null")
            .ok()
            .map(OwnedFd::from);
        LinuxBackend {
            opts,
            devnull,
            ..Self::default()
        }
    }

    /// Whether the chunk's data is in the page cache, probed with two one-byte
    /// `preadv2(RWF_NOWAIT)` reads: at the chunk's first byte and at its last.
    ///
    /// `RWF_NOWAIT` answers for the pages it would read, so one byte only
    /// speaks for the first page. The two ends catch the common cases: a cold
    /// file (nothing cached) and a file read partway (cached prefix, the
    /// boundary falls inside the chunk). A hole in the middle (a page evicted
    /// on its own) is missed and costs one blocking read on the loop; probing
    /// every page would cost a system call per page on every chunk.
    /// (`cachestat(2)`, Linux 6.5, could answer for the whole range at once.)
    /// A probe that misses is not wasted: the kernel starts reading the page
    /// in (readahead) before it answers `EAGAIN`.
    ///
    /// A filesystem without `RWF_NOWAIT` support (tmpfs, some FUSE and
    /// network filesystems) answers `EOPNOTSUPP`: the data then counts as
    /// cached, and that filesystem's `st_dev` is remembered so that its files
    /// are not probed again ([`DeviceSet`]). Support is a fact about a
    /// filesystem, not about the daemon: one tmpfs under the root must not
    /// switch the probe off for the disk next to it. Only a kernel without
    /// the call or the flag (`ENOSYS`, `EINVAL`: before Linux 4.14) stops
    /// probing everywhere. While no filesystem has refused, a probe costs no
    /// more than before; once one has, each probe first asks `fstat` for the
    /// file's device.
    fn is_cached(&self, chunk: &FileChunk<'_>) -> io::Result<bool> {
        if chunk.len == 0 || self.no_nowait.load(Ordering::Relaxed) {
            return Ok(true);
        }
        if !self.nowait_refused.is_empty() {
            if let Ok(st) = sys::fstat(chunk.file) {
                if self.nowait_refused.contains(st.st_dev) {
                    return Ok(true);
                }
            }
        }
        let first = chunk.offset;
        let last = first.saturating_add(chunk.len as u64 - 1);
        let probes = if first / 4096 == last / 4096 {
            &[first][..]
        } else {
            &[first, last][..]
        };
        for &at in probes {
            let mut byte = [0u8; 1];
            match preadv2_nowait(chunk.file, &mut byte, at) {
                // 0 is the end of the file: nothing there to wait for.
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    log::debug!("page cache miss at byte {at}: the chunk goes to the disk threads");
                    return Ok(false);
                }
                Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
                    let st = sys::fstat(chunk.file)?;
                    if self.nowait_refused.insert(st.st_dev) {
                        log::info!(
                            "preadv2(RWF_NOWAIT) unsupported on the filesystem of device {}:{} \
                             ({e}); its page cache is not probed",
                            libc::major(st.st_dev),
                            libc::minor(st.st_dev)
                        );
                    }
                    return Ok(true);
                }
                Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOSYS)) => {
                    log::info!("preadv2(RWF_NOWAIT) unsupported by the kernel ({e}); page cache not probed");
                    self.no_nowait.store(true, Ordering::Relaxed);
                    return Ok(true);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Opens a regular file beneath `root` with two `openat2` calls: an
    /// `O_PATH` one, which opens nothing for reading, so that `fstat` can
    /// tell the type first (anything but a regular file is `EINVAL`, and a
    /// FIFO is never opened), then the open for reading, with `O_NONBLOCK`
    /// so that a FIFO swapped in between cannot block it, kept only if it
    /// is the file the first one saw (else the lookup starts again).
    ///
    /// `RESOLVE_BENEATH` alone refuses magic links (`/proc/self/root`) with
    /// `EXDEV`, like any escape, and that is what the walk answers for them;
    /// `RESOLVE_NO_MAGICLINKS` would make it `ELOOP`, which means a loop.
    ///
    /// With `cached`, both lookups also carry `RESOLVE_CACHED` (Linux 5.12):
    /// the kernel answers `EAGAIN` instead of reading a directory or an
    /// inode from disk, or asking a network filesystem to revalidate, and
    /// that is [`OpenAttempt::WouldBlock`]. (`EAGAIN` also stands for a
    /// rename racing the lookup; the blocking open retries that.) A kernel
    /// without the flag answers `EINVAL` for it: remembered, and the lookup
    /// is made as before. The look's type and identity then come from
    /// [`stat_unsynced`] (no server asked), and a file on a filesystem not
    /// known to answer opens locally is `WouldBlock` too: its open, `fstat`
    /// and lock may each wait on a server or a FUSE daemon.
    fn open_by_openat2(
        &self,
        root: BorrowedFd<'_>,
        path: &CStr,
        cached: bool,
    ) -> Option<OpenAttempt> {
        let path = match confine::check_request(path) {
            Ok(p) => p,
            Err(e) => return Some(OpenAttempt::Done(Err(e))),
        };
        let cached = cached && !self.no_resolve_cached.load(Ordering::Relaxed);
        let resolve = libc::RESOLVE_BENEATH | if cached { libc::RESOLVE_CACHED } else { 0 };
        let look = OpenHow {
            flags: (libc::O_PATH | libc::O_CLOEXEC) as u64,
            mode: 0,
            resolve,
        };
        let read = OpenHow {
            flags: confine::OPEN_FLAGS as u64,
            ..look
        };
        let done = |r| Some(OpenAttempt::Done(r));
        // EAGAIN: a rename or mount raced with the lookup; the kernel asks
        // for a retry. Bounded, so a hostile renamer cannot keep us here.
        for _ in 0..16 {
            let seen = match openat2(root, path, &look) {
                Ok(fd) if cached => match stat_unsynced(fd.as_fd()) {
                    Ok(st) if !self.local_fs.contains(st.st_dev) => {
                        return Some(OpenAttempt::WouldBlock)
                    }
                    Ok(st) => st,
                    Err(e) => return done(Err(e)),
                },
                Ok(fd) => match sys::fstat(fd.as_fd()) {
                    Ok(st) => st,
                    Err(e) => return done(Err(e)),
                },
                Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
                    log::info!("openat2 unavailable; confining opens by a checked walk");
                    self.no_openat2.store(true, Ordering::Relaxed);
                    return None;
                }
                Err(e) if cached && e.raw_os_error() == Some(libc::EINVAL) => {
                    log::info!("openat2 has no RESOLVE_CACHED; opens are made on the loop");
                    self.no_resolve_cached.store(true, Ordering::Relaxed);
                    return self.open_by_openat2(root, path, false);
                }
                Err(e) if cached && e.raw_os_error() == Some(libc::EAGAIN) => {
                    return Some(OpenAttempt::WouldBlock)
                }
                Err(e) if retry(&e) => continue,
                Err(e) => return done(Err(e)),
            };
            if !sys::is_regular(&seen) {
                return done(Err(io::Error::from_raw_os_error(libc::EINVAL)));
            }
            let fd = match openat2(root, path, &read) {
                Ok(fd) => fd,
                Err(e) if cached && e.raw_os_error() == Some(libc::EAGAIN) => {
                    return Some(OpenAttempt::WouldBlock)
                }
                // A socket swapped in since the look.
                Err(e) if retry(&e) || e.raw_os_error() == Some(libc::ENXIO) => continue,
                Err(e) => return done(Err(e)),
            };
            match sys::fstat(fd.as_fd()) {
                Ok(got) if confine::same_file(&seen, &got) => {
                    if !cached {
                        self.learn_filesystem(fd.as_fd(), got.st_dev);
                    }
                    // A local filesystem's regular files ignore O_NONBLOCK
                    // (reads, sendfile and splice from them never say
                    // EAGAIN for it), so the flag stays and costs no call.
                    // Elsewhere (FUSE passes it to its daemon with every
                    // read, procfs and tracefs files honour it) one ioctl
                    // clears it, where confine::finish_open uses fcntl
                    // F_GETFL + F_SETFL.
                    if self.local_fs.contains(got.st_dev) {
                        return done(Ok((fd, got)));
                    }
                    return done(clear_nonblocking(fd).map(|fd| (fd, got)));
                }
                // Another file was put there between the two opens.
                Ok(_) => continue,
                Err(e) => return done(Err(e)),
            }
        }
        done(Err(io::Error::from_raw_os_error(libc::EAGAIN)))
    }

    /// Learns, once per filesystem, whether the local kernel answers its
    /// opens ([`opens_never_wait`] of its `fstatfs(2)` type): called after
    /// an open off the loop, where the `fstatfs` itself may ask a server.
    fn learn_filesystem(&self, file: BorrowedFd<'_>, dev: libc::dev_t) {
        if self.local_fs.contains(dev) || self.remote_fs.contains(dev) {
            return;
        }
        let mut sfs = std::mem::MaybeUninit::<libc::statfs>::zeroed();
        // SAFETY: fstatfs writes one statfs through the pointer.
        if unsafe { libc::fstatfs(file.as_raw_fd(), sfs.as_mut_ptr()) } < 0 {
            return;
        }
        // SAFETY: written by the successful call (and zeroed before it).
        let magic = unsafe { sfs.assume_init() }.f_type as u32;
        if opens_never_wait(magic) {
            self.local_fs.insert(dev);
        } else if self.remote_fs.insert(dev) {
            log::info!(
                "opens on device {}:{} (filesystem type {magic:#x}) may wait on a server or \
                 a FUSE daemon: they are made on the disk threads",
                libc::major(dev),
                libc::minor(dev)
            );
        }
    }
}

/// Whether a filesystem of this `statfs` type (linux/magic.h) answers
/// opens, stats and shared locks from the local kernel and its disks
/// alone. Network filesystems (NFS, CIFS, 9p, Ceph) and FUSE may wait on a
/// server or a daemon for each, and anything unknown counts as such.
pub fn opens_never_wait(magic: u32) -> bool {
    const LOCAL: &[u32] = &[
        0xEF53,      // ext2, ext3, ext4
        0x5846_5342, // xfs
        0x9123_683E, // btrfs
        0x0102_1994, // tmpfs
        0x8584_58F6, // ramfs
        0xF2F5_2010, // f2fs
        0x794C_7630, // overlayfs
        0x7371_7368, // squashfs
        0xE0F5_E1E2, // erofs
        0x9660,      // iso9660
        0x2FC1_2FC1, // zfs
        0xCA45_1A4E, // bcachefs
        0x3153_464A, // jfs
        0x5265_4973, // reiserfs
        0x4D44,      // vfat, msdos
        0x2011_BAB0, // exfat
        0x5346_544E, // ntfs, ntfs3
        0x1501_3346, // udf
        0x3434,      // nilfs2
        0x482B,      // hfsplus
    ];
    LOCAL.contains(&magic)
}

/// `statx(2)` of the descriptor itself with `AT_STATX_DONT_SYNC`: its type
/// and identity as the kernel holds them, without asking a network
/// filesystem's server or a FUSE daemon to revalidate (as `fstat` may).
/// Only `st_dev`, `st_ino` and `st_mode` are filled in.
fn stat_unsynced(fd: BorrowedFd<'_>) -> io::Result<libc::stat> {
    let mut sx = std::mem::MaybeUninit::<libc::statx>::zeroed();
    // SAFETY: the path is a NUL-terminated empty string (AT_EMPTY_PATH:
    // the descriptor itself); statx writes one statx through the pointer.
    let r = unsafe {
        libc::statx(
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_STATX_DONT_SYNC,
            libc::STATX_TYPE | libc::STATX_INO,
            sx.as_mut_ptr(),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: written by the successful call (and zeroed before it).
    let sx = unsafe { sx.assume_init() };
    // SAFETY: an all-zero stat is a valid value.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    st.st_dev = libc::makedev(sx.stx_dev_major, sx.stx_dev_minor);
    st.st_ino = sx.stx_ino as libc::ino_t;
    st.st_mode = libc::mode_t::from(sx.stx_mode);
    Ok(st)
}

/// Whether an `openat2` error asks for the call again.
fn retry(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::EAGAIN) || e.kind() == io::ErrorKind::Interrupted
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
        self.slots.iter().any(|s| s.load(Ordering::Acquire) == dev)
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
            match s.compare_exchange(0, dev, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    self.used.fetch_add(1, Ordering::AcqRel);
                    return true;
                }
                Err(there) if there == dev => return false,
                Err(_) => {}
            }
        }
        false
    }
}

/// What a pipe holds by default on Linux.
const DEFAULT_PIPE_CAPACITY: u64 = 64 * 1024;

/// What [`LinuxBackend::grow_pipe`] asks for at most: the default
/// `/proc/sys/fs/pipe-max-size`, so unprivileged daemons get it too.
pub const READ_PIPE_CAPACITY: usize = 1 << 20;

fn offset_of(offset: u64) -> io::Result<i64> {
    i64::try_from(offset).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// Whether a zero-copy call's error means "not for this kind of descriptor"
/// rather than a failure of the transfer.
fn unsupported(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOSYS))
}

impl TransferBackend for LinuxBackend {
    fn name(&self) -> &'static str {
        if self.opts.force_read_write {
            "linux-read-write"
        } else {
            "linux-splice"
        }
    }

    /// Moves file data with `splice` into pipes and `sendfile` elsewhere,
    /// both with an explicit offset, so the file's own position is never
    /// used and one open file can serve several transfers.
    ///
    /// `more_follows` has no effect here: `sendfile` has no `MSG_MORE`. It is
    /// the header's `MSG_MORE` ([`write_bytes`](Self::write_bytes)) that
    /// holds the header back so that it shares a segment with the first file
    /// bytes; the end of each `sendfile` call pushes what it queued.
    fn send_file(
        &self,
        chunk: FileChunk<'_>,
        dest: BorrowedFd<'_>,
        kind: DestKind,
    ) -> io::Result<Moved> {
        if chunk.nowait && !self.is_cached(&chunk)? {
            return Ok(Moved::NotCached);
        }
        if self.opts.force_read_write {
            return ReadWriteCopy::send_file(chunk, dest);
        }
        let mut off = offset_of(chunk.offset)?;
        let moved = match kind {
            DestKind::Pipe => splice(
                chunk.file,
                &mut off,
                dest,
                chunk.len,
                libc::SPLICE_F_NONBLOCK | libc::SPLICE_F_MOVE,
            ),
            _ => sendfile(dest, chunk.file, &mut off, chunk.len),
        };
        match moved {
            Ok(n) => Ok(Moved::Bytes(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Moved::DestinationFull),
            Err(e) if unsupported(&e) => ReadWriteCopy::send_file(chunk, dest),
            Err(e) => Err(e),
        }
    }

    /// `send(2)` on sockets, non-blocking per call (`MSG_DONTWAIT`, whatever
    /// the client did to `O_NONBLOCK`), so that a closed peer is `EPIPE`
    /// without a signal, and with `MSG_MORE` on stream sockets while more follows, so
    /// that a short header waits for the file data instead of going out as a
    /// segment of its own. `write(2)` elsewhere.
    fn write_bytes(
        &self,
        buf: &[u8],
        more_follows: bool,
        dest: BorrowedFd<'_>,
        kind: DestKind,
    ) -> io::Result<usize> {
        match kind {
            // MSG_DONTWAIT: the client may have cleared O_NONBLOCK.
            DestKind::StreamSocket => {
                let more = if more_follows { libc::MSG_MORE } else { 0 };
                sys::send_dontwait(dest, buf, more)
            }
            DestKind::OtherSocket => sys::send_dontwait(dest, buf, 0),
            _ => sys::write(dest, buf),
        }
    }

    /// The page-cache probe, then the portable copy with `MSG_DONTWAIT`.
    fn send_file_dontwait(
        &self,
        chunk: FileChunk<'_>,
        dest: BorrowedFd<'_>,
        _kind: DestKind,
    ) -> io::Result<Moved> {
        if chunk.nowait && !self.is_cached(&chunk)? {
            return Ok(Moved::NotCached);
        }
        ReadWriteCopy::send_file_dontwait(chunk, dest)
    }

    /// `openat2(RESOLVE_BENEATH)`, with the semantics of [`confine`]: leading
    /// `/` are dropped (request paths are relative to the root), escapes are
    /// `EXDEV`, relative symbolic links inside the root are followed, and
    /// only a regular file is opened (anything else is `EINVAL`, typed
    /// through an `O_PATH` descriptor before any open for reading). Where
    /// `openat2` is missing (`ENOSYS`: Linux < 5.6 or a seccomp filter), and
    /// with [`LinuxOptions::force_walk`], the checked walk of
    /// [`confine::open_beneath_by_walk`] does the same job.
    fn open_beneath(&self, root: BorrowedFd<'_>, path: &CStr) -> io::Result<(OwnedFd, libc::stat)> {
        if !self.opts.force_walk && !self.no_openat2.load(Ordering::Relaxed) {
            match self.open_by_openat2(root, path, false) {
                Some(OpenAttempt::Done(r)) => return r,
                // Not asked for: only a cached lookup would block.
                Some(OpenAttempt::WouldBlock) | None => {}
            }
        }
        confine::open_beneath_by_walk(root, path)
    }

    /// The `openat2` path with `RESOLVE_CACHED` (see `open_by_openat2`);
    /// the checked walk has no cache-only form, so it opens on the loop.
    fn open_beneath_cached(&self, root: BorrowedFd<'_>, path: &CStr) -> OpenAttempt {
        if !self.opts.force_walk && !self.no_openat2.load(Ordering::Relaxed) {
            if let Some(attempt) = self.open_by_openat2(root, path, true) {
                return attempt;
            }
        }
        OpenAttempt::Done(confine::open_beneath_by_walk(root, path))
    }

    /// `F_SETPIPE_SZ` up to [`READ_PIPE_CAPACITY`] when more than a default
    /// pipe's worth is coming: with the default 64 KiB every wake-up of the
    /// reader moves at most 64 KiB (a third of the in-process `read` rate
    /// for a cached 1 GiB file, by the benchmark). The kernel may refuse
    /// (`EPERM` past `/proc/sys/fs/pipe-user-pages-soft`): the pipe then
    /// simply stays as it is.
    fn grow_pipe(&self, pipe: BorrowedFd<'_>, len: u64) {
        if len <= DEFAULT_PIPE_CAPACITY {
            return;
        }
        let want = len.min(READ_PIPE_CAPACITY as u64) as libc::c_int;
        // SAFETY: plain fcntl on a descriptor we borrow.
        let _ = unsafe { libc::fcntl(pipe.as_raw_fd(), libc::F_SETPIPE_SZ, want) };
    }

    /// `readahead(2)` queues the whole range for reading in one request, then
    /// [`sys::prefetch_by_reading`] waits for it to arrive.
    ///
    /// `readahead` alone is not enough: it returns once the reads are queued,
    /// not done, so the loop's next `RWF_NOWAIT` probe could miss again and
    /// send the chunk straight back here. (`posix_fadvise(WILLNEED)` is the
    /// same, only more asynchronous.) Reading the range waits for exactly the
    /// pages we need, at the cost of copying them once into a scratch buffer
    /// on this disk thread. Filesystems where `readahead` fails with `EINVAL`
    /// (or kernels with `ENOSYS`) are simply read.
    fn prefetch(&self, file: BorrowedFd<'_>, offset: u64, len: usize) -> io::Result<()> {
        if len == 0 {
            return Ok(());
        }
        match readahead(file, offset_of(offset)?, len) {
            Ok(()) => {}
            Err(e) if unsupported(&e) => {}
            Err(e) => return Err(e),
        }
        if let Some(null) = &self.devnull {
            if prefetch_to_null(file, null.as_fd(), offset, len).is_ok() {
                return Ok(());
            }
        }
        sys::prefetch_by_reading(file, offset, len)
    }
}

/// Waits for `len` bytes of `file` at `offset` to be in the page cache by
/// `sendfile`-ing them to `/dev/null`: the kernel reads the pages in and
/// hands references to the null device, which drops them, so nothing is
/// copied (a read into a buffer copies every byte once on a disk thread
/// that shares the CPUs with the loop). Fails (the caller then reads) where
/// the null device takes no `sendfile`.
fn prefetch_to_null(
    file: BorrowedFd<'_>,
    null: BorrowedFd<'_>,
    offset: u64,
    len: usize,
) -> io::Result<()> {
    let mut off = offset_of(offset)?;
    let end = off.saturating_add(len as i64);
    while off < end {
        let want = (end - off) as usize;
        match sendfile(null, file, &mut off, want) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Clears `O_NONBLOCK` (with [`sys::set_nonblocking`]'s one `ioctl`).
fn clear_nonblocking(fd: OwnedFd) -> io::Result<OwnedFd> {
    sys::set_nonblocking(fd.as_fd(), false)?;
    Ok(fd)
}

/// `splice(2)` of up to `len` bytes from `file` at `*offset` (advanced by the
/// kernel) into the pipe `pipe`.
fn splice(
    file: BorrowedFd<'_>,
    offset: &mut i64,
    pipe: BorrowedFd<'_>,
    len: usize,
    flags: libc::c_uint,
) -> io::Result<usize> {
    // SAFETY: offset is a valid loff_t for the call; no output offset (pipe).
    sys::cvt_len(unsafe {
        libc::splice(
            file.as_raw_fd(),
            offset,
            pipe.as_raw_fd(),
            std::ptr::null_mut(),
            len,
            flags,
        )
    })
}

/// `sendfile(2)` of up to `len` bytes of `file` at `*offset` (advanced by the
/// kernel) to `out`.
fn sendfile(
    out: BorrowedFd<'_>,
    file: BorrowedFd<'_>,
    offset: &mut i64,
    len: usize,
) -> io::Result<usize> {
    // SAFETY: offset is a valid off_t for the call.
    sys::cvt_len(unsafe { libc::sendfile(out.as_raw_fd(), file.as_raw_fd(), offset, len) })
}

/// `preadv2(2)` with `RWF_NOWAIT`: reads only what is in the page cache,
/// `EAGAIN` otherwise.
fn preadv2_nowait(file: BorrowedFd<'_>, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: iov describes buf, which is writable for its length.
    sys::cvt_len(unsafe {
        libc::preadv2(
            file.as_raw_fd(),
            &iov,
            1,
            offset_of(offset)?,
            libc::RWF_NOWAIT,
        )
    })
}

/// `struct open_how` of `<linux/openat2.h>` (version 0, 24 bytes). Defined
/// here because the `libc` one cannot be built outside `libc`
/// (`#[non_exhaustive]`).
#[repr(C)]
#[derive(Debug)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// `openat2(2)`, called by number: glibc has no wrapper.
fn openat2(dir: BorrowedFd<'_>, path: &CStr, how: &OpenHow) -> io::Result<OwnedFd> {
    // SAFETY: path is NUL-terminated and how is a valid open_how of the size
    // we pass.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            path.as_ptr(),
            how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: openat2 returned a new descriptor we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) })
}

/// `readahead(2)`: queues reads of the range into the page cache.
fn readahead(file: BorrowedFd<'_>, offset: i64, len: usize) -> io::Result<()> {
    // SAFETY: plain call on a descriptor we borrow.
    let r = unsafe { libc::readahead(file.as_raw_fd(), offset, len) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
