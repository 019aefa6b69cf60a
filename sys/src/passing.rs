//! Descriptor passing over UNIX datagram sockets: one request datagram with
//! its descriptors (`SCM_RIGHTS`) out, and in with the sender's credentials
//! where the system reports them. The only control-message walk of the
//! project is here ([`take_control`]).

use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{setsockopt, sockopt};

use crate::fd::cvt_len;

/// Descriptors [`send_with_fds`] lists on the stack; more (only tests send
/// that many) are listed in a `Vec`.
pub const SEND_FDS_ON_STACK: usize = 8;

/// `sendmsg(2)` of one datagram with descriptors attached as `SCM_RIGHTS`,
/// through nix, waiting as the socket's `O_NONBLOCK` says; `EINTR` is
/// retried. nix builds the control message in a buffer of exactly its size
/// (one small allocation, where a fixed buffer big enough for any count
/// would have to be zeroed on every call).
pub fn send_with_fds(
    sock: BorrowedFd<'_>,
    buf: &[u8],
    fds: &[BorrowedFd<'_>],
) -> io::Result<usize> {
    loop {
        match sendmsg_fds(sock, buf, fds, nix::sys::socket::MsgFlags::empty()) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

/// [`send_with_fds`] with `MSG_DONTWAIT`: never waits, whatever the
/// socket's `O_NONBLOCK` (`EAGAIN` when the receiver's queue is full), and
/// `EINTR` is returned, not retried.
pub fn send_with_fds_dontwait(
    sock: BorrowedFd<'_>,
    buf: &[u8],
    fds: &[BorrowedFd<'_>],
) -> io::Result<usize> {
    sendmsg_fds(sock, buf, fds, nix::sys::socket::MsgFlags::MSG_DONTWAIT)
}

fn sendmsg_fds(
    sock: BorrowedFd<'_>,
    buf: &[u8],
    fds: &[BorrowedFd<'_>],
    flags: nix::sys::socket::MsgFlags,
) -> io::Result<usize> {
    use nix::sys::socket::{sendmsg, ControlMessage, UnixAddr};
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
    Ok(sendmsg::<UnixAddr>(
        sock.as_raw_fd(),
        &iov,
        cmsgs,
        flags,
        None,
    )?)
}

/// `setsockopt(SO_SNDBUF/SO_RCVBUF)` (`opt` names which), ignoring a
/// refusal: raising a buffer is an optimisation and a system may cap it.
pub fn raise_socket_buffer(sock: BorrowedFd<'_>, opt: libc::c_int, bytes: usize) {
    let _ = match opt {
        libc::SO_SNDBUF => setsockopt(&sock, sockopt::SndBuf, &bytes),
        _ => setsockopt(&sock, sockopt::RcvBuf, &bytes),
    };
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
    /// closed by the kernel. Never so with [`recv_with_fds`] and
    /// [`recv_batch`], whose buffers hold what any datagram can carry.
    pub fds_truncated: bool,
    /// The sender's credentials, if the OS sent them.
    pub cred: Option<PeerCred>,
}

/// Most descriptors one datagram can carry, whatever its sender does:
/// Linux refuses a `sendmsg` with more than `SCM_MAX_FD` (253) in all;
/// FreeBSD and macOS refuse a control message longer than `MCLBYTES`
/// (2048 bytes), which holds at most 509 four-byte descriptors.
#[cfg(target_os = "linux")]
pub const MAX_FDS_PER_DATAGRAM: usize = 253;
/// Most descriptors one datagram can carry, whatever its sender does:
/// Linux refuses a `sendmsg` with more than `SCM_MAX_FD` (253) in all;
/// FreeBSD and macOS refuse a control message longer than `MCLBYTES`
/// (2048 bytes), which holds at most 509 four-byte descriptors.
#[cfg(not(target_os = "linux"))]
pub const MAX_FDS_PER_DATAGRAM: usize = 2048 / size_of::<RawFd>();

/// Room for this many descriptors in a received control message: every
/// descriptor any datagram can carry ([`MAX_FDS_PER_DATAGRAM`]), so that the
/// kernel never cuts the message (`MSG_CTRUNC`). A cut message's extra
/// descriptors are released by the kernel inside the receiving call, on the
/// receiving thread: the last close of a lingering TCP socket there would
/// hold the daemon's loop. Received whole, a request with too many is
/// refused and its descriptors closed where their closes cannot hold it.
pub const RECV_FD_ROOM: usize = MAX_FDS_PER_DATAGRAM;

const fn cmsg_space(bytes: usize) -> usize {
    // SAFETY: CMSG_SPACE is a pure computation.
    unsafe { libc::CMSG_SPACE(bytes as u32) as usize }
}

/// Bytes of control buffer for one datagram: room for [`RECV_FD_ROOM`]
/// descriptors plus credentials. FreeBSD's `sockcred2` carries the
/// sender's groups (up to `NGROUPS_MAX`, 1023), so it is sized for the
/// worst case: a cut control message would make a valid request look like
/// one with too many descriptors.
pub const CONTROL_LEN: usize = 8192;

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
    recv_one(sock, buf, &mut ctl.0, libc::MSG_DONTWAIT)
}

/// Descriptors [`recv_few_blocking`] has room for.
pub const FEW_FDS: usize = 2;

/// Blocking `recvmsg(2)` of one datagram with at most [`FEW_FDS`]
/// descriptors and no credentials, every descriptor close-on-exec: the
/// least a server can do per request (the benchmark's minimal servers).
/// [`recv_with_fds`] never blocks and has room for credentials and a group
/// list, which it zeroes on every call.
pub fn recv_few_blocking(sock: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<Received> {
    #[repr(C, align(8))]
    struct Few([u8; cmsg_space(FEW_FDS * size_of::<RawFd>())]);
    let mut ctl = Few([0u8; cmsg_space(FEW_FDS * size_of::<RawFd>())]);
    recv_one(sock, buf, &mut ctl.0, 0)
}

/// `recvmsg(2)` of one datagram into `buf`, its control messages into
/// `ctl` (aligned for `cmsghdr` by the caller), with `flags` and
/// close-on-exec; `EINTR` retried. The one `recvmsg` of the layer.
fn recv_one(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    ctl: &mut [u8],
    flags: libc::c_int,
) -> io::Result<Received> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: an all-zero msghdr is a valid empty header; the pointers are
    // set below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = ctl.as_mut_ptr().cast();
    msg.msg_controllen = ctl.len() as _;
    let n = loop {
        // SAFETY: msg points at iov, buf and ctl, all live for the call and
        // writable for the lengths given.
        let r =
            unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, flags | crate::os::RECV_CLOEXEC) };
        match cvt_len(r) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            r => break r?,
        }
    };
    let mut out = Received {
        len: n.min(buf.len()),
        truncated: msg.msg_flags & libc::MSG_TRUNC != 0,
        fds_truncated: msg.msg_flags & libc::MSG_CTRUNC != 0,
        ..Received::default()
    };
    // SAFETY: recvmsg filled msg's control buffer and length.
    unsafe { take_control(&msg, &mut out) };
    if crate::os::RECV_CLOEXEC == 0 {
        for fd in &out.fds {
            crate::fd::set_cloexec(std::os::fd::AsFd::as_fd(fd))?;
        }
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
    crate::os::recv_batch(sock, bufs, buf_len, out)
}

/// Takes the descriptors (`SCM_RIGHTS`) and the sender's credentials out of
/// the control messages of one received datagram.
///
/// # Safety
///
/// `msg` must be a header that `recvmsg(2)`/`recvmmsg(2)` just filled: its
/// control pointer and length describe what the kernel wrote. Every
/// descriptor found is owned by `out` from then on.
pub(crate) unsafe fn take_control(msg: &libc::msghdr, out: &mut Received) {
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
            if hdr.cmsg_level == libc::SOL_SOCKET {
                if let Some(c) = crate::os::credentials(hdr.cmsg_type, data, data_len) {
                    out.cred = Some(c);
                }
            }
            cmsg = libc::CMSG_NXTHDR(msg, cmsg);
        }
    }
}

/// The ids the kernel reports for an id it cannot map
/// (`/proc/sys/kernel/overflowuid`, `overflowgid`; 65534 by default, and
/// where `/proc` is absent, a chroot).
fn overflow_ids() -> (u32, u32) {
    static IDS: std::sync::OnceLock<(u32, u32)> = std::sync::OnceLock::new();
    *IDS.get_or_init(|| {
        let read = |name: &str| {
            std::fs::read_to_string(format!("/proc/sys/kernel/{name}"))
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok())
                .unwrap_or(65534)
        };
        (read("overflowuid"), read("overflowgid"))
    })
}

/// Learns the overflow ids now ([`is_uncredited`] needs them), while
/// `/proc` is reachable: call before a `chroot`.
pub fn learn_overflow_ids() {
    let _ = overflow_ids();
}

/// Whether `cred` is what Linux reports for a datagram that carries no
/// credentials (it was queued before the receiver set `SO_PASSCRED`, as
/// under socket activation without `PassCredentials=yes`) or whose sender
/// this namespace cannot name: pid 0 and the overflow uid and gid. Such a
/// sender is unknown, not uid 65534: the daemon refuses its request.
/// Always false where credentials are not Linux's.
pub fn is_uncredited(cred: &PeerCred) -> bool {
    if !cfg!(target_os = "linux") || cred.pid != 0 {
        return false;
    }
    let (uid, gid) = overflow_ids();
    cred.uid == uid && cred.gid == gid
}

/// Whether `SO_PASSCRED` is set on `sock` (Linux); `None` where the
/// system has no such option or the question fails.
pub fn passcred_enabled(sock: BorrowedFd<'_>) -> Option<bool> {
    #[cfg(target_os = "linux")]
    {
        nix::sys::socket::getsockopt(&sock, sockopt::PassCred).ok()
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = sock;
        None
    }
}

/// Asks the kernel to attach the sender's credentials to every datagram
/// received on `sock`: `SO_PASSCRED` (socket(7)) on Linux,
/// `LOCAL_CREDS_PERSISTENT` (unix(4)) on FreeBSD. macOS has no per-datagram
/// credentials: a no-op there.
pub fn enable_passcred(sock: BorrowedFd<'_>) -> io::Result<()> {
    crate::os::enable_passcred(sock)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fd::pipe;
    use crate::nowait::{dest_kind, DestKind};
    use std::os::fd::AsFd;

    #[cfg(target_os = "linux")]
    #[test]
    fn a_datagram_queued_before_passcred_is_uncredited() {
        let (a, b) = std::os::unix::net::UnixDatagram::pair().unwrap();
        assert_eq!(passcred_enabled(b.as_fd()), Some(false));
        a.send(b"early").unwrap();
        enable_passcred(b.as_fd()).unwrap();
        assert_eq!(passcred_enabled(b.as_fd()), Some(true));
        a.send(b"late").unwrap();
        let mut buf = [0u8; 16];
        let early = recv_with_fds(b.as_fd(), &mut buf).unwrap();
        let late = recv_with_fds(b.as_fd(), &mut buf).unwrap();
        let early = early.cred.expect("a credentials message");
        assert!(is_uncredited(&early), "{early:?}");
        let late = late.cred.expect("credentials");
        assert!(!is_uncredited(&late), "{late:?}");
        assert_eq!(late.pid, std::process::id() as i32);
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
    fn the_most_descriptors_a_datagram_can_carry_arrive_whole() {
        let (a, b) = std::os::unix::net::UnixDatagram::pair().unwrap();
        enable_passcred(b.as_fd()).unwrap();
        let (r, _w) = pipe().unwrap();
        let most: Vec<_> = (0..MAX_FDS_PER_DATAGRAM).map(|_| r.as_fd()).collect();
        send_with_fds(a.as_fd(), b"most", &most).unwrap();
        if cfg!(target_os = "linux") {
            // One more is the sender's error: no datagram carries it.
            let over: Vec<_> = (0..MAX_FDS_PER_DATAGRAM + 1).map(|_| r.as_fd()).collect();
            assert!(send_with_fds(a.as_fd(), b"over", &over).is_err());
        }
        send_with_fds(a.as_fd(), b"most", &most).unwrap();
        let mut buf = [0u8; 16];
        let got = recv_with_fds(b.as_fd(), &mut buf).unwrap();
        assert_eq!(got.fds.len(), MAX_FDS_PER_DATAGRAM);
        assert!(!got.fds_truncated, "the control buffer holds them all");
        let mut bufs = vec![0u8; 16 * RECV_BATCH];
        let mut out = Vec::new();
        recv_batch(b.as_fd(), &mut bufs, 16, &mut out).unwrap();
        assert_eq!(out[0].fds.len(), MAX_FDS_PER_DATAGRAM);
        assert!(!out[0].fds_truncated, "the batch's control buffers too");
        if cfg!(any(target_os = "linux", target_os = "freebsd")) {
            assert!(out[0].cred.is_some(), "credentials beside them");
        }
    }
}
