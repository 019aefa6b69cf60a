//! The readiness engine: `mio` (epoll on Linux, kqueue on the BSDs and
//! macOS), edge-triggered. Thin: one `mio` call per engine call.

use std::io;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Events, Poll, Token, Waker};

use super::{Event, Interest, Wake};

/// A `mio::Poll`, its events buffer and its waker.
pub struct ReadinessEngine {
    poll: Poll,
    events: Events,
    waker: Arc<Waker>,
}

impl std::fmt::Debug for ReadinessEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReadinessEngine")
    }
}

fn interest(i: Interest) -> mio::Interest {
    match i {
        Interest::Readable => mio::Interest::READABLE,
        Interest::Writable => mio::Interest::WRITABLE,
    }
}

impl ReadinessEngine {
    /// A new poller (`epoll_create1(2)`, `kqueue(2)`) with its waker.
    pub fn new(waker: usize) -> io::Result<ReadinessEngine> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), Token(waker))?);
        Ok(ReadinessEngine {
            poll,
            events: Events::with_capacity(1024),
            waker,
        })
    }

    /// `"epoll"`, or `"kqueue"` where that is what `mio` runs on.
    pub fn name(&self) -> &'static str {
        if cfg!(any(target_os = "linux", target_os = "android")) {
            "epoll"
        } else {
            "kqueue"
        }
    }

    /// `epoll_ctl(EPOLL_CTL_ADD)`, edge-triggered.
    pub fn register(&mut self, fd: RawFd, token: usize, i: Interest) -> io::Result<()> {
        self.poll
            .registry()
            .register(&mut SourceFd(&fd), Token(token), interest(i))
    }

    /// `epoll_ctl(EPOLL_CTL_MOD)`: reports current readiness again.
    pub fn reregister(&mut self, fd: RawFd, token: usize, i: Interest) -> io::Result<()> {
        self.poll
            .registry()
            .reregister(&mut SourceFd(&fd), Token(token), interest(i))
    }

    /// `epoll_ctl(EPOLL_CTL_DEL)`.
    pub fn deregister(&mut self, fd: RawFd) -> io::Result<()> {
        self.poll.registry().deregister(&mut SourceFd(&fd))
    }

    /// Wakes `epoll_wait` through `mio`'s eventfd (a kqueue user event on
    /// the BSDs).
    pub fn waker(&self) -> Wake {
        let waker = Arc::clone(&self.waker);
        Arc::new(move || {
            let _ = waker.wake();
        })
    }

    /// `epoll_wait(2)`.
    pub fn wait(&mut self, out: &mut Vec<Event>, timeout: Option<Duration>) -> io::Result<()> {
        self.poll.poll(&mut self.events, timeout)?;
        out.extend(self.events.iter().map(|ev| Event {
            token: ev.token().0,
            closed: ev.is_error() || ev.is_write_closed(),
        }));
        Ok(())
    }
}
