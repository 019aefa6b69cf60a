//! Inline first, end to end: Sends a client finishes in its own process,
//! Sends it hands on part-way, and the switches that turn the attempt off,
//! against the real daemon. What went where is told by the daemon's own
//! counters (a Send finished in the client never reaches it) and by the
//! client's (`sendfiled_client::inline::stats`).

// Inline first runs on Linux only (other systems hand every request to
// the daemon), and these tests are about what it does.
#![cfg(target_os = "linux")]

mod common;

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use sendfiled_client::client::{Client, Range};
use sendfiled_client::inline;
use sendfiled_client::protocol::{FileInfo, FILE_INFO_LEN, SFD_XFER_STAT, XFER_STAT_LEN};
use sendfiled_core::sys;

/// The daemon's (completed, handoffs) counters.
fn counters(c: &Client) -> (u64, u64) {
    let s = c.server_status(WAIT).expect("status");
    (s.completed, s.handoffs)
}

/// Reads what the peer socket got until `n` bytes or end of file.
fn drain(sock: &UnixStream, n: usize) -> Vec<u8> {
    read_exact_or_eof(sock.as_fd(), n)
}

/// Every byte of a status channel until end of file.
fn status_bytes(ch: OwnedFd) -> Vec<u8> {
    read_to_end(ch.as_fd())
}

#[test]
fn a_cached_send_finishes_in_the_client_with_the_daemons_bytes() {
    let inlined = Daemon::start();
    let whole = Daemon::start_with(&["--no-inline"]);
    let data = pattern(4096);
    for d in [&inlined, &whole] {
        d.write("f.bin", &data);
    }
    let mut seen = Vec::new();
    for d in [&inlined, &whole] {
        let c = d.client();
        let before = counters(&c);
        let (a, b) = UnixStream::pair().unwrap();
        let ch = c.send("f.bin", a.as_fd(), Range::WHOLE).expect("send");
        assert_eq!(drain(&b, data.len()), data);
        let bytes = status_bytes(ch.into_fd());
        // File info and completion, nothing else, as the daemon writes them.
        assert_eq!(bytes.len(), FILE_INFO_LEN + XFER_STAT_LEN, "{bytes:?}");
        let info = FileInfo::decode(&bytes).expect("file info");
        assert_eq!(info.size, data.len());
        assert_ne!(info.txnid, 0);
        assert_eq!(bytes[FILE_INFO_LEN], SFD_XFER_STAT);
        seen.push((info, bytes[FILE_INFO_LEN..].to_vec(), before, counters(&c)));
    }
    let (inl, whl) = (&seen[0], &seen[1]);
    // The same message but for the transfer id: an id from the client has
    // the top bit set, the daemon's never.
    assert_eq!((inl.0.size, inl.0.mtime), (whl.0.size, whl.0.mtime));
    assert_eq!(inl.1, whl.1, "the completion");
    assert_eq!(whl.0.txnid >> (usize::BITS - 1), 0, "the daemon's id");
    // Where it ran: the daemon with --no-inline did the work itself.
    assert_eq!(
        whl.3 .0,
        whl.2 .0 + 1,
        "--no-inline: the daemon completed it"
    );
    assert_eq!(whl.3 .1, 0, "--no-inline: nothing handed on");
    if inline::in_effect() {
        assert_eq!(inl.3 .0, inl.2 .0, "finished in the client, not the daemon");
        assert_ne!(inl.0.txnid >> (usize::BITS - 1), 0, "a client's id");
    }
}

#[test]
fn a_destination_that_fills_is_finished_by_the_daemon_byte_for_byte() {
    let d = Daemon::start();
    let data = pattern(4 << 20);
    d.write("big.bin", &data);
    // Read once so that the file is in the page cache.
    let c = d.client();
    let (a, b) = UnixStream::pair().unwrap();
    let ch = c.send("big.bin", a.as_fd(), Range::WHOLE).expect("send");
    let reader = std::thread::spawn(move || drain(&b, 4 << 20));
    assert!(complete(&ch).complete);
    assert_eq!(reader.join().unwrap(), data);

    // A small socket buffer and nobody reading yet: the attempt writes what
    // fits and hands on the rest; the daemon continues from there once the
    // reader drains. (A range over the attempt's 256 KiB goes to the daemon
    // whole: the 3 MiB below.)
    let before = counters(&c);
    let stats_before = inline::stats();
    for range in [
        Range {
            offset: 1000,
            len: 200_000,
        },
        Range {
            offset: 1000,
            len: 3 << 20,
        },
    ] {
        let (a, b) = UnixStream::pair().unwrap();
        sys::raise_socket_buffer(a.as_fd(), libc::SO_SNDBUF, 4096);
        let ch = c.send("big.bin", a.as_fd(), range).expect("send");
        let len = range.len as usize;
        let got = drain(&b, len);
        assert_eq!(got.len(), len);
        assert!(got == data[1000..1000 + len], "bytes lost or sent twice");
        let done = complete(&ch);
        assert!(done.complete, "{done:?}");
        assert_eq!(done.info.map(|i| i.size), Some(len));
        // The file info of a hand-off is the daemon's, from the stat of
        // the file the client opened: the times the file has.
        let md = std::fs::metadata(d.root().join("big.bin")).expect("metadata");
        let info = done.info.expect("file info");
        assert_eq!((info.mtime, info.ctime), (md.mtime(), md.ctime()));
        assert!(done.progress < len as u64, "progress sums below the size");
        // Nothing more arrives after the range.
        drop(a);
        assert!(drain(&b, 1).is_empty());
    }
    if inline::in_effect() {
        let after = counters(&c);
        let s = inline::stats();
        assert_eq!(after.1, before.1 + 2, "two hand-offs received");
        assert_eq!(after.0, before.0 + 2, "the daemon completed both");
        assert!(
            s.handed_on_partial > stats_before.handed_on_partial,
            "part-way"
        );
        assert!(s.handed_on_whole > stats_before.handed_on_whole, "whole");
    }
}

#[test]
fn a_blocking_destination_never_blocks_the_caller() {
    let d = Daemon::start();
    let data = pattern(8 << 20);
    d.write("big.bin", &data);
    let c = d.client();
    let (a, b) = UnixStream::pair().unwrap();
    // The application's descriptor is blocking and nobody reads yet.
    sys::set_nonblocking(a.as_fd(), false).unwrap();
    let (tx, rx) = mpsc::channel();
    let sender = std::thread::spawn(move || {
        let ch = c.send("big.bin", a.as_fd(), Range::WHOLE);
        tx.send(()).unwrap();
        (ch, a, c)
    });
    // send() returns while the socket is full: the rest is the daemon's.
    assert!(
        rx.recv_timeout(Duration::from_secs(10)).is_ok(),
        "send blocked on a full, blocking destination"
    );
    let (ch, _a, _c) = sender.join().unwrap();
    let ch = ch.expect("send");
    assert_eq!(drain(&b, data.len()), data);
    assert!(complete(&ch).complete);
}

#[test]
fn a_pipe_destination_gets_the_same_bytes_and_messages() {
    let d = Daemon::start();
    let data = pattern(100_000);
    d.write("f.bin", &data);
    let c = d.client();
    for _ in 0..2 {
        let (r, w) = pipe();
        let ch = c.send("f.bin", w.as_fd(), Range::WHOLE).expect("send");
        let reader = std::thread::spawn(move || read_exact_or_eof(r.as_fd(), 100_000));
        let done = complete(&ch);
        assert!(done.complete, "{done:?}");
        assert_eq!(done.info.map(|i| i.size), Some(100_000));
        drop(w);
        assert_eq!(reader.join().unwrap(), data);
    }
}

#[test]
fn refusals_are_the_daemons_answers() {
    let d = Daemon::start();
    d.write("f.bin", b"x");
    std::fs::create_dir(d.root().join("dir")).unwrap();
    let c = d.client();
    for (path, errno) in [
        ("missing", libc::ENOENT),
        ("dir", libc::EINVAL),
        ("/", libc::EINVAL),
        ("", libc::ENOENT),
        ("../f.bin", libc::EACCES),
        ("f.bin/x", libc::ENOTDIR),
    ] {
        let (a, _b) = UnixStream::pair().unwrap();
        let ch = c.send(path, a.as_fd(), Range::WHOLE).expect("send");
        assert_eq!(complete(&ch).error, Some(errno), "{path:?}");
    }
}

#[test]
fn no_inline_sends_everything_to_the_daemon() {
    let d = Daemon::start_with(&["--no-inline"]);
    d.write("f.bin", &pattern(4096));
    let c = d.client();
    let before = counters(&c);
    for _ in 0..3 {
        let (a, b) = UnixStream::pair().unwrap();
        let ch = c.send("f.bin", a.as_fd(), Range::WHOLE).expect("send");
        assert_eq!(drain(&b, 4096).len(), 4096);
        assert!(complete(&ch).complete);
    }
    let after = counters(&c);
    assert_eq!(after.0, before.0 + 3, "the daemon completed all three");
    assert_eq!(after.1, 0);
}

#[tokio::test(flavor = "current_thread")]
async fn the_async_client_makes_the_same_attempt() {
    use sendfiled_client::AsyncClient;
    let d = Daemon::start();
    let data = pattern(4096);
    d.write("f.bin", &data);
    let big = pattern(2 << 20);
    d.write("big.bin", &big);
    let c = AsyncClient::new(d.client()).expect("async client");
    let before = counters(c.client());
    let (a, b) = UnixStream::pair().unwrap();
    let sent = c
        .send("f.bin", a.as_fd(), Range::WHOLE)
        .await
        .expect("send");
    assert_eq!(sent.info.size, 4096);
    assert_eq!(drain(&b, 4096), data);
    // A destination that fills: handed on, finished by the daemon while a
    // thread drains it.
    let (a, b) = UnixStream::pair().unwrap();
    sys::raise_socket_buffer(a.as_fd(), libc::SO_SNDBUF, 4096);
    let reader = std::thread::spawn(move || drain(&b, 2 << 20));
    let sent = c
        .send("big.bin", a.as_fd(), Range::WHOLE)
        .await
        .expect("send");
    assert_eq!(sent.info.size, 2 << 20);
    assert!(reader.join().unwrap() == big, "bytes lost or sent twice");
    let after = counters(c.client());
    if inline::in_effect() {
        assert_eq!(after.0, before.0 + 1, "only the big one reached the daemon");
        assert_eq!(after.1, before.1 + 1, "as a hand-off");
    } else {
        assert_eq!(after.0, before.0 + 2);
    }
}

#[test]
fn reads_finish_in_the_client_or_are_handed_on_byte_for_byte() {
    use std::io::Read;
    let d = Daemon::start();
    let small = pattern(10_000);
    let big = pattern(3 << 20);
    d.write("small.bin", &small);
    d.write("big.bin", &big);
    let c = d.client();
    // Warm the big file's pages through the daemon first.
    let mut warm = Vec::new();
    c.read("big.bin", Range::WHOLE)
        .unwrap()
        .read_to_end(&mut warm)
        .unwrap();
    assert!(warm == big);
    let before = counters(&c);
    let stats_before = inline::stats();
    for (name, data, range) in [
        (
            "small.bin",
            &small,
            Range {
                offset: 100,
                len: 5000,
            },
        ),
        ("big.bin", &big, Range::WHOLE),
        (
            "big.bin",
            &big,
            Range {
                offset: 12345,
                len: 2 << 20,
            },
        ),
    ] {
        let mut ch = c.read(name, range).expect("read");
        let info = ch.file_info().expect("file info");
        let want = &data[range.offset as usize..][..info.size];
        assert_eq!(info.size as u64, range.clip(data.len() as u64));
        let mut got = Vec::new();
        ch.read_to_end(&mut got).unwrap();
        assert!(got == want, "{name} {range:?}: bytes lost or sent twice");
    }
    // Refusals are the daemon's.
    for (path, errno) in [
        ("missing", libc::ENOENT),
        ("/", libc::EINVAL),
        ("../x", libc::EACCES),
    ] {
        let mut ch = c.read(path, Range::WHOLE).expect("read");
        assert_eq!(
            ch.file_info().unwrap_err().raw_os_error(),
            Some(errno),
            "{path:?}"
        );
    }
    if inline::in_effect() {
        let after = counters(&c);
        let s = inline::stats();
        // The small one finished here; the 3 and 2 MiB ones are over the
        // attempt's 256 KiB: handed on with the client's file info and
        // nothing else in the pipe.
        assert!(s.finished > stats_before.finished);
        assert!(s.handed_on_whole >= stats_before.handed_on_whole + 2);
        assert_eq!(after.1, before.1 + 2, "two Reads handed on");
    }
}

/// A hand-off is a request like any other: a hostile client can pass any
/// file it opened. The daemon takes only a regular file on the root's own
/// filesystem (where a real attempt opens; anything else is answered as a
/// path out of the root, `EACCES`) and a claim within the file.
#[test]
fn a_hand_off_of_a_foreign_or_overstated_file_is_refused() {
    use sendfiled_client::protocol::{HeaderTrailer, Request};
    let d = Daemon::start_with(&["--no-inline"]);
    let inside = d.write("f.bin", &pattern(1000));
    let c = d.client();
    let root_dev = std::fs::metadata(d.root()).map(|m| {
        use std::os::unix::fs::MetadataExt;
        m.dev()
    });
    let shm = tempfile::NamedTempFile::new_in("/dev/shm").ok();
    let foreign = shm
        .as_ref()
        .filter(|f| {
            use std::os::unix::fs::MetadataExt;
            f.as_file().metadata().map(|m| m.dev()).ok() != root_dev.as_ref().ok().copied()
        })
        .map(|f| std::fs::File::open(f.path()).unwrap());
    let own = std::fs::File::open(&inside).unwrap();
    let dir = std::fs::File::open(d.root()).unwrap();
    let mut cases: Vec<(&str, std::fs::File, u64, i32)> = vec![
        ("more done than the file holds", own, 1001, libc::EINVAL),
        ("a directory", dir, 0, libc::EINVAL),
    ];
    match foreign {
        Some(f) => cases.push(("a file on another filesystem", f, 0, libc::EACCES)),
        None => eprintln!("note: /dev/shm is not another filesystem here; that case not checked"),
    }
    for (what, file, done, errno) in cases {
        let (a, _b) = UnixStream::pair().unwrap();
        let (r, w) = pipe();
        let req = Request::Continue {
            range: Range::WHOLE,
            done,
            hdtr: HeaderTrailer::default(),
        };
        c.send_request(&req, &[w.as_fd(), a.as_fd(), file.as_fd()])
            .expect("request");
        drop(w);
        let ch = sendfiled_client::client::StatusChannel::from_fd(r);
        assert_eq!(complete(&ch).error, Some(errno), "{what}");
    }
    assert!(eventually(|| d.live() == 0));
}

/// A Read handed on keeps the id the client wrote in its file info: a
/// Cancel by that id reaches the daemon's transfer (the pipe then ends with
/// a prefix of the file), as it would had the daemon begun it.
#[test]
fn a_handed_on_read_is_cancelled_by_the_id_its_caller_saw() {
    use std::io::Read;
    let d = Daemon::start();
    let data = pattern(8 << 20);
    d.write("big.bin", &data);
    let c = d.client();
    let mut warm = Vec::new();
    c.read("big.bin", Range::WHOLE)
        .unwrap()
        .read_to_end(&mut warm)
        .unwrap();
    let mut ch = c.read("big.bin", Range::WHOLE).expect("read");
    let info = ch.file_info().expect("info");
    assert_eq!(info.size, 8 << 20);
    assert!(eventually(|| d.live() == 1), "the rest is the daemon's");
    c.cancel(info.txnid as u64).expect("cancel");
    assert!(eventually(|| d.live() == 0), "cancelled by the caller's id");
    let mut got = Vec::new();
    ch.read_to_end(&mut got).unwrap();
    assert!(got.len() < data.len(), "ended early");
    assert!(got == data[..got.len()], "a prefix of the file");
}

/// Open then Send Open, the HTTP path: the open is made in the client and
/// held by the daemon under the client's id (its deadline, Cancel and
/// shutdown as for any open file); the data of the Send Open goes from the
/// client, the daemon writes what is left and the completion.
#[test]
fn open_and_send_open_keep_the_contract_when_begun_in_the_client() {
    use sendfiled_client::client::{HeaderTrailer, Response};
    let d = Daemon::start_with(&["-t", "400"]);
    let data = pattern(300_000);
    d.write("f.bin", &data);
    let c = d.client();
    let before = counters(&c);

    // Open, Send Open with header and trailer through a small socket buffer
    // (part here, the rest by the daemon): byte for byte, one completion.
    let st = c
        .open(
            "f.bin",
            Range {
                offset: 7,
                len: 200_000,
            },
        )
        .expect("open");
    let info = match st.recv_timeout(WAIT).expect("info") {
        Some(Response::FileInfo(i)) => i,
        other => panic!("{other:?}"),
    };
    assert_eq!(info.size, 200_000);
    assert!(
        eventually(|| d.live() == 1),
        "the daemon holds the open file"
    );
    let (a, b) = UnixStream::pair().unwrap();
    sys::raise_socket_buffer(a.as_fd(), libc::SO_SNDBUF, 4096);
    let hdtr = HeaderTrailer {
        header: b"HEAD".to_vec(),
        trailer: b"TAIL".to_vec(),
    };
    c.send_open_hdtr(info.txnid as u64, a.as_fd(), hdtr)
        .expect("send open");
    let got = drain(&b, 200_008);
    let mut want = b"HEAD".to_vec();
    want.extend_from_slice(&data[7..200_007]);
    want.extend_from_slice(b"TAIL");
    assert!(got == want, "bytes lost or sent twice");
    let done = complete(&st);
    assert!(done.complete && done.error.is_none(), "{done:?}");

    // An open file nobody sends: ETIMEDOUT at the deadline, then the end.
    let st = c.open("f.bin", Range::WHOLE).expect("open");
    assert!(matches!(
        st.recv_timeout(WAIT),
        Ok(Some(Response::FileInfo(_)))
    ));
    let done = complete(&st);
    assert_eq!(done.error, Some(libc::ETIMEDOUT), "{done:?}");
    assert_eq!(st.recv_timeout(WAIT).expect("eof"), None);
    assert!(eventually(|| d.live() == 0));

    // Cancel by the id the caller saw: the channel ends with no message.
    let st = c.open("f.bin", Range::WHOLE).expect("open");
    let info = match st.recv_timeout(WAIT).expect("info") {
        Some(Response::FileInfo(i)) => i,
        other => panic!("{other:?}"),
    };
    c.cancel(info.txnid as u64).expect("cancel");
    assert_eq!(
        st.recv_timeout(WAIT).expect("eof"),
        None,
        "closed, no message"
    );
    let (a, b) = UnixStream::pair().unwrap();
    c.send_open(info.txnid as u64, a.as_fd())
        .expect("late send open");
    drop(a);
    assert!(
        drain(&b, 1).is_empty(),
        "a cancelled open file sends nothing"
    );
    assert!(eventually(|| d.live() == 0));
    if inline::in_effect() {
        let after = counters(&c);
        assert_eq!(after.1, before.1 + 3, "three opens held for the client");
    }
}

/// A Send Open that comes after the open file's deadline sends nothing,
/// even though the client still has its own handle of the file.
#[test]
fn a_late_send_open_of_a_file_opened_in_the_client_sends_nothing() {
    use sendfiled_client::client::Response;
    let d = Daemon::start_with(&["-t", "200"]);
    d.write("f.bin", &pattern(4096));
    let c = d.client();
    let st = c.open("f.bin", Range::WHOLE).expect("open");
    let info = match st.recv_timeout(WAIT).expect("info") {
        Some(Response::FileInfo(i)) => i,
        other => panic!("{other:?}"),
    };
    // Past the deadline: the daemon says so.
    let done = complete(&st);
    assert_eq!(done.error, Some(libc::ETIMEDOUT));
    let (a, b) = UnixStream::pair().unwrap();
    c.send_open(info.txnid as u64, a.as_fd())
        .expect("send open");
    drop(a);
    assert!(drain(&b, 1).is_empty(), "nothing sent after the deadline");
}

/// A file whose second half is not in the page cache: the attempt sends
/// what is cached and hands on the rest, byte for byte. (This VM's disk is
/// answered from the host's cache at times, and then the whole file is
/// read at once: that is a note, the bytes are checked either way.)
#[test]
fn a_half_cached_file_is_finished_by_the_daemon_byte_for_byte() {
    use std::os::fd::AsRawFd;
    let d = Daemon::start();
    let data = pattern(200_000);
    let path = d.write("half.bin", &data);
    let c = d.client();
    let f = std::fs::File::open(&path).unwrap();
    f.sync_all().unwrap();
    let before = inline::stats();
    for _ in 0..5 {
        // SAFETY: plain fadvise on an open file.
        unsafe { libc::posix_fadvise(f.as_raw_fd(), 100_000, 0, libc::POSIX_FADV_DONTNEED) };
        let (a, b) = UnixStream::pair().unwrap();
        sys::raise_socket_buffer(a.as_fd(), libc::SO_SNDBUF, 1 << 20);
        let reader = std::thread::spawn(move || drain(&b, 200_000));
        let ch = c.send("half.bin", a.as_fd(), Range::WHOLE).expect("send");
        assert!(reader.join().unwrap() == data, "bytes lost or sent twice");
        assert!(complete(&ch).complete);
    }
    let after = inline::stats();
    if inline::in_effect() && after.handed_on_partial == before.handed_on_partial {
        eprintln!("note: the dropped half was read without waiting each time here; no part-way hand-off seen");
    }
}

/// `Client::send_complete` says what `send` + `wait_complete` say, and a
/// Send finished in the client needs no status channel for it.
#[test]
fn send_complete_says_what_the_channel_would() {
    use sendfiled_client::client::{Completion, HeaderTrailer};
    let inlined = Daemon::start();
    let whole = Daemon::start_with(&["--no-inline"]);
    let data = pattern(10_000);
    let mut seen: Vec<Completion> = Vec::new();
    for d in [&inlined, &whole] {
        d.write("f.bin", &data);
        let c = d.client();
        let (a, b) = UnixStream::pair().unwrap();
        let hdtr = HeaderTrailer {
            header: b"H".to_vec(),
            trailer: b"T".to_vec(),
        };
        let range = Range {
            offset: 10,
            len: 5000,
        };
        let done = c
            .send_complete("f.bin", a.as_fd(), range, hdtr, WAIT)
            .expect("send_complete");
        let mut want = b"H".to_vec();
        want.extend_from_slice(&data[10..5010]);
        want.extend_from_slice(b"T");
        assert!(drain(&b, want.len()) == want, "bytes lost or sent twice");
        // And what `send` + the channel say for the same request.
        let (a2, b2) = UnixStream::pair().unwrap();
        let ch = c
            .send_hdtr(
                "f.bin",
                a2.as_fd(),
                range,
                HeaderTrailer {
                    header: b"H".to_vec(),
                    trailer: b"T".to_vec(),
                },
            )
            .expect("send");
        assert!(drain(&b2, want.len()) == want);
        let by_channel = complete(&ch);
        let strip = |c: &Completion| {
            let mut c = *c;
            c.info = c.info.map(|mut i| {
                i.txnid = 0;
                i
            });
            c
        };
        assert_eq!(strip(&done), strip(&by_channel));
        assert!(done.complete, "{done:?}");
        assert_eq!(done.info.expect("info").size, 5000);
        seen.push(done);
    }
    let strip_id = |c: &Completion| c.info.map(|i| (i.size, i.mtime, i.ctime));
    assert_eq!(strip_id(&seen[0]), strip_id(&seen[1]), "inline vs daemon");
    // Refusals come back as the daemon's errno, as on the channel.
    let c = inlined.client();
    let (a, _b) = UnixStream::pair().unwrap();
    let done = c
        .send_complete(
            "missing",
            a.as_fd(),
            Range::WHOLE,
            HeaderTrailer::default(),
            WAIT,
        )
        .expect("send_complete");
    assert_eq!(done.error, Some(libc::ENOENT), "{done:?}");
}

/// The tokio client holds an open the kernel's caches answer in its own
/// process (it reads the channel itself, so the daemon need not write the
/// file info): its Send Open finishes here, or is handed on (Adopt +
/// ContinueOpen) byte for byte; past the deadline it is `ETIMEDOUT`, once
/// cancelled `ECANCELED`, nothing sent either way, as the daemon answers.
#[tokio::test(flavor = "current_thread")]
async fn async_opens_are_held_in_the_client_and_keep_the_contract() {
    use sendfiled_client::client::HeaderTrailer;
    use sendfiled_client::AsyncClient;
    let d = Daemon::start_with(&["-t", "400"]);
    let data = pattern(300_000);
    d.write("f.bin", &data);
    let small = pattern(20_000);
    d.write("small.bin", &small);
    let c = AsyncClient::new(d.client()).expect("async client");
    let held_here = inline::in_effect();
    let before = counters(c.client());

    // Finished here: byte for byte, and the daemon never hears of it.
    for round in 0..3 {
        let file = c.open("small.bin", Range::WHOLE).await.expect("open");
        assert_eq!(file.info().size, small.len());
        if held_here {
            assert_eq!(d.live(), 0, "the daemon holds nothing");
            assert_ne!(file.txnid() >> (usize::BITS - 1), 0, "a client's id");
        }
        let (a, b) = UnixStream::pair().unwrap();
        let reader = std::thread::spawn(move || read_to_end(b.as_fd()));
        let hdtr = HeaderTrailer {
            header: format!("head {round}\n").into_bytes(),
            trailer: Vec::new(),
        };
        let mut want = hdtr.header.clone();
        want.extend_from_slice(&small);
        let sent = file
            .send_open_hdtr(a.as_fd(), hdtr)
            .await
            .expect("send open");
        assert_eq!(sent.info.size, small.len());
        drop(a);
        assert!(reader.join().unwrap() == want, "bytes lost or sent twice");
    }
    if held_here {
        assert_eq!(counters(c.client()), before, "nothing reached the daemon");
    }

    // A destination that fills: part here, the rest by the daemon under
    // the id the caller saw.
    let file = c
        .open(
            "f.bin",
            Range {
                offset: 7,
                len: 200_000,
            },
        )
        .await
        .expect("open");
    let id = file.txnid();
    let (a, b) = UnixStream::pair().unwrap();
    sys::raise_socket_buffer(a.as_fd(), libc::SO_SNDBUF, 4096);
    let reader = std::thread::spawn(move || read_to_end(b.as_fd()));
    let hdtr = HeaderTrailer {
        header: b"HEAD".to_vec(),
        trailer: b"TAIL".to_vec(),
    };
    let sent = file
        .send_open_hdtr(a.as_fd(), hdtr)
        .await
        .expect("send open");
    drop(a);
    let mut want = b"HEAD".to_vec();
    want.extend_from_slice(&data[7..200_007]);
    want.extend_from_slice(b"TAIL");
    assert!(reader.join().unwrap() == want, "bytes lost or sent twice");
    assert_eq!((sent.info.size, sent.info.txnid as u64), (200_000, id));
    assert!(eventually(|| d.live() == 0));
    if held_here {
        assert_eq!(counters(c.client()).1, before.1 + 1, "one hand-off");
    }

    // Past the deadline: ETIMEDOUT, nothing sent.
    let file = c.open("f.bin", Range::WHOLE).await.expect("open");
    wait_until(std::time::Instant::now() + Duration::from_millis(600));
    assert!(eventually(|| d.live() == 0), "the daemon's deadline");
    let (a, b) = UnixStream::pair().unwrap();
    let e = file.send_open(a.as_fd()).await.unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ETIMEDOUT), "{e}");
    drop(a);
    assert!(
        read_to_end(b.as_fd()).is_empty(),
        "a late Send Open sent bytes"
    );

    // Cancelled by the id the caller saw: ECANCELED, nothing sent.
    let file = c.open("f.bin", Range::WHOLE).await.expect("open");
    c.cancel(file.txnid()).await.expect("cancel");
    let (a, b) = UnixStream::pair().unwrap();
    let e = file.send_open(a.as_fd()).await.unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ECANCELED), "{e}");
    drop(a);
    assert!(
        read_to_end(b.as_fd()).is_empty(),
        "a cancelled open sent bytes"
    );

    // What the caches cannot answer is the daemon's, with its errno.
    let e = c.open("missing", Range::WHOLE).await.unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOENT));
    assert!(eventually(|| d.live() == 0));
}

/// Header, file and trailer leave in one `sendmsg` per step: a socket
/// that fills inside any of them (a small buffer nobody reads yet) hands
/// on exactly what is left, and the reader gets every byte once.
#[test]
fn a_send_that_fills_inside_the_header_or_trailer_loses_nothing() {
    use sendfiled_client::client::HeaderTrailer;
    let d = Daemon::start();
    let data = pattern(40_000);
    d.write("f.bin", &data);
    let c = d.client();
    let before = counters(&c);
    for hdr_len in [0usize, 100, 4000] {
        for len in [0usize, 3000, 30_000] {
            for trl_len in [0usize, 7, 4000] {
                let header: Vec<u8> = (0..hdr_len).map(|i| (i % 251) as u8).collect();
                let trailer: Vec<u8> = (0..trl_len).map(|i| (i % 239) as u8).collect();
                let (a, b) = UnixStream::pair().unwrap();
                sys::raise_socket_buffer(a.as_fd(), libc::SO_SNDBUF, 4096);
                let range = Range {
                    offset: 5,
                    len: len as u64,
                };
                let mut want = header.clone();
                let body = if len == 0 {
                    &data[5..]
                } else {
                    &data[5..5 + len]
                };
                want.extend_from_slice(body);
                want.extend_from_slice(&trailer);
                let ch = c
                    .send_hdtr("f.bin", a.as_fd(), range, HeaderTrailer { header, trailer })
                    .expect("send");
                let n = want.len();
                let reader = std::thread::spawn(move || drain(&b, n));
                let done = complete(&ch);
                assert!(done.complete, "{hdr_len}/{len}/{trl_len}: {done:?}");
                drop(a);
                let got = reader.join().unwrap();
                assert!(
                    got == want,
                    "{hdr_len}/{len}/{trl_len}: {} bytes for {}",
                    got.len(),
                    want.len()
                );
            }
        }
    }
    if inline::in_effect() {
        // The buffer filled part-way for the larger ones: the daemon took
        // the rest of those (and only those: the rest finished here).
        let handed = counters(&c).1 - before.1;
        assert!((1..27).contains(&handed), "{handed} of 27 handed on");
    }
}

/// Set in the environment of the child that [`a_file_only_the_daemon_may_read_is_the_daemons_to_send`]
/// runs as another user: the daemon's socket.
const AS_CALLER_ENV: &str = "SENDFILED_TEST_INLINE_CALLER";

/// The other side of the documented difference (sendfiled.3, "Where a
/// transfer runs"): the attempt uses the caller's credentials, so a file
/// the caller may not open is the daemon's to send, with the daemon's
/// permissions, exactly as without inline first; the caller never sees
/// its own EACCES. The caller is this test binary run again as uid and gid
/// 65534 against a daemon running as root; needs root, else says so.
#[test]
fn a_file_only_the_daemon_may_read_is_the_daemons_to_send() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    const NAME: &str = "a_file_only_the_daemon_may_read_is_the_daemons_to_send";
    if let Some(socket) = std::env::var_os(AS_CALLER_ENV) {
        return as_the_unprivileged_caller(std::path::Path::new(&socket));
    }
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("note: not root: no less privileged caller to run; not tested here");
        return;
    }
    let d = Daemon::start_with(&["--socket-mode", "666"]);
    // The caller must reach the root (and its own copy of this binary) to
    // attempt anything at all.
    std::fs::set_permissions(d.root(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let secret = d.write("secret.bin", &pattern(4096));
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    d.write("public.bin", &pattern(4096));
    let exe = d.root().join("caller-test-binary");
    std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();

    let c = d.client();
    let before = counters(&c);
    let out = std::process::Command::new(&exe)
        .args([NAME, "--exact", "--nocapture", "--test-threads=1"])
        .env(AS_CALLER_ENV, d.socket())
        .uid(65534)
        .gid(65534)
        .output();
    let out = match out {
        Ok(out) => out,
        // A temporary directory mounted noexec, or a system that refuses
        // the change of user.
        Err(e) if matches!(e.raw_os_error(), Some(libc::EACCES) | Some(libc::EPERM)) => {
            eprintln!("note: cannot run a caller as uid 65534 here ({e}); not tested");
            return;
        }
        Err(e) => panic!("run the caller: {e}"),
    };
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "the caller failed: {said}");
    assert!(
        said.contains("caller: done"),
        "the caller's role did not run: {said}"
    );
    let after = counters(&c);
    // The secret reached the daemon (a plain Send: nothing was opened to
    // pass); the public file did only where the attempt is off.
    let expect = if said.contains("caller: attempted") {
        1
    } else {
        2
    };
    assert_eq!(
        after.0,
        before.0 + expect,
        "completed by the daemon: {said}"
    );
    assert_eq!(
        after.1, before.1,
        "no hand-off: the caller could open nothing to pass"
    );
}

/// The caller's half of the test above, as uid 65534.
fn as_the_unprivileged_caller(socket: &std::path::Path) {
    assert_eq!(unsafe { libc::geteuid() }, 65534);
    let c = Client::connect_path(socket).expect("connect as the caller");
    let data = pattern(4096);
    let stats0 = inline::stats();
    let (a, b) = UnixStream::pair().unwrap();
    let ch = c.send("secret.bin", a.as_fd(), Range::WHOLE).expect("send");
    assert_eq!(drain(&b, data.len()), data, "the daemon's bytes");
    let done = complete(&ch);
    assert!(done.complete && done.error.is_none(), "{done:?}");
    let stats1 = inline::stats();
    let (a, b) = UnixStream::pair().unwrap();
    let ch = c.send("public.bin", a.as_fd(), Range::WHOLE).expect("send");
    assert_eq!(drain(&b, data.len()), data);
    assert!(complete(&ch).complete);
    let stats2 = inline::stats();
    if c.inline().is_some() {
        // The attempt ran, as this uid: refused the secret (handed over
        // whole), finished the file it may read.
        assert_eq!(stats1.handed_on_whole, stats0.handed_on_whole + 1);
        assert_eq!(stats1.finished, stats0.finished);
        assert_eq!(stats2.finished, stats1.finished + 1);
        println!("caller: attempted");
    } else {
        assert!(
            !inline::in_effect(),
            "the handshake failed for a caller that can open the root"
        );
    }
    println!("caller: done");
}
