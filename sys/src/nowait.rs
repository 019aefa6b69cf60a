//! Writes that never wait, whatever the descriptor's `O_NONBLOCK`: a
//! destination or status pipe a client passes is the client's open file
//! description too, and it can clear `O_NONBLOCK` at any moment. Sockets
//! take `MSG_DONTWAIT` per call; for pipes the kernel says how much a write
//! can take ([`pipe_free_space`]); a call that blocked anyway is interrupted
//! by a signal sent to its thread (the backstop).

use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, BorrowedFd};

use nix::sys::socket::{getsockopt, sockopt, SockType};

use crate::fd::{cvt, cvt_len, fstat};

/// What kind of descriptor a destination is; decides the copy path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DestKind {
    /// A pipe or FIFO.
    Pipe,
    /// A connected stream socket (TCP, UNIX stream).
    StreamSocket,
    /// Any other socket (datagram, seqpacket).
    OtherSocket,
    /// A regular file: never "full", and cannot be polled.
    RegularFile,
    /// Anything else (a character device, say).
    Other,
}

impl DestKind {
    /// Whether readiness for this destination can be awaited with
    /// epoll/kqueue. Regular files are always writable and epoll refuses them.
    pub fn is_pollable(self) -> bool {
        !matches!(self, DestKind::RegularFile)
    }
}

/// `send(2)`: `write` with flags, for sockets (`MSG_NOSIGNAL`, `MSG_MORE`).
pub fn send(fd: BorrowedFd<'_>, buf: &[u8], flags: libc::c_int) -> io::Result<usize> {
    // SAFETY: buf is a valid slice for its length.
    cvt_len(unsafe { libc::send(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len(), flags) })
}

/// Classifies a destination: `getsockopt(SO_TYPE)` (socket(7)) first, then
/// `fstat(2)` for what answers `ENOTSOCK`.
///
/// Sockets, the usual destination of the per-request path, cost one system
/// call this way round instead of two.
pub fn dest_kind(fd: BorrowedFd<'_>) -> io::Result<DestKind> {
    match getsockopt(&fd, sockopt::SockType) {
        Ok(SockType::Stream) => return Ok(DestKind::StreamSocket),
        // nix answers EINVAL for a socket type it has no name for.
        Ok(_) | Err(nix::errno::Errno::EINVAL) => return Ok(DestKind::OtherSocket),
        Err(nix::errno::Errno::ENOTSOCK) => {}
        Err(e) => return Err(e.into()),
    }
    let st = fstat(fd)?;
    Ok(match st.st_mode & libc::S_IFMT {
        libc::S_IFIFO => DestKind::Pipe,
        libc::S_IFREG => DestKind::RegularFile,
        _ => DestKind::Other,
    })
}

/// `send(2)` with `MSG_DONTWAIT | MSG_NOSIGNAL`: non-blocking for this call
/// whatever the socket's `O_NONBLOCK` says, and `EPIPE` without a signal.
pub fn send_dontwait(fd: BorrowedFd<'_>, buf: &[u8], flags: libc::c_int) -> io::Result<usize> {
    send(fd, buf, flags | libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
}

/// How many bytes the pipe `fd` (its write end) has room for, as the kernel
/// reports it; `None` where it cannot tell.
///
/// Linux: `F_GETPIPE_SZ` minus `FIONREAD`. It counts bytes, not the pipe's
/// page slots, so a write of that many bytes can still block when a reader
/// left buffers partly read (the interrupt backstop covers that). FreeBSD and
/// macOS: `EVFILT_WRITE`'s `data` from a throwaway kqueue, the exact free
/// space of the pipe buffer.
pub fn pipe_free_space(fd: BorrowedFd<'_>) -> Option<usize> {
    crate::os::pipe_free_space(fd)
}

/// Moves up to `len` bytes of `file` at `*offset` (advanced) into the pipe
/// `pipe` without waiting for the pipe, whatever its `O_NONBLOCK`: Linux
/// `splice(2)` with `SPLICE_F_NONBLOCK`, `EAGAIN` when the pipe is full.
/// The file side may still wait for the disk: probe it first
/// ([`crate::cache::probe`]). `ENOSYS` elsewhere.
pub fn file_to_pipe_nowait(
    file: BorrowedFd<'_>,
    offset: &mut u64,
    pipe: BorrowedFd<'_>,
    len: usize,
) -> io::Result<usize> {
    crate::os::file_to_pipe_nowait(file, offset, pipe, len)
}

/// Moves up to `len` bytes of `file` at `*offset` (advanced) to the socket
/// `sock`: Linux `sendfile(2)`, for a socket whose `O_NONBLOCK` the caller
/// saw set (`sendfile` has no per-call flag: on a blocking socket it waits
/// for room). The file side may wait for the disk: probe it first
/// ([`crate::cache::probe`]). `ENOSYS` elsewhere.
pub fn file_to_socket_nowait(
    file: BorrowedFd<'_>,
    offset: &mut i64,
    sock: BorrowedFd<'_>,
    len: usize,
) -> io::Result<usize> {
    crate::os::file_to_socket_nowait(file, offset, sock, len)
}

/// The signal that interrupts a call blocked on a client's descriptor: sent
/// to one thread only, with a handler that does nothing, installed without
/// `SA_RESTART` so that the call returns (`EINTR`, or a short count).
/// `SIGURG`'s default action is to ignore it, so a stray one is harmless.
pub const INTERRUPT_SIGNAL: libc::c_int = libc::SIGURG;

extern "C" fn interrupt_handler(_sig: libc::c_int) {}

/// Installs the do-nothing, non-restarting handler for [`INTERRUPT_SIGNAL`]
/// (idempotent).
pub fn install_interrupt_handler() -> io::Result<()> {
    // SAFETY: an all-zero sigaction is valid to fill in; the handler is an
    // async-signal-safe function that does nothing.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = interrupt_handler as extern "C" fn(libc::c_int) as libc::sighandler_t;
        sa.sa_flags = 0;
        libc::sigemptyset(&mut sa.sa_mask);
        cvt(libc::sigaction(INTERRUPT_SIGNAL, &sa, std::ptr::null_mut()))?;
    }
    Ok(())
}

/// The calling thread, for [`interrupt_thread`].
pub fn current_thread() -> libc::pthread_t {
    // SAFETY: pthread_self has no preconditions.
    unsafe { libc::pthread_self() }
}

/// Sends [`INTERRUPT_SIGNAL`] to `thread`, which must be alive.
pub fn interrupt_thread(thread: libc::pthread_t) -> io::Result<()> {
    // SAFETY: the caller guarantees the thread is alive.
    let r = unsafe { libc::pthread_kill(thread, INTERRUPT_SIGNAL) };
    if r != 0 {
        return Err(io::Error::from_raw_os_error(r));
    }
    Ok(())
}

/// Whether the socket `fd` is a UNIX-domain one, whose close never lingers
/// (`SO_LINGER` is for network protocols). A socket's domain is fixed at
/// creation, so a client cannot change the answer afterwards. `false` for
/// anything that is not a socket, or on error.
pub fn is_unix_socket(fd: BorrowedFd<'_>) -> bool {
    // SAFETY: an all-zero sockaddr_storage is valid; len is its size.
    let mut addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: addr and len describe a buffer of len bytes.
    let r = unsafe {
        libc::getsockname(
            fd.as_raw_fd(),
            (&mut addr as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    };
    r == 0 && libc::c_int::from(addr.ss_family) == libc::AF_UNIX
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fd::pipe;
    use std::os::fd::AsFd;

    #[test]
    fn dest_kinds() {
        let (r, w) = pipe().unwrap();
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let (d, _e) = std::os::unix::net::UnixDatagram::pair().unwrap();
        let f = std::fs::File::open("/dev/null").unwrap();
        let t = tempfile::tempfile().unwrap();
        let kind = |fd: BorrowedFd<'_>| dest_kind(fd).unwrap();
        assert_eq!(kind(w.as_fd()), DestKind::Pipe);
        assert_eq!(kind(r.as_fd()), DestKind::Pipe);
        assert_eq!(kind(a.as_fd()), DestKind::StreamSocket);
        assert_eq!(kind(d.as_fd()), DestKind::OtherSocket);
        assert_eq!(kind(f.as_fd()), DestKind::Other);
        assert_eq!(kind(t.as_fd()), DestKind::RegularFile);
    }
}
