//! Hostile clients (issue 13), row 3: one uid filling every `-n` slot with
//! stalled Sends sharing one never-read destination, Opens never sent, and
//! finished transfers whose shared status pipe is never read. Another uid
//! must still be served (`--uid-share`), and the stalled transfers must give
//! their slots back (`--stall-timeout`).
//!
//! The attacker is this test process (uid 0). The victim is this test
//! binary run again as another uid with `SFD_SHARE_HELPER` set: the
//! `helper` test then makes its requests and prints one `RESULT` line.
//! Tests skip (with a note) unless run as root. Each runs with the native
//! Linux paths and with the portable ones (`SENDFILED_FORCE_FALLBACK=1`).
//!
//! The subject is the daemon: every client here makes no in-process attempt
//! (`Client::daemon_only`); inline first has its own tests (tests/inline.rs).
#![cfg(target_os = "linux")]

mod common;

use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use sendfiled_client::client::{Client, Range, Response, StatusChannel};
use sendfiled_client::protocol::{HeaderTrailer, Request, SFD_XFER_STAT};
use sendfiled_core::sys;

const HELPER_ENV: &str = "SFD_SHARE_HELPER";
/// The victim's uid and gid.
const VICTIM: u32 = 12345;
/// A second attacker's uid and gid.
const NOBODY: u32 = 65534;
const BIG: usize = 4 << 20;

/// The re-executed victim: `OPENS|SOCKET` in `SFD_SHARE_HELPER`. It holds
/// OPENS opened files, then Reads `small.bin`, and prints `RESULT` with how
/// many opens were admitted, the first refusal's errno (0 if none), the
/// Read's outcome (`ok LEN` or `errno E`) and how long the Read took in
/// microseconds. Does nothing in a normal test run.
#[test]
fn helper() {
    let Ok(spec) = std::env::var(HELPER_ENV) else {
        return;
    };
    let (opens, sock) = spec.split_once('|').expect("OPENS|SOCKET");
    let c = Client::connect_path(Path::new(sock))
        .expect("connect")
        .daemon_only();
    let mut held = Vec::new();
    let mut first_err = 0;
    for _ in 0..opens.parse::<usize>().expect("OPENS") {
        let ch = c.open("small.bin", Range::WHOLE).expect("open");
        match ch.recv_timeout(WAIT).expect("file info") {
            Some(Response::FileInfo(_)) => held.push(ch),
            Some(Response::Error { errno, .. }) if first_err == 0 => first_err = errno,
            _ => {}
        }
    }
    let started = Instant::now();
    let mut rd = c.read("small.bin", Range::WHOLE).expect("read");
    let read = match rd.file_info() {
        Ok(_) => {
            let mut v = Vec::new();
            rd.read_to_end(&mut v).expect("read data");
            format!("ok {}", v.len())
        }
        Err(e) => format!("errno {}", e.raw_os_error().unwrap_or(0)),
    };
    let us = started.elapsed().as_micros();
    println!("RESULT {} {first_err} {read} {us}", held.len());
}

/// What the victim saw.
#[derive(Debug)]
struct Victim {
    opens: usize,
    first_err: i32,
    read: Result<usize, i32>,
    read_us: u64,
}

/// Runs the victim against `d`: OPENS held opens, then a Read.
fn victim(d: &Daemon, opens: usize) -> Victim {
    client_as(d, VICTIM, opens)
}

/// The helper as `uid` (and gid `uid`): OPENS held opens, then a Read.
fn client_as(d: &Daemon, uid: u32, opens: usize) -> Victim {
    let w = run_helper_as(
        HELPER_ENV,
        &format!("{opens}|{}", d.socket().display()),
        uid,
        uid,
    );
    let num = |i: usize| w[i].parse::<i64>().expect("number");
    Victim {
        opens: num(0) as usize,
        first_err: num(1) as i32,
        read: match w[2].as_str() {
            "ok" => Ok(num(3) as usize),
            _ => Err(num(3) as i32),
        },
        read_us: num(4) as u64,
    }
}

fn is_root() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    eprintln!("SKIP: switching uids needs root");
    false
}

/// A daemon other uids can reach, serving `big.bin` and `small.bin`.
fn daemon(fallback: bool, extra: &[&str]) -> Daemon {
    let mut args = vec!["--socket-mode", "666", "-t", "60000"];
    args.extend_from_slice(extra);
    let env = [("SENDFILED_FORCE_FALLBACK", if fallback { "1" } else { "0" })];
    let d = Daemon::start_env(&args, &env);
    std::fs::set_permissions(d.root(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    for (name, len) in [("big.bin", BIG), ("small.bin", 10)] {
        let p = d.write(name, &pattern(len));
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    }
    d
}

/// What the attacker holds.
struct Attack {
    /// Status channels of Sends stalled on `dest`.
    stalled: Vec<StatusChannel>,
    /// The read end of the one destination they share, never read.
    dest: OwnedFd,
    /// Status channels of opened files never sent, oldest first.
    opens: Vec<StatusChannel>,
    /// The read end of the status pipe the finished Sends share, filled
    /// with junk before they started and never read.
    shared_status: OwnedFd,
    /// Their destinations (drained: their data is done).
    _done_dests: Vec<OwnedFd>,
}

const JUNK: u8 = 0x5a;

/// Makes `each` requests of each kind as this uid, then, with `fill`,
/// opens files until refused. Returns once every request was handled.
fn attack(d: &Daemon, each: usize, fill: bool) -> Attack {
    let c = d.client().daemon_only();
    let (dest, dw) = pipe();
    let stalled = (0..each)
        .map(|_| {
            let ch = c.send("big.bin", dw.as_fd(), Range::WHOLE).expect("send");
            // Said as soon as it stops to wait for the destination.
            assert!(matches!(
                ch.recv_timeout(WAIT),
                Ok(Some(Response::FileInfo(_)))
            ));
            ch
        })
        .collect();
    drop(dw);
    let mut opens: Vec<StatusChannel> = (0..each)
        .map(|_| {
            let ch = c.open("small.bin", Range::WHOLE).expect("open");
            assert!(matches!(
                ch.recv_timeout(WAIT),
                Ok(Some(Response::FileInfo(_)))
            ));
            ch
        })
        .collect();
    let (shared_status, sw) = pipe();
    sys::set_nonblocking(sw.as_fd(), true).expect("nonblocking");
    while sys::write(sw.as_fd(), &[JUNK; 4096]).is_ok() {}
    let mut done_dests = Vec::new();
    for _ in 0..each {
        let (r, w) = pipe();
        send_with_status(&c, "small.bin", sw.as_fd(), w.as_fd());
        done_dests.push(r);
    }
    drop(sw);
    for r in &done_dests {
        assert_eq!(read_exact_or_eof(r.as_fd(), 10).len(), 10, "data done");
    }
    if fill {
        loop {
            let ch = c.open("small.bin", Range::WHOLE).expect("open");
            match ch.recv_timeout(WAIT).expect("answer") {
                Some(Response::FileInfo(_)) => opens.push(ch),
                Some(Response::Error { errno, .. }) => {
                    assert_eq!(errno, libc::EMFILE);
                    break;
                }
                other => panic!("{other:?}"),
            }
        }
    }
    // Requests are handled in order: this answer comes after all of them.
    c.server_status(WAIT).expect("status");
    Attack {
        stalled,
        dest,
        opens,
        shared_status,
        _done_dests: done_dests,
    }
}

/// A Send whose status goes to `status`, a pipe shared between requests.
fn send_with_status(c: &Client, path: &str, status: BorrowedFd<'_>, dest: BorrowedFd<'_>) {
    let req = Request::Send {
        path: std::ffi::CString::new(path).expect("path"),
        range: Range::WHOLE,
        hdtr: HeaderTrailer::default(),
    };
    c.send_request(&req, &[status, dest]).expect("send");
}

/// Reads a pipe to end of file: true if it held nothing but junk (no
/// message of the daemon's), which also proves the daemon closed every copy
/// of its write end.
fn only_junk_then_eof(r: &OwnedFd) -> bool {
    sys::set_nonblocking(r.as_fd(), true).expect("nonblocking");
    read_to_end(r.as_fd()).iter().all(|&b| b == JUNK)
}

/// Whether a channel has anything to say right now.
fn quiet(ch: &StatusChannel) -> bool {
    !sys::wait_readable(ch.as_fd(), Duration::ZERO).expect("poll")
}

fn xfer_error(errno: i32) -> Option<Response> {
    Some(Response::Error {
        cmd: SFD_XFER_STAT,
        errno,
    })
}

/// `--uid-share`: with the attack holding every slot (and no stall timeout
/// to rescue anyone), the victim gets EMFILE with `--uid-share 100` (the
/// behaviour before) and is served with the default; slots come back from
/// the attacker only, the least costly first, and only down to its share.
fn the_victim_is_served_while_the_attack_holds(fallback: bool) {
    if !is_root() {
        return;
    }
    // Before: no share.
    let d = daemon(
        fallback,
        &["-n", "16", "--uid-share", "100", "--stall-timeout", "0"],
    );
    let _held = attack(&d, 4, true);
    assert_eq!(d.live(), 16);
    let before = victim(&d, 1);
    assert_eq!(
        (before.opens, before.first_err),
        (0, libc::EMFILE),
        "{before:?}"
    );
    assert_eq!(before.read, Err(libc::EMFILE), "{before:?}");
    drop(d);

    // After: the default share, 50%: 8 of 16.
    let d = daemon(fallback, &["-n", "16", "--stall-timeout", "0"]);
    let a = attack(&d, 4, true);
    assert_eq!(a.opens.len(), 8, "a lone uid gets every slot");
    assert_eq!(d.live(), 16);
    let after = victim(&d, 7);
    assert_eq!((after.opens, after.first_err), (7, 0), "{after:?}");
    assert_eq!(after.read, Ok(10), "{after:?}");
    eprintln!(
        "victim under attack (fallback {fallback}): before: EMFILE in {} us; \
         after: 7 opens held and a Read served in {} us",
        before.read_us, after.read_us
    );
    // What the attacker gave back: first the finished transfers whose status
    // pipe it never reads (closed: no room for a message), then its oldest
    // unsent opens (EMFILE); its stalled Sends kept their slots.
    assert!(only_junk_then_eof(&a.shared_status));
    for ch in &a.opens[..4] {
        assert_eq!(
            ch.recv_timeout(WAIT).expect("taken back"),
            xfer_error(libc::EMFILE)
        );
        assert_eq!(ch.recv_timeout(WAIT).expect("eof"), None);
    }
    for ch in a.opens[4..].iter().chain(&a.stalled) {
        assert!(quiet(ch), "kept");
    }
    // 8 of the attacker's, 7 of the victim's (its Read is done).
    assert_eq!(d.live(), 15);
    // The attacker may take the free slot, but not take one back.
    let c = d.client().daemon_only();
    let ch = c.open("small.bin", Range::WHOLE).expect("open");
    assert!(matches!(
        ch.recv_timeout(WAIT),
        Ok(Some(Response::FileInfo(_)))
    ));
    let refused = c.open("small.bin", Range::WHOLE).expect("open");
    assert_eq!(info_errno(&refused), Some(libc::EMFILE));
    // The victim, below its share, still is served.
    let again = victim(&d, 0);
    assert_eq!(again.read, Ok(10), "{again:?}");
    // The slot came from the attacker's oldest open left.
    assert_eq!(
        a.opens[4].recv_timeout(WAIT).expect("taken back"),
        xfer_error(libc::EMFILE)
    );
}

fn info_errno(ch: &StatusChannel) -> Option<i32> {
    match ch.recv_timeout(WAIT).expect("answer") {
        Some(Response::Error { errno, .. }) => Some(errno),
        _ => None,
    }
}

#[test]
fn the_victim_is_served_while_the_attack_holds_native() {
    the_victim_is_served_while_the_attack_holds(false);
}

#[test]
fn the_victim_is_served_while_the_attack_holds_fallback() {
    the_victim_is_served_while_the_attack_holds(true);
}

/// Two uids holding half the table each cannot lock a third out: the
/// share is at most an equal part among the uids that want slots. The
/// second attacker (nobody) takes its half back from the first, and is then
/// refused at its share; the victim is served from one of them.
fn two_uids_cannot_lock_out_a_third(fallback: bool) {
    if !is_root() {
        return;
    }
    let d = daemon(fallback, &["-n", "16", "--stall-timeout", "0"]);
    let _a = attack(&d, 4, true);
    // The helper's opens outlive it: opened files wait for -t (60 s here).
    let second = client_as(&d, NOBODY, 8);
    assert_eq!((second.opens, second.first_err), (8, 0), "{second:?}");
    assert_eq!(second.read, Err(libc::EMFILE), "at its share: {second:?}");
    assert_eq!(d.live(), 16);
    let v = victim(&d, 0);
    assert_eq!(v.read, Ok(10), "{v:?}");
}

#[test]
fn two_uids_cannot_lock_out_a_third_native() {
    two_uids_cannot_lock_out_a_third(false);
}

#[test]
fn two_uids_cannot_lock_out_a_third_fallback() {
    two_uids_cannot_lock_out_a_third(true);
}

/// `--stall-timeout`: with no share to help (`--uid-share 100`), the
/// stalled Sends end with ETIMEDOUT, the finished transfers nobody reads
/// are closed, their slots come back and the victim is served; the unsent
/// opens are left to `-t`.
fn stalled_transfers_give_their_slots_back(fallback: bool) {
    if !is_root() {
        return;
    }
    const STALL_MS: u64 = 2000;
    let stall = STALL_MS.to_string();
    let d = daemon(
        fallback,
        &["-n", "12", "--uid-share", "100", "--stall-timeout", &stall],
    );
    let started = Instant::now();
    let a = attack(&d, 4, false);
    let setup = started.elapsed();
    for ch in &a.stalled {
        let done = ch.wait_complete(WAIT).expect("status");
        assert_eq!(done.error, Some(libc::ETIMEDOUT), "{done:?}");
        assert_eq!(
            ch.recv_timeout(WAIT).expect("eof"),
            None,
            "then end of file"
        );
    }
    let timed_out = started.elapsed();
    assert!(
        timed_out >= Duration::from_millis(STALL_MS),
        "not before the timeout: {timed_out:?}"
    );
    // Their shared destination: a prefix of data, then every copy closed.
    let got = read_to_end(a.dest.as_fd());
    assert!(got.len() < 4 * BIG, "{}", got.len());
    assert!(only_junk_then_eof(&a.shared_status), "closed unannounced");
    let closed = started.elapsed();
    // Only the opens are left, untouched.
    assert!(eventually(|| d.live() == 4));
    for ch in &a.opens {
        assert!(quiet(ch), "open files are -t's business");
    }
    let stat = d
        .client()
        .daemon_only()
        .server_status(WAIT)
        .expect("status");
    assert_eq!((stat.completed, stat.failed), (4, 4), "{stat:?}");
    let v = victim(&d, 0);
    assert_eq!(v.read, Ok(10), "{v:?}");
    eprintln!(
        "stall timeout {STALL_MS} ms (fallback {fallback}): attack set up in {} ms, \
         stalled Sends ended with ETIMEDOUT by {} ms, unread finished ones closed by {} ms, \
         then a victim's Read served in {} us",
        setup.as_millis(),
        timed_out.as_millis(),
        closed.as_millis(),
        v.read_us
    );
}

#[test]
fn stalled_transfers_give_their_slots_back_native() {
    stalled_transfers_give_their_slots_back(false);
}

#[test]
fn stalled_transfers_give_their_slots_back_fallback() {
    stalled_transfers_give_their_slots_back(true);
}

/// Sends an Open of `small.bin` with forged credentials (root may name any
/// uid in `SCM_CREDENTIALS`): how one client with many subordinate uids
/// looks to the daemon. Returns the status channel.
fn open_as(sock: &std::os::unix::net::UnixDatagram, uid: u32) -> StatusChannel {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags, UnixAddr, UnixCredentials};
    use std::os::fd::AsRawFd;
    let (r, w) = pipe();
    let req = Request::Open {
        path: std::ffi::CString::new("small.bin").unwrap(),
        range: Range::WHOLE,
    }
    .encode()
    .expect("encode");
    let cred = UnixCredentials::from(libc::ucred {
        pid: std::process::id() as i32,
        uid,
        gid: uid,
    });
    let fds = [w.as_raw_fd()];
    let cmsgs = [
        ControlMessage::ScmRights(&fds),
        ControlMessage::ScmCredentials(&cred),
    ];
    sendmsg::<UnixAddr>(
        sock.as_raw_fd(),
        &[std::io::IoSlice::new(&req)],
        &cmsgs,
        MsgFlags::empty(),
        None,
    )
    .expect("sendmsg with credentials");
    StatusChannel::from_fd(r)
}

/// Issue 23, "also seen": 20 uids (one client's subordinate uids) each
/// hold one Open of a `-n 16` table: no uid is above its share, and every
/// other uid was refused. A uid holding no slot now takes back the slot
/// of a transfer idle for `IDLE_TAKE_BACK` (1 s): the victim is served,
/// an attacker's idle Open ends with `EMFILE`.
#[test]
fn many_uids_holding_one_open_each_cannot_lock_out_another() {
    if !is_root() {
        return;
    }
    let d = daemon(false, &["-n", "16"]);
    let sock = std::os::unix::net::UnixDatagram::unbound().expect("socket");
    sock.connect(d.socket()).expect("connect");
    let mut held = Vec::new();
    let mut refused = 0;
    for i in 0..20 {
        let ch = open_as(&sock, 30_000 + i);
        match ch.recv_timeout(WAIT).expect("answer") {
            Some(Response::FileInfo(_)) => held.push(ch),
            Some(Response::Error { errno, .. }) => {
                assert_eq!(errno, libc::EMFILE);
                refused += 1;
            }
            other => panic!("{other:?}"),
        }
    }
    let last_admitted = Instant::now();
    assert_eq!((held.len(), refused), (16, 4), "the table is full");
    // Before the opens are idle for a second, a newcomer is refused: a
    // quick Open + Send Open of someone else's is never taken.
    let early = victim(&d, 0);
    if last_admitted.elapsed() < Duration::from_millis(900) {
        assert_eq!(early.read, Err(libc::EMFILE), "{early:?}");
    }
    wait_until(last_admitted + Duration::from_millis(1100));
    let v = victim(&d, 0);
    eprintln!("victim: {v:?}");
    assert_eq!(v.read, Ok(10), "the victim is served");
    let lost = held
        .iter()
        .filter(|ch| matches!(ch.recv_timeout(Duration::ZERO), Ok(Some(Response::Error { errno, .. })) if errno == libc::EMFILE))
        .count();
    assert_eq!(lost, 1, "one idle attacker Open gave its slot back");
    assert!(d.log().contains("idle slot of uid"), "logged");
}
