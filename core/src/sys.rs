//! Thin wrappers over single system calls, each named after its man page,
//! shared by the daemon and the clients. Everything here is portable across
//! Linux, FreeBSD and macOS; where the systems differ the difference stays in
//! this file.

use std::ffi::CStr;
use std::io;
use std::mem::{size_of, MaybeUninit};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use crate::backend::DestKind;

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn cvt_size(r: libc::ssize_t) -> io::Result<usize> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// `write(2)`.
pub fn write(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: buf is a valid slice for its length.
    cvt_size(unsafe { libc::write(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len()) })
}

/// `send(2)`: `write` with flags, for sockets (`MSG_NOSIGNAL`, `MSG_MORE`).
pub fn send(fd: BorrowedFd<'_>, buf: &[u8], flags: libc::c_int) -> io::Result<usize> {
    // SAFETY: buf is a valid slice for its length.
    cvt_size(unsafe { libc::send(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len(), flags) })
}

/// `read(2)`.
pub fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: buf is a valid, writable slice for its length.
    cvt_size(unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) })
}

/// `pread(2)`.
pub fn pread(fd: BorrowedFd<'_>, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let off =
        libc::off_t::try_from(offset).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: buf is a valid, writable slice for its length.
    cvt_size(unsafe { libc::pread(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), off) })
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

/// `pipe(2)` with both ends close-on-exec: `(read end, write end)`.
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    cfg_if::cfg_if! {
        if #[cfg(any(target_os = "linux", target_os = "freebsd"))] {
            // SAFETY: fds has room for two descriptors.
            cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
            // SAFETY: pipe2 returned two new descriptors we now own.
            let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        } else {
            // SAFETY: fds has room for two descriptors.
            cvt(unsafe { libc::pipe(fds.as_mut_ptr()) })?;
            // SAFETY: pipe returned two new descriptors we now own.
            let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
            set_cloexec(r.as_fd())?;
            set_cloexec(w.as_fd())?;
        }
    }
    Ok((r, w))
}

#[cfg(not(any(target_os = "linux", target_os = "freebsd")))]
use std::os::fd::AsFd;

/// Sets `FD_CLOEXEC` with `fcntl(2)`.
pub fn set_cloexec(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: plain fcntl on a descriptor we borrow.
    let flags = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFD) })?;
    // SAFETY: as above.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, flags | libc::FD_CLOEXEC) })?;
    Ok(())
}

/// Sets or clears `O_NONBLOCK` with `fcntl(2)`.
pub fn set_nonblocking(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    // SAFETY: plain fcntl on a descriptor we borrow.
    let flags = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })?;
    let new = if on {
        flags | libc::O_NONBLOCK
    } else {
        flags & !libc::O_NONBLOCK
    };
    if new != flags {
        // SAFETY: as above.
        cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, new) })?;
    }
    Ok(())
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

/// Classifies a destination with `fstat(2)` and, for sockets,
/// `getsockopt(SO_TYPE)`.
pub fn dest_kind(fd: BorrowedFd<'_>) -> io::Result<DestKind> {
    let st = fstat(fd)?;
    Ok(match st.st_mode & libc::S_IFMT {
        libc::S_IFIFO => DestKind::Pipe,
        libc::S_IFREG => DestKind::RegularFile,
        libc::S_IFSOCK => {
            let mut ty: libc::c_int = 0;
            let mut len = size_of::<libc::c_int>() as libc::socklen_t;
            // SAFETY: ty and len are valid for the option's size.
            cvt(unsafe {
                libc::getsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_TYPE,
                    (&mut ty as *mut libc::c_int).cast(),
                    &mut len,
                )
            })?;
            if ty == libc::SOCK_STREAM {
                DestKind::StreamSocket
            } else {
                DestKind::OtherSocket
            }
        }
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

/// `recvmsg(2)` of one datagram with `SCM_RIGHTS` and the sender's
/// credentials where the OS sends them (`SCM_CREDENTIALS` on Linux,
/// `SCM_CREDS2` on FreeBSD), non-blocking, every descriptor close-on-exec.
pub fn recv_with_fds(sock: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<Received> {
    let mut ctl = ControlBuf([0u8; CONTROL_LEN]);
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: zeroed msghdr is valid; we fill the pointers below.
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
    // SAFETY: msg points at live buffers for the duration of the call.
    let n = cvt_size(unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, flags) })?;
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

/// Takes the descriptors (`SCM_RIGHTS`) and the sender's credentials out of
/// the control messages of one received datagram.
///
/// # Safety
///
/// `msg` must be a header that `recvmsg(2)`/`recvmmsg(2)` just filled: its
/// control pointer and length describe what the kernel wrote. Every
/// descriptor found is owned by `out` from then on.
pub unsafe fn take_control(msg: &libc::msghdr, out: &mut Received) {
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

/// `sendmsg(2)` of one datagram with descriptors attached as `SCM_RIGHTS`.
pub fn send_with_fds(
    sock: BorrowedFd<'_>,
    buf: &[u8],
    fds: &[BorrowedFd<'_>],
) -> io::Result<usize> {
    let mut ctl = ControlBuf([0u8; CONTROL_LEN]);
    let mut iov = libc::iovec {
        iov_base: buf.as_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: zeroed msghdr is valid; we fill the pointers below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        let bytes = size_of::<RawFd>() * fds.len();
        if cmsg_space(bytes) > ctl.0.len() {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        msg.msg_control = ctl.0.as_mut_ptr().cast();
        msg.msg_controllen = cmsg_space(bytes) as _;
        // SAFETY: the control buffer has room for one header and `bytes`.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(bytes as u32) as _;
            let data = libc::CMSG_DATA(cmsg) as *mut RawFd;
            for (i, fd) in fds.iter().enumerate() {
                std::ptr::write_unaligned(data.add(i), fd.as_raw_fd());
            }
        }
    }
    loop {
        // SAFETY: msg points at live buffers for the duration of the call.
        let r = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, 0) };
        match cvt_size(r) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// Asks the kernel to attach the sender's credentials to every datagram
/// received on `sock`: `SO_PASSCRED` (socket(7)) on Linux,
/// `LOCAL_CREDS_PERSISTENT` (unix(4)) on FreeBSD. macOS has no per-datagram
/// credentials: a no-op there.
pub fn enable_passcred(sock: BorrowedFd<'_>) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        let on: libc::c_int = 1;
        // SAFETY: on is a valid int option value.
        cvt(unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PASSCRED,
                (&on as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        })?;
    }
    #[cfg(target_os = "freebsd")]
    {
        let on: libc::c_int = 1;
        // SAFETY: on is a valid int option value.
        cvt(unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_LOCAL,
                libc::LOCAL_CREDS_PERSISTENT,
                (&on as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        })?;
    }
    #[cfg(not(any(target_os = "linux", target_os = "freebsd")))]
    let _ = sock;
    Ok(())
}

/// `setsockopt(SO_SNDBUF/SO_RCVBUF)`, ignoring a refusal: raising a buffer is
/// an optimisation and a system may cap it.
pub fn raise_socket_buffer(sock: BorrowedFd<'_>, opt: libc::c_int, bytes: usize) {
    let v = bytes as libc::c_int;
    // SAFETY: v is a valid int option value.
    let _ = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            opt,
            (&v as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
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

/// Counts this process's open descriptors (for leak checks in tests and the
/// status report). Linux and FreeBSD read `/dev/fd` or `/proc/self/fd`.
pub fn open_fd_count() -> io::Result<usize> {
    let dir = if cfg!(target_os = "linux") {
        "/proc/self/fd"
    } else {
        "/dev/fd"
    };
    // One entry is the directory handle read_dir itself holds.
    Ok(std::fs::read_dir(dir)?.count().saturating_sub(1))
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
