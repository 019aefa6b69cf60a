//! The async client (`sendfiled_client::AsyncClient`, feature `tokio`)
//! against the real daemon: every operation, the daemon's errors,
//! cancellation by dropping a future (before and after the file info), and
//! many concurrent transfers on one runtime. Rule: each test starts its own
//! daemon on its own temporary root; nothing waits on a sleep.

mod common;

use std::future::Future;
use std::io;
use std::os::fd::AsFd;
use std::pin::Pin;
use std::task::Poll;

use common::{eventually, pattern, Daemon, WAIT};

use sendfiled_client::{AsyncClient, HeaderTrailer, Range, Sent};
use tokio::io::AsyncReadExt;
use tokio::net::UnixStream;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn connect(d: &Daemon) -> AsyncClient {
    AsyncClient::connect(d.root(), &d.name).expect("connect")
}

/// A client whose every request goes to the daemon: for the tests that
/// read the daemon's own view of open files (its `live` count). An open
/// the kernel's caches answer is held in the tokio client itself when the
/// attempt is on (tests/inline.rs tests those).
fn connect_daemon_only(d: &Daemon) -> AsyncClient {
    AsyncClient::new(d.client().daemon_only()).expect("connect")
}

/// A stream socket pair: the daemon writes to the first, a task reads the
/// second to end of file (which comes once both our end and the daemon's
/// copy are closed).
fn dest_pair() -> (UnixStream, tokio::task::JoinHandle<Vec<u8>>) {
    let (a, mut b) = UnixStream::pair().unwrap();
    let reader = tokio::spawn(async move {
        let mut out = Vec::new();
        tokio::time::timeout(WAIT, b.read_to_end(&mut out))
            .await
            .expect("destination reached end of file in time")
            .unwrap();
        out
    });
    (a, reader)
}

/// Waits (off the runtime's worker, on the daemon's own report) until the
/// daemon has `n` live transfers.
fn live_becomes(d: &Daemon, n: u64) -> bool {
    tokio::task::block_in_place(|| eventually(|| d.live() == n))
}

async fn within<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, f).await.expect("in time")
}

#[test]
fn every_operation_moves_the_right_bytes() {
    let d = Daemon::start();
    let data = pattern(300_000);
    d.write("f.bin", &data);
    runtime().block_on(async {
        let c = connect(&d);

        // Send, whole file.
        let (a, reader) = dest_pair();
        let sent = within(c.send("f.bin", a.as_fd(), Range::WHOLE))
            .await
            .unwrap();
        assert_eq!(sent.info.size, data.len());
        assert!(sent.progress < data.len() as u64);
        drop(a);
        assert_eq!(reader.await.unwrap(), data);

        // Send with header and trailer, a range.
        let (a, reader) = dest_pair();
        let hdtr = HeaderTrailer {
            header: b"<head>".to_vec(),
            trailer: b"</tail>".to_vec(),
        };
        let range = Range {
            offset: 1000,
            len: 5000,
        };
        let sent = within(c.send_hdtr("f.bin", a.as_fd(), range, hdtr))
            .await
            .unwrap();
        assert_eq!(sent.info.size, 5000);
        drop(a);
        let mut want = b"<head>".to_vec();
        want.extend_from_slice(&data[1000..6000]);
        want.extend_from_slice(b"</tail>");
        assert_eq!(reader.await.unwrap(), want);

        // Open, then Send Open with a header.
        let file = within(c.open("f.bin", Range::WHOLE)).await.unwrap();
        assert_eq!(file.info().size, data.len());
        let meta = std::fs::metadata(d.root().join("f.bin")).unwrap();
        assert_eq!(
            file.info().mtime as i64,
            std::os::unix::fs::MetadataExt::mtime(&meta)
        );
        let (a, reader) = dest_pair();
        let hdtr = HeaderTrailer {
            header: b"HEAD".to_vec(),
            trailer: Vec::new(),
        };
        let Sent { info, .. } = within(file.send_open_hdtr(a.as_fd(), hdtr)).await.unwrap();
        assert_eq!(info.size, data.len());
        drop(a);
        let got = reader.await.unwrap();
        assert_eq!(&got[..4], b"HEAD");
        assert_eq!(&got[4..], &data[..]);

        // Open, then plain Send Open.
        let file = within(c.open(
            "f.bin",
            Range {
                offset: 10,
                len: 20,
            },
        ))
        .await
        .unwrap();
        let (a, reader) = dest_pair();
        within(file.send_open(a.as_fd())).await.unwrap();
        drop(a);
        assert_eq!(reader.await.unwrap(), &data[10..30]);

        // Read: an AsyncRead of the data.
        let mut r = within(c.read("f.bin", Range::WHOLE)).await.unwrap();
        assert_eq!(r.info().size, data.len());
        let mut got = Vec::new();
        within(r.read_to_end(&mut got)).await.unwrap();
        assert_eq!(got, data);

        // Cancel by id: the opened file's channel closes without a message.
        let file = within(c.open("f.bin", Range::WHOLE)).await.unwrap();
        within(c.cancel(file.txnid())).await.unwrap();
        let (a, reader) = dest_pair();
        let e = within(file.send_open(a.as_fd())).await.unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ECANCELED), "{e}");
        drop(a);
        assert!(reader.await.unwrap().is_empty());
    });
    assert!(live_becomes(&d, 0));
}

#[test]
fn errors_carry_the_daemons_errno() {
    let d = Daemon::start_with(&["-t", "300"]);
    d.write("dir/f.txt", b"x");
    runtime().block_on(async {
        let c = connect_daemon_only(&d);
        let errno = |r: io::Result<()>| r.unwrap_err().raw_os_error();
        let (a, _reader) = dest_pair();
        let send = c.send("missing", a.as_fd(), Range::WHOLE);
        assert_eq!(errno(within(send).await.map(drop)), Some(libc::ENOENT));
        let open = c.open("missing", Range::WHOLE);
        assert_eq!(errno(within(open).await.map(drop)), Some(libc::ENOENT));
        let read = c.read("missing", Range::WHOLE);
        assert_eq!(errno(within(read).await.map(drop)), Some(libc::ENOENT));
        // A directory is not a regular file.
        let read = c.read("dir", Range::WHOLE);
        assert_eq!(errno(within(read).await.map(drop)), Some(libc::EINVAL));
        let open = c.open("dir/f.txt/x", Range::WHOLE);
        assert_eq!(errno(within(open).await.map(drop)), Some(libc::ENOTDIR));
        // An opened file not sent within the open-file timeout (-t 300 ms):
        // the channel says ETIMEDOUT, and so does the late Send Open.
        let file = within(c.open("dir/f.txt", Range::WHOLE)).await.unwrap();
        let (a, reader) = dest_pair();
        // The daemon's own report says when the open file has timed out.
        assert!(live_becomes(&d, 0), "the open file never timed out");
        let e = within(file.send_open(a.as_fd())).await.unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ETIMEDOUT), "{e}");
        drop(a);
        assert!(reader.await.unwrap().is_empty());
    });
}

/// Polls `fut` until `stop(&fut)` holds (checked after every poll), or
/// returns its output if it resolves first.
async fn poll_until<F: Future + Unpin>(
    fut: &mut F,
    stop: impl Fn(&F) -> bool,
) -> Option<F::Output> {
    std::future::poll_fn(|cx| match Pin::new(&mut *fut).poll(cx) {
        Poll::Ready(v) => Poll::Ready(Some(v)),
        Poll::Pending if stop(fut) => Poll::Ready(None),
        Poll::Pending => Poll::Pending,
    })
    .await
}

/// Reads a blocking stream socket to end of file on a thread.
fn drain(b: std::os::unix::net::UnixStream) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || common::read_to_end(b.as_fd()).len())
}

const BIG: usize = 16 << 20;

#[test]
fn dropping_a_send_after_the_file_info_cancels_it_by_id() {
    let d = Daemon::start();
    d.write("big", &pattern(BIG));
    let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
    runtime().block_on(async {
        let c = connect(&d);
        // Nobody reads `b` yet: the transfer fills the socket and waits.
        let mut t = c.send("big", a.as_fd(), Range::WHOLE);
        let early = within(poll_until(&mut t, |t| t.file_info().is_some())).await;
        assert!(
            early.is_none(),
            "a 16 MiB send to an unread socket finished"
        );
        assert!(live_becomes(&d, 1));
        drop(t);
    });
    drop(a);
    // The daemon closes its copy of the destination: end of file, early.
    let got = drain(b).join().unwrap();
    assert!(got < BIG, "all {got} bytes arrived after the cancel");
    assert!(live_becomes(&d, 0));
}

#[test]
fn dropping_a_send_before_the_file_info_closes_its_channel() {
    let d = Daemon::start();
    d.write("big", &pattern(BIG));
    let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
    runtime().block_on(async {
        let c = connect(&d);
        // Stop the daemon so that the file info cannot arrive: the request
        // is queued on its socket when the future is dropped.
        // SAFETY: signalling our own child.
        assert_eq!(unsafe { libc::kill(d.pid, libc::SIGSTOP) }, 0);
        let mut t = c.send("big", a.as_fd(), Range::WHOLE);
        let polled_once = poll_until(&mut t, |_| true).await;
        assert!(polled_once.is_none());
        assert!(t.file_info().is_none());
        drop(t);
        // SAFETY: as above.
        assert_eq!(unsafe { libc::kill(d.pid, libc::SIGCONT) }, 0);
    });
    drop(a);
    let got = drain(b).join().unwrap();
    assert!(got < BIG, "all {got} bytes arrived for a dropped request");
    assert!(live_becomes(&d, 0));
}

#[test]
fn dropping_an_open_file_or_a_reader_cancels_it() {
    // An hour's open-file timeout: only the cancel can end the open file.
    let d = Daemon::start_with(&["-t", "3600000"]);
    d.write("big", &pattern(BIG));
    runtime().block_on(async {
        let c = connect_daemon_only(&d);
        let file = within(c.open("big", Range::WHOLE)).await.unwrap();
        assert!(live_becomes(&d, 1));
        drop(file);
        assert!(live_becomes(&d, 0));

        let mut r = within(c.read("big", Range::WHOLE)).await.unwrap();
        let mut some = vec![0u8; 4096];
        within(r.read_exact(&mut some)).await.unwrap();
        assert_eq!(some, pattern(4096));
        drop(r);
        assert!(live_becomes(&d, 0));

        // An open file's Send Open future dropped mid-transfer.
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let file = within(c.open("big", Range::WHOLE)).await.unwrap();
        let mut t = file.send_open(a.as_fd());
        assert!(t.file_info().is_some());
        let early = poll_until(&mut t, |_| true).await;
        assert!(early.is_none());
        drop(t);
        drop(a);
        let got = tokio::task::spawn_blocking(move || common::read_to_end(b.as_fd()).len())
            .await
            .unwrap();
        assert!(got < BIG);
        assert!(live_becomes(&d, 0));
    });
}

#[test]
fn many_concurrent_transfers_on_one_runtime() {
    let d = Daemon::start_with(&["-n", "512"]);
    let sizes: Vec<usize> = (0..48).map(|i| 1 + i * 37_000).collect();
    for (i, &n) in sizes.iter().enumerate() {
        let mut data = pattern(n + i);
        data.drain(..i);
        d.write(&format!("f{i}"), &data);
    }
    runtime().block_on(async {
        let c = connect(&d);
        let mut tasks = Vec::new();
        for (i, &n) in sizes.iter().enumerate() {
            let c = c.clone();
            tasks.push(tokio::spawn(async move {
                let name = format!("f{i}");
                let mut want = pattern(n + i);
                want.drain(..i);
                let (a, reader) = dest_pair();
                let got = match i % 3 {
                    0 => {
                        c.send(&name, a.as_fd(), Range::WHOLE).await.unwrap();
                        drop(a);
                        reader.await.unwrap()
                    }
                    1 => {
                        let f = c.open(&name, Range::WHOLE).await.unwrap();
                        f.send_open(a.as_fd()).await.unwrap();
                        drop(a);
                        reader.await.unwrap()
                    }
                    _ => {
                        drop(a);
                        reader.abort();
                        let mut r = c.read(&name, Range::WHOLE).await.unwrap();
                        let mut got = Vec::new();
                        r.read_to_end(&mut got).await.unwrap();
                        got
                    }
                };
                assert_eq!(got.len(), want.len(), "file {i}");
                assert!(got == want, "file {i}: bytes differ");
            }));
        }
        for t in tasks {
            within(t).await.unwrap();
        }
    });
    assert!(live_becomes(&d, 0));
}
