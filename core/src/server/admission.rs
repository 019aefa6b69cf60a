//! Request admission: from a received datagram to a transfer in the table,
//! or to a precise refusal.
//!
//! This file decodes, pairs a request with the descriptors it must carry,
//! checks the allow-list, the slot limit and the uid's share of it (taking
//! a slot back from a uid above its share, [`super::share`]) and the
//! destination, opens the file beneath the root (on the loop when the
//! kernel's caches answer the lookup, else on a disk thread, [`super::open`]),
//! and answers what needs no transfer (Status, refusals).
//! It writes only to the reply channel that came with a request, and only
//! after checking that it is a pipe. Every descriptor a request passed is a
//! [`Passed`] until a transfer keeps it: one a refusal drops closes on the
//! loop only if that cannot wait (a pipe, a UNIX socket), else on the
//! closer threads (a TCP socket with `SO_LINGER`, a file on NFS).
//!
//! Rule: the admitting phase, the top one under the loop. It puts a
//! transfer in the table and calls down only: into `drive.rs` to start it
//! once its file is open ([`Server::run_opened`], or a disk thread's open
//! queued with [`Server::queue_or_end`]) and to send an opened file
//! ([`Server::send_opened`]), and into `finish.rs` to end a transfer it
//! cancels, takes a slot back from, or refuses a Send Open for. Moving
//! data and every transition after the table are `drive.rs`'s.

use std::ffi::CString;
use std::io;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Instant;

use crate::backend::{DestKind, TransferBackend};
use crate::protocol::{self as proto, Command, HeaderTrailer, Range, Request, ServerStat};
use crate::sys::{self, errno as errno_of, errno::Errno, PeerCred, Received};

use super::closer::Passed;
use super::disk::{DiskJob, Work};
use super::open;
use super::pump::Cursor;
use super::share::{self, Admit, Loss};
use super::status::{self, StatusWriter};
use super::transfer::{Dest, Outcome, State, Transfer};
use super::Server;

/// Datagrams handled per wake-up before transfers get their turn.
const REQUESTS_PER_TURN: usize = 64;

/// A request to start a transfer (Read, Send or Open), with its descriptors
/// in their places.
#[derive(Debug)]
pub struct StartRequest {
    /// Read, Send or Open.
    pub command: Command,
    /// Relative to the root.
    pub path: CString,
    /// The part of the file.
    pub range: Range,
    /// The status channel (a Read's data pipe).
    pub status: Passed,
    /// Where the data goes (Send only).
    pub dest: Option<Passed>,
    /// Bytes around the range (Send only).
    pub hdtr: HeaderTrailer,
    /// The requesting uid, where the OS reports one.
    pub uid: Option<u32>,
    /// A Continue: the file the client opened itself, and the file bytes
    /// it already wrote.
    pub handed_on: Option<(Passed, u64)>,
    /// A ContinueRead: the id the client already gave the transfer.
    pub client_id: Option<u64>,
}

/// A decoded request with the descriptors it carries.
#[derive(Debug)]
enum Job {
    Start(StartRequest),
    SendOpen {
        txnid: u64,
        dest: Passed,
        hdtr: HeaderTrailer,
        /// File bytes the client already wrote (ContinueOpen).
        done: u64,
    },
    Cancel {
        txnid: u64,
    },
    Status {
        reply: Passed,
    },
    Hello {
        reply: Passed,
    },
}

/// Pairs a request with its descriptors: exactly the ones its command
/// takes, or the descriptors back for a refusal.
fn into_job(req: Request, fds: Vec<Passed>, uid: Option<u32>) -> Result<Job, Vec<Passed>> {
    let mut it = fds.into_iter();
    let (first, second, extra) = (it.next(), it.next(), it.next());
    let start = |command, path, range, status, dest, hdtr| {
        Job::Start(StartRequest {
            command,
            path,
            range,
            status,
            dest,
            hdtr,
            uid,
            handed_on: None,
            client_id: None,
        })
    };
    Ok(match (req, first, second, extra) {
        (Request::Read { path, range }, Some(st), None, None) => start(
            Command::Read,
            path,
            range,
            st,
            None,
            HeaderTrailer::default(),
        ),
        (Request::Send { path, range, hdtr }, Some(st), Some(dest), None) => {
            start(Command::Send, path, range, st, Some(dest), hdtr)
        }
        (Request::Open { path, range }, Some(st), None, None) => start(
            Command::Open,
            path,
            range,
            st,
            None,
            HeaderTrailer::default(),
        ),
        (Request::SendOpen { txnid, hdtr }, Some(dest), None, None) => Job::SendOpen {
            txnid,
            dest,
            hdtr,
            done: 0,
        },
        (Request::Cancel { txnid }, None, None, None) => Job::Cancel { txnid },
        (Request::Status, Some(reply), None, None) => Job::Status { reply },
        (Request::Hello, Some(reply), None, None) => Job::Hello { reply },
        (Request::Adopt { range, txnid }, Some(st), Some(file), None) => Job::Start(StartRequest {
            command: Command::Open,
            path: CString::from(c"(opened by the client)"),
            range,
            status: st,
            dest: None,
            hdtr: HeaderTrailer::default(),
            uid,
            handed_on: Some((file, 0)),
            client_id: Some(txnid),
        }),
        (Request::ContinueOpen { txnid, done, hdtr }, Some(dest), None, None) => Job::SendOpen {
            txnid,
            dest,
            hdtr,
            done,
        },
        (Request::ContinueRead { rest, txnid }, Some(pipe), Some(file), None) => {
            Job::Start(StartRequest {
                command: Command::Read,
                path: CString::from(c"(handed on)"),
                range: rest,
                status: pipe,
                dest: None,
                hdtr: HeaderTrailer::default(),
                uid,
                handed_on: Some((file, 0)),
                client_id: Some(txnid),
            })
        }
        (Request::Continue { range, done, hdtr }, Some(st), Some(dest), Some(file)) => {
            Job::Start(StartRequest {
                command: Command::Send,
                path: CString::from(c"(handed on)"),
                range,
                status: st,
                dest: Some(dest),
                hdtr,
                uid,
                handed_on: Some((file, done)),
                client_id: None,
            })
        }
        (_, first, second, extra) => {
            return Err(first
                .into_iter()
                .chain(second)
                .chain(extra)
                .chain(it)
                .collect())
        }
    })
}

impl<B: TransferBackend> Server<B> {
    /// Takes what the request socket holds, at most
    /// [`REQUESTS_PER_TURN`] datagrams, each admitted or answered.
    pub(super) fn accept_requests(&mut self) {
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

    /// Handles one received datagram: a transfer admitted, a request
    /// answered, or a refusal with every descriptor closed.
    fn handle_datagram(&mut self, bytes: &[u8], rcv: Received) {
        let Received {
            fds,
            truncated,
            fds_truncated,
            cred,
            ..
        } = rcv;
        let uid = cred.map(|c| c.uid);
        // From here on a descriptor dropped unkept closes where its close
        // cannot hold the loop.
        let fds: Vec<Passed> = fds
            .into_iter()
            .map(|fd| self.closer.passed(uid, fd))
            .collect();
        let who = Who(cred);
        let cmd_hint = proto::Request::command_of(bytes);
        if cred.is_some_and(|c| sys::is_uncredited(&c)) {
            // No credentials (queued before SO_PASSCRED was set: socket
            // activation without PassCredentials=yes), or a sender this
            // namespace cannot name: unknown, never uid 65534.
            log::warn!(
                "refused a request ({} bytes) that carries no credentials (sent before the \
                 socket asked for them, or from outside this namespace): EACCES",
                bytes.len()
            );
            refuse_on_reply_channel(cmd_hint, fds, Errno::EACCES);
            return;
        }
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
                refuse_on_reply_channel(cmd_hint, fds, Errno::from_raw(e.errno()));
                return;
            }
        };
        let cmd = req.command();
        let nfds = fds.len();
        let job = if fds_truncated {
            Err(fds)
        } else {
            into_job(req, fds, uid)
        };
        let job = match job {
            Ok(job) => job,
            Err(fds) => {
                log::warn!(
                    "bad request from {who}: {cmd:?} with {nfds} descriptors{}",
                    if fds_truncated {
                        " (more were cut)"
                    } else {
                        ""
                    }
                );
                refuse_on_reply_channel(Some(cmd), fds, Errno::EINVAL);
                return;
            }
        };
        if !self.peer_allowed(cred) {
            log::warn!("refused {cmd:?} from {who}: not in the allow-list");
            let fds = match job {
                Job::Start(s) => [Some(s.status), s.dest, s.handed_on.map(|(f, _)| f)]
                    .into_iter()
                    .flatten()
                    .collect(),
                Job::SendOpen { dest, .. } => vec![dest],
                Job::Status { reply } | Job::Hello { reply } => vec![reply],
                Job::Cancel { .. } => Vec::new(),
            };
            refuse_on_reply_channel(Some(cmd), fds, Errno::EACCES);
            return;
        }
        match job {
            Job::Start(req) => self.start(req),
            Job::SendOpen {
                txnid,
                dest,
                hdtr,
                done,
            } => self.send_open(txnid, dest, hdtr, done, uid),
            Job::Cancel { txnid } => self.cancel(txnid, uid),
            Job::Status { reply } => self.report_status(reply),
            Job::Hello { reply } => self.answer_hello(reply),
        }
    }

    /// Answers the handshake, on a pipe only: what a client needs to open
    /// files beneath the root itself, and whether it may (the allow-list
    /// was checked before: a refused caller got `EACCES` instead).
    // dev_t and ino_t are not u64 everywhere (macOS).
    #[allow(clippy::unnecessary_cast)]
    fn answer_hello(&mut self, reply: Passed) {
        if !sys::stat_cached(reply.as_fd()).is_ok_and(|st| sys::is_fifo(&st)) {
            log::warn!("handshake: reply channel is not a pipe; closed unanswered");
            return;
        }
        let path = self
            .config
            .root_path
            .as_ref()
            .map(|p| std::os::unix::ffi::OsStrExt::as_bytes(p.as_os_str()).to_vec());
        let hello = proto::Hello {
            version: proto::PROTOCOL_VERSION,
            inline_allowed: self.config.allow_inline && path.is_some(),
            root_dev: self.root_stat.st_dev as u64,
            root_ino: self.root_stat.st_ino as u64,
            root_path: path.unwrap_or_default(),
            open_timeout_ms: u32::try_from(self.config.open_timeout.as_millis())
                .unwrap_or(u32::MAX),
        };
        let _ = sys::set_nonblocking(reply.as_fd(), true);
        if let Err(e) = status::write_reply(reply.as_fd(), &hello.encode()) {
            log::debug!("handshake reply not delivered: {e}");
        }
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

    /// Answers a Status request, on a pipe only: a socket or file handed
    /// in as the reply channel gets nothing and is closed.
    fn report_status(&mut self, reply: Passed) {
        if !sys::stat_cached(reply.as_fd()).is_ok_and(|st| sys::is_fifo(&st)) {
            log::warn!("status request: reply channel is not a pipe; closed unanswered");
            return;
        }
        let s = ServerStat {
            cmd: proto::SFD_SERVER_STAT,
            stat: proto::SFD_STAT_OK,
            version: proto::PROTOCOL_VERSION,
            live: self.table.len() as u64,
            completed: self.counters.completed,
            failed: self.counters.failed,
            bytes: self.counters.bytes,
            uptime_secs: self.started.elapsed().as_secs(),
            handoffs: self.counters.handoffs,
        };
        let _ = sys::set_nonblocking(reply.as_fd(), true);
        if let Err(e) = status::write_reply(reply.as_fd(), &s.encode()) {
            log::debug!("status reply not delivered: {e}");
        }
    }

    fn new_txnid(&mut self) -> io::Result<u64> {
        loop {
            // size_t on the C side: keep ids within it on 32-bit systems.
            // The top bit is clear: ids a client gives the transfers it
            // finishes in its own process have it set, so the two never
            // collide.
            let id = self.ids.take()? & (usize::MAX as u64 >> 1);
            if id != 0 && !self.table.contains_id(id) {
                return Ok(id);
            }
        }
    }

    /// Admits a Read, Send or Open: a new transfer, or a refusal on its
    /// status channel. The open is the loop's only if the kernel's caches
    /// answer it ([`open::on_loop`]); otherwise the request waits in the
    /// table as [`State::Opening`] while a disk thread opens the file, and
    /// [`Server::opened`] takes it from there.
    fn start(&mut self, req: StartRequest) {
        let StartRequest {
            command,
            path,
            range,
            status: status_fd,
            dest,
            hdtr,
            uid,
            handed_on,
            client_id,
        } = req;
        let shown = path.to_string_lossy();
        let handed_on_flag = handed_on.is_some();
        // A Read a client began has its file info in the pipe already (an
        // Open's info is the daemon's to write: only it knows the file is
        // held and its deadline runs).
        let info_written = handed_on_flag && command == Command::Read;
        if !sys::stat_cached(status_fd.as_fd()).is_ok_and(|st| sys::is_fifo(&st)) {
            log::warn!("{command:?} {shown}: status channel is not a pipe");
            return;
        }
        if let Err(e) = sys::set_nonblocking(status_fd.as_fd(), true) {
            log::warn!("{command:?} {shown}: status channel: {e}");
            return;
        }
        let mine = self.shares.held(uid);
        let uids = self.shares.uids() + usize::from(mine == 0);
        let share = share::fair_share(
            self.config.max_transfers,
            self.config.uid_share_percent,
            uids,
        );
        // What a uid's ended transfers still hold on the closer threads
        // (a close it made linger) counts against it: its descriptors stay
        // within its share of the slots however fast it ends transfers. At
        // least a closer thread's worth each, so that closes merely on
        // their way (a refused request's file, a burst of finished Sends)
        // never refuse anyone with a small `-n`.
        let closing = self.closer.pending(uid);
        let most_closing =
            share::share_of(self.config.max_transfers, self.config.uid_share_percent)
                .max(super::closer::CLOSERS);
        if closing >= most_closing {
            log::info!(
                "{command:?} {shown}: refused, uid {} has {closing} closes pending (EMFILE)",
                Uid(uid)
            );
            return refuse_start(status_fd, info_written, Errno::EMFILE);
        }
        let full = self.table.len() >= self.config.max_transfers;
        // Looked for only when it matters: the common case is one uid.
        let largest = full.then(|| self.shares.largest_other(uid)).flatten();
        let take_back = match share::admit(
            self.table.len(),
            self.config.max_transfers,
            share,
            mine,
            largest,
        ) {
            Admit::Yes => None,
            Admit::TakeBackFrom(from) => Some(TakeBack::From(from)),
            Admit::Refuse
                if share::may_take_back_idle(self.config.uid_share_percent, mine, uid)
                    && self.idle_slot_of_another(uid).is_some() =>
            {
                Some(TakeBack::Idle)
            }
            Admit::Refuse => {
                log::info!(
                    "{command:?} {shown}: refused, {} transfers live, {mine} of them uid {}'s \
                     (share {share}) (EMFILE)",
                    self.table.len(),
                    Uid(uid)
                );
                return refuse_start(status_fd, info_written, Errno::EMFILE);
            }
        };
        let dest = match dest {
            None => None,
            Some(fd) => match prepare_dest(fd) {
                Ok(d) => Some(d),
                Err(errno) => {
                    log::info!(
                        "{command:?} {shown}: destination unusable (errno {})",
                        errno as i32
                    );
                    return refuse_start(status_fd, info_written, errno);
                }
            },
        };
        let done = handed_on.as_ref().map_or(0, |(_, d)| *d);
        // `None`: the open is a disk thread's.
        let attempt = match handed_on {
            Some((file, _)) => {
                self.counters.handoffs += 1;
                // The file is one the client opened: kept only if it is on
                // the root's own filesystem (whose closes are the loop's
                // own), and that filesystem's opens never wait (adopting
                // takes its cached stat as exact and locks it here, where
                // on FUSE or NFS the stat may be stale and the lock ask a
                // server); anything else (a socket, a file on a FUSE
                // mount, any file of a FUSE or NFS root) is refused and
                // closes as a [`Passed`].
                let root_dev = self.root_stat.st_dev;
                let on_root = match sys::stat_cached(file.as_fd()) {
                    Ok(st) if self.root_opens_never_wait && st.st_dev == root_dev => Some(st),
                    _ => None,
                };
                match on_root {
                    Some(st) => Some(open::adopt(file.keep(), st)),
                    None => Some(Err(Errno::EXDEV)),
                }
            }
            None => open::on_loop(&*self.backend, self.root.as_fd(), &path),
        };
        let opened = match attempt {
            Some(Err(errno)) => {
                let (errno, cause) = open::refusal(errno);
                log::info!("{command:?} {shown}: {}", open::refused(errno, cause));
                return refuse_start(status_fd, info_written, errno);
            }
            Some(Ok(file)) => Some(file),
            None => None,
        };
        let txnid = match client_id {
            // The client's id, already in the file info it wrote: kept, so
            // that a Cancel by it reaches this transfer.
            Some(id) if proto::is_client_id(id) && !self.table.contains_id(id) => id,
            Some(id) => {
                log::info!("{command:?} {shown}: client id {id:x} unusable (EINVAL)");
                return refuse_start(status_fd, info_written, Errno::EINVAL);
            }
            None => match self.new_txnid() {
                Ok(id) => id,
                Err(e) => return refuse_start(status_fd, info_written, errno_of(&e)),
            },
        };
        if let Some(how) = take_back {
            // Only now that the request is sure to be admitted (or, for an
            // open off the loop, to hold its slot while it waits).
            let taken = match how {
                TakeBack::From(from) => self.take_back_slot(from, uid, share),
                TakeBack::Idle => self.take_back_idle_slot(uid),
            };
            if !taken {
                return refuse_start(status_fd, info_written, Errno::EMFILE);
            }
        }
        let is_read = command == Command::Read;
        let t = Transfer {
            command,
            state: State::Opening {
                path,
                dest,
                hdtr,
                range,
                done,
                info_written,
            },
            status: StatusWriter::new(status_fd.keep(), !is_read),
            status_registered: false,
            // Set once the file's size is known.
            cursor: Cursor::new(Vec::new(), 0, 0, Vec::new()),
            queued: false,
            peer_uid: uid,
            started: Instant::now(),
            last_progress: Instant::now(),
            outcome: None,
        };
        let slot = self.table.insert(txnid, t);
        self.shares.take(uid);
        match opened {
            Some(file) => self.run_opened(slot, txnid, file),
            None => {
                let Some((_, t)) = self.table.get(slot) else {
                    return;
                };
                let State::Opening { path, .. } = &t.state else {
                    return;
                };
                log::debug!(
                    "txn {txnid:x}: {command:?} {}: not answerable from the caches; opening on a disk thread",
                    path.to_string_lossy()
                );
                let job = DiskJob {
                    slot,
                    txnid,
                    uid,
                    work: Work::Open {
                        root: Arc::clone(&self.root),
                        path: path.clone(),
                    },
                };
                self.queue_or_end(job);
            }
        }
    }

    fn send_open(
        &mut self,
        txnid: u64,
        dest: Passed,
        hdtr: HeaderTrailer,
        done: u64,
        uid: Option<u32>,
    ) {
        let Some(slot) = self.owned_slot(txnid, uid, "send-open") else {
            return;
        };
        let Some(t) = self.table.get_mut(slot) else {
            return;
        };
        let deadline = match &t.state {
            State::Opened { deadline, .. } => *deadline,
            _ => {
                log::info!("txn {txnid:x}: send-open on a transfer already started; ignored");
                return;
            }
        };
        if Instant::now() >= deadline {
            // The deadline holds even if the loop was too busy to expire
            // the file before this request was read.
            log::debug!("txn {txnid:x}: send-open after the open file expired");
            return self.end(slot, Outcome::Failed(Errno::ETIMEDOUT));
        }
        let dest = match prepare_dest(dest) {
            Ok(d) => d,
            Err(errno) => return self.end(slot, Outcome::Failed(errno)),
        };
        if done > t.cursor.file_len {
            log::info!(
                "txn {txnid:x}: send-open claims {done} bytes of {} written (EINVAL)",
                t.cursor.file_len
            );
            return self.end(slot, Outcome::Failed(Errno::EINVAL));
        }
        self.send_opened(slot, dest, hdtr, done);
    }

    /// The idle transfer of a uid other than `uid` that loses the least
    /// ([`share::pick_idle`]), if any.
    fn idle_slot_of_another(&self, uid: Option<u32>) -> Option<super::table::Slot> {
        let now = Instant::now();
        let candidates = self.table.slots().into_iter().filter_map(|slot| {
            let (_, t) = self.table.get(slot)?;
            (t.peer_uid != uid).then(|| (slot, loss_of(&t.state), t.last_progress))
        });
        share::pick_idle(candidates, now)
    }

    /// Ends another uid's idle transfer ([`Self::idle_slot_of_another`])
    /// so that `to`, holding no slot, gets one when no uid is above its
    /// share: `EMFILE` on its status channel. False if there is none.
    fn take_back_idle_slot(&mut self, to: Option<u32>) -> bool {
        let Some(slot) = self.idle_slot_of_another(to) else {
            return false;
        };
        if let Some((txnid, t)) = self.table.get(slot) {
            log::info!(
                "txn {txnid:x}: idle slot of uid {} taken back for uid {}, which held none \
                 (no uid above its share) (EMFILE)",
                Uid(t.peer_uid),
                Uid(to)
            );
        }
        self.end(slot, Outcome::Failed(Errno::EMFILE));
        self.release(slot);
        true
    }

    /// Ends the transfer of `from` (a uid above its share) that loses the
    /// least, so that `to` (below its share) gets its slot: `EMFILE` on its
    /// status channel if there is room, else it just closes. False if `from`
    /// holds nothing after all.
    fn take_back_slot(&mut self, from: Option<u32>, to: Option<u32>, share: usize) -> bool {
        let candidates = self.table.slots().into_iter().filter_map(|slot| {
            let (_, t) = self.table.get(slot)?;
            if t.peer_uid != from {
                return None;
            }
            Some((slot, loss_of(&t.state), t.last_progress))
        });
        let Some(slot) = share::pick(candidates) else {
            return false;
        };
        if let Some((txnid, _)) = self.table.get(slot) {
            log::info!(
                "txn {txnid:x}: slot taken back from uid {} ({} held, share {share}) \
                 for uid {} (EMFILE)",
                Uid(from),
                self.shares.held(from),
                Uid(to)
            );
        }
        self.end(slot, Outcome::Failed(Errno::EMFILE));
        // Still here if its status pipe has no room for the error.
        self.release(slot);
        true
    }

    fn cancel(&mut self, txnid: u64, uid: Option<u32>) {
        if let Some(slot) = self.owned_slot(txnid, uid, "cancel") {
            log::debug!("txn {txnid:x}: cancelled");
            self.end(slot, Outcome::Cancelled);
        }
    }

    /// The slot of `txnid` if the requesting peer may act on it: a transfer
    /// is bound to the uid that created it, where the OS reports uids.
    fn owned_slot(&self, txnid: u64, uid: Option<u32>, what: &str) -> Option<usize> {
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
}

/// How a slot is taken back when the table is full.
#[derive(Debug, Clone, Copy)]
enum TakeBack {
    /// From this uid, above its share.
    From(Option<u32>),
    /// From another uid's idle transfer, for a uid holding none.
    Idle,
}

/// What a transfer in `state` loses if its slot is taken back.
fn loss_of(state: &State) -> Loss {
    match state {
        State::Finishing { .. } => Loss::FinalMessage,
        // Nothing sent yet either way: the client asks again.
        State::Opened { .. } | State::Opening { .. } => Loss::UnsentOpen,
        State::Running { .. } | State::WaitingForDisk { .. } | State::WritingFile { .. } => {
            Loss::InFlight
        }
    }
}

/// A uid for log lines: `unknown` where the OS reports none.
struct Uid(Option<u32>);

impl std::fmt::Display for Uid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(u) => write!(f, "{u}"),
            None => f.write_str("unknown"),
        }
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
/// stay as they are: they never block on space). Datagram and seqpacket
/// sockets are refused with `EINVAL`: a message boundary per write would cut
/// the stream, and such a socket may be connected to the daemon's own
/// request socket. So are terminals, whose writes cannot be bounded.
/// (`O_NONBLOCK` is set for the client's sake only: no call relies on it.)
fn prepare_dest(fd: Passed) -> Result<Dest, Errno> {
    let kind = sys::dest_kind(fd.as_fd()).map_err(|e| errno_of(&e))?;
    match kind {
        DestKind::OtherSocket => return Err(Errno::EINVAL),
        // A terminal's write has no per-call non-blocking form and no
        // report of its room: the daemon cannot bound it (issue 23, row 3).
        DestKind::Other if sys::is_terminal(fd.as_fd()) => return Err(Errno::EINVAL),
        DestKind::RegularFile => {}
        _ => sys::set_nonblocking(fd.as_fd(), true).map_err(|e| errno_of(&e))?,
    }
    Ok(Dest::Fd {
        fd: fd.keep(),
        kind,
        registered: false,
        strict: false,
        seen: 0,
    })
}

/// Answers a refused request with an error in place of the file info.
/// [`refuse`], unless the channel already carries the client's file info
/// (a Read it began): the data pipe then just ends, as a Read's does on a
/// failure after the start.
fn refuse_start(status: Passed, info_written: bool, errno: Errno) {
    if !info_written {
        refuse(status, errno);
    }
}

fn refuse(status: Passed, errno: Errno) {
    let _ = sys::set_nonblocking(status.as_fd(), true);
    let _ = status::write_reply(
        status.as_fd(),
        &proto::error_header(proto::SFD_FILE_INFO, errno as i32),
    );
}

/// Answers a malformed request on its reply channel, if it plausibly has
/// one: the command has a reply channel and the first descriptor is a pipe.
/// Never writes anywhere else. Every descriptor is closed.
fn refuse_on_reply_channel(cmd: Option<Command>, fds: Vec<Passed>, errno: Errno) {
    if let (Some(cmd), Some(first)) = (cmd, fds.first()) {
        if cmd.has_reply_channel()
            && sys::stat_cached(first.as_fd()).is_ok_and(|st| sys::is_fifo(&st))
        {
            let _ = sys::set_nonblocking(first.as_fd(), true);
            let _ = status::write_reply(
                first.as_fd(),
                &proto::error_header(proto::SFD_FILE_INFO, errno as i32),
            );
        }
    }
    drop(fds);
}
