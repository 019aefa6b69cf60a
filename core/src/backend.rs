//! The seam between the portable server and the operating system.
//!
//! A [`TransferBackend`] holds only the system calls that move bytes and open
//! files; every decision (how much to move, what "destination full" means for
//! the transfer, when to fall back to a userspace copy, how partial progress is
//! accounted across header, file and trailer) lives in portable code that the
//! Linux test suite runs.
//!
//! # What a backend crate exports
//!
//! Each system has its own crate (`sendfiled-backend-linux`, `-freebsd`,
//! `-macos`). The daemon picks the one for its target in one `cfg_if` in
//! `src/main.rs` and uses no other names than these, which every backend
//! crate exports in the same form:
//!
//! - `pub type Backend`: the system's [`TransferBackend`] (`Send + Sync`,
//!   shared by the event loop and the disk threads);
//! - `pub fn new_backend() -> Backend`: the backend as the daemon runs it,
//!   configured from the environment where the crate documents a switch
//!   (Linux: `SENDFILED_FORCE_FALLBACK`). It does not fail: what the kernel
//!   turns out not to support is found out, and worked around, per call.
//!
//! A crate is empty on every other system (`#![cfg(target_os = ...)]` at its
//! top), so the workspace builds, and its portable parts are tested,
//! everywhere. Anything else a crate exports (Linux's `LinuxOptions`, say)
//! is for its own tests and benchmarks.

use std::ffi::CStr;
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};

/// Destination kinds are found by [`crate::sys::dest_kind`]; the type lives
/// there so that `sys` needs nothing from this module.
pub use crate::sys::DestKind;

/// What one attempt to move file data achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moved {
    /// This many bytes went to the destination (0 = the file ended early).
    Bytes(usize),
    /// The destination is full; wait for it to become writable.
    DestinationFull,
    /// The data is not in the page cache; bring it in off the event loop
    /// ([`TransferBackend::prefetch`]) before trying again. Backends may
    /// report bytes moved before the miss as `Bytes`, and the miss on the
    /// next call.
    NotCached,
}

/// One chunk of work for [`TransferBackend::send_file`].
#[derive(Debug, Clone, Copy)]
pub struct FileChunk<'a> {
    /// The open file being sent.
    pub file: BorrowedFd<'a>,
    /// Where in the file the chunk starts.
    pub offset: u64,
    /// The most bytes to move in this call.
    pub len: usize,
    /// Whether more bytes (more file data or a trailer) follow this call
    /// within the same transfer: backends may hold a partial segment back
    /// (`MSG_MORE`, `SF_NOPUSH`).
    pub more_follows: bool,
    /// Whether the caller accepts [`Moved::NotCached`] instead of a blocking
    /// read from disk.
    pub nowait: bool,
}

/// Header and trailer bytes around a file range, for backends with a native
/// facility (`sf_hdtr`) that sends all three in one call.
#[derive(Debug, Clone, Copy)]
pub struct HdtrChunk<'a> {
    /// Header bytes not yet sent (may be empty).
    pub header: &'a [u8],
    /// The file part (its `len` may be 0).
    pub file: FileChunk<'a>,
    /// Trailer bytes not yet sent (may be empty); sent only if the whole file
    /// part went out.
    pub trailer: &'a [u8],
}

/// The operating system's ways of moving file data. One implementation per
/// OS, chosen at compile time; tests use fakes that return chosen errors.
///
/// Every method must not block on the destination (it is non-blocking) and
/// must report `EAGAIN` as [`Moved::DestinationFull`] or an
/// [`io::ErrorKind::WouldBlock`] error. `EINTR` may be returned as an error;
/// the caller retries.
///
/// A destination's `O_NONBLOCK` is shared with the client, which may clear
/// it: writes of bytes from memory must therefore be non-blocking per call
/// ([`crate::sys::write_nowait`]: `MSG_DONTWAIT`, `RWF_NOWAIT`, or a pipe's
/// reported room), and file data into a pipe too (`SPLICE_F_NONBLOCK`).
/// `sendfile` to a socket has no such flag: the server looks at the flag
/// before each call and uses
/// [`send_file_dontwait`](Self::send_file_dontwait) when it is clear; the
/// server's backstop interrupts a call that blocks anyway.
pub trait TransferBackend: Send + Sync + 'static {
    /// A short name for logs ("linux-splice", "freebsd-sendfile", ...).
    fn name(&self) -> &'static str;

    /// Moves up to `chunk.len` bytes of the file at `chunk.offset` to `dest`.
    ///
    /// The offset is explicit: the file's own position is neither used nor
    /// moved. `Bytes(0)` means the file ended before `chunk.offset` (or
    /// `chunk.len` was 0). With `chunk.nowait`, backends that can tell answer
    /// [`Moved::NotCached`] rather than read from disk (Linux probes the
    /// chunk's first and last page, FreeBSD uses `SF_NODISKIO` on sockets);
    /// the others read, which may block on the disk.
    fn send_file(
        &self,
        chunk: FileChunk<'_>,
        dest: BorrowedFd<'_>,
        kind: DestKind,
    ) -> io::Result<Moved>;

    /// Writes bytes from memory (a header or trailer) to `dest`; returns how
    /// many went out. `more_follows` says file data or a trailer comes next.
    fn write_bytes(
        &self,
        buf: &[u8],
        more_follows: bool,
        dest: BorrowedFd<'_>,
        kind: DestKind,
    ) -> io::Result<usize> {
        let _ = more_follows;
        crate::sys::write_nowait(dest, buf, kind)
    }

    /// Moves file data to a socket whose client cleared `O_NONBLOCK`
    /// without ever blocking on it: `pread` into a buffer and
    /// `send(MSG_DONTWAIT)` ([`ReadWriteCopy::send_file_dontwait`]), since
    /// `sendfile` has no per-call flag. Backends that can probe the page
    /// cache do so first (`chunk.nowait`); the default reads, which may
    /// block on the disk.
    fn send_file_dontwait(
        &self,
        chunk: FileChunk<'_>,
        dest: BorrowedFd<'_>,
        kind: DestKind,
    ) -> io::Result<Moved> {
        let _ = kind;
        ReadWriteCopy::send_file_dontwait(chunk, dest)
    }

    /// Sends what it can of header, file part and trailer, in that order;
    /// returns the bytes moved counted across the three parts in order.
    /// Each part is sent only once the parts before it went out completely,
    /// so the caller can split the count between them; it calls again for
    /// the rest.
    ///
    /// The default is [`send_parts`]: the first part not yet sent, with one
    /// [`write_bytes`](Self::write_bytes) or [`send_file`](Self::send_file)
    /// call. A backend with a native facility (`sf_hdtr`) sends all three in
    /// one call where it serves the destination, and uses [`send_parts`]
    /// where it does not.
    fn send_hdtr(
        &self,
        chunk: HdtrChunk<'_>,
        dest: BorrowedFd<'_>,
        kind: DestKind,
    ) -> io::Result<Moved> {
        send_parts(self, chunk, dest, kind)
    }

    /// Opens `path` read-only, confined beneath `root`: no `..` or symlink may
    /// lead outside it. The semantics, the same in every backend, are those
    /// of [`crate::sys::beneath`]: leading `/` are ignored (request paths are
    /// relative to the root); `..` and relative symbolic links are allowed
    /// while they stay beneath the root; an escape (including any absolute
    /// symbolic link) is `EXDEV`; too many links `ELOOP`; a missing file
    /// `ENOENT`; too deep or too long `ENAMETOOLONG`
    /// ([`crate::sys::beneath::check_request`]); and any error of `open(2)`. Only
    /// a regular file is opened: any other type (directory, FIFO, socket,
    /// device) is `EINVAL`, known before anything is opened for reading, so
    /// a FIFO's writers are never released. The descriptor is close-on-exec
    /// and blocking. It comes back with the `fstat` of the descriptor itself,
    /// which every backend already made for its type and identity checks (so
    /// the server needs no `fstat` of its own for the file's size and
    /// identity).
    fn open_beneath(&self, root: BorrowedFd<'_>, path: &CStr) -> io::Result<(OwnedFd, libc::stat)>;

    /// [`TransferBackend::open_beneath`], made only if it cannot wait on a
    /// disk or a file server: [`OpenAttempt::WouldBlock`] when answering it
    /// would take more than the kernel's caches hold (a directory entry or
    /// inode not in memory) or the file is on a filesystem whose opens may
    /// wait on a server or a FUSE daemon, and the server then makes the
    /// same open on a disk thread. The loop calls this one. The default makes the whole
    /// open: a system without a cache-only lookup opens on the loop.
    fn open_beneath_cached(&self, root: BorrowedFd<'_>, path: &CStr) -> OpenAttempt {
        OpenAttempt::Done(self.open_beneath(root, path))
    }

    /// Offers to enlarge a data pipe the daemon writes `len` bytes into (a
    /// Read's pipe), so that fewer, larger moves fill it. Best effort:
    /// errors are ignored. Linux raises the pipe's capacity with
    /// `F_SETPIPE_SZ`; other systems keep their pipes as they are.
    fn grow_pipe(&self, pipe: BorrowedFd<'_>, len: u64) {
        let _ = (pipe, len);
    }

    /// Brings `len` bytes of `file` at `offset` into the page cache, blocking
    /// as long as that takes. Runs on a disk I/O thread, never on the loop.
    fn prefetch(&self, file: BorrowedFd<'_>, offset: u64, len: usize) -> io::Result<()> {
        crate::sys::prefetch_by_reading(file, offset, len)
    }
}

/// What [`TransferBackend::open_beneath_cached`] did: the system-call
/// layer's answer, as it is.
pub use crate::sys::beneath::OpenAttempt;

/// The portable [`TransferBackend::send_hdtr`]: the first part of `chunk`
/// not yet sent (the header; else the file part; else the trailer) with one
/// call of `backend`'s [`write_bytes`](TransferBackend::write_bytes) or
/// [`send_file`](TransferBackend::send_file), its result as it is.
///
/// One part per call keeps every error and every call where the caller
/// sees it: nothing sent before an error has to be reported instead of it.
pub fn send_parts<B: TransferBackend + ?Sized>(
    backend: &B,
    chunk: HdtrChunk<'_>,
    dest: BorrowedFd<'_>,
    kind: DestKind,
) -> io::Result<Moved> {
    let more_after_file = !chunk.trailer.is_empty();
    if !chunk.header.is_empty() {
        let more = chunk.file.len > 0 || more_after_file;
        return backend
            .write_bytes(chunk.header, more, dest, kind)
            .map(Moved::Bytes);
    }
    if chunk.file.len > 0 {
        let file = FileChunk {
            more_follows: chunk.file.more_follows || more_after_file,
            ..chunk.file
        };
        return backend.send_file(file, dest, kind);
    }
    if chunk.trailer.is_empty() {
        return Ok(Moved::Bytes(0));
    }
    backend
        .write_bytes(chunk.trailer, false, dest, kind)
        .map(Moved::Bytes)
}

/// The portable copy path: `pread` into a bounded buffer, `write` out.
///
/// Used where the OS has no zero-copy path for a destination (pipes and
/// files on FreeBSD and macOS), and by the `SENDFILED_FORCE_FALLBACK` test
/// switch everywhere. Bytes read but not written (destination full mid-way)
/// are simply read again next time: the file offset is the caller's.
#[derive(Debug, Default)]
pub struct ReadWriteCopy;

/// Buffer size of the portable copy path.
pub const READ_WRITE_CHUNK: usize = 64 * 1024;

thread_local! {
    static BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0u8; READ_WRITE_CHUNK]);
}

impl ReadWriteCopy {
    /// Moves up to `chunk.len` bytes with `pread` + `send(MSG_DONTWAIT)`:
    /// for a socket whose `O_NONBLOCK` its client cleared.
    pub fn send_file_dontwait(chunk: FileChunk<'_>, dest: BorrowedFd<'_>) -> io::Result<Moved> {
        Self::copy(chunk, dest, |d, b| crate::sys::send_dontwait(d, b, 0))
    }

    /// Moves up to `chunk.len` bytes with `pread` + a write that does not
    /// wait ([`crate::sys::write_nowait`]) to `dest` of kind `kind`.
    pub fn send_file(
        chunk: FileChunk<'_>,
        dest: BorrowedFd<'_>,
        kind: DestKind,
    ) -> io::Result<Moved> {
        Self::copy(chunk, dest, |d, b| crate::sys::write_nowait(d, b, kind))
    }

    /// `pread` into the thread's buffer, then `put` what was read; a full
    /// destination is [`Moved::DestinationFull`].
    fn copy(
        chunk: FileChunk<'_>,
        dest: BorrowedFd<'_>,
        put: impl Fn(BorrowedFd<'_>, &[u8]) -> io::Result<usize>,
    ) -> io::Result<Moved> {
        BUF.with(|buf| {
            let mut buf = buf.borrow_mut();
            let want = chunk.len.min(buf.len());
            let got = crate::sys::pread(chunk.file, &mut buf[..want], chunk.offset)?;
            if got == 0 {
                return Ok(Moved::Bytes(0));
            }
            match put(dest, &buf[..got]) {
                Ok(n) => Ok(Moved::Bytes(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Moved::DestinationFull),
                Err(e) => Err(e),
            }
        })
    }
}
