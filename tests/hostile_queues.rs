//! Hostile clients, round two (issue 23, rows 4, 5, 7 and 10): the daemon's
//! helper queues and closes. Judged by what another client sees: the
//! daemon's descriptors (`/proc/PID/fd`), another client's Read latency,
//! and the time until another uid's finished Send closes its connection.
//!
//! - row 4: Sends to an `O_DSYNC` file cancelled as fast as they start must
//!   not leave their write jobs (and their descriptors) queued;
//! - row 5: a refused request carrying a lingering TCP socket (as a Status
//!   reply, or among 100 descriptors of a Read) must not hold the loop;
//! - row 7: destinations that linger on close must not delay another uid's
//!   close;
//! - row 10: another uid's backlog of cold Reads must not delay a victim's
//!   cold Read by more than a job or two.
//!
//! The attacker is this test process (uid 0); the victim of rows 7 and 10
//! is this binary run again as uid 12345 (`SFD_QUEUES_HELPER` selects the
//! `helper` test, which prints one `RESULT` line). Tests that switch uids
//! skip (with a note) unless run as root. Each runs on the engine the
//! environment picks (`ci/test.sh` runs them on io_uring and on epoll).
//! Every client here is daemon-only: the subject is the daemon.
#![cfg(target_os = "linux")]

mod common;

use std::ffi::CString;
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use sendfiled_client::client::{Client, Range, Response, StatusChannel};
use sendfiled_client::protocol::Request;
use sendfiled_core::sys;

const HELPER_ENV: &str = "SFD_QUEUES_HELPER";
/// The victim's uid and gid.
const VICTIM: u32 = 12345;
const MIB: usize = 1 << 20;
/// The linger the attacker sets: far longer than any bound below.
const LINGER_SECS: i32 = 20;
/// The most a victim's small Read (or close) may take during an attack.
/// Generous for two shared, loaded cores; a held loop or closer costs the
/// linger (20 s), a FIFO disk queue hundreds of milliseconds, which this
/// tells apart.
const VICTIM_BOUND: Duration = Duration::from_millis(1500);

/// The re-executed victim, by `SFD_QUEUES_HELPER`:
/// - `send-eof|SOCKET|PATH`: Sends PATH to a TCP connection of its own,
///   closes its copy at once, and reports in microseconds how long until
///   the peer sees end of file (the daemon's close) — as an HTTP client
///   waits for a `Connection: close` response's end;
/// - `cold-read|SOCKET|PATH...`: Reads each PATH (4 KiB, not in the page
///   cache) and reports the worst time in microseconds;
/// - `refused-status|SOCKET|x`: asks for the daemon's status with a TCP
///   socket lingering [`LINGER_SECS`] as the reply channel, from a uid not
///   on `--allow-uid`, says `READY` and keeps the socket's peer open until
///   its stdin ends.
///
/// Prints `RESULT <worst µs>`. Does nothing in a normal test run.
#[test]
fn helper() {
    let Ok(spec) = std::env::var(HELPER_ENV) else {
        return;
    };
    let mut words = spec.split('|');
    let mode = words.next().expect("mode");
    let sock = words.next().expect("socket");
    let c = Client::connect_path(Path::new(sock))
        .expect("connect")
        .daemon_only();
    let mut worst = Duration::ZERO;
    for path in words {
        let t0 = Instant::now();
        match mode {
            "send-eof" => {
                let (dest, peer) = tcp_pair();
                let st = c.send(path, dest.as_fd(), Range::WHOLE).expect("send");
                drop(dest);
                let got = read_to_end(peer.as_fd());
                assert_eq!(got, pattern(4096), "victim's Send byte-exact");
                drop(st);
            }
            "cold-read" => {
                let mut rd = c.read(path, Range::WHOLE).expect("read");
                rd.file_info().expect("file info");
                let mut v = Vec::new();
                rd.read_to_end(&mut v).expect("read data");
                assert_eq!(v, pattern(4096), "victim's Read byte-exact");
            }
            "cold-read-on-cue" => {
                // Connected and waiting; each cue line, one Read.
                println!("READY");
                let mut cue = String::new();
                std::io::stdin().read_line(&mut cue).expect("cue");
                let t0 = Instant::now();
                let mut rd = c.read(path, Range::WHOLE).expect("read");
                rd.file_info().expect("file info");
                let mut v = Vec::new();
                rd.read_to_end(&mut v).expect("read data");
                assert_eq!(v, pattern(4096), "victim's Read byte-exact");
                println!("RESULT {}", t0.elapsed().as_micros());
                continue;
            }
            "refused-status" => {
                // Not on the allow-list: refused with EACCES, and the reply
                // channel is a socket whose last close would linger.
                let (sock, peer) = lingering_socket();
                c.send_request(&Request::Status, &[sock.as_fd()])
                    .expect("status request");
                drop(sock);
                // The peer stays open, never reading, until the test is
                // done (its close would reset the connection, and a reset
                // socket no longer lingers).
                println!("READY");
                let mut done = String::new();
                let _ = std::io::stdin().read_line(&mut done);
                drop(peer);
            }
            other => panic!("unknown helper mode {other}"),
        }
        worst = worst.max(t0.elapsed());
    }
    println!("RESULT {}", worst.as_micros());
}

/// Runs the victim as uid [`VICTIM`]; its worst time.
fn victim_as_other_uid(d: &Daemon, mode: &str, paths: &[&str]) -> Duration {
    let spec = format!("{mode}|{}|{}", d.socket().display(), paths.join("|"));
    let w = run_helper_as(HELPER_ENV, &spec, VICTIM, VICTIM);
    Duration::from_micros(w[0].parse().expect("micros"))
}

fn is_root() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    eprintln!("SKIP: switching uids needs root");
    false
}

/// A daemon other uids can reach, its root readable by them.
fn daemon(extra: &[&str]) -> Daemon {
    let mut args = vec!["--socket-mode", "666"];
    args.extend_from_slice(extra);
    let d = Daemon::start_with(&args);
    std::fs::set_permissions(d.root(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    d
}

/// Writes `rel` under the root, readable by every uid.
fn public_file(d: &Daemon, rel: &str, data: &[u8]) {
    let p = d.write(rel, data);
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o644)).expect("chmod");
}

fn tcp_pair() -> (OwnedFd, OwnedFd) {
    let l = TcpListener::bind("127.0.0.1:0").expect("listen");
    let c = TcpStream::connect(l.local_addr().unwrap()).expect("connect");
    let (p, _) = l.accept().expect("accept");
    (OwnedFd::from(c), OwnedFd::from(p))
}

/// `SO_LINGER {1, secs}` on a socket.
fn set_linger(fd: BorrowedFd<'_>, secs: i32) {
    sys::set_linger(fd, Some(secs)).expect("SO_LINGER");
}

/// A TCP socket whose last close would linger [`LINGER_SECS`]: its send
/// queue full, its peer (returned) never reading.
fn lingering_socket() -> (OwnedFd, OwnedFd) {
    let (s, peer) = tcp_pair();
    sys::set_nonblocking(s.as_fd(), true).expect("nonblocking");
    let chunk = vec![0u8; 64 * 1024];
    loop {
        match sys::write(s.as_fd(), &chunk) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("filling a socket: {e}"),
        }
    }
    set_linger(s.as_fd(), LINGER_SECS);
    (s, peer)
}

/// One small Read on a connection of its own; how long it took.
fn victim_read(d: &Daemon) -> Duration {
    let t0 = Instant::now();
    let c = d.client().daemon_only();
    let mut rd = c.read("small", Range::WHOLE).expect("read");
    rd.file_info().expect("file info");
    let mut v = Vec::new();
    rd.read_to_end(&mut v).expect("read data");
    assert_eq!(v, pattern(4096), "victim's Read byte-exact");
    t0.elapsed()
}

/// The victim's worst Read over `n` Reads, each after a pause that waits on
/// a descriptor nothing writes.
fn victim_worst(d: &Daemon, n: usize) -> Duration {
    let mut worst = Duration::ZERO;
    for _ in 0..n {
        worst = worst.max(victim_read(d));
        let (r, _w) = pipe();
        let _ = sys::wait_readable(r.as_fd(), Duration::from_millis(20));
    }
    worst
}

/// Waits (bounded) until the daemon holds at most `base` descriptors.
fn fds_back_to(d: &Daemon, base: usize) -> bool {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if d.fd_count() <= base {
            return true;
        }
        let (r, _w) = pipe();
        let _ = sys::wait_readable(r.as_fd(), Duration::from_millis(20));
    }
    false
}

/// Row 4: Send 8 MiB to an `O_DSYNC` file and Cancel it, as fast as the
/// daemon answers, 400 times. Each Cancel frees the slot at once; the
/// transfer's queued write job must leave with it (and its destination and
/// status channel close off the loop), so the daemon's descriptors stay
/// within its slots' worth. Before: every cancelled Send's job stayed
/// queued with three descriptors (12 -> 19,990 with `-n 256`).
#[test]
fn cancelled_sends_to_a_slow_file_leave_no_queued_jobs() {
    const SLOTS: usize = 32;
    const ROUNDS: usize = 400;
    let d = daemon(&["-n", &SLOTS.to_string()]);
    public_file(&d, "big", &pattern(8 * MIB));
    public_file(&d, "small", &pattern(4096));
    let (_dir, dest) = dsync_file();
    let c = d.client().daemon_only();
    let base = d.fd_count();
    let mut most = base;
    let mut channels: Vec<StatusChannel> = Vec::with_capacity(ROUNDS);
    let mut refused = 0;
    for _ in 0..ROUNDS {
        let st = c.send("big", dest.as_fd(), Range::WHOLE).expect("send");
        match st.recv_timeout(WAIT).expect("file info") {
            Some(Response::FileInfo(fi)) => c.cancel(fi.txnid as u64).expect("cancel"),
            // The attacker's own closes pending: it waits for them, no one
            // else does.
            Some(Response::Error { errno, .. }) if errno == libc::EMFILE => refused += 1,
            other => panic!("expected the file info, got {other:?}"),
        }
        channels.push(st);
        most = most.max(d.fd_count());
    }
    // Another uid is served meanwhile (no EMFILE), before anything drains.
    let worst = if is_root() {
        victim_as_other_uid(&d, "cold-read", &["small"])
    } else {
        victim_worst(&d, 3)
    };
    // Every cancelled transfer's channel ends: the daemon holds nothing of it.
    for st in &channels {
        while st
            .recv_timeout(WAIT)
            .expect("channel ends in time")
            .is_some()
        {}
    }
    let settled = fds_back_to(&d, base);
    // A slot's worth is its file, destination and status channel; a write
    // job a disk thread is running holds its three until it comes back.
    let bound = base + 3 * SLOTS;
    eprintln!(
        "row 4: daemon descriptors {base} before, at most {most} during {ROUNDS} \
         Send+Cancel rounds (bound {bound}, {refused} Sends refused with EMFILE while the \
         attacker's closes were pending); another uid's Read {worst:?}"
    );
    assert!(
        most <= bound,
        "the daemon held {most} descriptors (base {base}, bound {bound}): {:?}",
        d.fd_list()
    );
    assert!(settled, "descriptors not released: {:?}", d.fd_list());
    assert!(worst < VICTIM_BOUND, "victim's Read took {worst:?}");
}

/// Row 5: requests that are refused carry a TCP socket whose last close
/// would linger 20 s (its peer never reads): a Status whose reply is the
/// socket (replies go to pipes only), and a Read with 100 descriptors, the
/// socket last (the old 256-byte control buffer cut it off, and the kernel
/// closed it inside `recvmmsg`, on the loop). The loop must not wait for
/// either close: another client's Reads stay fast, and the descriptors are
/// all released.
#[test]
fn refused_requests_close_their_descriptors_off_the_loop() {
    let d = daemon(&[]);
    public_file(&d, "small", &pattern(4096));
    let c = d.client().daemon_only();
    let idle = victim_worst(&d, 3);
    let base = d.fd_count();

    let (sock, _peer) = lingering_socket();
    c.send_request(&Request::Status, &[sock.as_fd()])
        .expect("status request");
    drop(sock);

    let (sock2, _peer2) = lingering_socket();
    let (reply_r, reply_w) = pipe();
    let spare: Vec<(OwnedFd, OwnedFd)> = (0..98).map(|_| pipe()).collect();
    let mut fds: Vec<BorrowedFd<'_>> = vec![reply_w.as_fd()];
    fds.extend(spare.iter().map(|(_, w)| w.as_fd()));
    fds.push(sock2.as_fd());
    assert_eq!(fds.len(), 100);
    let read = Request::Read {
        path: CString::new("small").unwrap(),
        range: Range::WHOLE,
    };
    c.send_request(&read, &fds)
        .expect("read with 100 descriptors");
    drop(fds);
    drop(sock2);
    drop(reply_w);
    drop(spare);

    let worst = victim_worst(&d, 20);
    let ch = StatusChannel::from_fd(reply_r);
    let answer = ch.recv_timeout(WAIT).expect("an answer");
    let settled = fds_back_to(&d, base);
    eprintln!(
        "row 5: victim's worst Read {worst:?} (idle {idle:?}) after two refused requests \
         with sockets lingering {LINGER_SECS} s; refusal {answer:?}"
    );
    assert!(
        matches!(answer, Some(Response::Error { errno, .. }) if errno == libc::EINVAL),
        "a Read with 100 descriptors is refused with EINVAL: {answer:?}"
    );
    assert!(
        worst < VICTIM_BOUND,
        "a refused request's close held the loop: {worst:?}"
    );
    assert!(settled, "descriptors not released: {:?}", d.fd_list());
}

/// Row 5 as another uid that `--allow-uid` leaves out: its Status request is
/// refused with `EACCES`, and its reply channel, a TCP socket lingering
/// 20 s whose peer never reads, is the daemon's last copy. The loop must
/// not close it in place: the allowed uid's Reads stay fast.
#[test]
fn a_refused_uids_lingering_socket_does_not_hold_the_loop() {
    if !is_root() {
        return;
    }
    let d = daemon(&["--allow-uid", "0"]);
    public_file(&d, "small", &pattern(4096));
    let idle = victim_worst(&d, 3);
    let base = d.fd_count();
    // The refused uid stays, its peer open, while the allowed one reads.
    let refused = WaitingVictim::start_mode(&d, "refused-status", &["x"]);
    let worst = victim_worst(&d, 20);
    let settled = fds_back_to(&d, base);
    drop(refused);
    eprintln!(
        "row 5: the allowed uid's worst Read {worst:?} (idle {idle:?}) after a refused uid's \
         Status with a socket lingering {LINGER_SECS} s"
    );
    assert!(
        d.log().contains("not in the allow-list"),
        "the request was refused by the allow-list"
    );
    assert!(
        worst < VICTIM_BOUND,
        "a refused request's close held the loop: {worst:?}"
    );
    assert!(settled, "descriptors not released: {:?}", d.fd_list());
}

/// Row 7: eight Sends to TCP connections whose closes would linger 20 s
/// (send queues full, peers never reading), the attacker's own copies
/// closed, then cancelled: their last closes are the daemon's. Another
/// uid's Send of 4 KiB to its own connection must still end (end of file at
/// its peer) at once. Before: four lingering closes held every closer
/// thread, and the victim's connection stayed open 7-12 s.
#[test]
fn lingering_closes_do_not_delay_another_uids_close() {
    if !is_root() {
        return;
    }
    let d = daemon(&[]);
    public_file(&d, "big", &pattern(32 * MIB));
    public_file(&d, "small", &pattern(4096));
    let idle = victim_as_other_uid(&d, "send-eof", &["small"]);
    let c = d.client().daemon_only();
    let mut held = Vec::new();
    for _ in 0..8 {
        let (dest, peer) = lingering_socket();
        let st = c.send("big", dest.as_fd(), Range::WHOLE).expect("send");
        let txnid = match st.recv_timeout(WAIT).expect("file info") {
            Some(Response::FileInfo(fi)) => fi.txnid as u64,
            other => panic!("expected the file info, got {other:?}"),
        };
        drop(dest);
        c.cancel(txnid).expect("cancel");
        held.push((st, peer));
    }
    // The cancelled transfers' channels end: their closes were handed on.
    for (st, _) in &held {
        while st
            .recv_timeout(WAIT)
            .expect("channel ends in time")
            .is_some()
        {}
    }
    let worst = victim_as_other_uid(&d, "send-eof", &["small", "small", "small"]);
    eprintln!(
        "row 7: another uid's Send to its own TCP connection ended after at most {worst:?} \
         (idle {idle:?}) with 8 destinations set to linger {LINGER_SECS} s"
    );
    assert!(
        worst < VICTIM_BOUND,
        "another uid's close waited {worst:?} behind lingering closes"
    );
}

/// Evicts `path` from the page cache (its pages are clean).
fn evict(path: &Path) {
    let f = std::fs::File::open(path).expect("open");
    // SAFETY: fadvise on our own descriptor.
    let r = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    assert_eq!(r, 0, "posix_fadvise");
}

/// The helper started as uid [`VICTIM`] and waiting on its stdin: row 10's
/// victim (each line written makes it Read the next of `paths` and print
/// the Read's time in microseconds, one `RESULT` line each), or row 5's
/// refused uid (holding its socket's peer until stdin ends).
struct WaitingVictim {
    child: std::process::Child,
    input: std::process::ChildStdin,
    output: std::io::BufReader<std::process::ChildStdout>,
}

impl WaitingVictim {
    fn start(d: &Daemon, paths: &[&str]) -> WaitingVictim {
        WaitingVictim::start_mode(d, "cold-read-on-cue", paths)
    }

    /// The helper in `mode`, once it says `READY`.
    fn start_mode(d: &Daemon, mode: &str, paths: &[&str]) -> WaitingVictim {
        use std::os::unix::process::CommandExt;
        use std::process::{Command, Stdio};
        let spec = format!("{mode}|{}|{}", d.socket().display(), paths.join("|"));
        let mut child = Command::new(std::env::current_exe().expect("test binary"))
            .args(["--exact", "helper", "--nocapture", "--test-threads=1", "-q"])
            .env(HELPER_ENV, spec)
            .uid(VICTIM)
            .gid(VICTIM)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("victim");
        let input = child.stdin.take().expect("stdin");
        let output = std::io::BufReader::new(child.stdout.take().expect("stdout"));
        let mut v = WaitingVictim {
            child,
            input,
            output,
        };
        v.line("READY");
        v
    }

    /// What follows `tag` on the victim's next line that starts with it.
    fn line(&mut self, tag: &str) -> String {
        use std::io::BufRead;
        let mut line = String::new();
        loop {
            line.clear();
            let n = self.output.read_line(&mut line).expect("victim's output");
            assert!(n > 0, "victim ended early");
            if let Some(rest) = line.trim().strip_prefix(tag) {
                return rest.trim().to_owned();
            }
        }
    }

    /// Cues one Read; its time.
    fn read_now(&mut self) -> Duration {
        use std::io::Write;
        self.input.write_all(b"go\n").expect("cue");
        self.input.flush().expect("cue");
        Duration::from_micros(self.line("RESULT").parse().expect("micros"))
    }
}

impl Drop for WaitingVictim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Row 10: this uid sends 600 Reads of 4 MiB windows of a sparse file under
/// the root, every window a cache miss for the disk threads, and at once
/// another uid (started before, waiting on its cue) Reads a cold 4 KiB
/// file: its disk job waits for a job or two of the backlog, not all of it.
/// Four rounds, each with fresh windows and a fresh cold file. Before: one
/// FIFO queue for every uid, 110-1,120 ms.
#[test]
fn another_uids_disk_backlog_does_not_delay_a_cold_read() {
    if !is_root() {
        return;
    }
    const WINDOWS: usize = 600;
    const ROUNDS: usize = 4;
    // One disk thread: the backlog lasts long enough to be seen on a fast disk.
    let d = daemon(&["-n", "1024", "--uid-share", "100", "--disk-threads", "1"]);
    let victims: Vec<String> = (0..ROUNDS + 1).map(|i| format!("cold{i}")).collect();
    for v in &victims {
        public_file(&d, v, &pattern(4096));
        // Written back first, or the eviction leaves dirty pages cached.
        std::fs::File::open(d.root().join(v))
            .expect("open")
            .sync_all()
            .expect("fsync");
        evict(&d.root().join(v));
    }
    let sparse = d.root().join("sparse");
    let f = std::fs::File::create(&sparse).expect("sparse");
    f.set_len((ROUNDS * WINDOWS * 4 * MIB) as u64)
        .expect("set_len");
    drop(f);
    std::fs::set_permissions(&sparse, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let paths: Vec<&str> = victims.iter().map(String::as_str).collect();
    let mut victim = WaitingVictim::start(&d, &paths);
    // Its first Read is the idle figure: a cold file, no backlog.
    let idle = victim.read_now();
    let c = d.client().daemon_only();
    let mut worst = Duration::ZERO;
    for round in 0..ROUNDS {
        let mut held = Vec::with_capacity(WINDOWS);
        for i in 0..WINDOWS {
            let range = Range {
                offset: ((round * WINDOWS + i) * 4 * MIB) as u64,
                len: (4 * MIB) as u64,
            };
            held.push(c.read("sparse", range).expect("attacker's Read"));
        }
        // A Status request is answered after every request before it on
        // the socket: the 600 are admitted, their disk jobs queued.
        let live = c.server_status(WAIT).expect("status").live;
        let took = victim.read_now();
        eprintln!("row 10, round {round}: the victim's cold Read took {took:?} ({live} live)");
        worst = worst.max(took);
        // Closing the data pipes ends the Reads; their queued jobs leave.
        drop(held);
        assert!(
            eventually(|| d.live() == 0),
            "the attacker's Reads end with their pipes"
        );
    }
    let bound = Duration::from_millis(120).max(idle * 4);
    if worst >= bound {
        for line in d.log().lines().filter(|l| l.contains("12345")) {
            eprintln!("{line}");
        }
    }
    eprintln!(
        "row 10: another uid's cold 4 KiB Reads took at most {worst:?} (idle {idle:?}) \
         right after {WINDOWS} Reads of 4 MiB sparse windows by uid 0"
    );
    assert!(
        worst < bound,
        "a cold Read waited {worst:?} behind another uid's disk backlog (idle {idle:?})"
    );
}
