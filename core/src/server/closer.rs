//! Closing what may block on close, off the loop.
//!
//! The last `close` of a TCP socket whose client set `SO_LINGER` waits until
//! the unsent data is acknowledged or the linger time runs out (seconds, and
//! the peer may never read); a regular file on NFS or FUSE flushes on close.
//! (Pipes and UNIX sockets do neither: they close on the loop.)
//! The client shares these descriptions and can set `SO_LINGER` at any time,
//! so no check before the close can tell: every such destination (with the
//! status channel after it, so that the client still sees end of file there
//! only once the daemon holds nothing of the transfer), and every descriptor
//! of a refused request that is not a pipe or a UNIX socket ([`Passed`]), is
//! closed by a closer thread. The loop hands them a batch per turn and never
//! waits.
//!
//! Lingering closes cannot delay another uid's closes (issue 23, row 7):
//! - the daemon picks the linger of its own last close: just before closing
//!   a socket whose close would linger (`SO_LINGER {1, N}`, N > 0), a closer
//!   thread turns the linger off, so the close returns at once and the
//!   kernel still sends what is queued in the background (an abortive
//!   `{1, 0}` never waits and is left alone). The daemon's close is the
//!   last one only once the client closed its own copy, so the client loses
//!   nothing it could still wait for; while it holds a copy, its own close
//!   no longer lingers either;
//! - a client that sets the linger again between that call and the close
//!   (a race it can win now and then) holds a closer thread for its
//!   linger, but only its own uid's lane: jobs wait in a [`FairQueue`] per
//!   uid, round-robin, and one uid never has more than
//!   [`CLOSERS_PER_UID`] threads at once, out of [`CLOSERS`];
//! - what a uid has waiting here counts against it ([`Closer::pending`]):
//!   admission refuses its new transfers with `EMFILE` while its pending
//!   closes reach its share of the slots (at least [`CLOSERS`]), so its
//!   descriptors stay within its slots' worth.
//!
//! At shutdown [`Closer::finish`] waits a bounded time and then leaves the
//! rest to the process exit, which does not linger on Linux (`SO_LINGER` is
//! skipped for an exiting task). On FreeBSD and macOS the exit's own close
//! may still linger: not verified there.
//!
//! This file may block only on its own threads.

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::sys;

use super::fair::FairQueue;

/// Most closer threads in all: a close that lingers holds one thread.
pub const CLOSERS: usize = 16;

/// Most closer threads one uid's closes hold at once: a uid whose closes
/// linger waits for its own, and the other threads go on with everyone
/// else's.
pub const CLOSERS_PER_UID: usize = 2;

/// Stack of a closer thread: it only closes.
const CLOSER_STACK: usize = 64 * 1024;

/// Closes to make off the loop: `first` (a descriptor whose close may
/// linger), then whatever `rest` holds, in its fields' order.
pub struct CloseJob {
    /// Whose closes these are: the lane they wait in.
    pub uid: Option<u32>,
    /// Closed first; if it is a socket whose close would linger, the linger
    /// is turned off just before.
    pub first: Option<OwnedFd>,
    /// Dropped after `first` (a transfer: its status channel last).
    pub rest: Box<dyn Send>,
}

impl CloseJob {
    /// `fd`, whose close may linger, then `rest`, for `uid`.
    pub fn new(uid: Option<u32>, fd: Option<OwnedFd>, rest: Box<dyn Send>) -> CloseJob {
        CloseJob {
            uid,
            first: fd,
            rest,
        }
    }

    /// The close itself, on a closer thread.
    fn close(self) {
        if let Some(fd) = self.first {
            if sys::lingers(fd.as_fd()).is_some() {
                // Our close may be the last: it must not wait for a peer
                // the client picked. Failing that, the lane bounds the cost.
                let _ = sys::linger_off(fd.as_fd());
            }
            drop(fd);
        }
        drop(self.rest);
    }
}

impl std::fmt::Debug for CloseJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CloseJob")
            .field("uid", &self.uid)
            .field("first", &self.first)
            .finish()
    }
}

/// Whether `fd`'s close can never wait: a pipe's, a UNIX socket's (neither
/// lingers nor flushes). Anything else, or a stat that fails, may. The type
/// is the kernel's cached one ([`sys::stat_cached`]): an `fstat` of a FUSE
/// file whose daemon has stopped answering would wait on the loop.
pub fn closes_at_once(fd: BorrowedFd<'_>) -> bool {
    match sys::stat_cached(fd) {
        Ok(st) if sys::is_fifo(&st) => true,
        Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFSOCK => sys::is_unix_socket(fd),
        _ => false,
    }
}

#[derive(Default)]
struct Queue {
    jobs: FairQueue<Option<u32>, CloseJob>,
    /// Threads closing, per uid.
    busy_by_uid: HashMap<Option<u32>, usize>,
    threads: usize,
    idle: usize,
    busy: usize,
    stop: bool,
}

impl Queue {
    fn busy_of(&self, uid: Option<u32>) -> usize {
        self.busy_by_uid.get(&uid).copied().unwrap_or(0)
    }
}

#[derive(Default)]
struct Shared {
    q: Mutex<Queue>,
    /// Jobs queued, a uid's thread freed (or stop).
    work: Condvar,
    /// A job finished (or a thread exited).
    done: Condvar,
}

fn lock(s: &Shared) -> MutexGuard<'_, Queue> {
    s.q.lock().unwrap_or_else(|e| e.into_inner())
}

/// The closer threads, started as needed.
pub struct Closer {
    shared: Arc<Shared>,
    /// How long a drop without [`Closer::finish`] waits for the threads.
    grace: Duration,
}

impl std::fmt::Debug for Closer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Closer").finish()
    }
}

impl Closer {
    /// No thread yet (they start with the first jobs); dropped without
    /// [`Closer::finish`], it waits `grace` for its threads: the loop's
    /// shutdown grace, given by the loop that owns it.
    pub fn new(grace: Duration) -> Closer {
        Closer {
            shared: Arc::default(),
            grace,
        }
    }

    /// Hands `jobs` (emptied) to the closer threads. If no thread can be
    /// started the jobs are closed here: a closed descriptor matters more
    /// than the wait.
    pub fn submit(&self, jobs: &mut Vec<CloseJob>) {
        submit(&self.shared, jobs);
    }

    /// Closes of `uid` queued or in progress.
    pub fn pending(&self, uid: Option<u32>) -> usize {
        let q = lock(&self.shared);
        q.jobs.len_of(uid) + q.busy_of(uid)
    }

    /// A guard for `fd`, a descriptor `uid`'s request passed: dropped
    /// without [`Passed::keep`], it closes at once if that cannot wait,
    /// else on a closer thread.
    pub fn passed(&self, uid: Option<u32>, fd: OwnedFd) -> Passed {
        Passed {
            fd: Some(fd),
            uid,
            shared: Arc::clone(&self.shared),
        }
    }

    /// Waits until every queued close is done or `deadline` passes; then the
    /// threads stop once idle. Returns whether everything was closed.
    pub fn finish(&self, deadline: Instant) -> bool {
        let mut q = lock(&self.shared);
        q.stop = true;
        self.shared.work.notify_all();
        while !q.jobs.is_empty() || q.busy > 0 {
            if q.threads == 0 {
                // Nothing left to close them (none could start): here.
                let left = q.jobs.drain();
                drop(q);
                left.into_iter().for_each(CloseJob::close);
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                log::warn!(
                    "{} closes still waiting at shutdown (SO_LINGER?): left to the exit",
                    q.jobs.len() + q.busy
                );
                return false;
            }
            q = match self.shared.done.wait_timeout(q, left) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        }
        true
    }
}

impl Drop for Closer {
    fn drop(&mut self) {
        // Once: a shutdown that already waited does not wait again.
        if !lock(&self.shared).stop {
            self.finish(Instant::now() + self.grace);
        }
    }
}

/// A descriptor a request passed, until the daemon keeps it
/// ([`Passed::keep`]). One dropped unkept (a refused request's, the extras
/// of a request with too many) closes on the loop only if its close cannot
/// wait ([`closes_at_once`]), else on a closer thread in its uid's lane.
pub struct Passed {
    fd: Option<OwnedFd>,
    uid: Option<u32>,
    shared: Arc<Shared>,
}

impl Passed {
    /// The descriptor, kept: its close is the keeper's business now.
    pub fn keep(mut self) -> OwnedFd {
        match self.fd.take() {
            Some(fd) => fd,
            // Set at creation and taken only here, which consumes self.
            None => unreachable!("a Passed is kept once"),
        }
    }
}

impl AsFd for Passed {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match &self.fd {
            Some(fd) => fd.as_fd(),
            None => unreachable!("a Passed holds its descriptor until kept"),
        }
    }
}

impl std::fmt::Debug for Passed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Passed").field(&self.fd).finish()
    }
}

impl Drop for Passed {
    fn drop(&mut self) {
        let Some(fd) = self.fd.take() else {
            return;
        };
        if closes_at_once(fd.as_fd()) {
            return drop(fd);
        }
        submit(
            &self.shared,
            &mut vec![CloseJob::new(self.uid, Some(fd), Box::new(()))],
        );
    }
}

fn submit(shared: &Arc<Shared>, jobs: &mut Vec<CloseJob>) {
    if jobs.is_empty() {
        return;
    }
    let mut q = lock(shared);
    for job in jobs.drain(..) {
        q.jobs.push(job.uid, job);
    }
    // A thread for every job that may run now, up to the cap: idle ones
    // first.
    let runnable: usize = q
        .jobs
        .owners()
        .map(|(uid, len)| len.min(CLOSERS_PER_UID.saturating_sub(q.busy_of(uid))))
        .sum();
    let mut wanted = runnable.saturating_sub(q.idle);
    while wanted > 0 && q.threads < CLOSERS && !q.stop {
        let shared = Arc::clone(shared);
        let spawned = std::thread::Builder::new()
            .name("sendfiled-close".into())
            .stack_size(CLOSER_STACK)
            .spawn(move || close_jobs(&shared));
        match spawned {
            Ok(_) => q.threads += 1,
            Err(e) if q.threads == 0 => {
                log::error!("cannot start a closer thread ({e}): closing on the loop");
                break;
            }
            Err(_) => break,
        }
        wanted -= 1;
    }
    if q.threads == 0 {
        // None could start, or shutdown has passed: nothing else will.
        let left = q.jobs.drain();
        drop(q);
        left.into_iter().for_each(CloseJob::close);
        return;
    }
    drop(q);
    shared.work.notify_all();
}

fn close_jobs(shared: &Shared) {
    let mut q = lock(shared);
    loop {
        let next = {
            let Queue {
                jobs, busy_by_uid, ..
            } = &mut *q;
            jobs.pop_where(|uid| busy_by_uid.get(&uid).copied().unwrap_or(0) < CLOSERS_PER_UID)
        };
        if let Some((uid, job)) = next {
            q.busy += 1;
            *q.busy_by_uid.entry(uid).or_insert(0) += 1;
            drop(q);
            job.close();
            q = lock(shared);
            q.busy -= 1;
            if let Some(n) = q.busy_by_uid.get_mut(&uid) {
                *n -= 1;
                if *n == 0 {
                    q.busy_by_uid.remove(&uid);
                }
            }
            shared.done.notify_all();
            // The uid's lane may run again: a waiting thread may take it.
            shared.work.notify_one();
            continue;
        }
        if q.stop && q.jobs.is_empty() {
            q.threads -= 1;
            shared.done.notify_all();
            return;
        }
        q.idle += 1;
        q = match shared.work.wait(q) {
            Ok(g) => g,
            Err(e) => e.into_inner(),
        };
        q.idle -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn closes_happen_in_order_off_the_calling_thread() {
        let c = Closer::new(Duration::from_millis(1500));
        let (r, w) = crate::sys::pipe().unwrap();
        let mut jobs = vec![CloseJob::new(None, None, Box::new(w))];
        c.submit(&mut jobs);
        assert!(jobs.is_empty());
        assert!(c.finish(Instant::now() + Duration::from_secs(10)));
        // The write end is closed: end of file.
        assert!(crate::sys::wait_readable(r.as_fd(), Duration::from_secs(10)).unwrap());
        let mut b = [0u8; 1];
        assert_eq!(crate::sys::read(r.as_fd(), &mut b).unwrap(), 0);
    }

    /// A job that says it started (a byte on `entered`), holds its closer
    /// thread until its gate pipe is closed, then closes its own pipe end.
    struct Held {
        entered: OwnedFd,
        gate: OwnedFd,
        _then: OwnedFd,
    }

    impl Drop for Held {
        fn drop(&mut self) {
            let _ = crate::sys::write(self.entered.as_fd(), b"i");
            let _ = crate::sys::wait_readable(self.gate.as_fd(), Duration::from_secs(20));
        }
    }

    fn closed(r: &OwnedFd, within: Duration) -> bool {
        crate::sys::wait_readable(r.as_fd(), within).unwrap()
            && crate::sys::read(r.as_fd(), &mut [0u8; 1]).unwrap() == 0
    }

    #[test]
    fn a_uid_whose_closes_hang_holds_its_own_lane_only() {
        let c = Closer::new(Duration::from_millis(1500));
        let (gate_r, gate_w) = crate::sys::pipe().unwrap();
        let (entered_r, entered_w) = crate::sys::pipe().unwrap();
        let mut theirs = Vec::new();
        let mut jobs = Vec::new();
        // Eight closes of uid 1 that hang; then one of uid 2.
        for _ in 0..8 {
            let (r, w) = crate::sys::pipe().unwrap();
            jobs.push(CloseJob::new(
                Some(1),
                None,
                Box::new(Held {
                    entered: entered_w.try_clone().unwrap(),
                    gate: gate_r.try_clone().unwrap(),
                    _then: w,
                }),
            ));
            theirs.push(r);
        }
        let (mine_r, mine_w) = crate::sys::pipe().unwrap();
        jobs.push(CloseJob::new(Some(2), None, Box::new(mine_w)));
        c.submit(&mut jobs);
        assert!(
            closed(&mine_r, Duration::from_secs(10)),
            "uid 2 closed at once"
        );
        // Two of uid 1's closes are held; the other six wait in its lane.
        let mut entered = 0;
        while entered < CLOSERS_PER_UID {
            assert!(crate::sys::wait_readable(entered_r.as_fd(), Duration::from_secs(10)).unwrap());
            entered += crate::sys::read(entered_r.as_fd(), &mut [0u8; 8]).unwrap();
        }
        assert_eq!(c.pending(Some(1)), 8, "uid 1's closes wait for its own");
        assert_eq!(lock(&c.shared).busy_of(Some(1)), CLOSERS_PER_UID);
        drop(gate_w);
        for r in &theirs {
            assert!(
                closed(r, Duration::from_secs(10)),
                "uid 1's close done once let go"
            );
        }
        assert!(c.finish(Instant::now() + Duration::from_secs(10)));
        assert_eq!(c.pending(Some(1)), 0);
        assert_eq!(c.pending(Some(2)), 0);
    }

    #[test]
    fn a_lingering_socket_is_closed_without_its_linger() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let s = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_peer, _) = listener.accept().unwrap();
        let l = libc::linger {
            l_onoff: 1,
            l_linger: 30,
        };
        // SAFETY: a valid linger of its size on our own socket.
        let r = unsafe {
            libc::setsockopt(
                std::os::fd::AsRawFd::as_raw_fd(&s),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&l as *const libc::linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            )
        };
        assert_eq!(r, 0);
        assert_eq!(crate::sys::lingers(s.as_fd()), Some(30));
        let keep = OwnedFd::from(s.try_clone().unwrap());
        let c = Closer::new(Duration::from_millis(1500));
        c.submit(&mut vec![CloseJob::new(
            None,
            Some(OwnedFd::from(s)),
            Box::new(()),
        )]);
        assert!(c.finish(Instant::now() + Duration::from_secs(10)));
        assert_eq!(crate::sys::lingers(keep.as_fd()), None, "linger turned off");
    }

    #[test]
    fn a_passed_pipe_closes_in_place_and_a_tcp_socket_on_a_closer() {
        let c = Closer::new(Duration::from_millis(1500));
        let (r, w) = crate::sys::pipe().unwrap();
        drop(c.passed(Some(7), w));
        assert!(closed(&r, Duration::from_secs(1)));
        assert!(closes_at_once(r.as_fd()));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let s = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        assert!(!closes_at_once(s.as_fd()));
        let kept = c.passed(Some(7), OwnedFd::from(s)).keep();
        assert!(!closes_at_once(kept.as_fd()));
        drop(c.passed(Some(7), kept));
        assert!(c.finish(Instant::now() + Duration::from_secs(10)));
        assert_eq!(c.pending(Some(7)), 0);
    }
}
