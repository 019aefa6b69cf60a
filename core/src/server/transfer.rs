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
use crate::sys::errno::Errno;

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
    Finishing {
        /// The destination, when its close may block (a socket's linger, a
        /// file's flush): it closes with the transfer, off the loop, before
        /// the status channel.
        slow_dest: Option<OwnedFd>,
        /// A disk thread still holds the destination for a write job: it
        /// comes back (and closes with the transfer) when the job does.
        write_out: bool,
    },
}

/// A transition: the old state by value; the next state and what the
/// transition hands out, or, for a state it does not apply to, that state
/// back unchanged with what it was given.
pub type Step<R, E> = Result<(State, R), (State, E)>;

/// The transitions a transfer makes while it holds its data part. Each
/// takes the state by value and returns the next ([`Transfer::step`] puts
/// it in place), so no state is dropped by a transition that does not
/// apply: it comes back as it was. (Both results carry a whole state by
/// value, on purpose: boxing it would cost an allocation a step.)
#[allow(clippy::result_large_err)]
impl State {
    /// Finishing with nothing held: the data part over, no destination
    /// kept, no write job out.
    pub fn finished() -> State {
        State::Finishing {
            slow_dest: None,
            write_out: false,
        }
    }

    /// Opening -> Opened (an Open, which waits for its Send Open until
    /// `open_until`) or Running (a Send or a Read, to its destination or
    /// the status pipe), once the file is open. Hands out the request's
    /// header and trailer.
    pub fn opened(
        self,
        file: Arc<OwnedFd>,
        open_until: Option<Instant>,
    ) -> Step<HeaderTrailer, ()> {
        match self {
            State::Opening { dest, hdtr, .. } => {
                let next = match open_until {
                    Some(deadline) => State::Opened { file, deadline },
                    None => State::Running {
                        file,
                        dest: dest.unwrap_or(Dest::Status),
                        dest_ready: true,
                    },
                };
                Ok((next, hdtr))
            }
            other => Err((other, ())),
        }
    }

    /// Opened -> Running: its Send Open came, to `dest`.
    pub fn send_open(self, dest: Dest) -> Step<(), Dest> {
        match self {
            State::Opened { file, .. } => Ok((
                State::Running {
                    file,
                    dest,
                    dest_ready: true,
                },
                (),
            )),
            other => Err((other, dest)),
        }
    }

    /// Running -> WaitingForDisk: the next chunk is not in memory. Hands
    /// out the file for the disk thread.
    pub fn wait_for_disk(self) -> Step<Arc<OwnedFd>, ()> {
        match self {
            State::Running { file, dest, .. } => {
                let job_file = Arc::clone(&file);
                Ok((State::WaitingForDisk { file, dest }, job_file))
            }
            other => Err((other, ())),
        }
    }

    /// WaitingForDisk -> Running: the disk brought the chunk in.
    pub fn disk_done(self) -> Step<(), ()> {
        match self {
            State::WaitingForDisk { file, dest } => Ok((
                State::Running {
                    file,
                    dest,
                    dest_ready: true,
                },
                (),
            )),
            other => Err((other, ())),
        }
    }

    /// Running to a descriptor -> WritingFile: the next chunk is written by
    /// a disk thread. Hands out the file and the destination for the job.
    pub fn write_on_disk_thread(self) -> Step<(Arc<OwnedFd>, OwnedFd), ()> {
        match self {
            State::Running {
                file,
                dest: Dest::Fd { fd, .. },
                ..
            } => {
                let job_file = Arc::clone(&file);
                Ok((State::WritingFile { file }, (job_file, fd)))
            }
            other => Err((other, ())),
        }
    }

    /// WritingFile -> Running: the write job came back with the regular
    /// file `dest`.
    pub fn written(self, dest: OwnedFd) -> Step<(), OwnedFd> {
        match self {
            State::WritingFile { file } => Ok((
                State::Running {
                    file,
                    dest: Dest::Fd {
                        fd: dest,
                        kind: DestKind::RegularFile,
                        registered: false,
                        strict: false,
                        seen: 0,
                    },
                    dest_ready: true,
                },
                (),
            )),
            other => Err((other, dest)),
        }
    }
}

/// How a transfer ended, for the counters and the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every byte was moved.
    Complete,
    /// It failed with this errno (written on its channel, except a Read's).
    Failed(Errno),
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
            Outcome::Failed(e) => write!(f, "failed: {}", std::io::Error::from(*e)),
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

    /// Makes the transition `step` ([`State`]'s methods): the next state
    /// takes the old one's place and what the step hands out is returned;
    /// a state the step does not apply to stays as it was, and what the
    /// step was given comes back as the error.
    pub fn step<R, E>(&mut self, step: impl FnOnce(State) -> Step<R, E>) -> Result<R, E> {
        // The one place a state is moved out of a live transfer: `step`
        // owns it and always gives a state back, so the `Finishing` here
        // is never seen by anything.
        let old = std::mem::replace(&mut self.state, State::finished());
        match step(old) {
            Ok((next, out)) => {
                self.state = next;
                Ok(out)
            }
            Err((same, given)) => {
                self.state = same;
                Err(given)
            }
        }
    }

    /// Leaves the data part: the file and the destination are handed back
    /// (for deregistration and closing) and the state is
    /// [`State::Finishing`] (with the write job still out, if one was).
    pub fn take_data_part(&mut self) -> (Option<Arc<OwnedFd>>, Option<Dest>) {
        let write_out = matches!(self.state, State::WritingFile { .. });
        let next = State::Finishing {
            slow_dest: None,
            write_out,
        };
        match std::mem::replace(&mut self.state, next) {
            State::Running { file, dest, .. } | State::WaitingForDisk { file, dest } => {
                (Some(file), Some(dest))
            }
            State::Opened { file, .. } | State::WritingFile { file } => (Some(file), None),
            State::Opening { dest, .. } => (None, dest),
            finishing @ State::Finishing { .. } => {
                self.state = finishing;
                (None, None)
            }
        }
    }

    /// Keeps an ended transfer's destination whose close may block, to
    /// close with the transfer; gives it back if the transfer has not ended
    /// (or keeps one already).
    pub fn keep_slow_dest(&mut self, fd: OwnedFd) -> Result<(), OwnedFd> {
        match &mut self.state {
            State::Finishing {
                slow_dest: kept @ None,
                ..
            } => {
                *kept = Some(fd);
                Ok(())
            }
            _ => Err(fd),
        }
    }

    /// The destination [`Transfer::keep_slow_dest`] kept, if any.
    pub fn take_slow_dest(&mut self) -> Option<OwnedFd> {
        match &mut self.state {
            State::Finishing { slow_dest, .. } => slow_dest.take(),
            _ => None,
        }
    }

    /// Whether a disk thread still holds the destination of this ended
    /// transfer for a write job.
    pub fn write_out(&self) -> bool {
        matches!(
            self.state,
            State::Finishing {
                write_out: true,
                ..
            }
        )
    }

    /// A write job's destination is back (the job done, or recalled before
    /// it ran): a transfer still writing runs again with it (`Ok(true)`);
    /// one that ended meanwhile keeps it to close with the transfer
    /// (`Ok(false)`); anything else gives it back.
    #[allow(clippy::result_large_err)] // a state by value (see `State`)
    pub fn write_came_back(&mut self, dest: OwnedFd) -> Result<bool, OwnedFd> {
        if let State::Finishing {
            write_out: out @ true,
            slow_dest: kept @ None,
        } = &mut self.state
        {
            *out = false;
            *kept = Some(dest);
            return Ok(false);
        }
        self.step(|s| s.written(dest)).map(|()| true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> Arc<OwnedFd> {
        let (r, _w) = crate::sys::pipe().expect("pipe");
        Arc::new(r)
    }

    fn fd() -> OwnedFd {
        crate::sys::pipe().expect("pipe").0
    }

    fn name(s: &State) -> &'static str {
        match s {
            State::Opening { .. } => "Opening",
            State::Opened { .. } => "Opened",
            State::Running { .. } => "Running",
            State::WaitingForDisk { .. } => "WaitingForDisk",
            State::WritingFile { .. } => "WritingFile",
            State::Finishing { .. } => "Finishing",
        }
    }

    fn opening(dest: Option<Dest>) -> State {
        State::Opening {
            path: c"f".to_owned(),
            dest,
            hdtr: HeaderTrailer {
                header: b"H".to_vec(),
                trailer: b"T".to_vec(),
            },
            range: Range::WHOLE,
            done: 0,
            info_written: false,
        }
    }

    fn opened() -> State {
        State::Opened {
            file: file(),
            deadline: Instant::now(),
        }
    }

    fn running(dest: Dest) -> State {
        State::Running {
            file: file(),
            dest,
            dest_ready: false,
        }
    }

    fn to_fd() -> Dest {
        Dest::Fd {
            fd: fd(),
            kind: DestKind::RegularFile,
            registered: false,
            strict: false,
            seen: 0,
        }
    }

    /// Every state, for the refused cases.
    fn all() -> Vec<State> {
        vec![
            opening(None),
            opened(),
            running(Dest::Status),
            State::WaitingForDisk {
                file: file(),
                dest: Dest::Status,
            },
            State::WritingFile { file: file() },
            State::finished(),
        ]
    }

    #[test]
    fn opened_goes_to_opened_or_running_and_hands_out_the_hdtr() {
        let (next, hdtr) = opening(None)
            .opened(file(), Some(Instant::now()))
            .expect("allowed");
        assert_eq!((name(&next), hdtr.header.as_slice()), ("Opened", &b"H"[..]));
        let (next, _) = opening(Some(to_fd()))
            .opened(file(), None)
            .expect("allowed");
        assert!(matches!(
            next,
            State::Running {
                dest: Dest::Fd { .. },
                dest_ready: true,
                ..
            }
        ));
        let (next, _) = opening(None).opened(file(), None).expect("allowed");
        assert!(
            matches!(
                next,
                State::Running {
                    dest: Dest::Status,
                    ..
                }
            ),
            "a Read"
        );
        for s in all().into_iter().skip(1) {
            let was = name(&s);
            let (back, ()) = s.opened(file(), None).expect_err("refused");
            assert_eq!(name(&back), was, "given back unchanged");
        }
    }

    #[test]
    fn send_open_runs_an_opened_file_only() {
        let (next, ()) = opened().send_open(to_fd()).expect("allowed");
        assert!(matches!(
            next,
            State::Running {
                dest: Dest::Fd { .. },
                dest_ready: true,
                ..
            }
        ));
        for s in all()
            .into_iter()
            .filter(|s| !matches!(s, State::Opened { .. }))
        {
            let was = name(&s);
            let (back, dest) = s.send_open(to_fd()).expect_err("refused");
            assert_eq!(name(&back), was);
            assert!(
                matches!(dest, Dest::Fd { .. }),
                "the destination comes back"
            );
        }
    }

    #[test]
    fn the_disk_round_trip_keeps_the_file_and_destination() {
        let (waiting, job_file) = running(to_fd()).wait_for_disk().expect("allowed");
        let State::WaitingForDisk { file, .. } = &waiting else {
            panic!("{}", name(&waiting));
        };
        assert!(
            Arc::ptr_eq(file, &job_file),
            "the job reads the transfer's file"
        );
        let (back, ()) = waiting.disk_done().expect("allowed");
        assert!(matches!(
            back,
            State::Running {
                dest: Dest::Fd { .. },
                dest_ready: true,
                ..
            }
        ));
        for s in all()
            .into_iter()
            .filter(|s| !matches!(s, State::Running { .. }))
        {
            let was = name(&s);
            assert_eq!(name(&s.wait_for_disk().expect_err("refused").0), was);
        }
        for s in all()
            .into_iter()
            .filter(|s| !matches!(s, State::WaitingForDisk { .. }))
        {
            let was = name(&s);
            assert_eq!(name(&s.disk_done().expect_err("refused").0), was);
        }
    }

    #[test]
    fn a_write_job_takes_the_destination_and_brings_it_back() {
        let (writing, (_, dest)) = running(to_fd()).write_on_disk_thread().expect("allowed");
        assert_eq!(name(&writing), "WritingFile");
        let (back, ()) = writing.written(dest).expect("allowed");
        assert!(matches!(
            back,
            State::Running {
                dest: Dest::Fd {
                    kind: DestKind::RegularFile,
                    ..
                },
                ..
            }
        ));
        // Data to the status pipe has no descriptor to hand a disk thread.
        let (back, ()) = running(Dest::Status)
            .write_on_disk_thread()
            .expect_err("refused");
        assert_eq!(name(&back), "Running");
        for s in all()
            .into_iter()
            .filter(|s| !matches!(s, State::WritingFile { .. }))
        {
            let was = name(&s);
            let (back, _dest) = s.written(fd()).expect_err("refused");
            assert_eq!(name(&back), was);
        }
    }

    fn transfer(state: State) -> Transfer {
        Transfer {
            command: Command::Send,
            state,
            status: StatusWriter::new(fd(), false),
            status_registered: false,
            cursor: Cursor::new(Vec::new(), 0, 0, Vec::new()),
            queued: false,
            peer_uid: None,
            started: Instant::now(),
            last_progress: Instant::now(),
            outcome: None,
        }
    }

    /// What an ended transfer still holds is in its Finishing state: a
    /// destination to close with it, and a write job still out.
    #[test]
    fn an_ended_transfer_holds_its_slow_destination_and_its_write_job() {
        // Ended while a write job was out: the job's destination is kept
        // when it comes back, to close with the transfer.
        let mut t = transfer(State::WritingFile { file: file() });
        let (f, dest) = t.take_data_part();
        assert!(f.is_some() && dest.is_none());
        assert!(t.write_out(), "the write job is still out");
        assert_eq!(t.write_came_back(fd()).ok(), Some(false), "kept");
        assert!(!t.write_out());
        assert!(t.take_slow_dest().is_some());
        assert!(t.take_slow_dest().is_none(), "once");
        // Still writing: it runs again with the destination.
        let mut t = transfer(State::WritingFile { file: file() });
        assert_eq!(t.write_came_back(fd()).ok(), Some(true));
        assert_eq!(name(&t.state), "Running");
        // Neither: the destination comes back to the caller.
        let mut t = transfer(running(Dest::Status));
        assert!(t.write_came_back(fd()).is_err());
        // A slow destination kept once the data part left, not before.
        let mut t = transfer(running(to_fd()));
        assert!(t.keep_slow_dest(fd()).is_err(), "not ended");
        let _ = t.take_data_part();
        assert!(!t.write_out());
        assert!(t.keep_slow_dest(fd()).is_ok());
        assert!(t.keep_slow_dest(fd()).is_err(), "one kept already");
        // Leaving the data part again keeps what Finishing holds.
        let _ = t.take_data_part();
        assert!(t.take_slow_dest().is_some());
    }

    #[test]
    #[allow(clippy::result_large_err)] // a state by value, as above
    fn a_refused_step_leaves_the_transfer_as_it_was() {
        let mut t = transfer(opened());
        assert!(t.step(State::disk_done).is_err());
        assert_eq!(name(&t.state), "Opened");
        assert!(t.step(|s| s.send_open(Dest::Status)).is_ok());
        assert_eq!(name(&t.state), "Running");
    }
}
