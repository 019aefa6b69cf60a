//! Soak: mixed load from many clients against one daemon with injected
//! faults, then a check that nothing leaked.
//!
//! Worker threads do Reads, Sends (to pipes and, with header and trailer, to
//! sockets), Open + Send Open, opens left to expire (`-t 200`), cancels of
//! running transfers and clients that drop their channels mid-transfer; a
//! helper process that starts transfers is killed with `SIGKILL` again and
//! again. Every completed transfer is checked byte for byte, every failed one
//! must be a file with injected faults and must have sent a byte-exact
//! prefix. At the end: no live transfer, every expired open got `ETIMEDOUT`,
//! the daemon's descriptor count back to its baseline, its RSS within a
//! bound. The figures are printed.
//!
//! The suite runs it for 20 s; longer runs:
//!
//! ```text
//! SENDFILED_SOAK_SECS=180 cargo test --release --test soak -- --nocapture
//! ```
//!
//! The subject is the daemon: every client here makes no in-process attempt
//! (`Client::daemon_only`); inline first has its own tests (tests/inline.rs).

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use sendfiled_client::client::{Client, HeaderTrailer, Range, Response, StatusChannel};
use sendfiled_core::sys;

const HELPER_ENV: &str = "SFD_SOAK_HELPER";
const MIB: usize = 1 << 20;
/// The daemon's open-file timeout (`-t`) in this test.
const OPEN_TIMEOUT: Duration = Duration::from_millis(200);
const FAULTS: &str = "send:EIO%40:flaky,prefetch:EIO%3:flaky,send:EINTR%3*2:storm,\
                      send:EAGAIN%5*2:storm,send:MISS%4:cold,write:EPIPE%9:FLAKYHDR";

/// The helper process: starts transfers of a big file, says so, then waits
/// to be killed.
#[test]
fn helper() {
    let Ok(sock) = std::env::var(HELPER_ENV) else {
        return;
    };
    let c = Client::connect_path(sock.as_ref()).unwrap().daemon_only();
    let mut rd = c.read("big.bin", Range::WHOLE).unwrap();
    rd.file_info().unwrap();
    let (_r, w) = pipe();
    let st = c.send("big.bin", w.as_fd(), Range::WHOLE).unwrap();
    let op = c.open("big.bin", Range::WHOLE).unwrap();
    for ch in [&st, &op] {
        assert!(matches!(
            ch.recv_timeout(WAIT).unwrap(),
            Some(Response::FileInfo(_))
        ));
    }
    println!("started");
    // Wait for SIGKILL (stdin never says anything).
    let mut buf = [0u8; 1];
    let _ = std::io::stdin().read(&mut buf);
}

/// The files served, by name.
struct Files(HashMap<&'static str, Vec<u8>>);

impl Files {
    fn make(d: &Daemon) -> Files {
        let mut m = HashMap::new();
        for (i, name) in ["s0", "s1", "s2", "s3", "s4", "s5", "s6", "s7"]
            .into_iter()
            .enumerate()
        {
            m.insert(name, pattern(i * 9_000 + i));
        }
        m.insert("big.bin", pattern(8 * MIB));
        m.insert("storm/s.bin", pattern(MIB + 3));
        m.insert("cold/c.bin", pattern(2 * MIB + 5));
        m.insert("flaky/f.bin", pattern(MIB + 7));
        for (k, v) in &m {
            d.write(k, v);
        }
        Files(m)
    }
}

const NAMES: &[&str] = &[
    "s0",
    "s1",
    "s2",
    "s3",
    "s4",
    "s5",
    "s6",
    "s7",
    "storm/s.bin",
    "cold/c.bin",
    "flaky/f.bin",
];

fn faulty(name: &str) -> bool {
    name.starts_with("flaky/")
}

#[derive(Default)]
struct Figures {
    requests: AtomicU64,
    completed: AtomicU64,
    failed_by_fault: AtomicU64,
    bytes_verified: AtomicU64,
    cancels: AtomicU64,
    abandons: AtomicU64,
    expired: AtomicU64,
    kills: AtomicU64,
}

impl Figures {
    fn add(&self, c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn pick<'a>(&mut self, v: &[&'a str]) -> &'a str {
        v[(self.next() % v.len() as u64) as usize]
    }
}

/// Checks `got` against `want`: all of it if the transfer completed, a
/// prefix (and a file with injected faults) if it failed.
fn verify(f: &Figures, name: &str, got: &[u8], want: &[u8], ok: bool, what: &str) {
    if ok {
        assert!(
            got == want,
            "{what} {name}: {} of {} bytes",
            got.len(),
            want.len()
        );
        f.add(&f.completed, 1);
    } else {
        assert!(
            faulty(name),
            "{what} {name} failed without an injected fault"
        );
        assert!(
            got.len() <= want.len() && got == &want[..got.len()],
            "{what} {name}: prefix"
        );
        f.add(&f.failed_by_fault, 1);
    }
    f.add(&f.bytes_verified, got.len() as u64);
}

fn worker(d: &Daemon, files: &Files, f: &Figures, seed: u64, until: Instant) -> Vec<StatusChannel> {
    let c = d.client().daemon_only();
    let mut rng = Rng(seed);
    let mut expiring = std::collections::VecDeque::new();
    while Instant::now() < until {
        // Opens left to expire are checked once old enough (or too many
        // wait), so that a long run does not hoard descriptors.
        while expiring.len() > 32 {
            let ch: StatusChannel = expiring.pop_front().unwrap();
            check_expired(&ch);
            f.add(&f.expired, 1);
        }
        let op = rng.next() % 16;
        f.add(&f.requests, 1);
        match op {
            0..=3 => {
                let name = rng.pick(NAMES);
                let mut ch = c.read(name, Range::WHOLE).unwrap();
                assert!(sys::wait_readable(ch.as_fd(), WAIT).unwrap());
                let size = ch.file_info().unwrap().size;
                let got = read_to_end(ch.as_fd());
                verify(f, name, &got, &files.0[name], got.len() == size, "read");
            }
            4..=6 => {
                let name = rng.pick(NAMES);
                let (r, w) = pipe();
                let st = c.send(name, w.as_fd(), Range::WHOLE).unwrap();
                drop(w);
                let got = read_to_end(r.as_fd());
                let done = complete(&st);
                if !done.complete {
                    assert_eq!(done.error, Some(libc::EIO), "send {name}: {done:?}");
                }
                verify(f, name, &got, &files.0[name], done.complete, "send");
            }
            7..=8 => {
                let name = rng.pick(NAMES);
                let flaky_hdr = rng.next() % 4 == 0;
                let hdtr = HeaderTrailer {
                    header: if flaky_hdr {
                        b"FLAKYHDR 200 OK\r\n\r\n".to_vec()
                    } else {
                        b"HTTP/1.1 200 OK\r\n\r\n".to_vec()
                    },
                    trailer: b"\r\n0\r\n\r\n".to_vec(),
                };
                let (a, b) = UnixStream::pair().unwrap();
                let st = c
                    .send_hdtr(name, b.as_fd(), Range::WHOLE, hdtr.clone())
                    .unwrap();
                drop(b);
                let got = read_to_end(a.as_fd());
                let done = complete(&st);
                let want = [&hdtr.header[..], &files.0[name], &hdtr.trailer].concat();
                let excused = faulty(name) || flaky_hdr;
                if done.complete {
                    assert!(got == want, "hdtr {name}");
                    f.add(&f.completed, 1);
                } else {
                    assert!(excused, "hdtr {name}: {done:?}");
                    assert!(got == want[..got.len()], "hdtr {name}: prefix");
                    f.add(&f.failed_by_fault, 1);
                }
                f.add(&f.bytes_verified, got.len() as u64);
            }
            9..=10 => {
                let name = rng.pick(NAMES);
                let asked = Instant::now();
                let op = c.open(name, Range::WHOLE).unwrap();
                let txnid = match op.recv_timeout(WAIT).unwrap() {
                    Some(Response::FileInfo(i)) => i.txnid as u64,
                    other => panic!("open {name}: {other:?}"),
                };
                let (r, w) = pipe();
                c.send_open(txnid, w.as_fd()).unwrap();
                drop(w);
                let got = read_to_end(r.as_fd());
                let done = complete(&op);
                if done.error == Some(libc::ETIMEDOUT) {
                    // The deadline holds even for a Send Open the loaded
                    // daemon read late; it cannot come before the timeout.
                    assert!(
                        asked.elapsed() >= OPEN_TIMEOUT,
                        "send-open {name}: ETIMEDOUT after {:?}",
                        asked.elapsed()
                    );
                    assert!(got.is_empty(), "send-open {name}: data after ETIMEDOUT");
                    f.add(&f.expired, 1);
                } else {
                    verify(f, name, &got, &files.0[name], done.complete, "send-open");
                }
            }
            11 => {
                // Left to expire; checked at the end.
                expiring.push_back(c.open(rng.pick(NAMES), Range::WHOLE).unwrap());
            }
            12..=13 => {
                // Cancel a running transfer whose reader is slow.
                let (r, w) = pipe();
                let st = c.send("big.bin", w.as_fd(), Range::WHOLE).unwrap();
                drop(w);
                let txnid = match st.recv_timeout(WAIT).unwrap() {
                    Some(Response::FileInfo(i)) => i.txnid as u64,
                    other => panic!("cancel: {other:?}"),
                };
                let first = read_exact_or_eof(r.as_fd(), 100_000);
                c.cancel(txnid).unwrap();
                let rest = read_to_end(r.as_fd());
                let done = complete(&st);
                let got = [first, rest].concat();
                let want = &files.0["big.bin"];
                assert!(got == want[..got.len()], "cancelled: a prefix");
                if !done.complete {
                    assert!(done.closed && done.error.is_none(), "{done:?}");
                    f.add(&f.cancels, 1);
                }
                f.add(&f.bytes_verified, got.len() as u64);
            }
            _ => {
                // A client that goes away mid-transfer.
                let (r, w) = pipe();
                let st = c.send("big.bin", w.as_fd(), Range::WHOLE).unwrap();
                drop(w);
                let _ = read_exact_or_eof(r.as_fd(), 10_000);
                drop(st);
                drop(r);
                f.add(&f.abandons, 1);
            }
        }
    }
    expiring.into()
}

fn check_expired(ch: &StatusChannel) {
    let c = complete(ch);
    assert_eq!(c.error, Some(libc::ETIMEDOUT), "{c:?}");
}

/// Starts helpers and kills them with SIGKILL once their transfers run.
fn killer(d: &Daemon, f: &Figures, until: Instant) {
    let exe = std::env::current_exe().unwrap();
    while Instant::now() < until {
        let mut child = Command::new(&exe)
            .args(["--exact", "helper", "--nocapture", "--test-threads=1", "-q"])
            .env(HELPER_ENV, d.socket())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        loop {
            line.clear();
            assert!(out.read_line(&mut line).unwrap() > 0, "helper ended early");
            if line.trim() == "started" {
                break;
            }
        }
        child.kill().unwrap();
        child.wait().unwrap();
        f.add(&f.requests, 3);
        f.add(&f.kills, 1);
    }
}

/// A Read's end of file comes after the daemon closed everything of it;
/// requests are handled in order, so all before it are cleaned up.
fn sync_read(d: &Daemon) {
    let mut ch = d.client().daemon_only().read("s1", Range::WHOLE).unwrap();
    let mut v = Vec::new();
    ch.read_to_end(&mut v).unwrap();
}

fn rss_kib(pid: i32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[test]
fn soak_mixed_load_with_faults_and_kills_leaks_nothing() {
    let secs: u64 = std::env::var("SENDFILED_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let d = Arc::new(Daemon::start_env(
        &["-t", &OPEN_TIMEOUT.as_millis().to_string(), "-n", "512"],
        &[("SENDFILED_FAULTS", FAULTS)],
    ));
    let files = Arc::new(Files::make(&d));
    let figures = Arc::new(Figures::default());
    // Warm-up: one of everything, so that thread pools and buffers exist
    // before the baseline.
    {
        let warm = Instant::now() + Duration::from_millis(500);
        let _ = worker(&d, &files, &figures, 42, warm);
    }
    assert!(eventually(|| d.live() == 0));
    sync_read(&d);
    let base_fds = d.fd_count();
    let base_rss = rss_kib(d.pid);
    let started = Instant::now();
    let until = started + Duration::from_secs(secs);
    let expiring = Arc::new(Mutex::new(Vec::new()));
    let mut threads = Vec::new();
    for t in 0..6u64 {
        let (d, files, f, exp) = (
            Arc::clone(&d),
            Arc::clone(&files),
            Arc::clone(&figures),
            Arc::clone(&expiring),
        );
        threads.push(std::thread::spawn(move || {
            let left = worker(&d, &files, &f, 0x9E37_79B9_7F4A_7C15 ^ (t + 1), until);
            exp.lock().unwrap().extend(left);
        }));
    }
    {
        let (d, f) = (Arc::clone(&d), Arc::clone(&figures));
        threads.push(std::thread::spawn(move || killer(&d, &f, until)));
    }
    for t in threads {
        t.join().unwrap();
    }
    let elapsed = started.elapsed();
    let expiring = std::mem::take(&mut *expiring.lock().unwrap());
    for ch in &expiring {
        check_expired(ch);
        figures.add(&figures.expired, 1);
    }
    assert!(eventually(|| d.live() == 0), "transfers left live");
    sync_read(&d);
    // Sockets and files close on the daemon's closer threads, just after
    // their transfers leave the table.
    let _ = eventually(|| d.fd_count() == base_fds);
    let fds = d.fd_count();
    let rss = rss_kib(d.pid);
    let log = d.log();
    let faults = log.matches("fault injected").count();
    let f = &figures;
    let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
    eprintln!(
        "soak: {:.1} s, {} requests, {} completed and verified, {} failed by injected faults, \
         {} cancelled, {} abandoned, {} expired, {} helpers killed, {} faults injected, \
         {:.1} MiB verified, fds {} -> {} (leaks {}), RSS {} -> {} KiB, live 0",
        elapsed.as_secs_f64(),
        g(&f.requests),
        g(&f.completed),
        g(&f.failed_by_fault),
        g(&f.cancels),
        g(&f.abandons),
        g(&f.expired),
        g(&f.kills),
        faults,
        g(&f.bytes_verified) as f64 / MIB as f64,
        base_fds,
        fds,
        fds as i64 - base_fds as i64,
        base_rss,
        rss,
    );
    assert_eq!(fds, base_fds, "descriptor leak: {:?}", d.fd_list());
    assert!(
        rss < base_rss + 64 * 1024,
        "RSS grew from {base_rss} to {rss} KiB"
    );
    assert!(faults > 0 && g(&f.kills) > 0 && g(&f.expired) > 0);
    assert!(!log.contains("panicked"), "daemon panicked");
}
