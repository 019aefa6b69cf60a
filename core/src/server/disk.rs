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
//! Shutdown waits for the threads a bounded time ([`DiskPool::finish`]) and
//! then leaves behind any that are stuck in the kernel: the process exit
//! ends them.
//!
//! This file may block only on its own threads, never the loop's.

use std::ffi::CString;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use crate::backend::{DestKind, TransferBackend};

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
    /// What to do.
    pub work: Work,
}

/// What a finished job did.
#[derive(Debug)]
pub enum Finished {
    /// As in [`Work::Prefetch`]; `errno` is 0 or what the read failed with.
    Prefetched {
        /// As in the job.
        offset: u64,
        /// As in the job.
        len: usize,
        /// 0, or the errno the read failed with.
        errno: i32,
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
    /// What it did.
    pub work: Finished,
}

/// Threads still running, for a bounded wait at shutdown.
#[derive(Default)]
struct Alive {
    count: Mutex<usize>,
    changed: Condvar,
}

/// The pool.
pub struct DiskPool {
    jobs: Option<Sender<DiskJob>>,
    done: Arc<Mutex<Vec<DiskDone>>>,
    threads: Vec<JoinHandle<()>>,
    alive: Arc<Alive>,
    stopping: Arc<AtomicBool>,
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
            let errno = match backend.prefetch(file.as_fd(), offset, len) {
                Ok(()) => 0,
                Err(e) => crate::sys::errno(&e),
            };
            Finished::Prefetched { offset, len, errno }
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
        work,
    }
}

impl DiskPool {
    /// Starts `threads` threads (at least one); `wake` is called after each
    /// finished job.
    pub fn start<B: TransferBackend>(
        threads: usize,
        backend: Arc<B>,
        wake: Arc<dyn Fn() + Send + Sync>,
    ) -> std::io::Result<DiskPool> {
        let (tx, rx) = channel::<DiskJob>();
        let rx = Arc::new(Mutex::new(rx));
        let done = Arc::new(Mutex::new(Vec::new()));
        let alive = Arc::new(Alive::default());
        let stopping = Arc::new(AtomicBool::new(false));
        let mut handles = Vec::new();
        for i in 0..threads.max(1) {
            let rx: Arc<Mutex<Receiver<DiskJob>>> = Arc::clone(&rx);
            let done = Arc::clone(&done);
            let backend = Arc::clone(&backend);
            let wake = Arc::clone(&wake);
            let alive2 = Arc::clone(&alive);
            let stopping = Arc::clone(&stopping);
            if let Ok(mut n) = alive.count.lock() {
                *n += 1;
            }
            let spawned = std::thread::Builder::new()
                .name(format!("sendfiled-disk-{i}"))
                .stack_size(DISK_THREAD_STACK)
                .spawn(move || {
                    loop {
                        let job = {
                            let Ok(guard) = rx.lock() else { break };
                            match guard.recv() {
                                Ok(j) => j,
                                Err(_) => break,
                            }
                        };
                        if stopping.load(Ordering::Relaxed) {
                            // Shutting down: what is still queued is dropped.
                            continue;
                        }
                        let d = run_job(&*backend, job);
                        if let Ok(mut q) = done.lock() {
                            q.push(d);
                        }
                        wake();
                    }
                    if let Ok(mut n) = alive2.count.lock() {
                        *n -= 1;
                    }
                    alive2.changed.notify_all();
                });
            match spawned {
                Ok(h) => handles.push(h),
                Err(e) => {
                    if let Ok(mut n) = alive.count.lock() {
                        *n -= 1;
                    }
                    return Err(e);
                }
            }
        }
        Ok(DiskPool {
            jobs: Some(tx),
            done,
            threads: handles,
            alive,
            stopping,
        })
    }

    /// Queues a job. Fails only if every thread has died.
    pub fn submit(&self, job: DiskJob) -> bool {
        self.jobs.as_ref().is_some_and(|tx| tx.send(job).is_ok())
    }

    /// Takes the finished jobs.
    pub fn take_done(&self) -> Vec<DiskDone> {
        match self.done.lock() {
            Ok(mut d) => std::mem::take(&mut *d),
            Err(_) => Vec::new(),
        }
    }

    /// Stops taking jobs, drops those queued, and waits until `deadline`
    /// at most for the threads to finish the ones they are in; threads still
    /// busy then (a write to a hung filesystem) are left behind. Returns
    /// whether every thread finished.
    pub fn finish(&mut self, deadline: Instant) -> bool {
        self.stopping.store(true, Ordering::Relaxed);
        self.jobs = None;
        let mut all = true;
        if let Ok(mut n) = self.alive.count.lock() {
            while *n > 0 {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    all = false;
                    break;
                }
                n = match self.alive.changed.wait_timeout(n, left) {
                    Ok((g, _)) => g,
                    Err(_) => return false,
                };
            }
        }
        if all {
            for h in self.threads.drain(..) {
                let _ = h.join();
            }
        } else {
            log::warn!("disk threads still busy at shutdown (a hung filesystem?): left behind");
            self.threads.clear();
        }
        all
    }
}

impl Drop for DiskPool {
    fn drop(&mut self) {
        if self.jobs.is_some() || !self.threads.is_empty() {
            self.finish(Instant::now() + super::SHUTDOWN_GRACE);
        }
    }
}
