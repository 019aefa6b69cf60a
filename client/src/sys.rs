//! Rule: thin wrappers over single system calls that a client needs (pipes,
//! descriptor passing, readiness waits), each named after its man page;
//! nothing here knows the protocol. The daemon uses the same functions
//! through `sendfiled_core::sys`, which re-exports them, so there is one
//! copy. Portable across Linux, FreeBSD and macOS; where the systems differ
//! the difference stays in this file. Where `nix` wraps a call without
//! costing the hot paths an allocation, the wrapper uses it; each `unsafe`
//! block left says why it is sound.

use std::io;
#[cfg(not(any(target_os = "linux", target_os = "freebsd")))]
use std::os::fd::AsFd;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};

use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use nix::sys::socket::{setsockopt, sockopt};

/// The result of a C call that reports failure as a negative value and the
/// reason in `errno`: the value itself, or the `errno` as an error.
pub fn cvt<T: Copy + PartialOrd + Default>(r: T) -> io::Result<T> {
    if r < T::default() {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// [`cvt`] for calls that return a byte count (`ssize_t`).
pub fn cvt_len(r: libc::ssize_t) -> io::Result<usize> {
    cvt(r).map(|n| n as usize)
}

/// `write(2)`.
pub fn write(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: buf is a valid slice for its length.
    cvt_len(unsafe { libc::write(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len()) })
}

/// `read(2)`.
pub fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: buf is a valid, writable slice for its length.
    cvt_len(unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) })
}

/// Writes a whole small message with one `write(2)`, as a pipe message must
/// be (atomic below `PIPE_BUF`). A short write is reported as `EIO`; it cannot
/// happen on a pipe for messages below `PIPE_BUF`.
pub fn write_message(fd: BorrowedFd<'_>, msg: &[u8]) -> io::Result<()> {
    loop {
        match write(fd, msg) {
            Ok(n) if n == msg.len() => return Ok(()),
            Ok(_) => return Err(io::Error::from_raw_os_error(libc::EIO)),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// `pipe2(2)` with `O_CLOEXEC` (`pipe(2)` and then `FD_CLOEXEC` on macOS,
/// which has no `pipe2`): `(read end, write end)`.
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    #[cfg(any(target_os = "linux", target_os = "freebsd"))]
    let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    #[cfg(not(any(target_os = "linux", target_os = "freebsd")))]
    let (r, w) = {
        let (r, w) = nix::unistd::pipe()?;
        set_cloexec(r.as_fd())?;
        set_cloexec(w.as_fd())?;
        (r, w)
    };
    Ok((r, w))
}

/// Sets `FD_CLOEXEC` with `fcntl(2)` (`F_GETFD`, then `F_SETFD`).
pub fn set_cloexec(fd: BorrowedFd<'_>) -> io::Result<()> {
    let flags = FdFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFD)?);
    fcntl(fd, FcntlArg::F_SETFD(flags | FdFlag::FD_CLOEXEC))?;
    Ok(())
}

/// Sets or clears `O_NONBLOCK` with one `ioctl(FIONBIO)` (ioctl(2),
/// filio(4)).
///
/// This is on every request's path (the destination and the status pipe),
/// and one `ioctl` is half the system calls of `fcntl` `F_GETFL` +
/// `F_SETFL`; it sets the same flag on the same open file description. A
/// device whose driver refuses `FIONBIO` (`ENOTTY`; some do on macOS) gets
/// the `fcntl` pair instead.
pub fn set_nonblocking(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    let mut arg = libc::c_int::from(on);
    // SAFETY: FIONBIO reads one int from the pointer, which is valid for
    // the call; the descriptor is borrowed, so it is open.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONBIO as _, &mut arg) };
    match cvt(r) {
        Ok(_) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::ENOTTY) => {
            let flags = OFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFL)?);
            let new = if on {
                flags | OFlag::O_NONBLOCK
            } else {
                flags - OFlag::O_NONBLOCK
            };
            fcntl(fd, FcntlArg::F_SETFL(new))?;
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Descriptors [`send_with_fds`] lists on the stack; more (only tests send
/// that many) are listed in a `Vec`.
pub const SEND_FDS_ON_STACK: usize = 8;

/// `sendmsg(2)` of one datagram with descriptors attached as `SCM_RIGHTS`,
/// through nix. nix builds the control message in a buffer of exactly its
/// size (one small allocation, where a fixed buffer big enough for any
/// count would have to be zeroed on every call).
pub fn send_with_fds(
    sock: BorrowedFd<'_>,
    buf: &[u8],
    fds: &[BorrowedFd<'_>],
) -> io::Result<usize> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags, UnixAddr};
    let mut stack = [0 as RawFd; SEND_FDS_ON_STACK];
    let heap: Vec<RawFd>;
    let raw: &[RawFd] = if fds.len() <= SEND_FDS_ON_STACK {
        for (slot, fd) in stack.iter_mut().zip(fds) {
            *slot = fd.as_raw_fd();
        }
        &stack[..fds.len()]
    } else {
        heap = fds.iter().map(|fd| fd.as_raw_fd()).collect();
        &heap
    };
    let rights = [ControlMessage::ScmRights(raw)];
    let cmsgs: &[ControlMessage<'_>] = if raw.is_empty() { &[] } else { &rights };
    let iov = [io::IoSlice::new(buf)];
    loop {
        match sendmsg::<UnixAddr>(sock.as_raw_fd(), &iov, cmsgs, MsgFlags::empty(), None) {
            Err(nix::errno::Errno::EINTR) => continue,
            r => return Ok(r?),
        }
    }
}

/// `setsockopt(SO_SNDBUF/SO_RCVBUF)` (`opt` names which), ignoring a
/// refusal: raising a buffer is an optimisation and a system may cap it.
pub fn raise_socket_buffer(sock: BorrowedFd<'_>, opt: libc::c_int, bytes: usize) {
    let _ = match opt {
        libc::SO_SNDBUF => setsockopt(&sock, sockopt::SndBuf, &bytes),
        _ => setsockopt(&sock, sockopt::RcvBuf, &bytes),
    };
}

/// Waits with `poll(2)` until `fd` is readable (or hung up), for at most
/// `timeout`. Returns false on timeout.
pub fn wait_readable(fd: BorrowedFd<'_>, timeout: std::time::Duration) -> io::Result<bool> {
    wait_for(fd, libc::POLLIN, timeout)
}

/// Waits with `poll(2)` until `fd` is writable (or failed), for at most
/// `timeout`. Returns false on timeout.
pub fn wait_writable(fd: BorrowedFd<'_>, timeout: std::time::Duration) -> io::Result<bool> {
    wait_for(fd, libc::POLLOUT, timeout)
}

fn wait_for(
    fd: BorrowedFd<'_>,
    events: libc::c_short,
    timeout: std::time::Duration,
) -> io::Result<bool> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let ms = left.as_millis().min(i32::MAX as u128) as libc::c_int;
        let mut p = libc::pollfd {
            fd: fd.as_raw_fd(),
            events,
            revents: 0,
        };
        // SAFETY: p is one valid pollfd.
        let r = unsafe { libc::poll(&mut p, 1, ms) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        return Ok(r > 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn fionbio_sets_and_clears_the_flag() {
        let (_r, w) = pipe().unwrap();
        let flags = || OFlag::from_bits_retain(fcntl(w.as_fd(), FcntlArg::F_GETFL).unwrap());
        set_nonblocking(w.as_fd(), true).unwrap();
        assert!(flags().contains(OFlag::O_NONBLOCK));
        set_nonblocking(w.as_fd(), false).unwrap();
        assert!(!flags().contains(OFlag::O_NONBLOCK));
    }
}
