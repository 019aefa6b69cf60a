//! Every operation of the daemon, end to end, against the real binary.

mod common;

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;

use common::*;
use rstest::rstest;
use sendfiled_client::client::{HeaderTrailer, Range, Response};
use sendfiled_client::protocol::{SFD_FILE_INFO, SFD_XFER_STAT};

#[rstest]
#[case::whole(0, 0, 0, 1000)]
#[case::offset(100, 0, 100, 900)]
#[case::offset_and_len(100, 50, 100, 50)]
#[case::len_past_eof(990, 50, 990, 10)]
#[case::offset_at_eof(1000, 0, 1000, 0)]
#[case::offset_past_eof(5000, 10, 1000, 0)]
fn read_returns_the_range_clipped_to_the_file(
    #[case] offset: u64,
    #[case] len: u64,
    #[case] from: usize,
    #[case] count: usize,
) {
    let d = Daemon::start();
    let data = pattern(1000);
    d.write("f.bin", &data);
    let mut ch = d.client().read("f.bin", Range { offset, len }).unwrap();
    let info = ch.file_info().unwrap();
    assert_eq!(info.size, count);
    assert_ne!(info.txnid, 0);
    let mut got = Vec::new();
    ch.read_to_end(&mut got).unwrap();
    assert_eq!(got, &data[from..from + count]);
}

#[test]
fn file_info_carries_the_file_times() {
    let d = Daemon::start();
    let p = d.write("t.txt", b"x");
    let md = std::fs::metadata(&p).unwrap();
    use std::os::unix::fs::MetadataExt;
    let mut ch = d.client().read("t.txt", Range::WHOLE).unwrap();
    let info = ch.file_info().unwrap();
    assert_eq!(info.mtime, md.mtime());
    assert_eq!(info.ctime, md.ctime());
    assert_eq!(info.atime, md.atime());
}

#[test]
fn zero_length_file_reads_and_sends_cleanly() {
    let d = Daemon::start();
    d.write("empty", b"");
    let mut ch = d.client().read("empty", Range::WHOLE).unwrap();
    assert_eq!(ch.file_info().unwrap().size, 0);
    let mut got = Vec::new();
    ch.read_to_end(&mut got).unwrap();
    assert!(got.is_empty());

    let (r, w) = pipe();
    let st = d.client().send("empty", w.as_fd(), Range::WHOLE).unwrap();
    drop(w);
    let c = complete(&st);
    assert!(c.complete, "{c:?}");
    assert_eq!(c.info.unwrap().size, 0);
    assert_eq!(c.progress, 0);
    assert!(read_to_end(r.as_fd()).is_empty());
}

#[test]
fn missing_file_is_enoent_and_directory_is_einval() {
    let d = Daemon::start();
    std::fs::create_dir(d.root().join("dir")).unwrap();
    let mut ch = d.client().read("nope", Range::WHOLE).unwrap();
    assert_eq!(
        ch.file_info().unwrap_err().raw_os_error(),
        Some(libc::ENOENT)
    );
    let mut ch = d.client().read("dir", Range::WHOLE).unwrap();
    assert_eq!(
        ch.file_info().unwrap_err().raw_os_error(),
        Some(libc::EINVAL)
    );

    let (_r, w) = pipe();
    let st = d.client().send("nope", w.as_fd(), Range::WHOLE).unwrap();
    assert_eq!(
        st.recv_timeout(WAIT).unwrap(),
        Some(Response::Error {
            cmd: SFD_FILE_INFO,
            errno: libc::ENOENT
        })
    );
    assert_eq!(
        st.recv_timeout(WAIT).unwrap(),
        None,
        "channel closes after the error"
    );
    let st = d.client().open("dir", Range::WHOLE).unwrap();
    assert!(matches!(
        st.recv_timeout(WAIT).unwrap(),
        Some(Response::Error {
            errno: libc::EINVAL,
            ..
        })
    ));
}

#[test]
fn the_socket_file_is_not_served() {
    let d = Daemon::start();
    let name = d.name.clone();
    let mut ch = d.client().read(&name, Range::WHOLE).unwrap();
    assert_eq!(
        ch.file_info().unwrap_err().raw_os_error(),
        Some(libc::EINVAL)
    );
}

/// Sends `data` through the daemon to whatever `reader` drains, checking the
/// status channel's story and the bytes.
fn send_and_check(
    d: &Daemon,
    dest: std::os::fd::BorrowedFd<'_>,
    mut reader: impl FnMut() -> Vec<u8> + Send,
    size: usize,
) {
    let st = d.client().send("big.bin", dest, Range::WHOLE).unwrap();
    std::thread::scope(|s| {
        let h = s.spawn(&mut reader);
        let c = complete(&st);
        assert!(c.complete, "{c:?}");
        assert_eq!(c.info.unwrap().size, size);
        // Progress covers only what moved before a wait; the completion
        // covers the rest, so progress never reaches the size.
        assert!(
            c.progress < size as u64,
            "progress short of the size: {c:?}"
        );
        let got = h.join().unwrap();
        assert_eq!(got.len(), size);
        assert!(got == pattern(size), "bytes differ");
    });
}

const BIG: usize = 64 << 20;

#[test]
fn big_file_byte_exact_to_a_pipe() {
    let d = Daemon::start();
    d.write("big.bin", &pattern(BIG));
    let (r, w) = pipe();
    let wfd = w;
    send_and_check(&d, wfd.as_fd(), || read_exact_or_eof(r.as_fd(), BIG), BIG);
}

#[test]
fn big_file_byte_exact_to_a_unix_socketpair() {
    let d = Daemon::start();
    d.write("big.bin", &pattern(BIG));
    let (a, b) = UnixStream::pair().unwrap();
    send_and_check(&d, b.as_fd(), || read_exact_or_eof(a.as_fd(), BIG), BIG);
}

#[test]
fn big_file_byte_exact_over_tcp_loopback() {
    let d = Daemon::start();
    d.write("big.bin", &pattern(BIG));
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let out = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (inc, _) = l.accept().unwrap();
    send_and_check(&d, out.as_fd(), || read_exact_or_eof(inc.as_fd(), BIG), BIG);
}

#[test]
fn big_file_byte_exact_to_a_regular_file() {
    let d = Daemon::start();
    d.write("big.bin", &pattern(BIG));
    let outdir = tempfile::tempdir().unwrap();
    let outp = outdir.path().join("copy");
    let f = std::fs::File::create(&outp).unwrap();
    let st = d.client().send("big.bin", f.as_fd(), Range::WHOLE).unwrap();
    let c = complete(&st);
    assert!(c.complete, "{c:?}");
    assert!(std::fs::read(&outp).unwrap() == pattern(BIG));
}

#[test]
fn open_then_send_open_with_header_and_trailer() {
    let d = Daemon::start();
    d.write("page.html", b"<p>hi</p>");
    let c = d.client();
    let st = c.open("page.html", Range::WHOLE).unwrap();
    let Some(Response::FileInfo(info)) = st.recv_timeout(WAIT).unwrap() else {
        panic!("no file info")
    };
    assert_eq!(info.size, 9);
    let (r, w) = pipe();
    let header = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", info.size);
    let hdtr = HeaderTrailer {
        header: header.clone().into_bytes(),
        trailer: b"\r\n--".to_vec(),
    };
    c.send_open_hdtr(info.txnid as u64, w.as_fd(), hdtr)
        .unwrap();
    drop(w);
    let done = complete(&st);
    assert!(done.complete, "{done:?}");
    assert_eq!(
        done.progress, 0,
        "a small send that never waited reports no progress"
    );
    assert_eq!(
        read_to_end(r.as_fd()),
        format!("{header}<p>hi</p>\r\n--").into_bytes()
    );
}

#[test]
fn send_with_header_and_trailer_in_one_request() {
    let d = Daemon::start();
    d.write("f", b"BODY");
    let (r, w) = pipe();
    let st = d
        .client()
        .send_hdtr(
            "f",
            w.as_fd(),
            Range { offset: 1, len: 2 },
            HeaderTrailer {
                header: b"<".to_vec(),
                trailer: b">".to_vec(),
            },
        )
        .unwrap();
    drop(w);
    let c = complete(&st);
    assert!(c.complete);
    assert_eq!(c.info.unwrap().size, 2, "size counts the file range only");
    assert_eq!(read_to_end(r.as_fd()), b"<OD>");
}

#[test]
fn open_file_expires_with_etimedout() {
    let d = Daemon::start_with(&["-t", "100"]);
    d.write("f", b"data");
    let st = d.client().open("f", Range::WHOLE).unwrap();
    assert!(matches!(
        st.recv_timeout(WAIT).unwrap(),
        Some(Response::FileInfo(_))
    ));
    assert_eq!(
        st.recv_timeout(WAIT).unwrap(),
        Some(Response::Error {
            cmd: SFD_XFER_STAT,
            errno: libc::ETIMEDOUT
        })
    );
    assert_eq!(st.recv_timeout(WAIT).unwrap(), None);
}

#[test]
fn send_open_of_an_unknown_id_sends_nothing() {
    let d = Daemon::start();
    let (r, w) = pipe();
    d.client().send_open(12345, w.as_fd()).unwrap();
    drop(w);
    // The daemon closed its copy of the destination without writing.
    assert!(read_to_end(r.as_fd()).is_empty());
}

#[test]
fn cancel_mid_transfer_stops_the_data_and_closes_the_channel_silently() {
    let d = Daemon::start();
    d.write("big.bin", &pattern(8 << 20));
    let (r, w) = pipe();
    let c = d.client();
    let st = c.send("big.bin", w.as_fd(), Range::WHOLE).unwrap();
    drop(w);
    let Some(Response::FileInfo(info)) = st.recv_timeout(WAIT).unwrap() else {
        panic!("no info")
    };
    // Nobody reads the pipe: the transfer is stuck on a full destination.
    c.cancel(info.txnid as u64).unwrap();
    let mut saw = Vec::new();
    while let Some(m) = st.recv_timeout(WAIT).unwrap() {
        saw.push(m);
    }
    assert!(
        saw.iter().all(|m| matches!(m, Response::Progress(_))),
        "nothing but progress before end of file: {saw:?}"
    );
    let got = read_to_end(r.as_fd());
    assert!(
        got.len() < 8 << 20,
        "the destination got no more after the cancel"
    );
    assert!(got == pattern(got.len()), "what came is the file's start");
    assert!(eventually(|| d.live() == 0));
}

#[test]
fn emfile_at_the_limit_and_slots_come_back_after_cancel_and_completion() {
    let d = Daemon::start_with(&["-n", "2"]);
    d.write("f", b"abc");
    let c = d.client();
    let open_info =
        |ch: &sendfiled_client::client::StatusChannel| match ch.recv_timeout(WAIT).unwrap() {
            Some(Response::FileInfo(i)) => Ok(i),
            Some(Response::Error { errno, .. }) => Err(errno),
            other => panic!("{other:?}"),
        };
    let a = c.open("f", Range::WHOLE).unwrap();
    let ia = open_info(&a).unwrap();
    let b = c.open("f", Range::WHOLE).unwrap();
    let _ib = open_info(&b).unwrap();
    let x = c.open("f", Range::WHOLE).unwrap();
    assert_eq!(
        open_info(&x),
        Err(libc::EMFILE),
        "exactly -n transfers, no rounding"
    );
    // Cancel one while the other stays held: its slot is free again.
    c.cancel(ia.txnid as u64).unwrap();
    assert_eq!(
        a.recv_timeout(WAIT).unwrap(),
        None,
        "end of file, no message"
    );
    let y = c.open("f", Range::WHOLE).unwrap();
    let iy = open_info(&y).unwrap();
    // Completion frees a slot too.
    let (r, w) = pipe();
    c.send_open(iy.txnid as u64, w.as_fd()).unwrap();
    drop(w);
    assert!(complete(&y).complete);
    assert_eq!(read_to_end(r.as_fd()), b"abc");
    let z = c.open("f", Range::WHOLE).unwrap();
    assert!(open_info(&z).is_ok());
}

#[test]
fn thirty_two_concurrent_clients() {
    let d = Daemon::start();
    for i in 0..32 {
        d.write(&format!("f{i}"), &pattern(100_000 + i * 777));
    }
    std::thread::scope(|s| {
        for i in 0..32 {
            let d = &d;
            s.spawn(move || {
                let c = d.client();
                for _ in 0..4 {
                    let mut ch = c.read(&format!("f{i}"), Range::WHOLE).unwrap();
                    let mut got = Vec::new();
                    ch.read_to_end(&mut got).unwrap();
                    assert!(got == pattern(100_000 + i * 777));
                }
            });
        }
    });
    assert!(eventually(|| d.live() == 0));
}

#[test]
fn a_stalled_destination_does_not_hold_up_others() {
    let d = Daemon::start();
    d.write("big.bin", &pattern(4 << 20));
    d.write("small", b"small file");
    let (stalled_r, w) = pipe();
    let c = d.client();
    let st = c.send("big.bin", w.as_fd(), Range::WHOLE).unwrap();
    drop(w);
    // While nobody reads the stalled pipe, other transfers finish.
    for _ in 0..50 {
        let mut ch = c.read("small", Range::WHOLE).unwrap();
        let mut got = Vec::new();
        ch.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"small file");
    }
    let got = read_exact_or_eof(stalled_r.as_fd(), 4 << 20);
    assert!(got == pattern(4 << 20));
    assert!(complete(&st).complete);
}

#[test]
fn client_closing_its_status_channel_early_ends_the_transfer() {
    let d = Daemon::start();
    d.write("big.bin", &pattern(8 << 20));
    let (r, w) = pipe();
    let st = d.client().send("big.bin", w.as_fd(), Range::WHOLE).unwrap();
    drop(w);
    drop(st);
    // The daemon notices, drops the transfer and closes the destination.
    let got = read_to_end(r.as_fd());
    assert!(got.len() <= 8 << 20);
    assert!(eventually(|| d.live() == 0));
    // And goes on serving.
    d.write("f", b"ok");
    let mut ch = d.client().read("f", Range::WHOLE).unwrap();
    assert_eq!(ch.file_info().unwrap().size, 2);
}

#[test]
fn destination_closed_mid_transfer_is_epipe() {
    let d = Daemon::start();
    d.write("big.bin", &pattern(8 << 20));
    let (a, b) = UnixStream::pair().unwrap();
    let st = d.client().send("big.bin", b.as_fd(), Range::WHOLE).unwrap();
    drop(b);
    assert!(matches!(
        st.recv_timeout(WAIT).unwrap(),
        Some(Response::FileInfo(_))
    ));
    drop(a);
    let c = complete(&st);
    assert_eq!(c.error, Some(libc::EPIPE), "{c:?}");
}

#[test]
fn status_report_counts_transfers() {
    let d = Daemon::start();
    d.write("f", b"12345");
    // The daemon's counters count what the daemon did: the attempt off.
    let mut ch = d.client().daemon_only().read("f", Range::WHOLE).unwrap();
    let mut v = Vec::new();
    ch.read_to_end(&mut v).unwrap();
    let s = d.client().server_status(WAIT).unwrap();
    assert_eq!(s.completed, 1);
    assert_eq!(s.bytes, 5);
    assert_eq!(s.live, 0);
    assert_eq!(s.version, sendfiled_client::protocol::PROTOCOL_VERSION);
}

#[test]
fn paths_resolve_beneath_the_root() {
    let d = Daemon::start();
    d.write("sub/in.txt", b"inside");
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), b"secret").unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret"), d.root().join("link-out")).unwrap();
    std::os::unix::fs::symlink("sub/in.txt", d.root().join("link-in")).unwrap();
    let c = d.client();
    let read = |p: &str| {
        let mut ch = c.read(p, Range::WHOLE).unwrap();
        ch.file_info().map(|_| {
            let mut v = Vec::new();
            ch.read_to_end(&mut v).unwrap();
            v
        })
    };
    assert_eq!(
        read("/sub/in.txt").unwrap(),
        b"inside",
        "a leading / is the root"
    );
    assert_eq!(
        read("link-in").unwrap(),
        b"inside",
        "symlinks inside the root are followed"
    );
    let rel = format!(
        "../{}/secret",
        outside.path().file_name().unwrap().to_str().unwrap()
    );
    for p in ["../secret", rel.as_str(), "link-out", "sub/../../secret"] {
        let e = read(p).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EACCES), "{p}");
    }
}

// ----- what a client written for the original sees -----

#[test]
fn a_small_send_says_file_info_then_completion_and_nothing_else() {
    use sendfiled_client::protocol::{FILE_INFO_LEN, XFER_STAT_LEN};
    let d = Daemon::start();
    d.write("small", b"0123456789");
    let (r, w) = pipe();
    let st = d.client().send("small", w.as_fd(), Range::WHOLE).unwrap();
    drop(w);
    let raw = read_to_end(st.as_fd());
    assert_eq!(raw.len(), FILE_INFO_LEN + XFER_STAT_LEN, "{raw:?}");
    assert!(matches!(
        Response::decode(&raw[..FILE_INFO_LEN]),
        Some(Response::FileInfo(i)) if i.size == 10
    ));
    assert_eq!(
        Response::decode(&raw[FILE_INFO_LEN..]),
        Some(Response::Complete)
    );
    assert_eq!(read_to_end(r.as_fd()), b"0123456789");
}

#[test]
fn send_open_of_a_small_file_writes_one_completion() {
    use sendfiled_client::protocol::XFER_STAT_LEN;
    let d = Daemon::start();
    d.write("small", b"abc");
    let c = d.client();
    let st = c.open("small", Range::WHOLE).unwrap();
    let Some(Response::FileInfo(info)) = st.recv_timeout(WAIT).unwrap() else {
        panic!("no info")
    };
    let (r, w) = pipe();
    c.send_open(info.txnid as u64, w.as_fd()).unwrap();
    drop(w);
    let raw = read_to_end(st.as_fd());
    assert_eq!(raw.len(), XFER_STAT_LEN, "{raw:?}");
    assert_eq!(Response::decode(&raw), Some(Response::Complete));
    assert_eq!(read_to_end(r.as_fd()), b"abc");
}

#[rstest]
#[case::root("/", libc::EINVAL)]
#[case::slashes("//", libc::EINVAL)]
#[case::many_slashes("////", libc::EINVAL)]
#[case::empty("", libc::ENOENT)]
fn the_root_itself_is_einval_and_the_empty_path_enoent(#[case] path: &str, #[case] errno: i32) {
    let d = Daemon::start();
    let c = d.client();
    let mut ch = c.read(path, Range::WHOLE).unwrap();
    assert_eq!(ch.file_info().unwrap_err().raw_os_error(), Some(errno));
    let (_r, w) = pipe();
    for st in [
        c.send(path, w.as_fd(), Range::WHOLE).unwrap(),
        c.open(path, Range::WHOLE).unwrap(),
    ] {
        assert_eq!(
            st.recv_timeout(WAIT).unwrap(),
            Some(Response::Error {
                cmd: SFD_FILE_INFO,
                errno
            })
        );
        assert_eq!(st.recv_timeout(WAIT).unwrap(), None);
    }
}

#[test]
fn cancel_of_an_open_file_and_of_a_read_is_end_of_file() {
    let d = Daemon::start();
    let big = pattern(8 << 20);
    d.write("big.bin", &big);
    let c = d.client();
    let opened = c.open("big.bin", Range::WHOLE).unwrap();
    let Some(Response::FileInfo(oi)) = opened.recv_timeout(WAIT).unwrap() else {
        panic!("no info")
    };
    c.cancel(oi.txnid as u64).unwrap();
    let done = complete(&opened);
    assert!(
        done.closed && !done.complete && done.error.is_none(),
        "{done:?}"
    );

    // A Read bigger than its pipe, never read: stuck, then cancelled. What
    // the pipe holds is the file's start and nothing else, then EOF.
    let mut rd = c.read("big.bin", Range::WHOLE).unwrap();
    let ri = rd.file_info().unwrap();
    c.cancel(ri.txnid as u64).unwrap();
    let rest = read_to_end(rd.as_fd());
    assert!(rest.len() < big.len());
    assert!(rest == big[..rest.len()], "only file bytes, no message");
    assert!(eventually(|| d.live() == 0));
}

#[test]
fn send_open_after_the_deadline_is_refused() {
    const TIMEOUT_MS: u64 = 20;
    let d = Daemon::start_with(&["-t", &TIMEOUT_MS.to_string()]);
    d.write("f", b"data");
    let c = d.client();
    for run in 0..20 {
        let st = c.open("f", Range::WHOLE).unwrap();
        let Some(Response::FileInfo(info)) = st.recv_timeout(WAIT).unwrap() else {
            panic!("no info")
        };
        // The daemon set the deadline before it wrote the info: once this
        // long has passed since the info arrived, the deadline has too.
        wait_until(std::time::Instant::now() + std::time::Duration::from_millis(TIMEOUT_MS));
        let (r, w) = pipe();
        c.send_open(info.txnid as u64, w.as_fd()).unwrap();
        drop(w);
        assert_eq!(
            st.recv_timeout(WAIT).unwrap(),
            Some(Response::Error {
                cmd: SFD_XFER_STAT,
                errno: libc::ETIMEDOUT
            }),
            "run {run}"
        );
        assert_eq!(st.recv_timeout(WAIT).unwrap(), None);
        assert!(read_to_end(r.as_fd()).is_empty(), "run {run}: no data");
    }
}
