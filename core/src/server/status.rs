//! The daemon's side of a status channel: what a transfer still owes its
//! client, and writing it without ever blocking.
//!
//! What the channel carries follows the original sendfiled, which clients
//! are written against: the file info, then progress only when the transfer
//! had to stop and wait (destination full, data being read from disk), then
//! one final message. Progress never carries what the final message says
//! anyway: bytes still unreported when the transfer ends are dropped, so a
//! transfer that runs through without waiting writes exactly the file info
//! and the completion. A cancelled transfer's channel closes with nothing.
//!
//! Progress is a counter, not a queue: bytes moved while the pipe is full are
//! added up and reported in one message when it drains, so a client that
//! reads its status slowly costs the daemon no memory. Everything owed is
//! written with one `write(2)` of at most [`MAX_OWED`] bytes, below
//! `PIPE_BUF`, so it is atomic: all of it lands or none.
//!
//! The client shares the pipe's open file description and may clear its
//! `O_NONBLOCK` at any moment: no write here depends on it. Each message is
//! written with a call that does not wait ([`sys::write_nowait`]:
//! `pwritev2(RWF_NOWAIT)`, or where the kernel refuses that for pipes, only
//! when the pipe's reported room holds all of it), through the [`backstop`].
//! A write the backstop interrupted anyway (a pipe whose kernel refuses
//! `RWF_NOWAIT`, its room misreported) is reported to the server
//! ([`StatusWriter::take_caught`]), which marks the pipe's open file
//! description and counts a strike against the uid ([`Caught`]).
//!
//! This file may write only to the status descriptor it was given.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use crate::protocol::{self as proto, FileInfo, XferStat, SFD_HDR_SIZE};
use crate::sys::{self, errno::Errno, DestKind};

use super::backstop;
use super::caught::Caught;

/// Progress is reported in steps of at least this many bytes: what moved
/// before a wait is held back until a later wait brings it up to a step. A
/// transfer to a destination that drains 64 KiB at a time would otherwise
/// cost a status `write` per 64 KiB (the benchmark's 1 GiB Send to a pipe),
/// and a small transfer that waited once says nothing but its completion.
pub const PROGRESS_STEP: u64 = 1 << 20;

/// The most bytes one flush writes: file info and a progress report, or
/// file info and the final message.
pub const MAX_OWED: usize = proto::FILE_INFO_LEN + proto::XFER_STAT_LEN;
const _: () = assert!(MAX_OWED < libc::PIPE_BUF);

/// The message that ends a status channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Final {
    /// `sfd_xfer_stat` with the completion marker.
    Complete,
    /// A two-byte error header.
    Error {
        /// [`proto::SFD_FILE_INFO`] or [`proto::SFD_XFER_STAT`].
        cmd: u8,
        /// The errno.
        errno: Errno,
    },
    /// Nothing: close now, dropping whatever is still owed (a cancelled
    /// transfer, a Read's data pipe at its end).
    Close,
}

/// Outcome of [`StatusWriter::flush`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flush {
    /// Nothing more is owed.
    Clear,
    /// The pipe is full; wait until it is writable.
    Pending,
    /// The client closed its end (or the descriptor failed).
    Gone,
}

/// A transfer's status channel.
#[derive(Debug)]
pub struct StatusWriter {
    fd: OwnedFd,
    info: Option<FileInfo>,
    /// Bytes moved and not yet reported.
    unreported: u64,
    /// The part of `unreported` moved before the transfer last stopped to
    /// wait: the only progress the channel may report.
    reportable: u64,
    final_msg: Option<Final>,
    reports_progress: bool,
    /// A call on this pipe's open file description blocked once (this
    /// channel's, or another transfer's: [`Caught`]): a Read's data then
    /// takes the strict path.
    strict: bool,
    /// The [`Caught::generation`] last looked at.
    seen: u64,
    /// A write of this channel was interrupted and the server has not been
    /// told yet.
    caught: bool,
}

impl StatusWriter {
    /// Wraps the write end of a status pipe (already non-blocking).
    /// `reports_progress` is false for a Read's data pipe.
    pub fn new(fd: OwnedFd, reports_progress: bool) -> StatusWriter {
        StatusWriter {
            fd,
            info: None,
            unreported: 0,
            reportable: 0,
            final_msg: None,
            reports_progress,
            strict: false,
            seen: 0,
            caught: false,
        }
    }

    /// Queues the file info: the next flush writes it before anything else.
    pub fn queue_info(&mut self, info: FileInfo) {
        self.info = Some(info);
    }

    /// Counts `n` more bytes moved; they are reported only if the transfer
    /// stops to wait before it ends ([`StatusWriter::stopped_to_wait`]).
    pub fn moved(&mut self, n: u64) {
        if self.reports_progress {
            self.unreported += n;
        }
    }

    /// The transfer stopped to wait (destination full, data on its way from
    /// disk): what it moved so far may be reported.
    pub fn stopped_to_wait(&mut self) {
        self.reportable = self.unreported;
    }

    /// Queues the final message: nothing is written after it. [`Final::Close`] also drops
    /// everything still owed.
    pub fn queue_final(&mut self, f: Final) {
        if self.final_msg.is_some() {
            return;
        }
        self.final_msg = Some(f);
        // The final message says all the progress could: it is never
        // preceded by a report with nothing new.
        self.unreported = 0;
        self.reportable = 0;
        if f == Final::Close {
            self.info = None;
        }
    }

    /// Whether a flush now would say something worth a `write`: the file
    /// info, the final message, or at least [`PROGRESS_STEP`] of progress
    /// moved before a wait.
    pub fn worth_flushing(&self) -> bool {
        self.info.is_some()
            || matches!(self.final_msg, Some(Final::Complete | Final::Error { .. }))
            || self.reportable >= PROGRESS_STEP
    }

    /// Whether the channel is finished and everything owed was written.
    pub fn is_finished(&self) -> bool {
        self.final_msg == Some(Final::Close) && self.info.is_none()
    }

    /// Writes everything owed in one atomic write.
    pub fn flush(&mut self) -> Flush {
        let mut buf = [0u8; MAX_OWED];
        let mut len = 0;
        let mut put = |b: &[u8]| {
            buf[len..len + b.len()].copy_from_slice(b);
            len += b.len();
        };
        if let Some(info) = &self.info {
            put(&info.encode());
        }
        // Progress goes out in steps, never with the final message
        // (`queue_final` cleared it).
        let reported = if self.reportable >= PROGRESS_STEP {
            self.reportable
        } else {
            0
        };
        if reported > 0 {
            let n = reported.min(proto::XFER_COMPLETE as u64 - 1) as usize;
            put(&XferStat::progress(n).encode());
        }
        match self.final_msg {
            Some(Final::Complete) => put(&XferStat::complete().encode()),
            Some(Final::Error { cmd, errno }) => {
                put(&proto::error_header(cmd, errno as i32)[..SFD_HDR_SIZE])
            }
            Some(Final::Close) | None => {}
        }
        if len == 0 {
            return Flush::Clear;
        }
        let (written, interrupted) = write_reply_watched(self.fd.as_fd(), &buf[..len]);
        if interrupted {
            self.caught_blocking();
        }
        match written {
            Ok(()) => {
                self.info = None;
                self.unreported -= reported;
                self.reportable = 0;
                if self.final_msg.is_some() {
                    // Written: nothing more may follow.
                    self.final_msg = Some(Final::Close);
                }
                Flush::Clear
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Flush::Pending,
            Err(_) => Flush::Gone,
        }
    }

    /// A call on this channel (a status write, or a Read's data) blocked
    /// and the backstop interrupted it: the server is told
    /// ([`take_caught`](Self::take_caught)).
    pub fn caught_blocking(&mut self) {
        if !self.strict {
            log::info!(
                "a write to a status pipe blocked (its kernel refuses RWF_NOWAIT for pipes \
                 and its room was misreported); the backstop interrupted it"
            );
        }
        self.strict = true;
        self.caught = true;
    }

    /// Whether a call blocked since the last look: the server then marks
    /// the pipe's open file description for every transfer sharing it.
    pub fn take_caught(&mut self) -> bool {
        std::mem::take(&mut self.caught)
    }

    /// Takes in the server's marks: strict if this pipe's open file
    /// description was caught blocking for another transfer.
    pub fn notice(&mut self, caught: &Caught) {
        if !self.strict && caught.check(self.fd.as_fd(), &mut self.seen) {
            self.strict = true;
        }
    }

    /// Whether calls on this channel's open file description were caught
    /// blocking.
    pub fn is_strict(&self) -> bool {
        self.strict
    }

    /// The descriptor, for readiness registration and as a Read's data
    /// destination.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Gives up the channel's descriptor, to be closed.
    pub fn into_fd(self) -> OwnedFd {
        self.fd
    }
}

/// The errno [`write_reply`] reports an interrupted write with (as a
/// [`io::ErrorKind::WouldBlock`] error).
const INTERRUPTED: Errno = Errno::EAGAIN;

/// Writes one message below `PIPE_BUF` to a reply pipe the client shares,
/// with one call that does not wait whatever the pipe's `O_NONBLOCK`
/// ([`sys::write_nowait`]; all of the message or none), through the
/// [`backstop`]: a full pipe, and a write that blocked anyway, come back as
/// `EAGAIN`. A stray `EINTR` is retried a few times. (Not
/// [`sys::write_message`], which retries `EINTR` for as long as it comes.)
pub fn write_reply(fd: BorrowedFd<'_>, msg: &[u8]) -> io::Result<()> {
    write_reply_watched(fd, msg).0
}

/// [`write_reply`], and whether the backstop interrupted the write.
fn write_reply_watched(fd: BorrowedFd<'_>, msg: &[u8]) -> (io::Result<()>, bool) {
    for _ in 0..4 {
        let (r, interrupted) = backstop::guarded(|| sys::write_nowait(fd, msg, DestKind::Pipe));
        match r {
            Ok(n) if n == msg.len() => return (Ok(()), false),
            Ok(_) => return (Err(io::Error::from(Errno::EIO)), false),
            Err(_) if interrupted => return (Err(io::Error::from(INTERRUPTED)), true),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return (Err(e), false),
        }
    }
    (Err(io::Error::from(INTERRUPTED)), false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Response;

    fn pipe_nb() -> (OwnedFd, OwnedFd) {
        let (r, w) = sys::pipe().unwrap();
        sys::set_nonblocking(w.as_fd(), true).unwrap();
        sys::set_nonblocking(r.as_fd(), true).unwrap();
        (r, w)
    }

    fn read_all(r: &OwnedFd) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = sys::read(r.as_fd(), &mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        out
    }

    #[test]
    fn a_transfer_that_never_waited_says_info_then_completion() {
        let (r, w) = pipe_nb();
        let mut s = StatusWriter::new(w, true);
        s.queue_info(FileInfo::ok(10, 0, 0, 0, 1));
        s.moved(4);
        s.moved(6);
        s.queue_final(Final::Complete);
        assert_eq!(s.flush(), Flush::Clear);
        assert!(s.is_finished());
        let bytes = read_all(&r);
        assert_eq!(bytes.len(), proto::FILE_INFO_LEN + proto::XFER_STAT_LEN);
        let fin = &bytes[proto::FILE_INFO_LEN..];
        assert_eq!(Response::decode(fin), Some(Response::Complete));
        // Nothing is written twice.
        assert_eq!(s.flush(), Flush::Clear);
        assert!(read_all(&r).is_empty());
    }

    #[test]
    fn progress_is_reported_only_for_bytes_moved_before_a_wait() {
        let (r, w) = pipe_nb();
        let mut s = StatusWriter::new(w, true);
        s.moved(PROGRESS_STEP);
        assert!(!s.worth_flushing(), "moving is no reason to report");
        assert_eq!(s.flush(), Flush::Clear);
        assert!(read_all(&r).is_empty());
        s.stopped_to_wait();
        s.moved(5); // after the wait: not reportable yet
        assert!(s.worth_flushing());
        assert_eq!(s.flush(), Flush::Clear);
        let bytes = read_all(&r);
        let want = PROGRESS_STEP.min(proto::XFER_COMPLETE as u64 - 1) as usize;
        assert_eq!(Response::decode(&bytes), Some(Response::Progress(want)));
        // The 5 bytes after the wait go unreported: the completion says it.
        s.queue_final(Final::Complete);
        assert_eq!(s.flush(), Flush::Clear);
        assert_eq!(Response::decode(&read_all(&r)), Some(Response::Complete));
    }

    #[test]
    fn progress_owed_when_the_transfer_ends_is_dropped() {
        let (r, w) = pipe_nb();
        let mut s = StatusWriter::new(w, true);
        s.moved(10);
        s.stopped_to_wait();
        // The status pipe was full at the wait; the transfer then finished.
        s.queue_final(Final::Complete);
        assert_eq!(s.flush(), Flush::Clear);
        let bytes = read_all(&r);
        assert_eq!(bytes.len(), proto::XFER_STAT_LEN);
        assert_eq!(Response::decode(&bytes), Some(Response::Complete));
    }

    #[test]
    fn full_pipe_accumulates_progress_until_it_drains() {
        let (r, w) = pipe_nb();
        // Fill the pipe.
        let junk = [0u8; 4096];
        while sys::write(w.as_fd(), &junk).is_ok() {}
        let mut s = StatusWriter::new(w, true);
        s.moved(PROGRESS_STEP);
        s.stopped_to_wait();
        assert_eq!(s.flush(), Flush::Pending);
        s.moved(50);
        s.stopped_to_wait();
        assert_eq!(s.flush(), Flush::Pending);
        let _ = read_all(&r);
        assert_eq!(s.flush(), Flush::Clear);
        let bytes = read_all(&r);
        let want = (PROGRESS_STEP + 50) as usize;
        assert_eq!(Response::decode(&bytes), Some(Response::Progress(want)));
    }

    #[test]
    fn an_error_drops_progress_and_a_closed_reader_is_gone() {
        let (r, w) = pipe_nb();
        let mut s = StatusWriter::new(w, true);
        s.moved(7);
        s.stopped_to_wait();
        s.queue_final(Final::Error {
            cmd: proto::SFD_XFER_STAT,
            errno: Errno::EPIPE,
        });
        assert_eq!(s.flush(), Flush::Clear);
        let bytes = read_all(&r);
        assert_eq!(
            Response::decode(&bytes),
            Some(Response::Error {
                cmd: proto::SFD_XFER_STAT,
                errno: libc::EPIPE
            })
        );
        drop(r);
        let (r2, w2) = pipe_nb();
        drop(r2);
        let mut s = StatusWriter::new(w2, true);
        s.moved(PROGRESS_STEP);
        s.stopped_to_wait();
        assert_eq!(s.flush(), Flush::Gone);
    }

    #[test]
    fn close_writes_nothing_and_drops_what_was_owed() {
        let (r, w) = pipe_nb();
        let mut s = StatusWriter::new(w, true);
        s.queue_info(FileInfo::ok(10, 0, 0, 0, 1));
        s.moved(3);
        s.stopped_to_wait();
        s.queue_final(Final::Close);
        assert!(!s.worth_flushing());
        assert_eq!(s.flush(), Flush::Clear);
        assert!(s.is_finished());
        drop(s);
        assert!(
            read_all(&r).is_empty(),
            "a cancelled channel carries no message"
        );
    }

    #[test]
    fn small_progress_waits_for_something_worth_a_write() {
        let (r, w) = pipe_nb();
        let mut s = StatusWriter::new(w, true);
        s.queue_info(FileInfo::ok(10, 0, 0, 0, 1));
        assert!(s.worth_flushing(), "the file info always is");
        assert_eq!(s.flush(), Flush::Clear);
        s.moved(PROGRESS_STEP - 1);
        s.stopped_to_wait();
        assert!(!s.worth_flushing());
        let _ = read_all(&r); // the file info
        assert_eq!(s.flush(), Flush::Clear);
        assert!(read_all(&r).is_empty(), "below a step, nothing is written");
        s.moved(1);
        s.stopped_to_wait();
        assert!(s.worth_flushing());
        assert_eq!(s.flush(), Flush::Clear);
        s.moved(1);
        s.queue_final(Final::Complete);
        assert!(s.worth_flushing(), "the final message always is");
    }

    #[test]
    fn data_pipes_carry_no_progress() {
        let (r, w) = pipe_nb();
        let mut s = StatusWriter::new(w, false);
        s.moved(5);
        s.stopped_to_wait();
        s.queue_final(Final::Close);
        assert_eq!(s.flush(), Flush::Clear);
        assert!(s.is_finished());
        assert!(read_all(&r).is_empty());
    }
}
