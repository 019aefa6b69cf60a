//! The references the small-file figure is judged against (issue 14): a
//! thread pool doing each request's work on one of W workers, and the floor
//! of any daemon, a one-byte round trip to another process.

use std::collections::VecDeque;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::os;

/// One request for the pool: send `path` to `dest`, then add to `done`
/// (an eventfd) 1 on success or 1 + errno on failure.
struct Job {
    path: Arc<CString>,
    dest: Arc<OwnedFd>,
    done: Arc<OwnedFd>,
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    closed: bool,
}

#[derive(Default)]
struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
}

/// W worker threads popping jobs from one mutex+condvar FIFO, each doing
/// what the in-process reference does (`open`, `fstat`, `sendfile`,
/// `close`), then signalling the requester's eventfd.
pub struct Pool {
    shared: Arc<Shared>,
    workers: Vec<thread::JoinHandle<u64>>,
}

/// What a requester holds to submit to a [`Pool`].
#[derive(Clone)]
pub struct PoolHandle {
    shared: Arc<Shared>,
}

impl Pool {
    pub fn start(threads: usize) -> Pool {
        let shared = Arc::new(Shared::default());
        let workers = (0..threads.max(1))
            .map(|_| {
                let s = Arc::clone(&shared);
                thread::spawn(move || worker(&s))
            })
            .collect();
        Pool { shared, workers }
    }

    pub fn handle(&self) -> PoolHandle {
        PoolHandle {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Stops the workers once the queue is empty; returns the CPU time they
    /// used, in nanoseconds.
    pub fn stop(self) -> u64 {
        self.shared.queue.lock().unwrap().closed = true;
        self.shared.ready.notify_all();
        self.workers
            .into_iter()
            .map(|w| w.join().unwrap_or(0))
            .sum()
    }
}

fn worker(s: &Shared) -> u64 {
    let cpu0 = os::thread_cpu_ns();
    loop {
        let job = {
            let mut q = s.queue.lock().unwrap();
            loop {
                if let Some(j) = q.jobs.pop_front() {
                    break Some(j);
                }
                if q.closed {
                    break None;
                }
                q = s.ready.wait(q).unwrap();
            }
        };
        let Some(job) = job else {
            return os::thread_cpu_ns().saturating_sub(cpu0);
        };
        let code = match serve(&job.path, job.dest.as_fd()) {
            Ok(()) => 1,
            Err(e) => 1 + e.raw_os_error().unwrap_or(libc::EIO) as u64,
        };
        // An eventfd write of 8 bytes cannot be short; if it failed the
        // requester would wait forever, so make that loud.
        os::eventfd_add(job.done.as_fd(), code).expect("eventfd write");
    }
}

fn serve(path: &CString, dest: BorrowedFd<'_>) -> io::Result<()> {
    let f = os::open_ro(path)?;
    let n = os::fstat_size(f.as_fd())?;
    os::sendfile_all(f.as_fd(), dest, n)?;
    drop(f);
    Ok(())
}

impl PoolHandle {
    /// Enqueues one job without waiting for it (the isolation figure's
    /// cold stream through the pool): the eventfd its worker signals once
    /// done, whether it sent everything or failed (`EPIPE` once the reader
    /// closes).
    pub fn submit(&self, path: CString, dest: OwnedFd) -> io::Result<Arc<OwnedFd>> {
        let done = Arc::new(os::eventfd()?);
        self.shared.queue.lock().unwrap().jobs.push_back(Job {
            path: Arc::new(path),
            dest: Arc::new(dest),
            done: Arc::clone(&done),
        });
        self.shared.ready.notify_one();
        Ok(done)
    }
}

/// One requester of the pool: its destination socket pair and its eventfd.
pub struct Requester {
    pool: PoolHandle,
    path: Arc<CString>,
    dest: Arc<OwnedFd>,
    read_end: OwnedFd,
    done: Arc<OwnedFd>,
}

impl Requester {
    pub fn new(pool: PoolHandle, path: CString) -> io::Result<Requester> {
        let (w, r) = os::small_dest_pair()?;
        Ok(Requester {
            pool,
            path: Arc::new(path),
            dest: Arc::new(w),
            read_end: r,
            done: Arc::new(os::eventfd()?),
        })
    }

    /// Enqueues the request, waits for the worker's signal with `poll` as an
    /// event loop would, then reads the data back.
    pub fn once(&self, size: u64, buf: &mut [u8]) -> io::Result<()> {
        {
            let mut q = self.pool.shared.queue.lock().unwrap();
            q.jobs.push_back(Job {
                path: Arc::clone(&self.path),
                dest: Arc::clone(&self.dest),
                done: Arc::clone(&self.done),
            });
        }
        self.pool.shared.ready.notify_one();
        os::poll_in(self.done.as_fd())?;
        let code = os::eventfd_take(self.done.as_fd())?;
        if code != 1 {
            return Err(io::Error::from_raw_os_error((code - 1) as i32));
        }
        let got = os::drain(self.read_end.as_fd(), size, buf)?;
        if got != size {
            return Err(io::Error::other(format!("pool: {got} of {size} bytes")));
        }
        Ok(())
    }
}

// ----- the floor -----

/// The hidden argument that makes this executable the floor's echo child.
pub const ECHO_CHILD: &str = "--echo-child";

/// The echo child: copies each byte from standard input back to standard
/// output until end of file.
pub fn echo_child() -> i32 {
    let mut b = [0u8; 1];
    loop {
        // SAFETY: b is writable for one byte; fds 0 and 1 are ours.
        let n = unsafe { libc::read(0, b.as_mut_ptr().cast(), 1) };
        if n == 0 {
            return 0;
        }
        if n < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return 1;
        }
        // SAFETY: b holds one initialised byte.
        if unsafe { libc::write(1, b.as_ptr().cast(), 1) } != 1 {
            return 1;
        }
    }
}

/// A child process echoing bytes over a pipe pair.
pub struct Echo {
    child: Child,
    to: OwnedFd,
    from: OwnedFd,
}

impl Echo {
    pub fn start() -> io::Result<Echo> {
        // This very binary, even if it was rebuilt (replaced) meanwhile.
        let mut child = Command::new("/proc/self/exe")
            .arg(ECHO_CHILD)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let to = OwnedFd::from(
            child
                .stdin
                .take()
                .ok_or_else(|| io::Error::other("no stdin"))?,
        );
        let from = OwnedFd::from(
            child
                .stdout
                .take()
                .ok_or_else(|| io::Error::other("no stdout"))?,
        );
        Ok(Echo { child, to, from })
    }

    /// One-byte round trips back to back for `dur`: latencies in ns.
    pub fn run(&self, dur: Duration) -> io::Result<Vec<u64>> {
        let mut lat = Vec::with_capacity(1 << 16);
        let mut b = [7u8; 1];
        let start = Instant::now();
        loop {
            let t = Instant::now();
            if t - start >= dur {
                return Ok(lat);
            }
            if sendfiled_sys::write(self.to.as_fd(), &b)? != 1
                || os::read(self.from.as_fd(), &mut b)? != 1
            {
                return Err(io::Error::other("echo child went away"));
            }
            lat.push(t.elapsed().as_nanos() as u64);
        }
    }

    pub fn stop(self) -> io::Result<()> {
        let Echo {
            mut child,
            to,
            from,
        } = self;
        drop(to);
        drop(from);
        let st = child.wait()?;
        if !st.success() {
            return Err(io::Error::other(format!("echo child: {st}")));
        }
        Ok(())
    }
}
