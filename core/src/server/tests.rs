//! The loop driven in-process: a real request socket in a temporary root, a
//! portable backend (the checked walk and the read/write copy), the Rust
//! client on the other side, and shutdown through the descriptor the binary
//! would wire to its signals.

use std::ffi::CStr;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::listener;
use super::{Config, Server};
use crate::backend::{DestKind, FileChunk, Moved, ReadWriteCopy, TransferBackend};
use crate::client::{self, Client, Response};
use crate::protocol::{Range, Request, SFD_FILE_INFO, SFD_XFER_STAT};
use crate::sys;

const WAIT: Duration = Duration::from_secs(10);

/// The copy path FreeBSD and macOS use for pipes, confined by the walk.
struct Portable;

impl TransferBackend for Portable {
    fn name(&self) -> &'static str {
        "portable-test"
    }

    fn send_file(
        &self,
        chunk: FileChunk<'_>,
        dest: BorrowedFd<'_>,
        _kind: DestKind,
    ) -> io::Result<Moved> {
        ReadWriteCopy::send_file(chunk, dest)
    }

    fn open_beneath(&self, root: BorrowedFd<'_>, path: &CStr) -> io::Result<OwnedFd> {
        crate::confine::open_beneath_by_walk(root, path)
    }
}

/// A server running on its own thread, and the way to stop it.
struct Running {
    root: tempfile::TempDir,
    socket: std::path::PathBuf,
    stop: Option<UnixStream>,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl Running {
    fn start(config: Config) -> Running {
        let root = tempfile::tempdir().unwrap();
        let socket = root.path().join("sock");
        let bound = listener::bind(&socket, 0o600).unwrap();
        let root_fd = sys::open_dir(
            &std::ffi::CString::new(root.path().as_os_str().as_encoded_bytes()).unwrap(),
        )
        .unwrap();
        let (stop_rx, stop_tx) = UnixStream::pair().unwrap();
        // The server is built on its thread: its receive batch is not Send.
        let thread = std::thread::spawn(move || {
            let mut s = Server::new(Portable, config, root_fd, bound, stop_rx.into())?;
            s.run()
        });
        Running {
            root,
            socket,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    fn client(&self) -> Client {
        Client::connect_path(&self.socket).unwrap()
    }

    fn write(&self, rel: &str, data: &[u8]) {
        std::fs::write(self.root.path().join(rel), data).unwrap();
    }

    /// Stops the loop as a signal would and returns what `run` returned.
    fn stop(&mut self) -> io::Result<()> {
        use std::io::Write;
        if let Some(mut s) = self.stop.take() {
            let _ = s.write_all(b"x");
        }
        self.thread.take().map_or(Ok(()), |t| t.join().unwrap())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

fn config() -> Config {
    Config {
        // The portable copy path reads; there is no cache probe.
        probe_cache: false,
        disk_threads: 1,
        ..Config::default()
    }
}

fn info_of(ch: &client::StatusChannel) -> Result<crate::protocol::FileInfo, i32> {
    match ch.recv_timeout(WAIT).unwrap() {
        Some(Response::FileInfo(i)) => Ok(i),
        Some(Response::Error { errno, .. }) => Err(errno),
        other => panic!("{other:?}"),
    }
}

#[test]
fn admission_serves_a_read_and_refuses_precisely() {
    let s = Running::start(Config {
        max_transfers: 1,
        ..config()
    });
    s.write("f", b"hello");
    let c = s.client();
    let mut rd = c.read("f", Range::WHOLE).unwrap();
    let mut got = Vec::new();
    rd.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"hello");
    let mut missing = c.read("nope", Range::WHOLE).unwrap();
    assert_eq!(
        missing.file_info().unwrap_err().raw_os_error(),
        Some(libc::ENOENT)
    );
    let mut root = c.read("/", Range::WHOLE).unwrap();
    assert_eq!(
        root.file_info().unwrap_err().raw_os_error(),
        Some(libc::EINVAL)
    );
    // One slot: a held open file fills it.
    let held = c.open("f", Range::WHOLE).unwrap();
    info_of(&held).unwrap();
    let second = c.open("f", Range::WHOLE).unwrap();
    assert_eq!(info_of(&second), Err(libc::EMFILE));
}

#[test]
fn cancel_closes_the_channel_and_frees_the_slot() {
    let s = Running::start(Config {
        max_transfers: 1,
        ..config()
    });
    s.write("f", b"data");
    let c = s.client();
    let held = c.open("f", Range::WHOLE).unwrap();
    let info = info_of(&held).unwrap();
    c.cancel(info.txnid as u64).unwrap();
    assert_eq!(held.recv_timeout(WAIT).unwrap(), None, "no message");
    let again = c.open("f", Range::WHOLE).unwrap();
    info_of(&again).expect("the slot is free again");
}

#[test]
fn expiry_writes_etimedout_and_a_late_send_open_is_refused() {
    let s = Running::start(Config {
        open_timeout: Duration::from_millis(20),
        ..config()
    });
    s.write("f", b"data");
    let c = s.client();
    let ch = c.open("f", Range::WHOLE).unwrap();
    let info = info_of(&ch).unwrap();
    assert_eq!(
        ch.recv_timeout(WAIT).unwrap(),
        Some(Response::Error {
            cmd: SFD_XFER_STAT,
            errno: libc::ETIMEDOUT
        })
    );
    let (r, w) = sys::pipe().unwrap();
    c.send_open(info.txnid as u64, w.as_fd()).unwrap();
    drop(w);
    assert_eq!(ch.recv_timeout(WAIT).unwrap(), None);
    // The late Send Open's destination was closed unwritten.
    let mut buf = [0u8; 8];
    assert!(sys::wait_readable(r.as_fd(), WAIT).unwrap());
    assert_eq!(sys::read(r.as_fd(), &mut buf).unwrap(), 0);
}

#[test]
fn shutdown_closes_live_channels_silently_and_removes_the_socket() {
    let mut s = Running::start(config());
    s.write("f", b"data");
    let c = s.client();
    let held = c.open("f", Range::WHOLE).unwrap();
    info_of(&held).unwrap();
    s.stop().expect("run returns Ok");
    assert_eq!(held.recv_timeout(WAIT).unwrap(), None);
    assert!(!s.socket.exists(), "socket file removed");
}

#[test]
fn datagram_destinations_are_refused_before_any_byte() {
    let s = Running::start(config());
    s.write("f", b"data");
    let c = s.client();
    let (a, b) = UnixDatagram::pair().unwrap();
    let st = c.send("f", a.as_fd(), Range::WHOLE).unwrap();
    assert_eq!(
        st.recv_timeout(WAIT).unwrap(),
        Some(Response::Error {
            cmd: SFD_FILE_INFO,
            errno: libc::EINVAL
        })
    );
    b.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(
        b.recv(&mut buf).unwrap_err().kind(),
        io::ErrorKind::WouldBlock,
        "nothing was written to the datagram socket"
    );
}

#[test]
fn status_replies_go_to_pipes_only() {
    let s = Running::start(config());
    let c = s.client();
    // A stream socket as the reply channel: closed unanswered.
    let (mine, theirs) = UnixStream::pair().unwrap();
    c.send_request(&Request::Status, &[theirs.as_fd()]).unwrap();
    drop(theirs);
    assert!(sys::wait_readable(mine.as_fd(), WAIT).unwrap());
    let mut buf = [0u8; 64];
    assert_eq!(
        sys::read(mine.as_fd(), &mut buf).unwrap(),
        0,
        "no reply bytes"
    );
    // A pipe still gets its answer.
    let stat = c.server_status(WAIT).unwrap();
    assert_eq!(stat.live, 0);
}

#[test]
fn a_deadline_passed_while_the_loop_was_busy_still_holds() {
    // Many opens and their Send Opens arrive in one batch after the deadline
    // of all of them: each is refused, none is sent.
    let s = Running::start(Config {
        open_timeout: Duration::from_millis(30),
        ..config()
    });
    s.write("f", b"data");
    let c = s.client();
    let mut opened = Vec::new();
    for _ in 0..20 {
        let ch = c.open("f", Range::WHOLE).unwrap();
        let info = info_of(&ch).unwrap();
        opened.push((ch, info.txnid as u64));
    }
    let after = Instant::now() + Duration::from_millis(30);
    let (never, _keep) = sys::pipe().unwrap();
    while Instant::now() < after {
        let _ = sys::wait_readable(never.as_fd(), after - Instant::now());
    }
    let mut dests = Vec::new();
    for (_, id) in &opened {
        let (r, w) = sys::pipe().unwrap();
        c.send_open(*id, w.as_fd()).unwrap();
        dests.push(r);
    }
    for (ch, _) in &opened {
        assert_eq!(
            ch.recv_timeout(WAIT).unwrap(),
            Some(Response::Error {
                cmd: SFD_XFER_STAT,
                errno: libc::ETIMEDOUT
            })
        );
    }
    for r in dests {
        let mut buf = [0u8; 8];
        assert!(sys::wait_readable(r.as_fd(), WAIT).unwrap());
        assert_eq!(sys::read(r.as_fd(), &mut buf).unwrap(), 0, "nothing sent");
    }
}
