//! The daemon's event loop.
//!
//! One thread runs an edge-triggered readiness loop (`mio`: epoll on Linux,
//! kqueue on the BSDs and macOS) over the request socket, every transfer's
//! status channel and destination, a signal pipe and a waker for the disk
//! I/O pool. Nothing on this thread blocks: destinations and status pipes are
//! non-blocking, each transfer moves at most a bounded quantum per turn so a
//! fast reader cannot starve the others, and data missing from the page cache
//! is brought in by [`disk`] threads.

pub mod disk;
pub mod listener;
pub mod pump;
pub mod status;
pub mod table;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};

use crate::backend::{DestKind, TransferBackend};
use crate::protocol::{
    self as proto, Command, FileInfo, HeaderTrailer, Range, Request, ServerStat,
};
use crate::sys::{self, errno as errno_of, PeerCred, Received};
use disk::{DiskJob, DiskPool};
use listener::RequestSocket;
use pump::{pump, Cursor, Limits, PumpStop};
use status::{Final, Flush, StatusWriter};
use table::{Slot, TransferTable};

/// Tunables and limits of one server.
#[derive(Debug, Clone)]
pub struct Config {
    /// Most transfers in the table at once (open files included); beyond it
    /// requests get `EMFILE`.
    pub max_transfers: usize,
    /// How long an opened file waits for Send Open before it is closed with
    /// `ETIMEDOUT`.
    pub open_timeout: Duration,
    /// Most bytes one backend call moves.
    pub chunk: usize,
    /// Most bytes one transfer moves per turn before the others get theirs.
    pub quantum: usize,
    /// Disk I/O threads.
    pub disk_threads: usize,
    /// Whether to probe the page cache before sending (and hand misses to
    /// the disk threads).
    pub probe_cache: bool,
    /// After activity, how long the loop keeps polling without sleeping
    /// before it blocks: a request that follows within this window is seen
    /// without a wake-up from idle. Zero never spins.
    pub busy_poll: Duration,
    /// If not empty, only these uids (or the gids below) may make requests.
    pub allow_uids: Vec<u32>,
    /// If not empty, only these gids (or the uids above) may make requests.
    pub allow_gids: Vec<u32>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_transfers: 1024,
            open_timeout: Duration::from_secs(10),
            chunk: 1 << 20,
            quantum: 4 << 20,
            disk_threads: 2,
            probe_cache: true,
            busy_poll: Duration::ZERO,
            allow_uids: Vec::new(),
            allow_gids: Vec::new(),
        }
    }
}

/// Counters answered to a status request.
#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    completed: u64,
    failed: u64,
    bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Read,
    Send,
    Open,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Opened, waiting for Send Open.
    Opened,
    /// Moving data.
    Running,
    /// A disk thread is bringing the next chunk in.
    WaitingForDisk,
    /// Data done or failed; owes its final status message.
    Finishing,
}

/// Where a transfer's data goes.
#[derive(Debug)]
enum Dest {
    /// Not yet known (an opened file).
    None,
    /// The status pipe itself (Read).
    Status,
    /// A descriptor the client passed.
    Fd(OwnedFd, DestKind),
}

#[derive(Debug)]
struct Transfer {
    op: Op,
    state: State,
    status: StatusWriter,
    file: Option<Arc<OwnedFd>>,
    cursor: Cursor,
    dest: Dest,
    dest_ready: bool,
    queued: bool,
    status_registered: bool,
    dest_registered: bool,
    peer_uid: Option<u32>,
    started: Instant,
    /// How it ended, for the log: 0 complete, an errno, or [`GONE`].
    ended: i32,
}

/// [`Transfer::ended`] of a transfer whose client went away.
const GONE: i32 = -1;

const LISTENER: Token = Token(0);
const SIGNALS: Token = Token(1);
const WAKER: Token = Token(2);
const FIRST_TRANSFER_TOKEN: usize = 3;

fn status_token(slot: Slot) -> Token {
    Token(FIRST_TRANSFER_TOKEN + slot * 2)
}

fn dest_token(slot: Slot) -> Token {
    Token(FIRST_TRANSFER_TOKEN + slot * 2 + 1)
}

/// Datagrams handled per wake-up before transfers get their turn.
const REQUESTS_PER_TURN: usize = 64;

/// How long shutdown waits for full status pipes to take their `ECANCELED`.
const SHUTDOWN_DRAIN: Duration = Duration::from_secs(1);

/// The server: a backend, a root, a request socket and the loop state.
pub struct Server<B: TransferBackend> {
    backend: Arc<B>,
    config: Config,
    root: OwnedFd,
    socket: RequestSocket,
    poll: Poll,
    table: TransferTable<Transfer>,
    runq: VecDeque<Slot>,
    timers: BinaryHeap<Reverse<(Instant, u64)>>,
    disk: DiskPool,
    signals: UnixStream,
    counters: Counters,
    started: Instant,
    recv_buf: listener::RecvBatch,
    received: Vec<Received>,
    listener_ready: bool,
    ids: table::RandomIds,
}

impl<B: TransferBackend> std::fmt::Debug for Server<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("backend", &self.backend.name())
            .field("live", &self.table.len())
            .finish()
    }
}

impl<B: TransferBackend> Server<B> {
    /// Builds a server serving files beneath `root` on `socket`. Registers
    /// `SIGTERM` and `SIGINT` for graceful shutdown and ignores `SIGPIPE`.
    pub fn new(
        backend: B,
        config: Config,
        root: OwnedFd,
        socket: RequestSocket,
    ) -> io::Result<Server<B>> {
        let poll = Poll::new()?;
        let backend = Arc::new(backend);
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let wake: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
            let _ = waker.wake();
        });
        let disk = DiskPool::start(config.disk_threads, Arc::clone(&backend), wake)?;
        let (sig_rx, sig_tx) = UnixStream::pair()?;
        sig_rx.set_nonblocking(true)?;
        sig_tx.set_nonblocking(true)?;
        let sig_tx2 = sig_tx.try_clone()?;
        signal_hook::low_level::pipe::register(signal_hook::consts::SIGTERM, sig_tx)?;
        signal_hook::low_level::pipe::register(signal_hook::consts::SIGINT, sig_tx2)?;
        // SAFETY: setting SIGPIPE to ignored has no preconditions; a closed
        // destination must come back as EPIPE, not kill the daemon.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
        poll.registry().register(
            &mut SourceFd(&socket.fd.as_raw_fd()),
            LISTENER,
            Interest::READABLE,
        )?;
        poll.registry().register(
            &mut SourceFd(&sig_rx.as_raw_fd()),
            SIGNALS,
            Interest::READABLE,
        )?;
        Ok(Server {
            backend,
            config,
            root,
            socket,
            poll,
            table: TransferTable::default(),
            runq: VecDeque::new(),
            timers: BinaryHeap::new(),
            disk,
            signals: sig_rx,
            counters: Counters::default(),
            started: Instant::now(),
            recv_buf: listener::RecvBatch::new(proto::MAX_REQUEST_LEN + 1),
            received: Vec::with_capacity(listener::BATCH),
            listener_ready: true,
            ids: table::RandomIds::default(),
        })
    }

    /// Serves until `SIGTERM` or `SIGINT`, then cancels every live transfer
    /// (`ECANCELED` on its status channel), removes the socket file and
    /// returns.
    pub fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        log::info!(
            "serving with backend {}, at most {} transfers, open-file timeout {} ms",
            self.backend.name(),
            self.config.max_transfers,
            self.config.open_timeout.as_millis()
        );
        let mut last_activity = Instant::now();
        loop {
            let timeout = if !self.runq.is_empty()
                || self.listener_ready
                || last_activity.elapsed() < self.config.busy_poll
            {
                Some(Duration::ZERO)
            } else {
                self.timers
                    .peek()
                    .map(|Reverse((t, _))| t.saturating_duration_since(Instant::now()))
            };
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            if !events.is_empty() {
                last_activity = Instant::now();
            }
            let mut stop = false;
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => self.listener_ready = true,
                    SIGNALS => stop = self.drain_signals(),
                    WAKER => self.disk_finished(),
                    Token(t) => {
                        let slot = (t - FIRST_TRANSFER_TOKEN) / 2;
                        let is_dest = (t - FIRST_TRANSFER_TOKEN) % 2 == 1;
                        let closed = ev.is_error() || ev.is_write_closed();
                        self.transfer_event(slot, is_dest, closed);
                    }
                }
            }
            if stop {
                self.shutdown();
                return Ok(());
            }
            if self.listener_ready {
                self.accept_requests();
            }
            self.expire_open_files();
            self.run_queue();
            self.table.recycle();
        }
    }

    fn drain_signals(&mut self) -> bool {
        let mut buf = [0u8; 64];
        let mut got = false;
        while let Ok(n) = sys::read(self.signals.as_fd(), &mut buf) {
            if n == 0 {
                break;
            }
            got = true;
        }
        if got {
            log::info!("signal received: shutting down");
        }
        got
    }

    // ----- requests -----

    fn accept_requests(&mut self) {
        let mut batch = std::mem::take(&mut self.recv_buf);
        let mut got = std::mem::take(&mut self.received);
        let mut handled = 0;
        while handled < REQUESTS_PER_TURN {
            match batch.recv(self.socket.fd.as_fd(), &mut got) {
                Ok(drained) => {
                    for (i, rcv) in got.drain(..).enumerate() {
                        self.handle_datagram(batch.payload(i), rcv);
                        handled += 1;
                    }
                    if drained {
                        self.listener_ready = false;
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.listener_ready = false;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    log::error!("receiving a request: {e}");
                    self.listener_ready = false;
                    break;
                }
            }
        }
        self.recv_buf = batch;
        self.received = got;
    }

    fn peer_allowed(&self, cred: Option<PeerCred>) -> bool {
        if self.config.allow_uids.is_empty() && self.config.allow_gids.is_empty() {
            return true;
        }
        match cred {
            Some(c) => {
                self.config.allow_uids.contains(&c.uid) || self.config.allow_gids.contains(&c.gid)
            }
            // Without credentials from the OS there is nothing to check.
            None => true,
        }
    }

    fn handle_datagram(&mut self, bytes: &[u8], rcv: Received) {
        let Received {
            fds,
            truncated,
            fds_truncated,
            cred,
            ..
        } = rcv;
        let who = Who(cred);
        let cmd_hint = bytes.get(1).copied().and_then(Command::from_u8);
        let decoded = if truncated {
            Err(proto::DecodeError::TooLong)
        } else {
            Request::decode(bytes)
        };
        let req = match decoded {
            Ok(r) => r,
            Err(e) => {
                log::warn!(
                    "bad request from {who} ({} bytes, {} fds): {e}",
                    bytes.len(),
                    fds.len()
                );
                refuse_on_reply_channel(cmd_hint, fds, e.errno());
                return;
            }
        };
        let cmd = req.command();
        if fds_truncated || fds.len() != cmd.fd_count() {
            log::warn!(
                "bad request from {who}: {cmd:?} with {} descriptors{}",
                fds.len(),
                if fds_truncated {
                    " (more were cut)"
                } else {
                    ""
                }
            );
            refuse_on_reply_channel(Some(cmd), fds, libc::EINVAL);
            return;
        }
        if !self.peer_allowed(cred) {
            log::warn!("refused {cmd:?} from {who}: not in the allow-list");
            refuse_on_reply_channel(Some(cmd), fds, libc::EACCES);
            return;
        }
        let uid = cred.map(|c| c.uid);
        let mut fds = fds.into_iter();
        // The counts were checked above, so these descriptors are present.
        let (Some(first), second) = (fds.next(), fds.next()) else {
            match req {
                Request::Cancel { txnid } => self.cancel(txnid, uid),
                _ => log::warn!("bad request from {who}: missing descriptor"),
            }
            return;
        };
        match req {
            Request::Read { path, range } => self.start(
                Op::Read,
                &path,
                range,
                first,
                None,
                HeaderTrailer::default(),
                uid,
            ),
            Request::Send { path, range, hdtr } => match second {
                Some(dest) => self.start(Op::Send, &path, range, first, Some(dest), hdtr, uid),
                None => refuse(first, libc::EINVAL),
            },
            Request::Open { path, range } => self.start(
                Op::Open,
                &path,
                range,
                first,
                None,
                HeaderTrailer::default(),
                uid,
            ),
            Request::SendOpen { txnid, hdtr } => self.send_open(txnid, first, hdtr, uid),
            Request::Status => self.report_status(first),
            Request::Cancel { .. } => log::warn!("bad request from {who}: cancel with descriptors"),
        }
    }

    fn report_status(&mut self, reply: OwnedFd) {
        let s = ServerStat {
            cmd: proto::SFD_SERVER_STAT,
            stat: proto::SFD_STAT_OK,
            version: proto::PROTOCOL_VERSION,
            live: self.table.len() as u64,
            completed: self.counters.completed,
            failed: self.counters.failed,
            bytes: self.counters.bytes,
            uptime_secs: self.started.elapsed().as_secs(),
        };
        let _ = sys::set_nonblocking(reply.as_fd(), true);
        if let Err(e) = sys::write_message(reply.as_fd(), &s.encode()) {
            log::debug!("status reply not delivered: {e}");
        }
    }

    fn new_txnid(&mut self) -> io::Result<u64> {
        loop {
            // size_t on the C side: keep ids within it on 32-bit systems.
            let id = self.ids.take()? & (usize::MAX as u64);
            if id != 0 && !self.table.contains_id(id) {
                return Ok(id);
            }
        }
    }

    fn open_file(&self, path: &CStr) -> Result<(OwnedFd, libc::stat), i32> {
        let file = self
            .backend
            .open_beneath(self.root.as_fd(), path)
            .map_err(|e| {
                match e.raw_os_error() {
                    // An escape from the root is reported like any other file the
                    // client may not have.
                    Some(libc::EXDEV) => libc::EACCES,
                    // open(2) of a socket (or a device without a driver): not a
                    // regular file either.
                    Some(libc::ENXIO) | Some(libc::EOPNOTSUPP) => libc::EINVAL,
                    Some(n) => n,
                    None => libc::EIO,
                }
            })?;
        let st = sys::fstat(file.as_fd()).map_err(|e| errno_of(&e))?;
        if !sys::is_regular(&st) {
            return Err(libc::EINVAL);
        }
        sys::flock_shared_nonblocking(file.as_fd()).map_err(|e| errno_of(&e))?;
        Ok((file, st))
    }

    #[allow(clippy::too_many_arguments)]
    fn start(
        &mut self,
        op: Op,
        path: &CStr,
        range: Range,
        status_fd: OwnedFd,
        dest: Option<OwnedFd>,
        hdtr: HeaderTrailer,
        uid: Option<u32>,
    ) {
        let shown = path.to_string_lossy();
        if !sys::fstat(status_fd.as_fd()).is_ok_and(|st| sys::is_fifo(&st)) {
            log::warn!("{op:?} {shown}: status channel is not a pipe");
            return;
        }
        if let Err(e) = sys::set_nonblocking(status_fd.as_fd(), true) {
            log::warn!("{op:?} {shown}: status channel: {e}");
            return;
        }
        if self.table.len() >= self.config.max_transfers {
            log::info!(
                "{op:?} {shown}: refused, {} transfers live (EMFILE)",
                self.table.len()
            );
            return refuse(status_fd, libc::EMFILE);
        }
        let dest = match dest {
            None if op == Op::Read => Dest::Status,
            None => Dest::None,
            Some(fd) => match prepare_dest(fd) {
                Ok(d) => d,
                Err(errno) => {
                    log::info!("{op:?} {shown}: destination unusable (errno {errno})");
                    return refuse(status_fd, errno);
                }
            },
        };
        let (file, st) = match self.open_file(path) {
            Ok(x) => x,
            Err(errno) => {
                log::info!("{op:?} {shown}: {}", io::Error::from_raw_os_error(errno));
                return refuse(status_fd, errno);
            }
        };
        let txnid = match self.new_txnid() {
            Ok(id) => id,
            Err(e) => return refuse(status_fd, errno_of(&e)),
        };
        let size = range.clip(st.st_size as u64);
        let info = FileInfo::ok(size, st.st_atime, st.st_mtime, st.st_ctime, txnid);
        if op == Op::Read {
            self.backend.grow_pipe(status_fd.as_fd(), size);
        }
        let mut status = StatusWriter::new(status_fd, op != Op::Read);
        status.owe_info(info);
        if op == Op::Read && status.flush() != Flush::Clear {
            // A fresh pipe always has room for the info; if not, the client
            // is gone.
            log::info!("{op:?} {shown}: client gone before the file info");
            return;
        }
        let cursor = Cursor::new(hdtr.header, range.offset, size, hdtr.trailer);
        let state = if op == Op::Open {
            State::Opened
        } else {
            State::Running
        };
        let t = Transfer {
            op,
            state,
            status,
            file: Some(Arc::new(file)),
            cursor,
            dest,
            dest_ready: true,
            queued: false,
            status_registered: false,
            dest_registered: false,
            peer_uid: uid,
            started: Instant::now(),
            ended: 0,
        };
        let slot = self.table.insert(txnid, t);
        log::debug!("txn {txnid:x}: {op:?} {shown} ({size} bytes)");
        if op == Op::Open {
            self.timers
                .push(Reverse((Instant::now() + self.config.open_timeout, txnid)));
            self.flush_status(slot);
        } else {
            // The first turn runs now: a small file is often done before the
            // loop comes round, with info, progress and completion in one
            // write and no readiness registration at all.
            self.turn(slot);
        }
    }

    fn send_open(&mut self, txnid: u64, dest: OwnedFd, hdtr: HeaderTrailer, uid: Option<u32>) {
        let Some(slot) = self.owned_slot(txnid, uid, "send-open") else {
            return;
        };
        let Some(t) = self.table.get_mut(slot) else {
            return;
        };
        if t.state != State::Opened {
            log::info!("txn {txnid:x}: send-open on a transfer already started; ignored");
            return;
        }
        match prepare_dest(dest) {
            Ok(d) => t.dest = d,
            Err(errno) => return self.fail(slot, errno),
        }
        t.cursor = Cursor::new(
            hdtr.header,
            t.cursor.file_offset,
            t.cursor.file_len,
            hdtr.trailer,
        );
        t.state = State::Running;
        t.dest_ready = true;
        self.turn(slot);
    }

    fn cancel(&mut self, txnid: u64, uid: Option<u32>) {
        if let Some(slot) = self.owned_slot(txnid, uid, "cancel") {
            log::debug!("txn {txnid:x}: cancelled");
            self.fail(slot, libc::ECANCELED);
        }
    }

    /// The slot of `txnid` if the requesting peer may act on it: a transfer
    /// is bound to the uid that created it, where the OS reports uids.
    fn owned_slot(&self, txnid: u64, uid: Option<u32>, what: &str) -> Option<Slot> {
        let Some(slot) = self.table.slot_of(txnid) else {
            log::info!("{what} of unknown transfer {txnid:x} (finished or expired)");
            return None;
        };
        let owner = self.table.get(slot).and_then(|(_, t)| t.peer_uid);
        match (owner, uid) {
            (Some(o), Some(u)) if o != u && u != 0 => {
                log::warn!(
                    "{what} of transfer {txnid:x} by uid {u} refused: it belongs to uid {o}"
                );
                None
            }
            _ => Some(slot),
        }
    }

    // ----- transfers -----

    fn enqueue(&mut self, slot: Slot) {
        if let Some(t) = self.table.get_mut(slot) {
            if !t.queued {
                t.queued = true;
                self.runq.push_back(slot);
            }
        }
    }

    fn run_queue(&mut self) {
        for _ in 0..self.runq.len() {
            let Some(slot) = self.runq.pop_front() else {
                break;
            };
            if let Some(t) = self.table.get_mut(slot) {
                t.queued = false;
                self.turn(slot);
            }
        }
    }

    /// One turn of one transfer: move up to a quantum, then report.
    fn turn(&mut self, slot: Slot) {
        let backend = Arc::clone(&self.backend);
        let limits = Limits {
            chunk: self.config.chunk,
            budget: self.config.quantum,
            probe_cache: self.config.probe_cache,
        };
        let Some(t) = self.table.get_mut(slot) else {
            return;
        };
        if t.state != State::Running || !t.dest_ready {
            return;
        }
        let Some(file) = t.file.clone() else { return };
        let (moved, stop) = {
            let (dest, kind) = match &t.dest {
                Dest::Status => (t.status.fd(), DestKind::Pipe),
                Dest::Fd(fd, kind) => (fd.as_fd(), *kind),
                Dest::None => return,
            };
            pump(&*backend, &mut t.cursor, file.as_fd(), dest, kind, limits)
        };
        // Only a disk job needs the file beyond this point; holding the
        // clone longer would keep it open after the transfer is removed.
        let file = matches!(stop, PumpStop::NotCached { .. }).then_some(file);
        t.status.owe_progress(moved);
        self.counters.bytes += moved;
        match stop {
            PumpStop::Done => {
                let fin = if t.op == Op::Read {
                    Final::Close
                } else {
                    Final::Complete
                };
                self.finish(slot, fin, true);
            }
            PumpStop::BudgetSpent => {
                let flush = t.status.worth_flushing();
                self.enqueue(slot);
                if flush {
                    self.flush_status(slot);
                }
            }
            PumpStop::DestinationFull => {
                t.dest_ready = false;
                let flush = t.status.worth_flushing();
                // Full before a single byte moved: the readiness edge that
                // woke us may be spent although the destination has room (an
                // EAGAIN with space, as fault injection makes). Re-arming
                // asks for a fresh edge if it is writable now.
                if let Err(e) = self.register_waits(slot, moved == 0) {
                    log::error!("registering a transfer for readiness: {e}");
                    return self.fail(slot, errno_of(&e));
                }
                if flush {
                    self.flush_status(slot);
                }
            }
            PumpStop::NotCached { offset, len } => {
                let (Some((txnid, _)), Some(file)) = (self.table.get(slot), file) else {
                    return;
                };
                let job = DiskJob {
                    slot,
                    txnid,
                    file,
                    offset,
                    len,
                };
                let mut flush = false;
                if let Some(t) = self.table.get_mut(slot) {
                    t.state = State::WaitingForDisk;
                    // The file info goes out now, not after the disk.
                    flush = t.status.worth_flushing();
                }
                if !self.disk.submit(job) {
                    log::error!("disk threads are gone");
                    return self.fail(slot, libc::EIO);
                }
                if flush {
                    self.flush_status(slot);
                }
            }
            PumpStop::Failed(errno) => {
                log::debug!(
                    "transfer in slot {slot} failed: {}",
                    io::Error::from_raw_os_error(errno)
                );
                self.fail(slot, errno);
            }
        }
    }

    /// Registers what a blocked transfer waits on: its destination, and its
    /// status channel (so a client that goes away is noticed). With `rearm`,
    /// a destination already registered is registered again, which queues
    /// an event at once if it is writable.
    fn register_waits(&mut self, slot: Slot, rearm: bool) -> io::Result<()> {
        let Some(t) = self.table.get_mut(slot) else {
            return Ok(());
        };
        let registry = self.poll.registry();
        if !t.status_registered {
            registry.register(
                &mut SourceFd(&t.status.fd().as_raw_fd()),
                status_token(slot),
                Interest::WRITABLE,
            )?;
            t.status_registered = true;
        } else if rearm && matches!(t.dest, Dest::Status) {
            registry.reregister(
                &mut SourceFd(&t.status.fd().as_raw_fd()),
                status_token(slot),
                Interest::WRITABLE,
            )?;
        }
        if let Dest::Fd(fd, kind) = &t.dest {
            if kind.is_pollable() && (!t.dest_registered || rearm) {
                let source = &mut SourceFd(&fd.as_raw_fd());
                if t.dest_registered {
                    registry.reregister(source, dest_token(slot), Interest::WRITABLE)?;
                } else {
                    registry.register(source, dest_token(slot), Interest::WRITABLE)?;
                }
                t.dest_registered = true;
            }
            if !kind.is_pollable() {
                // A regular file is never full for long: try again next turn.
                t.dest_ready = true;
                self.enqueue(slot);
            }
        }
        Ok(())
    }

    fn transfer_event(&mut self, slot: Slot, is_dest: bool, closed: bool) {
        let Some(t) = self.table.get_mut(slot) else {
            return;
        };
        let data_on_status = matches!(t.dest, Dest::Status);
        if is_dest || data_on_status {
            t.dest_ready = true;
            if t.state == State::Running {
                self.enqueue(slot);
            }
        }
        if !is_dest {
            if closed {
                // The client closed its end of the status channel.
                self.abandon(slot, "client closed its status channel");
                return;
            }
            self.flush_status(slot);
        }
    }

    /// Writes what the status channel owes; removes a finished transfer.
    fn flush_status(&mut self, slot: Slot) {
        let Some(t) = self.table.get_mut(slot) else {
            return;
        };
        match t.status.flush() {
            Flush::Clear => {
                if t.status.is_finished() {
                    self.remove(slot);
                }
            }
            Flush::Pending => {
                if let Err(e) = self.register_waits(slot, false) {
                    log::error!("registering a status channel: {e}");
                    self.abandon(slot, "cannot wait for its status channel");
                }
            }
            Flush::Gone => self.abandon(slot, "status channel closed"),
        }
    }

    /// Ends the data part (the destination gets nothing more) and owes the
    /// final message.
    fn finish(&mut self, slot: Slot, fin: Final, ok: bool) {
        let Some(t) = self.table.get_mut(slot) else {
            return;
        };
        if t.state == State::Finishing {
            return;
        }
        t.state = State::Finishing;
        t.file = None;
        if let Dest::Fd(fd, _) = std::mem::replace(&mut t.dest, Dest::None) {
            if t.dest_registered {
                let _ = self
                    .poll
                    .registry()
                    .deregister(&mut SourceFd(&fd.as_raw_fd()));
                t.dest_registered = false;
            }
        }
        t.status.owe_final(fin);
        if ok {
            self.counters.completed += 1;
        } else {
            self.counters.failed += 1;
        }
        self.flush_status(slot);
    }

    /// Fails a transfer with `errno` on its status channel (a Read's data
    /// pipe just closes: the reader cannot tell a message from data there).
    fn fail(&mut self, slot: Slot, errno: i32) {
        let Some(t) = self.table.get_mut(slot) else {
            return;
        };
        if t.state != State::Finishing {
            t.ended = errno;
        }
        let fin = if t.op == Op::Read {
            Final::Close
        } else {
            Final::Error {
                cmd: proto::SFD_XFER_STAT,
                errno,
            }
        };
        self.finish(slot, fin, false);
    }

    /// Drops a transfer whose client is gone; nothing more can be said.
    fn abandon(&mut self, slot: Slot, why: &str) {
        if let Some(t) = self.table.get_mut(slot) {
            log::debug!("transfer in slot {slot}: {why}");
            if t.state != State::Finishing {
                t.ended = GONE;
                self.counters.failed += 1;
            }
        }
        self.remove(slot);
    }

    fn remove(&mut self, slot: Slot) {
        let Some((txnid, mut t)) = self.table.remove(slot) else {
            return;
        };
        let registry = self.poll.registry();
        if t.status_registered {
            let _ = registry.deregister(&mut SourceFd(&t.status.fd().as_raw_fd()));
        }
        if let (Dest::Fd(fd, _), true) = (&t.dest, t.dest_registered) {
            let _ = registry.deregister(&mut SourceFd(&fd.as_raw_fd()));
        }
        // The file and destination close before the status channel, so a
        // client that sees end of file there knows the daemon holds nothing
        // of the transfer any more.
        t.file = None;
        t.dest = Dest::None;
        if log::log_enabled!(log::Level::Debug) {
            let outcome = match t.ended {
                0 => "complete".to_owned(),
                GONE => "client gone".to_owned(),
                e => format!("failed: {}", io::Error::from_raw_os_error(e)),
            };
            let uid = t.peer_uid.map(|u| format!(" uid {u}")).unwrap_or_default();
            log::debug!(
                "txn {txnid:x}: {:?} {outcome} after {} of {} bytes in {:?}{uid}",
                t.op,
                t.cursor.pos,
                t.cursor.total(),
                t.started.elapsed()
            );
        }
    }

    fn expire_open_files(&mut self) {
        let now = Instant::now();
        while let Some(Reverse((when, txnid))) = self.timers.peek().copied() {
            if when > now {
                break;
            }
            self.timers.pop();
            if let Some(slot) = self.table.slot_of(txnid) {
                if self
                    .table
                    .get(slot)
                    .is_some_and(|(_, t)| t.state == State::Opened)
                {
                    log::debug!("txn {txnid:x}: open file expired");
                    self.fail(slot, libc::ETIMEDOUT);
                }
            }
        }
    }

    fn disk_finished(&mut self) {
        for done in self.disk.take_done() {
            if self.table.get(done.slot).map(|(id, _)| id) != Some(done.txnid) {
                continue;
            }
            let Some(t) = self.table.get_mut(done.slot) else {
                continue;
            };
            if t.state != State::WaitingForDisk {
                continue;
            }
            if done.errno != 0 {
                log::warn!(
                    "txn {:x}: reading from disk failed: {}",
                    done.txnid,
                    io::Error::from_raw_os_error(done.errno)
                );
                self.fail(done.slot, done.errno);
                continue;
            }
            t.cursor.mark_prefetched(done.offset, done.len);
            t.state = State::Running;
            t.dest_ready = true;
            self.enqueue(done.slot);
        }
    }

    fn shutdown(&mut self) {
        let slots = self.table.slots();
        log::info!("cancelling {} live transfers", slots.len());
        for &slot in &slots {
            self.fail(slot, libc::ECANCELED);
        }
        // Full status pipes get a short grace period to take their ECANCELED.
        let deadline = Instant::now() + SHUTDOWN_DRAIN;
        for slot in self.table.slots() {
            while self.table.get(slot).is_some() {
                let Some(fd) = self.table.get(slot).map(|(_, t)| t.status.fd().as_raw_fd()) else {
                    break;
                };
                let left = deadline.saturating_duration_since(Instant::now());
                // SAFETY: fd stays open while the transfer is in the table.
                let bfd = unsafe { BorrowedFd::borrow_raw(fd) };
                if left.is_zero() || !sys::wait_writable(bfd, left).unwrap_or(false) {
                    self.remove(slot);
                    break;
                }
                self.flush_status(slot);
            }
        }
        log::info!(
            "shut down: {} completed, {} failed, {} bytes",
            self.counters.completed,
            self.counters.failed,
            self.counters.bytes
        );
    }
}

/// Who sent a request, for log lines (formatted only if one is written).
struct Who(Option<PeerCred>);

impl std::fmt::Display for Who {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(c) => write!(f, "pid {} uid {}", c.pid, c.uid),
            None => f.write_str("unknown peer"),
        }
    }
}

/// Classifies a passed destination and makes it non-blocking (regular files
/// stay as they are: they never block on space).
fn prepare_dest(fd: OwnedFd) -> Result<Dest, i32> {
    let kind = sys::dest_kind(fd.as_fd()).map_err(|e| errno_of(&e))?;
    if kind != DestKind::RegularFile {
        sys::set_nonblocking(fd.as_fd(), true).map_err(|e| errno_of(&e))?;
    }
    Ok(Dest::Fd(fd, kind))
}

/// Answers a refused request with an error in place of the file info.
fn refuse(status: OwnedFd, errno: i32) {
    let _ = sys::set_nonblocking(status.as_fd(), true);
    let _ = sys::write_message(
        status.as_fd(),
        &proto::error_header(proto::SFD_FILE_INFO, errno),
    );
}

/// Answers a malformed request on its reply channel, if it plausibly has
/// one: the command has a reply channel and the first descriptor is a pipe.
/// Never writes anywhere else. Every descriptor is closed.
fn refuse_on_reply_channel(cmd: Option<Command>, fds: Vec<OwnedFd>, errno: i32) {
    if let (Some(cmd), Some(first)) = (cmd, fds.first()) {
        if cmd.has_reply_channel() && sys::fstat(first.as_fd()).is_ok_and(|st| sys::is_fifo(&st)) {
            let _ = sys::set_nonblocking(first.as_fd(), true);
            let _ = sys::write_message(
                first.as_fd(),
                &proto::error_header(proto::SFD_FILE_INFO, errno),
            );
        }
    }
    drop(fds);
}
