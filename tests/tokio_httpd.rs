//! examples/tokio_httpd.rs end to end, in both body modes: status lines,
//! headers, bodies byte-exact, keep-alive, and the statuses mapped from the
//! daemon's errno. Rule: each test runs its own daemon and its own example
//! process on a free port, and kills both at the end; waits are bounded
//! reads, never sleeps.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::{eventually, pattern, Daemon, WAIT};
use sendfiled_client::Range;

/// The example's binary: cargo builds examples for `cargo test`; a run of
/// this test alone (`--test tokio_httpd`) builds it first.
fn example_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap();
    let bin = profile_dir.join("examples").join("tokio_httpd");
    if !bin.is_file() {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--example", "tokio_httpd"]);
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        assert!(cmd.status().unwrap().success(), "building the example");
    }
    bin
}

struct Httpd {
    child: Child,
    addr: String,
}

impl Httpd {
    /// The example serving `d`'s root through `d`, bodies by `mode`.
    fn start(d: &Daemon, mode: &str) -> Httpd {
        let root = d.root().to_str().unwrap();
        Httpd::start_args(&[
            "--root",
            root,
            "--body",
            mode,
            "--sockdir",
            root,
            "--name",
            &d.name,
        ])
    }

    fn start_args(args: &[&str]) -> Httpd {
        Httpd::start_env(args, &[])
    }

    /// With every body through the daemon (`SENDFILED_INLINE=0`): for
    /// what only the daemon answers, such as its `-n` limit.
    fn start_daemon_only(d: &Daemon) -> Httpd {
        let root = d.root().to_str().unwrap();
        Httpd::start_env(
            &[
                "--root",
                root,
                "--body",
                "sendfiled",
                "--sockdir",
                root,
                "--name",
                &d.name,
            ],
            &[("SENDFILED_INLINE", "0")],
        )
    }

    fn start_env(args: &[&str], env: &[(&str, &str)]) -> Httpd {
        let mut child = Command::new(example_bin())
            .args(args)
            .envs(env.iter().copied())
            .args(["--listen", "127.0.0.1:0", "--threads", "2"])
            // The daemon it may spawn runs as this user, root on CI: the
            // explicit allowance, here rather than left to the caller.
            .env("SENDFILED_ALLOW_ROOT", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the example");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("example said {line:?}"))
            .trim()
            .to_owned();
        Httpd { child, addr }
    }

    fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(&self.addr).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        s
    }
}

impl Drop for Httpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `req` and reads one response (a body of `Content-Length` bytes
/// unless `head`).
fn exchange(s: &mut TcpStream, req: &str, head: bool) -> Response {
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        let n = s.read(&mut byte).unwrap_or_else(|e| panic!("{req:?}: {e}"));
        assert_eq!(n, 1, "{req:?}: connection closed in a head");
        raw.push(byte[0]);
    }
    let text = String::from_utf8(raw).unwrap();
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap();
    assert!(status_line.starts_with("HTTP/1.1 "), "{status_line}");
    let status = status_line[9..12].parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.to_owned(), v.trim().to_owned())
        })
        .collect();
    let mut r = Response {
        status,
        headers,
        body: Vec::new(),
    };
    let len: usize = r.header("content-length").unwrap().parse().unwrap();
    if !head {
        r.body = vec![0u8; len];
        s.read_exact(&mut r.body).unwrap();
    }
    r
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n")
}

/// Sets a file's modification time (seconds since the epoch).
fn set_mtime(p: &Path, secs: i64) {
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
    let t = libc::timespec {
        tv_sec: secs as libc::time_t,
        tv_nsec: 0,
    };
    // SAFETY: c is NUL-terminated; times points at two valid timespecs.
    let r = unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), [t, t].as_ptr(), 0) };
    assert_eq!(r, 0);
}

/// Whether the server closed the connection (end of file within WAIT).
fn closed(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 1];
    matches!(s.read(&mut b), Ok(0))
}

const MODES: [&str; 2] = ["sendfiled", "tokio-fs"];

#[test]
fn serves_byte_exact_bodies_with_headers_over_keep_alive() {
    let d = Daemon::start();
    let small = pattern(4096);
    let big = pattern(3 << 20);
    let p = d.write("a/small.bin", &small);
    set_mtime(&p, 784_111_777);
    d.write("big.bin", &big);
    d.write("index.html", b"<p>hi</p>\n");
    d.write("a/index.html", b"a's index\n");
    d.write("empty.txt", b"");
    for mode in MODES {
        let h = Httpd::start(&d, mode);
        let mut s = h.connect();
        // Several requests on one connection, errors among them.
        let r = exchange(&mut s, &get("/a/small.bin"), false);
        assert_eq!(r.status, 200, "{mode}");
        assert!(r.body == small, "{mode}: small body");
        assert_eq!(r.header("content-length"), Some("4096"));
        assert_eq!(
            r.header("last-modified"),
            Some("Sun, 06 Nov 1994 08:49:37 GMT")
        );
        assert_eq!(r.header("content-type"), Some("application/octet-stream"));
        assert!(r.header("date").is_some_and(|v| v.ends_with(" GMT")));
        assert_eq!(r.header("connection"), None);

        let r = exchange(&mut s, &get("/big.bin"), false);
        assert_eq!(r.status, 200);
        assert_eq!(r.body.len(), big.len(), "{mode}");
        assert!(r.body == big, "{mode}: big body");

        let r = exchange(&mut s, "HEAD /big.bin HTTP/1.1\r\n\r\n", true);
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-length"), Some(&*big.len().to_string()));

        let r = exchange(&mut s, &get("/missing"), false);
        assert_eq!(r.status, 404, "{mode}");
        assert_eq!(r.body, b"404 Not Found\n");

        let r = exchange(&mut s, &get("/"), false);
        assert_eq!((r.status, &r.body[..]), (200, &b"<p>hi</p>\n"[..]));
        assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
        let r = exchange(&mut s, &get("/a/"), false);
        assert_eq!(r.body, b"a's index\n");
        let r = exchange(&mut s, &get("/empty.txt"), false);
        assert_eq!((r.status, r.body.len()), (200, 0));
        assert_eq!(r.header("content-length"), Some("0"));

        // Pipelined: two requests in one write, two responses in order.
        s.write_all(format!("{}{}", get("/a/small.bin"), get("/index.html")).as_bytes())
            .unwrap();
        let r = exchange(&mut s, "", false);
        assert!(r.body == small);
        let r = exchange(&mut s, "", false);
        assert_eq!(r.body, b"<p>hi</p>\n");

        // Connection: close is honoured after the response.
        let r = exchange(
            &mut s,
            "GET /index.html HTTP/1.1\r\nConnection: close\r\n\r\n",
            false,
        );
        assert_eq!(r.header("connection"), Some("close"));
        assert!(closed(&mut s), "{mode}: still open after Connection: close");

        // HTTP/1.0 closes unless asked to keep alive.
        let mut s = h.connect();
        let r = exchange(&mut s, "GET /index.html HTTP/1.0\r\n\r\n", false);
        assert_eq!(r.status, 200);
        assert!(closed(&mut s));
        let mut s = h.connect();
        let req = "GET /index.html HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
        let r = exchange(&mut s, req, false);
        assert_eq!(r.header("connection"), Some("keep-alive"));
        let r = exchange(&mut s, req, false);
        assert_eq!(r.status, 200);
    }
    // The last body may have gone from the example's own process (inline
    // first), with the daemon writing its completion a moment later.
    assert!(
        eventually(|| d.client().server_status(WAIT).unwrap().live == 0),
        "every transfer ends"
    );
}

#[test]
fn statuses_follow_the_errno_and_the_request() {
    let d = Daemon::start_with(&["-n", "1", "-t", "3600000"]);
    d.write("dir/f.txt", b"x");
    std::os::unix::fs::symlink("/etc", d.root().join("out")).unwrap();
    for mode in MODES {
        let h = Httpd::start(&d, mode);
        let mut s = h.connect();
        for (req, want) in [
            (get("/nothing-here"), 404),
            (get("/dir"), 404), // a directory: EINVAL
            (get("/dir/f.txt/x"), 404),
            (get("/dir/../dir/f.txt"), 403),
            ("HEAD /missing HTTP/1.1\r\n\r\n".to_owned(), 404),
        ] {
            let head = req.starts_with("HEAD");
            let r = exchange(&mut s, &req, head);
            assert_eq!(r.status, want, "{mode}: {req:?}");
            if head {
                assert_eq!(r.header("content-length"), Some("14"));
            }
        }
        let r = exchange(&mut s, "POST /dir/f.txt HTTP/1.1\r\n\r\n", false);
        assert_eq!(r.status, 405);
        assert_eq!(r.header("allow"), Some("GET, HEAD"));
        // Refusals of well-formed requests keep the connection.
        let r = exchange(&mut s, &get("/dir/f.txt"), false);
        assert_eq!((r.status, &r.body[..]), (200, &b"x"[..]), "{mode}");
        // A malformed head ends it.
        assert_eq!(exchange(&mut s, "nonsense\r\n\r\n", false).status, 400);
        assert!(closed(&mut s));
    }

    // Only the daemon confines paths beneath the root: a symlink out of it
    // is its EACCES, a 403.
    let h = Httpd::start(&d, "sendfiled");
    let mut s = h.connect();
    assert_eq!(exchange(&mut s, &get("/out/passwd"), false).status, 403);
    // The daemon's one transfer slot (-n 1) held by another client: an
    // open held in the example's own process (inline first) does not need
    // a slot, and is served.
    let other = d.client().daemon_only();
    let held = other.open("dir/f.txt", Range::WHOLE).unwrap();
    let Some(sendfiled_client::Response::FileInfo(fi)) = held.recv_timeout(WAIT).unwrap() else {
        panic!("no file info for the held open file");
    };
    if sendfiled_client::inline::in_effect() {
        let r = exchange(&mut s, &get("/dir/f.txt"), false);
        assert_eq!(
            (r.status, &r.body[..]),
            (200, &b"x"[..]),
            "held in the example"
        );
    }
    // Through the daemon: EMFILE, a 503 with Retry-After, and the
    // connection stays usable.
    let h = Httpd::start_daemon_only(&d);
    let mut s = h.connect();
    let r = exchange(&mut s, &get("/dir/f.txt"), false);
    assert_eq!(r.status, 503);
    assert_eq!(r.header("retry-after"), Some("1"));
    other.cancel(fi.txnid as u64).unwrap();
    assert!(common::eventually(|| d.live() == 0));
    let r = exchange(&mut s, &get("/dir/f.txt"), false);
    assert_eq!((r.status, &r.body[..]), (200, &b"x"[..]));
}

#[test]
fn starts_and_stops_its_own_daemon() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("f.txt"), b"served\n").unwrap();
    let rootp = root.path().to_str().unwrap();
    let mut h = Httpd::start_args(&["--root", rootp, "--daemon", common::daemon_bin()]);
    let mut s = h.connect();
    let r = exchange(&mut s, &get("/f.txt"), false);
    assert_eq!((r.status, &r.body[..]), (200, &b"served\n"[..]));
    let sock = root.path().join(format!("tokio-httpd-{}", h.child.id()));
    assert!(sock.exists(), "the daemon's socket");
    // SAFETY: signalling our own child.
    assert_eq!(unsafe { libc::kill(h.child.id() as i32, libc::SIGTERM) }, 0);
    let status = h.child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(
        !sock.exists(),
        "the daemon was stopped and removed its socket"
    );
}
