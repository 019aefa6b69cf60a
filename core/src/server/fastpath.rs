//! Small savings on the per-request path, kept apart from the loop.
//!
//! A 4 KiB Send costs the daemon about twenty system calls; the in-process
//! reference four. Each helper here takes one off.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use crate::backend::DestKind;
use crate::sys;

/// Sets `O_NONBLOCK` with one `ioctl(FIONBIO)` instead of `fcntl`
/// `F_GETFL` + `F_SETFL` (the same flag on the same open file description).
pub fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    let mut on: libc::c_int = 1;
    // SAFETY: FIONBIO reads one int from the pointer we pass.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONBIO as _, &mut on) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// What kind of destination `fd` is, like [`sys::dest_kind`] but asking
/// `getsockopt(SO_TYPE)` first: a socket (the usual destination) costs one
/// system call instead of `fstat` + `getsockopt`; anything else answers
/// `ENOTSOCK` and is classified by `fstat`.
pub fn dest_kind(fd: BorrowedFd<'_>) -> io::Result<DestKind> {
    let mut ty: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: ty and len are valid for the option's size.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TYPE,
            (&mut ty as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if r == 0 {
        return Ok(if ty == libc::SOCK_STREAM {
            DestKind::StreamSocket
        } else {
            DestKind::OtherSocket
        });
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() != Some(libc::ENOTSOCK) {
        return Err(e);
    }
    sys::dest_kind(fd)
}

/// How many random ids one `getrandom(2)` fetches.
const IDS_PER_FETCH: usize = 32;

/// Unguessable transfer ids from the kernel's CSPRNG, fetched
/// [`IDS_PER_FETCH`] at a time instead of one system call per request. Ids
/// not yet handed out stay in this process only.
#[derive(Debug, Default)]
pub struct RandomIds {
    buf: Vec<u64>,
}

impl RandomIds {
    /// The next random 64-bit value.
    pub fn take(&mut self) -> io::Result<u64> {
        if let Some(v) = self.buf.pop() {
            return Ok(v);
        }
        let mut bytes = [0u8; IDS_PER_FETCH * 8];
        sys::random_bytes(&mut bytes)?;
        self.buf.extend(
            bytes
                .chunks_exact(8)
                .map(|c| u64::from_ne_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]])),
        );
        self.buf
            .pop()
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EIO))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn fionbio_sets_the_flag() {
        let (_r, w) = sys::pipe().unwrap();
        set_nonblocking(w.as_fd()).unwrap();
        // SAFETY: plain fcntl on a descriptor we own.
        let fl = unsafe { libc::fcntl(w.as_raw_fd(), libc::F_GETFL) };
        assert_ne!(fl & libc::O_NONBLOCK, 0);
    }

    #[test]
    fn dest_kinds_match_the_portable_answer() {
        let (r, w) = sys::pipe().unwrap();
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let (d, _e) = std::os::unix::net::UnixDatagram::pair().unwrap();
        let f = std::fs::File::open("/dev/null").unwrap();
        let t = tempfile::tempfile().unwrap();
        for fd in [
            w.as_fd(),
            r.as_fd(),
            a.as_fd(),
            d.as_fd(),
            f.as_fd(),
            t.as_fd(),
        ] {
            assert_eq!(dest_kind(fd).unwrap(), sys::dest_kind(fd).unwrap());
        }
    }

    #[test]
    fn ids_differ_across_fetches() {
        let mut ids = RandomIds::default();
        let v: Vec<u64> = (0..3 * IDS_PER_FETCH)
            .map(|_| ids.take().unwrap())
            .collect();
        let mut s = v.clone();
        s.sort_unstable();
        s.dedup();
        assert_eq!(s.len(), v.len());
    }
}

/// Datagrams one [`RecvBatch::recv`] takes at most.
pub const BATCH: usize = 8;

/// Receives request datagrams several at a time: `recvmmsg(2)` on Linux,
/// one `recvmsg` at a time elsewhere.
///
/// On Linux a batch that comes back with fewer than [`BATCH`] datagrams
/// emptied the queue, so the loop can wait for the next readiness edge
/// without the `recvmsg` that would only say `EAGAIN` (epoll reports every
/// datagram's arrival, queued or not). Elsewhere the loop reads until
/// `EAGAIN` as before.
#[derive(Debug, Default)]
pub struct RecvBatch {
    bufs: Vec<u8>,
    buf_len: usize,
    lens: [usize; BATCH],
}

impl RecvBatch {
    /// Room for [`BATCH`] datagrams of up to `buf_len` bytes each.
    pub fn new(buf_len: usize) -> RecvBatch {
        RecvBatch {
            bufs: vec![0u8; buf_len * BATCH],
            buf_len,
            lens: [0; BATCH],
        }
    }

    /// The payload of datagram `i` of the last batch.
    pub fn payload(&self, i: usize) -> &[u8] {
        let start = i * self.buf_len;
        &self.bufs[start..start + self.lens[i]]
    }

    /// Receives up to [`BATCH`] datagrams into `out` (cleared first).
    /// Returns whether the queue is known to be empty now. `WouldBlock`
    /// when nothing was queued.
    #[cfg(target_os = "linux")]
    pub fn recv(&mut self, sock: BorrowedFd<'_>, out: &mut Vec<sys::Received>) -> io::Result<bool> {
        #[repr(C, align(8))]
        #[derive(Clone, Copy)]
        struct Ctl([u8; 256]);
        out.clear();
        let mut ctls = [Ctl([0u8; 256]); BATCH];
        // SAFETY: zeroed iovec and mmsghdr are valid; the pointers are set below.
        let mut iovs: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        let base = self.bufs.as_mut_ptr();
        for i in 0..BATCH {
            // SAFETY: i * buf_len + buf_len <= bufs.len().
            iovs[i].iov_base = unsafe { base.add(i * self.buf_len) }.cast();
            iovs[i].iov_len = self.buf_len;
            hdrs[i].msg_hdr.msg_iov = &mut iovs[i];
            hdrs[i].msg_hdr.msg_iovlen = 1;
            hdrs[i].msg_hdr.msg_control = ctls[i].0.as_mut_ptr().cast();
            hdrs[i].msg_hdr.msg_controllen = ctls[i].0.len() as _;
        }
        let n = loop {
            // SAFETY: hdrs, iovs, ctls and bufs outlive the call.
            let r = unsafe {
                libc::recvmmsg(
                    sock.as_raw_fd(),
                    hdrs.as_mut_ptr(),
                    BATCH as _,
                    (libc::MSG_DONTWAIT | libc::MSG_CMSG_CLOEXEC) as _,
                    std::ptr::null_mut(),
                )
            };
            if r >= 0 {
                break r as usize;
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        };
        for (i, h) in hdrs.iter().enumerate().take(n) {
            let msg = &h.msg_hdr;
            let len = h.msg_len as usize;
            self.lens[i] = len.min(self.buf_len);
            let mut rcv = sys::Received {
                len: self.lens[i],
                truncated: msg.msg_flags & libc::MSG_TRUNC != 0,
                fds_truncated: msg.msg_flags & libc::MSG_CTRUNC != 0,
                ..sys::Received::default()
            };
            // SAFETY: recvmmsg just filled this header (msg_controllen was
            // updated by the kernel).
            unsafe { sys::take_control(msg, &mut rcv) };
            out.push(rcv);
        }
        if n == 0 {
            return Err(io::Error::from(io::ErrorKind::WouldBlock));
        }
        Ok(n < BATCH)
    }

    /// Receives one datagram into `out` (cleared first); the queue is never
    /// known to be empty. `WouldBlock` when nothing was queued.
    #[cfg(not(target_os = "linux"))]
    pub fn recv(&mut self, sock: BorrowedFd<'_>, out: &mut Vec<sys::Received>) -> io::Result<bool> {
        out.clear();
        let rcv = sys::recv_with_fds(sock, &mut self.bufs[..self.buf_len])?;
        self.lens[0] = rcv.len;
        out.push(rcv);
        Ok(false)
    }
}
