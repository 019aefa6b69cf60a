//! `sfd` end to end: the real daemon binary of this workspace, started in a
//! temporary root, and the real `sfd` binary run against it.
//!
//! The daemon is the workspace's `sendfiled` binary next to this test's
//! build directory (`target/<profile>/sendfiled`), or `$SENDFILED_BIN`.
//! `cargo test --workspace` builds it; `cargo test -p sfd` alone does not,
//! so run `cargo build --workspace` first in that case.

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::os::unix::net::{UnixDatagram, UnixListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

const SFD: &str = env!("CARGO_BIN_EXE_sfd");

fn daemon_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("SENDFILED_BIN") {
        return PathBuf::from(p);
    }
    // target/<profile>/deps/cli-HASH -> target/<profile>/sendfiled
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps");
    let p = profile_dir.join("sendfiled");
    assert!(
        p.is_file(),
        "the sendfiled daemon is not built at {}: run `cargo build --workspace` \
         (or `cargo test --workspace`) first, or set SENDFILED_BIN",
        p.display()
    );
    p
}

/// A daemon serving a temporary root; stopped (SIGTERM) when dropped.
struct Daemon {
    child: Child,
    dir: tempfile::TempDir,
    sock: PathBuf,
}

impl Daemon {
    fn start() -> Daemon {
        Daemon::start_with_log(None)
    }

    /// A daemon whose log (`--log stderr`) goes to the file `log`.
    fn start_with_log(log: Option<&Path>) -> Daemon {
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "sfdt{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("run")).expect("root");
        let mut child = Command::new(daemon_binary())
            .args(["-s", &name, "-r"])
            .arg(&root)
            .args(["-S", "run", "-p", "--log"])
            .arg(if log.is_some() { "stderr" } else { "none" })
            .env("SENDFILED_ALLOW_ROOT", "1")
            .env_remove("JOURNAL_STREAM")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(match log {
                Some(p) => Stdio::from(std::fs::File::create(p).expect("log file")),
                None => Stdio::null(),
            })
            .spawn()
            .expect("start sendfiled");
        let mut line = String::new();
        let out = child.stdout.take().expect("stdout");
        BufReader::new(out)
            .read_line(&mut line)
            .expect("readiness line");
        assert!(line.starts_with("ready "), "sendfiled said {line:?}");
        let sock = root.join("run").join(&name);
        Daemon { child, dir, sock }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    fn put(&self, name: &str, body: &[u8]) {
        std::fs::write(self.root().join(name), body).expect("write test file");
    }

    /// `sfd --socket SOCK ARGS...` with standard output and error captured.
    fn sfd(&self, args: &[&str]) -> Output {
        self.sfd_cmd(args).output().expect("run sfd")
    }

    fn sfd_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(SFD);
        c.arg("--socket").arg(&self.sock).args(args);
        c.env_remove("SENDFILED_SOCKET").stdin(Stdio::null());
        c
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // A test that stopped it already has reaped it: its pid is not ours
        // to signal any more.
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        // SAFETY: signalling our own child by its pid.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

fn body(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 % 253) as u8).collect()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn cat_writes_the_file_and_nothing_else_when_piped() {
    let d = Daemon::start();
    let b = body(300_000);
    d.put("data.bin", &b);
    let o = d.sfd(&["cat", "data.bin"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(o.stdout, b);
    assert!(
        o.stderr.is_empty(),
        "no progress bar when piped: {}",
        stderr(&o)
    );

    let o = d.sfd(&["cat", "data.bin", "--offset", "1000", "--length", "5000"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(o.stdout, &b[1000..6000]);
}

#[test]
fn a_missing_file_is_named_with_its_errno() {
    let d = Daemon::start();
    let o = d.sfd(&["cat", "missing.txt"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        "sfd: cat missing.txt: No such file or directory (ENOENT)\n"
    );
    assert!(o.stdout.is_empty());

    let o = d.sfd(&["stat", "missing.txt"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).ends_with("(ENOENT)\n"), "{}", stderr(&o));

    std::fs::create_dir(d.root().join("adir")).unwrap();
    let o = d.sfd(&["send", "adir", "--to", "fd:1"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).starts_with("sfd: send adir to fd:1: "),
        "{}",
        stderr(&o)
    );
    assert!(
        stderr(&o).contains("Invalid argument (EINVAL): not a regular file"),
        "not a regular file: {}",
        stderr(&o)
    );
}

/// One errno, several causes: sfd lists them, the daemon's log names the
/// one that applied, and the client still gets the original's errno.
#[test]
fn refusals_name_their_cause_in_sfd_and_in_the_log() {
    let logdir = tempfile::tempdir().unwrap();
    let log = logdir.path().join("daemon.log");
    let mut d = Daemon::start_with_log(Some(&log));
    std::fs::create_dir(d.root().join("adir")).unwrap();
    std::fs::write(d.dir.path().join("outside.txt"), b"secret").unwrap();
    std::os::unix::fs::symlink("../outside.txt", d.root().join("link-out")).unwrap();

    let o = d.sfd(&["cat", "adir"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        "sfd: cat adir: Invalid argument (EINVAL): not a regular file (a directory, FIFO, \
         socket or device), or the daemon's root itself\n"
    );
    for path in ["../outside.txt", "link-out"] {
        let o = d.sfd(&["cat", path]);
        assert_eq!(o.status.code(), Some(1));
        let e = stderr(&o);
        assert!(
            e.starts_with(&format!("sfd: cat {path}: Permission denied (EACCES): the path leads outside the daemon's root")),
            "{e}"
        );
        assert!(e.contains("or the daemon may not read the file"), "{e}");
    }

    // Stopping the daemon (SIGTERM, waited for) flushes its log.
    // SAFETY: signalling our own child by its pid.
    unsafe { libc::kill(d.child.id() as libc::pid_t, libc::SIGTERM) };
    d.child.wait().unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    let line = |needle: &str| {
        text.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no log line with {needle:?} in:\n{text}"))
            .to_owned()
    };
    assert!(
        line("Read adir").contains("refused: not a regular file, or the root itself (EINVAL)"),
        "{text}"
    );
    for path in ["../outside.txt", "link-out"] {
        assert!(
            line(&format!("Read {path}"))
                .contains("refused: outside the root (through .. or a symbolic link) (EACCES)"),
            "{text}"
        );
    }
}

#[test]
fn send_to_a_unix_stream_socket() {
    let d = Daemon::start();
    let b = body(1 << 20);
    d.put("f", &b);
    let lpath = d.dir.path().join("receiver.sock");
    let listener = UnixListener::bind(&lpath).unwrap();
    let receiver = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        got
    });
    let to = format!("unix:{}", lpath.display());
    let o = d.sfd(&["send", "f", "--to", &to]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(o.stderr.is_empty() && o.stdout.is_empty());
    assert_eq!(receiver.join().unwrap(), b, "all bytes, then end of file");
}

#[test]
fn send_to_tcp() {
    let d = Daemon::start();
    let b = body(200_000);
    d.put("f", &b);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let receiver = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        got
    });
    let to = format!("tcp:127.0.0.1:{port}");
    let o = d.sfd(&["send", "f", "--to", &to, "-o", "10", "-l", "100000"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(receiver.join().unwrap(), &b[10..100_010]);
}

#[test]
fn send_to_an_inherited_descriptor_and_to_a_file() {
    let d = Daemon::start();
    let b = body(70_000);
    d.put("f", &b);
    let out = d.dir.path().join("out-fd");
    let file = std::fs::File::create(&out).unwrap();
    let o = d
        .sfd_cmd(&["send", "f", "--to", "fd:1"])
        .stdout(file)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read(&out).unwrap(), b);

    let out2 = d.dir.path().join("out-file");
    let to = format!("file:{}", out2.display());
    let o = d.sfd(&["send", "f", "--to", &to]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read(&out2).unwrap(), b);

    let o = d.sfd(&["send", "f", "--to", "fd:97"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).ends_with("(EBADF)\n"), "{}", stderr(&o));
}

#[test]
fn stat_shows_size_and_times() {
    let d = Daemon::start();
    d.put("s.txt", b"twelve bytes");
    let o = d.sfd(&["stat", "s.txt"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("file:  s.txt\n"), "{text}");
    assert!(text.contains("size:  12 (12 B)\n"), "{text}");
    let mtime = std::fs::metadata(d.root().join("s.txt"))
        .unwrap()
        .modified()
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(text.contains(&format!("({mtime})\n")), "{text}");
    assert!(text.contains(" UTC ("), "{text}");
    // Where the open ran: this process, unless the attempt is off.
    let inline = sendfiled_client::inline::in_effect();
    let want = if inline {
        "open:  in this process (inline first), held by the daemon\n"
    } else {
        "open:  by the daemon\n"
    };
    assert!(text.contains(want), "{text}");
    // The daemon's slot is freed at once (the open is cancelled).
    let o = d.sfd(&["ping"]);
    assert!(stdout(&o).contains("transfers: 0 live"), "{}", stdout(&o));
}

#[test]
fn ping_reports_the_counters() {
    let d = Daemon::start();
    d.put("p", &body(4096));
    // Through the daemon: a cat of a cached file would otherwise finish in
    // sfd's own process (inline first) and leave the daemon's counters as
    // they were.
    let cat = d
        .sfd_cmd(&["cat", "p"])
        .env("SENDFILED_INLINE", "0")
        .output()
        .expect("run sfd");
    assert!(cat.status.success());
    let o = d.sfd(&["ping"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("is up"), "{text}");
    assert!(text.contains("protocol:  version 1"), "{text}");
    assert!(
        text.contains("transfers: 0 live, 1 completed, 0 failed"),
        "{text}"
    );
    assert!(text.contains("moved:     4096 bytes"), "{text}");
    assert!(text.contains("hand-offs: 0 "), "{text}");
    assert!(text.contains("uptime:"), "{text}");
    let o = d.sfd(&["ping", "-q"]);
    assert!(o.status.success() && o.stdout.is_empty());
}

#[test]
fn the_socket_can_be_named_three_ways() {
    let d = Daemon::start();
    d.put("x", b"x-body");
    let name = d.sock.file_name().unwrap().to_str().unwrap().to_owned();
    let dir = d.sock.parent().unwrap().to_owned();
    let o = Command::new(SFD)
        .arg("-S")
        .arg(&dir)
        .args(["-s", &name, "cat", "x"])
        .env_remove("SENDFILED_SOCKET")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(o.stdout, b"x-body");
    let o = Command::new(SFD)
        .args(["cat", "x"])
        .env("SENDFILED_SOCKET", &d.sock)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(o.stdout, b"x-body");
}

#[test]
fn usage_errors_exit_2() {
    let no_socket = Command::new(SFD)
        .args(["cat", "x"])
        .env_remove("SENDFILED_SOCKET")
        .output()
        .unwrap();
    assert_eq!(no_socket.status.code(), Some(2));
    assert!(stderr(&no_socket).contains("SENDFILED_SOCKET"));
    for args in [
        &["--socket", "/x", "send", "f", "--to", "udp:h:1"][..],
        &["--socket", "/x", "send", "f"],
        &["--socket", "/x", "-s", "n", "ping"],
        &["--socket", "/x", "frobnicate"],
        &["--socket", "/x", "cat", "f", "--offset", "-1"],
    ] {
        let o = Command::new(SFD).args(args).output().unwrap();
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
    }
    let help = Command::new(SFD).arg("--help").output().unwrap();
    assert_eq!(help.status.code(), Some(0));
    assert!(stdout(&help).contains("69"));
}

#[test]
fn an_unreachable_daemon_exits_69() {
    let dir = tempfile::tempdir().unwrap();
    // No socket at all.
    let missing = dir.path().join("nothing");
    let o = Command::new(SFD)
        .arg("--socket")
        .arg(&missing)
        .arg("ping")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(69));
    assert_eq!(
        stderr(&o),
        format!(
            "sfd: ping: cannot reach sendfiled at {}: No such file or directory (ENOENT)\n\
             sfd: hint: is the daemon running? a daemon started as `sendfiled -s NAME -r ROOT \
             [-S DIR]` listens on ROOT/DIR/NAME (DIR defaults to ROOT itself); name its socket \
             with --socket PATH, or -S DIR -s NAME\n",
            missing.display()
        )
    );
    // A dead daemon's socket file: nobody listens.
    let dead = dir.path().join("dead");
    drop(UnixDatagram::bind(&dead).unwrap());
    let o = Command::new(SFD)
        .arg("--socket")
        .arg(&dead)
        .args(["cat", "f"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(69));
    assert!(
        stderr(&o).contains("(ECONNREFUSED)\nsfd: hint: is the daemon running?"),
        "{}",
        stderr(&o)
    );
    // Something bound there that never answers.
    let mute = dir.path().join("mute");
    let _hold = UnixDatagram::bind(&mute).unwrap();
    let o = Command::new(SFD)
        .arg("--socket")
        .arg(&mute)
        .args(["--timeout", "1", "ping"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(69));
    assert!(stderr(&o).contains("no answer"), "{}", stderr(&o));
}

/// `-s NAME` alone looks in /run/sendfiled, which is not where a daemon
/// started by hand puts its socket: the message names the path tried and
/// how to point sfd at the right one.
#[test]
fn s_alone_names_the_default_directory_and_how_to_point_elsewhere() {
    let name = format!("sfd-no-such-server-{}", std::process::id());
    let o = Command::new(SFD)
        .args(["-s", &name, "ping"])
        .env_remove("SENDFILED_SOCKET")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(69));
    let e = stderr(&o);
    assert!(
        e.starts_with(&format!(
            "sfd: ping: cannot reach sendfiled at /run/sendfiled/{name}: "
        )),
        "{e}"
    );
    assert!(
        e.contains(
            "sfd: hint: -s NAME without -S looks in /run/sendfiled, where the service units put the socket"
        ),
        "{e}"
    );
    assert!(
        e.contains("give -S ROOT/DIR, or --socket ROOT/DIR/NAME"),
        "{e}"
    );

    let o = Command::new(SFD)
        .args(["cat", "x"])
        .env("SENDFILED_SOCKET", format!("/nonexistent/{name}"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(69));
    assert!(
        stderr(&o).contains("hint: the socket path came from $SENDFILED_SOCKET"),
        "{}",
        stderr(&o)
    );
}

/// The daemon dies in the middle of a send that moved data but reported no
/// progress yet (reports come in steps of at least 1 MiB): sfd says it
/// failed and gives no byte count it does not know.
#[test]
fn a_send_cut_short_gives_no_misleading_count() {
    let mut d = Daemon::start();
    d.put("big", &body(8 << 20));
    let dst = d.dir.path().join("dst.sock");
    let listener = UnixListener::bind(&dst).unwrap();
    let mut child = d
        .sfd_cmd(&["send", "big", "--to", &format!("unix:{}", dst.display())])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let (mut conn, _) = listener.accept().unwrap();
    // Some data arrived: the transfer is under way. Then the daemon goes,
    // the destination being left undrained.
    let mut first = [0u8; 4096];
    conn.read_exact(&mut first).unwrap();
    // SAFETY: signalling our own child by its pid.
    unsafe { libc::kill(d.child.id() as libc::pid_t, libc::SIGKILL) };
    d.child.wait().unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains(": failed: the daemon closed the status channel"),
        "{err}"
    );
    assert!(
        err.contains("how much reached the destination is unknown"),
        "{err}"
    );
    assert!(!err.contains(" 0 bytes"), "{err}");
}

/// `sfd --completions SHELL` prints a script generated from the parser;
/// an unknown shell is a usage error.
#[test]
fn completions_come_from_the_parser() {
    for sh in ["bash", "zsh", "fish"] {
        let o = Command::new(SFD)
            .args(["--completions", sh])
            .output()
            .unwrap();
        assert!(o.status.success(), "{sh}: {}", stderr(&o));
        let s = stdout(&o);
        for want in [
            "cat", "send", "stat", "ping", "socket", "timeout", "sockdir",
        ] {
            assert!(s.contains(want), "{sh}: no {want} in\n{s}");
        }
    }
    let o = Command::new(SFD)
        .args(["--completions", "csh"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
}
