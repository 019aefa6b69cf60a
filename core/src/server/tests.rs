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
use crate::backend::{DestKind, FileChunk, Moved, OpenAttempt, ReadWriteCopy, TransferBackend};
use crate::protocol::{HeaderTrailer, Range, Request, SFD_FILE_INFO, SFD_XFER_STAT};
use crate::sys;
use sendfiled_client::client::{self, Client, Response};

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
        kind: DestKind,
    ) -> io::Result<Moved> {
        ReadWriteCopy::send_file(chunk, dest, kind)
    }

    fn open_beneath(&self, root: BorrowedFd<'_>, path: &CStr) -> io::Result<(OwnedFd, libc::stat)> {
        crate::sys::beneath::open_beneath_by_walk(root, path)
    }
}

/// A server running on its own thread, and the way to stop it.
struct Running {
    root: tempfile::TempDir,
    socket: std::path::PathBuf,
    stop: Option<UnixStream>,
    thread: Option<JoinHandle<io::Result<()>>>,
}

/// The portable backend, except that a path containing `slow` is never
/// answered from the caches ([`OpenAttempt::WouldBlock`]) and its open on a
/// disk thread says so on [`Gate::entered`], then waits until the test
/// writes to [`Gate::go`] (or [`WAIT`] passes).
struct SlowOpens {
    go: OwnedFd,
    entered: OwnedFd,
}

/// The test's ends of a [`SlowOpens`] backend's pipes.
struct Gate {
    go: OwnedFd,
    entered: OwnedFd,
}

impl SlowOpens {
    fn new() -> (SlowOpens, Gate) {
        let (go_r, go_w) = sys::pipe().unwrap();
        let (entered_r, entered_w) = sys::pipe().unwrap();
        (
            SlowOpens {
                go: go_r,
                entered: entered_w,
            },
            Gate {
                go: go_w,
                entered: entered_r,
            },
        )
    }
}

impl Gate {
    /// Lets every slow open go on.
    fn open(&self) {
        assert_eq!(sys::write(self.go.as_fd(), b"go").unwrap(), 2);
    }

    /// Waits until a disk thread is in a slow open.
    fn wait_entered(&self) {
        assert!(sys::wait_readable(self.entered.as_fd(), WAIT).unwrap());
    }
}

fn is_slow(path: &CStr) -> bool {
    path.to_bytes().windows(4).any(|w| w == b"slow")
}

impl TransferBackend for SlowOpens {
    fn name(&self) -> &'static str {
        "slow-opens-test"
    }

    fn send_file(
        &self,
        chunk: FileChunk<'_>,
        dest: BorrowedFd<'_>,
        kind: DestKind,
    ) -> io::Result<Moved> {
        Portable.send_file(chunk, dest, kind)
    }

    fn open_beneath(&self, root: BorrowedFd<'_>, path: &CStr) -> io::Result<(OwnedFd, libc::stat)> {
        if is_slow(path) {
            sys::write(self.entered.as_fd(), b"in")?;
            // Readable once the test writes (it never reads it back).
            sys::wait_readable(self.go.as_fd(), WAIT)?;
        }
        Portable.open_beneath(root, path)
    }

    fn open_beneath_cached(&self, root: BorrowedFd<'_>, path: &CStr) -> OpenAttempt {
        if is_slow(path) {
            return OpenAttempt::WouldBlock;
        }
        OpenAttempt::Done(Portable.open_beneath(root, path))
    }
}

/// A server on a [`SlowOpens`] backend with `slow/f` holding `data`, and
/// the gate of its slow opens.
fn with_slow_file(data: &[u8]) -> (Running, Gate) {
    let (backend, gate) = SlowOpens::new();
    let s = Running::start_with(backend, config());
    std::fs::create_dir(s.root.path().join("slow")).unwrap();
    s.write("slow/f", data);
    (s, gate)
}

impl Running {
    fn start(config: Config) -> Running {
        Running::start_with(Portable, config)
    }

    fn start_with<B: TransferBackend + Send + 'static>(backend: B, config: Config) -> Running {
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
            let mut s = Server::new(backend, config, root_fd, bound, stop_rx.into())?;
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
        // SENDFILED_ENGINE picks the engine, as it does for the daemon.
        engine: super::engine::EngineKind::from_env().unwrap(),
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

/// Polls the server's live count (each check waits on its reply pipe)
/// until `want`, pausing on a descriptor that never becomes ready.
fn live_becomes(c: &Client, want: u64) -> bool {
    let deadline = Instant::now() + WAIT;
    let (never, _keep) = sys::pipe().unwrap();
    while Instant::now() < deadline {
        if c.server_status(WAIT).unwrap().live == want {
            return true;
        }
        let _ = sys::wait_readable(never.as_fd(), Duration::from_millis(10));
    }
    false
}

/// A Send of `path` whose status goes to `status` (a pipe's write end the
/// caller may share between requests).
fn send_with_status(c: &Client, path: &str, status: BorrowedFd<'_>, dest: BorrowedFd<'_>) {
    let req = Request::Send {
        path: std::ffi::CString::new(path).unwrap(),
        range: Range::WHOLE,
        hdtr: HeaderTrailer::default(),
    };
    c.send_request(&req, &[status, dest]).unwrap();
}

/// Fills a pipe with 0x5a bytes, in whole 4 KiB writes; returns how many.
fn fill(w: BorrowedFd<'_>) -> usize {
    sys::set_nonblocking(w, true).unwrap();
    let junk = [0x5au8; 4096];
    let mut filled = 0;
    while sys::write(w, &junk).is_ok() {
        filled += junk.len();
    }
    filled
}

#[test]
fn the_share_rule_takes_back_only_from_a_uid_above_its_share() {
    use super::share::{admit, fair_share, share_of, Admit};
    assert_eq!(share_of(1024, 50), 512);
    assert_eq!(share_of(1, 50), 1, "at least one");
    assert_eq!(share_of(3, 50), 1);
    assert_eq!(share_of(16, 100), 16);
    assert_eq!(share_of(16, 500), 16, "capped at the table");
    assert_eq!(fair_share(16, 50, 1), 8);
    assert_eq!(fair_share(16, 50, 2), 8);
    assert_eq!(fair_share(16, 50, 3), 5, "an equal part among three");
    assert_eq!(
        fair_share(16, 100, 4),
        16,
        "100: the whole table, never shared"
    );
    assert_eq!(fair_share(2, 50, 40), 1, "at least one");
    // Two uids holding 8 each: a third (share 5) takes back from them.
    assert_eq!(
        admit(16, 16, fair_share(16, 50, 3), 0, Some((Some(1), 8))),
        Admit::TakeBackFrom(Some(1))
    );
    // Room: anyone, whatever it holds (a lone uid keeps every slot).
    assert_eq!(admit(15, 16, 8, 15, None), Admit::Yes);
    // Full, one uid: nothing to take back from.
    assert_eq!(admit(16, 16, 8, 16, None), Admit::Refuse);
    // Full: uid 2 holds nothing, uid 1 all of it: one comes back.
    assert_eq!(
        admit(16, 16, 8, 0, Some((Some(1), 16))),
        Admit::TakeBackFrom(Some(1))
    );
    // The requester is at its share: refused, as before.
    assert_eq!(admit(16, 16, 8, 8, Some((Some(1), 8))), Admit::Refuse);
    assert_eq!(admit(16, 16, 8, 8, Some((Some(1), 9))), Admit::Refuse);
    // The largest holds exactly its share: it keeps it.
    assert_eq!(admit(16, 16, 8, 7, Some((Some(1), 8))), Admit::Refuse);
    // share 100: never.
    assert_eq!(admit(16, 16, 16, 0, Some((Some(1), 16))), Admit::Refuse);
    // Two uids asking in turn settle at the share and stop: no ping-pong.
    let mut held = [16usize, 0];
    for round in 0..100 {
        let (me, other) = (round % 2, 1 - round % 2);
        let largest = Some((Some(other as u32), held[other]));
        if let Admit::TakeBackFrom(_) = admit(16, 16, 8, held[me], largest) {
            held[other] -= 1;
            held[me] += 1;
        }
    }
    assert_eq!(held, [8, 8]);
}

#[test]
fn a_uid_holding_nothing_takes_back_an_idle_slot_only() {
    use super::share::{may_take_back_idle, pick_idle, Loss, IDLE_TAKE_BACK};
    use std::time::{Duration, Instant};
    // Many uids, one slot each: nobody is above the share, and the
    // requester holds nothing.
    assert!(may_take_back_idle(50, 0, Some(9)));
    assert!(!may_take_back_idle(50, 1, Some(9)), "it holds one already");
    assert!(!may_take_back_idle(100, 0, Some(9)), "100: never");
    assert!(!may_take_back_idle(50, 0, None), "no credentials");
    let now = Instant::now() + Duration::from_secs(10);
    let idle = now - IDLE_TAKE_BACK;
    let young = now - IDLE_TAKE_BACK / 2;
    // Only idle ones, least loss first, then the idlest.
    assert_eq!(
        pick_idle(
            [(1, Loss::UnsentOpen, young), (2, Loss::InFlight, young)],
            now
        ),
        None
    );
    assert_eq!(
        pick_idle(
            [
                (1, Loss::UnsentOpen, young),
                (2, Loss::InFlight, idle - Duration::from_secs(5)),
                (3, Loss::UnsentOpen, idle),
            ],
            now
        ),
        Some(3)
    );
}

#[test]
fn the_transfer_given_back_is_the_one_losing_least_then_the_idlest() {
    use super::share::{pick, Loss, UidCounts};
    let t0 = Instant::now();
    let t = |ms| t0 + Duration::from_millis(ms);
    assert_eq!(pick(Vec::new()), None);
    let c = vec![
        (0, Loss::InFlight, t(0)),
        (1, Loss::UnsentOpen, t(5)),
        (2, Loss::FinalMessage, t(9)),
        (3, Loss::FinalMessage, t(3)),
    ];
    assert_eq!(pick(c.clone()), Some(3), "oldest unread final message");
    assert_eq!(pick(c[..2].to_vec()), Some(1), "an unsent open before data");
    assert_eq!(
        pick(vec![(4, Loss::InFlight, t(8)), (5, Loss::InFlight, t(2))]),
        Some(5),
        "then the longest without progress"
    );
    let mut u = UidCounts::default();
    for _ in 0..3 {
        u.take(Some(1));
    }
    u.take(Some(2));
    u.take(None);
    assert_eq!(u.held(Some(1)), 3);
    assert_eq!(u.largest_other(Some(2)), Some((Some(1), 3)));
    assert_eq!(u.largest_other(Some(1)).map(|(_, n)| n), Some(1));
    for _ in 0..3 {
        u.give_back(Some(1));
    }
    u.give_back(Some(7)); // never held: ignored
    assert_eq!(u.held(Some(1)), 0);
    assert_eq!(
        u.uids(),
        2,
        "an entry lives only while its uid holds a slot"
    );
}

#[test]
fn a_lone_uid_keeps_every_slot_and_is_refused_only_at_the_limit() {
    // The in-process client is one uid: the share never takes back from it.
    let s = Running::start(Config {
        max_transfers: 4,
        uid_share_percent: 25,
        ..config()
    });
    s.write("f", b"data");
    let c = s.client();
    let held: Vec<_> = (0..4).map(|_| c.open("f", Range::WHOLE).unwrap()).collect();
    for ch in &held {
        info_of(ch).expect("every slot");
    }
    let fifth = c.open("f", Range::WHOLE).unwrap();
    assert_eq!(info_of(&fifth), Err(libc::EMFILE));
    for ch in &held {
        assert!(
            !sys::wait_readable(ch.as_fd(), Duration::ZERO).unwrap(),
            "nothing taken back"
        );
    }
}

#[test]
fn a_stalled_send_and_read_end_after_the_stall_timeout_and_free_their_slots() {
    let stall = Duration::from_millis(200);
    let s = Running::start(Config {
        stall_timeout: stall,
        ..config()
    });
    let data = vec![7u8; 4 << 20];
    s.write("big", &data);
    let c = s.client();
    let started = Instant::now();
    // A destination nobody drains.
    let (dr, dw) = sys::pipe().unwrap();
    let st = c.send("big", dw.as_fd(), Range::WHOLE).unwrap();
    drop(dw);
    // A Read nobody reads.
    let rd = c.read("big", Range::WHOLE).unwrap();
    let done = st.wait_complete(WAIT).unwrap();
    assert_eq!(done.error, Some(libc::ETIMEDOUT), "{done:?}");
    assert!(done.info.is_some(), "file info first");
    assert!(started.elapsed() >= stall, "not before the timeout");
    assert_eq!(st.recv_timeout(WAIT).unwrap(), None, "then end of file");
    // The destination's copies are all closed: end of file after a prefix.
    let got = read_fd_to_end(dr.as_fd());
    assert!(!got.is_empty() && got.len() < data.len(), "{}", got.len());
    // The Read stalled too, but its sweep may come a tick after the Send's:
    // reading its pipe before it ended would let it finish. Both slots free
    // first, then the Read's pipe closes short, without a message.
    assert!(live_becomes(&c, 0));
    let mut rd = rd;
    rd.file_info().unwrap();
    let mut part = Vec::new();
    rd.read_to_end(&mut part).unwrap();
    assert!(part.len() < data.len(), "{}", part.len());
    let stat = c.server_status(WAIT).unwrap();
    assert_eq!(stat.failed, 2);
}

fn read_fd_to_end(fd: BorrowedFd<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        assert!(sys::wait_readable(fd, WAIT).unwrap(), "end of file in time");
        match sys::read(fd, &mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("{e}"),
        }
    }
}

#[test]
fn finished_transfers_on_a_status_pipe_nobody_reads_are_closed_after_the_stall_timeout() {
    let s = Running::start(Config {
        stall_timeout: Duration::from_millis(200),
        ..config()
    });
    s.write("small", b"0123456789");
    let c = s.client();
    let (sr, sw) = sys::pipe().unwrap();
    fill(sw.as_fd());
    let mut dests = Vec::new();
    for _ in 0..3 {
        let (r, w) = sys::pipe().unwrap();
        send_with_status(&c, "small", sw.as_fd(), w.as_fd());
        dests.push(r);
    }
    drop(sw);
    for r in &dests {
        let mut buf = [0u8; 16];
        assert!(sys::wait_readable(r.as_fd(), WAIT).unwrap());
        assert_eq!(sys::read(r.as_fd(), &mut buf).unwrap(), 10, "data done");
    }
    assert!(live_becomes(&c, 0), "closed, their slots free");
    // Nothing but the junk was ever written, then end of file: the daemon
    // holds no copy of the shared status pipe.
    sys::set_nonblocking(sr.as_fd(), false).unwrap();
    let got = read_fd_to_end(sr.as_fd());
    assert!(got.iter().all(|&b| b == 0x5a), "no message squeezed in");
}

/// Two transfers on one pipe: B's status channel is the pipe A writes its
/// data to (two descriptors, one open file). Ending A must stop watching
/// A's descriptor only: B still hears when the pipe drains and delivers
/// its final messages (an engine that dropped every watch on the file
/// would leave B to the stall timeout, a minute by default).
#[test]
fn ending_a_transfer_leaves_a_watch_on_the_same_pipe_to_its_owner() {
    let s = Running::start(config());
    s.write("small", b"0123456789");
    s.write("big", &vec![1u8; 1 << 20]);
    let c = s.client();
    let (xr, xw) = sys::pipe().unwrap();
    let filled = fill(xw.as_fd());
    // B: status on the full pipe, data to a pipe of its own.
    let (yr, yw) = sys::pipe().unwrap();
    send_with_status(&c, "small", xw.as_fd(), yw.as_fd());
    drop(yw);
    assert_eq!(read_fd_to_end(yr.as_fd()), b"0123456789", "B's data done");
    // A: data to the full pipe, waiting for room; then cancelled.
    let a = c.send("big", xw.as_fd(), Range::WHOLE).unwrap();
    drop(xw);
    let info = info_of(&a).unwrap();
    c.cancel(info.txnid as u64).unwrap();
    assert_eq!(a.recv_timeout(WAIT).unwrap(), None, "A cancelled");
    // Drain the junk: B's file info and completion follow, in time.
    let mut buf = [0u8; 4096];
    let mut drained = 0;
    while drained < filled {
        assert!(sys::wait_readable(xr.as_fd(), WAIT).unwrap());
        let n = sys::read(xr.as_fd(), &mut buf[..(filled - drained).min(4096)]).unwrap();
        assert!(
            n > 0 && buf[..n].iter().all(|&b| b == 0x5a),
            "only junk first"
        );
        drained += n;
    }
    let b = client::StatusChannel::from_fd(xr);
    let done = b.wait_complete(WAIT).unwrap();
    assert_eq!(done.error, None, "{done:?}");
    assert_eq!(done.info.map(|i| i.size), Some(10), "{done:?}");
}

#[test]
fn the_stall_timeout_leaves_open_files_to_their_own_deadline() {
    // The reader below drains 4 MiB through a pipe: a stall timeout it
    // could be descheduled for on a loaded machine would end that Send too.
    let s = Running::start(Config {
        stall_timeout: Duration::from_secs(2),
        open_timeout: Duration::from_secs(60),
        ..config()
    });
    s.write("big", &vec![1u8; 4 << 20]);
    let c = s.client();
    let opened = c.open("big", Range::WHOLE).unwrap();
    let info = info_of(&opened).unwrap();
    // A stalled Send admitted after the Open times out: the sweep has
    // passed the Open's age by more than the stall timeout.
    let (_dr, dw) = sys::pipe().unwrap();
    let st = c.send("big", dw.as_fd(), Range::WHOLE).unwrap();
    drop(dw);
    assert_eq!(st.wait_complete(WAIT).unwrap().error, Some(libc::ETIMEDOUT));
    assert!(
        !sys::wait_readable(opened.as_fd(), Duration::ZERO).unwrap(),
        "the open file is untouched"
    );
    // It is still there to send; its stall clock starts at Send Open.
    let (r, w) = sys::pipe().unwrap();
    c.send_open(info.txnid as u64, w.as_fd()).unwrap();
    drop(w);
    assert_eq!(read_fd_to_end(r.as_fd()).len(), 4 << 20);
    assert!(opened.wait_complete(WAIT).unwrap().complete);
}

#[test]
fn an_open_that_would_wait_is_a_disk_threads_while_the_loop_serves_others() {
    let (s, gate) = with_slow_file(b"file");
    s.write("quick", b"quick data");
    let c = s.client();
    let (r, w) = sys::pipe().unwrap();
    let hdtr = HeaderTrailer {
        header: b"head:".to_vec(),
        trailer: b":tail".to_vec(),
    };
    let slow = c
        .send_hdtr("slow/f", w.as_fd(), Range::WHOLE, hdtr)
        .unwrap();
    drop(w);
    gate.wait_entered();
    // The loop goes on: another request is served whole while the slow
    // open waits at the gate.
    let mut quick = c.read("quick", Range::WHOLE).unwrap();
    let mut got = Vec::new();
    quick.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"quick data");
    assert!(
        !sys::wait_readable(slow.as_fd(), Duration::ZERO).unwrap(),
        "nothing on the slow request's channel before its open"
    );
    assert!(live_becomes(&c, 1), "the waiting open holds its slot");
    gate.open();
    let info = info_of(&slow).unwrap();
    assert_eq!(info.size, 4);
    assert!(matches!(
        slow.recv_timeout(WAIT).unwrap(),
        Some(Response::Complete)
    ));
    assert_eq!(read_fd_to_end(r.as_fd()), b"head:file:tail");
    assert!(live_becomes(&c, 0));
}

#[test]
fn an_open_off_the_loop_answers_refusals_in_place_of_the_file_info_and_serves_opens() {
    let (s, gate) = with_slow_file(b"opened");
    gate.open();
    let c = s.client();
    let missing = c.open("slow/missing", Range::WHOLE).unwrap();
    assert_eq!(
        missing.recv_timeout(WAIT).unwrap(),
        Some(Response::Error {
            cmd: SFD_FILE_INFO,
            errno: libc::ENOENT
        })
    );
    assert_eq!(missing.recv_timeout(WAIT).unwrap(), None);
    let dir = c.open("slow", Range::WHOLE).unwrap();
    assert_eq!(info_of(&dir), Err(libc::EINVAL));
    // A Read's refusal too comes in place of its file info.
    let mut rd = c.read("slow/missing", Range::WHOLE).unwrap();
    assert_eq!(
        rd.file_info().unwrap_err().raw_os_error(),
        Some(libc::ENOENT)
    );
    // An Open whose file a disk thread opened: Send Open as ever.
    let ch = c.open("slow/f", Range::WHOLE).unwrap();
    let info = info_of(&ch).unwrap();
    assert_eq!(info.size, 6);
    let (r, w) = sys::pipe().unwrap();
    c.send_open(info.txnid as u64, w.as_fd()).unwrap();
    drop(w);
    assert!(matches!(
        ch.recv_timeout(WAIT).unwrap(),
        Some(Response::Complete)
    ));
    assert_eq!(read_fd_to_end(r.as_fd()), b"opened");
    assert!(live_becomes(&c, 0));
}

#[test]
fn shutdown_during_an_open_off_the_loop_closes_its_channel_silently() {
    let (mut s, gate) = with_slow_file(b"data");
    let c = s.client();
    let (r, w) = sys::pipe().unwrap();
    let ch = c.send("slow/f", w.as_fd(), Range::WHOLE).unwrap();
    drop(w);
    gate.wait_entered();
    {
        use std::io::Write;
        s.stop.as_mut().unwrap().write_all(b"x").unwrap();
    }
    assert_eq!(ch.recv_timeout(WAIT).unwrap(), None, "no message");
    // The disk thread finishes its open after the transfer is gone: the
    // file closes and the destination stays unwritten.
    gate.open();
    s.stop().expect("run returns Ok");
    assert_eq!(read_fd_to_end(r.as_fd()), b"");
}
