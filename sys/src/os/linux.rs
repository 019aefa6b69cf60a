//! Linux: `pipe2`, `getrandom`, `SO_PASSCRED`, `recvmmsg`, `F_GETPIPE_SZ`,
//! `openat2` with its `RESOLVE_*` flags, `statx`, `preadv2(RWF_NOWAIT)`,
//! `splice`, `sendfile`, `readahead`, `fstatfs` types. The names above the
//! line are the ones every `os/` file exports; below it, Linux's own.

use std::ffi::CStr;
use std::io;
use std::mem::size_of;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use nix::fcntl::OFlag;
use nix::sys::socket::{setsockopt, sockopt};

use crate::beneath::{self, OpenAttempt, Resolve};
use crate::fd::{cvt, cvt_len};
use crate::fsfacts::FsFacts;
use crate::passing::{take_control, PeerCred, Received, RECV_BATCH, RECV_FD_ROOM};

/// `recvmsg` can set close-on-exec on received descriptors itself.
pub const RECV_CLOEXEC: libc::c_int = libc::MSG_CMSG_CLOEXEC;

/// `pipe2(2)` with `O_CLOEXEC`.
pub fn pipe_cloexec() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(nix::unistd::pipe2(OFlag::O_CLOEXEC)?)
}

/// `getrandom(2)` until `b` is full.
pub fn random_bytes(b: &mut [u8]) -> io::Result<()> {
    let mut got = 0;
    while got < b.len() {
        // SAFETY: the buffer is valid for the remaining length.
        let r = unsafe { libc::getrandom(b[got..].as_mut_ptr().cast(), b.len() - got, 0) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        got += r as usize;
    }
    Ok(())
}

/// `SO_PASSCRED` (socket(7)): credentials on every datagram received.
pub fn enable_passcred(sock: BorrowedFd<'_>) -> io::Result<()> {
    setsockopt(&sock, sockopt::PassCred, &true)?;
    Ok(())
}

/// The sender's credentials from an `SCM_CREDENTIALS` control message.
///
/// # Safety
///
/// `data` points at `len` readable bytes of a received control message.
pub unsafe fn credentials(kind: libc::c_int, data: *const u8, len: usize) -> Option<PeerCred> {
    if kind != libc::SCM_CREDENTIALS || len < size_of::<libc::ucred>() {
        return None;
    }
    // SAFETY: the caller vouches for len readable bytes, checked above.
    let c = unsafe { std::ptr::read_unaligned(data as *const libc::ucred) };
    Some(PeerCred {
        pid: c.pid,
        uid: c.uid,
        gid: c.gid,
    })
}

/// Control bytes per datagram of a batch: `SCM_CREDENTIALS` and
/// [`RECV_FD_ROOM`] descriptors.
const fn ctl_len() -> usize {
    // SAFETY: CMSG_SPACE is a pure computation.
    unsafe {
        libc::CMSG_SPACE(size_of::<libc::ucred>() as u32) as usize
            + libc::CMSG_SPACE((RECV_FD_ROOM * size_of::<libc::c_int>()) as u32) as usize
    }
}

/// `recvmmsg(2)` for [`crate::passing::recv_batch`].
pub fn recv_batch(
    sock: BorrowedFd<'_>,
    bufs: &mut [u8],
    buf_len: usize,
    out: &mut Vec<Received>,
) -> io::Result<bool> {
    // Room for the credentials and every descriptor a datagram can carry
    // (`SCM_MAX_FD`), so that the kernel never cuts the control message
    // and releases the extras on this thread (see RECV_FD_ROOM).
    const CTL: usize = ctl_len();
    #[repr(C, align(8))]
    #[derive(Clone, Copy)]
    struct Ctl([u8; CTL]);
    out.clear();
    let mut ctls = [Ctl([0u8; CTL]); RECV_BATCH];
    // SAFETY: all-zero iovecs and mmsghdrs are valid empty values; the
    // pointers are set below.
    let mut iovs: [libc::iovec; RECV_BATCH] = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut hdrs: [libc::mmsghdr; RECV_BATCH] = unsafe { std::mem::zeroed() };
    for (chunk, (iov, (hdr, ctl))) in bufs
        .chunks_exact_mut(buf_len)
        .zip(iovs.iter_mut().zip(hdrs.iter_mut().zip(ctls.iter_mut())))
    {
        iov.iov_base = chunk.as_mut_ptr().cast();
        iov.iov_len = buf_len;
        hdr.msg_hdr.msg_iov = iov;
        hdr.msg_hdr.msg_iovlen = 1;
        hdr.msg_hdr.msg_control = ctl.0.as_mut_ptr().cast();
        hdr.msg_hdr.msg_controllen = ctl.0.len() as _;
    }
    let n = loop {
        // SAFETY: hdrs point at iovs, ctls and bufs, all live for the call
        // and writable for the lengths given.
        let r = unsafe {
            libc::recvmmsg(
                sock.as_raw_fd(),
                hdrs.as_mut_ptr(),
                RECV_BATCH as _,
                (libc::MSG_DONTWAIT | libc::MSG_CMSG_CLOEXEC) as _,
                std::ptr::null_mut(),
            )
        };
        match cvt(r) {
            Ok(r) => break r as usize,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    };
    for h in hdrs.iter().take(n) {
        let msg = &h.msg_hdr;
        let mut rcv = Received {
            len: (h.msg_len as usize).min(buf_len),
            truncated: msg.msg_flags & libc::MSG_TRUNC != 0,
            fds_truncated: msg.msg_flags & libc::MSG_CTRUNC != 0,
            ..Received::default()
        };
        // SAFETY: recvmmsg just filled this header (the kernel updated
        // msg_controllen).
        unsafe { take_control(msg, &mut rcv) };
        out.push(rcv);
    }
    if n == 0 {
        return Err(io::Error::from(io::ErrorKind::WouldBlock));
    }
    Ok(n < RECV_BATCH)
}

/// `F_GETPIPE_SZ` minus `FIONREAD`, for [`crate::nowait::pipe_free_space`].
pub fn pipe_free_space(fd: BorrowedFd<'_>) -> Option<usize> {
    // SAFETY: plain fcntl on a descriptor we borrow.
    let size = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETPIPE_SZ) };
    if size < 0 {
        return None;
    }
    let mut queued: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int through the pointer.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut queued) } < 0 {
        return None;
    }
    Some((size as usize).saturating_sub(queued.max(0) as usize))
}

/// [`crate::nowait::pipe_room`]: `F_GETPIPE_SZ` and `FIONREAD`, in
/// slots ([`crate::nowait::pipe_room_of`]).
pub fn pipe_room(fd: BorrowedFd<'_>) -> Option<usize> {
    // SAFETY: plain fcntl on a descriptor we borrow.
    let size = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETPIPE_SZ) };
    if size < 0 {
        return None;
    }
    let mut queued: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int through the pointer.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut queued) } < 0 {
        return None;
    }
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as usize;
    Some(crate::nowait::pipe_room_of(
        size as usize,
        queued.max(0) as usize,
        page,
    ))
}

/// Whether pipes refused `RWF_NOWAIT` once (a kernel before pipes honoured
/// it): they are not asked again.
static PIPES_REFUSE_NOWAIT: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// [`crate::nowait::write_nowait`]'s per-call form: `pwritev2(2)` at the
/// file's own position with `RWF_NOWAIT`, which fails with `EAGAIN` instead
/// of waiting whatever `O_NONBLOCK` says, or with `EOPNOTSUPP` where the
/// file does not honour it (terminals, most drivers, pipes before Linux
/// 5.x). Only pipes and devices come here.
pub fn write_nowait(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    use std::sync::atomic::Ordering;
    let is_pipe_refused = PIPES_REFUSE_NOWAIT.load(Ordering::Relaxed);
    if is_pipe_refused && crate::fd::fstat(fd).is_ok_and(|st| crate::fd::is_fifo(&st)) {
        return Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP));
    }
    let iov = libc::iovec {
        iov_base: buf.as_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: one iovec describing a live buffer of its length.
    let r = unsafe { libc::pwritev2(fd.as_raw_fd(), &iov, 1, -1, libc::RWF_NOWAIT) };
    let r = cvt_len(r);
    if let Err(e) = &r {
        if e.raw_os_error() == Some(libc::EOPNOTSUPP)
            && !is_pipe_refused
            && crate::fd::fstat(fd).is_ok_and(|st| crate::fd::is_fifo(&st))
        {
            PIPES_REFUSE_NOWAIT.store(true, Ordering::Relaxed);
        }
    }
    r
}

/// `fstatfs(2)`: the filesystem's type (linux/magic.h), and whether its
/// opens never wait ([`opens_never_wait`]).
pub fn filesystem_of(file: BorrowedFd<'_>) -> Option<(u64, bool)> {
    let mut sfs = std::mem::MaybeUninit::<libc::statfs>::zeroed();
    // SAFETY: fstatfs writes one statfs through the pointer.
    if unsafe { libc::fstatfs(file.as_raw_fd(), sfs.as_mut_ptr()) } < 0 {
        return None;
    }
    // SAFETY: written by the successful call (and zeroed before it).
    let magic = unsafe { sfs.assume_init() }.f_type as u32;
    Some((u64::from(magic), opens_never_wait(magic)))
}

/// Whether a filesystem of this `statfs` type (linux/magic.h) answers
/// opens, stats and shared locks from the local kernel and its disks
/// alone. Network filesystems (NFS, CIFS, 9p, Ceph) and FUSE may wait on a
/// server or a daemon for each, and anything unknown counts as such.
pub fn opens_never_wait(magic: u32) -> bool {
    const LOCAL: &[u32] = &[
        0xEF53,      // ext2, ext3, ext4
        0x5846_5342, // xfs
        0x9123_683E, // btrfs
        0x0102_1994, // tmpfs
        0x8584_58F6, // ramfs
        0xF2F5_2010, // f2fs
        0x794C_7630, // overlayfs
        0x7371_7368, // squashfs
        0xE0F5_E1E2, // erofs
        0x9660,      // iso9660
        0x2FC1_2FC1, // zfs
        0xCA45_1A4E, // bcachefs
        0x3153_464A, // jfs
        0x5265_4973, // reiserfs
        0x4D44,      // vfat, msdos
        0x2011_BAB0, // exfat
        0x5346_544E, // ntfs, ntfs3
        0x1501_3346, // udf
        0x3434,      // nilfs2
        0x482B,      // hfsplus
    ];
    LOCAL.contains(&magic)
}

/// The open beneath `root` by `openat2`; `None` where the kernel has no
/// `openat2` (the caller walks).
pub fn open_beneath(
    root: BorrowedFd<'_>,
    path: &CStr,
    how: Resolve,
    facts: &FsFacts,
) -> Option<OpenAttempt> {
    if facts.no_openat2() {
        return None;
    }
    open_by_openat2(root, path, how, facts)
}

/// Opens a regular file beneath `root` with two `openat2` calls: an
/// `O_PATH` one, which opens nothing for reading, so that its type is known
/// first (anything but a regular file is `EINVAL`, and a FIFO is never
/// opened), then the open for reading, with `O_NONBLOCK` so that a FIFO
/// swapped in between cannot block it, kept only if it is the file the
/// first one saw (else the lookup starts again).
///
/// `RESOLVE_BENEATH` alone refuses magic links (`/proc/self/root`) with
/// `EXDEV`, like any escape, and that is what the walk answers for them;
/// `RESOLVE_NO_MAGICLINKS` would make it `ELOOP`, which means a loop.
///
/// With `how.cached_only`, both lookups also carry `RESOLVE_CACHED` (Linux
/// 5.12): the kernel answers `EAGAIN` instead of reading a directory or an
/// inode from disk, or asking a network filesystem to revalidate, and that
/// is [`OpenAttempt::WouldBlock`]. (`EAGAIN` also stands for a rename
/// racing the lookup; the blocking open retries that.) A kernel without the
/// flag answers `EINVAL` for it: remembered, and the lookup is made as
/// before (or, without `how.else_open`, is `WouldBlock`). The look's type
/// and identity then come from [`stat_unsynced`] (no server asked), and a
/// file on a filesystem not known to answer opens locally is `WouldBlock`
/// too: its open, `fstat` and lock may each wait on a server or a FUSE
/// daemon. With `how.same_mount` (`RESOLVE_NO_XDEV`) a path that crosses a
/// mount point is `WouldBlock`; so is any `EXDEV` then, an escape included,
/// for whoever makes the whole open to answer.
fn open_by_openat2(
    root: BorrowedFd<'_>,
    path: &CStr,
    how: Resolve,
    facts: &FsFacts,
) -> Option<OpenAttempt> {
    let path = match beneath::check_request(path) {
        Ok(p) => p,
        Err(e) => return Some(OpenAttempt::Done(Err(e))),
    };
    let cached = how.cached_only && !facts.no_resolve_cached();
    if how.cached_only && !cached && !how.else_open {
        return Some(OpenAttempt::WouldBlock);
    }
    let resolve = libc::RESOLVE_BENEATH
        | if cached { libc::RESOLVE_CACHED } else { 0 }
        | if how.same_mount {
            libc::RESOLVE_NO_XDEV
        } else {
            0
        };
    let look = OpenHow {
        flags: (libc::O_PATH | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve,
    };
    let read = OpenHow {
        flags: beneath::OPEN_FLAGS as u64,
        ..look
    };
    let done = |r| Some(OpenAttempt::Done(r));
    let would_block = |e: &io::Error| match e.raw_os_error() {
        Some(libc::EAGAIN) => cached,
        Some(libc::EXDEV) => how.same_mount,
        _ => false,
    };
    // EAGAIN: a rename or mount raced with the lookup; the kernel asks
    // for a retry. Bounded, so a hostile renamer cannot keep us here.
    for _ in 0..16 {
        let seen = match openat2(root, path, &look) {
            Ok(fd) if cached => match stat_unsynced(fd.as_fd()) {
                Ok(st) if !facts.opens_never_wait(st.st_dev) => {
                    return Some(OpenAttempt::WouldBlock)
                }
                Ok(st) => st,
                Err(e) => return done(Err(e)),
            },
            Ok(fd) => match crate::fd::fstat(fd.as_fd()) {
                Ok(st) => st,
                Err(e) => return done(Err(e)),
            },
            Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
                facts.set_no_openat2();
                return None;
            }
            Err(e) if cached && e.raw_os_error() == Some(libc::EINVAL) => {
                facts.set_no_resolve_cached();
                return open_by_openat2(root, path, how, facts);
            }
            Err(e) if would_block(&e) => return Some(OpenAttempt::WouldBlock),
            Err(e) if retry(&e) => continue,
            Err(e) => return done(Err(e)),
        };
        if !crate::fd::is_regular(&seen) {
            return done(Err(io::Error::from_raw_os_error(libc::EINVAL)));
        }
        let fd = match openat2(root, path, &read) {
            Ok(fd) => fd,
            Err(e) if would_block(&e) => return Some(OpenAttempt::WouldBlock),
            // A socket swapped in since the look.
            Err(e) if retry(&e) || e.raw_os_error() == Some(libc::ENXIO) => continue,
            Err(e) => return done(Err(e)),
        };
        match crate::fd::fstat(fd.as_fd()) {
            Ok(got) if beneath::same_file(&seen, &got) => {
                if !cached {
                    facts.learn_filesystem(fd.as_fd(), got.st_dev);
                }
                // A local filesystem's regular files ignore O_NONBLOCK
                // (reads, sendfile and splice from them never say EAGAIN
                // for it), so the flag stays and costs no call. Elsewhere
                // (FUSE passes it to its daemon with every read, procfs and
                // tracefs files honour it) one ioctl clears it, where the
                // walk's finish_open uses fcntl F_GETFL + F_SETFL.
                if facts.opens_never_wait(got.st_dev) {
                    return done(Ok((fd, got)));
                }
                return done(beneath::finish_open(fd).map(|fd| (fd, got)));
            }
            // Another file was put there between the two opens.
            Ok(_) => continue,
            Err(e) => return done(Err(e)),
        }
    }
    done(Err(io::Error::from_raw_os_error(libc::EAGAIN)))
}

// ----- Linux's own ---------------------------------------------------------

/// `splice(2)` of up to `len` bytes from `file` at `*offset` (advanced by the
/// kernel) into the pipe `pipe`.
pub fn splice(
    file: BorrowedFd<'_>,
    offset: &mut i64,
    pipe: BorrowedFd<'_>,
    len: usize,
    flags: libc::c_uint,
) -> io::Result<usize> {
    // SAFETY: offset is a valid loff_t for the call; no output offset (pipe).
    cvt_len(unsafe {
        libc::splice(
            file.as_raw_fd(),
            offset,
            pipe.as_raw_fd(),
            std::ptr::null_mut(),
            len,
            flags,
        )
    })
}

/// `sendfile(2)` of up to `len` bytes of `file` at `*offset` (advanced by the
/// kernel) to `out`.
pub fn sendfile(
    out: BorrowedFd<'_>,
    file: BorrowedFd<'_>,
    offset: &mut i64,
    len: usize,
) -> io::Result<usize> {
    // SAFETY: offset is a valid off_t for the call.
    cvt_len(unsafe { libc::sendfile(out.as_raw_fd(), file.as_raw_fd(), offset, len) })
}

cfg_if::cfg_if! {
    // `cachestat(2)`'s system call number: 451 wherever the kernel has the
    // unified table of new calls (no libc wrapper, and libc names it for
    // few architectures). Elsewhere the probe does without it.
    if #[cfg(any(
        target_arch = "x86_64",
        target_arch = "x86",
        target_arch = "aarch64",
        target_arch = "arm",
        target_arch = "riscv64",
        target_arch = "loongarch64",
        target_arch = "powerpc64",
        target_arch = "s390x"
    ))] {
        const SYS_CACHESTAT: Option<libc::c_long> = Some(451);
    } else {
        const SYS_CACHESTAT: Option<libc::c_long> = None;
    }
}

/// `struct cachestat_range` of `<linux/mman.h>`.
#[repr(C)]
struct CachestatRange {
    off: u64,
    len: u64,
}

/// `struct cachestat` of `<linux/mman.h>`: page counts over the range.
#[repr(C)]
#[derive(Default)]
struct Cachestat {
    nr_cache: u64,
    nr_dirty: u64,
    nr_writeback: u64,
    nr_evicted: u64,
    nr_recently_evicted: u64,
}

/// `cachestat(2)` (Linux 6.5): how many of the pages holding `len` bytes of
/// `file` at `offset` are in the page cache, with the pages those bytes
/// span, answered from the cache's index without reading anything
/// (`len` > 0). `ENOSYS` before 6.5 or where the number is unknown here;
/// `EOPNOTSUPP` for hugetlbfs.
pub fn cachestat(file: BorrowedFd<'_>, offset: u64, len: u64) -> io::Result<(u64, u64)> {
    let Some(nr) = SYS_CACHESTAT else {
        return Err(io::Error::from_raw_os_error(libc::ENOSYS));
    };
    let range = CachestatRange { off: offset, len };
    let mut cs = Cachestat::default();
    // SAFETY: range and cs are the structs the call reads and fills, alive
    // for the call; flags must be 0.
    let r = unsafe {
        libc::syscall(
            nr,
            file.as_raw_fd(),
            &range as *const CachestatRange,
            &mut cs as *mut Cachestat,
            0 as libc::c_uint,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // The kernel counts whole pages from the one holding `offset` to the
    // one holding the range's last byte.
    // SAFETY: sysconf has no preconditions.
    let page = match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        n if n > 0 => n as u64,
        _ => 4096,
    };
    let last = offset.saturating_add(len - 1);
    Ok((cs.nr_cache, last / page - offset / page + 1))
}

/// `preadv2(2)` with `RWF_NOWAIT`: reads only what is in the page cache,
/// `EAGAIN` otherwise.
pub fn preadv2_nowait(file: BorrowedFd<'_>, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: iov describes buf, which is writable for its length.
    cvt_len(unsafe {
        libc::preadv2(
            file.as_raw_fd(),
            &iov,
            1,
            offset_of(offset)?,
            libc::RWF_NOWAIT,
        )
    })
}

/// `struct open_how` of `<linux/openat2.h>` (version 0, 24 bytes). Defined
/// here because the `libc` one cannot be built outside `libc`
/// (`#[non_exhaustive]`).
#[repr(C)]
#[derive(Debug)]
pub struct OpenHow {
    /// `O_*` flags.
    pub flags: u64,
    /// File mode for `O_CREAT`.
    pub mode: u64,
    /// `RESOLVE_*` flags.
    pub resolve: u64,
}

/// `openat2(2)`, called by number: glibc has no wrapper.
pub fn openat2(dir: BorrowedFd<'_>, path: &CStr, how: &OpenHow) -> io::Result<OwnedFd> {
    // SAFETY: path is NUL-terminated and how is a valid open_how of the size
    // we pass.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            path.as_ptr(),
            how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: openat2 returned a new descriptor we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) })
}

/// `readahead(2)`: queues reads of the range into the page cache.
pub fn readahead(file: BorrowedFd<'_>, offset: i64, len: usize) -> io::Result<()> {
    // SAFETY: plain call on a descriptor we borrow.
    cvt(unsafe { libc::readahead(file.as_raw_fd(), offset, len) } as i64)?;
    Ok(())
}

/// `statx(2)` of the descriptor itself with `AT_STATX_DONT_SYNC`: its
/// `stat` as the kernel holds it, without asking a network filesystem's
/// server or a FUSE daemon to revalidate (as `fstat` may). Type and
/// identity (`st_mode`'s type bits, `st_dev`, `st_ino`) never change, so
/// they are always true; the rest (size, times, owner) is exact on a local
/// filesystem and may be stale on one whose server holds the truth.
pub fn stat_unsynced(fd: BorrowedFd<'_>) -> io::Result<libc::stat> {
    let mut sx = std::mem::MaybeUninit::<libc::statx>::zeroed();
    // SAFETY: the path is a NUL-terminated empty string (AT_EMPTY_PATH:
    // the descriptor itself); statx writes one statx through the pointer.
    let r = unsafe {
        libc::statx(
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_STATX_DONT_SYNC,
            libc::STATX_BASIC_STATS,
            sx.as_mut_ptr(),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: written by the successful call (and zeroed before it).
    let sx = unsafe { sx.assume_init() };
    // SAFETY: an all-zero stat is a valid value.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    st.st_dev = libc::makedev(sx.stx_dev_major, sx.stx_dev_minor);
    st.st_ino = sx.stx_ino as libc::ino_t;
    st.st_mode = libc::mode_t::from(sx.stx_mode);
    st.st_nlink = sx.stx_nlink as libc::nlink_t;
    st.st_uid = sx.stx_uid;
    st.st_gid = sx.stx_gid;
    st.st_rdev = libc::makedev(sx.stx_rdev_major, sx.stx_rdev_minor);
    st.st_size = sx.stx_size as libc::off_t;
    st.st_blksize = sx.stx_blksize as libc::blksize_t;
    st.st_blocks = sx.stx_blocks as libc::blkcnt_t;
    st.st_atime = sx.stx_atime.tv_sec as libc::time_t;
    st.st_atime_nsec = i64::from(sx.stx_atime.tv_nsec) as _;
    st.st_mtime = sx.stx_mtime.tv_sec as libc::time_t;
    st.st_mtime_nsec = i64::from(sx.stx_mtime.tv_nsec) as _;
    st.st_ctime = sx.stx_ctime.tv_sec as libc::time_t;
    st.st_ctime_nsec = i64::from(sx.stx_ctime.tv_nsec) as _;
    Ok(st)
}

/// [`crate::fd::stat_cached`]: [`stat_unsynced`].
pub fn stat_cached(fd: BorrowedFd<'_>) -> io::Result<libc::stat> {
    stat_unsynced(fd)
}

/// Whether an `openat2` error asks for the call again.
fn retry(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::EAGAIN) || e.kind() == io::ErrorKind::Interrupted
}

fn offset_of(offset: u64) -> io::Result<i64> {
    i64::try_from(offset).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// [`crate::cache::read_cached`]: `preadv2(RWF_NOWAIT)`.
pub fn read_cached(file: BorrowedFd<'_>, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    preadv2_nowait(file, buf, offset)
}

/// [`crate::cache::cached_pages`]: [`cachestat`].
pub fn cached_pages(file: BorrowedFd<'_>, offset: u64, len: u64) -> io::Result<(u64, u64)> {
    cachestat(file, offset, len)
}

/// [`crate::nowait::file_to_pipe_nowait`]: `splice(2)` with
/// `SPLICE_F_NONBLOCK`, which makes the pipe side non-blocking for this call.
pub fn file_to_pipe_nowait(
    file: BorrowedFd<'_>,
    offset: &mut u64,
    pipe: BorrowedFd<'_>,
    len: usize,
) -> io::Result<usize> {
    let mut off = offset_of(*offset)?;
    let n = splice(file, &mut off, pipe, len, libc::SPLICE_F_NONBLOCK)?;
    *offset += n as u64;
    Ok(n)
}

/// `fcntl(F_SETPIPE_SZ)`: asks for a pipe of at least `bytes`; the
/// kernel's answer (it rounds up to pages; `EPERM` past the user's pipe
/// pages).
pub fn set_pipe_size(pipe: BorrowedFd<'_>, bytes: usize) -> io::Result<usize> {
    let want = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: plain fcntl on a descriptor we borrow.
    cvt(unsafe { libc::fcntl(pipe.as_raw_fd(), libc::F_SETPIPE_SZ, want) }).map(|n| n as usize)
}

/// [`crate::nowait::file_to_socket_nowait`]: `sendfile(2)`.
pub fn file_to_socket_nowait(
    file: BorrowedFd<'_>,
    offset: &mut i64,
    sock: BorrowedFd<'_>,
    len: usize,
) -> io::Result<usize> {
    sendfile(sock, file, offset, len)
}
