//! Writes that never wait, whatever the descriptor's `O_NONBLOCK`: a
//! destination or status pipe a client passes is the client's open file
//! description too, and it can clear `O_NONBLOCK` at any moment. Nothing
//! here reads that flag to decide whether a call may wait: sockets take
//! `MSG_DONTWAIT` per call; pipes and devices `pwritev2(RWF_NOWAIT)` where
//! the kernel honours it ([`write_nowait`]), else a pipe write asks for no
//! more than the room the kernel reports ([`pipe_room`]); a call that
//! blocked anyway is interrupted by a signal sent to its thread (the
//! backstop).

use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, BorrowedFd};

use nix::sys::socket::{getsockopt, sockopt, SockType};

use crate::fd::{cvt, cvt_len};

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
/// [`crate::fd::stat_cached`] for what answers `ENOTSOCK` (never waiting
/// on a FUSE daemon or NFS server for a file passed as the destination).
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
    let st = crate::fd::stat_cached(fd)?;
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

/// `sendmsg(2)` of several buffers in order, as one send, with
/// `MSG_DONTWAIT | MSG_NOSIGNAL` (see [`send_dontwait`]): how many bytes of
/// them went, which may end inside any of them. An HTTP head and a small
/// body leave in one call instead of two.
pub fn send_vectored_dontwait(
    fd: BorrowedFd<'_>,
    bufs: &[std::io::IoSlice<'_>],
    flags: libc::c_int,
) -> io::Result<usize> {
    // SAFETY: an all-zero msghdr is valid (no name, no control data).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    // IoSlice is ABI-compatible with iovec (std guarantees it on Unix);
    // sendmsg only reads through the pointers.
    msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
    msg.msg_iovlen = bufs.len() as _;
    // SAFETY: msg points at bufs, valid for this call.
    cvt_len(unsafe {
        libc::sendmsg(
            fd.as_raw_fd(),
            &msg,
            flags | libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    })
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

/// How many bytes a write to the pipe `fd` can take without waiting, as far
/// as the kernel's report shows; `None` where it cannot tell.
///
/// Linux counts the bytes queued (`FIONREAD`) but a write needs free
/// *slots* (a page each, `F_GETPIPE_SZ` / page size): the queued bytes are
/// taken to fill whole pages plus one partly read page at the head, which
/// is how writes and a reader leave a pipe ([`pipe_room_of`]). A client
/// that leaves one byte in each page can still make a write of that much
/// wait: the backstop interrupts it. Only kernels whose pipes refuse
/// `RWF_NOWAIT` come here ([`write_nowait`]). FreeBSD and macOS report the
/// exact free space ([`pipe_free_space`]).
pub fn pipe_room(fd: BorrowedFd<'_>) -> Option<usize> {
    crate::os::pipe_room(fd)
}

/// The room a Linux pipe of `capacity` bytes holding `queued` unread bytes
/// has for a write that must not wait, in pages of `page` bytes (see
/// [`pipe_room`]). Pure, for the unit tests.
pub fn pipe_room_of(capacity: usize, queued: usize, page: usize) -> usize {
    let page = page.max(1);
    let slots = capacity / page;
    let used = if queued == 0 {
        0
    } else {
        // Whole pages, one partly read at the head and one partly
        // written at the tail.
        queued.div_ceil(page) + 1
    };
    slots.saturating_sub(used) * page
}

/// Writes bytes from memory to `fd` (of kind `kind`) without waiting,
/// whatever its `O_NONBLOCK`: a socket with `send(MSG_DONTWAIT)`; a pipe
/// or device with `pwritev2(RWF_NOWAIT)` (Linux: pipes since 5.x, memory
/// devices; `EAGAIN` when it would wait); a pipe whose kernel refuses that
/// flag with a plain `write` of no more than [`pipe_room`] (the caller's
/// backstop covers a report that was wrong; a message of up to `PIPE_BUF`
/// bytes is then written whole or not at all). A terminal or other device that
/// has no non-blocking write is `EOPNOTSUPP` on Linux, where nothing is
/// written; elsewhere it is written plainly (the backstop alone bounds it).
/// A regular file is written plainly (the server writes those on its disk
/// threads).
pub fn write_nowait(fd: BorrowedFd<'_>, buf: &[u8], kind: DestKind) -> io::Result<usize> {
    match kind {
        DestKind::StreamSocket | DestKind::OtherSocket => return send_dontwait(fd, buf, 0),
        DestKind::RegularFile => return crate::fd::write(fd, buf),
        DestKind::Pipe | DestKind::Other => {}
    }
    match crate::os::write_nowait(fd, buf) {
        Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {}
        done => return done,
    }
    match kind {
        DestKind::Pipe => match pipe_room(fd) {
            // A message up to PIPE_BUF goes in whole or not at all.
            Some(room) if room == 0 || (room < buf.len() && buf.len() <= libc::PIPE_BUF) => {
                Err(io::Error::from_raw_os_error(libc::EAGAIN))
            }
            Some(room) => crate::fd::write(fd, &buf[..buf.len().min(room)]),
            None => crate::fd::write(fd, buf),
        },
        _ if cfg!(target_os = "linux") => Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP)),
        _ => crate::fd::write(fd, buf),
    }
}

/// Whether `fd` is a terminal (`isatty(3)`: an ioctl that changes nothing).
/// A terminal's writes have no per-call non-blocking form and no report of
/// their room, so the daemon refuses terminals as destinations.
pub fn is_terminal(fd: BorrowedFd<'_>) -> bool {
    // SAFETY: isatty only queries the descriptor.
    unsafe { libc::isatty(fd.as_raw_fd()) == 1 }
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
    fn pipe_room_counts_slots_not_bytes() {
        let page = 4096;
        let cap = 16 * page;
        assert_eq!(pipe_room_of(cap, 0, page), cap);
        // One byte: its page, and one more in case the head is partly read.
        assert_eq!(pipe_room_of(cap, 1, page), 14 * page);
        assert_eq!(pipe_room_of(cap, 3 * page, page), 12 * page);
        // A full pipe read by 100 bytes has no free slot (its byte count
        // says 100).
        assert_eq!(pipe_room_of(cap, cap - 100, page), 0);
        assert_eq!(pipe_room_of(cap, cap, page), 0);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_pipe_made_blocking_is_written_without_waiting() {
        let (r, w) = pipe().unwrap();
        crate::fd::set_nonblocking(w.as_fd(), true).unwrap();
        let junk = [7u8; 4096];
        while crate::fd::write(w.as_fd(), &junk).is_ok() {}
        crate::fd::set_nonblocking(w.as_fd(), false).unwrap();
        // Full, and read by less than a page: no slot is free.
        let mut buf = [0u8; 100];
        assert_eq!(crate::fd::read(r.as_fd(), &mut buf).unwrap(), 100);
        let t0 = std::time::Instant::now();
        let e = write_nowait(w.as_fd(), b"status", DestKind::Pipe).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock, "{e}");
        assert!(t0.elapsed() < std::time::Duration::from_secs(1));
        // Drained: it goes in.
        crate::fd::set_nonblocking(r.as_fd(), true).unwrap();
        let mut big = vec![0u8; 1 << 20];
        while crate::fd::read(r.as_fd(), &mut big).is_ok_and(|n| n > 0) {}
        assert_eq!(
            write_nowait(w.as_fd(), b"status", DestKind::Pipe).unwrap(),
            6
        );
    }

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
