//! The daemon's signal dispositions, set once at start-up: `SIGTERM` and
//! `SIGINT` ask the loop to shut down (through a descriptor it polls), and
//! `SIGPIPE` is ignored so a closed destination comes back as `EPIPE`.
//!
//! Process-wide state lives here, in the binary, so that the server loop
//! itself can be built and driven by tests without touching signals.

use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;

/// Installs the handlers; returns the descriptor that becomes readable when
/// a shutdown signal arrives (for `Server::new`).
pub fn install_shutdown_signals() -> io::Result<OwnedFd> {
    let (rx, tx) = UnixStream::pair()?;
    rx.set_nonblocking(true)?;
    tx.set_nonblocking(true)?;
    let tx2 = tx.try_clone()?;
    signal_hook::low_level::pipe::register(signal_hook::consts::SIGTERM, tx)?;
    signal_hook::low_level::pipe::register(signal_hook::consts::SIGINT, tx2)?;
    // SAFETY: setting SIGPIPE to ignored has no preconditions; a closed
    // destination must come back as EPIPE, not kill the daemon.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    Ok(rx.into())
}
