//! The daemon's side of a status channel: what a transfer still owes its
//! client, and writing it without ever blocking.
//!
//! Progress is a counter, not a queue: bytes moved while the pipe is full are
//! added up and reported in one message when it drains, so a client that
//! reads its status slowly costs the daemon no memory. Everything owed is
//! written with one `write(2)` of at most [`MAX_OWED`] bytes, below
//! `PIPE_BUF`, so it is atomic: all of it lands or none.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use crate::protocol::{self as proto, FileInfo, XferStat, SFD_HDR_SIZE};
use crate::sys;

/// Progress owed below this many bytes waits for the next flush that has
/// something else to say (the final message, or this much more progress):
/// a transfer to a destination that drains 64 KiB at a time would otherwise
/// cost a status `write` per 64 KiB (the benchmark's 1 GiB Send to a pipe).
pub const PROGRESS_STEP: u64 = 1 << 20;

/// The most bytes one flush writes: file info, progress, final message.
pub const MAX_OWED: usize = proto::FILE_INFO_LEN + 2 * proto::XFER_STAT_LEN;
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
        errno: i32,
    },
    /// Nothing: just close (a Read's data pipe ends with EOF).
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
    unreported: u64,
    final_msg: Option<Final>,
    reports_progress: bool,
}

impl StatusWriter {
    /// Wraps the write end of a status pipe (already non-blocking).
    /// `reports_progress` is false for a Read's data pipe.
    pub fn new(fd: OwnedFd, reports_progress: bool) -> StatusWriter {
        StatusWriter {
            fd,
            info: None,
            unreported: 0,
            final_msg: None,
            reports_progress,
        }
    }

    /// Owes the file info (written before anything else).
    pub fn owe_info(&mut self, info: FileInfo) {
        self.info = Some(info);
    }

    /// Owes a progress report of `n` more bytes.
    pub fn owe_progress(&mut self, n: u64) {
        if self.reports_progress {
            self.unreported += n;
        }
    }

    /// Owes the final message; nothing after it.
    pub fn owe_final(&mut self, f: Final) {
        if self.final_msg.is_none() {
            self.final_msg = Some(f);
        }
    }

    /// Whether the final message is owed or written.
    pub fn is_finishing(&self) -> bool {
        self.final_msg.is_some()
    }

    /// Whether a flush now would say something worth a `write`: the file
    /// info, the final message, or at least [`PROGRESS_STEP`] of progress.
    pub fn worth_flushing(&self) -> bool {
        self.info.is_some()
            || matches!(self.final_msg, Some(Final::Complete | Final::Error { .. }))
            || self.unreported >= PROGRESS_STEP
    }

    /// Whether the channel is finished and everything owed was written.
    pub fn is_finished(&self) -> bool {
        self.final_msg.is_some() && self.info.is_none() && self.unreported == 0
    }

    /// Writes everything owed in one atomic write.
    pub fn flush(&mut self) -> Flush {
        let mut buf = [0u8; MAX_OWED];
        let mut len = 0;
        if let Some(info) = &self.info {
            let b = info.encode();
            buf[..b.len()].copy_from_slice(&b);
            len += b.len();
        }
        // An error ends the channel: progress is dropped, the client counts
        // from the file info and the error tells it the rest never came.
        let final_is_error = matches!(self.final_msg, Some(Final::Error { .. }));
        if self.unreported > 0 && !final_is_error {
            let n = self.unreported.min(proto::XFER_COMPLETE as u64 - 1) as usize;
            let b = XferStat::progress(n).encode();
            buf[len..len + b.len()].copy_from_slice(&b);
            len += b.len();
        }
        match self.final_msg {
            Some(Final::Complete) => {
                let b = XferStat::complete().encode();
                buf[len..len + b.len()].copy_from_slice(&b);
                len += b.len();
            }
            Some(Final::Error { cmd, errno }) => {
                let b = proto::error_header(cmd, errno);
                buf[len..len + SFD_HDR_SIZE].copy_from_slice(&b);
                len += SFD_HDR_SIZE;
            }
            Some(Final::Close) | None => {}
        }
        if len == 0 {
            return Flush::Clear;
        }
        match sys::write_message(self.fd.as_fd(), &buf[..len]) {
            Ok(()) => {
                self.info = None;
                self.unreported = 0;
                if final_is_error || matches!(self.final_msg, Some(Final::Complete)) {
                    // Written: nothing more may follow.
                    self.final_msg = Some(Final::Close);
                }
                Flush::Clear
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Flush::Pending,
            Err(_) => Flush::Gone,
        }
    }

    /// The descriptor, for readiness registration and as a Read's data
    /// destination.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
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
    fn info_progress_and_completion_go_out_in_one_write() {
        let (r, w) = pipe_nb();
        let mut s = StatusWriter::new(w, true);
        s.owe_info(FileInfo::ok(10, 0, 0, 0, 1));
        s.owe_progress(4);
        s.owe_progress(6);
        s.owe_final(Final::Complete);
        assert_eq!(s.flush(), Flush::Clear);
        assert!(s.is_finished());
        let bytes = read_all(&r);
        assert_eq!(bytes.len(), proto::FILE_INFO_LEN + 2 * proto::XFER_STAT_LEN);
        let p = &bytes[proto::FILE_INFO_LEN..];
        assert_eq!(Response::decode(&p[..16]), Some(Response::Progress(10)));
        assert_eq!(Response::decode(&p[16..]), Some(Response::Complete));
        // Nothing is written twice.
        assert_eq!(s.flush(), Flush::Clear);
        assert!(read_all(&r).is_empty());
    }

    #[test]
    fn full_pipe_accumulates_progress_until_it_drains() {
        let (r, w) = pipe_nb();
        // Fill the pipe.
        let junk = [0u8; 4096];
        while sys::write(w.as_fd(), &junk).is_ok() {}
        let mut s = StatusWriter::new(w, true);
        s.owe_progress(100);
        assert_eq!(s.flush(), Flush::Pending);
        s.owe_progress(50);
        assert_eq!(s.flush(), Flush::Pending);
        let _ = read_all(&r);
        assert_eq!(s.flush(), Flush::Clear);
        let bytes = read_all(&r);
        assert_eq!(Response::decode(&bytes), Some(Response::Progress(150)));
    }

    #[test]
    fn closed_reader_is_gone_and_error_drops_progress() {
        let (r, w) = pipe_nb();
        let mut s = StatusWriter::new(w, true);
        s.owe_progress(7);
        s.owe_final(Final::Error {
            cmd: proto::SFD_XFER_STAT,
            errno: libc::ECANCELED,
        });
        assert_eq!(s.flush(), Flush::Clear);
        let bytes = read_all(&r);
        assert_eq!(
            Response::decode(&bytes),
            Some(Response::Error {
                cmd: proto::SFD_XFER_STAT,
                errno: libc::ECANCELED
            })
        );
        drop(r);
        let (r2, w2) = pipe_nb();
        drop(r2);
        let mut s = StatusWriter::new(w2, true);
        s.owe_progress(1);
        assert_eq!(s.flush(), Flush::Gone);
    }

    #[test]
    fn small_progress_waits_for_something_worth_a_write() {
        let (_r, w) = pipe_nb();
        let mut s = StatusWriter::new(w, true);
        s.owe_info(FileInfo::ok(10, 0, 0, 0, 1));
        assert!(s.worth_flushing(), "the file info always is");
        assert_eq!(s.flush(), Flush::Clear);
        s.owe_progress(PROGRESS_STEP - 1);
        assert!(!s.worth_flushing());
        s.owe_progress(1);
        assert!(s.worth_flushing());
        assert_eq!(s.flush(), Flush::Clear);
        s.owe_progress(1);
        s.owe_final(Final::Complete);
        assert!(s.worth_flushing(), "the final message always is");
    }

    #[test]
    fn data_pipes_carry_no_progress() {
        let (r, w) = pipe_nb();
        let mut s = StatusWriter::new(w, false);
        s.owe_progress(5);
        s.owe_final(Final::Close);
        assert_eq!(s.flush(), Flush::Clear);
        assert!(s.is_finished());
        assert!(read_all(&r).is_empty());
    }
}
