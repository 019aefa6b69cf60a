//! FreeBSD: `pipe2`, `getrandom`, `LOCAL_CREDS_PERSISTENT` and
//! `SCM_CREDS2`, kqueue's pipe free space, `O_RESOLVE_BENEATH`. No
//! `RWF_NOWAIT` read (`SF_NODISKIO` is the backend's) and no `recvmmsg`
//! batch.

use std::ffi::CStr;
use std::io;
use std::mem::size_of;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use nix::fcntl::OFlag;

use crate::beneath::{self, OpenAttempt, Resolve};
use crate::fd::cvt;
use crate::fsfacts::FsFacts;
use crate::passing::PeerCred;

pub use crate::kqueue::{pipe_free_space, pipe_room};
// FreeBSD's `recvmmsg` is a loop in libc: one `recvmsg` per batch.
pub use crate::portable::{
    cached_pages, file_to_pipe_nowait, file_to_socket_nowait, filesystem_of, read_cached,
    recv_batch, stat_cached, write_nowait,
};

/// `recvmsg` can set close-on-exec on received descriptors itself.
pub const RECV_CLOEXEC: libc::c_int = libc::MSG_CMSG_CLOEXEC;

/// `pipe2(2)` with `O_CLOEXEC`.
pub fn pipe_cloexec() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(nix::unistd::pipe2(OFlag::O_CLOEXEC)?)
}

/// `getrandom(2)` until `b` is full.
pub fn random_bytes(b: &mut [u8]) -> io::Result<()> {
    let mut got = 0;
    while got < b.len() {
        // SAFETY: the buffer is valid for the remaining length.
        let r = unsafe { libc::getrandom(b[got..].as_mut_ptr().cast(), b.len() - got, 0) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        got += r as usize;
    }
    Ok(())
}

/// `LOCAL_CREDS_PERSISTENT` (unix(4)): credentials on every datagram.
pub fn enable_passcred(sock: BorrowedFd<'_>) -> io::Result<()> {
    // nix has no LOCAL_CREDS_PERSISTENT option.
    let on: libc::c_int = 1;
    // SAFETY: on is a valid int option value, live for the call.
    cvt(unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_LOCAL,
            libc::LOCAL_CREDS_PERSISTENT,
            (&on as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

/// The sender's credentials from an `SCM_CREDS2` control message.
///
/// # Safety
///
/// `data` points at `len` readable bytes of a received control message.
pub unsafe fn credentials(kind: libc::c_int, data: *const u8, len: usize) -> Option<PeerCred> {
    if kind != libc::SCM_CREDS2 || len < size_of::<libc::sockcred2>() {
        return None;
    }
    // SAFETY: the caller vouches for len readable bytes, checked above.
    let c = unsafe { std::ptr::read_unaligned(data as *const libc::sockcred2) };
    Some(PeerCred {
        pid: c.sc_pid,
        uid: c.sc_euid,
        gid: c.sc_egid,
    })
}

/// The open by `O_RESOLVE_BENEATH`; it has no cache-only form.
pub fn open_beneath(
    root: BorrowedFd<'_>,
    path: &CStr,
    how: Resolve,
    _facts: &FsFacts,
) -> Option<OpenAttempt> {
    if how.cached_only && !how.else_open {
        return Some(OpenAttempt::WouldBlock);
    }
    Some(OpenAttempt::Done(open_resolve_beneath(root, path)))
}

/// `openat(O_RESOLVE_BENEATH)`, with the semantics of [`beneath`](crate::beneath):
/// leading `/` dropped, relative links inside the root followed, only a
/// regular file opened. The type comes first, from
/// `fstatat(AT_RESOLVE_BENEATH)`, so that nothing else (a FIFO above
/// all) is ever opened (`EINVAL`); the open that follows uses
/// `O_NONBLOCK` and must give the file just seen, or the lookup starts
/// again. FreeBSD reports an escape as `ENOTCAPABLE`; it is returned as
/// `EXDEV`, as on Linux. `O_RESOLVE_BENEATH` needs FreeBSD 13 or later.
fn open_resolve_beneath(root: BorrowedFd<'_>, path: &CStr) -> io::Result<(OwnedFd, libc::stat)> {
    let path = beneath::check_request(path)?;
    if path.is_empty() {
        return Err(io::Error::from_raw_os_error(libc::ENOENT));
    }
    for _ in 0..beneath::SWAP_RETRIES {
        let seen = match fstatat_beneath(root, path) {
            Ok(st) => st,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(beneath_errno(e)),
        };
        if !crate::fd::is_regular(&seen) {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        let fd = match openat(root, path, beneath::OPEN_FLAGS | libc::O_RESOLVE_BENEATH) {
            Ok(fd) => fd,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // A socket swapped in since the look.
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => continue,
            Err(e) => return Err(beneath_errno(e)),
        };
        let got = crate::fd::fstat(fd.as_fd())?;
        if beneath::same_file(&seen, &got) {
            return beneath::finish_open(fd).map(|fd| (fd, got));
        }
    }
    Err(io::Error::from_raw_os_error(libc::EAGAIN))
}

/// `ENOTCAPABLE` (an escape under `O_RESOLVE_BENEATH`) as `EXDEV`, the
/// errno of every other backend; other errors as they are.
fn beneath_errno(e: io::Error) -> io::Error {
    if e.raw_os_error() == Some(libc::ENOTCAPABLE) {
        io::Error::from_raw_os_error(libc::EXDEV)
    } else {
        e
    }
}

/// `fstatat(AT_RESOLVE_BENEATH)`: the type and identity of what `path`
/// names beneath `dir`, symbolic links followed, without opening it.
fn fstatat_beneath(dir: BorrowedFd<'_>, path: &CStr) -> io::Result<libc::stat> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: path is NUL-terminated; st is written by a successful call.
    let r = unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            path.as_ptr(),
            st.as_mut_ptr(),
            libc::AT_RESOLVE_BENEATH,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fstatat succeeded, so st is initialised.
    Ok(unsafe { st.assume_init() })
}

/// `openat(2)`.
fn openat(dir: BorrowedFd<'_>, path: &CStr, flags: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: path is NUL-terminated; no mode without O_CREAT.
    let fd = unsafe { libc::openat(dir.as_raw_fd(), path.as_ptr(), flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: openat returned a new descriptor we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
