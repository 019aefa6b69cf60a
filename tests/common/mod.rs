//! Test harness: starts the real daemon binary on a private temporary root
//! with a unique name, and tears it down.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sendfiled_client::client::{Client, StatusChannel};
use sendfiled_core::sys;

/// Longest any test waits on one descriptor.
pub const WAIT: Duration = Duration::from_secs(20);

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A name no other test (or concurrent test run) uses.
pub fn unique_name(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A running daemon.
pub struct Daemon {
    pub child: Option<Child>,
    pub pid: i32,
    pub root: tempfile::TempDir,
    pub name: String,
    log: PathBuf,
    _logdir: tempfile::TempDir,
}

pub fn daemon_bin() -> &'static str {
    env!("CARGO_BIN_EXE_sendfiled")
}

impl Daemon {
    /// Starts a daemon with default options.
    pub fn start() -> Daemon {
        Daemon::start_with(&[])
    }

    /// Starts a daemon with extra arguments; panics if it does not report
    /// ready.
    pub fn start_with(extra: &[&str]) -> Daemon {
        let root = tempfile::tempdir().expect("tempdir");
        let name = unique_name("srv");
        Daemon::start_in(root, &name, extra)
            .unwrap_or_else(|line| panic!("daemon did not start: {line}"))
    }

    /// Starts a daemon on `root` named `name`; `Err(line)` with its readiness
    /// line (or exit status) if it failed.
    pub fn start_in(root: tempfile::TempDir, name: &str, extra: &[&str]) -> Result<Daemon, String> {
        Daemon::start_in_env(root, name, extra, &[])
    }

    /// Starts a daemon with extra arguments and environment variables;
    /// panics if it does not report ready.
    pub fn start_env(extra: &[&str], env: &[(&str, &str)]) -> Daemon {
        let root = tempfile::tempdir().expect("tempdir");
        let name = unique_name("srv");
        Daemon::start_in_env(root, &name, extra, env)
            .unwrap_or_else(|line| panic!("daemon did not start: {line}"))
    }

    /// [`Daemon::start_in`] with environment variables for the daemon.
    pub fn start_in_env(
        root: tempfile::TempDir,
        name: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Daemon, String> {
        Daemon::spawn(root, name, extra, env, |_| {})
    }

    /// [`Daemon::start_in_env`] with `hook` run in the daemon's process
    /// between `fork` and `exec` (to confine it with a seccomp filter, say).
    ///
    /// # Safety
    /// As for [`CommandExt::pre_exec`]: `hook` makes only
    /// async-signal-safe calls and allocates nothing.
    ///
    /// [`CommandExt::pre_exec`]: std::os::unix::process::CommandExt::pre_exec
    pub unsafe fn start_in_pre_exec(
        root: tempfile::TempDir,
        name: &str,
        extra: &[&str],
        env: &[(&str, &str)],
        hook: impl FnMut() -> std::io::Result<()> + Send + Sync + 'static,
    ) -> Result<Daemon, String> {
        use std::os::unix::process::CommandExt;
        Daemon::spawn(root, name, extra, env, |cmd| {
            // SAFETY: per this function's contract.
            unsafe { cmd.pre_exec(hook) };
        })
    }

    fn spawn(
        root: tempfile::TempDir,
        name: &str,
        extra: &[&str],
        env: &[(&str, &str)],
        configure: impl FnOnce(&mut Command),
    ) -> Result<Daemon, String> {
        let logdir = tempfile::tempdir().expect("tempdir");
        let log = logdir.path().join("daemon.log");
        let logfile = std::fs::File::create(&log).expect("log file");
        let mut cmd = Command::new(daemon_bin());
        cmd.args(["-s", name, "-r"])
            .arg(root.path())
            .args(["-p", "--log-level", "debug"])
            .args(extra)
            .env("SENDFILED_ALLOW_ROOT", "1")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(logfile));
        configure(&mut cmd);
        let mut child = cmd.spawn().expect("spawn sendfiled");
        let mut out = child.stdout.take().expect("stdout");
        assert!(
            sys::wait_readable(out.as_fd(), WAIT).unwrap(),
            "daemon said nothing in time"
        );
        let mut line = String::new();
        let _ = out.read_to_string(&mut line);
        let pid = child.id() as i32;
        if line.trim() != format!("ready {pid}") {
            let status = child.wait().expect("wait");
            return Err(format!("{} ({status})", line.trim()));
        }
        Ok(Daemon {
            child: Some(child),
            pid,
            root,
            name: name.to_owned(),
            log,
            _logdir: logdir,
        })
    }

    pub fn root(&self) -> &Path {
        self.root.path()
    }

    pub fn socket(&self) -> PathBuf {
        self.root.path().join(&self.name)
    }

    pub fn client(&self) -> Client {
        Client::connect(self.root.path(), &self.name).expect("connect")
    }

    pub fn write(&self, rel: &str, data: &[u8]) -> PathBuf {
        let p = self.root.path().join(rel);
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(&p, data).unwrap();
        p
    }

    /// The daemon's open descriptors.
    pub fn fd_count(&self) -> usize {
        self.fd_list().len()
    }

    /// The daemon's open descriptors and what they are (for failure
    /// messages): `/proc` on Linux, `procstat -f` on FreeBSD, `lsof` on macOS.
    pub fn fd_list(&self) -> Vec<String> {
        let mut v: Vec<String> = if cfg!(target_os = "linux") {
            std::fs::read_dir(format!("/proc/{}/fd", self.pid))
                .unwrap()
                .filter_map(|e| e.ok())
                .map(|e| {
                    let target = std::fs::read_link(e.path()).map(|p| p.display().to_string());
                    format!(
                        "{}->{}",
                        e.file_name().to_string_lossy(),
                        target.unwrap_or_default()
                    )
                })
                .collect()
        } else {
            let (cmd, args): (&str, Vec<String>) = if cfg!(target_os = "freebsd") {
                ("procstat", vec!["-f".into(), self.pid.to_string()])
            } else {
                (
                    "lsof",
                    vec!["-n".into(), "-P".into(), "-p".into(), self.pid.to_string()],
                )
            };
            let out = Command::new(cmd).args(&args).output().expect("fd lister");
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| {
                    // Keep numbered descriptors only (not cwd, text, maps).
                    let col = if cfg!(target_os = "freebsd") { 2 } else { 3 };
                    l.split_whitespace().nth(col).is_some_and(|f| {
                        f.trim_end_matches(|c: char| c.is_ascii_alphabetic())
                            .parse::<u32>()
                            .is_ok()
                    })
                })
                .map(str::to_owned)
                .collect()
        };
        v.sort();
        v
    }

    /// Live transfers, from the daemon's status report.
    pub fn live(&self) -> u64 {
        self.client().server_status(WAIT).expect("status").live
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM and wait.
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.pid, libc::SIGTERM) };
        child.wait().expect("wait")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- daemon log ----\n{}", self.log());
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A file of `len` bytes of a pattern that shows misplaced bytes.
pub fn pattern(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x1234_5678;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// Reads `fd` to EOF, waiting at most [`WAIT`] for each piece.
pub fn read_to_end(fd: BorrowedFd<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        assert!(
            sys::wait_readable(fd, WAIT).unwrap(),
            "no data within {WAIT:?}"
        );
        match sys::read(fd, &mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => panic!("read: {e}"),
        }
    }
}

/// Reads up to `n` bytes (fewer if EOF comes first).
pub fn read_exact_or_eof(fd: BorrowedFd<'_>, n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    while out.len() < n {
        assert!(
            sys::wait_readable(fd, WAIT).unwrap(),
            "no data within {WAIT:?}"
        );
        let want = (n - out.len()).min(buf.len());
        match sys::read(fd, &mut buf[..want]) {
            Ok(0) => break,
            Ok(k) => out.extend_from_slice(&buf[..k]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => panic!("read: {e}"),
        }
    }
    out
}

/// A pipe: (read end, write end).
pub fn pipe() -> (OwnedFd, OwnedFd) {
    sys::pipe().expect("pipe")
}

/// Waits for a status channel's whole story.
pub fn complete(ch: &StatusChannel) -> sendfiled_client::client::Completion {
    ch.wait_complete(WAIT).expect("status channel")
}

/// Polls `cond` (each check itself waits on a descriptor) until true or
/// the deadline; used only for daemon-side counters that have no descriptor
/// of their own to wait on.
pub fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        // Wait on a descriptor that never becomes ready, as a bounded pause
        // between checks of the daemon's own report.
        let (r, _w) = pipe();
        let _ = sys::wait_readable(r.as_fd(), Duration::from_millis(20));
    }
    false
}

/// Returns once `when` has passed: for a test that must act after a
/// daemon-side deadline (a wait on a descriptor that never becomes ready,
/// bounded by the deadline).
pub fn wait_until(when: Instant) {
    let (r, _w) = pipe();
    loop {
        let left = when.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        let _ = sys::wait_readable(r.as_fd(), left);
    }
}

/// Runs this test binary again as `uid`:`gid`, selecting its `helper` test
/// with `env = spec`; returns the words of the `RESULT` line it prints.
/// How other users are simulated: the daemon sees their credentials.
pub fn run_helper_as(env: &str, spec: &str, uid: u32, gid: u32) -> Vec<String> {
    use std::os::unix::process::CommandExt;
    let out = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "helper", "--nocapture", "--test-threads=1", "-q"])
        .env(env, spec)
        .uid(uid)
        .gid(gid)
        .stdin(Stdio::null())
        .output()
        .expect("helper");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .unwrap_or_else(|| {
            panic!(
                "helper as {uid}:{gid} said nothing: {text} {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    line.split_whitespace().map(str::to_owned).collect()
}

/// A destination file opened `O_DSYNC` (for reading too) in a directory on
/// the build's disk (the temporary directory may be a tmpfs, where
/// `O_DSYNC` costs nothing).
pub fn dsync_file() -> (tempfile::TempDir, std::fs::File) {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_DSYNC)
        .open(dir.path().join(unique_name("dsync")))
        .expect("open O_DSYNC");
    (dir, f)
}

/// Socket activation as systemd does it, without systemd: starts the
/// daemon through `/bin/sh` so that `LISTEN_PID=$$` is the pid the daemon
/// will have (`exec` keeps it), with `fd` as descriptor 3.
pub fn spawn_activated(fd: RawFd, listen_fds: &str, root: &Path, extra: &[&str]) -> Child {
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(format!(
            "LISTEN_PID=$$ LISTEN_FDS={listen_fds} LISTEN_FDNAMES=req exec \"$0\" \"$@\""
        ))
        .arg(daemon_bin())
        .args(["-s", "activated", "-r"])
        .arg(root)
        .args(["-p", "--log", "stderr", "--log-level", "debug"])
        .args(extra)
        .env("SENDFILED_ALLOW_ROOT", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: only async-signal-safe calls (dup2, fcntl) between fork and
    // exec.
    unsafe {
        cmd.pre_exec(move || {
            if fd == 3 {
                // dup2 onto itself keeps close-on-exec: clear it instead.
                if libc::fcntl(3, libc::F_SETFD, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            } else if libc::dup2(fd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn().expect("spawn the daemon through /bin/sh")
}

/// The daemon's first line on standard output (its readiness report).
pub fn first_line(child: &mut Child) -> String {
    let out = child.stdout.take().expect("stdout piped");
    let mut line = String::new();
    BufReader::new(out)
        .read_line(&mut line)
        .expect("readiness line");
    line
}
