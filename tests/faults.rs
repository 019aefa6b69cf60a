//! Fault injection: the real daemon with its backend wrapped in
//! `sendfiled_core::fault::FaultBackend` (`SENDFILED_FAULTS`). Each failing
//! transfer ends with the right errno on its status channel, having sent a
//! byte-exact prefix; the others are unaffected; `EINTR`/`EAGAIN` storms and
//! a full status pipe only delay; and the daemon's descriptors and transfer
//! table return to where they started.
//!
//! The subject is the daemon: every client here makes no in-process attempt
//! (`Client::daemon_only`); inline first has its own tests (tests/inline.rs).

mod common;

use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::thread::JoinHandle;

use common::*;
use sendfiled_client::client::{Completion, HeaderTrailer, Range, Response, StatusChannel};
use sendfiled_client::protocol::Request;
use sendfiled_core::sys;

const MIB: usize = 1 << 20;

/// A daemon with `faults`, a warm-up read done, and its descriptor count.
fn faulty(faults: &str) -> (Daemon, usize) {
    let d = Daemon::start_env(&[], &[("SENDFILED_FAULTS", faults)]);
    read_ok(&d);
    let fds = d.fd_count();
    (d, fds)
}

fn read_ok(d: &Daemon) {
    d.write("ok.txt", b"still serving");
    let mut ch = d
        .client()
        .daemon_only()
        .read("ok.txt", Range::WHOLE)
        .unwrap();
    let mut v = Vec::new();
    ch.read_to_end(&mut v).unwrap();
    assert_eq!(v, b"still serving");
}

/// Ends a test: nothing live, and (once a Read's end of file shows every
/// earlier request was cleaned up) no descriptor more than at the start.
fn assert_back_to_baseline(d: &Daemon, fds: usize) {
    assert!(eventually(|| d.live() == 0), "transfers left live");
    read_ok(d);
    // Destinations that may block on close (sockets, files) close on the
    // daemon's closer threads, just after the transfer leaves the table.
    assert!(
        eventually(|| d.fd_count() == fds),
        "descriptors: {:?}",
        d.fd_list()
    );
}

/// Reads a pipe to its end on a thread.
fn drain(r: OwnedFd) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || read_to_end(r.as_fd()))
}

/// A Send of `path` to a new regular file; returns the status channel and
/// the file.
fn send_to_file(d: &Daemon, path: &str, hdtr: HeaderTrailer) -> (StatusChannel, std::fs::File) {
    let out = tempfile::tempfile().unwrap();
    let st = d
        .client()
        .send_hdtr(path, out.as_fd(), Range::WHOLE, hdtr)
        .unwrap();
    (st, out)
}

fn contents(mut f: &std::fs::File) -> Vec<u8> {
    use std::io::{Seek, SeekFrom};
    f.seek(SeekFrom::Start(0)).unwrap();
    let mut v = Vec::new();
    f.read_to_end(&mut v).unwrap();
    v
}

fn expect_error(c: &Completion, errno: i32, what: &str) {
    assert_eq!(c.error, Some(errno), "{what}: {c:?}");
    assert!(!c.complete, "{what}: {c:?}");
}

#[test]
fn each_failure_ends_its_transfer_with_its_errno_and_spares_the_others() {
    // sendfile moves up to 1 MiB per call to a regular file (the server's
    // chunk), so with 3 MiB files "@2" fails after exactly 1 MiB went out;
    // the portable copy path forced by SENDFILED_FORCE_FALLBACK moves one
    // 64 KiB buffer per call instead.
    let per_call = if std::env::var("SENDFILED_FORCE_FALLBACK").is_ok_and(|v| v == "1") {
        sendfiled_core::backend::READ_WRITE_CHUNK
    } else {
        MIB
    };
    let (d, fds) = faulty(
        "send:EIO@2:eio.bin,send:EPIPE@1:epipe.bin,send:ENOSPC@3:enospc.bin,\
         write:EPIPE@1:HDRFAULT,open:EMFILE@1:emfile.bin",
    );
    let data = pattern(3 * MIB);
    for f in [
        "eio.bin",
        "epipe.bin",
        "enospc.bin",
        "hdr.bin",
        "ok.bin",
        "emfile.bin",
    ] {
        d.write(f, &data);
    }
    let c = d.client().daemon_only();

    // A healthy transfer to a pipe runs alongside the failing ones.
    let (r, w) = pipe();
    let healthy = c.send("ok.bin", w.as_fd(), Range::WHOLE).unwrap();
    drop(w);
    let reader = drain(r);

    let (eio, eio_out) = send_to_file(&d, "eio.bin", HeaderTrailer::default());
    let (epipe, epipe_out) = send_to_file(&d, "epipe.bin", HeaderTrailer::default());
    let (enospc, enospc_out) = send_to_file(&d, "enospc.bin", HeaderTrailer::default());
    let hdtr = HeaderTrailer {
        header: b"HDRFAULT\r\n".to_vec(),
        trailer: b"\r\nend".to_vec(),
    };
    let (hdr, hdr_out) = send_to_file(&d, "hdr.bin", hdtr);
    let (ok2, ok2_out) = send_to_file(&d, "ok.bin", HeaderTrailer::default());

    for (ch, out, errno, sent, what) in [
        (
            &eio,
            &eio_out,
            libc::EIO,
            per_call,
            "read error (EIO at call 2)",
        ),
        (&epipe, &epipe_out, libc::EPIPE, 0, "destination EPIPE"),
        (
            &enospc,
            &enospc_out,
            libc::ENOSPC,
            2 * per_call,
            "destination ENOSPC",
        ),
        (&hdr, &hdr_out, libc::EPIPE, 0, "EPIPE writing the header"),
    ] {
        let c = complete(ch);
        expect_error(&c, errno, what);
        assert_eq!(c.info.map(|i| i.size), Some(3 * MIB), "{what}");
        let got = contents(out);
        assert_eq!(got.len(), sent, "{what}: bytes before the fault");
        assert!(got == data[..sent], "{what}: a byte-exact prefix");
        assert!(c.progress <= sent as u64, "{what}: progress {c:?}");
    }
    // An open that fails is refused in place of the file info.
    let mut refused = c.read("emfile.bin", Range::WHOLE).unwrap();
    assert_eq!(
        refused.file_info().unwrap_err().raw_os_error(),
        Some(libc::EMFILE)
    );
    // The same file opens fine the second time (the fault was "@1").
    let mut again = c.read("emfile.bin", Range::WHOLE).unwrap();
    let mut v = Vec::new();
    again.read_to_end(&mut v).unwrap();
    assert!(v == data);

    let c2 = complete(&ok2);
    assert!(c2.complete, "{c2:?}");
    assert!(contents(&ok2_out) == data);
    let c1 = complete(&healthy);
    assert!(c1.complete, "{c1:?}");
    assert!(
        reader.join().unwrap() == data,
        "healthy transfer byte-exact"
    );
    assert!(d.log().contains("fault injected"));
    assert_back_to_baseline(&d, fds);
}

#[test]
fn a_failed_disk_read_is_eio_and_misses_are_served_by_the_disk_threads() {
    // MISS makes the loop hand the chunk to a disk thread, whose prefetch
    // then fails (or not).
    let (d, fds) = faulty("send:MISS@1:miss-bad,prefetch:EIO@1:miss-bad,send:MISS*3:miss-ok");
    let data = pattern(3 * MIB + 123);
    d.write("miss-bad.bin", &data);
    d.write("miss-ok.bin", &data);
    let c = d.client().daemon_only();
    let (bad, bad_out) = send_to_file(&d, "miss-bad.bin", HeaderTrailer::default());
    let (r, w) = pipe();
    let ok = c.send("miss-ok.bin", w.as_fd(), Range::WHOLE).unwrap();
    drop(w);
    let reader = drain(r);
    let cb = complete(&bad);
    expect_error(&cb, libc::EIO, "prefetch EIO");
    assert!(contents(&bad_out).is_empty());
    let co = complete(&ok);
    assert!(co.complete, "{co:?}");
    assert!(reader.join().unwrap() == data);
    // A Read through the disk threads too, with the data on its own pipe.
    let mut rd = c.read("miss-ok.bin", Range::WHOLE).unwrap();
    let mut v = Vec::new();
    rd.read_to_end(&mut v).unwrap();
    assert!(v == data);
    assert_back_to_baseline(&d, fds);
}

#[test]
fn eintr_and_eagain_storms_only_delay() {
    let (d, fds) = faulty(
        "send:EINTR*100:intr,send:EAGAIN*50:again,send:EAGAIN%7*3:flap,send:EINTR%5*2:flap,\
         write:EINTR*20:HSTORM,write:EAGAIN*20:HSTORM",
    );
    let data = pattern(2 * MIB + 17);
    for f in ["intr.bin", "again.bin", "flap.bin"] {
        d.write(f, &data);
    }
    let c = d.client().daemon_only();
    let mut running = Vec::new();
    for f in ["intr.bin", "again.bin", "flap.bin"] {
        let (r, w) = pipe();
        let st = c.send(f, w.as_fd(), Range::WHOLE).unwrap();
        drop(w);
        running.push((f, st, drain(r), data.clone()));
    }
    // Header and trailer through a socket, with the write storm.
    let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
    let hdtr = HeaderTrailer {
        header: b"HSTORM-header|".to_vec(),
        trailer: b"|trailer".to_vec(),
    };
    let st = c
        .send_hdtr("flap.bin", b.as_fd(), Range::WHOLE, hdtr.clone())
        .unwrap();
    drop(b);
    let want = [&hdtr.header[..], &data, &hdtr.trailer].concat();
    running.push(("hdtr", st, drain(a.into()), want));
    // A Read has its data on the status pipe.
    let mut rd = c.read("again.bin", Range::WHOLE).unwrap();
    let mut v = Vec::new();
    rd.read_to_end(&mut v).unwrap();
    assert!(v == data, "Read through an EAGAIN storm");
    for (what, st, reader, want) in running {
        let c = complete(&st);
        assert!(c.complete, "{what}: {c:?}");
        assert!(c.progress < want.len() as u64, "{what}: {c:?}");
        assert!(reader.join().unwrap() == want, "{what}: byte-exact");
    }
    assert_back_to_baseline(&d, fds);
}

#[test]
fn a_status_pipe_kept_full_delays_only_the_report() {
    let (d, fds) = faulty("send:EINTR@1");
    let data = pattern(4 * MIB);
    d.write("big.bin", &data);
    // Our own status pipe, filled to the brim before the request goes.
    let (sr, sw) = pipe();
    sys::set_nonblocking(sw.as_fd(), true).unwrap();
    let junk = [0xEEu8; 4096];
    let mut filled = 0usize;
    loop {
        match sys::write(sw.as_fd(), &junk) {
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("{e}"),
        }
    }
    let (r, w) = pipe();
    let req = Request::Send {
        path: c"big.bin".into(),
        range: Range::WHOLE,
        hdtr: HeaderTrailer::default(),
    };
    d.client()
        .daemon_only()
        .send_request(&req, &[sw.as_fd(), w.as_fd()])
        .unwrap();
    drop(sw);
    drop(w);
    // The data flows although nothing can be said on the status channel.
    assert!(read_to_end(r.as_fd()) == data);
    assert_eq!(d.live(), 1, "the transfer waits to report");
    // Now read the status pipe: our junk, then the whole story.
    let mut skipped = 0;
    let mut buf = vec![0u8; 4096];
    while skipped < filled {
        let want = (filled - skipped).min(buf.len());
        assert!(sys::wait_readable(sr.as_fd(), WAIT).unwrap());
        skipped += sys::read(sr.as_fd(), &mut buf[..want]).unwrap();
    }
    let ch = StatusChannel::from_fd(sr);
    match ch.recv_timeout(WAIT).unwrap() {
        Some(Response::FileInfo(i)) => assert_eq!(i.size, data.len()),
        other => panic!("{other:?}"),
    }
    let c = complete(&ch);
    assert!(c.complete, "{c:?}");
    assert!(c.progress < data.len() as u64, "{c:?}");
    assert_back_to_baseline(&d, fds);
}

#[test]
fn a_bad_fault_spec_stops_the_daemon_at_start() {
    let root = tempfile::tempdir().unwrap();
    let err = Daemon::start_in_env(root, "bad", &[], &[("SENDFILED_FAULTS", "send:EWHAT")])
        .err()
        .expect("refused");
    assert!(
        err.starts_with(&format!("error {} ", libc::EINVAL)),
        "{err}"
    );
}

#[test]
fn opens_the_caches_cannot_answer_are_made_on_a_disk_thread_with_the_same_answers() {
    // MISS makes the loop's cache-only open of a path containing "cold"
    // say it would wait, as an evicted directory entry or a network
    // filesystem does; the open is then a disk thread's.
    let (d, fds) = faulty("open:MISS*1000000:cold");
    std::fs::create_dir_all(d.root.path().join("cold")).unwrap();
    let data = pattern(MIB + 7);
    d.write("cold/a.bin", &data);
    let c = d.client().daemon_only();
    // Send, with header and trailer, to a pipe.
    let (r, w) = pipe();
    let hdtr = HeaderTrailer {
        header: b"HEAD".to_vec(),
        trailer: b"TAIL".to_vec(),
    };
    let st = c
        .send_hdtr("cold/a.bin", w.as_fd(), Range::WHOLE, hdtr)
        .unwrap();
    drop(w);
    let reader = drain(r);
    let done = complete(&st);
    assert!(done.complete, "{done:?}");
    assert_eq!(done.info.map(|i| i.size), Some(data.len()));
    let got = reader.join().unwrap();
    assert!(got.len() == data.len() + 8 && got[4..4 + data.len()] == data[..]);
    assert!(got.starts_with(b"HEAD") && got.ends_with(b"TAIL"));
    // Read, with a range.
    let mut rd = c
        .read(
            "cold/a.bin",
            Range {
                offset: 10,
                len: 100,
            },
        )
        .unwrap();
    let mut v = Vec::new();
    rd.read_to_end(&mut v).unwrap();
    assert!(v == data[10..110]);
    // Open, then Send Open.
    let ch = c.open("cold/a.bin", Range::WHOLE).unwrap();
    let info = match ch.recv_timeout(WAIT).unwrap() {
        Some(Response::FileInfo(i)) => i,
        other => panic!("{other:?}"),
    };
    let (r, w) = pipe();
    c.send_open(info.txnid as u64, w.as_fd()).unwrap();
    drop(w);
    let reader = drain(r);
    assert!(complete(&ch).complete);
    assert!(reader.join().unwrap() == data);
    // Refusals: the same errno as on the loop, in place of the file info.
    let (_r, w) = pipe();
    let missing = c.send("cold/missing", w.as_fd(), Range::WHOLE).unwrap();
    expect_error(&complete(&missing), libc::ENOENT, "missing");
    let dir = c.send("cold", w.as_fd(), Range::WHOLE).unwrap();
    expect_error(&complete(&dir), libc::EINVAL, "a directory");
    let escape = c.send("cold/../../x", w.as_fd(), Range::WHOLE).unwrap();
    expect_error(&complete(&escape), libc::EACCES, "an escape");
    drop(w);
    assert_back_to_baseline(&d, fds);
    let log = d.log();
    let handed = |what: &str| {
        log.lines()
            .filter(|l| l.contains(what) && l.contains("opening on a disk thread"))
            .count()
    };
    assert_eq!(
        handed(" cold"),
        6,
        "every cold request took the disk thread's open:\n{log}"
    );
    // ok.txt was read twice: with openat2 the first open on the filesystem
    // learnt that it answers opens locally, and the second stayed on the
    // loop; the checked walk (forced fallback) opens on the loop.
    let walk = log.contains("path walk");
    assert_eq!(handed("ok.txt"), usize::from(!walk), "{log}");
}
