//! The loop's engine: how it waits for its descriptors and gives closed ones
//! back to the kernel. Everything else — admission, the transfer table, the
//! pump, the status channel — is the server's and the same on every engine.
//!
//! Two engines answer the same small set of calls, chosen at start
//! ([`EngineKind`]): the readiness loop of [`readiness`] (`mio`: epoll on Linux,
//! kqueue on the BSDs and macOS), and on Linux [`uring`], where waits are
//! multishot poll requests and closes are ring operations, all submitted in
//! the one `io_uring_enter` that also waits. The rest of the server never
//! names an engine or an OS.
//!
//! This file may choose and dispatch; it holds no engine's logic.

pub mod kind;
pub mod readiness;
#[cfg(target_os = "linux")]
pub mod uring;

use std::io;
use std::os::fd::{OwnedFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

pub use kind::{EngineKind, ENGINE_ENV};

/// What a registration waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interest {
    /// Data (or end of file) to read.
    Readable,
    /// Room to write.
    Writable,
}

/// One readiness event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    /// The token the descriptor was registered with.
    pub token: usize,
    /// The descriptor reported an error or a hang-up (for a pipe's write
    /// end: its reader is gone).
    pub closed: bool,
}

/// Wakes the loop from another thread.
pub type Wake = Arc<dyn Fn() + Send + Sync>;

/// io_uring was refused: says so, and keeps the refusal (and its errno,
/// for the daemon's exit status) as its source.
#[derive(Debug)]
pub struct Refused(pub io::Error);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "io_uring refused: {}", self.0)
    }
}

impl std::error::Error for Refused {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

/// The engine a server runs on.
#[derive(Debug)]
pub enum Engine {
    /// The readiness loop.
    Readiness(readiness::ReadinessEngine),
    /// The io_uring loop.
    #[cfg(target_os = "linux")]
    Uring(Box<uring::UringEngine>),
}

impl Engine {
    /// Builds the engine `kind` asks for. `Auto` takes io_uring where the
    /// kernel allows it and otherwise the readiness loop, logging why once;
    /// `Uring` fails if io_uring is refused. `waker` is the token the
    /// waker's events carry.
    pub fn new(kind: EngineKind, waker: usize) -> io::Result<Engine> {
        match kind {
            EngineKind::Epoll => Ok(Engine::Readiness(readiness::ReadinessEngine::new(waker)?)),
            #[cfg(target_os = "linux")]
            EngineKind::Uring => uring::UringEngine::new(waker)
                .map(|u| Engine::Uring(Box::new(u)))
                .map_err(|e| io::Error::new(e.kind(), Refused(e))),
            #[cfg(not(target_os = "linux"))]
            EngineKind::Uring => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "io_uring is Linux's: this system has only the readiness loop",
            )),
            #[cfg(target_os = "linux")]
            EngineKind::Auto => match uring::UringEngine::new(waker) {
                Ok(u) => Ok(Engine::Uring(Box::new(u))),
                Err(e) => {
                    log::warn!("io_uring refused ({e}): using the epoll engine");
                    Ok(Engine::Readiness(readiness::ReadinessEngine::new(waker)?))
                }
            },
            #[cfg(not(target_os = "linux"))]
            EngineKind::Auto => Ok(Engine::Readiness(readiness::ReadinessEngine::new(waker)?)),
        }
    }

    /// The engine's name, as logged and as `--engine` spells it.
    pub fn name(&self) -> &'static str {
        match self {
            Engine::Readiness(e) => e.name(),
            #[cfg(target_os = "linux")]
            Engine::Uring(e) => e.name(),
        }
    }

    /// Watches `fd` for `interest`; events carry `token`.
    pub fn register(&mut self, fd: RawFd, token: usize, interest: Interest) -> io::Result<()> {
        match self {
            Engine::Readiness(e) => e.register(fd, token, interest),
            #[cfg(target_os = "linux")]
            Engine::Uring(e) => e.register(fd, token, interest),
        }
    }

    /// Watches a registered `fd` afresh: if it is ready now, an event comes
    /// at the next wait even though no new edge happened.
    pub fn reregister(&mut self, fd: RawFd, token: usize, interest: Interest) -> io::Result<()> {
        match self {
            Engine::Readiness(e) => e.reregister(fd, token, interest),
            #[cfg(target_os = "linux")]
            Engine::Uring(e) => e.reregister(fd, token, interest),
        }
    }

    /// Stops watching `fd`. When this returns the engine holds no reference
    /// to its open file, so closing `fd` afterwards is its last close.
    pub fn deregister(&mut self, fd: RawFd, token: usize) -> io::Result<()> {
        // The readiness loop forgets by descriptor, the ring by token.
        let _ = token;
        match self {
            Engine::Readiness(e) => e.deregister(fd),
            #[cfg(target_os = "linux")]
            Engine::Uring(e) => e.deregister(token),
        }
    }

    /// A handle that wakes the loop (its event carries the waker token).
    pub fn waker(&self) -> Wake {
        match self {
            Engine::Readiness(e) => e.waker(),
            #[cfg(target_os = "linux")]
            Engine::Uring(e) => e.waker(),
        }
    }

    /// Waits up to `timeout` (`None`: until something happens) and appends
    /// the events to `events`. Work queued since the last wait (closes,
    /// registrations) is handed to the kernel first. A signal returns
    /// `ErrorKind::Interrupted`.
    pub fn wait(&mut self, events: &mut Vec<Event>, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            Engine::Readiness(e) => e.wait(events, timeout),
            #[cfg(target_os = "linux")]
            Engine::Uring(e) => e.wait(events, timeout),
        }
    }

    /// Closes these descriptors, in this order, none of them registered.
    /// They may close at the next wait rather than now (io_uring), but
    /// before the loop sleeps; only descriptors whose close cannot block
    /// (pipes, UNIX sockets, local files) belong here.
    pub fn close_in_order(&mut self, fds: &mut Vec<OwnedFd>) {
        match self {
            Engine::Readiness(_) => fds.clear(),
            #[cfg(target_os = "linux")]
            Engine::Uring(e) => e.close_in_order(fds),
        }
    }
}
