//! The disk I/O pool: a few threads that do the work that may block on a
//! filesystem while the event loop goes on with other transfers.
//!
//! Three kinds of [`Work`]: bringing a file's next chunk into the page cache
//! (a transfer whose data is not cached), writing a chunk to a
//! regular-file destination (`O_DSYNC`, a slow or hung NFS or FUSE mount:
//! nothing bounds how long such a write takes), and opening a requested
//! file whose lookup the kernel could not answer from its caches
//! ([`super::open`]). When a thread is done it posts a [`DiskDone`] and
//! wakes the loop.
//!
//! Jobs wait in a [`FairQueue`]: a FIFO per uid, served round-robin, so
//! that one uid's hundreds of queued reads cost another uid's cold Read at
//! most a job per uid ahead of it (issue 23, row 10). A transfer has at
//! most one job out at a time, and one that ends (cancelled, expired, its
//! slot taken back) takes its queued job out with it
//! ([`DiskPool::cancel`]): the job's descriptors go back to the loop,
//! which closes them as the transfer's (a write job's destination on the
//! closer threads). So the queue never holds more than the live
//! transfers, and [`DiskPool::submit`] refuses past a bound anyway.
//!
//! Shutdown waits for the threads a bounded time ([`DiskPool::finish`]) and
//! then leaves behind any that are stuck in the kernel: the process exit
//! ends them.
//!
//! This file may block only on its own threads, never the loop's.

use std::ffi::CString;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::backend::{DestKind, TransferBackend};
use crate::sys::errno::Errno;

use super::fair::FairQueue;
use super::open::{self, Opened};
use super::pump::{pump, Cursor, Limits, PumpStop};

/// Stack of a disk thread: it only waits on a channel and makes a few system
/// calls (its read buffer is on the heap), so the default 2 MiB reservation
/// is far more than it needs.
pub const DISK_THREAD_STACK: usize = 64 * 1024;

/// What a disk thread does for a transfer.
#[derive(Debug)]
pub enum Work {
    /// Bring `len` bytes at file offset `offset` into the page cache.
    Prefetch {
        /// The file, shared so that a cancel meanwhile cannot close it
        /// under the thread.
        file: Arc<OwnedFd>,
        /// Where the missing data starts.
        offset: u64,
        /// How much to bring in.
        len: usize,
    },
    /// Move what `limits` allow of the transfer to its regular-file
    /// destination (the cursor and the destination come back in
    /// [`Finished::Wrote`]).
    Write {
        /// The file (shared, as for a prefetch).
        file: Arc<OwnedFd>,
        /// The transfer's cursor.
        cursor: Cursor,
        /// The destination.
        dest: OwnedFd,
        /// Bounds of this job.
        limits: Limits,
    },
    /// Open `path` beneath `root` ([`open::blocking`]): the loop's
    /// cache-only attempt found the lookup would wait.
    Open {
        /// The server's root.
        root: Arc<OwnedFd>,
        /// As the request named it.
        path: CString,
    },
}

/// Work for a disk thread.
#[derive(Debug)]
pub struct DiskJob {
    /// Slot of the waiting transfer.
    pub slot: usize,
    /// Its id (the slot may have changed hands when the job finishes).
    pub txnid: u64,
    /// The uid that asked for the transfer: whose turn the job waits for.
    pub uid: Option<u32>,
    /// What to do.
    pub work: Work,
}

/// What a finished job did.
#[derive(Debug)]
pub enum Finished {
    /// As in [`Work::Prefetch`], with how the read went.
    Prefetched {
        /// As in the job.
        offset: u64,
        /// As in the job.
        len: usize,
        /// The errno the read failed with, if it did.
        read: Result<(), Errno>,
    },
    /// A [`Work::Write`] is done: what [`pump`] said.
    Wrote {
        /// The cursor, advanced.
        cursor: Cursor,
        /// The destination, handed back.
        dest: OwnedFd,
        /// Bytes moved.
        moved: u64,
        /// Why the pump stopped.
        stop: PumpStop,
    },
    /// A [`Work::Open`] is done: the file, or the errno for the client.
    Opened(Opened),
}

/// A finished job.
#[derive(Debug)]
pub struct DiskDone {
    /// As in the job.
    pub slot: usize,
    /// As in the job.
    pub txnid: u64,
    /// As in the job.
    pub uid: Option<u32>,
    /// What it did.
    pub work: Finished,
}

/// The queue and the threads' count, under one lock.
#[derive(Default)]
struct Queue {
    /// With when each was queued.
    jobs: FairQueue<Option<u32>, (DiskJob, Instant)>,
    /// Threads still running.
    alive: usize,
    /// No more jobs are taken: the threads exit once idle.
    stop: bool,
}

#[derive(Default)]
struct Shared {
    q: Mutex<Queue>,
    /// A job was queued (or stop).
    work: Condvar,
    /// A thread exited.
    exited: Condvar,
}

fn lock(s: &Shared) -> MutexGuard<'_, Queue> {
    s.q.lock().unwrap_or_else(|e| e.into_inner())
}

/// Why [`DiskPool::submit`] did not queue a job (the job comes back).
#[derive(Debug)]
pub enum Refused {
    /// Shutting down, or every thread is gone.
    Stopped(Box<DiskJob>),
    /// The queue holds its bound already.
    Full(Box<DiskJob>),
}

/// The pool.
pub struct DiskPool {
    shared: Arc<Shared>,
    done: Arc<Mutex<Vec<DiskDone>>>,
    threads: Vec<JoinHandle<()>>,
    /// Most jobs queued at once.
    bound: usize,
    /// How long a drop without [`DiskPool::finish`] waits for the threads.
    grace: Duration,
}

impl std::fmt::Debug for DiskPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskPool")
            .field("threads", &self.threads.len())
            .finish()
    }
}

fn run_job<B: TransferBackend>(backend: &B, job: DiskJob) -> DiskDone {
    let work = match job.work {
        Work::Prefetch { file, offset, len } => {
            let read = backend
                .prefetch(file.as_fd(), offset, len)
                .map_err(|e| crate::sys::errno(&e));
            Finished::Prefetched { offset, len, read }
        }
        Work::Write {
            file,
            mut cursor,
            dest,
            limits,
        } => {
            let (moved, stop) = pump(
                backend,
                &mut cursor,
                file.as_fd(),
                dest.as_fd(),
                DestKind::RegularFile,
                limits,
            );
            Finished::Wrote {
                cursor,
                dest,
                moved,
                stop,
            }
        }
        Work::Open { root, path } => Finished::Opened(open::blocking(backend, root.as_fd(), &path)),
    };
    DiskDone {
        slot: job.slot,
        txnid: job.txnid,
        uid: job.uid,
        work,
    }
}

impl DiskPool {
    /// Starts `threads` threads (at least one), with room for `bound` queued
    /// jobs (at least one); `wake` is called after each finished job.
    /// Dropped without [`DiskPool::finish`], it waits `grace` for its
    /// threads (the loop's shutdown grace, given by the loop that owns it).
    pub fn start<B: TransferBackend>(
        threads: usize,
        bound: usize,
        backend: Arc<B>,
        wake: Arc<dyn Fn() + Send + Sync>,
        grace: Duration,
    ) -> std::io::Result<DiskPool> {
        let shared = Arc::new(Shared::default());
        let done = Arc::new(Mutex::new(Vec::new()));
        let mut pool = DiskPool {
            shared,
            done,
            threads: Vec::new(),
            bound: bound.max(1),
            grace,
        };
        for i in 0..threads.max(1) {
            let shared = Arc::clone(&pool.shared);
            let done = Arc::clone(&pool.done);
            let backend = Arc::clone(&backend);
            let wake = Arc::clone(&wake);
            lock(&pool.shared).alive += 1;
            let spawned = std::thread::Builder::new()
                .name(format!("sendfiled-disk-{i}"))
                .stack_size(DISK_THREAD_STACK)
                .spawn(move || {
                    while let Some((job, waited)) = next_job(&shared) {
                        let (txnid, uid) = (job.txnid, job.uid);
                        let t0 = Instant::now();
                        let d = run_job(&*backend, job);
                        log::trace!(
                            "disk job of txn {txnid:x} (uid {uid:?}): waited {waited:?}, ran {:?}",
                            t0.elapsed()
                        );
                        if let Ok(mut q) = done.lock() {
                            q.push(d);
                        }
                        wake();
                    }
                    lock(&shared).alive -= 1;
                    shared.exited.notify_all();
                });
            match spawned {
                Ok(h) => pool.threads.push(h),
                Err(e) => {
                    lock(&pool.shared).alive -= 1;
                    // Dropping the pool stops the threads already started.
                    return Err(e);
                }
            }
        }
        Ok(pool)
    }

    /// Queues a job behind its uid's others; refused (the job handed back)
    /// when stopping or when the queue holds its bound.
    pub fn submit(&self, job: DiskJob) -> Result<(), Refused> {
        let mut q = lock(&self.shared);
        if q.stop || q.alive == 0 {
            return Err(Refused::Stopped(Box::new(job)));
        }
        if q.jobs.len() >= self.bound {
            return Err(Refused::Full(Box::new(job)));
        }
        q.jobs.push(job.uid, (job, Instant::now()));
        drop(q);
        self.shared.work.notify_one();
        Ok(())
    }

    /// Takes transfer `txnid`'s queued jobs out of the queue (it ended):
    /// what they hold goes back to the caller. A job a thread already runs
    /// is not among them; it comes back through [`DiskPool::take_done`].
    pub fn cancel(&self, txnid: u64) -> Vec<DiskJob> {
        let mut q = lock(&self.shared);
        let jobs = q.jobs.remove_where(|(j, _)| j.txnid == txnid);
        jobs.into_iter().map(|(j, _)| j).collect()
    }

    /// Jobs queued and not yet taken by a thread.
    pub fn queued(&self) -> usize {
        lock(&self.shared).jobs.len()
    }

    /// Takes the finished jobs.
    pub fn take_done(&self) -> Vec<DiskDone> {
        match self.done.lock() {
            Ok(mut d) => std::mem::take(&mut *d),
            Err(_) => Vec::new(),
        }
    }

    /// Stops taking jobs, hands back those queued (for the caller to close
    /// what they hold), and waits until `deadline` at most for the threads
    /// to finish the ones they are in; threads still busy then (a write to
    /// a hung filesystem) are left behind. Returns whether every thread
    /// finished, and the jobs that were still queued.
    pub fn finish(&mut self, deadline: Instant) -> (bool, Vec<DiskJob>) {
        let mut q = lock(&self.shared);
        q.stop = true;
        let queued = q.jobs.drain().into_iter().map(|(j, _)| j).collect();
        self.shared.work.notify_all();
        let mut all = true;
        while q.alive > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                all = false;
                break;
            }
            q = match self.shared.exited.wait_timeout(q, left) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        }
        drop(q);
        if all {
            for h in self.threads.drain(..) {
                let _ = h.join();
            }
        } else {
            log::warn!("disk threads still busy at shutdown (a hung filesystem?): left behind");
            self.threads.clear();
        }
        (all, queued)
    }
}

/// A disk thread's wait for its next job, and how long that job waited in
/// the queue; `None` once stopping.
fn next_job(shared: &Shared) -> Option<(DiskJob, std::time::Duration)> {
    let mut q = lock(shared);
    loop {
        if q.stop {
            return None;
        }
        if let Some((_, (job, queued))) = q.jobs.pop() {
            return Some((job, queued.elapsed()));
        }
        q = match shared.work.wait(q) {
            Ok(g) => g,
            Err(e) => e.into_inner(),
        };
    }
}

impl Drop for DiskPool {
    fn drop(&mut self) {
        if !lock(&self.shared).stop {
            self.finish(Instant::now() + self.grace);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{FileChunk, Moved, ReadWriteCopy};
    use std::ffi::CStr;
    use std::os::fd::BorrowedFd;

    const WAIT: Duration = Duration::from_secs(10);

    /// A backend whose prefetch says it started (a byte on `entered`) and
    /// then waits until `go` is readable.
    struct Gated {
        go: OwnedFd,
        entered: OwnedFd,
    }

    impl TransferBackend for Gated {
        fn name(&self) -> &'static str {
            "gated-test"
        }

        fn send_file(
            &self,
            chunk: FileChunk<'_>,
            dest: BorrowedFd<'_>,
            kind: DestKind,
        ) -> std::io::Result<Moved> {
            ReadWriteCopy::send_file(chunk, dest, kind)
        }

        fn open_beneath(
            &self,
            _root: BorrowedFd<'_>,
            _path: &CStr,
        ) -> std::io::Result<(OwnedFd, libc::stat)> {
            Err(std::io::Error::from_raw_os_error(libc::ENOENT))
        }

        fn prefetch(
            &self,
            _file: BorrowedFd<'_>,
            _offset: u64,
            _len: usize,
        ) -> std::io::Result<()> {
            crate::sys::write(self.entered.as_fd(), b"i")?;
            crate::sys::wait_readable(self.go.as_fd(), WAIT)?;
            Ok(())
        }
    }

    fn prefetch_job(txnid: u64, uid: u32, file: &Arc<OwnedFd>) -> DiskJob {
        DiskJob {
            slot: txnid as usize,
            txnid,
            uid: Some(uid),
            work: Work::Prefetch {
                file: Arc::clone(file),
                offset: 0,
                len: 1,
            },
        }
    }

    #[test]
    fn queued_jobs_are_recalled_bounded_and_served_by_uid_in_turn() {
        let (go_r, go_w) = crate::sys::pipe().unwrap();
        let (entered_r, entered_w) = crate::sys::pipe().unwrap();
        let (woke_r, woke_w) = crate::sys::pipe().unwrap();
        let woke_w = Arc::new(woke_w);
        let wake: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
            let _ = crate::sys::write(woke_w.as_fd(), b"w");
        });
        let backend = Arc::new(Gated {
            go: go_r,
            entered: entered_w,
        });
        let mut pool = DiskPool::start(1, 4, backend, wake, WAIT).unwrap();
        let file = Arc::new(crate::sys::pipe().unwrap().0);
        // The only thread takes job 1 and waits in it.
        pool.submit(prefetch_job(1, 5, &file)).unwrap();
        assert!(crate::sys::wait_readable(entered_r.as_fd(), WAIT).unwrap());
        // uid 5 queues three, uid 6 one.
        for txnid in [2, 3, 4] {
            pool.submit(prefetch_job(txnid, 5, &file)).unwrap();
        }
        pool.submit(prefetch_job(9, 6, &file)).unwrap();
        assert!(matches!(
            pool.submit(prefetch_job(10, 6, &file)),
            Err(Refused::Full(_))
        ));
        // Job 3's transfer ended: its job comes back, with its file clone.
        let back = pool.cancel(3);
        assert_eq!(back.iter().map(|j| j.txnid).collect::<Vec<_>>(), [3]);
        drop(back);
        assert_eq!(pool.queued(), 3);
        assert!(pool.cancel(1).is_empty(), "a running job is not recalled");
        // Let every job run: uid 6's comes second, not after uid 5's backlog.
        assert_eq!(crate::sys::write(go_w.as_fd(), b"go").unwrap(), 2);
        let mut order = Vec::new();
        while order.len() < 4 {
            assert!(crate::sys::wait_readable(woke_r.as_fd(), WAIT).unwrap());
            let _ = crate::sys::read(woke_r.as_fd(), &mut [0u8; 16]);
            order.extend(pool.take_done().into_iter().map(|d| d.txnid));
        }
        assert_eq!(order, [1, 2, 9, 4]);
        let (all, queued) = pool.finish(Instant::now() + WAIT);
        assert!(all && queued.is_empty());
        assert!(
            Arc::try_unwrap(file).is_ok(),
            "no job holds the file any more"
        );
    }
}
