//! Every operation of the daemon, end to end, against the real binary.

mod common;

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;

use common::*;
use rstest::rstest;
use sendfiled_core::client::{HeaderTrailer, Range, Response};
use sendfiled_core::protocol::{SFD_FILE_INFO, SFD_XFER_STAT};

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
        assert_eq!(c.progress, size as u64, "progress adds up to the size");
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
        done.progress as usize,
        header.len() + 9 + 4,
        "progress counts header and trailer"
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
fn cancel_mid_transfer_stops_the_data_and_says_ecanceled() {
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
    let mut saw = None;
    while let Some(m) = st.recv_timeout(WAIT).unwrap() {
        if let Response::Error { cmd, errno } = m {
            saw = Some((cmd, errno));
        }
    }
    assert_eq!(saw, Some((SFD_XFER_STAT, libc::ECANCELED)));
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
        |ch: &sendfiled_core::client::StatusChannel| match ch.recv_timeout(WAIT).unwrap() {
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
    assert!(matches!(
        a.recv_timeout(WAIT).unwrap(),
        Some(Response::Error {
            errno: libc::ECANCELED,
            ..
        })
    ));
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
    let mut ch = d.client().read("f", Range::WHOLE).unwrap();
    let mut v = Vec::new();
    ch.read_to_end(&mut v).unwrap();
    let s = d.client().server_status(WAIT).unwrap();
    assert_eq!(s.completed, 1);
    assert_eq!(s.bytes, 5);
    assert_eq!(s.live, 0);
    assert_eq!(s.version, sendfiled_core::protocol::PROTOCOL_VERSION);
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
