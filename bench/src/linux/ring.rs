//! The `ring` figure: what the per-request steps that the io_uring engine
//! leaves as system calls would cost as ring operations, measured
//! in-process, one request at a time, against the calls the daemon makes
//! now. It answers issue 14's question "would moving the open, the stat and
//! the data into the ring pay?" with a measurement instead of an estimate.
//!
//! This file may use io_uring and the bench's own files only; no daemon.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::Instant;

use io_uring::{opcode, squeue, types, IoUring};

use super::report::{Goal, Report};
use super::stats::quantile_us;
use super::{os, Files, Plan};

const LEN: usize = 4096;

/// One timed step: nanoseconds per repetition, sorted.
fn time_n(n: usize, mut step: impl FnMut() -> io::Result<()>) -> io::Result<Vec<u64>> {
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        step()?;
        lat.push(t.elapsed().as_nanos() as u64);
    }
    lat.sort_unstable();
    Ok(lat)
}

fn cvt(r: libc::ssize_t) -> io::Result<usize> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// Submits what is queued, waits for `n` completions and checks them.
fn complete(ring: &mut IoUring, n: usize) -> io::Result<()> {
    ring.submitter().submit_and_wait(n)?;
    let mut got = 0;
    for cqe in ring.completion() {
        if cqe.result() < 0 {
            return Err(io::Error::from_raw_os_error(-cqe.result()));
        }
        got += 1;
    }
    if got == n {
        Ok(())
    } else {
        Err(io::Error::other(format!("{got} of {n} completions")))
    }
}

/// Reads back what a step sent, untimed, so the socket never fills.
fn drain(peer: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<()> {
    let mut left = LEN;
    while left > 0 {
        left -= os::read(peer, &mut buf[..left])?;
    }
    Ok(())
}

/// The four pairs, each p50 of the ring form against the system calls.
pub fn ring_ops(plan: &Plan, files: &Files, report: &mut Report) -> io::Result<()> {
    let n = if plan.quick { 2_000 } else { 50_000 };
    let mut ring = IoUring::builder()
        .setup_coop_taskrun()
        .setup_taskrun_flag()
        .build(8)?;
    let path = os::cpath(&files.path(Files::SMALL_4K));
    let file = os::open_ro(&path)?;
    let (dest, peer) = os::unix_stream_pair()?;
    let mut back = vec![0u8; LEN];
    let mut buf = vec![0u8; LEN];
    println!(
        "ring: {n} x each step in-process, one at a time (4 KiB file, UNIX stream socket): \
         system calls, then the same as io_uring operations"
    );

    // The data: cache probe + sendfile, against READ linked to SEND.
    let mut probe_byte = [0u8; 1];
    let mut sync_data = Vec::with_capacity(n);
    let mut ring_data = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let iov = libc::iovec {
            iov_base: probe_byte.as_mut_ptr().cast(),
            iov_len: 1,
        };
        // SAFETY: one live 1-byte buffer; the descriptors are open.
        cvt(unsafe { libc::preadv2(file.as_raw_fd(), &iov, 1, 0, libc::RWF_NOWAIT) })?;
        let mut off: libc::off_t = 0;
        // SAFETY: plain sendfile(2) between open descriptors.
        cvt(unsafe { libc::sendfile(dest.as_raw_fd(), file.as_raw_fd(), &mut off, LEN) })?;
        sync_data.push(t.elapsed().as_nanos() as u64);
        drain(peer.as_fd(), &mut back)?;

        let t = Instant::now();
        let read = opcode::Read::new(types::Fd(file.as_raw_fd()), buf.as_mut_ptr(), LEN as u32)
            .offset(0)
            .build()
            .flags(squeue::Flags::IO_LINK)
            .user_data(1);
        let send = opcode::Send::new(types::Fd(dest.as_raw_fd()), buf.as_ptr(), LEN as u32)
            .build()
            .user_data(2);
        // SAFETY: `buf` outlives both operations: `complete` waits for them.
        unsafe {
            let mut sq = ring.submission();
            sq.push(&read).map_err(|_| io::Error::other("queue full"))?;
            sq.push(&send).map_err(|_| io::Error::other("queue full"))?;
        }
        complete(&mut ring, 2)?;
        ring_data.push(t.elapsed().as_nanos() as u64);
        drain(peer.as_fd(), &mut back)?;
    }
    sync_data.sort_unstable();
    ring_data.sort_unstable();

    // The stat: fstat against IORING_OP_STATX of the open descriptor.
    let sync_stat = time_n(n, || {
        os::fstat_size(file.as_fd())?;
        Ok(())
    })?;
    let empty = c"";
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    let ring_stat = time_n(n, || {
        let e = opcode::Statx::new(
            types::Fd(file.as_raw_fd()),
            empty.as_ptr(),
            (&mut stx as *mut libc::statx).cast(),
        )
        .flags(libc::AT_EMPTY_PATH)
        .mask(libc::STATX_BASIC_STATS)
        .build()
        .user_data(3);
        // SAFETY: the path and the statx buffer outlive the operation.
        unsafe { ring.submission().push(&e) }.map_err(|_| io::Error::other("queue full"))?;
        complete(&mut ring, 1)
    })?;

    // The open: openat2 against IORING_OP_OPENAT2 (the close untimed).
    let how = types::OpenHow::new().flags((libc::O_RDONLY | libc::O_CLOEXEC) as u64);
    let mut sync_open = Vec::with_capacity(n);
    let mut ring_open = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let f = os::open_ro(&path)?;
        sync_open.push(t.elapsed().as_nanos() as u64);
        drop(f);
        let t = Instant::now();
        let e = opcode::OpenAt2::new(types::Fd(libc::AT_FDCWD), path.as_ptr(), &how)
            .build()
            .user_data(4);
        // SAFETY: the path and `how` outlive the operation.
        unsafe { ring.submission().push(&e) }.map_err(|_| io::Error::other("queue full"))?;
        ring.submitter().submit_and_wait(1)?;
        let fd = ring
            .completion()
            .next()
            .map(|c| c.result())
            .ok_or_else(|| io::Error::other("no completion"))?;
        if fd < 0 {
            return Err(io::Error::from_raw_os_error(-fd));
        }
        ring_open.push(t.elapsed().as_nanos() as u64);
        // SAFETY: the ring opened it for us; nobody else owns it.
        drop(unsafe { OwnedFd::from_raw_fd(fd) });
    }
    sync_open.sort_unstable();
    ring_open.sort_unstable();

    for (what, sync, ring) in [
        (
            "data: cache probe + sendfile vs READ linked to SEND",
            &sync_data,
            &ring_data,
        ),
        ("stat: fstat vs IORING_OP_STATX", &sync_stat, &ring_stat),
        ("open: openat vs IORING_OP_OPENAT2", &sync_open, &ring_open),
    ] {
        let (s, r) = (quantile_us(sync, 0.5), quantile_us(ring, 0.5));
        report.row(
            format!("ring, in-process, 4 KiB: {what}: ring p50 (µs)"),
            None,
            r,
            Some((s, "system calls")),
            Some(r / s),
            Goal::None,
        );
    }
    Ok(())
}
