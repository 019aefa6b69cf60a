//! Inline first (DESIGN.md, "Inline first"; spec/c-api.md, "where a
//! transfer runs"): a Send does in the caller's process what cannot wait,
//! and hands the daemon only what would.
//!
//! Rule: nothing here waits. Every call is one the kernel answers from
//! memory or refuses at once: the open beneath the root from the kernel's
//! caches only (`RESOLVE_CACHED`, `RESOLVE_NO_XDEV`, and only on a
//! filesystem whose opens never wait), the data only from the page cache
//! (`preadv2(RWF_NOWAIT)`, or a probe before `splice`), the destination only
//! as far as it takes without waiting whatever its `O_NONBLOCK`
//! (`MSG_DONTWAIT` for sockets, `SPLICE_F_NONBLOCK` for pipes). Whatever did
//! not finish goes to the daemon as one Continue request carrying the file
//! already opened, the offset reached and the header bytes not yet written,
//! on a status channel the daemon writes exactly as for a Send. A transfer
//! finished here gets its file info and completion written into a fresh
//! pipe, so the caller reads the same bytes either way.
//!
//! The one wait is the handshake, once per connection ([`Inline::handshake`]):
//! the daemon says where its root is and whether attempts are allowed; the
//! client opens the root itself (with its own credentials) and checks that
//! it is the same directory. Nothing of the daemon's is passed.
//!
//! What runs here: Send and Send with header and trailer to a stream
//! socket, Send to a pipe, Read (into the data pipe), Open and Send Open
//! (the file opened here is handed to the daemon to hold, which keeps its
//! deadline, Cancel and shutdown, while this process keeps a handle for
//! the Send Open's attempt; [`begin_open_here`] holds it here alone). Other
//! destinations (a regular file, a datagram socket) and other systems
//! than Linux go to the daemon whole.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::protocol::{self as proto, FileInfo, HeaderTrailer, Range, Request, XferStat};
use crate::sys::beneath::{open_beneath, OpenAttempt, Resolve};
use crate::sys::cache::{self, Residency};
use crate::sys::fsfacts::FsFacts;
use crate::sys::{self, DestKind};

/// The environment variable that, set to `0`, turns the attempt off in a
/// process: every request goes to the daemon whole.
pub const INLINE_ENV: &str = "SENDFILED_INLINE";

/// How long the handshake waits for the daemon's answer.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);

/// Bytes read from the page cache per step of a Send to a socket.
const STEP: usize = 64 * 1024;

/// From this many file bytes on, a Send to a socket whose `O_NONBLOCK` is
/// set goes by `sendfile` after a page-cache probe rather than through a
/// buffer: measured in one process on this project's 2-core VM (loaded,
/// a note), `preadv2(RWF_NOWAIT)` + `send` took 5.2 / 5.5 / 16.4 / 58.6 us
/// for 4 / 16 / 64 / 256 KiB to a UNIX socket, `F_GETFL` + probe +
/// `sendfile` 7.2 / 8.2 / 9.7 / 30.4 us. A socket whose `O_NONBLOCK` is
/// clear keeps the buffer: `sendfile` has no per-call flag and would wait.
const SENDFILE_FROM: u64 = 32 * 1024;

/// Bytes per `sendfile` step (each probed first).
const SENDFILE_STEP: usize = 256 * 1024;

/// The largest range an attempt moves in the caller's thread, the
/// daemon's quantum: a larger one is handed to the daemon at once (the
/// file already opened, nothing written). A caller's event loop then pays
/// at most a quantum's copy per request, and a large transfer runs beside
/// the caller rather than in it: the HTTP figure's 16 MiB bodies on one
/// connection ran at 121 requests/s with the whole file sent from the
/// caller and 153 with its first 256 KiB, against 216-251 through the
/// daemon alone (BENCHMARKS.md, "Inline first").
const ATTEMPT_BUDGET: u64 = 256 * 1024;

static FINISHED: AtomicU64 = AtomicU64::new(0);
static HANDED_ON_PARTIAL: AtomicU64 = AtomicU64::new(0);
static HANDED_ON_WHOLE: AtomicU64 = AtomicU64::new(0);
static IDS: AtomicU64 = AtomicU64::new(1);

/// What this process's attempts came to, since it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InlineStats {
    /// Transfers finished in this process.
    pub finished: u64,
    /// Transfers handed to the daemon after part was written here.
    pub handed_on_partial: u64,
    /// Transfers attempted here that went to the daemon with nothing
    /// written (a file not in the caches, a full destination, ...).
    pub handed_on_whole: u64,
}

/// This process's counters.
pub fn stats() -> InlineStats {
    InlineStats {
        finished: FINISHED.load(Ordering::Relaxed),
        handed_on_partial: HANDED_ON_PARTIAL.load(Ordering::Relaxed),
        handed_on_whole: HANDED_ON_WHOLE.load(Ordering::Relaxed),
    }
}

/// Whether [`INLINE_ENV`] allows attempts (unset, or anything but `0`).
pub fn enabled_by_env() -> bool {
    std::env::var_os(INLINE_ENV).is_none_or(|v| v != "0")
}

/// Whether this process makes attempts at all: [`INLINE_ENV`] allows them
/// and the system has the calls they need (Linux). A connection still
/// needs the daemon's consent ([`Inline::handshake`]).
pub fn in_effect() -> bool {
    enabled_by_env() && cfg!(target_os = "linux")
}

/// What one connection needs for attempts: the root, opened by this
/// process, and what it learnt of its filesystem.
#[derive(Debug)]
pub struct Inline {
    root: OwnedFd,
    facts: FsFacts,
    /// The daemon's open-file timeout (`-t`).
    open_timeout: Duration,
    /// Opens made here, by id: handed to the daemon to hold (Adopt), or
    /// held here alone ([`begin_open_here`]); this process's own handle of
    /// each file, for a Send Open to attempt from. Dropped at Send Open,
    /// Cancel, or at the next Open once past the deadline.
    held: Mutex<Vec<Held>>,
}

/// An open file made here.
#[derive(Debug)]
struct Held {
    id: u64,
    file: OwnedFd,
    offset: u64,
    size: u64,
    /// Its device, for the page-cache probes of its Send Open.
    dev: libc::dev_t,
    deadline: Instant,
    /// The daemon holds it too (Adopt): a Cancel must reach it.
    daemon_holds: bool,
}

impl Inline {
    /// The handshake on the request socket `sock`: `None` (every request
    /// then goes to the daemon) when [`INLINE_ENV`] is `0`, on a system
    /// without a page-cache probe, when the daemon does not answer within
    /// [`HANDSHAKE_TIMEOUT`], refuses (`--no-inline`, the allow-list), or
    /// names a root this process cannot open or that is not the directory
    /// the daemon serves, or whose filesystem's opens may wait.
    pub fn handshake(sock: BorrowedFd<'_>) -> Option<Inline> {
        if !in_effect() {
            return None;
        }
        let hello = ask_hello(sock).ok()??;
        if !hello.inline_allowed {
            return None;
        }
        let path = CString::new(hello.root_path).ok()?;
        let root = sys::open_dir(&path).ok()?;
        let st = sys::fstat(root.as_fd()).ok()?;
        #[allow(clippy::unnecessary_cast)]
        if st.st_dev as u64 != hello.root_dev || st.st_ino as u64 != hello.root_ino {
            return None;
        }
        let facts = FsFacts::new();
        facts.learn_filesystem(root.as_fd(), st.st_dev);
        if !facts.opens_never_wait(st.st_dev) {
            return None;
        }
        Some(Inline {
            root,
            facts,
            open_timeout: Duration::from_millis(u64::from(hello.open_timeout_ms)),
            held: Mutex::new(Vec::new()),
        })
    }

    /// The attempt itself; see the top of this file.
    fn attempt(
        &self,
        path: &CStr,
        range: Range,
        hdtr: &HeaderTrailer,
        dest: BorrowedFd<'_>,
    ) -> Attempt {
        let to_socket = match sys::dest_kind(dest) {
            Ok(DestKind::StreamSocket) => true,
            Ok(DestKind::Pipe) if hdtr.header.is_empty() && hdtr.trailer.is_empty() => false,
            _ => return Attempt::Whole,
        };
        let Some((file, st)) = self.open(path) else {
            return Attempt::Whole;
        };
        let size = range.clip(st.st_size as u64);
        let mut w = Progress {
            hdr_done: 0,
            done: 0,
            trl_done: 0,
        };
        let cache = self.prober(st.st_dev);
        let finished = if to_socket {
            w.write_socket(cache, file.as_fd(), dest, range.offset, size, hdtr)
        } else {
            w.write_pipe(cache, file.as_fd(), dest, range.offset, size)
        };
        if !finished {
            return Attempt::HandOn {
                file,
                done: w.done,
                hdr_done: w.hdr_done,
                trl_done: w.trl_done,
            };
        }
        Attempt::Finished(FileInfo::ok(
            size,
            st.st_atime,
            st.st_mtime,
            st.st_ctime,
            inline_id(),
        ))
    }
}

impl Inline {
    /// The Read attempt: the file info and as much of the range as the
    /// page cache holds and a fresh pipe takes, spliced without waiting.
    fn attempt_read(&self, path: &CStr, range: Range) -> ReadAttempt {
        let (file, st) = match self.open(path) {
            Some(opened) => opened,
            None => return ReadAttempt::Whole,
        };
        let size = range.clip(st.st_size as u64);
        let Ok((r, w)) = sys::pipe() else {
            return ReadAttempt::Whole;
        };
        // The data pipe's first message, as the daemon writes it. A fresh
        // pipe has room for it: this write cannot wait.
        let id = inline_id();
        let info = FileInfo::ok(size, st.st_atime, st.st_mtime, st.st_ctime, id);
        if sys::write_message(w.as_fd(), &info.encode()).is_err() {
            return ReadAttempt::Whole;
        }
        grow_pipe(w.as_fd(), size);
        let mut p = Progress {
            hdr_done: 0,
            done: 0,
            trl_done: 0,
        };
        if p.write_pipe(
            self.prober(st.st_dev),
            file.as_fd(),
            w.as_fd(),
            range.offset,
            size,
        ) {
            // All of it: the write end closes here, end of file follows the
            // data.
            return ReadAttempt::Finished(r);
        }
        ReadAttempt::HandOn {
            data: r,
            pipe_w: w,
            file,
            rest: Range {
                offset: range.offset + p.done,
                len: size - p.done,
            },
            id,
        }
    }

    /// The open an attempt makes: beneath this process's root handle, from
    /// the kernel's caches only, on this mount only, then the shared lock
    /// the daemon takes. `None` for anything else: the daemon then opens
    /// and answers (the same errno as a client that never tried, and a
    /// file only the daemon may read is its to send).
    fn open(&self, path: &CStr) -> Option<(OwnedFd, libc::stat)> {
        let how = Resolve {
            cached_only: true,
            same_mount: true,
            else_open: false,
            force_walk: false,
        };
        let (file, st) = match open_beneath(self.root.as_fd(), path, how, &self.facts) {
            OpenAttempt::Done(Ok(opened)) => opened,
            OpenAttempt::Done(Err(_)) | OpenAttempt::WouldBlock => return None,
        };
        sys::flock_shared_nonblocking(file.as_fd()).ok()?;
        Some((file, st))
    }

    /// The probes of a file on `dev`, with this connection's facts.
    fn prober(&self, dev: libc::dev_t) -> Prober<'_> {
        Prober {
            facts: &self.facts,
            dev,
        }
    }
}

/// What a Read attempt came to.
enum ReadAttempt {
    Finished(OwnedFd),
    HandOn {
        data: OwnedFd,
        pipe_w: OwnedFd,
        file: OwnedFd,
        rest: Range,
        id: u64,
    },
    Whole,
}

/// A Read after the attempt: the data pipe's read end for the caller, and
/// what is left to ask the daemon, if anything.
#[derive(Debug)]
pub struct ReadBegun {
    /// The data pipe's read end: the file info, the data, end of file.
    pub data: OwnedFd,
    /// The request and the descriptors to pass with it, in order: the data
    /// pipe's write end, then (a Read handed on) the file. `None`: all of
    /// it is in the pipe already.
    pub ask: Option<(Vec<u8>, Vec<OwnedFd>)>,
}

/// Read File, attempted here first when `inline` allows. Counts what
/// happened ([`stats`]).
pub fn begin_read(inline: Option<&Inline>, path: &CStr, range: Range) -> io::Result<ReadBegun> {
    let attempt = match inline {
        Some(i) => i.attempt_read(path, range),
        None => ReadAttempt::Whole,
    };
    match attempt {
        ReadAttempt::Finished(data) => {
            FINISHED.fetch_add(1, Ordering::Relaxed);
            Ok(ReadBegun { data, ask: None })
        }
        ReadAttempt::HandOn {
            data,
            pipe_w,
            file,
            rest,
            id,
        } => {
            let bytes = Request::ContinueRead { rest, txnid: id }.encode()?;
            if rest.offset > range.offset {
                HANDED_ON_PARTIAL.fetch_add(1, Ordering::Relaxed);
            } else {
                HANDED_ON_WHOLE.fetch_add(1, Ordering::Relaxed);
            }
            Ok(ReadBegun {
                data,
                ask: Some((bytes, vec![pipe_w, file])),
            })
        }
        ReadAttempt::Whole => {
            if inline.is_some() {
                HANDED_ON_WHOLE.fetch_add(1, Ordering::Relaxed);
            }
            let bytes = Request::Read {
                path: path.to_owned(),
                range,
            }
            .encode()?;
            let (r, w) = sys::pipe()?;
            Ok(ReadBegun {
                data: r,
                ask: Some((bytes, vec![w])),
            })
        }
    }
}

/// Read File through `sock`, attempted here first when `inline` allows:
/// the data pipe's read end, carrying the file info, the data and end of
/// file as the daemon's would.
pub fn read(
    sock: BorrowedFd<'_>,
    inline: Option<&Inline>,
    path: &CStr,
    range: Range,
) -> io::Result<OwnedFd> {
    let begun = begin_read(inline, path, range)?;
    if let Some((bytes, fds)) = &begun.ask {
        let fds: Vec<BorrowedFd<'_>> = fds.iter().map(|f| f.as_fd()).collect();
        crate::request::send_request_bytes(sock, bytes, &fds)?;
    }
    Ok(begun.data)
}

/// A Send Open is attempted here only while this much is left before the
/// open file's deadline, so that what it hands on reaches the daemon
/// before the daemon's own deadline (which started later, when the Adopt
/// arrived) can expire the file: a late Send Open goes to the daemon whole
/// and gets its `ETIMEDOUT`, nothing sent.
pub const SEND_OPEN_MARGIN: Duration = Duration::from_millis(250);

impl Inline {
    /// The Open attempt: the file opened here, and the Adopt that hands
    /// the daemon a fresh status pipe and the file to hold under an id of
    /// this client's. The daemon writes the file info (or, at its limit,
    /// the refusal in its place) once it holds the file and its deadline
    /// runs, exactly as for an Open of its own: the channel cannot say the
    /// file is held before it is.
    fn attempt_open(&self, path: &CStr, range: Range) -> Option<OpenBegun> {
        let (file, st) = self.open(path)?;
        let size = range.clip(st.st_size as u64);
        let kept = file.try_clone().ok()?;
        let (r, w) = sys::pipe().ok()?;
        let id = inline_id();
        let bytes = Request::Adopt { range, txnid: id }.encode().ok()?;
        self.hold(Held {
            id,
            file: kept,
            offset: range.offset,
            size,
            dev: st.st_dev,
            deadline: Instant::now() + self.open_timeout,
            daemon_holds: true,
        });
        Some(OpenBegun {
            status: r,
            ask: (bytes, vec![w, file]),
        })
    }

    /// Remembers an open file made here; those past their deadline go
    /// (their descriptors close) as each new one comes.
    fn hold(&self, h: Held) {
        let now = Instant::now();
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.retain(|h| h.deadline > now);
        held.push(h);
    }

    /// Forgets the open file `id` (a Cancel, or its Send Open).
    fn take_held(&self, id: u64) -> Option<Held> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let at = held.iter().position(|h| h.id == id)?;
        Some(held.swap_remove(at))
    }
}

/// An Open after the attempt: the status channel's read end, and the
/// request to send with its descriptors in order.
#[derive(Debug)]
pub struct OpenBegun {
    /// The status channel: the file info first.
    pub status: OwnedFd,
    /// The request (Adopt, or Open when nothing was opened here) and the
    /// descriptors to pass with it: the status pipe's write end, then the
    /// file.
    pub ask: (Vec<u8>, Vec<OwnedFd>),
}

/// Open File, attempted here first when `inline` allows.
pub fn begin_open(inline: Option<&Inline>, path: &CStr, range: Range) -> io::Result<OpenBegun> {
    if let Some(begun) = inline.and_then(|i| i.attempt_open(path, range)) {
        return Ok(begun);
    }
    let bytes = Request::Open {
        path: path.to_owned(),
        range,
    }
    .encode()?;
    let (r, w) = sys::pipe()?;
    Ok(OpenBegun {
        status: r,
        ask: (bytes, vec![w]),
    })
}

/// A Send Open after the attempt.
#[derive(Debug)]
pub struct SendOpenBegun {
    /// The request to send with the destination: ContinueOpen from where
    /// the attempt stopped, or Send Open.
    pub bytes: Vec<u8>,
    /// Every byte went here. The daemon, which holds the status channel,
    /// still writes the completion and closes it when the request arrives;
    /// a caller that reads the channel itself (the tokio client) may take
    /// the transfer as complete once the request is sent, since the daemon
    /// cannot expire the file before (the attempt keeps
    /// [`SEND_OPEN_MARGIN`] to its deadline) and a Cancel can no longer
    /// undo a byte.
    pub finished_here: bool,
}

/// Send Open of `txnid`, attempted here first when the open file is one
/// this process opened and its deadline is not near. Counts what happened
/// ([`stats`]).
pub fn begin_send_open(
    inline: Option<&Inline>,
    txnid: u64,
    dest: BorrowedFd<'_>,
    hdtr: &HeaderTrailer,
) -> io::Result<SendOpenBegun> {
    let plain = || {
        let bytes = Request::SendOpen {
            txnid,
            hdtr: hdtr.clone(),
        }
        .encode()?;
        Ok(SendOpenBegun {
            bytes,
            finished_here: false,
        })
    };
    let Some((i, held)) = inline.and_then(|i| Some((i, i.take_held(txnid)?))) else {
        return plain();
    };
    if held.deadline.saturating_duration_since(Instant::now()) < SEND_OPEN_MARGIN {
        return plain();
    }
    let to_socket = match sys::dest_kind(dest) {
        Ok(DestKind::StreamSocket) => true,
        Ok(DestKind::Pipe) if hdtr.header.is_empty() && hdtr.trailer.is_empty() => false,
        _ => {
            HANDED_ON_WHOLE.fetch_add(1, Ordering::Relaxed);
            return plain();
        }
    };
    let mut p = Progress {
        hdr_done: 0,
        done: 0,
        trl_done: 0,
    };
    let cache = i.prober(held.dev);
    let all = if to_socket {
        p.write_socket(cache, held.file.as_fd(), dest, held.offset, held.size, hdtr)
    } else {
        p.write_pipe(cache, held.file.as_fd(), dest, held.offset, held.size)
    };
    if all {
        FINISHED.fetch_add(1, Ordering::Relaxed);
    } else if p.done > 0 || p.hdr_done > 0 {
        HANDED_ON_PARTIAL.fetch_add(1, Ordering::Relaxed);
    } else {
        HANDED_ON_WHOLE.fetch_add(1, Ordering::Relaxed);
    }
    // The daemon writes the completion (and whatever is left): it holds
    // the status channel.
    let bytes = Request::ContinueOpen {
        txnid,
        done: p.done,
        hdtr: rest_of(hdtr, p.hdr_done, p.trl_done),
    }
    .encode()?;
    Ok(SendOpenBegun {
        bytes,
        finished_here: all,
    })
}

/// Forgets this process's handle of the open file `txnid`, if it has one.
/// True when it was held here alone ([`begin_open_here`]): then the daemon
/// never heard of it, and a Cancel need not reach it.
pub fn forget(inline: Option<&Inline>, txnid: u64) -> bool {
    inline
        .and_then(|i| i.take_held(txnid))
        .is_some_and(|h| !h.daemon_holds)
}

/// An Open made and held in this process alone, for a caller that reads
/// the transfer's channel itself (the tokio client): nothing is asked of
/// the daemon unless its Send Open must be handed on.
#[derive(Debug, Clone, Copy)]
pub struct HeldHere {
    /// The file info, as the daemon would have written it (a client id).
    pub info: FileInfo,
    /// The open-file deadline (`-t`, from the handshake): a Send Open
    /// after it is `ETIMEDOUT`, nothing sent.
    pub deadline: Instant,
}

/// Open File, made and held here when `inline` allows and the open
/// answers from the kernel's caches; `None`: ask the daemon
/// ([`begin_open`]).
pub fn begin_open_here(inline: Option<&Inline>, path: &CStr, range: Range) -> Option<HeldHere> {
    let i = inline?;
    let (file, st) = i.open(path)?;
    let size = range.clip(st.st_size as u64);
    let id = inline_id();
    let deadline = Instant::now() + i.open_timeout;
    i.hold(Held {
        id,
        file,
        offset: range.offset,
        size,
        dev: st.st_dev,
        deadline,
        daemon_holds: false,
    });
    Some(HeldHere {
        info: FileInfo::ok(size, st.st_atime, st.st_mtime, st.st_ctime, id),
        deadline,
    })
}

/// What the Send Open of an open file held here came to.
#[derive(Debug)]
pub enum SendOpenHere {
    /// Every byte went here: nothing to ask.
    Finished,
    /// The daemon's from where the attempt stopped: `adopt` (to send with
    /// a new status pipe's write end and `file`), then `cont` (a
    /// ContinueOpen, to send with the destination), in that order: the
    /// daemon holds the file under its id, writes the file info, moves the
    /// rest and writes the completion, as for an Open begun here.
    HandOn {
        adopt: Vec<u8>,
        file: OwnedFd,
        cont: Vec<u8>,
    },
}

/// Send Open of `txnid`, an open file [`begin_open_here`] made, whose
/// deadline is `deadline`: `ETIMEDOUT` past it and `ECANCELED` once
/// cancelled (nothing sent either way), as the daemon answers.
pub fn send_open_here(
    inline: Option<&Inline>,
    txnid: u64,
    deadline: Instant,
    dest: BorrowedFd<'_>,
    hdtr: &HeaderTrailer,
) -> io::Result<SendOpenHere> {
    let now = Instant::now();
    let (i, held) = match inline.and_then(|i| Some((i, i.take_held(txnid)?))) {
        Some((i, h)) if h.deadline > now => (i, h),
        Some(_) => return Err(io::Error::from_raw_os_error(libc::ETIMEDOUT)),
        // Dropped as expired by a later Open, or cancelled.
        None if now >= deadline => return Err(io::Error::from_raw_os_error(libc::ETIMEDOUT)),
        None => return Err(io::Error::from_raw_os_error(libc::ECANCELED)),
    };
    let mut p = Progress {
        hdr_done: 0,
        done: 0,
        trl_done: 0,
    };
    let cache = i.prober(held.dev);
    let all = match sys::dest_kind(dest) {
        Ok(DestKind::StreamSocket) => {
            p.write_socket(cache, held.file.as_fd(), dest, held.offset, held.size, hdtr)
        }
        Ok(DestKind::Pipe) if hdtr.header.is_empty() && hdtr.trailer.is_empty() => {
            p.write_pipe(cache, held.file.as_fd(), dest, held.offset, held.size)
        }
        _ => false,
    };
    if all {
        FINISHED.fetch_add(1, Ordering::Relaxed);
        return Ok(SendOpenHere::Finished);
    }
    if p.done > 0 || p.hdr_done > 0 {
        HANDED_ON_PARTIAL.fetch_add(1, Ordering::Relaxed);
    } else {
        HANDED_ON_WHOLE.fetch_add(1, Ordering::Relaxed);
    }
    // The range as opened: its length is the size the file info said (an
    // empty one, whose header did not all go, is "to the end" on the wire:
    // the daemon clips it to the file again).
    let adopt = Request::Adopt {
        range: Range {
            offset: held.offset,
            len: held.size,
        },
        txnid,
    }
    .encode()?;
    let cont = Request::ContinueOpen {
        txnid,
        done: p.done,
        hdtr: rest_of(hdtr, p.hdr_done, p.trl_done),
    }
    .encode()?;
    Ok(SendOpenHere::HandOn {
        adopt,
        file: held.file,
        cont,
    })
}

/// The header bytes not yet written and the trailer bytes not yet written.
fn rest_of(hdtr: &HeaderTrailer, hdr_done: usize, trl_done: usize) -> HeaderTrailer {
    HeaderTrailer {
        header: hdtr.header[hdr_done..].to_vec(),
        trailer: hdtr.trailer[trl_done..].to_vec(),
    }
}

/// Sends Hello and reads the answer; `Ok(None)` for a refusal or an answer
/// that is not a [`proto::Hello`] (an older daemon says `EINVAL`).
fn ask_hello(sock: BorrowedFd<'_>) -> io::Result<Option<proto::Hello>> {
    let (r, w) = sys::pipe()?;
    let bytes = Request::Hello.encode()?;
    crate::request::send_request_bytes(sock, &bytes, &[w.as_fd()])?;
    drop(w);
    if !sys::wait_readable(r.as_fd(), HANDSHAKE_TIMEOUT)? {
        return Ok(None);
    }
    let mut buf = vec![0u8; libc::PIPE_BUF];
    let n = sys::read(r.as_fd(), &mut buf)?;
    // Then the end of file: the daemon is done with the handshake and holds
    // no descriptor of it (callers that count the daemon's descriptors see
    // the same number before and after).
    if sys::wait_readable(r.as_fd(), HANDSHAKE_TIMEOUT)? {
        let mut more = [0u8; 1];
        if sys::read(r.as_fd(), &mut more)? != 0 {
            return Ok(None);
        }
    }
    Ok(proto::Hello::decode(&buf[..n]))
}

/// What an attempt's page-cache probes go by: the connection's facts
/// (which learn, per device, whether its filesystem answers `RWF_NOWAIT`)
/// and the device of the file probed.
#[derive(Clone, Copy)]
struct Prober<'a> {
    facts: &'a FsFacts,
    dev: libc::dev_t,
}

/// How far an attempt got.
struct Progress {
    hdr_done: usize,
    done: u64,
    /// Trailer bytes written (only once every file byte is).
    trl_done: usize,
}

impl Progress {
    /// Header, file and trailer to a stream socket with `MSG_DONTWAIT`, the
    /// file read from the page cache only. True when all of it went. What
    /// is left of the header, each step of the file and (with the last)
    /// the trailer leave in one `sendmsg`: a small response is one call.
    fn write_socket(
        &mut self,
        cache: Prober<'_>,
        file: BorrowedFd<'_>,
        sock: BorrowedFd<'_>,
        offset: u64,
        size: u64,
        hdtr: &HeaderTrailer,
    ) -> bool {
        if size > ATTEMPT_BUDGET {
            return false;
        }
        if size - self.done >= SENDFILE_FROM && sys::is_nonblocking(sock).unwrap_or(false) {
            // The header leaves at once, without MSG_MORE (as nginx's
            // default, tcp_nopush off, sends it): the peer starts on it
            // while sendfile runs, which is a request's latency on one
            // connection. Measured (BENCHMARKS.md, "The header of a
            // sendfile response"): 64 KiB bodies over HTTP, one connection,
            // +12% requests/s (median of six alternating runs); eight
            // connections, where every core is busy and the header's own
            // segment is pure cost, -5%.
            while self.hdr_done < hdtr.header.len() {
                match sys::send_dontwait(sock, &hdtr.header[self.hdr_done..], 0) {
                    Ok(n) => self.hdr_done += n,
                    Err(_) => return false,
                }
            }
            return self.sendfile_socket(cache, file, sock, offset, size, hdtr);
        }
        let mut buf = vec![0u8; (size.min(STEP as u64)) as usize];
        loop {
            let want = (size - self.done).min(buf.len() as u64) as usize;
            let got = if want == 0 {
                0
            } else {
                match cache::read_cached(file, &mut buf[..want], offset + self.done) {
                    // 0 before the size: the file shrank, or the early zero
                    // of some kernels for a page not cached. The daemon
                    // decides.
                    Ok(0) | Err(_) => return false,
                    Ok(n) => n,
                }
            };
            let last = self.done + got as u64 == size;
            let header = &hdtr.header[self.hdr_done..];
            let trailer: &[u8] = if last {
                &hdtr.trailer[self.trl_done..]
            } else {
                &[]
            };
            let total = header.len() + got + trailer.len();
            if total > 0 {
                let parts = [
                    std::io::IoSlice::new(header),
                    std::io::IoSlice::new(&buf[..got]),
                    std::io::IoSlice::new(trailer),
                ];
                let flags = if last { 0 } else { more_flag() };
                let Ok(n) = sys::send_vectored_dontwait(sock, &parts, flags) else {
                    return false;
                };
                self.went(n, header.len(), got);
                if n < total {
                    // A short send: the socket is full.
                    return false;
                }
            }
            if last {
                return true;
            }
        }
    }

    /// Counts `n` bytes of one send of `header` bytes of the header, `got`
    /// of the file and then the trailer: they went in that order, so a
    /// short send ends inside one of them.
    fn went(&mut self, n: usize, header: usize, got: usize) {
        let h = n.min(header);
        let d = (n - h).min(got);
        self.hdr_done += h;
        self.done += d as u64;
        self.trl_done += n - h - d;
    }

    /// The file part to a socket whose `O_NONBLOCK` is set, by `sendfile`
    /// after a page-cache probe of each step (no copy through this
    /// process), then the trailer. True when all of it went.
    fn sendfile_socket(
        &mut self,
        cache: Prober<'_>,
        file: BorrowedFd<'_>,
        sock: BorrowedFd<'_>,
        offset: u64,
        size: u64,
        hdtr: &HeaderTrailer,
    ) -> bool {
        let all = self.probed_moves(cache, file, offset, size, SENDFILE_STEP, |at, want| {
            let mut off =
                i64::try_from(at).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
            sys::file_to_socket_nowait(file, &mut off, sock, want)
        });
        all && self.write_trailer(sock, &hdtr.trailer)
    }

    /// The file to a pipe: each step probed in the page cache, then moved
    /// with `splice(SPLICE_F_NONBLOCK)`. True when all of it went.
    fn write_pipe(
        &mut self,
        cache: Prober<'_>,
        file: BorrowedFd<'_>,
        pipe: BorrowedFd<'_>,
        offset: u64,
        size: u64,
    ) -> bool {
        self.probed_moves(cache, file, offset, size, STEP, |at, want| {
            let mut off = at;
            sys::file_to_pipe_nowait(file, &mut off, pipe, want)
        })
    }

    /// The file part in steps of at most `step` bytes, each probed in the
    /// page cache first, then moved by `mv(offset, len)` (a call that
    /// never waits for the destination): true when all of it went; false
    /// at the first miss, refusal, error or full destination.
    fn probed_moves(
        &mut self,
        cache: Prober<'_>,
        file: BorrowedFd<'_>,
        offset: u64,
        size: u64,
        step: usize,
        mut mv: impl FnMut(u64, usize) -> io::Result<usize>,
    ) -> bool {
        if size > ATTEMPT_BUDGET {
            return false;
        }
        while self.done < size {
            let want = (size - self.done).min(step as u64) as usize;
            let at = offset + self.done;
            match cache::probe_on(file, cache.dev, at, want, cache.facts) {
                Ok(Residency::Cached) => {}
                _ => return false,
            }
            match mv(at, want) {
                Ok(0) | Err(_) => return false,
                Ok(n) => self.done += n as u64,
            }
        }
        true
    }

    /// What is left of the trailer, with `MSG_DONTWAIT`: true when all of
    /// it went.
    fn write_trailer(&mut self, sock: BorrowedFd<'_>, trailer: &[u8]) -> bool {
        while self.trl_done < trailer.len() {
            match sys::send_dontwait(sock, &trailer[self.trl_done..], 0) {
                Ok(n) => self.trl_done += n,
                Err(_) => return false,
            }
        }
        true
    }
}

/// Offers a Read's pipe room for `size` more bytes, up to 1 MiB, as the
/// daemon does for its Reads: a default pipe (64 KiB) would hand every
/// larger Read on. Linux only; best effort.
fn grow_pipe(pipe: BorrowedFd<'_>, size: u64) {
    #[cfg(target_os = "linux")]
    if size + proto::FILE_INFO_LEN as u64 > 64 * 1024 {
        let _ =
            sys::linux::set_pipe_size(pipe, (size as usize + proto::FILE_INFO_LEN).min(1 << 20));
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (pipe, size);
}

/// `MSG_MORE` where the system has it: more bytes follow this send.
fn more_flag() -> libc::c_int {
    #[cfg(target_os = "linux")]
    return libc::MSG_MORE;
    #[cfg(not(target_os = "linux"))]
    return 0;
}

/// A fresh pipe holding what the daemon would have written for a Send that
/// went out without waiting: the file info and the completion, in one
/// write; its read end. Out of descriptors for it, the data went out all
/// the same and the daemon cannot be asked to report it: the error stands.
pub fn finished_channel(info: &FileInfo) -> io::Result<OwnedFd> {
    let (r, w) = sys::pipe()?;
    let mut msg = Vec::with_capacity(proto::FILE_INFO_LEN + proto::XFER_STAT_LEN);
    msg.extend_from_slice(&info.encode());
    msg.extend_from_slice(&XferStat::complete().encode());
    sys::write_message(w.as_fd(), &msg)?;
    Ok(r)
}

/// An id for a transfer begun here: the top bit set, which the daemon's
/// ids never have ([`proto::is_client_id`]); the rest unguessable, as the
/// daemon's are (a Read or Open handed on keeps its id, the daemon adopts
/// it and binds it to the caller's uid): a counter through SipHash under a
/// key drawn from the kernel once per process (`RandomState`), so no
/// system call per transfer. A Cancel of a transfer finished here finds
/// nothing, as for any finished one.
fn inline_id() -> u64 {
    use std::hash::BuildHasher;
    static KEY: std::sync::OnceLock<std::hash::RandomState> = std::sync::OnceLock::new();
    let top = 1u64 << (usize::BITS - 1);
    let key = KEY.get_or_init(std::hash::RandomState::new);
    let id = top | (key.hash_one(IDS.fetch_add(1, Ordering::Relaxed)) & (top - 1));
    debug_assert!(proto::is_client_id(id));
    id
}

/// What an attempt came to.
enum Attempt {
    /// All of it went; the file info the channel says first.
    Finished(FileInfo),
    /// Part (maybe none) went; the rest is the daemon's, from here.
    HandOn {
        file: OwnedFd,
        done: u64,
        hdr_done: usize,
        trl_done: usize,
    },
    /// Nothing was tried that the daemon must know of.
    Whole,
}

/// What a Send came to after the attempt.
#[derive(Debug)]
pub enum Begun {
    /// Finished here: the file info of the transfer, which is complete. A
    /// caller that hands out a status channel makes it with
    /// [`finished_channel`]; one that reads the channel itself (the tokio
    /// client, [`crate::Client::send_complete`]) needs none.
    Finished(FileInfo),
    /// The daemon's, from where the attempt stopped: the request to send
    /// with a new status pipe's write end, the destination and, when the
    /// attempt opened it, the file (in that order).
    Ask {
        /// The encoded request: Continue, or Send when nothing was opened.
        bytes: Vec<u8>,
        /// The file the attempt opened, passed on so that nothing is
        /// opened twice.
        file: Option<OwnedFd>,
    },
}

/// Send File, attempted here first when `inline` allows; what is left to
/// ask the daemon, if anything. Counts what happened ([`stats`]).
pub fn begin(
    inline: Option<&Inline>,
    path: &CStr,
    range: Range,
    hdtr: &HeaderTrailer,
    dest: BorrowedFd<'_>,
) -> io::Result<Begun> {
    let attempt = match inline {
        Some(i) => i.attempt(path, range, hdtr, dest),
        None => return whole(path, range, hdtr),
    };
    match attempt {
        Attempt::Finished(info) => {
            FINISHED.fetch_add(1, Ordering::Relaxed);
            Ok(Begun::Finished(info))
        }
        Attempt::HandOn {
            file,
            done,
            hdr_done,
            trl_done,
        } => {
            let req = Request::Continue {
                range,
                done,
                hdtr: rest_of(hdtr, hdr_done, trl_done),
            };
            let bytes = req.encode()?;
            if done > 0 || hdr_done > 0 {
                HANDED_ON_PARTIAL.fetch_add(1, Ordering::Relaxed);
            } else {
                HANDED_ON_WHOLE.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Begun::Ask {
                bytes,
                file: Some(file),
            })
        }
        Attempt::Whole => {
            HANDED_ON_WHOLE.fetch_add(1, Ordering::Relaxed);
            whole(path, range, hdtr)
        }
    }
}

/// The daemon's Send, as before inline first.
fn whole(path: &CStr, range: Range, hdtr: &HeaderTrailer) -> io::Result<Begun> {
    let req = Request::Send {
        path: path.to_owned(),
        range,
        hdtr: hdtr.clone(),
    };
    Ok(Begun::Ask {
        bytes: req.encode()?,
        file: None,
    })
}

/// Send File through `sock`, attempted here first when `inline` allows:
/// the status channel's read end, which carries what the daemon's would.
pub fn send(
    sock: BorrowedFd<'_>,
    inline: Option<&Inline>,
    path: &CStr,
    range: Range,
    hdtr: &HeaderTrailer,
    dest: BorrowedFd<'_>,
) -> io::Result<OwnedFd> {
    match begin(inline, path, range, hdtr, dest)? {
        Begun::Finished(info) => finished_channel(&info),
        Begun::Ask { bytes, file } => ask(sock, &bytes, dest, file),
    }
}

/// Sends what [`begin`] left to ask, with a new status pipe's write end,
/// the destination and the file the attempt opened (if any): the pipe's
/// read end.
pub fn ask(
    sock: BorrowedFd<'_>,
    bytes: &[u8],
    dest: BorrowedFd<'_>,
    file: Option<OwnedFd>,
) -> io::Result<OwnedFd> {
    let (r, w) = sys::pipe()?;
    let mut fds = vec![w.as_fd(), dest];
    fds.extend(file.as_ref().map(|f| f.as_fd()));
    crate::request::send_request_bytes(sock, bytes, &fds)?;
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::Progress;

    fn progress(hdr_done: usize, done: u64, trl_done: usize) -> Progress {
        Progress {
            hdr_done,
            done,
            trl_done,
        }
    }

    /// A short send of header + file + trailer counts each part up to
    /// where it ended, whichever part that is.
    #[test]
    fn a_short_send_ends_inside_the_part_it_reached() {
        let fields = |p: &Progress| (p.hdr_done, p.done, p.trl_done);
        // 10 header bytes left (of 30, 20 already out), 100 file bytes, 5
        // trailer bytes.
        for (n, want) in [
            (0, (20, 0, 0)),
            (4, (24, 0, 0)),
            (10, (30, 0, 0)),
            (60, (30, 50, 0)),
            (110, (30, 100, 0)),
            (112, (30, 100, 2)),
            (115, (30, 100, 5)),
        ] {
            let mut p = progress(20, 0, 0);
            p.went(n, 10, 100);
            assert_eq!(fields(&p), want, "n = {n}");
        }
        // A later step: the header is done, the file is part-way.
        let mut p = progress(30, 64, 0);
        p.went(40, 0, 36);
        assert_eq!(fields(&p), (30, 100, 4));
    }
}
