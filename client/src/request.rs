//! Sending one request datagram to the daemon. Rule: one `sendmsg` with the
//! request's descriptors, never a wait without bound; knows nothing of what
//! the request asks (the callers encode it with [`crate::protocol`]).
//!
//! The blocking client, the in-process attempt's hand-offs ([`crate::inline`]),
//! the tokio client and the C library all send through here, so the bound on
//! a full request queue ([`REQUEST_WAIT`]) is the same for all of them.

use std::io;
use std::os::fd::BorrowedFd;
use std::time::Duration;

use crate::sys;

/// Sends an already-encoded request (used by the C library, which encodes
/// with the same [`Request::encode`](crate::protocol::Request::encode)). Never waits without bound: a full
/// request queue is waited for at most [`REQUEST_WAIT`], then `EAGAIN`; a
/// handled signal ends the wait with `EINTR` (not retried), whatever the
/// socket's `O_NONBLOCK`.
pub fn send_request_bytes(
    sock: BorrowedFd<'_>,
    bytes: &[u8],
    fds: &[BorrowedFd<'_>],
) -> io::Result<()> {
    let deadline = std::time::Instant::now() + REQUEST_WAIT;
    loop {
        match try_send_request_bytes(sock, bytes, fds) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            r => return r,
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() || !sys::poll_writable_once(sock, left)? {
            return Err(io::Error::from_raw_os_error(libc::EAGAIN));
        }
    }
}

/// How long a request waits for room in the daemon's request queue (a
/// stalled or fake server) before it fails with `EAGAIN`: the bound
/// sendfiled.h and sendfiled(3) document. A signal the caller handles ends
/// the wait with `EINTR`.
pub const REQUEST_WAIT: Duration = Duration::from_secs(1);

/// One attempt to send a request, never waiting (`MSG_DONTWAIT`):
/// `WouldBlock` when the daemon's queue is full, `EINTR` returned. For
/// callers with their own readiness loop (the tokio client).
pub fn try_send_request_bytes(
    sock: BorrowedFd<'_>,
    bytes: &[u8],
    fds: &[BorrowedFd<'_>],
) -> io::Result<()> {
    let n = sys::send_with_fds_dontwait(sock, bytes, fds)?;
    if n != bytes.len() {
        return Err(io::Error::from_raw_os_error(libc::EMSGSIZE));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixDatagram;

    /// A server that never reads its queue: a request waits at most
    /// [`REQUEST_WAIT`] for room, then `EAGAIN`, whatever the socket's
    /// `O_NONBLOCK`; a handled signal ends the wait with `EINTR`.
    #[test]
    fn a_full_request_queue_is_eagain_and_a_signal_is_eintr() {
        use std::os::fd::AsFd;
        let (a, _b) = UnixDatagram::pair().unwrap();
        // Fill the queue without waiting.
        let mut filled = false;
        for _ in 0..4096 {
            match try_send_request_bytes(a.as_fd(), b"x", &[]) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    filled = true;
                    break;
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert!(filled, "the queue never filled");
        let t = std::time::Instant::now();
        let e = send_request_bytes(a.as_fd(), b"x", &[]).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EAGAIN));
        assert!(
            t.elapsed() >= REQUEST_WAIT,
            "it waited the documented bound"
        );

        // A signal ends the wait: sent to the waiting thread until it
        // answers (the handler does nothing and does not restart calls).
        sys::install_interrupt_handler().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = std::thread::spawn(move || {
            tx.send(sys::current_thread()).unwrap();
            send_request_bytes(a.as_fd(), b"x", &[])
        });
        let tid = rx.recv().unwrap();
        while !waiter.is_finished() {
            sys::interrupt_thread(tid).unwrap();
            // Bounded pause between signals: wait on the channel, which
            // never gets another message.
            let _ = rx.recv_timeout(Duration::from_millis(5));
        }
        let r = waiter.join().unwrap();
        assert_eq!(r.unwrap_err().raw_os_error(), Some(libc::EINTR));
    }
}
