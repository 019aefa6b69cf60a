//! The interrupt backstop: no call on a client's descriptor may hold the
//! loop thread, even one the kernel makes blocking because the client
//! cleared `O_NONBLOCK` on the open file description it shares with the
//! daemon (`sendfile` to a socket, `write` to a pipe: neither has a per-call
//! non-blocking flag).
//!
//! A thread that runs a loop [`bind`]s itself; every call that may block on
//! a client's object is made through [`guarded`], which costs two atomic
//! stores and a load, no system call. One process-wide watchdog thread looks
//! every [`TICK`]: a bound thread found in the same guarded call as one tick
//! before has been in it for at least a tick, and is sent
//! [`sys::INTERRUPT_SIGNAL`], whose handler does nothing and does not restart
//! the call: it returns a short count or `EINTR`, and [`guarded`] reports it
//! as interrupted, which the caller takes as "destination full". A call the
//! signal did not end (the thread was between system calls, or in an
//! uninterruptible sleep) is signalled again each tick. When no bound thread
//! has made a guarded call for a while the watchdog parks, and the next
//! guarded call wakes it (one `futex` after each idle spell).
//!
//! This file may send the signal only to a bound thread, only while that
//! thread is inside a guarded call, and only under the lock that unbinding
//! takes, so never to a thread that has gone.

use std::cell::RefCell;
use std::io;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::thread::Thread;
use std::time::Duration;

use crate::sys;

/// How often the watchdog looks: a blocked call ends between one and two
/// ticks after it started (later when the machine is loaded).
pub const TICK: Duration = Duration::from_millis(10);

/// Ticks without a guarded call before the watchdog parks.
const IDLE_TICKS: u32 = 10;

/// One bound thread as the watchdog sees it.
struct Watched {
    /// The number of the latest guarded call, shifted left once, with the
    /// low bit set while the call runs. Written only by the bound thread.
    state: AtomicU64,
    /// The number of the call the watchdog interrupted last.
    fired: AtomicU64,
    /// The bound thread.
    thread: libc::pthread_t,
}

struct Watchdog {
    watched: Mutex<Vec<Arc<Watched>>>,
    parked: AtomicBool,
    thread: OnceLock<Thread>,
    start: Mutex<bool>,
}

static DOG: Watchdog = Watchdog {
    watched: Mutex::new(Vec::new()),
    parked: AtomicBool::new(false),
    thread: OnceLock::new(),
    start: Mutex::new(false),
};

thread_local! {
    static CURRENT: RefCell<Option<Arc<Watched>>> = const { RefCell::new(None) };
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The current thread's binding; unbinds when dropped (on the same thread:
/// it is neither `Send` nor `Sync`).
#[derive(Debug)]
pub struct Bound {
    _not_send: PhantomData<*const ()>,
}

/// Binds the calling thread: its guarded calls are interrupted when they
/// block. Starts the watchdog and installs the signal handler the first
/// time.
pub fn bind() -> io::Result<Bound> {
    {
        let mut started = lock(&DOG.start);
        if !*started {
            sys::install_interrupt_handler()?;
            let t = std::thread::Builder::new()
                .name("sendfiled-backstop".into())
                .stack_size(64 * 1024)
                .spawn(watch)?;
            let _ = DOG.thread.set(t.thread().clone());
            *started = true;
        }
    }
    let w = Arc::new(Watched {
        state: AtomicU64::new(0),
        fired: AtomicU64::new(u64::MAX),
        thread: sys::current_thread(),
    });
    lock(&DOG.watched).push(Arc::clone(&w));
    CURRENT.with(|c| *c.borrow_mut() = Some(w));
    Ok(Bound {
        _not_send: PhantomData,
    })
}

impl Drop for Bound {
    fn drop(&mut self) {
        if let Some(w) = CURRENT.with(|c| c.borrow_mut().take()) {
            lock(&DOG.watched).retain(|x| !Arc::ptr_eq(x, &w));
        }
    }
}

/// Runs `f` (one call that may block on a client's descriptor) and says
/// whether the watchdog interrupted it. On a thread that is not bound it
/// just runs `f`.
pub fn guarded<T>(f: impl FnOnce() -> T) -> (T, bool) {
    CURRENT.with(|c| {
        let c = c.borrow();
        let Some(w) = c.as_ref() else {
            return (f(), false);
        };
        let n = (w.state.load(Ordering::Relaxed) >> 1) + 1;
        w.state.store(n << 1 | 1, Ordering::SeqCst);
        if DOG.parked.load(Ordering::SeqCst) {
            wake();
        }
        let r = f();
        w.state.store(n << 1, Ordering::SeqCst);
        let fired = w.fired.load(Ordering::SeqCst) == n;
        (r, fired)
    })
}

fn wake() {
    if DOG.parked.swap(false, Ordering::SeqCst) {
        if let Some(t) = DOG.thread.get() {
            t.unpark();
        }
    }
}

/// The watchdog's states of every bound thread, keyed by its record.
fn look() -> Vec<(usize, u64)> {
    lock(&DOG.watched)
        .iter()
        .map(|w| (Arc::as_ptr(w) as usize, w.state.load(Ordering::SeqCst)))
        .collect()
}

fn watch() {
    let mut last: Vec<(usize, u64)> = Vec::new();
    let mut idle = 0u32;
    loop {
        std::thread::sleep(TICK);
        let mut now = Vec::new();
        let mut busy = false;
        {
            let list = lock(&DOG.watched);
            for w in list.iter() {
                let key = Arc::as_ptr(w) as usize;
                let s = w.state.load(Ordering::SeqCst);
                if s & 1 == 1 {
                    busy = true;
                    if last.contains(&(key, s)) {
                        // The same call as a tick ago: it blocked.
                        w.fired.store(s >> 1, Ordering::SeqCst);
                        let _ = sys::interrupt_thread(w.thread);
                    }
                }
                now.push((key, s));
            }
        }
        let changed = now != last;
        last = now;
        if busy || changed {
            idle = 0;
            continue;
        }
        idle += 1;
        if idle < IDLE_TICKS {
            continue;
        }
        // Park until a guarded call wakes us. The flag goes up before the
        // second look, and a guarded call stores its state before it reads
        // the flag: either we see the call or it sees the flag.
        DOG.parked.store(true, Ordering::SeqCst);
        if look() != last {
            DOG.parked.store(false, Ordering::SeqCst);
        }
        while DOG.parked.load(Ordering::SeqCst) {
            std::thread::park();
        }
        idle = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::time::Instant;

    #[test]
    fn a_blocked_write_to_a_pipe_is_interrupted_and_reported() {
        let _b = bind().expect("bind");
        let (r, w) = sys::pipe().expect("pipe");
        sys::set_nonblocking(w.as_fd(), true).unwrap();
        let junk = [0u8; 4096];
        while sys::write(w.as_fd(), &junk).is_ok() {}
        sys::set_nonblocking(w.as_fd(), false).unwrap();
        let t0 = Instant::now();
        let (res, fired) = guarded(|| sys::write(w.as_fd(), &junk[..100]));
        assert!(fired, "the watchdog interrupted the write");
        assert_eq!(
            res.expect_err("nothing written").kind(),
            io::ErrorKind::Interrupted
        );
        assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
        // A quick call afterwards is not reported as interrupted. Only a
        // call seen by two ticks is, so one the scheduler stretched past a
        // tick may rightly be; one shorter than a tick never.
        let t1 = Instant::now();
        let (res, fired) = guarded(|| sys::is_nonblocking(w.as_fd()));
        let took = t1.elapsed();
        assert!(!fired || took >= TICK, "reported after {took:?}");
        assert!(!res.unwrap());
        drop(r);
    }

    #[test]
    fn an_unbound_thread_runs_calls_plainly() {
        let (v, fired) = guarded(|| 7);
        assert_eq!(v, 7);
        assert!(!fired);
    }
}
