//! Descriptors in general: reads and writes, pipes, descriptor flags,
//! `fstat`, `flock`, readiness waits. Portable across Linux, FreeBSD and
//! macOS; what differs is in `os/`. Where `nix` wraps a call without costing
//! the hot paths an allocation, the wrapper uses it; each `unsafe` block
//! left says why it is sound.

use std::ffi::CStr;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};

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
    crate::os::pipe_cloexec()
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

/// Whether `O_NONBLOCK` is set on `fd`'s open file description (`F_GETFL`).
pub fn is_nonblocking(fd: BorrowedFd<'_>) -> io::Result<bool> {
    // SAFETY: plain fcntl on a descriptor we borrow.
    let flags = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })?;
    Ok(flags & libc::O_NONBLOCK != 0)
}

/// The errno to report for `e` ([`crate::errno::of_io`]).
pub fn errno(e: &io::Error) -> crate::errno::Errno {
    crate::errno::of_io(e)
}

/// `pread(2)`.
pub fn pread(fd: BorrowedFd<'_>, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let off =
        libc::off_t::try_from(offset).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: buf is a valid, writable slice for its length.
    cvt_len(unsafe { libc::pread(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), off) })
}

/// `fstat(2)`.
pub fn fstat(fd: BorrowedFd<'_>) -> io::Result<libc::stat> {
    let mut st = MaybeUninit::<libc::stat>::uninit();
    // SAFETY: st is valid for writes of a stat.
    cvt(unsafe { libc::fstat(fd.as_raw_fd(), st.as_mut_ptr()) })?;
    // SAFETY: fstat succeeded and filled it.
    Ok(unsafe { st.assume_init() })
}

/// A descriptor's `stat` as the kernel holds it, without asking a
/// filesystem's server: `statx(2)` with `AT_STATX_DONT_SYNC` on Linux,
/// where `fstat(2)` of a file on FUSE or NFS may wait for its daemon or
/// server to revalidate the attributes (a client passing such a file where
/// a pipe or socket belongs must not stall the daemon's loop); `fstat(2)`
/// elsewhere. Type and identity (the type bits of `st_mode`, `st_dev`,
/// `st_ino`) never change, so the cached answer is the true one; the rest
/// (size, times) is exact on a local filesystem and may be stale where a
/// server holds the truth.
pub fn stat_cached(fd: BorrowedFd<'_>) -> io::Result<libc::stat> {
    crate::os::stat_cached(fd)
}

/// Whether a `stat` describes a regular file.
pub fn is_regular(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFREG
}

/// Whether a `stat` describes a pipe or FIFO.
pub fn is_fifo(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFIFO
}

/// `getsockopt(SO_LINGER)`: `Some(seconds)` if the socket's close lingers
/// (`l_onoff` set with a time above zero: the last close waits until its
/// unsent data is acknowledged or the time runs out), `None` if it does
/// not (off, or `{1, 0}`: an abortive close, which never waits), or for
/// anything that is not a socket.
pub fn lingers(fd: BorrowedFd<'_>) -> Option<i32> {
    // SAFETY: an all-zero linger is a valid value.
    let mut l: libc::linger = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::linger>() as libc::socklen_t;
    // SAFETY: l and len describe a writable buffer of len bytes.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&mut l as *mut libc::linger).cast(),
            &mut len,
        )
    };
    (r == 0 && l.l_onoff != 0 && l.l_linger > 0).then_some(l.l_linger)
}

/// `setsockopt(SO_LINGER, {0, 0})`: the socket's last close returns at once
/// and the kernel sends what is queued in the background, as without
/// `SO_LINGER`.
pub fn linger_off(fd: BorrowedFd<'_>) -> io::Result<()> {
    set_linger(fd, None)
}

/// `setsockopt(SO_LINGER)` (socket(7)): `Some(secs)` makes the socket's last
/// close wait up to `secs` for its queue to drain (`{1, secs}`), `None`
/// turns the option off (`{0, 0}`).
pub fn set_linger(fd: BorrowedFd<'_>, secs: Option<i32>) -> io::Result<()> {
    let l = libc::linger {
        l_onoff: i32::from(secs.is_some()),
        l_linger: secs.unwrap_or(0),
    };
    // SAFETY: l is a valid linger of the size given.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&l as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

/// `flock(2)` with `LOCK_SH | LOCK_NB`: a read lock on the open file
/// description, released when its last descriptor closes. Fails with
/// `EWOULDBLOCK` while another process holds an exclusive lock.
pub fn flock_shared_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: plain flock on a descriptor we borrow.
    cvt(unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) })?;
    Ok(())
}

/// `open(2)` of a directory, read-only, close-on-exec.
pub fn open_dir(path: &CStr) -> io::Result<OwnedFd> {
    // SAFETY: path is NUL-terminated.
    let fd = cvt(unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    })?;
    // SAFETY: open returned a new descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Reads `len` bytes at `offset` into a scratch buffer and throws them away:
/// the portable way to bring file data into the page cache.
pub fn prefetch_by_reading(fd: BorrowedFd<'_>, offset: u64, len: usize) -> io::Result<()> {
    let mut buf = vec![0u8; len.min(256 * 1024)];
    let mut done = 0usize;
    while done < len {
        let want = (len - done).min(buf.len());
        match pread(fd, &mut buf[..want], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Fills `b` (at most 256 bytes) from the kernel's CSPRNG: `getrandom(2)`
/// on Linux and FreeBSD, `getentropy(3)` on macOS.
pub fn random_bytes(b: &mut [u8]) -> io::Result<()> {
    debug_assert!(b.len() <= 256);
    crate::os::random_bytes(b)
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

/// One `poll(2)` for `POLLOUT` on `fd`, for at most `timeout`: false on
/// timeout; `EINTR` is returned, not retried (a caller's signal ends the
/// wait).
pub fn poll_writable_once(fd: BorrowedFd<'_>, timeout: std::time::Duration) -> io::Result<bool> {
    let ms = poll_ms(timeout);
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: p is one valid pollfd.
    let r = cvt(unsafe { libc::poll(&mut p, 1, ms) })?;
    Ok(r > 0)
}

/// `timeout` in whole milliseconds for `poll(2)`, rounded up: a wait of
/// 999.6 ms must not end after 999 (a caller's documented bound is a
/// least wait), nor a wait of 0.4 ms spin at 0.
fn poll_ms(timeout: std::time::Duration) -> libc::c_int {
    timeout.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as libc::c_int
}

fn wait_for(
    fd: BorrowedFd<'_>,
    events: libc::c_short,
    timeout: std::time::Duration,
) -> io::Result<bool> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let ms = poll_ms(left);
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
    use crate::errno::Errno;
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

    #[test]
    fn errno_is_found_through_wrapping_errors() {
        #[derive(Debug)]
        struct Context(io::Error);
        impl std::fmt::Display for Context {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "doing something: {}", self.0)
            }
        }
        impl std::error::Error for Context {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let raw = io::Error::from_raw_os_error(libc::EPERM);
        assert_eq!(errno(&raw), Errno::EPERM);
        let wrapped = io::Error::new(io::ErrorKind::PermissionDenied, Context(raw));
        assert_eq!(errno(&wrapped), Errno::EPERM);
        let plain = io::Error::other("no errno anywhere");
        assert_eq!(errno(&plain), Errno::EIO);
    }
}
