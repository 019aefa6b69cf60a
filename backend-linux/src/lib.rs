//! The Linux [`TransferBackend`]: `splice(2)` into pipes, `sendfile(2)` to
//! everything else, a page-cache probe with `preadv2(RWF_NOWAIT)`, and path
//! confinement with `openat2(RESOLVE_BENEATH)`.
//!
//! | destination | file data | header/trailer bytes |
//! |---|---|---|
//! | pipe | `splice` (`SPLICE_F_NONBLOCK`) | `pwritev2(RWF_NOWAIT)` (else `write` within the pipe's room) |
//! | stream socket | `sendfile` | `send(MSG_DONTWAIT | MSG_NOSIGNAL [| MSG_MORE])` |
//! | socket whose `O_NONBLOCK` is clear at the call | `pread` + `send(MSG_DONTWAIT)` | as above |
//! | character device (terminals are refused) | `pread` + `pwritev2(RWF_NOWAIT)` | `pwritev2(RWF_NOWAIT)` |
//! | regular file (on a disk thread) | `sendfile` | `write` |
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
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use sendfiled_core::backend::{
    DestKind, FileChunk, Moved, OpenAttempt, ReadWriteCopy, TransferBackend,
};
use sendfiled_core::sys;
use sendfiled_core::sys::beneath::{self, Resolve};
use sendfiled_core::sys::cache::{self, Residency};
use sendfiled_core::sys::fsfacts::{FsFacts, Note};
use sendfiled_core::sys::linux::{readahead, sendfile, set_pipe_size, splice};

#[cfg(test)]
mod tests;

/// The environment variable that, set to `1`, makes [`new_backend`] use the
/// portable paths only (see [`LinuxOptions::from_env_value`]).
pub const FORCE_FALLBACK_ENV: &str = "SENDFILED_FORCE_FALLBACK";

/// Switches that make the Linux backend take the portable paths the other
/// systems use, so that the Linux test suite exercises them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinuxOptions {
    /// Confine opens with [`beneath::open_beneath_by_walk`] (the macOS path)
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

/// The Linux backend. Cheap to share: its state is what it learnt of the
/// kernel and of each filesystem ([`FsFacts`]: which answer no page-cache
/// probe, which answer opens without a server), logged once each.
#[derive(Debug)]
pub struct LinuxBackend {
    opts: LinuxOptions,
    /// What the kernel lacks and what each filesystem (by `st_dev`) is:
    /// a file on a local filesystem (ext4, xfs, btrfs, tmpfs, ...) opens on
    /// the loop from the kernel's caches and keeps the `O_NONBLOCK` of its
    /// open (its reads ignore it); a filesystem not learnt yet is learnt by
    /// the first open, on a disk thread; opens on one that may wait on a
    /// server or a FUSE daemon are every time a disk thread's.
    facts: FsFacts,
    /// `/dev/null`, where [`prefetch`](TransferBackend::prefetch) sends
    /// file data to wait for it without copying it (absent in a chroot
    /// without `/dev`: the data is then read into a buffer).
    devnull: Option<OwnedFd>,
}

impl Default for LinuxBackend {
    fn default() -> Self {
        LinuxBackend {
            opts: LinuxOptions::default(),
            facts: FsFacts::with_notes(log_note),
            devnull: None,
        }
    }
}

/// The one line each fact learnt gets in the log.
fn log_note(note: &Note) {
    let dev = |d: libc::dev_t| format!("{}:{}", libc::major(d), libc::minor(d));
    match *note {
        Note::NoOpenat2 => log::info!("openat2 unavailable; confining opens by a checked walk"),
        Note::NoResolveCached => {
            log::info!("openat2 has no RESOLVE_CACHED; opens are made on the loop")
        }
        Note::OpensMayWait { dev: d, fs_type } => log::info!(
            "opens on device {} (filesystem type {fs_type:#x}) may wait on a server or \
             a FUSE daemon: they are made on the disk threads",
            dev(d)
        ),
        Note::NowaitRefused { dev: d } => log::info!(
            "preadv2(RWF_NOWAIT) unsupported on the filesystem of device {}; its page \
             cache is not probed",
            dev(d)
        ),
        Note::NoNowait => {
            log::info!("preadv2(RWF_NOWAIT) unsupported by the kernel; page cache not probed")
        }
    }
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

    /// Whether the chunk's data is in the page cache
    /// ([`cache::probe_counted_first`]: one `cachestat` for a cached
    /// chunk). A filesystem or kernel that cannot tell counts as cached:
    /// the copy then runs on the loop, as it always did there. A miss is
    /// not wasted: the kernel starts reading the page in before it answers.
    fn is_cached(&self, chunk: &FileChunk<'_>) -> io::Result<bool> {
        match cache::probe_counted_first(chunk.file, chunk.offset, chunk.len, &self.facts)? {
            Residency::NotCached => {
                log::debug!(
                    "page cache miss at byte {}: the chunk goes to the disk threads",
                    chunk.offset
                );
                Ok(false)
            }
            Residency::Cached | Residency::Unknown => Ok(true),
        }
    }

    /// The facts learnt so far (tests).
    pub fn facts(&self) -> &FsFacts {
        &self.facts
    }

    fn open(&self, root: BorrowedFd<'_>, path: &CStr, cached_only: bool) -> OpenAttempt {
        let how = Resolve {
            cached_only,
            same_mount: false,
            else_open: true,
            force_walk: self.opts.force_walk,
        };
        beneath::open_beneath(root, path, how, &self.facts)
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
        if self.opts.force_read_write || kind == DestKind::Other {
            // A device: `pread` + `pwritev2(RWF_NOWAIT)`, the one write that
            // never waits on it whatever its `O_NONBLOCK` (`sendfile` would).
            return ReadWriteCopy::send_file(chunk, dest, kind);
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
            Err(e) if unsupported(&e) => ReadWriteCopy::send_file(chunk, dest, kind),
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
            // RWF_NOWAIT, or a pipe's reported room: never the flag.
            _ => sys::write_nowait(dest, buf, kind),
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
    /// [`beneath::open_beneath_by_walk`] does the same job.
    fn open_beneath(&self, root: BorrowedFd<'_>, path: &CStr) -> io::Result<(OwnedFd, libc::stat)> {
        match self.open(root, path, false) {
            OpenAttempt::Done(r) => r,
            // Not asked for: only a cached lookup answers it.
            OpenAttempt::WouldBlock => Err(io::Error::from_raw_os_error(libc::EAGAIN)),
        }
    }

    /// The `openat2` path with `RESOLVE_CACHED` (see
    /// [`sendfiled_core::sys::beneath::open_beneath`]); the checked walk has
    /// no cache-only form, so it opens on the loop.
    fn open_beneath_cached(&self, root: BorrowedFd<'_>, path: &CStr) -> OpenAttempt {
        self.open(root, path, true)
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
        let _ = set_pipe_size(pipe, len.min(READ_PIPE_CAPACITY as u64) as usize);
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
