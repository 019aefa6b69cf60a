//! Hostile clients (issue 13, rows 1, 2 and 4): a client that clears
//! `O_NONBLOCK` on a descriptor it shares with the daemon and stops reading,
//! a TCP destination that lingers on close, and a regular-file destination
//! whose writes are slow must not hold the loop: another client's small
//! Read completes within [`VICTIM_BOUND`] while the attack holds for
//! [`HOLD`], and `SIGTERM` during the attack ends the daemon within
//! [`EXIT_BOUND`].
//!
//! Each test runs in both passes of `ci/test.sh`: with the native Linux
//! paths and with `SENDFILED_FORCE_FALLBACK=1` (inherited by the daemon).
#![cfg(target_os = "linux")]

mod common;

use std::ffi::CString;
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::*;
use sendfiled_client::client::Range;
use sendfiled_client::protocol::{self as proto, HeaderTrailer, Request, Response};
use sendfiled_core::sys;

/// How long an attack holds before the attacker lets go (drains).
const HOLD: Duration = Duration::from_secs(12);
/// How long the victim keeps making Reads during the attack.
const VICTIM_FOR: Duration = Duration::from_secs(3);
/// The most one of the victim's small Reads may take. Generous: seven
/// daemons of this file share two loaded cores with synchronous writes of
/// hundreds of MiB, and a held loop costs the whole hold or linger (10 s or
/// more), which this still tells apart.
const VICTIM_BOUND: Duration = Duration::from_secs(5);
/// The most the daemon may take to exit after `SIGTERM` during an attack:
/// its 1.5 s grace for stuck threads and a loaded machine's slack, still
/// short of a hold or a linger.
const EXIT_BOUND: Duration = Duration::from_secs(8);

const MIB: usize = 1 << 20;

/// Clears `O_NONBLOCK` on our copy of `fd`: the daemon's too, the same open
/// file description.
fn clear_nonblocking(fd: BorrowedFd<'_>) {
    sys::set_nonblocking(fd, false).expect("fcntl");
}

/// Reads and discards up to `n` bytes (or until nothing comes for a while).
fn read_some(fd: BorrowedFd<'_>, n: usize) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0;
    while got < n {
        if !sys::wait_readable(fd, Duration::from_secs(5)).unwrap() {
            return;
        }
        let want = (n - got).min(buf.len());
        match sys::read(fd, &mut buf[..want]) {
            Ok(0) => return,
            Ok(k) => got += k,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => panic!("read: {e}"),
        }
    }
}

/// After [`HOLD`] from `start`, reads `fd` to its end (or error) on a
/// thread, so that a daemon held by the attack is let go.
fn release_after(start: Instant, fd: OwnedFd) -> JoinHandle<()> {
    std::thread::spawn(move || {
        wait_until(start + HOLD);
        let _ = sys::set_nonblocking(fd.as_fd(), true);
        let deadline = Instant::now() + WAIT;
        let mut buf = vec![0u8; 1 << 16];
        while Instant::now() < deadline {
            if !sys::wait_readable(fd.as_fd(), Duration::from_millis(500)).unwrap_or(false) {
                continue;
            }
            match sys::read(fd.as_fd(), &mut buf) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    })
}

/// One small Read on a connection of its own, its data read with bounded
/// waits; returns how long it took.
fn victim_read(d: &Daemon) -> Duration {
    let t0 = Instant::now();
    let c = d.client();
    let (r, w) = pipe();
    let req = Request::Read {
        path: CString::new("small").unwrap(),
        range: Range::WHOLE,
    };
    c.send_request(&req, &[w.as_fd()]).expect("request");
    drop(w);
    let got = read_to_end(r.as_fd());
    assert_eq!(
        got.len(),
        proto::FILE_INFO_LEN + 4096,
        "victim's Read whole"
    );
    assert!(
        got[proto::FILE_INFO_LEN..] == pattern(4096)[..],
        "victim's Read byte-exact"
    );
    t0.elapsed()
}

/// The victim's worst Read latency over [`VICTIM_FOR`].
fn victim_worst(d: &Daemon) -> Duration {
    let until = Instant::now() + VICTIM_FOR;
    let mut worst = Duration::ZERO;
    let mut n = 0;
    while Instant::now() < until || n < 3 {
        worst = worst.max(victim_read(d));
        n += 1;
        // A pause between Reads, waiting on a descriptor nothing writes.
        let (r, _w) = pipe();
        let _ = sys::wait_readable(r.as_fd(), Duration::from_millis(50));
    }
    eprintln!("victim: {n} Reads, worst {worst:?}");
    worst
}

/// Sends `SIGTERM` and returns how long the daemon took to exit (bounded by
/// a wait on its pidfd; panics past [`WAIT`]).
fn terminate(d: &mut Daemon) -> Duration {
    // SAFETY: pidfd_open of our own child; the descriptor is owned below.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, d.pid, 0) };
    assert!(
        pidfd >= 0,
        "pidfd_open: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: a new descriptor we own.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd as i32) };
    let t0 = Instant::now();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(d.pid, libc::SIGTERM) };
    assert!(
        sys::wait_readable(pidfd.as_fd(), WAIT).unwrap(),
        "daemon did not exit within {WAIT:?}"
    );
    let took = t0.elapsed();
    let status = d.child.take().expect("running").wait().expect("wait");
    eprintln!("exit after SIGTERM: {took:?} ({status})");
    took
}

fn tcp_pair() -> (OwnedFd, OwnedFd) {
    let l = TcpListener::bind("127.0.0.1:0").expect("listen");
    let c = TcpStream::connect(l.local_addr().unwrap()).expect("connect");
    let (p, _) = l.accept().expect("accept");
    (OwnedFd::from(c), OwnedFd::from(p))
}

fn unix_pair() -> (OwnedFd, OwnedFd) {
    let (a, b) = UnixStream::pair().expect("socketpair");
    (OwnedFd::from(a), OwnedFd::from(b))
}

fn daemon_with_files(big: usize) -> Daemon {
    let d = Daemon::start();
    d.write("small", &pattern(4096));
    d.write("big", &pattern(big));
    d
}

/// Row 1 for a destination `(dest, peer)`: a Send fills it, the client
/// clears `O_NONBLOCK` on its copy, makes some room by reading `room` bytes
/// and stops reading.
fn destination_attack(dest: OwnedFd, peer: OwnedFd, room: usize, header: bool) {
    let mut d = daemon_with_files(32 * MIB);
    let start = Instant::now();
    let c = d.client();
    let hdtr = HeaderTrailer {
        header: if header { pattern(1000) } else { Vec::new() },
        trailer: Vec::new(),
    };
    let st = c
        .send_hdtr("big", dest.as_fd(), Range::WHOLE, hdtr)
        .expect("send");
    // The file info comes once the first turn has filled the destination.
    match st.recv_timeout(WAIT).expect("status") {
        Some(Response::FileInfo(_)) => {}
        other => panic!("expected the file info, got {other:?}"),
    }
    clear_nonblocking(dest.as_fd());
    read_some(peer.as_fd(), room);
    let release = release_after(start, peer);
    let worst = victim_worst(&d);
    let exit = terminate(&mut d);
    drop(dest);
    drop(st);
    let _ = release.join();
    assert!(
        worst < VICTIM_BOUND,
        "a victim's Read took {worst:?} while a client held its destination"
    );
    assert!(exit < EXIT_BOUND, "SIGTERM took {exit:?} during the attack");
}

#[test]
fn a_unix_socket_made_blocking_by_its_client_does_not_hold_the_loop() {
    let (dest, peer) = unix_pair();
    destination_attack(dest, peer, MIB, false);
}

#[test]
fn a_tcp_socket_made_blocking_by_its_client_does_not_hold_the_loop() {
    let (dest, peer) = tcp_pair();
    destination_attack(dest, peer, 4 * MIB, false);
}

#[test]
fn a_pipe_made_blocking_by_its_client_does_not_hold_the_loop() {
    let (r, w) = pipe();
    destination_attack(w, r, 32 * 1024, true);
}

/// Fills a pipe's write end until it takes no more.
fn fill(w: BorrowedFd<'_>) -> usize {
    sys::set_nonblocking(w, true).unwrap();
    let junk = [0x55u8; 4096];
    let mut n = 0;
    while let Ok(k) = sys::write(w, &junk) {
        n += k;
    }
    n
}

/// Row 1 for the status pipe: the client keeps the write end of its status
/// pipe, fills it, and once the transfer is admitted clears `O_NONBLOCK`;
/// the transfer's completion then has no room.
#[test]
fn a_status_pipe_made_blocking_by_its_client_does_not_hold_the_loop() {
    let mut d = daemon_with_files(MIB);
    let start = Instant::now();
    let (status_r, status_w) = pipe();
    let (dest_r, dest_w) = pipe();
    fill(status_w.as_fd());
    let junk = fill(dest_w.as_fd());
    let req = Request::Send {
        path: CString::new("small").unwrap(),
        range: Range::WHOLE,
        hdtr: HeaderTrailer::default(),
    };
    d.client()
        .send_request(&req, &[status_w.as_fd(), dest_w.as_fd()])
        .expect("request");
    assert!(eventually(|| d.live() == 1), "transfer admitted");
    clear_nonblocking(status_w.as_fd());
    // The destination drains: the transfer completes and owes its status.
    let got = read_exact_or_eof(dest_r.as_fd(), junk + 4096);
    assert_eq!(got.len(), junk + 4096);
    let release = release_after(start, status_r);
    let worst = victim_worst(&d);
    let exit = terminate(&mut d);
    drop(status_w);
    let _ = release.join();
    assert!(
        worst < VICTIM_BOUND,
        "a victim's Read took {worst:?} while a client held its status pipe"
    );
    assert!(exit < EXIT_BOUND, "SIGTERM took {exit:?} during the attack");
}

/// `SO_LINGER {1, secs}` on a socket.
fn linger(fd: BorrowedFd<'_>, secs: i32) {
    sys::set_linger(fd, Some(secs)).expect("SO_LINGER");
}

/// A Send to a TCP socket with `SO_LINGER {1, 10}` whose peer never reads;
/// the client's own copy closed. Returns the status channel, the transfer
/// id and the peer (kept open, never read).
fn lingering_send(d: &Daemon) -> (sendfiled_client::client::StatusChannel, u64, OwnedFd) {
    let (dest, peer) = tcp_pair();
    linger(dest.as_fd(), 10);
    let st = d
        .client()
        .send("big", dest.as_fd(), Range::WHOLE)
        .expect("send");
    let txnid = match st.recv_timeout(WAIT).expect("status") {
        Some(Response::FileInfo(fi)) => fi.txnid as u64,
        other => panic!("expected the file info, got {other:?}"),
    };
    drop(dest);
    (st, txnid, peer)
}

/// Row 2: the cancelled transfer's destination lingers on its last close;
/// the loop does not wait for it.
#[test]
fn a_lingering_close_does_not_hold_the_loop() {
    let mut d = daemon_with_files(32 * MIB);
    let (st, txnid, peer) = lingering_send(&d);
    d.client().cancel(txnid).expect("cancel");
    let worst = victim_worst(&d);
    let exit = terminate(&mut d);
    drop((st, peer));
    assert!(
        worst < VICTIM_BOUND,
        "a victim's Read took {worst:?} behind a lingering close"
    );
    assert!(
        exit < EXIT_BOUND,
        "SIGTERM took {exit:?} with a lingering close"
    );
}

/// Row 2 at shutdown: three live transfers to lingering destinations.
#[test]
fn shutdown_does_not_wait_out_lingering_destinations() {
    let mut d = daemon_with_files(32 * MIB);
    let held: Vec<_> = (0..3).map(|_| lingering_send(&d)).collect();
    assert!(victim_read(&d) < VICTIM_BOUND);
    let exit = terminate(&mut d);
    drop(held);
    assert!(
        exit < EXIT_BOUND,
        "shutdown took {exit:?} with three lingering destinations"
    );
}

/// Row 4: a large Send to an `O_DSYNC` file runs on the disk threads; a
/// victim's small Reads stay quick meanwhile and the file is byte-exact.
#[test]
fn a_slow_regular_file_destination_does_not_hold_the_loop() {
    let mut d = daemon_with_files(64 * MIB);
    let (_dir, f) = dsync_file();
    let st = d
        .client()
        .send("big", f.as_fd(), Range::WHOLE)
        .expect("send");
    let worst = victim_worst(&d);
    let c = complete(&st);
    assert!(c.complete, "{c:?}");
    let got = std::fs::read(format!("/proc/self/fd/{}", f.as_raw_fd())).expect("read back");
    assert!(got == pattern(64 * MIB), "O_DSYNC destination byte-exact");
    assert!(
        worst < VICTIM_BOUND,
        "a victim's Read took {worst:?} during an O_DSYNC Send"
    );
    // SIGTERM during a long regular-file Send (a sparse 512 MiB source).
    let big = d.root().join("huge");
    std::fs::File::create(&big)
        .and_then(|h| h.set_len(512 * MIB as u64))
        .expect("sparse file");
    let (_dir2, f2) = dsync_file();
    let st2 = d
        .client()
        .send("huge", f2.as_fd(), Range::WHOLE)
        .expect("send");
    match st2.recv_timeout(WAIT).expect("status") {
        Some(Response::FileInfo(_)) => {}
        other => panic!("expected the file info, got {other:?}"),
    }
    let exit = terminate(&mut d);
    assert!(
        exit < EXIT_BOUND,
        "SIGTERM took {exit:?} during an O_DSYNC Send"
    );
}
