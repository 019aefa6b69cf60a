//! Hostile clients (issue 13): what one client puts under ROOT or into its
//! requests must not change how the daemon treats everybody else, nor what
//! its log says.
//!
//! Each test runs in both passes of `ci/test.sh`: with the native Linux
//! paths and with `SENDFILED_FORCE_FALLBACK=1` (inherited by the daemon).
#![cfg(target_os = "linux")]

mod common;

use std::ffi::CString;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use common::*;
use sendfiled_client::client::Range;

#[path = "common/errno_table.rs"]
mod errno_table;

/// A filesystem mounted on a directory of the test's own, unmounted on drop.
struct Mount {
    at: PathBuf,
}

impl Mount {
    /// Mounts a small tmpfs on `at` (created); `None`, with the reason
    /// printed, where mounting is not possible (no privilege, no tmpfs).
    fn tmpfs(at: &Path) -> Option<Mount> {
        Mount::new(at, c"tmpfs", c"size=16m")
    }

    /// Mounts a procfs instance on `at`, like [`Mount::tmpfs`].
    fn proc(at: &Path) -> Option<Mount> {
        Mount::new(at, c"proc", c"")
    }

    fn new(at: &Path, fstype: &std::ffi::CStr, data: &std::ffi::CStr) -> Option<Mount> {
        std::fs::create_dir_all(at).expect("mount point");
        let target = CString::new(at.as_os_str().as_encoded_bytes()).expect("path");
        // SAFETY: NUL-terminated strings; data is the filesystem's options.
        let r = unsafe {
            libc::mount(
                c"sendfiled-test".as_ptr(),
                target.as_ptr(),
                fstype.as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                data.as_ptr().cast(),
            )
        };
        if r != 0 {
            eprintln!(
                "skipped: cannot mount {fstype:?} on {}: {}",
                at.display(),
                std::io::Error::last_os_error()
            );
            return None;
        }
        Some(Mount { at: at.to_owned() })
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if let Ok(c) = CString::new(self.at.as_os_str().as_encoded_bytes()) {
            // SAFETY: NUL-terminated path of the mount we made. MNT_DETACH:
            // a daemon still holding a file there must not keep it mounted.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

fn read_all(d: &Daemon, path: &str) -> Vec<u8> {
    let mut ch = d.client().read(path, Range::WHOLE).expect("request");
    ch.file_info().expect("file info");
    let mut got = Vec::new();
    ch.read_to_end(&mut got).expect("read");
    got
}

/// Whether the first page of `f` is in the page cache (`mincore`, which does
/// not read it in).
fn resident(f: &std::fs::File) -> bool {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
    // SAFETY: a fresh read-only shared mapping of one page of our file,
    // unmapped below; mincore writes one byte into vec.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            page,
            libc::PROT_READ,
            libc::MAP_SHARED,
            f.as_raw_fd(),
            0,
        );
        assert_ne!(p, libc::MAP_FAILED, "mmap");
        let mut vec = [0u8; 1];
        let r = libc::mincore(p, page, vec.as_mut_ptr());
        libc::munmap(p, page);
        assert_eq!(r, 0, "mincore");
        vec[0] & 1 == 1
    }
}

/// Drops the pages of the file at `path` from the cache; false if they
/// stay (a filesystem whose pages cannot be dropped).
fn make_cold(path: &Path) -> bool {
    let f = std::fs::File::open(path).expect("open");
    f.sync_all().expect("fsync");
    // SAFETY: plain advice on our own descriptor.
    let r = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    r == 0 && !resident(&f)
}

/// Row 5: a Read of a file on a filesystem without `RWF_NOWAIT` (tmpfs)
/// works, and the page-cache probe stays on for the other filesystem: a
/// Inline first never crosses a mount beneath the root (`RESOLVE_NO_XDEV`):
/// a file on a tmpfs mounted there is the daemon's, whole, while a file on
/// the root's own filesystem finishes in the client.
#[test]
fn a_mount_beneath_the_root_goes_to_the_daemon() {
    let d = Daemon::start();
    let Some(_mnt) = Mount::tmpfs(&d.root().join("mnt")) else {
        return;
    };
    let data = pattern(4096);
    std::fs::write(d.root().join("mnt/f"), &data).expect("write");
    d.write("here", &data);
    let c = d.client();
    let completed =
        |c: &sendfiled_client::client::Client| c.server_status(WAIT).expect("status").completed;
    let before = completed(&c);
    assert!(
        read_answer_with(&c, "mnt/f") == Ok(data.clone()),
        "byte-exact"
    );
    assert_eq!(
        completed(&c),
        before + 1,
        "the daemon read the mounted file"
    );
    assert!(read_answer_with(&c, "here") == Ok(data), "byte-exact");
    if sendfiled_client::inline::in_effect() {
        assert_eq!(
            completed(&c),
            before + 1,
            "the client read the other itself"
        );
    }
}

/// cold file there still goes to the disk threads (the daemon's debug line
/// for a probe miss) instead of being read on the loop.
#[test]
fn a_tmpfs_under_root_does_not_switch_the_cache_probe_off() {
    let d = Daemon::start();
    let Some(_mnt) = Mount::tmpfs(&d.root().join("shm")) else {
        return;
    };
    let data = pattern(300_000);
    std::fs::write(d.root().join("shm/f"), &data).expect("write");
    assert!(read_all(&d, "shm/f") == data, "tmpfs file byte-exact");
    const REFUSED: &str = "unsupported on the filesystem of device";
    if !d.log().contains(REFUSED) {
        eprintln!("note: tmpfs answers RWF_NOWAIT on this kernel; the refusal is not exercised");
    }
    assert!(
        !d.log().contains("unsupported by the kernel"),
        "one filesystem's refusal is not the kernel's: {}",
        d.log()
    );

    const MISS: &str = "page cache miss";
    assert!(!d.log().contains(MISS), "no miss yet: {}", d.log());
    // RWF_NOWAIT only promises not to wait: on a disk the host answers from
    // its own cache, a read of a just-dropped page may return the data at
    // once, and then no probe can miss. So cold Reads alternate with plain
    // RWF_NOWAIT reads of another dropped file. A probe miss passes. The
    // verdict against the probe is a count, not a rate: the daemon probes
    // at least the page the plain read does, so each miss is at least as
    // likely to be the probe's, and PLAIN_MISSES plain misses before any
    // probe miss happen about once in 2^16 with a working probe. Fewer
    // misses than that in all the tries is a note.
    const TRIES: usize = 200;
    const PLAIN_MISSES: usize = 16;
    let cold = pattern(1 << 20);
    let (probed, plain) = (d.root().join("cold"), d.root().join("plain"));
    std::fs::write(&probed, &cold).expect("write");
    std::fs::write(&plain, &cold).expect("write");
    let mut plain_misses = 0;
    for i in 0..TRIES {
        if !make_cold(&probed) || !make_cold(&plain) {
            if i == 0 {
                eprintln!("skipped: the root's filesystem keeps its pages; no cold file to probe");
                return;
            }
            // A page the last Read left referenced for a moment: next try.
            continue;
        }
        assert!(read_all(&d, "cold") == cold, "cold file byte-exact");
        if d.log().contains(MISS) {
            return;
        }
        if nowait_read_misses(&plain) {
            plain_misses += 1;
            assert!(
                plain_misses < PLAIN_MISSES,
                "{PLAIN_MISSES} plain RWF_NOWAIT reads missed and the daemon's probe never did: \
                 the probe is off for the root's filesystem: {}",
                d.log()
            );
            // The miss started a read: wait for it, or the next drop skips
            // the page still under I/O and it arrives after.
            let mut byte = [0u8; 1];
            let f = std::fs::File::open(&plain).expect("open");
            std::io::Read::read(&mut &f, &mut byte).expect("read");
        }
    }
    eprintln!(
        "note: {plain_misses} of {TRIES} RWF_NOWAIT reads of dropped pages missed here, and no \
         probe; the probe cannot be seen"
    );
}

/// Whether a one-byte `preadv2(RWF_NOWAIT)` of `path` at 0 says `EAGAIN`.
fn nowait_read_misses(path: &Path) -> bool {
    let f = std::fs::File::open(path).expect("open");
    let mut b = [0u8; 1];
    let iov = libc::iovec {
        iov_base: b.as_mut_ptr().cast(),
        iov_len: 1,
    };
    // SAFETY: iov points at one writable byte.
    let r = unsafe { libc::preadv2(f.as_raw_fd(), &iov, 1, 0, libc::RWF_NOWAIT) };
    r < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EAGAIN)
}

/// A daemon on a root that is a child of a private parent directory (which
/// holds `outside/`), native paths or the portable ones.
fn daemon_in_parent(fallback: bool) -> (tempfile::TempDir, Daemon) {
    let parent = tempfile::tempdir().expect("tempdir");
    let root = tempfile::Builder::new()
        .prefix("root")
        .tempdir_in(parent.path())
        .expect("root");
    let env = [("SENDFILED_FORCE_FALLBACK", if fallback { "1" } else { "0" })];
    let d = Daemon::start_in_env(root, &unique_name("hostile"), &[], &env).expect("daemon");
    (parent, d)
}

/// The daemon's answer to a Read of `path`: the data, or the errno.
fn read_answer(d: &Daemon, path: &str) -> Result<Vec<u8>, i32> {
    read_answer_with(&d.client(), path)
}

fn read_answer_with(c: &sendfiled_client::client::Client, path: &str) -> Result<Vec<u8>, i32> {
    let mut ch = match c.read(path, Range::WHOLE) {
        Ok(ch) => ch,
        Err(e) => return Err(e.raw_os_error().unwrap_or(0)),
    };
    match ch.file_info() {
        Ok(_) => {
            let mut got = Vec::new();
            ch.read_to_end(&mut got).expect("read");
            Ok(got)
        }
        Err(e) => Err(e.raw_os_error().unwrap_or(0)),
    }
}

/// The syscall a thread of this process is in (`/proc/self/task/TID/syscall`
/// starts with its number while it is blocked in one).
fn in_syscall(tid: libc::pid_t) -> Option<libc::c_long> {
    let s = std::fs::read_to_string(format!("/proc/self/task/{tid}/syscall")).ok()?;
    s.split_whitespace().next()?.parse().ok()
}

/// Row 9: a Read of a FIFO (directly or through a link) is `EINVAL` and the
/// FIFO is never opened: a writer blocked in `open` stays blocked, and a
/// non-blocking writer finds no reader.
fn fifo_is_never_opened(fallback: bool) {
    let (_parent, d) = daemon_in_parent(fallback);
    let fifo = d.root().join("fifo");
    let c = CString::new(fifo.as_os_str().as_encoded_bytes()).expect("path");
    // SAFETY: NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
    std::os::unix::fs::symlink("fifo", d.root().join("fifolink")).expect("symlink");

    // A writer blocked in open(O_WRONLY) until some reader opens the FIFO;
    // it says so on `done` when its open returns.
    let (done_r, done_w) = pipe();
    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    let wpath = c.clone();
    let writer = std::thread::spawn(move || {
        // SAFETY: gettid has no preconditions.
        tid_tx.send(unsafe { libc::gettid() }).expect("tid");
        // SAFETY: NUL-terminated path; the descriptor is closed below.
        let fd = unsafe { libc::open(wpath.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
        let _ = sendfiled_core::sys::write(std::os::fd::AsFd::as_fd(&done_w), b"x");
        if fd >= 0 {
            // SAFETY: our own descriptor.
            unsafe { libc::close(fd) };
        }
    });
    let tid = tid_rx.recv_timeout(WAIT).expect("writer tid");
    assert!(
        eventually(|| in_syscall(tid) == Some(libc::SYS_openat)),
        "the writer never blocked in openat"
    );

    for p in ["fifo", "fifolink", "/fifo"] {
        assert_eq!(read_answer(&d, p), Err(libc::EINVAL), "{p}");
    }
    let (r, w) = pipe();
    let st = d
        .client()
        .send("fifo", std::os::fd::AsFd::as_fd(&w), Range::WHOLE)
        .expect("send");
    assert_eq!(
        st.recv_timeout(WAIT).expect("status"),
        Some(sendfiled_client::client::Response::Error {
            cmd: sendfiled_client::protocol::SFD_FILE_INFO,
            errno: libc::EINVAL
        })
    );
    drop((r, w));

    // Nobody has it open for reading.
    // SAFETY: NUL-terminated path.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_WRONLY | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    };
    let e = std::io::Error::last_os_error();
    assert!(fd < 0, "a reader holds the FIFO open");
    assert_eq!(e.raw_os_error(), Some(libc::ENXIO));
    // The writer is still in its open.
    assert!(
        !sendfiled_core::sys::wait_readable(
            std::os::fd::AsFd::as_fd(&done_r),
            std::time::Duration::from_millis(200)
        )
        .expect("poll"),
        "the blocked writer was released"
    );
    assert_eq!(in_syscall(tid), Some(libc::SYS_openat));

    // Release it ourselves: open the read end.
    let reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .expect("open read end");
    assert!(
        sendfiled_core::sys::wait_readable(std::os::fd::AsFd::as_fd(&done_r), WAIT).expect("poll"),
        "writer released by our reader"
    );
    writer.join().expect("writer");
    drop(reader);
    // Still serving.
    d.write("file", b"ok");
    assert_eq!(read_answer(&d, "file"), Ok(b"ok".to_vec()));
}

#[test]
fn fifo_is_never_opened_openat2() {
    fifo_is_never_opened(false);
}

#[test]
fn fifo_is_never_opened_walk() {
    fifo_is_never_opened(true);
}

/// Row 11: the daemon answers the table of tests/common/errno_table.rs (the
/// one backend-linux's tests run through `openat2` and the walk directly)
/// with the same errnos, escapes as `EACCES`, with either implementation.
fn the_daemon_answers_the_table(fallback: bool) {
    let (parent, d) = daemon_in_parent(fallback);
    errno_table::build(d.root(), &parent.path().join("outside"));
    let mut cases = errno_table::cases();
    // /proc's magic links, from a procfs mounted inside the root.
    let proc_mount = Mount::proc(&d.root().join("proc"));
    if proc_mount.is_some() {
        for p in [
            "proc/self/root",
            "proc/self/root/etc/passwd",
            "proc/self/cwd",
        ] {
            cases.push((p.to_string(), errno_table::Expect::Errno(libc::EXDEV)));
        }
    }
    let mut wrong = Vec::new();
    // Through the daemon alone, and inline first (the client's attempt
    // answers what it can, the daemon the rest): the same answers.
    let clients = [
        ("daemon only", d.client().daemon_only()),
        ("inline first", d.client()),
    ];
    for ((p, want), (how, c)) in cases
        .iter()
        .flat_map(|case| clients.iter().map(move |c| (case, c)))
    {
        let want = match want {
            errno_table::Expect::Data(b) => Ok(b.to_vec()),
            errno_table::Expect::Errno(libc::EXDEV) => Err(libc::EACCES),
            errno_table::Expect::Errno(e) => Err(*e),
        };
        let got = read_answer_with(c, p);
        // Nothing after the slashes: the server may answer EINVAL before
        // the backend is asked.
        let empty = p.bytes().all(|b| b == b'/');
        let ok = got == want || (empty && got == Err(libc::EINVAL));
        if !ok {
            let shown: String = p.chars().take(60).collect();
            wrong.push(format!("{shown:?} ({how}): want {want:?}, got {got:?}"));
        }
    }
    drop(proc_mount);
    assert!(wrong.is_empty(), "disagreements:\n{}", wrong.join("\n"));
    assert!(
        !d.log().contains("SECRET"),
        "nothing from outside in the log either"
    );
}

#[test]
fn the_daemon_answers_the_table_openat2() {
    the_daemon_answers_the_table(false);
}

#[test]
fn the_daemon_answers_the_table_walk() {
    the_daemon_answers_the_table(true);
}

/// Row 7: a path holding a newline cannot forge a log line: the daemon's
/// log escapes control characters in what clients sent.
#[test]
fn a_newline_in_a_path_does_not_forge_a_log_line() {
    let d = Daemon::start();
    let forged = "FORGED sendfiled[1]: ERROR: root password is hunter2";
    for p in [
        format!("missing\n{forged}"),
        format!("missing\r\n{forged}"),
        format!("dir/\n{forged}/x"),
    ] {
        assert_eq!(read_answer(&d, &p), Err(libc::ENOENT), "{p:?}");
    }
    // The refusal is logged once per request (well under the rate limit),
    // so the escaped form is there to be seen.
    let log = d.log();
    assert!(
        log.contains(&format!("missing\\n{forged}")),
        "escaped path in the log: {log}"
    );
    assert!(log.contains(&format!("missing\\r\\n{forged}")), "{log}");
    for line in log.lines() {
        assert!(!line.starts_with("FORGED"), "forged line: {line:?}");
        assert!(!line.contains('\r'), "carriage return in {line:?}");
    }
}

/// Row 7: a flood of malformed datagrams costs a bounded number of log
/// lines, the rest counted in a "suppressed" line, and the daemon still
/// serves.
#[test]
fn a_flood_of_bad_requests_is_rate_limited_in_the_log() {
    let mut d = Daemon::start();
    let s = std::os::unix::net::UnixDatagram::unbound().expect("socket");
    s.connect(d.socket()).expect("connect");
    const FLOOD: usize = 5000;
    let started = std::time::Instant::now();
    for i in 0..FLOOD {
        // A bad version byte: refused by the decoder, logged as a warning.
        let mut junk = vec![0xee; 48];
        junk[2..10].copy_from_slice(&(i as u64).to_le_bytes());
        s.send(&junk).expect("send");
    }
    let data = pattern(100_000);
    d.write("good", &data);
    assert!(read_all(&d, "good") == data, "still serving, byte-exact");
    let secs = started.elapsed().as_secs() as usize;
    assert!(d.stop().success(), "clean exit");

    let log = d.log();
    let bad = log.lines().filter(|l| l.contains("bad request")).count();
    // BURST (10) lines of one cause per second of flood, and a window more.
    let bound = 10 * (secs + 2);
    assert!(
        bad <= bound,
        "{bad} lines for {FLOOD} bad requests in {secs} s (bound {bound})"
    );
    assert!(bad >= 1, "the flood is visible: {log}");
    let counted: u64 = log
        .lines()
        .filter(|l| l.contains("similar lines suppressed") || l.contains("similar line suppressed"))
        .filter_map(|l| l.split(": ").nth(2)?.split(' ').next()?.parse::<u64>().ok())
        .sum();
    assert!(counted > 0, "a suppressed count: {log}");
    assert_eq!(
        counted as usize + bad,
        FLOOD,
        "every bad request is either logged or counted"
    );
    assert!(
        log.lines().count() < bound + 50,
        "{} lines",
        log.lines().count()
    );
}

// ----- row 6: datagram destinations -----

fn refused_einval(st: &sendfiled_client::client::StatusChannel) {
    use sendfiled_client::client::Response;
    use sendfiled_client::protocol::SFD_FILE_INFO;
    assert_eq!(
        st.recv_timeout(WAIT).expect("status"),
        Some(Response::Error {
            cmd: SFD_FILE_INFO,
            errno: libc::EINVAL
        })
    );
}

#[test]
fn datagram_and_seqpacket_destinations_are_refused_before_any_byte() {
    use std::os::fd::{AsFd, FromRawFd, OwnedFd};
    use std::os::unix::net::UnixDatagram;
    let d = Daemon::start();
    d.write("f", b"0123456789");
    let c = d.client();
    let hdtr = sendfiled_client::client::HeaderTrailer {
        header: b"HEAD".to_vec(),
        trailer: Vec::new(),
    };
    // A datagram pair: its peer must get nothing at all.
    let (a, b) = UnixDatagram::pair().expect("pair");
    let st = c
        .send_hdtr("f", a.as_fd(), Range::WHOLE, hdtr.clone())
        .expect("send");
    refused_einval(&st);
    b.set_nonblocking(true).expect("nonblocking");
    let mut buf = [0u8; 64];
    assert_eq!(
        b.recv(&mut buf).expect_err("nothing sent").kind(),
        std::io::ErrorKind::WouldBlock
    );
    // A seqpacket pair, the same.
    let mut sv = [0; 2];
    // SAFETY: sv has room for the two descriptors socketpair writes.
    let r = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            sv.as_mut_ptr(),
        )
    };
    assert_eq!(r, 0, "socketpair");
    // SAFETY: socketpair returned two new descriptors we own.
    let (p, q) = unsafe { (OwnedFd::from_raw_fd(sv[0]), OwnedFd::from_raw_fd(sv[1])) };
    let st = c.send("f", p.as_fd(), Range::WHOLE).expect("send");
    refused_einval(&st);
    assert!(
        !sendfiled_core::sys::wait_readable(q.as_fd(), std::time::Duration::from_millis(100))
            .expect("poll"),
        "nothing sent to the seqpacket peer"
    );
}

#[test]
fn a_destination_connected_to_the_daemons_own_socket_cannot_speak_for_the_daemon() {
    use sendfiled_client::client::Response;
    use sendfiled_client::protocol::Request;
    use std::os::fd::AsFd;
    let d = Daemon::start();
    d.write("f", b"victim data");
    let c = d.client();
    // The victim's open file, waiting for its Send Open.
    let victim = c.open("f", Range::WHOLE).expect("open");
    let Some(Response::FileInfo(info)) = victim.recv_timeout(WAIT).expect("info") else {
        panic!("no info")
    };
    // The attack: a Send whose header is a Cancel of the victim's transfer,
    // to a datagram socket connected to the daemon's own request socket.
    let spoof = std::os::unix::net::UnixDatagram::unbound().expect("socket");
    spoof.connect(d.socket()).expect("connect");
    let cancel = Request::Cancel {
        txnid: info.txnid as u64,
    }
    .encode()
    .expect("encode");
    let hdtr = sendfiled_client::client::HeaderTrailer {
        header: cancel,
        trailer: Vec::new(),
    };
    let st = c
        .send_hdtr("f", spoof.as_fd(), Range::WHOLE, hdtr)
        .expect("send");
    refused_einval(&st);
    // The victim's file is still there to send.
    let (r, w) = pipe();
    c.send_open(info.txnid as u64, w.as_fd())
        .expect("send-open");
    drop(w);
    assert_eq!(read_to_end(r.as_fd()), b"victim data");
    assert_eq!(
        victim.recv_timeout(WAIT).expect("completion"),
        Some(Response::Complete)
    );
}

// ----- row 8: open-file timers -----

#[test]
fn open_file_timers_are_dropped_with_their_transfers() {
    use sendfiled_client::client::Response;
    use std::os::fd::AsFd;
    // A long open-file timeout: without compaction every Open's deadline
    // would stay for a minute after its Send Open.
    let d = Daemon::start_with(&["-t", "60000"]);
    d.write("f", b"x");
    let c = d.client();
    const ROUNDS: usize = 10;
    const BATCH: usize = 100;
    let rss_kib = |pid: i32| -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
        s.lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    };
    let mut first_rss = 0;
    for round in 0..ROUNDS {
        let chans: Vec<_> = (0..BATCH)
            .map(|_| c.open("f", Range::WHOLE).expect("open"))
            .collect();
        let mut dests = Vec::new();
        for ch in &chans {
            let Some(Response::FileInfo(i)) = ch.recv_timeout(WAIT).expect("info") else {
                panic!("no info")
            };
            let (r, w) = pipe();
            c.send_open(i.txnid as u64, w.as_fd()).expect("send-open");
            dests.push(r);
        }
        for (ch, r) in chans.iter().zip(&dests) {
            assert_eq!(
                ch.recv_timeout(WAIT).expect("done"),
                Some(Response::Complete)
            );
            assert!(sendfiled_core::sys::wait_readable(r.as_fd(), WAIT).expect("poll"));
        }
        if round == 0 {
            first_rss = rss_kib(d.pid);
        }
    }
    assert!(eventually(|| d.live() == 0));
    // 1,000 opens sent at once, each leaving a deadline a minute away: the
    // stale ones are dropped as they pile up, so what is held follows the
    // live transfers (the bound itself is timers.rs's unit test).
    let log = d.log();
    let compactions = log
        .lines()
        .filter(|l| l.contains("open-file timers compacted"))
        .count();
    assert!(compactions > 0, "no compaction in the log");
    let held: Vec<usize> = log
        .lines()
        .filter_map(|l| l.split("stale, ").nth(1)?.split(' ').next()?.parse().ok())
        .collect();
    assert!(
        held.iter().all(|&h| h <= 2 * BATCH + 64),
        "timers held beyond twice the live transfers: {held:?}"
    );
    let grew = rss_kib(d.pid).saturating_sub(first_rss);
    assert!(
        grew < 4096,
        "RSS grew {grew} KiB over {} opens",
        ROUNDS * BATCH
    );
}

// ----- row 10: status replies go to pipes only -----

#[test]
fn a_status_reply_goes_to_a_pipe_and_nowhere_else() {
    use sendfiled_client::protocol::Request;
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;
    let d = Daemon::start();
    let c = d.client();
    let flags = |fd: std::os::fd::BorrowedFd<'_>| {
        // SAFETY: plain fcntl on a descriptor we hold.
        unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) }
    };
    // A stream socket as the reply channel: nothing written, its flags
    // untouched, the daemon's copy closed.
    let (mine, theirs) = UnixStream::pair().expect("pair");
    let before = flags(theirs.as_fd());
    c.send_request(&Request::Status, &[theirs.as_fd()])
        .expect("status request");
    // A Read after it is answered after it: the status request was handled.
    d.write("f", b"x");
    assert_eq!(read_all(&d, "f"), b"x");
    assert_eq!(flags(theirs.as_fd()), before, "O_NONBLOCK left alone");
    drop(theirs);
    assert!(sendfiled_core::sys::wait_readable(mine.as_fd(), WAIT).expect("poll"));
    let mut buf = [0u8; 64];
    assert_eq!(
        sendfiled_core::sys::read(mine.as_fd(), &mut buf).expect("read"),
        0,
        "no reply bytes on a socket"
    );
    // A regular file: stays empty.
    let file = tempfile::tempfile().expect("tempfile");
    c.send_request(&Request::Status, &[file.as_fd()])
        .expect("status request");
    assert_eq!(read_all(&d, "f"), b"x");
    assert_eq!(
        file.metadata().expect("stat").len(),
        0,
        "nothing written to a file"
    );
    assert!(
        d.log().contains("reply channel is not a pipe"),
        "one log line says why"
    );
    // A pipe still gets its answer.
    assert_eq!(c.server_status(WAIT).expect("status").live, 0);
}
