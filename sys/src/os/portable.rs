//! What a system without the calls `os/linux.rs` and `os/freebsd.rs` use
//! falls back on: `pipe` then `FD_CLOEXEC`, `getentropy`, no per-datagram
//! credentials, one `recvmsg` per batch, no filesystem facts, no read that
//! refuses to wait, no `splice`, no confined lookup (the checked walk
//! opens). macOS takes all of it, FreeBSD the part it lacks too.
#![allow(dead_code)]

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use crate::beneath::{OpenAttempt, Resolve};
use crate::fsfacts::FsFacts;
use crate::passing::{PeerCred, Received};

/// `recvmsg` cannot set close-on-exec: it is set after.
pub const RECV_CLOEXEC: libc::c_int = 0;

/// `pipe(2)` and then `FD_CLOEXEC` on both ends (there is no `pipe2`).
pub fn pipe_cloexec() -> io::Result<(OwnedFd, OwnedFd)> {
    let (r, w) = nix::unistd::pipe()?;
    crate::fd::set_cloexec(r.as_fd())?;
    crate::fd::set_cloexec(w.as_fd())?;
    Ok((r, w))
}

/// `getentropy(3)` (at most 256 bytes).
pub fn random_bytes(b: &mut [u8]) -> io::Result<()> {
    // SAFETY: the buffer is valid for its length (<= 256).
    if unsafe { libc::getentropy(b.as_mut_ptr().cast(), b.len()) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// No per-datagram credentials: nothing to enable.
pub fn enable_passcred(_sock: BorrowedFd<'_>) -> io::Result<()> {
    Ok(())
}

/// No credentials message exists.
///
/// # Safety
///
/// Nothing is read.
pub unsafe fn credentials(_kind: libc::c_int, _data: *const u8, _len: usize) -> Option<PeerCred> {
    None
}

/// One `recvmsg` per batch.
pub fn recv_batch(
    sock: BorrowedFd<'_>,
    bufs: &mut [u8],
    buf_len: usize,
    out: &mut Vec<Received>,
) -> io::Result<bool> {
    out.clear();
    out.push(crate::passing::recv_with_fds(sock, &mut bufs[..buf_len])?);
    Ok(false)
}

/// Nothing learnt of filesystem types here: opens count as possibly waiting.
pub fn filesystem_of(_file: BorrowedFd<'_>) -> Option<(u64, bool)> {
    None
}

/// No read that refuses to wait: `ENOSYS`.
pub fn read_cached(_file: BorrowedFd<'_>, _buf: &mut [u8], _offset: u64) -> io::Result<usize> {
    Err(io::Error::from_raw_os_error(libc::ENOSYS))
}

/// [`crate::fd::stat_cached`]: `fstat(2)`, the only stat of a descriptor
/// here (it may ask a FUSE daemon).
pub fn stat_cached(fd: BorrowedFd<'_>) -> io::Result<libc::stat> {
    crate::fd::fstat(fd)
}

/// No call answers for a whole range here: `ENOSYS`.
pub fn cached_pages(_file: BorrowedFd<'_>, _offset: u64, _len: u64) -> io::Result<(u64, u64)> {
    Err(io::Error::from_raw_os_error(libc::ENOSYS))
}

/// No confined lookup of the system's: the caller walks.
pub fn open_beneath(
    _root: BorrowedFd<'_>,
    _path: &CStr,
    _how: Resolve,
    _facts: &FsFacts,
) -> Option<OpenAttempt> {
    None
}

/// No `splice`: `ENOSYS`.
pub fn file_to_pipe_nowait(
    _file: BorrowedFd<'_>,
    _offset: &mut u64,
    _pipe: BorrowedFd<'_>,
    _len: usize,
) -> io::Result<usize> {
    Err(io::Error::from_raw_os_error(libc::ENOSYS))
}

/// No `sendfile` here that the layer offers: `ENOSYS`.
pub fn file_to_socket_nowait(
    _file: BorrowedFd<'_>,
    _offset: &mut i64,
    _sock: BorrowedFd<'_>,
    _len: usize,
) -> io::Result<usize> {
    Err(io::Error::from_raw_os_error(libc::ENOSYS))
}

/// No per-call non-blocking write for pipes or devices here:
/// `EOPNOTSUPP` (the caller bounds a pipe write by its reported room).
pub fn write_nowait(_fd: BorrowedFd<'_>, _buf: &[u8]) -> io::Result<usize> {
    Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP))
}
