//! One transfer as the loop holds it: its status channel, its cursor, and a
//! state whose variants own what that state needs (the open file, the
//! destination), so that what a transfer holds can be read off its state.
//!
//! This file holds data and the transitions that need no loop: no system
//! calls beyond closing what a state drops, no readiness registration.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::time::Instant;

use crate::backend::DestKind;
use crate::protocol::{Command, HeaderTrailer, Range};

use super::pump::Cursor;
use super::status::StatusWriter;

/// Where a transfer's data goes.
#[derive(Debug)]
pub enum Dest {
    /// The status pipe itself (Read).
    Status,
    /// A descriptor the client passed.
    Fd {
        /// The destination.
        fd: OwnedFd,
        /// What it is; decides the copy path.
        kind: DestKind,
        /// Whether it is registered for readiness with the loop.
        registered: bool,
        /// Whether a call on its open file description blocked once (the
        /// backstop interrupted it, for this transfer or another sharing
        /// it), or its uid was caught often (`Caught`): file data then
        /// never goes by `sendfile`, and a pipe takes its worst-case room.
        strict: bool,
        /// The `Caught::generation` last looked at.
        seen: u64,
    },
}

/// What a transfer is doing.
#[derive(Debug)]
pub enum State {
    /// A disk thread is opening the file (the loop's cache-only lookup
    /// would have waited); the request's other parts wait here. Nothing has
    /// been written on the status channel yet.
    Opening {
        /// As the request named it (for the log).
        path: std::ffi::CString,
        /// Where the data goes (Send); `None` for Read and Open.
        dest: Option<Dest>,
        /// Bytes around the range.
        hdtr: HeaderTrailer,
        /// The part of the file asked for.
        range: Range,
        /// File bytes of the range a client already wrote to the
        /// destination before handing the transfer on (Continue); 0
        /// otherwise.
        done: u64,
        /// Whether the client that began it in its own process already
        /// wrote the file info into its channel (ContinueRead).
        info_written: bool,
    },
    /// Opened, waiting for Send Open until `deadline`.
    Opened {
        /// The open file.
        file: Arc<OwnedFd>,
        /// After this, Send Open is refused with `ETIMEDOUT`.
        deadline: Instant,
    },
    /// Moving data.
    Running {
        /// The open file.
        file: Arc<OwnedFd>,
        /// Where the data goes.
        dest: Dest,
        /// Whether the destination may have room (no `EAGAIN` since the
        /// last readiness event).
        dest_ready: bool,
    },
    /// A disk thread is bringing the next chunk in (it holds a clone of the
    /// file).
    WaitingForDisk {
        /// The open file.
        file: Arc<OwnedFd>,
        /// Where the data goes once it is in.
        dest: Dest,
    },
    /// A disk thread is writing the next chunk to a regular-file
    /// destination (it holds the destination and the cursor): such writes
    /// may block for as long as the file's filesystem likes (`O_DSYNC`,
    /// NFS, FUSE), so they never run on the loop.
    WritingFile {
        /// The open file (the disk thread holds a clone).
        file: Arc<OwnedFd>,
    },
    /// The data part is over; the status channel owes its final message.
    Finishing,
}

/// How a transfer ended, for the counters and the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every byte was moved.
    Complete,
    /// It failed with this errno (written on its channel, except a Read's).
    Failed(i32),
    /// Cancelled by its client or by shutdown: the channel closed silently.
    Cancelled,
    /// The client closed its status channel first.
    ClientGone,
}

impl Outcome {
    /// Whether it counts as completed in the daemon's counters.
    pub fn is_success(self) -> bool {
        self == Outcome::Complete
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Complete => f.write_str("complete"),
            Outcome::Failed(e) => write!(f, "failed: {}", std::io::Error::from_raw_os_error(*e)),
            Outcome::Cancelled => f.write_str("cancelled"),
            Outcome::ClientGone => f.write_str("client gone"),
        }
    }
}

/// A live transfer.
#[derive(Debug)]
pub struct Transfer {
    /// The request that started it: Read, Send or Open.
    pub command: Command,
    /// What it is doing.
    pub state: State,
    /// Its status channel (a Read's data pipe).
    pub status: StatusWriter,
    /// Whether the status channel is registered with the loop.
    pub status_registered: bool,
    /// Header, file range and trailer, and how far it got.
    pub cursor: Cursor,
    /// Whether it is in the run queue.
    pub queued: bool,
    /// The uid that made it, where the OS reports one.
    pub peer_uid: Option<u32>,
    /// When it was admitted.
    pub started: Instant,
    /// When it last moved data (or was admitted, sent, or had its data
    /// brought in from disk): what the stall timeout measures.
    pub last_progress: Instant,
    /// How it ended, once it has.
    pub outcome: Option<Outcome>,
}

impl Transfer {
    /// Whether the data goes to the status pipe (a Read): such a channel
    /// carries no progress and no final message.
    pub fn is_read(&self) -> bool {
        self.command == Command::Read
    }

    /// The destination's descriptor and kind while data is moving.
    pub fn dest_fd<'a>(status: &'a StatusWriter, dest: &'a Dest) -> (BorrowedFd<'a>, DestKind) {
        match dest {
            Dest::Status => (status.fd(), DestKind::Pipe),
            Dest::Fd { fd, kind, .. } => (fd.as_fd(), *kind),
        }
    }

    /// Leaves the data part: the file and the destination are handed back
    /// (for deregistration and closing) and the state is [`State::Finishing`].
    pub fn take_data_part(&mut self) -> (Option<Arc<OwnedFd>>, Option<Dest>) {
        match std::mem::replace(&mut self.state, State::Finishing) {
            State::Running { file, dest, .. } | State::WaitingForDisk { file, dest } => {
                (Some(file), Some(dest))
            }
            State::Opened { file, .. } | State::WritingFile { file } => (Some(file), None),
            State::Opening { dest, .. } => (None, dest),
            State::Finishing => (None, None),
        }
    }
}
