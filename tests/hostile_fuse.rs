//! Hostile clients: a file of a FUSE filesystem whose daemon has stopped
//! answering, passed where a pipe, a socket or a handed-on file belongs.
//! `fstat(2)` of such a file asks the FUSE daemon for its attributes when
//! they have expired, and waits for the answer without bound: on the
//! daemon's loop that stalled every client. The loop learns a passed
//! descriptor's type and identity without asking (`statx` with
//! `AT_STATX_DONT_SYNC`, `sendfiled_sys::stat_cached`).
//!
//! The test is the FUSE daemon itself (a few opcodes of the protocol of
//! `<linux/fuse.h>`, answered on `/dev/fuse`): one regular file `f` whose
//! attributes never stay valid, so that every `fstat` of it asks again;
//! once the file is open, `getattr` of it goes unanswered. The judge is a
//! victim's Send beside the attack. Needs root (`mount(2)` of a FUSE
//! filesystem) and `/dev/fuse`; says so and passes without them. Closing
//! `/dev/fuse` at the end aborts the connection, so that whatever still
//! waits on it fails instead of hanging the test.
#![cfg(target_os = "linux")]

mod common;

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::*;
use sendfiled_client::client::{Client, Range};
use sendfiled_client::protocol::{HeaderTrailer, Request, Response};
use sendfiled_core::sys;

/// How long a victim's Send may take while the attack holds (idle: well
/// under a millisecond; a stalled loop: for ever).
const VICTIM_MAX: Duration = Duration::from_secs(2);

// Opcodes and sizes of `<linux/fuse.h>` (protocol 7.31).
const FUSE_LOOKUP: u32 = 1;
const FUSE_FORGET: u32 = 2;
const FUSE_GETATTR: u32 = 3;
const FUSE_OPEN: u32 = 14;
const FUSE_READ: u32 = 15;
const FUSE_WRITE: u32 = 16;
const FUSE_RELEASE: u32 = 18;
const FUSE_FLUSH: u32 = 25;
const FUSE_INIT: u32 = 26;
const FUSE_INTERRUPT: u32 = 36;
const FUSE_BATCH_FORGET: u32 = 42;
const IN_HEADER: usize = 40;
const ROOT_ID: u64 = 1;
const FILE_ID: u64 = 2;

/// `struct fuse_attr` (88 bytes) of a node.
fn attr(ino: u64, mode: u32) -> Vec<u8> {
    let mut a = Vec::with_capacity(88);
    a.extend_from_slice(&ino.to_ne_bytes());
    a.extend_from_slice(&[0u8; 8 * 5]); // size, blocks, atime, mtime, ctime
    a.extend_from_slice(&[0u8; 4 * 3]); // their nanoseconds
    a.extend_from_slice(&mode.to_ne_bytes());
    a.extend_from_slice(&1u32.to_ne_bytes()); // nlink
    a.extend_from_slice(&[0u8; 4 * 3]); // uid, gid, rdev
    a.extend_from_slice(&4096u32.to_ne_bytes()); // blksize
    a.extend_from_slice(&0u32.to_ne_bytes()); // flags
    a
}

/// The attributes of `node`, and how long they stay valid: the root's for
/// an hour, the file's not at all (each `fstat` of it asks).
fn attr_of(node: u64) -> (Vec<u8>, u64) {
    if node == FILE_ID {
        (attr(FILE_ID, libc::S_IFREG | 0o666), 0)
    } else {
        (attr(ROOT_ID, libc::S_IFDIR | 0o755), 3600)
    }
}

/// A mounted FUSE filesystem answered by a thread of this test.
struct Fuse {
    dir: tempfile::TempDir,
    /// Set: `getattr` of the file is no longer answered.
    stalled: Arc<AtomicBool>,
    /// Written to stop the answering thread.
    stop: OwnedFd,
    thread: Option<JoinHandle<OwnedFd>>,
    /// `getattr` requests of the file left unanswered.
    unanswered: Arc<std::sync::atomic::AtomicUsize>,
}

impl Fuse {
    /// Mounts one, or `None` (with a note) where this machine cannot.
    fn mount() -> Option<Fuse> {
        let dev = match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/fuse")
        {
            Ok(f) => OwnedFd::from(f),
            Err(e) => {
                eprintln!("no /dev/fuse ({e}): the FUSE attack is not tested here");
                return None;
            }
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let target = CString::new(dir.path().as_os_str().as_bytes()).unwrap();
        let opts = CString::new(format!(
            "fd={},rootmode=40000,user_id=0,group_id=0",
            dev.as_raw_fd()
        ))
        .unwrap();
        // SAFETY: NUL-terminated strings alive for the call.
        let r = unsafe {
            libc::mount(
                c"sendfiled-test".as_ptr(),
                target.as_ptr(),
                c"fuse".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV,
                opts.as_ptr().cast(),
            )
        };
        if r != 0 {
            eprintln!(
                "mount(2) of a FUSE filesystem refused ({}): the FUSE attack is not tested here",
                std::io::Error::last_os_error()
            );
            return None;
        }
        let (stop_r, stop) = pipe();
        let stalled = Arc::new(AtomicBool::new(false));
        let unanswered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (s, u) = (Arc::clone(&stalled), Arc::clone(&unanswered));
        let thread = std::thread::spawn(move || {
            answer(dev.as_fd(), stop_r.as_fd(), &s, &u);
            dev
        });
        Some(Fuse {
            dir,
            stalled,
            stop,
            thread: Some(thread),
            unanswered,
        })
    }

    /// The file, opened for reading and writing (answered), then its
    /// attributes stalled: from here an `fstat` of it waits for ever.
    fn stalled_file(&self) -> OwnedFd {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(self.dir.path().join("f"))
            .expect("open the FUSE file");
        self.stalled.store(true, Ordering::SeqCst);
        OwnedFd::from(f)
    }
}

impl Drop for Fuse {
    fn drop(&mut self) {
        let _ = sys::write(self.stop.as_fd(), b"x");
        // Our /dev/fuse descriptor closes as the thread's result drops:
        // the connection aborts, and every request still waiting fails.
        if let Some(t) = self.thread.take() {
            drop(t.join());
        }
        let target = CString::new(self.dir.path().as_os_str().as_bytes()).unwrap();
        // SAFETY: a NUL-terminated path alive for the call.
        unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    }
}

/// Writes one reply: `struct fuse_out_header` then `body`.
fn reply(dev: BorrowedFd<'_>, unique: u64, error: i32, body: &[u8]) {
    let mut out = Vec::with_capacity(16 + body.len());
    out.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
    out.extend_from_slice(&(-error).to_ne_bytes());
    out.extend_from_slice(&unique.to_ne_bytes());
    out.extend_from_slice(body);
    // An interrupted or aborted request's reply is refused: nothing to do.
    let _ = sys::write(dev, &out);
}

/// Answers the kernel's requests until `stop` is readable.
fn answer(
    dev: BorrowedFd<'_>,
    stop: BorrowedFd<'_>,
    stalled: &AtomicBool,
    unanswered: &std::sync::atomic::AtomicUsize,
) {
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let mut fds = [
            libc::pollfd {
                fd: dev.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: stop.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: two valid pollfds.
        if unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) } < 0 || fds[1].revents != 0 {
            return;
        }
        let n = match sys::read(dev, &mut buf) {
            Ok(n) if n >= IN_HEADER => n,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        let req = &buf[..n];
        let u32_at = |o: usize| u32::from_ne_bytes(req[o..o + 4].try_into().unwrap());
        let u64_at = |o: usize| u64::from_ne_bytes(req[o..o + 8].try_into().unwrap());
        let (opcode, unique, node) = (u32_at(4), u64_at(8), u64_at(16));
        let body = &req[IN_HEADER..];
        match opcode {
            FUSE_INIT => {
                // struct fuse_init_out: 7.31, no flags, 64 KiB writes.
                let max_readahead = u32::from_ne_bytes(body[8..12].try_into().unwrap());
                let mut out = Vec::new();
                out.extend_from_slice(&7u32.to_ne_bytes());
                out.extend_from_slice(&31u32.to_ne_bytes());
                out.extend_from_slice(&max_readahead.to_ne_bytes());
                out.extend_from_slice(&0u32.to_ne_bytes()); // flags
                out.extend_from_slice(&16u16.to_ne_bytes()); // max_background
                out.extend_from_slice(&12u16.to_ne_bytes()); // congestion_threshold
                out.extend_from_slice(&65536u32.to_ne_bytes()); // max_write
                out.extend_from_slice(&1u32.to_ne_bytes()); // time_gran
                out.resize(64, 0);
                reply(dev, unique, 0, &out);
            }
            FUSE_LOOKUP => {
                let name = body.split(|&b| b == 0).next().unwrap_or(b"");
                if node != ROOT_ID || name != b"f" {
                    reply(dev, unique, libc::ENOENT, &[]);
                    continue;
                }
                // struct fuse_entry_out: the entry for an hour, the
                // attributes not at all.
                let (a, valid) = attr_of(FILE_ID);
                let mut out = Vec::new();
                out.extend_from_slice(&FILE_ID.to_ne_bytes());
                out.extend_from_slice(&0u64.to_ne_bytes()); // generation
                out.extend_from_slice(&3600u64.to_ne_bytes()); // entry_valid
                out.extend_from_slice(&valid.to_ne_bytes()); // attr_valid
                out.extend_from_slice(&[0u8; 8]); // their nanoseconds
                out.extend_from_slice(&a);
                reply(dev, unique, 0, &out);
            }
            FUSE_GETATTR => {
                if node == FILE_ID && stalled.load(Ordering::SeqCst) {
                    unanswered.fetch_add(1, Ordering::SeqCst);
                    continue;
                }
                // struct fuse_attr_out.
                let (a, valid) = attr_of(node);
                let mut out = Vec::new();
                out.extend_from_slice(&valid.to_ne_bytes());
                out.extend_from_slice(&[0u8; 8]); // attr_valid_nsec, dummy
                out.extend_from_slice(&a);
                reply(dev, unique, 0, &out);
            }
            FUSE_OPEN => {
                // struct fuse_open_out.
                let mut out = Vec::new();
                out.extend_from_slice(&1u64.to_ne_bytes()); // fh
                out.extend_from_slice(&[0u8; 8]); // open_flags, backing_id
                reply(dev, unique, 0, &out);
            }
            FUSE_WRITE => {
                // struct fuse_write_out: all of it written.
                let size = u32::from_ne_bytes(body[16..20].try_into().unwrap());
                let mut out = Vec::new();
                out.extend_from_slice(&size.to_ne_bytes());
                out.extend_from_slice(&0u32.to_ne_bytes());
                reply(dev, unique, 0, &out);
            }
            // End of file.
            FUSE_READ => reply(dev, unique, 0, &[]),
            FUSE_FLUSH | FUSE_RELEASE => reply(dev, unique, 0, &[]),
            FUSE_FORGET | FUSE_BATCH_FORGET | FUSE_INTERRUPT => {}
            _ => reply(dev, unique, libc::ENOSYS, &[]),
        }
    }
}

/// The daemon under attack, the FUSE filesystem, its stalled file and the
/// attacker's client; `None` where FUSE cannot be mounted. Bound in this
/// order, they drop in the reverse: the FUSE connection is aborted before
/// the daemon is stopped, even when an assertion fails (a daemon stuck in
/// a FUSE request would not stop).
fn attack() -> Option<(Daemon, Fuse, OwnedFd, Client)> {
    let d = Daemon::start_with(&[]);
    d.write("small", &pattern(4096));
    let fuse = Fuse::mount()?;
    let file = fuse.stalled_file();
    let attacker = Client::connect_path(&d.socket())
        .expect("connect")
        .daemon_only();
    Some((d, fuse, file, attacker))
}

/// One Send of "small" by another client, to a pipe: its time to the
/// completion, bounded by [`VICTIM_MAX`] (a wait on the status channel).
fn victim_send(d: &Daemon) -> Duration {
    let c = Client::connect_path(&d.socket())
        .expect("connect")
        .daemon_only();
    let t0 = Instant::now();
    let (r, w) = pipe();
    let st = c.send("small", w.as_fd(), Range::WHOLE).expect("send");
    loop {
        assert!(
            sys::wait_readable(st.as_fd(), VICTIM_MAX.saturating_sub(t0.elapsed())).expect("poll"),
            "the victim's Send did not complete within {VICTIM_MAX:?}: the loop is stalled"
        );
        match st.try_recv().expect("status") {
            Some(Response::Complete) => break,
            Some(Response::Error { errno, .. }) => panic!("victim's Send failed: {errno}"),
            Some(_) => {}
            None => panic!("the victim's channel closed early"),
        }
    }
    let took = t0.elapsed();
    assert_eq!(read_exact_or_eof(r.as_fd(), 4096), pattern(4096));
    took
}

/// A Send whose status channel is the stalled FUSE file: the daemon must
/// refuse it (not a pipe) without asking the FUSE daemon.
#[test]
fn a_fuse_file_as_the_status_channel_does_not_stall_the_loop() {
    let Some((d, fuse, file, attacker)) = attack() else {
        return;
    };
    let (_r, dest) = pipe();
    let req = Request::Send {
        path: CString::new("small").unwrap(),
        range: Range::WHOLE,
        hdtr: HeaderTrailer::default(),
    };
    attacker
        .send_request(&req, &[file.as_fd(), dest.as_fd()])
        .expect("attacker's request");
    let took = victim_send(&d);
    eprintln!(
        "victim's Send beside a FUSE status channel: {took:?} ({} getattr left unanswered)",
        fuse.unanswered.load(Ordering::SeqCst)
    );
    drop(fuse);
}

/// A Send whose destination is the stalled FUSE file: classified without
/// asking, written off the loop.
#[test]
fn a_fuse_file_as_the_destination_does_not_stall_the_loop() {
    let Some((d, fuse, file, attacker)) = attack() else {
        return;
    };
    let st = attacker
        .send("small", file.as_fd(), Range::WHOLE)
        .expect("attacker's request");
    let took = victim_send(&d);
    eprintln!(
        "victim's Send beside a FUSE destination: {took:?} ({} getattr left unanswered)",
        fuse.unanswered.load(Ordering::SeqCst)
    );
    drop(st);
    drop(fuse);
}

/// A Continue handing on `file` as the file to send, to a pipe: the
/// error its status channel answers (`None`: it completed), which must
/// come within [`VICTIM_MAX`] (else the loop is stalled).
fn hand_on(attacker: &Client, file: BorrowedFd<'_>) -> Option<i32> {
    let (sr, sw) = pipe();
    let (_dr, dw) = pipe();
    let req = Request::Continue {
        range: Range::WHOLE,
        done: 0,
        hdtr: HeaderTrailer::default(),
    };
    attacker
        .send_request(&req, &[sw.as_fd(), dw.as_fd(), file])
        .expect("attacker's request");
    drop(sw);
    assert!(
        sys::wait_readable(sr.as_fd(), VICTIM_MAX).expect("poll"),
        "no answer to the hand-off within {VICTIM_MAX:?}: the loop is stalled"
    );
    complete(&sendfiled_client::client::StatusChannel::from_fd(sr)).error
}

/// A Continue handing on the stalled FUSE file as the file to send: it is
/// not on the root's filesystem, so `EACCES`, known without asking.
#[test]
fn a_fuse_file_handed_on_is_refused_without_asking() {
    let Some((d, fuse, file, attacker)) = attack() else {
        return;
    };
    assert_eq!(hand_on(&attacker, file.as_fd()), Some(libc::EACCES));
    let took = victim_send(&d);
    eprintln!("victim's Send beside a FUSE hand-off: {took:?}");
    drop(fuse);
}
