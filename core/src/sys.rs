//! Thin wrappers over single system calls, each named after its man page,
//! that the daemon needs beyond the client's (those live in
//! `sendfiled_client::sys` and are re-exported here, one copy for both).
//! Everything here is portable across
//! Linux, FreeBSD and macOS; where the systems differ the difference stays in
//! this file. Where `nix` wraps a call without costing the hot paths an
//! allocation, the wrapper uses it; the `unsafe` left here is what `nix`
//! does not cover or would make slower, each block saying why it is sound.

use std::ffi::CStr;
use std::io;
use std::mem::{size_of, MaybeUninit};
#[cfg(not(any(target_os = "linux", target_os = "freebsd")))]
use std::os::fd::AsFd;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

#[cfg(target_os = "linux")]
use nix::sys::socket::setsockopt;
use nix::sys::socket::{getsockopt, sockopt, SockType};

/// The client-side wrappers live in the client crate (a Rust client builds
/// without the server); the daemon uses them from here, the same copy.
pub use sendfiled_client::sys::{
    cvt, cvt_len, pipe, raise_socket_buffer, read, send_with_fds, set_cloexec, set_nonblocking,
    wait_readable, wait_writable, write, write_message, SEND_FDS_ON_STACK,
};

/// The errno to report for `e`: its OS error code, or `EIO` for an error
/// that did not come from the OS (every reply and exit status is an errno).
pub fn errno(e: &io::Error) -> i32 {
    // An error that wraps another (with context) keeps the errno of the
    // first one in its chain of sources that has one.
    let mut source: Option<&(dyn std::error::Error + 'static)> = e.get_ref().map(|r| r as _);
    let mut found = e.raw_os_error();
    while found.is_none() {
        let Some(s) = source else { break };
        found = s
            .downcast_ref::<io::Error>()
            .and_then(io::Error::raw_os_error);
        source = s.source();
    }
    found.unwrap_or(libc::EIO)
}

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

/// Whether a `stat` describes a regular file.
pub fn is_regular(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFREG
}

/// Whether a `stat` describes a pipe or FIFO.
pub fn is_fifo(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFIFO
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
    cfg_if::cfg_if! {
        if #[cfg(any(target_os = "linux", target_os = "freebsd"))] {
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
        } else {
            // SAFETY: the buffer is valid for its length (<= 256).
            if unsafe { libc::getentropy(b.as_mut_ptr().cast(), b.len()) } < 0 {
                return Err(io::Error::last_os_error());
            }
        }
    }
    Ok(())
}

/// Credentials of the process that sent a request, where the OS reports
/// them for datagram sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerCred {
    /// Sender's process id.
    pub pid: i32,
    /// Sender's user id.
    pub uid: u32,
    /// Sender's group id.
    pub gid: u32,
}

/// One received datagram's descriptors and flags.
#[derive(Debug, Default)]
pub struct Received {
    /// Bytes of payload.
    pub len: usize,
    /// The descriptors that came with it, close-on-exec, owned.
    pub fds: Vec<OwnedFd>,
    /// The payload was longer than the buffer (`MSG_TRUNC`).
    pub truncated: bool,
    /// More descriptors came than fit (`MSG_CTRUNC`); the extra ones were
    /// closed by the kernel.
    pub fds_truncated: bool,
    /// The sender's credentials, if the OS sent them.
    pub cred: Option<PeerCred>,
}

/// Room for this many descriptors in a received control message: more than
/// any valid request carries, so that a request with too many is seen (and
/// its extra descriptors closed) rather than silently cut.
pub const RECV_FD_ROOM: usize = 8;

const fn cmsg_space(bytes: usize) -> usize {
    // SAFETY: CMSG_SPACE is a pure computation.
    unsafe { libc::CMSG_SPACE(bytes as u32) as usize }
}

/// Bytes of control buffer: room for [`RECV_FD_ROOM`] descriptors plus
/// credentials. FreeBSD's `sockcred2` carries the sender's groups (up to
/// `NGROUPS_MAX`, 1023), so it is sized for the worst case: a cut control
/// message would make a valid request look like one with too many
/// descriptors.
const CONTROL_LEN: usize = 4608;

/// Control buffer, aligned for `cmsghdr`.
#[repr(C, align(8))]
struct ControlBuf([u8; CONTROL_LEN]);

const _: () = assert!(
    cmsg_space(RECV_FD_ROOM * size_of::<RawFd>()) + cmsg_space(32 + 4 * 1024) <= CONTROL_LEN
);

// The receiving side stays hand-written, one control-message walk
// ([`take_control`]) for `recvmsg` and the `recvmmsg` batch: it is the
// daemon's per-datagram path, and nix's `recvmsg` copies every
// `SCM_RIGHTS` message into a fresh `Vec` (the descriptors then into ours),
// needs its header array rebuilt per batch, and does not parse FreeBSD's
// `SCM_CREDS2` (it would hand it over as another copied `Vec`).

/// `recvmsg(2)` of one datagram with `SCM_RIGHTS` and the sender's
/// credentials where the OS sends them (`SCM_CREDENTIALS` on Linux,
/// `SCM_CREDS2` on FreeBSD), non-blocking, every descriptor close-on-exec.
pub fn recv_with_fds(sock: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<Received> {
    let mut ctl = ControlBuf([0u8; CONTROL_LEN]);
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: an all-zero msghdr is a valid empty header; the pointers are
    // set below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = ctl.0.as_mut_ptr().cast();
    msg.msg_controllen = ctl.0.len() as _;
    cfg_if::cfg_if! {
        if #[cfg(any(target_os = "linux", target_os = "freebsd"))] {
            let flags = libc::MSG_DONTWAIT | libc::MSG_CMSG_CLOEXEC;
        } else {
            let flags = libc::MSG_DONTWAIT;
        }
    }
    // SAFETY: msg points at iov, buf and ctl, all live for the call and
    // writable for the lengths given.
    let n = cvt_len(unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, flags) })?;
    let mut out = Received {
        len: n.min(buf.len()),
        truncated: msg.msg_flags & libc::MSG_TRUNC != 0,
        fds_truncated: msg.msg_flags & libc::MSG_CTRUNC != 0,
        ..Received::default()
    };
    // SAFETY: recvmsg filled msg's control buffer and length.
    unsafe { take_control(&msg, &mut out) };
    #[cfg(not(any(target_os = "linux", target_os = "freebsd")))]
    for fd in &out.fds {
        set_cloexec(fd.as_fd())?;
    }
    Ok(out)
}

/// Datagrams one [`recv_batch`] call takes at most.
pub const RECV_BATCH: usize = 8;

/// Receives up to [`RECV_BATCH`] datagrams into `out` (cleared first),
/// datagram `i`'s payload into `bufs[i * buf_len..][..buf_len]`
/// (`bufs` holds `RECV_BATCH * buf_len` bytes): `recvmmsg(2)` on Linux, one
/// [`recv_with_fds`] elsewhere. Returns whether the queue is known to be
/// empty now; `WouldBlock` when nothing was queued.
///
/// On Linux a batch that comes back with fewer than [`RECV_BATCH`]
/// datagrams emptied the queue, so the loop can wait for the next readiness
/// edge without the `recvmsg` that would only say `EAGAIN` (epoll reports
/// every datagram's arrival, queued or not). Elsewhere the queue is never
/// known to be empty and the loop reads until `EAGAIN`.
pub fn recv_batch(
    sock: BorrowedFd<'_>,
    bufs: &mut [u8],
    buf_len: usize,
    out: &mut Vec<Received>,
) -> io::Result<bool> {
    assert!(bufs.len() >= RECV_BATCH * buf_len);
    cfg_if::cfg_if! {
        if #[cfg(target_os = "linux")] {
            recvmmsg(sock, bufs, buf_len, out)
        } else {
            out.clear();
            out.push(recv_with_fds(sock, &mut bufs[..buf_len])?);
            Ok(false)
        }
    }
}

/// `recvmmsg(2)` for [`recv_batch`].
#[cfg(target_os = "linux")]
fn recvmmsg(
    sock: BorrowedFd<'_>,
    bufs: &mut [u8],
    buf_len: usize,
    out: &mut Vec<Received>,
) -> io::Result<bool> {
    #[repr(C, align(8))]
    #[derive(Clone, Copy)]
    struct Ctl([u8; 256]);
    out.clear();
    let mut ctls = [Ctl([0u8; 256]); RECV_BATCH];
    // SAFETY: all-zero iovecs and mmsghdrs are valid empty values; the
    // pointers are set below.
    let mut iovs: [libc::iovec; RECV_BATCH] = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut hdrs: [libc::mmsghdr; RECV_BATCH] = unsafe { std::mem::zeroed() };
    for (chunk, (iov, (hdr, ctl))) in bufs
        .chunks_exact_mut(buf_len)
        .zip(iovs.iter_mut().zip(hdrs.iter_mut().zip(ctls.iter_mut())))
    {
        iov.iov_base = chunk.as_mut_ptr().cast();
        iov.iov_len = buf_len;
        hdr.msg_hdr.msg_iov = iov;
        hdr.msg_hdr.msg_iovlen = 1;
        hdr.msg_hdr.msg_control = ctl.0.as_mut_ptr().cast();
        hdr.msg_hdr.msg_controllen = ctl.0.len() as _;
    }
    let n = loop {
        // SAFETY: hdrs point at iovs, ctls and bufs, all live for the call
        // and writable for the lengths given.
        let r = unsafe {
            libc::recvmmsg(
                sock.as_raw_fd(),
                hdrs.as_mut_ptr(),
                RECV_BATCH as _,
                (libc::MSG_DONTWAIT | libc::MSG_CMSG_CLOEXEC) as _,
                std::ptr::null_mut(),
            )
        };
        match cvt(r) {
            Ok(r) => break r as usize,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    };
    for h in hdrs.iter().take(n) {
        let msg = &h.msg_hdr;
        let mut rcv = Received {
            len: (h.msg_len as usize).min(buf_len),
            truncated: msg.msg_flags & libc::MSG_TRUNC != 0,
            fds_truncated: msg.msg_flags & libc::MSG_CTRUNC != 0,
            ..Received::default()
        };
        // SAFETY: recvmmsg just filled this header (the kernel updated
        // msg_controllen).
        unsafe { take_control(msg, &mut rcv) };
        out.push(rcv);
    }
    if n == 0 {
        return Err(io::Error::from(io::ErrorKind::WouldBlock));
    }
    Ok(n < RECV_BATCH)
}

/// Takes the descriptors (`SCM_RIGHTS`) and the sender's credentials out of
/// the control messages of one received datagram.
///
/// # Safety
///
/// `msg` must be a header that `recvmsg(2)`/`recvmmsg(2)` just filled: its
/// control pointer and length describe what the kernel wrote. Every
/// descriptor found is owned by `out` from then on.
unsafe fn take_control(msg: &libc::msghdr, out: &mut Received) {
    // SAFETY: the caller vouches for msg; CMSG_* stay within its buffer.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(msg);
        while !cmsg.is_null() {
            let hdr = &*cmsg;
            let data = libc::CMSG_DATA(cmsg);
            let data_len = hdr.cmsg_len as usize - (data as usize - cmsg as usize);
            if hdr.cmsg_level == libc::SOL_SOCKET && hdr.cmsg_type == libc::SCM_RIGHTS {
                let count = data_len / size_of::<RawFd>();
                for i in 0..count {
                    let fd = std::ptr::read_unaligned((data as *const RawFd).add(i));
                    out.fds.push(OwnedFd::from_raw_fd(fd));
                }
            }
            #[cfg(target_os = "freebsd")]
            if hdr.cmsg_level == libc::SOL_SOCKET
                && hdr.cmsg_type == libc::SCM_CREDS2
                && data_len >= size_of::<libc::sockcred2>()
            {
                let c = std::ptr::read_unaligned(data as *const libc::sockcred2);
                out.cred = Some(PeerCred {
                    pid: c.sc_pid,
                    uid: c.sc_euid,
                    gid: c.sc_egid,
                });
            }
            #[cfg(target_os = "linux")]
            if hdr.cmsg_level == libc::SOL_SOCKET
                && hdr.cmsg_type == libc::SCM_CREDENTIALS
                && data_len >= size_of::<libc::ucred>()
            {
                let c = std::ptr::read_unaligned(data as *const libc::ucred);
                out.cred = Some(PeerCred {
                    pid: c.pid,
                    uid: c.uid,
                    gid: c.gid,
                });
            }
            cmsg = libc::CMSG_NXTHDR(msg, cmsg);
        }
    }
}

/// Asks the kernel to attach the sender's credentials to every datagram
/// received on `sock`: `SO_PASSCRED` (socket(7)) on Linux,
/// `LOCAL_CREDS_PERSISTENT` (unix(4)) on FreeBSD. macOS has no per-datagram
/// credentials: a no-op there.
pub fn enable_passcred(sock: BorrowedFd<'_>) -> io::Result<()> {
    cfg_if::cfg_if! {
        if #[cfg(target_os = "linux")] {
            setsockopt(&sock, sockopt::PassCred, &true)?;
        } else if #[cfg(target_os = "freebsd")] {
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
        } else {
            let _ = sock;
        }
    }
    Ok(())
}

// ----- Defences against clients that share a destination (issue 13) -----
//
// A destination or status pipe a client passes is the client's open file
// description too: it can clear `O_NONBLOCK` at any moment. The helpers below
// let the server notice that, ask the kernel how much a write can take
// without blocking, and interrupt a call that blocked anyway. They are kept
// apart from the wrappers above on purpose.

/// Whether `O_NONBLOCK` is set on `fd`'s open file description (`F_GETFL`).
pub fn is_nonblocking(fd: BorrowedFd<'_>) -> io::Result<bool> {
    // SAFETY: plain fcntl on a descriptor we borrow.
    let flags = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })?;
    Ok(flags & libc::O_NONBLOCK != 0)
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
    pipe_free_space_os(fd)
}

#[cfg(target_os = "linux")]
fn pipe_free_space_os(fd: BorrowedFd<'_>) -> Option<usize> {
    // SAFETY: plain fcntl on a descriptor we borrow.
    let size = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETPIPE_SZ) };
    if size < 0 {
        return None;
    }
    let mut queued: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int through the pointer.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut queued) } < 0 {
        return None;
    }
    Some((size as usize).saturating_sub(queued.max(0) as usize))
}

#[cfg(any(target_os = "freebsd", target_os = "macos"))]
fn pipe_free_space_os(fd: BorrowedFd<'_>) -> Option<usize> {
    // SAFETY: kqueue has no preconditions; the descriptor is owned below.
    let kq = unsafe { libc::kqueue() };
    if kq < 0 {
        return None;
    }
    // SAFETY: kqueue returned a new descriptor we own.
    let kq = unsafe { OwnedFd::from_raw_fd(kq) };
    // SAFETY: an all-zero kevent is a valid value to fill in.
    let mut change: libc::kevent = unsafe { std::mem::zeroed() };
    change.ident = fd.as_raw_fd() as _;
    change.filter = libc::EVFILT_WRITE;
    change.flags = libc::EV_ADD;
    // SAFETY: as above.
    let mut got: libc::kevent = unsafe { std::mem::zeroed() };
    let zero = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: one change and room for one event; a zero timeout.
    let n = unsafe { libc::kevent(kq.as_raw_fd(), &change, 1, &mut got, 1, &zero) };
    if n < 0 {
        return None;
    }
    if n == 0 {
        // Not writable at all: full.
        return Some(0);
    }
    if got.flags & libc::EV_ERROR != 0 {
        return None;
    }
    Some(got.data.max(0) as usize)
}

#[cfg(not(any(target_os = "linux", target_os = "freebsd", target_os = "macos")))]
fn pipe_free_space_os(_fd: BorrowedFd<'_>) -> Option<usize> {
    None
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

    #[test]
    fn descriptors_and_credentials_pass() {
        let (a, b) = std::os::unix::net::UnixDatagram::pair().unwrap();
        enable_passcred(b.as_fd()).unwrap();
        let (r, w) = pipe().unwrap();
        assert_eq!(
            send_with_fds(a.as_fd(), b"hello", &[r.as_fd(), w.as_fd()]).unwrap(),
            5
        );
        let mut buf = [0u8; 16];
        let got = recv_with_fds(b.as_fd(), &mut buf).unwrap();
        assert_eq!(&buf[..got.len], b"hello");
        assert_eq!(got.fds.len(), 2);
        assert!(!got.truncated && !got.fds_truncated);
        for fd in &got.fds {
            assert_eq!(dest_kind(fd.as_fd()).unwrap(), DestKind::Pipe);
        }
        if cfg!(any(target_os = "linux", target_os = "freebsd")) {
            assert_eq!(got.cred.map(|c| c.pid), Some(std::process::id() as i32));
        }
        let many: Vec<_> = (0..SEND_FDS_ON_STACK + 1).map(|_| r.as_fd()).collect();
        send_with_fds(a.as_fd(), b"x", &many).unwrap();
        send_with_fds(a.as_fd(), b"y", &[]).unwrap();
        let mut bufs = vec![0u8; 16 * RECV_BATCH];
        let mut out = Vec::new();
        recv_batch(b.as_fd(), &mut bufs, 16, &mut out).unwrap();
        let mut fds = out.iter().map(|r| r.fds.len());
        assert_eq!(fds.next(), Some(SEND_FDS_ON_STACK + 1));
        if cfg!(target_os = "linux") {
            assert_eq!(fds.next(), Some(0));
        }
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
        assert_eq!(errno(&raw), libc::EPERM);
        let wrapped = io::Error::new(io::ErrorKind::PermissionDenied, Context(raw));
        assert_eq!(errno(&wrapped), libc::EPERM);
        let plain = io::Error::other("no errno anywhere");
        assert_eq!(errno(&plain), libc::EIO);
    }
}
