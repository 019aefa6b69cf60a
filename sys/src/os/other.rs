//! Other systems (not supported, kept compiling): the portable fallbacks,
//! and no way to tell a pipe's free space.

use std::os::fd::BorrowedFd;

pub use crate::portable::*;

/// Unknown: `None`.
pub fn pipe_free_space(_fd: BorrowedFd<'_>) -> Option<usize> {
    None
}

/// Unknown: `None`.
pub fn pipe_room(_fd: BorrowedFd<'_>) -> Option<usize> {
    None
}
