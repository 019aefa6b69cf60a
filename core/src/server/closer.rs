//! Closing what may block on close, off the loop.
//!
//! The last `close` of a TCP socket whose client set `SO_LINGER` waits until
//! the unsent data is acknowledged or the linger time runs out (seconds, and
//! the peer may never read); a regular file on NFS or FUSE flushes on close.
//! (Pipes and UNIX sockets do neither: they close on the loop.)
//! The client shares these descriptions and can set `SO_LINGER` at any time,
//! so no check before the close can tell: every such destination (with the
//! status channel after it, so that the client still sees end of file there
//! only once the daemon holds nothing of the transfer) is closed by one of a
//! few closer threads. The loop hands them a batch per turn and never waits.
//!
//! At shutdown [`Closer::finish`] waits a bounded time and then leaves the
//! rest to the process exit, which does not linger on Linux (`SO_LINGER` is
//! skipped for an exiting task). On FreeBSD and macOS the exit's own close
//! may still linger: not verified there.
//!
//! This file may block only on its own threads.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

/// Most closer threads: a close that lingers holds one thread, so a few
/// lingering destinations do not hold up everybody else's closes.
pub const CLOSERS: usize = 4;

/// Something whose drop closes descriptors, in the order of its fields.
pub type CloseJob = Box<dyn Send>;

#[derive(Default)]
struct Queue {
    jobs: VecDeque<CloseJob>,
    threads: usize,
    idle: usize,
    busy: usize,
    stop: bool,
}

#[derive(Default)]
struct Shared {
    q: Mutex<Queue>,
    /// Jobs queued (or stop).
    work: Condvar,
    /// A job finished (or a thread exited).
    done: Condvar,
}

fn lock(s: &Shared) -> MutexGuard<'_, Queue> {
    s.q.lock().unwrap_or_else(|e| e.into_inner())
}

/// The closer threads, started as needed.
#[derive(Default)]
pub struct Closer {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Closer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Closer").finish()
    }
}

impl Closer {
    /// Hands `jobs` (emptied) to the closer threads. If no thread can be
    /// started the jobs are closed here: a closed descriptor matters more
    /// than the wait.
    pub fn submit(&self, jobs: &mut Vec<CloseJob>) {
        if jobs.is_empty() {
            return;
        }
        let mut q = lock(&self.shared);
        let n = jobs.len();
        q.jobs.extend(jobs.drain(..));
        if q.idle == 0 && q.threads < CLOSERS && !q.stop {
            let shared = Arc::clone(&self.shared);
            let spawned = std::thread::Builder::new()
                .name("sendfiled-close".into())
                .stack_size(64 * 1024)
                .spawn(move || close_jobs(&shared));
            match spawned {
                Ok(_) => q.threads += 1,
                Err(e) if q.threads == 0 => {
                    log::error!("cannot start a closer thread ({e}): closing on the loop");
                    let left: Vec<CloseJob> = q.jobs.drain(..).collect();
                    drop(q);
                    drop(left);
                    return;
                }
                Err(_) => {}
            }
        }
        if n == 1 {
            self.shared.work.notify_one();
        } else {
            self.shared.work.notify_all();
        }
    }

    /// Waits until every queued close is done or `deadline` passes; then the
    /// threads stop once idle. Returns whether everything was closed.
    pub fn finish(&self, deadline: Instant) -> bool {
        let mut q = lock(&self.shared);
        q.stop = true;
        self.shared.work.notify_all();
        while !q.jobs.is_empty() || q.busy > 0 {
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
            self.finish(Instant::now() + super::SHUTDOWN_GRACE);
        }
    }
}

fn close_jobs(shared: &Shared) {
    let mut q = lock(shared);
    loop {
        if let Some(job) = q.jobs.pop_front() {
            q.busy += 1;
            drop(q);
            drop(job);
            q = lock(shared);
            q.busy -= 1;
            shared.done.notify_all();
            continue;
        }
        if q.stop {
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
    use std::time::Duration;

    #[test]
    fn closes_happen_in_order_off_the_calling_thread() {
        let c = Closer::default();
        let (r, w) = crate::sys::pipe().unwrap();
        let mut jobs: Vec<CloseJob> = vec![Box::new(w)];
        c.submit(&mut jobs);
        assert!(jobs.is_empty());
        assert!(c.finish(Instant::now() + Duration::from_secs(10)));
        // The write end is closed: end of file.
        assert!(crate::sys::wait_readable(r.as_fd(), Duration::from_secs(10)).unwrap());
        let mut b = [0u8; 1];
        assert_eq!(crate::sys::read(r.as_fd(), &mut b).unwrap(), 0);
    }
}
