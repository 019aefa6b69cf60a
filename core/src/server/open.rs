//! Opening a requested file beneath the root: the contract's errno for each
//! refusal, the regular-file check and the shared lock.
//!
//! The loop's attempt ([`on_loop`]) is answered from the kernel's caches
//! alone; when the open would have to wait (a directory or inode not in
//! memory, a filesystem whose opens ask a server), the same open is made
//! on a disk thread ([`blocking`]) and the request waits in the table
//! meanwhile (`State::Opening`). DESIGN.md: an open that can block runs off
//! the loop.
//!
//! This file makes no system call of its own beyond the lock; only
//! [`blocking`] may block, and it runs on a disk thread.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use crate::backend::{OpenAttempt, TransferBackend};
use crate::sys::{self, errno as errno_of, errno::Errno};

/// An open file with the `fstat` of its descriptor, or the errno of the
/// refusal, which [`refusal`] turns into the client's answer and the log's
/// cause (an escape from the root is still `EXDEV` here).
pub type Opened = Result<(OwnedFd, libc::stat), Errno>;

/// The errno a client is answered with for a refused open, and what the
/// log line names as the cause where the errno alone would not say it: the
/// contract answers an escape from the root and a file the daemon may not
/// read alike (`EACCES`), and anything not a regular file as `EINVAL`.
pub fn refusal(errno: Errno) -> (Errno, &'static str) {
    match errno {
        // An escape from the root is reported like any other file the
        // client may not have.
        Errno::EXDEV => (
            Errno::EACCES,
            "outside the root (through .. or a symbolic link) (EACCES)",
        ),
        Errno::EACCES => (
            Errno::EACCES,
            "permission denied: the daemon may not read it or search a directory on the way (EACCES)",
        ),
        Errno::EINVAL => (Errno::EINVAL, "not a regular file, or the root itself (EINVAL)"),
        n => (n, ""),
    }
}

/// A refused open's log text: the cause where one errno has several (see
/// [`refusal`]), else the errno's own text.
pub fn refused(errno: Errno, cause: &str) -> String {
    if cause.is_empty() {
        io::Error::from(errno).to_string()
    } else {
        format!("refused: {cause}")
    }
}

/// The open, made only if the kernel's caches answer the lookup; `None`
/// when it would wait, and [`blocking`] must make it off the loop.
pub fn on_loop<B: TransferBackend + ?Sized>(
    backend: &B,
    root: BorrowedFd<'_>,
    path: &CStr,
) -> Option<Opened> {
    if let Err(errno) = check_path(path) {
        return Some(Err(errno));
    }
    match backend.open_beneath_cached(root, path) {
        OpenAttempt::Done(r) => Some(finish(r)),
        OpenAttempt::WouldBlock => None,
    }
}

/// The same open, waiting as long as the filesystem takes. Disk threads
/// only.
pub fn blocking<B: TransferBackend + ?Sized>(
    backend: &B,
    root: BorrowedFd<'_>,
    path: &CStr,
) -> Opened {
    check_path(path)?;
    finish(backend.open_beneath(root, path))
}

/// A file a client opened itself and handed on (Continue, ContinueRead,
/// Adopt), with its `st` from [`sys::stat_cached`]: the same type check and
/// shared lock as a file the daemon opened. The caller has checked that it
/// lives on the root's own filesystem, which is where a client's attempt
/// opens (`RESOLVE_NO_XDEV`), and that this filesystem's opens never wait
/// (a FUSE or NFS root takes no hand-offs): there the cached `stat` is the
/// exact one, and the lock never asks a server. Never waits:
/// `flock(LOCK_NB)`.
pub fn adopt(file: OwnedFd, st: libc::stat) -> Opened {
    finish(Ok((file, st)))
}

/// What the path alone decides.
fn check_path(path: &CStr) -> Result<(), Errno> {
    let bytes = path.to_bytes();
    if bytes.is_empty() {
        return Err(Errno::ENOENT);
    }
    if bytes.iter().all(|&b| b == b'/') {
        // The root directory itself: not a regular file, as the original
        // answers.
        return Err(Errno::EINVAL);
    }
    Ok(())
}

/// The errno of a refusal as the contract names it, the type check, and
/// the shared lock.
fn finish(opened: io::Result<(OwnedFd, libc::stat)>) -> Opened {
    let (file, st) = opened.map_err(|e| {
        match e.raw_os_error().map(Errno::from_raw) {
            // EXDEV, an escape from the root, stays for the log's cause;
            // [`refusal`] answers it as EACCES.
            // open(2) of a socket (or a device without a driver): not a
            // regular file either.
            Some(Errno::ENXIO | Errno::EOPNOTSUPP) => Errno::EINVAL,
            // A number this system has no name for says nothing either.
            Some(Errno::UnknownErrno) | None => Errno::EIO,
            Some(n) => n,
        }
    })?;
    // `st` is the fstat the backend checked the type and identity with (no
    // fstat of our own); the type is checked again here for free.
    if !sys::is_regular(&st) {
        return Err(Errno::EINVAL);
    }
    sys::flock_shared_nonblocking(file.as_fd()).map_err(|e| errno_of(&e))?;
    Ok((file, st))
}
