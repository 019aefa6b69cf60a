//! kqueue(2) helpers shared by FreeBSD and macOS.

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// `EVFILT_WRITE`'s `data` from a throwaway kqueue(2): the exact free
/// space of a pipe buffer, for [`crate::nowait::pipe_free_space`].
pub fn pipe_free_space(fd: BorrowedFd<'_>) -> Option<usize> {
    // SAFETY: kqueue has no preconditions; the descriptor is owned below.
    let kq = unsafe { libc::kqueue() };
    if kq < 0 {
        return None;
    }
    // SAFETY: kqueue returned a new descriptor we own.
    let kq = unsafe { OwnedFd::from_raw_fd(kq) };
    // SAFETY: an all-zero kevent is a valid value to fill in.
    let mut change: libc::kevent = unsafe { std::mem::zeroed() };
    change.ident = fd.as_raw_fd() as _;
    change.filter = libc::EVFILT_WRITE;
    change.flags = libc::EV_ADD;
    // SAFETY: as above.
    let mut got: libc::kevent = unsafe { std::mem::zeroed() };
    let zero = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: one change and room for one event; a zero timeout.
    let n = unsafe { libc::kevent(kq.as_raw_fd(), &change, 1, &mut got, 1, &zero) };
    if n < 0 {
        return None;
    }
    if n == 0 {
        // Not writable at all: full.
        return Some(0);
    }
    if got.flags & libc::EV_ERROR != 0 {
        return None;
    }
    Some(got.data.max(0) as usize)
}

/// [`crate::nowait::pipe_room`]: the exact free space (kqueue counts bytes
/// of one ring buffer).
pub fn pipe_room(fd: BorrowedFd<'_>) -> Option<usize> {
    pipe_free_space(fd)
}
