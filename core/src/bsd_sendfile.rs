//! The portable half of BSD-style `sendfile(2)` (FreeBSD, macOS): what one
//! call's result means, and the header/trailer accounting around it.
//!
//! The per-OS backends make the call and hand its error and byte count here,
//! so the decisions are tested on every system (with chosen errnos) rather
//! than only where the call exists.

use std::io;
use std::os::fd::BorrowedFd;

use crate::backend::{DestKind, FileChunk, HdtrChunk, Moved, ReadWriteCopy};

/// The copy path of a system whose `sendfile` serves only stream sockets:
/// `native` (the OS call, with an empty header and trailer) there, the
/// portable [`ReadWriteCopy`] for pipes, files and other sockets.
pub fn send_file_by_kind(
    chunk: FileChunk<'_>,
    dest: BorrowedFd<'_>,
    kind: DestKind,
    native: impl FnOnce(HdtrChunk<'_>, BorrowedFd<'_>) -> io::Result<Moved>,
) -> io::Result<Moved> {
    match kind {
        DestKind::StreamSocket => native(
            HdtrChunk {
                header: &[],
                file: chunk,
                trailer: &[],
            },
            dest,
        ),
        _ => ReadWriteCopy::send_file(chunk, dest, kind),
    }
}

/// Header or trailer bytes: `send(MSG_DONTWAIT | MSG_NOSIGNAL)` on sockets
/// (non-blocking whatever the client did to `O_NONBLOCK`; a closed peer is
/// `EPIPE`, not a signal), a pipe's write bounded by its reported room
/// elsewhere ([`crate::sys::write_nowait`]).
pub fn write_bytes_by_kind(buf: &[u8], dest: BorrowedFd<'_>, kind: DestKind) -> io::Result<usize> {
    crate::sys::write_nowait(dest, buf, kind)
}

/// Interprets one BSD `sendfile` call: `result` is its error, if any, and
/// `sent` the byte count it reported (`*sbytes` on FreeBSD, `*len` on macOS;
/// headers and trailers included).
///
/// Bytes sent always win: a call that moved something and then hit `EAGAIN`,
/// `EINTR`, `EBUSY` (`SF_NODISKIO`: the next page is not in memory) or any
/// other error reports [`Moved::Bytes`], because that progress is real and the
/// caller must account for it; if the condition persists, the next call
/// meets it at once with nothing sent. With nothing sent, `EAGAIN` is
/// [`Moved::DestinationFull`], `EBUSY` is [`Moved::NotCached`], and anything
/// else (`EINTR` included: the caller retries) is returned as the error.
pub fn outcome(result: io::Result<()>, sent: u64) -> io::Result<Moved> {
    let sent = usize::try_from(sent).unwrap_or(usize::MAX);
    match result {
        Ok(()) => Ok(Moved::Bytes(sent)),
        Err(_) if sent > 0 => Ok(Moved::Bytes(sent)),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Moved::DestinationFull),
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => Ok(Moved::NotCached),
        Err(e) => Err(e),
    }
}

/// Sends header, file part and trailer one after the other, with `write` for
/// the bytes (one `send(2)` each) and `file` for the file part: the
/// userspace equivalent of `sf_hdtr`, for what the native call cannot do
/// (an empty file part, since a file length of 0 means "to the end of the
/// file" to BSD `sendfile`; a socket that `sendfile` refuses).
///
/// The count covers the three parts in order, and each part is attempted
/// only once everything before it went out, so it means the same as a native
/// `sf_hdtr` count. As with [`outcome`], progress wins over a later
/// `DestinationFull`, `NotCached` or error; with nothing moved those are
/// returned as they are. Nothing to send at all is `Bytes(0)`.
pub fn hdtr_in_parts(
    chunk: HdtrChunk<'_>,
    mut write: impl FnMut(&[u8]) -> io::Result<usize>,
    mut file: impl FnMut(FileChunk<'_>) -> io::Result<Moved>,
) -> io::Result<Moved> {
    let mut total = 0usize;
    // What a part that stopped short means for the whole call.
    let stop = |total: usize, r: io::Result<Moved>| -> io::Result<Moved> {
        match r {
            _ if total > 0 => Ok(Moved::Bytes(total)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Moved::DestinationFull),
            r => r,
        }
    };
    if !chunk.header.is_empty() {
        match write(chunk.header) {
            Ok(n) => {
                total += n;
                if n < chunk.header.len() {
                    return Ok(Moved::Bytes(total));
                }
            }
            Err(e) => return stop(total, Err(e)),
        }
    }
    if chunk.file.len > 0 {
        let part = FileChunk {
            more_follows: chunk.file.more_follows || !chunk.trailer.is_empty(),
            ..chunk.file
        };
        match file(part) {
            Ok(Moved::Bytes(n)) => {
                total += n;
                if n < chunk.file.len {
                    return Ok(Moved::Bytes(total));
                }
            }
            other => return stop(total, other),
        }
    }
    if !chunk.trailer.is_empty() {
        match write(chunk.trailer) {
            Ok(n) => total += n,
            Err(e) => return stop(total, Err(e)),
        }
    }
    Ok(Moved::Bytes(total))
}

/// A header or trailer as nix's `sendfile` takes it: none when empty, so
/// that a call with neither builds no `sf_hdtr` (nix allocates one for any
/// it is given).
pub fn hdtr_part<'a>(part: &'a [&'a [u8]; 1]) -> Option<&'a [&'a [u8]]> {
    (!part[0].is_empty()).then_some(&part[..])
}

/// The bytes a BSD `sendfile` reported (`off_t`), as [`outcome`] takes them.
pub fn sent_bytes(sent: libc::off_t) -> u64 {
    u64::try_from(sent).unwrap_or(0)
}

/// Whether the file holds all of `len` bytes at `offset` (`fstat(2)`).
///
/// BSD `sendfile` sends the trailer after the file part even when the file
/// ended early; the caller would then count trailer bytes as file bytes. So
/// the backends pass the trailer only when the file covers the whole part,
/// and otherwise send without it: the short file part then shows as fewer
/// bytes and, on the next call, as `Bytes(0)` (the file ended early). A file
/// that shrinks between this check and the call can still mislead the count;
/// the server holds a read lock to make that rare.
pub fn file_covers(file: BorrowedFd<'_>, offset: u64, len: usize) -> io::Result<bool> {
    let st = crate::sys::fstat(file)?;
    let size = u64::try_from(st.st_size).unwrap_or(0);
    Ok(offset
        .checked_add(len as u64)
        .is_some_and(|end| end <= size))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    fn os(code: i32) -> io::Error {
        io::Error::from_raw_os_error(code)
    }

    #[test]
    fn outcome_prefers_bytes_sent() {
        assert_eq!(outcome(Ok(()), 10).unwrap(), Moved::Bytes(10));
        assert_eq!(outcome(Ok(()), 0).unwrap(), Moved::Bytes(0));
        for code in [libc::EAGAIN, libc::EINTR, libc::EBUSY, libc::EPIPE] {
            assert_eq!(
                outcome(Err(os(code)), 7).unwrap(),
                Moved::Bytes(7),
                "{code}"
            );
        }
    }

    #[test]
    fn outcome_with_nothing_sent() {
        assert_eq!(
            outcome(Err(os(libc::EAGAIN)), 0).unwrap(),
            Moved::DestinationFull
        );
        assert_eq!(outcome(Err(os(libc::EBUSY)), 0).unwrap(), Moved::NotCached);
        let e = outcome(Err(os(libc::EINTR)), 0).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::Interrupted);
        let e = outcome(Err(os(libc::EPIPE)), 0).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EPIPE));
    }

    type Out = std::rc::Rc<std::cell::RefCell<Vec<u8>>>;

    /// A fake socket that accepts `room` bytes and then says EAGAIN; file
    /// data is written as b'f' bytes.
    struct Fake {
        room: usize,
        out: Out,
    }

    impl Fake {
        fn new(room: usize) -> Self {
            Fake {
                room,
                out: Out::default(),
            }
        }
        fn put(&mut self, b: &[u8]) -> io::Result<usize> {
            if self.room == 0 {
                return Err(os(libc::EAGAIN));
            }
            let n = b.len().min(self.room);
            self.room -= n;
            self.out.borrow_mut().extend_from_slice(&b[..n]);
            Ok(n)
        }
    }

    fn run(room: usize, h: &[u8], file_len: usize, t: &[u8]) -> (io::Result<Moved>, Vec<u8>) {
        let fake = std::cell::RefCell::new(Fake::new(room));
        let f = tempfile::tempfile().expect("tempfile");
        let chunk = HdtrChunk {
            header: h,
            file: FileChunk {
                file: f.as_fd(),
                offset: 0,
                len: file_len,
                more_follows: false,
                nowait: false,
            },
            trailer: t,
        };
        let r = hdtr_in_parts(
            chunk,
            |b| fake.borrow_mut().put(b),
            |c| {
                assert_eq!(c.more_follows, !t.is_empty());
                match fake.borrow_mut().put(&vec![b'f'; c.len]) {
                    Ok(n) => Ok(Moved::Bytes(n)),
                    Err(_) => Ok(Moved::DestinationFull),
                }
            },
        );
        let out = fake.borrow().out.borrow().clone();
        (r, out)
    }

    #[test]
    fn parts_go_in_order() {
        let (r, out) = run(100, b"HDR", 4, b"TRL");
        assert_eq!(r.unwrap(), Moved::Bytes(10));
        assert_eq!(out, b"HDRffffTRL");
        let (r, out) = run(100, b"HDR", 0, b"TRL");
        assert_eq!(r.unwrap(), Moved::Bytes(6));
        assert_eq!(out, b"HDRTRL");
        let (r, out) = run(100, b"", 0, b"TRL");
        assert_eq!(r.unwrap(), Moved::Bytes(3));
        assert_eq!(out, b"TRL");
        let (r, _) = run(100, b"", 0, b"");
        assert_eq!(r.unwrap(), Moved::Bytes(0));
    }

    #[test]
    fn each_part_waits_for_the_one_before() {
        let (r, out) = run(2, b"HDR", 4, b"TRL");
        assert_eq!(r.unwrap(), Moved::Bytes(2));
        assert_eq!(out, b"HD");
        let (r, out) = run(5, b"HDR", 4, b"TRL");
        assert_eq!(r.unwrap(), Moved::Bytes(5));
        assert_eq!(out, b"HDRff");
        let (r, out) = run(3, b"HDR", 4, b"TRL");
        assert_eq!(r.unwrap(), Moved::Bytes(3));
        assert_eq!(out, b"HDR");
        let (r, out) = run(8, b"HDR", 4, b"TRL");
        assert_eq!(r.unwrap(), Moved::Bytes(8));
        assert_eq!(out, b"HDRffffT");
        let (r, _) = run(0, b"HDR", 4, b"TRL");
        assert_eq!(r.unwrap(), Moved::DestinationFull);
        let (r, _) = run(0, b"", 4, b"TRL");
        assert_eq!(r.unwrap(), Moved::DestinationFull);
    }

    #[test]
    fn errors_after_progress_report_progress() {
        let f = tempfile::tempfile().expect("tempfile");
        let chunk = |len| HdtrChunk {
            header: b"HDR",
            file: FileChunk {
                file: f.as_fd(),
                offset: 0,
                len,
                more_follows: false,
                nowait: true,
            },
            trailer: b"TRL",
        };
        let not_cached = |_: FileChunk<'_>| Ok(Moved::NotCached);
        let r = hdtr_in_parts(chunk(4), |b| Ok(b.len()), not_cached);
        assert_eq!(r.unwrap(), Moved::Bytes(3));
        let r = hdtr_in_parts(chunk(0), |_| Err(os(libc::EPIPE)), not_cached);
        assert_eq!(r.unwrap_err().raw_os_error(), Some(libc::EPIPE));
        let mut calls = 0;
        let r = hdtr_in_parts(
            chunk(0),
            |b| {
                calls += 1;
                if calls == 1 {
                    Ok(b.len())
                } else {
                    Err(os(libc::EPIPE))
                }
            },
            not_cached,
        );
        assert_eq!(r.unwrap(), Moved::Bytes(3));
        // The file ended early: the trailer is not sent.
        let r = hdtr_in_parts(chunk(4), |b| Ok(b.len()), |_| Ok(Moved::Bytes(1)));
        assert_eq!(r.unwrap(), Moved::Bytes(4));
    }

    #[test]
    fn file_covers_checks_the_size() {
        let mut f = tempfile::tempfile().expect("tempfile");
        std::io::Write::write_all(&mut f, &[0u8; 100]).expect("write");
        assert!(file_covers(f.as_fd(), 0, 100).unwrap());
        assert!(file_covers(f.as_fd(), 50, 50).unwrap());
        assert!(!file_covers(f.as_fd(), 50, 51).unwrap());
        assert!(!file_covers(f.as_fd(), u64::MAX, 1).unwrap());
    }
}
