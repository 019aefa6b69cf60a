//! How the daemon starts and says why it did not: `-d` (detaches into `/`,
//! returns once serving, reports a failed start on standard error), `-u`
//! without root, and the journal's priority prefixes on standard error.
//! Linux: the tests read `/proc/PID/cwd` and wait on a pidfd.
#![cfg(target_os = "linux")]

use std::io::{BufRead, BufReader, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

const DAEMON: &str = env!("CARGO_BIN_EXE_sendfiled");

fn unique_name() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "start{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Stops `pid` (not our child: a detached daemon) with SIGTERM and waits,
/// on a pidfd, up to ten seconds for it to exit.
fn stop_and_wait(pid: libc::pid_t) {
    // SAFETY: pidfd_open takes a pid and flags; the result is a new
    // descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    // SAFETY: signalling the daemon this test started.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    if fd < 0 {
        // A kernel without pidfds (before 5.3): the signal is sent; the
        // temporary root is removed under it, which it survives.
        return;
    }
    // SAFETY: fd is a new descriptor owned here.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let n = unsafe { libc::poll(&mut p, 1, 10_000) };
    assert_eq!(n, 1, "the detached daemon {pid} did not exit on SIGTERM");
}

#[test]
fn d_detaches_into_the_root_directory_and_returns_once_serving() {
    let dir = tempfile::tempdir().unwrap();
    let name = unique_name();
    let mut parent = Command::new(DAEMON)
        .args(["-d", "-p", "--log", "none", "-s", &name, "-r"])
        .arg(dir.path())
        .current_dir(dir.path())
        .env("SENDFILED_ALLOW_ROOT", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(parent.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let status = parent.wait().unwrap();
    let mut err = String::new();
    parent
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(status.success(), "{status:?}: {err}");
    let pid: libc::pid_t = line
        .strip_prefix("ready ")
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("readiness line {line:?}"));
    // The parent returned only once the daemon was serving: its socket is
    // there now.
    let sock = dir.path().join(&name);
    let serving = std::fs::symlink_metadata(&sock).is_ok();
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd"));
    stop_and_wait(pid);
    assert!(serving, "no socket at {} when -d returned", sock.display());
    assert_eq!(cwd.unwrap(), Path::new("/"), "the detached daemon's cwd");
}

#[test]
fn a_failed_d_start_is_reported_on_standard_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-root");
    for log in ["none", "syslog"] {
        let o = Command::new(DAEMON)
            .args(["-d", "--log", log, "-s", &unique_name(), "-r"])
            .arg(&missing)
            .env("SENDFILED_ALLOW_ROOT", "1")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(libc::ENOENT), "--log {log}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.starts_with(&format!("sendfiled: root {}: ", missing.display())),
            "--log {log}: {err:?}"
        );
    }
}

#[test]
fn u_without_root_says_it_needs_root() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(DAEMON);
    cmd.args([
        "-u",
        "root",
        "-p",
        "--log",
        "none",
        "-s",
        &unique_name(),
        "-r",
    ])
    .arg(dir.path())
    .env_remove("SENDFILED_ALLOW_ROOT")
    .stdin(Stdio::null());
    if nix::unistd::geteuid().is_root() {
        // Run it as nobody: the test itself runs as root on CI.
        cmd.uid(65534).gid(65534);
    }
    let o = cmd.output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(libc::EPERM), "{out}");
    assert!(
        out.starts_with(&format!("error {} -u/-g need root", libc::EPERM)),
        "{out:?}"
    );
}

/// Runs a foreground daemon with `JOURNAL_STREAM=journal_stream` (a
/// closure of the log file's device and inode), standard error to a file,
/// and returns what it logged from start to SIGTERM.
fn log_with_journal_stream(journal_stream: impl Fn(u64, u64) -> String) -> String {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("stderr.log");
    let file = std::fs::File::create(&log).unwrap();
    let meta = file.metadata().unwrap();
    let mut child = Command::new(DAEMON)
        .args(["-p", "--log", "stderr", "-s", &unique_name(), "-r"])
        .arg(dir.path())
        .env("SENDFILED_ALLOW_ROOT", "1")
        .env("JOURNAL_STREAM", journal_stream(meta.dev(), meta.ino()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(file))
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("ready "), "{line:?}");
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
    std::fs::read_to_string(&log).unwrap()
}

#[test]
fn stderr_lines_carry_journal_priorities_when_stderr_is_the_journal() {
    let text = log_with_journal_stream(|dev, ino| format!("{dev}:{ino}"));
    assert!(!text.is_empty());
    for l in text.lines() {
        assert!(
            l.starts_with("<6>sendfiled[") || l.starts_with("<4>sendfiled["),
            "{l:?} in\n{text}"
        );
    }
    assert!(text.contains("<6>sendfiled["), "{text}");
    // A JOURNAL_STREAM naming another stream (inherited, then redirected):
    // plain lines.
    let text = log_with_journal_stream(|dev, ino| format!("{dev}:{}", ino + 1));
    assert!(text.lines().all(|l| l.starts_with("sendfiled[")), "{text}");
}
