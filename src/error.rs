//! The daemon's one start-up error: an errno and what failed. Nothing here
//! touches the system.

use std::io;

/// A start-up failure: reported on stdout with -p, logged, and used as the
/// exit status (an errno, so a spawning client can hand it on).
#[derive(Debug)]
pub struct StartError {
    /// An errno for the exit status.
    pub errno: i32,
    /// What was wrong.
    pub what: String,
}

impl StartError {
    /// A failure with this errno and description.
    pub fn new(errno: i32, what: impl Into<String>) -> StartError {
        StartError {
            errno,
            what: what.into(),
        }
    }

    /// An I/O failure while doing `context`.
    pub fn io(context: &str, e: io::Error) -> StartError {
        StartError::new(
            sendfiled_core::sys::errno(&e) as i32,
            format!("{context}: {e}"),
        )
    }
}
