//! The disk I/O pool: a few threads that bring file data into the page cache
//! while the event loop goes on with other transfers.
//!
//! A transfer whose next chunk is not cached hands a [`DiskJob`] here and
//! waits; when a thread has read the data in, it posts a [`DiskDone`] and wakes
//! the loop, which sends the chunk zero-copy.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::backend::TransferBackend;

/// Stack of a disk thread: it only waits on a channel and makes a few system
/// calls (its read buffer is on the heap), so the default 2 MiB reservation
/// is far more than it needs.
pub const DISK_THREAD_STACK: usize = 64 * 1024;

/// Work for a disk thread.
#[derive(Debug)]
pub struct DiskJob {
    /// Slot of the waiting transfer.
    pub slot: usize,
    /// Its id (the slot may have changed hands when the job finishes).
    pub txnid: u64,
    /// The file, shared so that a cancel meanwhile cannot close it under the
    /// thread.
    pub file: Arc<OwnedFd>,
    /// Where the missing data starts.
    pub offset: u64,
    /// How much to bring in.
    pub len: usize,
}

/// A finished job.
#[derive(Debug)]
pub struct DiskDone {
    /// As in the job.
    pub slot: usize,
    /// As in the job.
    pub txnid: u64,
    /// As in the job.
    pub offset: u64,
    /// As in the job.
    pub len: usize,
    /// 0, or the errno the read failed with.
    pub errno: i32,
}

/// The pool.
pub struct DiskPool {
    jobs: Option<Sender<DiskJob>>,
    done: Arc<Mutex<Vec<DiskDone>>>,
    threads: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for DiskPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskPool")
            .field("threads", &self.threads.len())
            .finish()
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
        let mut handles = Vec::new();
        for i in 0..threads.max(1) {
            let rx: Arc<Mutex<Receiver<DiskJob>>> = Arc::clone(&rx);
            let done = Arc::clone(&done);
            let backend = Arc::clone(&backend);
            let wake = Arc::clone(&wake);
            let h = std::thread::Builder::new()
                .name(format!("sendfiled-disk-{i}"))
                .stack_size(DISK_THREAD_STACK)
                .spawn(move || loop {
                    let job = {
                        let Ok(guard) = rx.lock() else { return };
                        match guard.recv() {
                            Ok(j) => j,
                            Err(_) => return,
                        }
                    };
                    let DiskJob {
                        slot,
                        txnid,
                        file,
                        offset,
                        len,
                    } = job;
                    let errno = match backend.prefetch(file.as_fd(), offset, len) {
                        Ok(()) => 0,
                        Err(e) => crate::sys::errno(&e),
                    };
                    // Let go of the file before the loop hears of it: a
                    // transfer it then ends must not find its file still
                    // open here.
                    drop(file);
                    if let Ok(mut d) = done.lock() {
                        d.push(DiskDone {
                            slot,
                            txnid,
                            offset,
                            len,
                            errno,
                        });
                    }
                    wake();
                })?;
            handles.push(h);
        }
        Ok(DiskPool {
            jobs: Some(tx),
            done,
            threads: handles,
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
}

impl Drop for DiskPool {
    fn drop(&mut self) {
        self.jobs = None;
        for h in self.threads.drain(..) {
            let _ = h.join();
        }
    }
}
