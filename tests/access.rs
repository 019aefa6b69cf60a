//! Access control: the request socket's permissions, the uid/gid
//! allow-lists, transfers bound to the uid that created them, credentials in
//! the log.
//!
//! Clients of another uid are this test binary run again as that uid (and
//! gid, with no supplementary groups) with `SFD_ACCESS_HELPER` set: the
//! `helper` test then does one thing and prints one `RESULT` line. Tests that
//! need to switch uids skip (with a note) unless run as root.
//!
//! Linux only: peer credentials (`SO_PASSCRED`) are what the allow-lists and
//! the transfer binding check.
#![cfg(target_os = "linux")]

mod common;

use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use common::*;
use sendfiled_client::client::{Client, Range, Response};
use sendfiled_core::sys;

const HELPER_ENV: &str = "SFD_ACCESS_HELPER";
const NOBODY: u32 = 65534;
const STRANGER: u32 = 12345;

fn errno_of(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(0)
}

/// The re-executed client: `OP|SOCKET|ARG` in `SFD_ACCESS_HELPER`. Does
/// nothing in a normal test run.
#[test]
fn helper() {
    let Ok(spec) = std::env::var(HELPER_ENV) else {
        return;
    };
    let mut parts = spec.splitn(3, '|');
    let (op, sock, arg) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
    );
    let result = run_helper(op, Path::new(sock), arg);
    println!("RESULT {result}");
}

fn run_helper(op: &str, sock: &Path, arg: &str) -> String {
    let c = match Client::connect_path(sock) {
        Ok(c) => c,
        Err(e) => return format!("connect-errno {}", errno_of(&e)),
    };
    let pid = std::process::id();
    let out = match op {
        "connect" => "ok".to_owned(),
        "read" => {
            let mut ch = c.read(arg, Range::WHOLE).unwrap();
            if !sys::wait_readable(ch.as_fd(), WAIT).unwrap() {
                return "timeout".to_owned();
            }
            match ch.file_info() {
                Ok(_) => {
                    let mut v = Vec::new();
                    ch.read_to_end(&mut v).unwrap();
                    format!("ok {}", v.len())
                }
                Err(e) => format!("errno {}", errno_of(&e)),
            }
        }
        "cancel" => {
            c.cancel(arg.parse().unwrap()).unwrap();
            "sent".to_owned()
        }
        "sendopen" => {
            let (r, w) = pipe();
            c.send_open(arg.parse().unwrap(), w.as_fd()).unwrap();
            drop(w);
            format!("bytes {}", read_to_end(r.as_fd()).len())
        }
        "garbage" => {
            sys::send_with_fds(c.as_fd(), b"\x01\xffnot a request", &[]).unwrap();
            "sent".to_owned()
        }
        other => format!("unknown op {other}"),
    };
    // Requests are handled in order: once a status request is answered (or
    // refused), everything above was handled.
    let _ = c.server_status(WAIT);
    format!("{out} pid {pid}")
}

/// Runs `op` against `d` as `uid`:`gid`; returns the RESULT line's words.
fn as_user(d: &Daemon, uid: u32, gid: u32, op: &str, arg: &str) -> Vec<String> {
    let spec = format!("{op}|{}|{arg}", d.socket().display());
    run_helper_as(HELPER_ENV, &spec, uid, gid)
}

fn is_root() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    eprintln!("SKIP: switching uids needs root");
    false
}

/// A daemon whose root other uids can enter, serving `pub.txt`.
fn open_daemon(extra: &[&str]) -> Daemon {
    let d = Daemon::start_with(extra);
    std::fs::set_permissions(d.root(), std::fs::Permissions::from_mode(0o755)).unwrap();
    d.write("pub.txt", b"public data");
    std::fs::set_permissions(
        d.root().join("pub.txt"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    d
}

fn mode_of(p: &Path) -> (u32, u32, u32) {
    let md = std::fs::metadata(p).unwrap();
    (md.mode() & 0o7777, md.uid(), md.gid())
}

#[test]
fn the_socket_is_owner_only_by_default() {
    let d = open_daemon(&[]);
    let (mode, uid, _) = mode_of(&d.socket());
    assert_eq!(mode, 0o600);
    assert_eq!(uid, nix::unistd::geteuid().as_raw());
    if !is_root() {
        return;
    }
    let r = as_user(&d, NOBODY, NOBODY, "connect", "");
    assert_eq!(r[..2], ["connect-errno", &libc::EACCES.to_string()]);
}

#[test]
fn socket_mode_and_group_let_the_group_in_and_no_one_else() {
    if !is_root() {
        return;
    }
    let d = open_daemon(&["--socket-mode", "660", "--socket-group", "65534"]);
    let (mode, uid, gid) = mode_of(&d.socket());
    assert_eq!((mode, uid, gid), (0o660, 0, NOBODY));
    let member = as_user(&d, STRANGER, NOBODY, "read", "pub.txt");
    assert_eq!(member[..2], ["ok", "11"], "group member");
    let other = as_user(&d, STRANGER, STRANGER, "read", "pub.txt");
    assert_eq!(other[..2], ["connect-errno", &libc::EACCES.to_string()]);
}

#[test]
fn allow_lists_refuse_other_uids_and_gids_with_eacces() {
    if !is_root() {
        return;
    }
    let d = open_daemon(&[
        "--socket-mode",
        "666",
        "--allow-uid",
        "0",
        "--allow-gid",
        "65534",
    ]);
    let eacces = libc::EACCES.to_string();
    let stranger = as_user(&d, STRANGER, STRANGER, "read", "pub.txt");
    assert_eq!(stranger[..2], ["errno", &eacces], "{stranger:?}");
    let by_gid = as_user(&d, STRANGER, NOBODY, "read", "pub.txt");
    assert_eq!(by_gid[..2], ["ok", "11"], "allowed by gid");
    let nobody = as_user(&d, NOBODY, NOBODY, "read", "pub.txt");
    assert_eq!(nobody[..2], ["ok", "11"], "allowed by gid");
    // Root is on the uid list.
    let mut ch = d.client().read("pub.txt", Range::WHOLE).unwrap();
    assert_eq!(ch.file_info().unwrap().size, 11);
    let log = d.log();
    let pid = &stranger[3];
    assert!(
        log.contains(&format!(
            "from pid {pid} uid {STRANGER}: not in the allow-list"
        )),
        "{log}"
    );
    // Only uid 0 allowed: nobody is refused too.
    let d = open_daemon(&["--socket-mode", "666", "--allow-uid", "0"]);
    let nobody = as_user(&d, NOBODY, NOBODY, "read", "pub.txt");
    assert_eq!(nobody[..2], ["errno", &eacces]);
}

#[test]
fn another_uid_cannot_cancel_or_send_someone_elses_open_file() {
    if !is_root() {
        return;
    }
    let d = open_daemon(&["--socket-mode", "666"]);
    let data = pattern(100_000);
    d.write("f.bin", &data);
    let c = d.client();
    let opened = c.open("f.bin", Range::WHOLE).unwrap();
    let txnid = match opened.recv_timeout(WAIT).unwrap() {
        Some(Response::FileInfo(i)) => i.txnid as u64,
        other => panic!("{other:?}"),
    };
    // nobody knows the id (it guessed right, or it leaked) but does not own
    // the transfer.
    let r = as_user(&d, NOBODY, NOBODY, "cancel", &txnid.to_string());
    assert_eq!(r[0], "sent");
    let r = as_user(&d, NOBODY, NOBODY, "sendopen", &txnid.to_string());
    assert_eq!(r[..2], ["bytes", "0"], "no byte to nobody's descriptor");
    assert!(
        !sys::wait_readable(opened.as_fd(), std::time::Duration::ZERO).unwrap(),
        "the owner's channel heard nothing"
    );
    assert_eq!(d.live(), 1, "still open");
    let log = d.log();
    assert!(
        log.contains(&format!(
            "cancel of transfer {txnid:x} by uid {NOBODY} refused: it belongs to uid 0"
        )),
        "{log}"
    );
    assert!(log.contains(&format!(
        "send-open of transfer {txnid:x} by uid {NOBODY} refused"
    )));
    // The owner can still use it.
    let (r, w) = pipe();
    c.send_open(txnid, w.as_fd()).unwrap();
    drop(w);
    assert!(read_to_end(r.as_fd()) == data);
    let done = complete(&opened);
    assert!(done.complete, "{done:?}");
}

#[test]
fn peer_credentials_are_logged_with_each_refusal() {
    if !is_root() {
        return;
    }
    let d = open_daemon(&["--socket-mode", "666"]);
    let r = as_user(&d, NOBODY, NOBODY, "garbage", "");
    let pid = &r[2];
    let log = d.log();
    assert!(
        log.contains(&format!("bad request from pid {pid} uid {NOBODY}")),
        "{log}"
    );
}
