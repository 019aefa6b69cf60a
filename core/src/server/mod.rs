//! The daemon's event loop.
//!
//! One thread runs a loop over the request socket, every transfer's status
//! channel and destination, a shutdown descriptor and a waker for the disk
//! I/O pool, on one of two [`engine`]s: io_uring on Linux where the kernel
//! allows it, else an edge-triggered readiness loop (`mio`: epoll on Linux,
//! kqueue on the BSDs and macOS). Nothing on this thread blocks:
//! destinations and status pipes are non-blocking, each transfer moves at
//! most a bounded quantum per turn so a fast reader cannot starve the
//! others, uids take turns (`fair.rs`: the run queue, the disk queue and the
//! closer queue are a FIFO per uid, served round-robin) and a pass over the
//! run queue is bounded in time, and data missing from the page cache is
//! brought in by `disk.rs` threads.
//!
//! The client shares every descriptor it passes, so "non-blocking" never
//! rests on a flag it can clear: socket writes are non-blocking per call,
//! calls without such a flag run under the `backstop.rs` (interrupted when
//! they block), writes to regular files run on the `disk.rs` threads, and
//! closes that may linger on the `closer.rs` threads.
//!
//! This file holds the loop alone: building it, waiting, dispatching events
//! and shutting down. A turn of it reads: wait, deadlines, admit, advance,
//! finish. One Send, from its datagram to its last close, goes down through
//! the files and back up once:
//!
//! - datagram: `listener.rs` receives it with its descriptors;
//! - admission: `admission.rs` decodes and checks it (allow-list, slots and
//!   shares, the destination), opens the file (`open.rs` on the loop, else
//!   a disk thread's open through `disk_jobs.rs`) and puts the transfer in
//!   the table (`table.rs`; what it holds is `transfer.rs`'s);
//! - drive: `drive.rs` starts it and gives it turns, in each of which the
//!   pump (`pump.rs`) moves a quantum through the backend; a stop waits for
//!   readiness (`waits.rs`) or hands a job to the disk threads
//!   (`disk_jobs.rs`, `disk.rs`), whose answer drives it on;
//! - end, status, release: `finish.rs` ends it, writes what its status
//!   channel owes (`status.rs`), then releases its slot and closes what it
//!   held (what may linger on `closer.rs`'s threads). `deadlines.rs` ends
//!   what waited too long.
//!
//! Calls between these files go one way: admission -> drive -> finish ->
//! waits and disk_jobs (deadlines -> finish), and none calls back up: a
//! finished disk job's meaning comes back to `drive.rs` as a value, and a
//! refused job's errno to whoever queued it. Signals are the binary's: the
//! loop is told to stop through a descriptor, so a test can drive it
//! in-process.

pub(crate) mod admission;
pub(crate) mod backstop;
pub mod caught;
pub(crate) mod closer;
mod deadlines;
pub(crate) mod disk;
mod disk_jobs;
mod drive;
pub mod engine;
pub(crate) mod fair;
mod finish;
pub mod listener;
pub(crate) mod open;
pub mod pump;
pub(crate) mod share;
pub(crate) mod status;
pub(crate) mod table;
pub(crate) mod timers;
mod tokens;
pub(crate) mod transfer;
mod waits;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::backend::TransferBackend;
use crate::protocol as proto;
use crate::sys::{self, Received};
use closer::{CloseJob, Closer};
use disk::DiskPool;
use engine::{Engine, EngineKind, Event, Interest};
use listener::RequestSocket;
use share::UidCounts;
use table::{Slot, TransferTable};
use timers::OpenFileTimers;
use tokens::{LISTENER, SHUTDOWN, WAKER};
use transfer::{Outcome, Transfer};

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
    /// Percent of `max_transfers` a uid keeps when the table is full and
    /// another uid below its share asks for a slot (at most an equal part
    /// among the uids holding slots, see `share.rs`); 100 never takes a slot
    /// back.
    pub uid_share_percent: u32,
    /// A transfer that moves no byte for this long is ended (see
    /// `deadlines.rs`); zero never.
    pub stall_timeout: Duration,
    /// If not empty, only these uids (or the gids below) may make requests.
    pub allow_uids: Vec<u32>,
    /// If not empty, only these gids (or the uids above) may make requests.
    pub allow_gids: Vec<u32>,
    /// The engine to run on.
    pub engine: EngineKind,
    /// Whether clients may attempt transfers in their own process first
    /// ("inline first", DESIGN.md), as the handshake tells them
    /// (`--no-inline` turns it off for all).
    pub allow_inline: bool,
    /// The root's path as the daemon was given it, told to clients in the
    /// handshake so that they can open it themselves (`None`: attempts not
    /// allowed, there is nothing to open).
    pub root_path: Option<std::path::PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_transfers: 1024,
            open_timeout: Duration::from_secs(10),
            chunk: 1 << 20,
            // A turn spent on one bulk transfer is a wait for every small
            // request behind it: 256 KiB (tens of microseconds of copying)
            // instead of 4 MiB brought the cached 4 KiB Sends' p99 during a
            // cold 1 GiB stream from 1.67x/2.05x idle to 1.42x/1.68x
            // (epoll/uring) for 7% of the large UNIX-socket rate
            // (BENCHMARKS.md, "Engines", what was tried, 8).
            quantum: 256 << 10,
            disk_threads: 2,
            probe_cache: true,
            busy_poll: Duration::ZERO,
            uid_share_percent: 50,
            stall_timeout: Duration::from_secs(60),
            allow_uids: Vec::new(),
            allow_gids: Vec::new(),
            engine: EngineKind::Auto,
            allow_inline: true,
            root_path: None,
        }
    }
}

/// Counters answered to a status request.
#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    completed: u64,
    failed: u64,
    bytes: u64,
    /// Sends a client began in its own process and handed on.
    handoffs: u64,
}

/// How long shutdown waits for the disk and closer threads before it exits
/// anyway (a lingering close, a write to a hung filesystem). The loop's
/// policy: the pools are given it, and wait it when dropped unfinished.
pub const SHUTDOWN_GRACE: Duration = Duration::from_millis(1500);

/// The server: a backend, a root, a request socket and the loop state.
pub struct Server<B: TransferBackend> {
    backend: Arc<B>,
    config: Config,
    /// Shared with the disk threads, which open what the loop's cache-only
    /// lookup could not.
    root: Arc<OwnedFd>,
    /// The root's `fstat`, taken once: its device is where a handed-on file
    /// must live, its identity what the handshake tells clients.
    root_stat: libc::stat,
    /// Whether the root's filesystem is one whose opens never wait (a
    /// local one, by its `fstatfs` type, learnt once at start). Only then
    /// does the loop take a file a client opened itself: it takes the
    /// file's cached stat as exact and locks it, and on FUSE or NFS the
    /// stat may be stale and the lock may wait for a server. A client's
    /// attempt makes the same check at its handshake, so only a client
    /// that skipped it hands on from anywhere else.
    root_opens_never_wait: bool,
    socket: RequestSocket,
    engine: Engine,
    /// Descriptors to close in order at this turn's end (see
    /// [`Engine::close_in_order`]).
    quick_closes: Vec<OwnedFd>,
    table: TransferTable<Transfer>,
    /// Transfers waiting for a turn: a FIFO per uid, round-robin, so that
    /// one uid's hundreds of runnable transfers (its disk backlog coming
    /// back, say) cost another uid's transfer a turn per uid, not hundreds.
    runq: fair::FairQueue<Option<u32>, Slot>,
    timers: OpenFileTimers,
    shares: UidCounts,
    next_sweep: Instant,
    disk: DiskPool,
    shutdown: OwnedFd,
    counters: Counters,
    started: Instant,
    recv_buf: listener::RecvBatch,
    received: Vec<Received>,
    listener_ready: bool,
    ids: table::RandomIds,
    closer: Closer,
    /// Closes gathered during this turn of the loop, for the closer threads.
    to_close: Vec<CloseJob>,
    /// Transfers removed while their write job was out: they close once the
    /// job hands the destination back.
    removed_with_write_out: HashMap<u64, Transfer>,
    /// Open file descriptions and uids the backstop caught blocking.
    caught: caught::Caught,
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
    /// Builds a server serving files beneath `root` on `socket`. The loop
    /// stops when `shutdown` (the read end of a pipe or socket, made
    /// non-blocking here) becomes readable: the binary writes to it from its
    /// `SIGTERM`/`SIGINT` handlers.
    pub fn new(
        backend: B,
        config: Config,
        root: OwnedFd,
        socket: RequestSocket,
        shutdown: OwnedFd,
    ) -> io::Result<Server<B>> {
        let mut engine = Engine::new(config.engine, WAKER)?;
        let backend = Arc::new(backend);
        // A transfer has at most one disk job out, and an ended one's queued
        // job leaves with it: the slots bound the queue.
        let disk = DiskPool::start(
            config.disk_threads,
            config.max_transfers,
            Arc::clone(&backend),
            engine.waker(),
            SHUTDOWN_GRACE,
        )?;
        sys::set_nonblocking(shutdown.as_fd(), true)?;
        let root_stat = sys::fstat(root.as_fd())?;
        let root_opens_never_wait = {
            let facts = sys::fsfacts::FsFacts::new();
            facts.learn_filesystem(root.as_fd(), root_stat.st_dev);
            facts.opens_never_wait(root_stat.st_dev)
        };
        engine.register(socket.fd.as_raw_fd(), LISTENER, Interest::Readable)?;
        engine.register(shutdown.as_raw_fd(), SHUTDOWN, Interest::Readable)?;
        Ok(Server {
            backend,
            config,
            root: Arc::new(root),
            root_stat,
            root_opens_never_wait,
            socket,
            engine,
            quick_closes: Vec::new(),
            table: TransferTable::default(),
            runq: fair::FairQueue::default(),
            timers: OpenFileTimers::default(),
            shares: UidCounts::default(),
            next_sweep: Instant::now(),
            disk,
            shutdown,
            counters: Counters::default(),
            started: Instant::now(),
            recv_buf: listener::RecvBatch::new(proto::MAX_REQUEST_LEN + 1),
            received: Vec::with_capacity(listener::BATCH),
            listener_ready: true,
            ids: table::RandomIds::default(),
            closer: Closer::new(SHUTDOWN_GRACE),
            to_close: Vec::new(),
            removed_with_write_out: HashMap::new(),
            caught: caught::Caught::default(),
        })
    }

    /// Serves until the shutdown descriptor is readable, then cancels every
    /// live transfer and held open file (its status channel closes without a
    /// message) and returns; dropping the server removes the socket file.
    pub fn run(&mut self) -> io::Result<()> {
        let mut events: Vec<Event> = Vec::with_capacity(1024);
        log::info!(
            "serving with backend {}, engine {}, at most {} transfers ({} per uid when full), \
             open-file timeout {} ms, stall timeout {} ms",
            self.backend.name(),
            self.engine.name(),
            self.config.max_transfers,
            share::share_of(self.config.max_transfers, self.config.uid_share_percent),
            self.config.open_timeout.as_millis(),
            self.config.stall_timeout.as_millis()
        );
        // Calls on client descriptors are interrupted if they block.
        let _bound = match backstop::bind() {
            Ok(b) => Some(b),
            Err(e) => {
                log::error!("no interrupt backstop ({e}): a client that clears O_NONBLOCK can stall the loop");
                None
            }
        };
        let mut last_activity = Instant::now();
        loop {
            let timeout = if !self.runq.is_empty()
                || self.listener_ready
                || last_activity.elapsed() < self.config.busy_poll
            {
                Some(Duration::ZERO)
            } else {
                self.next_deadline()
                    .map(|t| t.saturating_duration_since(Instant::now()))
            };
            events.clear();
            match self.engine.wait(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            if !events.is_empty() {
                last_activity = Instant::now();
            }
            let mut stop = false;
            for ev in events.iter() {
                match ev.token {
                    LISTENER => self.listener_ready = true,
                    SHUTDOWN => stop = self.shutdown_requested(),
                    WAKER => self.disk_finished(),
                    t => {
                        let (slot, is_dest) = tokens::slot_of_token(t);
                        self.transfer_event(slot, is_dest, ev.closed);
                    }
                }
            }
            if stop {
                self.shut_down();
                return Ok(());
            }
            // Deadlines first: an open file whose time ran out is gone
            // before a Send Open for it is read in this turn.
            self.expire_open_files();
            self.expire_stalled();
            // Admit.
            if self.listener_ready {
                self.accept_requests();
            }
            // Advance.
            self.run_queue();
            // Finish: what this turn ended closes, off the loop where a
            // close may wait.
            self.closer.submit(&mut self.to_close);
            self.engine.close_in_order(&mut self.quick_closes);
            self.table.recycle();
        }
    }

    /// Drains the shutdown descriptor; true if anything (or its end of
    /// file: the other end was closed) was there.
    fn shutdown_requested(&mut self) -> bool {
        let mut buf = [0u8; 64];
        let mut got = false;
        loop {
            match sys::read(self.shutdown.as_fd(), &mut buf) {
                Ok(0) => return true,
                Ok(_) => got = true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        if got {
            log::info!("signal received: shutting down");
        }
        got
    }

    /// Ends every live transfer and open file as a cancel does: its channel
    /// closes without a message, even one whose final message was still
    /// owed (nothing may follow shutdown's decision).
    fn shut_down(&mut self) {
        let slots = self.table.slots();
        log::info!("cancelling {} live transfers", slots.len());
        for slot in slots {
            self.end(slot, Outcome::Cancelled);
            self.release(slot);
        }
        self.engine.close_in_order(&mut self.quick_closes);
        // The ring's closes go to the kernel now, not after the waits
        // below: a client must not wait out a stuck disk thread to see its
        // channel close.
        let mut none = Vec::new();
        let _ = self.engine.wait(&mut none, Some(Duration::ZERO));
        // Bounded: a lingering close or a write to a hung filesystem must
        // not keep the daemon from exiting.
        let deadline = Instant::now() + SHUTDOWN_GRACE;
        self.closer.submit(&mut self.to_close);
        let (all, queued) = self.disk.finish(deadline);
        if !all {
            // Their destinations are with the stuck threads.
            log::warn!(
                "{} transfers' writes still in progress",
                self.removed_with_write_out.len()
            );
        }
        // Jobs no thread took: every transfer was removed above, so a write
        // job's destination closes with its transfer.
        for job in queued {
            self.job_returned(job);
        }
        // Writes that came back close their transfers in order.
        self.disk_finished();
        let removed_with_write_out: Vec<CloseJob> = self
            .removed_with_write_out
            .drain()
            .map(|(_, t)| CloseJob::new(t.peer_uid, None, Box::new(t)))
            .collect();
        self.to_close.extend(removed_with_write_out);
        self.closer.submit(&mut self.to_close);
        self.closer.finish(deadline);
        log::info!(
            "shut down: {} completed, {} failed, {} bytes",
            self.counters.completed,
            self.counters.failed,
            self.counters.bytes
        );
    }
}
