//! The portable half of BSD-style `sendfile(2)` (FreeBSD, macOS): what one
//! call's result means, and the header/trailer accounting around it.
//!
//! The per-OS backends make the call and hand its error and byte count here,
//! so the decisions are tested on every system (with chosen errnos) rather
//! than only where the call exists.

use std::io;
use std::os::fd::BorrowedFd;

use crate::backend::Moved;

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

/// Sends header then trailer when the file part is empty, with `send` (one
/// `send(2)` each). BSD `sendfile` cannot do this itself: a file length of 0
/// means "to the end of the file" there.
///
/// The count covers both parts in order; the trailer is attempted only once
/// the whole header went out. Nothing at all to send is `Bytes(0)`.
pub fn header_and_trailer_only(
    header: &[u8],
    trailer: &[u8],
    mut send: impl FnMut(&[u8]) -> io::Result<usize>,
) -> io::Result<Moved> {
    let mut total = 0usize;
    for part in [header, trailer] {
        if part.is_empty() {
            continue;
        }
        match send(part) {
            Ok(n) => {
                total += n;
                if n < part.len() {
                    break;
                }
            }
            Err(_) if total > 0 => break,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Moved::DestinationFull),
            Err(e) => return Err(e),
        }
    }
    Ok(Moved::Bytes(total))
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

    /// A fake socket that accepts `room` bytes and then says EAGAIN.
    fn fake(
        room: usize,
    ) -> (
        impl FnMut(&[u8]) -> io::Result<usize>,
        std::rc::Rc<std::cell::RefCell<Vec<u8>>>,
    ) {
        let out = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        let o = out.clone();
        let mut left = room;
        (
            move |b: &[u8]| {
                if left == 0 {
                    return Err(os(libc::EAGAIN));
                }
                let n = b.len().min(left);
                left -= n;
                o.borrow_mut().extend_from_slice(&b[..n]);
                Ok(n)
            },
            out,
        )
    }

    #[test]
    fn header_and_trailer_in_order() {
        let (send, out) = fake(100);
        assert_eq!(
            header_and_trailer_only(b"HDR", b"TRL", send).unwrap(),
            Moved::Bytes(6)
        );
        assert_eq!(&*out.borrow(), b"HDRTRL");
    }

    #[test]
    fn trailer_waits_for_whole_header() {
        let (send, out) = fake(2);
        assert_eq!(
            header_and_trailer_only(b"HDR", b"TRL", send).unwrap(),
            Moved::Bytes(2)
        );
        assert_eq!(&*out.borrow(), b"HD");
        let (send, out) = fake(4);
        assert_eq!(
            header_and_trailer_only(b"HDR", b"TRL", send).unwrap(),
            Moved::Bytes(4)
        );
        assert_eq!(&*out.borrow(), b"HDRT");
        let (send, _) = fake(0);
        assert_eq!(
            header_and_trailer_only(b"HDR", b"TRL", send).unwrap(),
            Moved::DestinationFull
        );
        let (send, _) = fake(3);
        assert_eq!(
            header_and_trailer_only(b"HDR", b"TRL", send).unwrap(),
            Moved::Bytes(3)
        );
        let (send, out) = fake(3);
        assert_eq!(
            header_and_trailer_only(b"", b"TRL", send).unwrap(),
            Moved::Bytes(3)
        );
        assert_eq!(&*out.borrow(), b"TRL");
    }

    #[test]
    fn errors_after_progress_report_progress() {
        let mut calls = 0;
        let send = |b: &[u8]| {
            calls += 1;
            if calls == 1 {
                Ok(b.len())
            } else {
                Err(os(libc::EPIPE))
            }
        };
        assert_eq!(
            header_and_trailer_only(b"HDR", b"TRL", send).unwrap(),
            Moved::Bytes(3)
        );
        let send = |_: &[u8]| Err(os(libc::EPIPE));
        let e = header_and_trailer_only(b"HDR", b"TRL", send).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EPIPE));
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
