//! Headers and trailers with the file: one request, in order.

mod common;

use std::net::{TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;

use common::*;
use rstest::rstest;
use sendfiled_client::client::{HeaderTrailer, Range, Response};
use sendfiled_client::protocol::MAX_HDTR_LEN;

fn hdtr(h: &[u8], t: &[u8]) -> HeaderTrailer {
    HeaderTrailer {
        header: h.to_vec(),
        trailer: t.to_vec(),
    }
}

#[rstest]
#[case::header_only(b"HEAD".as_slice(), b"".as_slice(), 100)]
#[case::trailer_only(b"".as_slice(), b"TAIL".as_slice(), 100)]
#[case::both(b"HEAD".as_slice(), b"TAIL".as_slice(), 100)]
#[case::empty_file_with_both(b"HEAD".as_slice(), b"TAIL".as_slice(), 0)]
#[case::big_both(&[b'h'; 3000], &[b't'; 3000], 300_000)]
fn send_and_send_open_put_header_file_trailer_in_order(
    #[case] h: &[u8],
    #[case] t: &[u8],
    #[case] size: usize,
) {
    let d = Daemon::start();
    let data = pattern(size);
    d.write("f", &data);
    let want = [h, &data[..], t].concat();
    let c = d.client();

    // Send with header/trailer.
    let (r, w) = pipe();
    let st = c
        .send_hdtr("f", w.as_fd(), Range::WHOLE, hdtr(h, t))
        .unwrap();
    drop(w);
    let got = std::thread::scope(|s| {
        let reader = s.spawn(|| read_to_end(r.as_fd()));
        let done = complete(&st);
        assert!(done.complete, "{done:?}");
        // Progress (counting header and trailer bytes) is reported only
        // for what moved before a wait, so it never reaches the total.
        assert!((done.progress as usize) < want.len().max(1), "{done:?}");
        assert_eq!(done.info.unwrap().size, size, "size counts the file only");
        reader.join().unwrap()
    });
    assert!(got == want);

    // Open + Send Open with header/trailer, to a socket.
    let (a, b) = UnixStream::pair().unwrap();
    let st = c.open("f", Range::WHOLE).unwrap();
    let Some(Response::FileInfo(info)) = st.recv_timeout(WAIT).unwrap() else {
        panic!("no info")
    };
    c.send_open_hdtr(info.txnid as u64, b.as_fd(), hdtr(h, t))
        .unwrap();
    drop(b);
    let got = std::thread::scope(|s| {
        let reader = s.spawn(|| read_to_end(a.as_fd()));
        assert!(complete(&st).complete);
        reader.join().unwrap()
    });
    assert!(got == want);
}

#[test]
fn ranges_with_header_and_trailer() {
    let d = Daemon::start();
    let data = pattern(10_000);
    d.write("f", &data);
    let (r, w) = pipe();
    let st = d
        .client()
        .send_hdtr(
            "f",
            w.as_fd(),
            Range {
                offset: 1234,
                len: 5000,
            },
            hdtr(b"<<", b">>"),
        )
        .unwrap();
    drop(w);
    let got = read_to_end(r.as_fd());
    assert!(complete(&st).complete);
    assert!(got == [&b"<<"[..], &data[1234..6234], b">>"].concat());
}

#[test]
fn big_file_with_a_4k_header_to_a_slow_reader() {
    let d = Daemon::start();
    let size = 64 << 20;
    let data = pattern(size);
    d.write("big", &data);
    let header = vec![b'H'; 4096];
    let trailer = b"\r\n0\r\n\r\n".to_vec();
    let (a, b) = UnixStream::pair().unwrap();
    let st = d
        .client()
        .send_hdtr("big", b.as_fd(), Range::WHOLE, hdtr(&header, &trailer))
        .unwrap();
    drop(b);
    // The reader takes small bites, so the daemon meets a full destination
    // again and again.
    let got = std::thread::scope(|s| {
        let reader = s.spawn(|| read_in_small_bites(&a, size + 8192));
        let done = complete(&st);
        assert!(done.complete);
        // The reader's small bites made it wait: progress came, and it
        // counts file bytes only, short of the file info's size.
        assert!(done.progress > 0, "{done:?}");
        assert!((done.progress as usize) < size, "{done:?}");
        reader.join().unwrap()
    });
    assert_eq!(got.len(), size + header.len() + trailer.len());
    assert!(got[..4096] == header[..]);
    assert!(got[4096..4096 + size] == data[..]);
    assert!(got[4096 + size..] == trailer[..]);
}

#[test]
fn header_and_trailer_at_the_limit_work_and_one_more_byte_is_emsgsize() {
    let d = Daemon::start();
    d.write("f", b"x");
    let c = d.client();
    let h = vec![b'h'; MAX_HDTR_LEN - 100];
    let t = vec![b't'; 100];
    let (r, w) = pipe();
    let st = c
        .send_hdtr("f", w.as_fd(), Range::WHOLE, hdtr(&h, &t))
        .unwrap();
    drop(w);
    let got = read_to_end(r.as_fd());
    assert!(complete(&st).complete);
    assert_eq!(got.len(), MAX_HDTR_LEN + 1);

    let (_r, w) = pipe();
    let t = vec![b't'; 101];
    let err = c
        .send_hdtr("f", w.as_fd(), Range::WHOLE, hdtr(&h, &t))
        .unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EMSGSIZE));
    let err = c.send_open_hdtr(1, w.as_fd(), hdtr(&h, &t)).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EMSGSIZE));
}

// F_SETPIPE_SZ (a pipe smaller than the header) is Linux's.
#[cfg(target_os = "linux")]
#[test]
fn cancel_in_the_middle_of_the_header() {
    let d = Daemon::start();
    d.write("f", b"file data");
    let (r, w) = pipe();
    // A one-page pipe: the 8 KiB header cannot go out whole.
    // SAFETY: fcntl on a pipe we own.
    let page = unsafe {
        libc::fcntl(
            std::os::fd::AsRawFd::as_raw_fd(&w),
            libc::F_SETPIPE_SZ,
            4096,
        )
    };
    assert!(page >= 4096);
    let header = vec![b'H'; 8000];
    let c = d.client();
    let st = c
        .send_hdtr("f", w.as_fd(), Range::WHOLE, hdtr(&header, b"T"))
        .unwrap();
    drop(w);
    let Some(Response::FileInfo(info)) = st.recv_timeout(WAIT).unwrap() else {
        panic!("no info")
    };
    c.cancel(info.txnid as u64).unwrap();
    let done = complete(&st);
    assert!(done.closed && done.error.is_none(), "{done:?}");
    let got = read_to_end(r.as_fd());
    assert!(got.len() < header.len(), "only part of the header went out");
    assert!(
        got.iter().all(|&b| b == b'H'),
        "and nothing but header bytes"
    );
}

#[test]
fn header_comes_first_on_tcp() {
    let d = Daemon::start();
    let data = pattern(100_000);
    d.write("f", &data);
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let out = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (inc, _) = l.accept().unwrap();
    let header = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n";
    let st = d
        .client()
        .send_hdtr("f", out.as_fd(), Range::WHOLE, hdtr(header, b""))
        .unwrap();
    drop(out);
    assert!(sendfiled_core::sys::wait_readable(inc.as_fd(), WAIT).unwrap());
    let mut first = vec![0u8; 65536];
    let n = sendfiled_core::sys::read(inc.as_fd(), &mut first).unwrap();
    // Order is asserted; segmentation is only reported (MSG_MORE lets the
    // header share a segment with the first file bytes where it can).
    assert!(n >= 1 && first[..n.min(header.len())] == header[..n.min(header.len())]);
    eprintln!("first recv on TCP: {n} bytes (header is {})", header.len());
    let rest = read_to_end(inc.as_fd());
    let all = [&first[..n], &rest[..]].concat();
    assert!(all == [&header[..], &data[..]].concat());
    assert!(complete(&st).complete);
}

/// Progress counts file bytes only (issue 23, row 9): a 4 KiB header, a
/// 2,093,056-byte file and a 4,000-byte trailer, drained slowly, once
/// reported 2,097,152 bytes of progress, more than the file's size.
#[test]
fn progress_counts_file_bytes_only() {
    let d = Daemon::start();
    let size = 2_093_056;
    let data = pattern(size);
    d.write("f", &data);
    let header = vec![b'H'; 4096];
    let trailer = vec![b'T'; 4000];
    let total = size + header.len() + trailer.len();
    let (a, b) = UnixStream::pair().unwrap();
    let st = d
        .client()
        .daemon_only()
        .send_hdtr("f", b.as_fd(), Range::WHOLE, hdtr(&header, &trailer))
        .unwrap();
    drop(b);
    let got = std::thread::scope(|s| {
        let reader = s.spawn(|| read_in_small_bites(&a, total));
        let done = complete(&st);
        assert!(done.complete, "{done:?}");
        assert_eq!(done.info.map(|i| i.size), Some(size));
        assert!((done.progress as usize) < size, "{done:?}");
        reader.join().unwrap()
    });
    assert_eq!(got.len(), total);
}

/// Reads `sock` to its end 4 KiB at a time, so that the daemon meets a full
/// destination again and again.
fn read_in_small_bites(sock: &UnixStream, expect: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(expect);
    let mut buf = vec![0u8; 4096];
    loop {
        assert!(sendfiled_core::sys::wait_readable(sock.as_fd(), WAIT).unwrap());
        match sendfiled_core::sys::read(sock.as_fd(), &mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) => panic!("{e}"),
        }
    }
}
