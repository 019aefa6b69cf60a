//! The event loop's engines through the real daemon (Linux): `--engine
//! epoll`, `--engine auto` taking io_uring where the kernel allows it, and
//! io_uring really refused, by a seccomp filter that makes
//! `io_uring_setup(2)` fail with `EPERM` in the daemon's process: `auto`
//! falls back to epoll with one log line, `uring` does not start.
#![cfg(target_os = "linux")]

mod common;

use std::io::Read;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};

use common::*;
use sendfiled_client::client::Range;
use sendfiled_core::sys;

/// The start-up line that names the backend and the engine.
fn serving_line(d: &Daemon) -> String {
    let log = d.log();
    log.lines()
        .find(|l| l.contains("serving with backend"))
        .unwrap_or_else(|| panic!("no start-up line in the log:\n{log}"))
        .to_owned()
}

/// The lines of the daemon's log that report io_uring refused.
fn refusals(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains("io_uring refused"))
        .collect()
}

/// A file that has to wait for its pipe (3 MiB and a bit) sent to a pipe and
/// read back whole, a small one sent to a stream socket, and the big one read
/// through a Read File pipe: every byte as in the file. Then the daemon stops
/// cleanly on SIGTERM. Afterwards the start-up line is in the log, because
/// the loop logs it before it serves anything.
fn serves_byte_exact(d: &mut Daemon) {
    let big = pattern((3 << 20) + 12_345);
    d.write("big.bin", &big);
    let (r, w) = pipe();
    let st = d.client().send("big.bin", w.as_fd(), Range::WHOLE).unwrap();
    drop(w);
    let got = read_to_end(r.as_fd());
    let c = complete(&st);
    assert!(c.complete, "{c:?}");
    assert_eq!(c.info.unwrap().size, big.len());
    assert_eq!(got.len(), big.len());
    assert!(got == big, "the sent bytes differ from the file");

    let small = pattern(4096 + 7);
    d.write("small.bin", &small);
    let (mut a, b) = UnixStream::pair().unwrap();
    let st = d
        .client()
        .send("small.bin", b.as_fd(), Range::WHOLE)
        .unwrap();
    drop(b);
    let c = complete(&st);
    assert!(c.complete, "{c:?}");
    let mut got = Vec::new();
    a.read_to_end(&mut got).unwrap();
    assert!(got == small, "the small file's bytes differ");

    let mut ch = d.client().read("big.bin", Range::WHOLE).unwrap();
    assert_eq!(ch.file_info().unwrap().size, big.len());
    let mut got = Vec::new();
    ch.read_to_end(&mut got).unwrap();
    assert!(got == big, "the read bytes differ from the file");

    let status = d.stop();
    assert!(status.success(), "daemon exited with {status}");
}

#[test]
fn epoll_engine_is_named_at_start_and_sends_byte_exact() {
    let mut d = Daemon::start_with(&["--engine", "epoll"]);
    serves_byte_exact(&mut d);
    let line = serving_line(&d);
    assert!(line.contains(", engine epoll,"), "{line}");
    assert!(refusals(&d.log()).is_empty(), "{}", d.log());
}

#[test]
fn sendfiled_engine_picks_the_engine_when_the_option_is_absent() {
    let root = tempfile::tempdir().unwrap();
    let err = Daemon::start_in_env(
        root,
        &unique_name("engine-env"),
        &[],
        &[("SENDFILED_ENGINE", "select")],
    )
    .err()
    .expect("an unknown engine in the environment is refused");
    assert!(
        err.contains(&format!("exit status: {}", libc::EINVAL)),
        "{err}"
    );

    let mut d = Daemon::start_env(&[], &[("SENDFILED_ENGINE", "epoll")]);
    let st = d.client().server_status(WAIT).expect("status");
    assert_eq!(st.live, 0);
    let line = serving_line(&d);
    assert!(line.contains(", engine epoll,"), "{line}");
    assert!(d.stop().success());

    // The option wins over the environment.
    let mut d = Daemon::start_env(&["--engine", "epoll"], &[("SENDFILED_ENGINE", "uring")]);
    let _ = d.client().server_status(WAIT).expect("status");
    let line = serving_line(&d);
    assert!(line.contains(", engine epoll,"), "{line}");
    assert!(d.stop().success());
}

/// Why io_uring is not there to test, or `None` if it is.
fn io_uring_unavailable() -> Option<String> {
    match std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled") {
        Ok(v) if v.trim() == "0" => None,
        Ok(v) => Some(format!("kernel.io_uring_disabled is {}", v.trim())),
        Err(e) => Some(format!("/proc/sys/kernel/io_uring_disabled: {e}")),
    }
}

#[test]
fn auto_takes_io_uring_where_the_kernel_allows_it_and_sends_byte_exact() {
    if let Some(why) = io_uring_unavailable() {
        eprintln!("skipped: {why}");
        return;
    }
    let mut d = Daemon::start_with(&["--engine", "auto"]);
    serves_byte_exact(&mut d);
    let line = serving_line(&d);
    assert!(line.contains(", engine uring,"), "{line}");
    assert!(refusals(&d.log()).is_empty(), "{}", d.log());

    let mut d = Daemon::start_with(&["--engine", "uring"]);
    serves_byte_exact(&mut d);
    let line = serving_line(&d);
    assert!(line.contains(", engine uring,"), "{line}");
}

// --- io_uring refused by seccomp -------------------------------------------

/// `AUDIT_ARCH_*` of the architecture the daemon is built for
/// (`<linux/audit.h>`: the ELF machine, 64-bit, little-endian).
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: Option<u32> = Some(0xC000_003E);
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: Option<u32> = Some(0xC000_00B7);
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const AUDIT_ARCH: Option<u32> = None;

fn bpf_stmt(code: u32, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    }
}

fn bpf_jump(code: u32, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    }
}

/// A `pre_exec` hook that installs a seccomp filter failing
/// `io_uring_setup(2)` with `EPERM` and allowing every other system call
/// (and every call of another architecture), or `None` on an architecture
/// this test has no `AUDIT_ARCH` for. The program is built here, before
/// the fork; the hook makes two `prctl(2)` calls and allocates nothing.
fn refuse_io_uring_setup() -> Option<impl FnMut() -> std::io::Result<()> + Send + Sync + 'static> {
    let arch = AUDIT_ARCH?;
    let ld_abs = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
    let jeq = libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K;
    let ret = libc::BPF_RET | libc::BPF_K;
    let filters = [
        bpf_stmt(
            ld_abs,
            std::mem::offset_of!(libc::seccomp_data, arch) as u32,
        ),
        // Another architecture's call: allowed (skip to the last).
        bpf_jump(jeq, arch, 0, 3),
        bpf_stmt(ld_abs, std::mem::offset_of!(libc::seccomp_data, nr) as u32),
        bpf_jump(jeq, libc::SYS_io_uring_setup as u32, 0, 1),
        bpf_stmt(ret, libc::SECCOMP_RET_ERRNO | libc::EPERM as u32),
        bpf_stmt(ret, libc::SECCOMP_RET_ALLOW),
    ];
    Some(move || {
        let prog = libc::sock_fprog {
            len: filters.len() as libc::c_ushort,
            filter: filters.as_ptr().cast_mut(),
        };
        // SAFETY: prctl(2) with integer arguments, and a pointer to the
        // program, which the closure holds.
        unsafe {
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1 as libc::c_ulong, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER as libc::c_ulong,
                &prog as *const libc::sock_fprog,
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    })
}

#[test]
fn auto_falls_back_to_epoll_when_seccomp_refuses_io_uring() {
    let Some(hook) = refuse_io_uring_setup() else {
        eprintln!("skipped: no AUDIT_ARCH for this architecture");
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let name = unique_name("engine-refused");
    // SAFETY: the hook makes only prctl(2) calls (see refuse_io_uring_setup).
    let mut d = unsafe { Daemon::start_in_pre_exec(root, &name, &["--engine", "auto"], &[], hook) }
        .unwrap_or_else(|e| panic!("daemon did not start: {e}"));
    serves_byte_exact(&mut d);
    let log = d.log();
    let refused = refusals(&log);
    assert_eq!(refused.len(), 1, "exactly one refusal line:\n{log}");
    assert!(
        refused[0].contains("WARN") && refused[0].contains("using the epoll engine"),
        "{}",
        refused[0]
    );
    assert!(
        refused[0].contains("os error 1)"),
        "refused with EPERM, the filter's answer: {}",
        refused[0]
    );
    let line = serving_line(&d);
    assert!(line.contains(", engine epoll,"), "{line}");
}

/// Kills the child if the test fails before it has been reaped.
struct Reap(Option<Child>);

impl Drop for Reap {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Waits at most [`WAIT`] for `child` to exit (on a pidfd), then reaps it.
fn wait_exit(reap: &mut Reap) -> ExitStatus {
    let child = reap.0.as_mut().expect("not reaped yet");
    // SAFETY: pidfd_open(2) of our own unreaped child; returns a new
    // descriptor or -1.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, child.id() as libc::pid_t, 0) };
    assert!(raw >= 0, "pidfd_open: {}", std::io::Error::last_os_error());
    // SAFETY: `raw` is a fresh descriptor nobody else owns.
    let pidfd = unsafe { OwnedFd::from_raw_fd(raw as libc::c_int) };
    assert!(
        sys::wait_readable(pidfd.as_fd(), WAIT).unwrap(),
        "the daemon did not exit within {WAIT:?}"
    );
    let status = child.wait().expect("wait");
    reap.0 = None;
    status
}

#[test]
fn uring_engine_does_not_start_when_seccomp_refuses_io_uring() {
    let Some(hook) = refuse_io_uring_setup() else {
        eprintln!("skipped: no AUDIT_ARCH for this architecture");
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let name = unique_name("engine-uring-refused");
    let mut cmd = Command::new(daemon_bin());
    cmd.args(["-s", &name, "-r"])
        .arg(root.path())
        .args(["-p", "--engine", "uring"])
        .env("SENDFILED_ALLOW_ROOT", "1")
        .env_remove("SENDFILED_ENGINE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: the hook makes only prctl(2) calls (see refuse_io_uring_setup).
    unsafe { cmd.pre_exec(hook) };
    let mut reap = Reap(Some(cmd.spawn().expect("spawn sendfiled")));
    let child = reap.0.as_mut().unwrap();
    let (out, err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());

    // The readiness line, then end of file (stdout is closed after it).
    let ready = String::from_utf8(read_to_end(out.as_fd())).unwrap();
    let errno: i32 = ready
        .strip_prefix("error ")
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not an error line: {ready:?}"));
    assert!(
        ready.contains("io_uring refused: Operation not permitted (os error 1)"),
        "the refusal, with the filter's EPERM: {ready:?}"
    );
    // The log, to end of file: the daemon has exited.
    let log = String::from_utf8_lossy(&read_to_end(err.as_fd())).into_owned();
    let status = wait_exit(&mut reap);
    assert!(status.signal().is_none(), "{status}");
    assert_ne!(status.code(), Some(0), "{status}; log:\n{log}");
    assert_eq!(
        status.code(),
        Some(errno),
        "exits with the errno it printed"
    );
    assert_eq!(errno, libc::EPERM, "the refusal's errno, not a generic EIO");
    assert_eq!(
        refusals(&log).len(),
        1,
        "the refusal is logged once:\n{log}"
    );
    assert!(
        !log.contains("serving with backend"),
        "the loop never started:\n{log}"
    );
    assert!(
        !root.path().join(&name).exists(),
        "no socket file is left behind"
    );
}
