//! Socket activation as systemd does it, without systemd: the test binds the
//! request socket, hands it to the daemon as descriptor 3 with `LISTEN_PID`
//! set to the daemon's own pid and `LISTEN_FDS=1`, and then talks to the
//! daemon through that socket.

use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

mod common;

use common::{first_line, spawn_activated};
use sendfiled_client::client::Client;
use sendfiled_client::protocol::Range;

fn stop(child: &mut Child) -> std::process::ExitStatus {
    // SAFETY: signalling our own child by its pid.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    child.wait().expect("wait for the daemon")
}

fn stderr_of(child: &mut Child) -> String {
    let mut s = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut s);
    }
    s
}

#[test]
fn daemon_serves_on_the_socket_it_was_handed() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let body: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(root.join("hello.bin"), &body).unwrap();

    // Outside the root, as /run/sendfiled/NAME is for a unit.
    let sock_path = dir.path().join("activated.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();

    let mut child = spawn_activated(sock.as_raw_fd(), "1", &root, &[]);
    drop(sock);
    let line = first_line(&mut child);
    assert_eq!(
        line.trim(),
        format!("ready {}", child.id()),
        "daemon said {line:?}"
    );

    // Served by the activated daemon itself (the attempt off), so that its
    // counters say it did.
    let client = Client::connect_path(&sock_path).unwrap().daemon_only();
    let mut data = client.read("hello.bin", Range::WHOLE).unwrap();
    let info = data.file_info().unwrap();
    assert_eq!(info.size, body.len());
    let mut got = Vec::new();
    data.read_to_end(&mut got).unwrap();
    assert_eq!(got, body);

    let stat = client.server_status(Duration::from_secs(10)).unwrap();
    assert_eq!(stat.completed, 1);

    let status = stop(&mut child);
    assert!(status.success(), "clean shutdown, got {status:?}");
    // The daemon did not create the socket file, so it leaves it alone.
    assert!(
        sock_path.exists(),
        "an inherited socket's file is the manager's"
    );
    // It never bound a socket of its own under the root.
    assert!(!root.join("activated").exists());
    let log = stderr_of(&mut child);
    assert!(
        log.contains("service manager"),
        "log names the source: {log}"
    );
}

#[test]
fn listen_pid_of_another_process_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("f"), b"x").unwrap();
    let mut child = Command::new(common::daemon_bin())
        .args(["-s", "own", "-r"])
        .arg(&root)
        .args(["-p", "--log", "none"])
        .env("SENDFILED_ALLOW_ROOT", "1")
        .env("LISTEN_PID", "1")
        .env("LISTEN_FDS", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let line = first_line(&mut child);
    assert!(line.starts_with("ready "), "daemon said {line:?}");
    // It bound its own socket, as without activation.
    let client = Client::connect_path(&root.join("own")).unwrap();
    assert_eq!(
        client.server_status(Duration::from_secs(10)).unwrap().live,
        0
    );
    assert!(stop(&mut child).success());
    assert!(!root.join("own").exists(), "its own socket file is removed");
}

#[test]
fn a_stream_socket_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _b) = UnixStream::pair().unwrap();
    let mut child = spawn_activated(a.as_raw_fd(), "1", dir.path(), &[]);
    let line = first_line(&mut child);
    assert!(
        line.starts_with(&format!("error {} ", libc::EPROTOTYPE)),
        "daemon said {line:?}"
    );
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(libc::EPROTOTYPE));
}

#[test]
fn listen_fds_without_a_descriptor_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let sock = UnixDatagram::unbound().unwrap();
    let mut child = spawn_activated(sock.as_raw_fd(), "0", dir.path(), &[]);
    let line = first_line(&mut child);
    assert!(
        line.starts_with(&format!("error {} ", libc::EBADF)),
        "daemon said {line:?}"
    );
    assert_eq!(child.wait().unwrap().code(), Some(libc::EBADF));
}

/// Sends a Read of `path` on `sock` (connected to the daemon's socket) and
/// returns the read end of its reply pipe.
#[cfg(target_os = "linux")]
fn queue_read(sock: &UnixDatagram, path: &str) -> std::os::fd::OwnedFd {
    use std::os::fd::AsFd;
    let (r, w) = sendfiled_core::sys::pipe().unwrap();
    let req = sendfiled_client::protocol::Request::Read {
        path: std::ffi::CString::new(path).unwrap(),
        range: Range::WHOLE,
    };
    let bytes = req.encode().unwrap();
    sendfiled_core::sys::send_with_fds(sock.as_fd(), &bytes, &[w.as_fd()]).unwrap();
    r
}

/// The first message on a reply pipe (bounded wait).
#[cfg(target_os = "linux")]
fn first_reply(r: &std::os::fd::OwnedFd) -> sendfiled_client::protocol::Response {
    use std::os::fd::AsFd;
    assert!(
        sendfiled_core::sys::wait_readable(r.as_fd(), Duration::from_secs(20)).unwrap(),
        "no reply"
    );
    let mut buf = [0u8; 64];
    let n = sendfiled_core::sys::read(r.as_fd(), &mut buf).unwrap();
    sendfiled_client::protocol::Response::decode(&buf[..n]).expect("a reply")
}

/// Issue 23: a request that waited in the manager's socket before the
/// socket asked for credentials arrives with none (Linux reports pid 0,
/// uid 65534). It is refused with `EACCES`, never served as uid 65534;
/// the daemon asks for credentials at once, so the next request is served
/// as its sender. With `--allow-uid 0`, that sender (root) is allowed.
#[cfg(target_os = "linux")]
#[test]
fn a_request_queued_before_credentials_were_asked_for_is_refused_not_taken_for_nobody() {
    use sendfiled_client::protocol::{Response, SFD_FILE_INFO};
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("f"), b"queued").unwrap();
    let sock_path = dir.path().join("activated.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    let client = UnixDatagram::unbound().unwrap();
    client.connect(&sock_path).unwrap();
    let early = queue_read(&client, "f");
    let mut child = spawn_activated(sock.as_raw_fd(), "1", &root, &["--allow-uid", "0"]);
    drop(sock);
    let line = first_line(&mut child);
    assert!(line.starts_with("ready"), "daemon said {line:?}");
    assert_eq!(
        first_reply(&early),
        Response::Error {
            cmd: SFD_FILE_INFO,
            errno: libc::EACCES
        },
        "a request without credentials is refused"
    );
    let late = queue_read(&client, "f");
    assert!(
        matches!(first_reply(&late), Response::FileInfo(i) if i.size == 6),
        "a request sent once the socket asks for credentials is served"
    );
    assert!(stop(&mut child).success());
    let log = stderr_of(&mut child);
    assert!(log.contains("did not ask for credentials"), "{log}");
    assert!(log.contains("carries no credentials"), "{log}");
}

/// With `PassCredentials=yes` (the unit's setting: `SO_PASSCRED` from the
/// socket's creation) a queued request carries its sender's credentials
/// and is served, allow-list and all.
#[cfg(target_os = "linux")]
#[test]
fn with_pass_credentials_a_queued_request_is_served_as_its_sender() {
    use std::os::fd::AsFd;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("f"), b"queued").unwrap();
    let sock_path = dir.path().join("activated.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sendfiled_core::sys::enable_passcred(sock.as_fd()).unwrap();
    let client = UnixDatagram::unbound().unwrap();
    client.connect(&sock_path).unwrap();
    let early = queue_read(&client, "f");
    let mut child = spawn_activated(sock.as_raw_fd(), "1", &root, &["--allow-uid", "0"]);
    drop(sock);
    let line = first_line(&mut child);
    assert!(line.starts_with("ready"), "daemon said {line:?}");
    assert!(
        matches!(first_reply(&early), sendfiled_client::protocol::Response::FileInfo(i) if i.size == 6),
        "the queued request is served"
    );
    assert!(stop(&mut child).success());
    let log = stderr_of(&mut child);
    assert!(!log.contains("did not ask for credentials"), "{log}");
}
