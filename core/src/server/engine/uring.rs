//! The io_uring engine (Linux): the loop's waits are multishot poll
//! requests on one ring, and closes of descriptors that cannot block are
//! ring operations, so registrations, closes and the wait itself go to the
//! kernel in one `io_uring_enter(2)` per loop turn.
//!
//! This file may talk to the ring and to its own eventfd only; what the
//! events mean is the server's. Readiness keeps the readiness loop's rules:
//! a multishot poll reports each wake-up of the descriptor's wait queue (as
//! an edge-triggered epoll does), and arming a poll reports current
//! readiness (as `EPOLL_CTL_MOD` does).

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use io_uring::{cqueue, opcode, squeue, types, IoUring};

use super::{Event, Interest, Wake};

/// Submission slots. A loop turn queues at most a few entries per
/// transfer it ends; a full queue is submitted early, never dropped.
const SQ_ENTRIES: u32 = 256;
/// Completion slots: every registered descriptor may report at once (two
/// per transfer, 1,024 transfers by default).
const CQ_ENTRIES: u32 = 4096;
/// Kernel workers for ring work that blocks (a close whose file flushes):
/// bounded, so a burst of such work cannot grow threads without limit.
const IOWQ_MAX_WORKERS: u32 = 4;

/// `user_data` of a close; its completion only matters if it failed.
const CLOSE_TAG: u64 = u64::MAX;
/// `user_data` that no request carries (the start-up check of
/// synchronous cancellation looks for it).
const NO_REQUEST: u64 = u64::MAX - 1;

/// One watched descriptor: its current poll request is `(token, gen)`.
#[derive(Debug, Clone, Copy)]
struct Registration {
    fd: RawFd,
    gen: u32,
    mask: u32,
    /// One-shot polls of [`UringEngine::reregister`] armed and not yet
    /// seen completing: a deregistration cancels them too.
    one_shots: u32,
}

/// The ring, what it watches, and the eventfd other threads wake it with.
pub struct UringEngine {
    ring: IoUring,
    watched: HashMap<usize, Registration>,
    next_gen: u32,
    waker_token: usize,
    wake_fd: Arc<OwnedFd>,
    rearm: Vec<usize>,
    /// Flags every close carries: `IOSQE_CQE_SKIP_SUCCESS` where the
    /// kernel has it (5.17), so that a successful close posts nothing and
    /// does not wake the wait that submitted it.
    close_flags: squeue::Flags,
}

impl std::fmt::Debug for UringEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UringEngine")
            .field("watched", &self.watched.len())
            .finish()
    }
}

/// A poll's `user_data`: the token, the registration's generation, and
/// whether it is the one-shot poll of a [`UringEngine::reregister`].
fn user_data(token: usize, gen: u32, one_shot: bool) -> u64 {
    ((token as u64) << 32) | (u64::from(gen) << 1) | u64::from(one_shot)
}

fn poll_mask(i: Interest) -> u32 {
    match i {
        Interest::Readable => (libc::POLLIN | libc::POLLRDHUP) as u32,
        Interest::Writable => libc::POLLOUT as u32,
    }
}

impl UringEngine {
    /// A ring (`io_uring_setup(2)`) with what the engine needs checked:
    /// multishot poll, ring closes, waits with a timeout (`EXT_ARG`) and
    /// synchronous cancellation (Linux 6.0). Any refusal — the sysctl
    /// `kernel.io_uring_disabled`, a seccomp filter, an older kernel — is
    /// the error.
    pub fn new(waker: usize) -> io::Result<UringEngine> {
        // The ring's task work (posting a poll's completion, issuing the
        // next close of a linked chain) runs when the loop next enters the
        // kernel, not as an interrupt of the loop each time a client's
        // datagram or a reader's wake-up arrives (COOP_TASKRUN, 5.19); the
        // TASKRUN flag tells an enter without a wait that there is some.
        // (DEFER_TASKRUN, which runs it only in waits, made the bench's
        // back-to-back Sends receive truncated descriptor lists: not used.)
        let ring = IoUring::builder()
            .setup_coop_taskrun()
            .setup_taskrun_flag()
            .setup_cqsize(CQ_ENTRIES)
            .build(SQ_ENTRIES)
            .or_else(|_| {
                IoUring::builder()
                    .setup_cqsize(CQ_ENTRIES)
                    .build(SQ_ENTRIES)
            })?;
        if !ring.params().is_feature_ext_arg() || !ring.params().is_feature_nodrop() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "the kernel's io_uring lacks EXT_ARG or NODROP (Linux 5.11)",
            ));
        }
        let mut probe = io_uring::Probe::new();
        ring.submitter().register_probe(&mut probe)?;
        for (code, name) in [
            (opcode::PollAdd::CODE, "POLL_ADD"),
            (opcode::Close::CODE, "CLOSE"),
        ] {
            if !probe.is_supported(code) {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!("the kernel's io_uring lacks {name}"),
                ));
            }
        }
        // Synchronous cancel (6.0) is how a descriptor stops being
        // watched before its close; a cancel of nothing answers ENOENT.
        match ring
            .submitter()
            .register_sync_cancel(None, types::CancelBuilder::user_data(NO_REQUEST))
        {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Ok(()) => {}
            Err(e) => return Err(io::Error::new(e.kind(), format!("sync cancel: {e}"))),
        }
        let mut max = [IOWQ_MAX_WORKERS, IOWQ_MAX_WORKERS];
        if let Err(e) = ring.submitter().register_iowq_max_workers(&mut max) {
            log::warn!("io_uring: cannot bound its kernel workers: {e}");
        }
        // SAFETY: eventfd(2) returns a new descriptor or -1.
        let raw = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor nobody else owns.
        let wake_fd = Arc::new(unsafe { OwnedFd::from_raw_fd(raw) });
        let close_flags = if ring.params().is_feature_skip_cqe_on_success() {
            squeue::Flags::SKIP_SUCCESS
        } else {
            squeue::Flags::empty()
        };
        let mut engine = UringEngine {
            close_flags,
            ring,
            watched: HashMap::new(),
            next_gen: 0,
            waker_token: waker,
            wake_fd,
            rearm: Vec::new(),
        };
        let fd = engine.wake_fd.as_raw_fd();
        engine.register(fd, waker, Interest::Readable)?;
        Ok(engine)
    }

    /// `"uring"`.
    pub fn name(&self) -> &'static str {
        "uring"
    }

    /// Queues an entry, submitting what is queued first if the queue is
    /// full.
    fn push(&mut self, entry: squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: the entries the engine queues point at no memory of
            // the process (polls, closes and removals carry descriptors and
            // numbers only).
            if unsafe { self.ring.submission().push(&entry) }.is_ok() {
                return Ok(());
            }
            self.submit()?;
        }
    }

    /// Entries the submission queue can still take.
    fn free_entries(&mut self) -> usize {
        let sq = self.ring.submission();
        sq.capacity() - sq.len()
    }

    /// `io_uring_enter(2)` without waiting.
    fn submit(&mut self) -> io::Result<()> {
        match self.ring.submitter().submit() {
            Ok(_) => Ok(()),
            // Completions are backed up: they are taken at the next wait.
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn arm(&mut self, token: usize, reg: Registration, multishot: bool) -> io::Result<()> {
        let entry = opcode::PollAdd::new(types::Fd(reg.fd), reg.mask)
            .multi(multishot)
            .build()
            .user_data(user_data(token, reg.gen, !multishot));
        self.push(entry)
    }

    /// A multishot `IORING_OP_POLL_ADD` for `fd`: it reports readiness now
    /// and at every wake-up after, until [`UringEngine::deregister`].
    pub fn register(&mut self, fd: RawFd, token: usize, i: Interest) -> io::Result<()> {
        if self.watched.contains_key(&token) {
            self.deregister(token)?;
        }
        // Generations fill 31 bits of `user_data`.
        self.next_gen = self.next_gen.wrapping_add(1) & 0x7fff_ffff;
        let reg = Registration {
            fd,
            gen: self.next_gen,
            mask: poll_mask(i),
            one_shots: 0,
        };
        self.watched.insert(token, reg);
        self.arm(token, reg, true)
    }

    /// Reports `fd`'s readiness afresh: a one-shot `IORING_OP_POLL_ADD`
    /// beside the multishot one, which answers at once if the descriptor
    /// is ready now. (Replacing the multishot poll instead would need a
    /// removal that can miss a poll between two wake-ups, and a missed
    /// poll keeps the descriptor's file open.)
    pub fn reregister(&mut self, fd: RawFd, token: usize, i: Interest) -> io::Result<()> {
        match self.watched.get_mut(&token) {
            Some(reg) if reg.fd == fd && reg.mask == poll_mask(i) => {
                reg.one_shots += 1;
                let reg = *reg;
                self.arm(token, reg, false)
            }
            _ => self.register(fd, token, i),
        }
    }

    /// Cancels this registration's polls, by their own key (`user_data`:
    /// token and generation), and waits for the cancels
    /// (`IORING_REGISTER_SYNC_CANCEL`): a poll request holds a reference to
    /// the open file, and the descriptor's next close must be the last (a
    /// client waits for end of file on its status pipe, and a lingering
    /// socket must close on a closer thread, not in the ring's task work).
    ///
    /// Never by file: a client may pass one pipe or socket to a thousand
    /// transfers (destination of some, status channel of all), and a cancel
    /// by file would cancel and re-arm every one of their polls at each
    /// deregistration (issue 23, row 6: 20 ms a Cancel). Their polls hold
    /// references of their own, so this close is not the last anyway.
    pub fn deregister(&mut self, token: usize) -> io::Result<()> {
        let Some(reg) = self.watched.remove(&token) else {
            return Ok(());
        };
        // A cancel sees only what was submitted.
        if !self.ring.submission().is_empty() {
            self.submit()?;
        }
        let mut cancelled = false;
        let keys = [
            Some(user_data(token, reg.gen, false)),
            (reg.one_shots > 0).then(|| user_data(token, reg.gen, true)),
        ];
        for key in keys.into_iter().flatten() {
            match self
                .ring
                .submitter()
                .register_sync_cancel(None, types::CancelBuilder::user_data(key).all())
            {
                Ok(()) => cancelled = true,
                // Already ended (its completion is waiting, or the kernel
                // ended the multishot poll): nothing holds the file.
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                Err(e) => return Err(e),
            }
        }
        if cancelled {
            // The cancelled polls let go of the file in the ring's task
            // work: run it now, so that the ring's is not the file's last
            // reference (a lingering socket's release would then block the
            // loop later).
            self.run_task_work()?;
        }
        Ok(())
    }

    /// Whether an enter without a wait would do nothing: no entry queued
    /// and no task work flagged. Only meaningful with the TASKRUN flag
    /// (`COOP_TASKRUN`); without it the kernel runs task work at every
    /// return to user space, so completions reach the queue anyway.
    fn nothing_to_enter_for(&mut self) -> bool {
        let sq = self.ring.submission();
        sq.is_empty() && !sq.taskrun()
    }

    /// `io_uring_enter(2)` with `IORING_ENTER_GETEVENTS` and no wait: runs
    /// the ring's pending task work.
    fn run_task_work(&mut self) -> io::Result<()> {
        /// `IORING_ENTER_GETEVENTS` of `<linux/io_uring.h>`.
        const GETEVENTS: u32 = 1;
        let len = self.ring.submission().len() as u32;
        // SAFETY: no argument pointer is passed; what is submitted are the
        // engine's own entries (see `push`).
        match unsafe {
            self.ring
                .submitter()
                .enter::<libc::sigset_t>(len, 0, GETEVENTS, None)
        } {
            Ok(_) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Writes the eventfd the waker token's poll watches.
    pub fn waker(&self) -> Wake {
        let fd = Arc::clone(&self.wake_fd);
        Arc::new(move || {
            let one: u64 = 1;
            // SAFETY: writes 8 bytes from a live u64 to a descriptor `fd`
            // keeps open. A full counter (EAGAIN) means a wake-up is
            // already pending.
            let _ = unsafe {
                libc::write(
                    fd.as_raw_fd(),
                    (&one as *const u64).cast(),
                    std::mem::size_of::<u64>(),
                )
            };
        })
    }

    /// Queues `IORING_OP_CLOSE`s linked in order (hard links: one failing
    /// does not stop the next), submitted with the next wait. If the queue
    /// cannot hold them all even after a submit, they close here.
    pub fn close_in_order(&mut self, fds: &mut Vec<OwnedFd>) {
        let n = fds.len();
        if n == 0 {
            return;
        }
        // A chain must go to the kernel in one submission.
        if self.free_entries() < n {
            let _ = self.submit();
        }
        if self.free_entries() < n {
            // Still no room: close them here, in order.
            fds.clear();
            return;
        }
        for (i, fd) in fds.drain(..).enumerate() {
            let raw = fd.into_raw_fd();
            let mut flags = self.close_flags;
            if i + 1 < n {
                flags |= squeue::Flags::IO_HARDLINK;
            }
            let entry = opcode::Close::new(types::Fd(raw))
                .build()
                .flags(flags)
                .user_data(CLOSE_TAG);
            // SAFETY: a close carries a descriptor number only; there is
            // room (checked above), so the push cannot fail.
            if unsafe { self.ring.submission().push(&entry) }.is_err() {
                // SAFETY: `raw` came from an OwnedFd just given up.
                drop(unsafe { OwnedFd::from_raw_fd(raw) });
            }
        }
    }

    /// Submits what is queued and waits for completions
    /// (`io_uring_enter(2)` with `IORING_ENTER_GETEVENTS`, a timeout via
    /// `IORING_ENTER_EXT_ARG`).
    pub fn wait(&mut self, out: &mut Vec<Event>, timeout: Option<Duration>) -> io::Result<()> {
        let r = match timeout {
            // Nothing to submit and no task work pending (the kernel sets
            // the TASKRUN flag when a poll's completion waits to be
            // posted): whatever is done is in the completion queue
            // already, so no enter. This is the loop's every turn under
            // load and its spin with --busy-poll.
            Some(d) if d.is_zero() && self.nothing_to_enter_for() => Ok(0),
            // Completions asked for even without a wait, so that pending
            // task work (a poll's completion, the next close of a linked
            // chain) runs in this enter.
            Some(d) if d.is_zero() => self.run_task_work().map(|()| 0),
            Some(d) => {
                let ts = types::Timespec::from(d);
                let args = types::SubmitArgs::new().timespec(&ts);
                self.ring.submitter().submit_with_args(1, &args)
            }
            None => self.ring.submitter().submit_and_wait(1),
        };
        match r {
            Ok(_) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::ETIME) | Some(libc::EBUSY)) => {}
            Err(e) => return Err(e),
        }
        self.take_completions(out);
        for token in std::mem::take(&mut self.rearm) {
            if let Some(reg) = self.watched.get(&token).copied() {
                self.arm(token, reg, true)?;
            }
        }
        Ok(())
    }

    fn take_completions(&mut self, out: &mut Vec<Event>) {
        let mut woken = false;
        for cqe in self.ring.completion() {
            let ud = cqe.user_data();
            let res = cqe.result();
            if ud == CLOSE_TAG {
                if res < 0 {
                    log::warn!("io_uring close: {}", io::Error::from_raw_os_error(-res));
                }
                continue;
            }
            let token = (ud >> 32) as usize;
            let one_shot = ud & 1 == 1;
            let current = self
                .watched
                .get(&token)
                .is_some_and(|r| r.gen == (ud as u32) >> 1);
            if !current {
                // A poll since removed or replaced.
                continue;
            }
            if one_shot && !cqueue::more(cqe.flags()) {
                if let Some(reg) = self.watched.get_mut(&token) {
                    reg.one_shots = reg.one_shots.saturating_sub(1);
                }
            }
            if !one_shot && !cqueue::more(cqe.flags()) {
                // The kernel ended the multishot poll (a full completion
                // queue, a cancel it made itself): watch again.
                self.rearm.push(token);
            }
            if res < 0 {
                if res != -libc::ECANCELED {
                    log::warn!(
                        "io_uring poll of token {token}: {}",
                        io::Error::from_raw_os_error(-res)
                    );
                }
                continue;
            }
            let revents = res as u32;
            if token == self.waker_token {
                woken = true;
            }
            out.push(Event {
                token,
                closed: revents & (libc::POLLERR | libc::POLLHUP) as u32 != 0,
            });
        }
        if woken {
            let mut buf = [0u8; 8];
            // SAFETY: reads at most 8 bytes into a live buffer; the eventfd
            // is non-blocking, so an empty counter answers EAGAIN.
            let _ = unsafe { libc::read(self.wake_fd.as_raw_fd(), buf.as_mut_ptr().cast(), 8) };
        }
    }
}

impl Drop for UringEngine {
    /// Closes still queued go to the kernel before the ring does.
    fn drop(&mut self) {
        if !self.ring.submission().is_empty() {
            let _ = self.ring.submitter().submit();
        }
    }
}
