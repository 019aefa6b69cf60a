//! Thin system-call helpers for the benchmark (Linux).

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use sendfiled_client::protocol::Response;

use sendfiled_sys::{cvt, cvt_len};

/// Whether the small Sends' destinations keep `O_NONBLOCK` clear
/// (`--blocking-dests`). Set once, before any figure runs.
static BLOCKING_DESTS: AtomicBool = AtomicBool::new(false);

/// `--blocking-dests`: the small Sends' destinations stay blocking.
pub fn set_blocking_dests(blocking: bool) {
    BLOCKING_DESTS.store(blocking, Ordering::Relaxed);
}

/// Whether the small Sends' destinations are blocking this run.
pub fn blocking_dests() -> bool {
    BLOCKING_DESTS.load(Ordering::Relaxed)
}

/// The destination of one small-file client, for every contender alike
/// (daemon, inline first, pool, in-process, the ceiling's servers): a UNIX
/// stream pair (sending end, reading end) whose sending end is
/// non-blocking, as an event-driven server's sockets are, unless
/// `--blocking-dests`. Its buffer holds a whole small file, so no
/// contender's `sendfile` meets `EAGAIN`. A blocking destination keeps the
/// in-process attempt from `sendfile` (it could wait): the file crosses a
/// buffer in the client.
pub fn small_dest_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let (w, r) = unix_stream_pair()?;
    if !blocking_dests() {
        sendfiled_sys::set_nonblocking(w.as_fd(), true)?;
    }
    Ok((w, r))
}

/// A pipe, both ends close-on-exec: (read end, write end).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    sendfiled_sys::pipe()
}

/// A connected pair of UNIX stream sockets.
pub fn unix_stream_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds has room for two descriptors.
    cvt(unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    })?;
    // SAFETY: socketpair returned two new descriptors we now own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// A connected TCP loopback pair: (sending end, receiving end).
pub fn tcp_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    let c = TcpStream::connect(l.local_addr()?)?;
    let (s, _) = l.accept()?;
    c.set_nodelay(true)?;
    Ok((OwnedFd::from(c), OwnedFd::from(s)))
}

/// `read(2)`, retrying `EINTR`.
pub fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: buf is writable for its length.
        let r = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        match cvt_len(r) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// Reads (and discards) until `total` bytes came or end of file; returns the
/// bytes read.
pub fn drain(fd: BorrowedFd<'_>, total: u64, buf: &mut [u8]) -> io::Result<u64> {
    let mut got = 0u64;
    while got < total {
        let want = buf.len().min((total - got) as usize);
        let n = read(fd, &mut buf[..want])?;
        if n == 0 {
            break;
        }
        got += n as u64;
    }
    Ok(got)
}

/// `fcntl(2)` `F_SETPIPE_SZ`: asks for a pipe of `bytes`; a refusal
/// (`EPERM` past the user's pipe pages) leaves the pipe as it was, as it
/// does in the daemon.
pub fn grow_pipe(pipe: BorrowedFd<'_>, bytes: libc::c_int) {
    // SAFETY: plain fcntl on a borrowed descriptor.
    let _ = unsafe { libc::fcntl(pipe.as_raw_fd(), libc::F_SETPIPE_SZ, bytes) };
}

/// `splice(2)` of `len` bytes of `file` from offset 0 into the (blocking)
/// pipe `pipe`.
pub fn splice_all(file: BorrowedFd<'_>, pipe: BorrowedFd<'_>, len: u64) -> io::Result<()> {
    let mut off: libc::loff_t = 0;
    while (off as u64) < len {
        let want = ((len - off as u64) as usize).min(1 << 20);
        // SAFETY: off is a valid loff_t; the pipe side has no offset.
        let r = unsafe {
            libc::splice(
                file.as_raw_fd(),
                &mut off,
                pipe.as_raw_fd(),
                std::ptr::null_mut(),
                want,
                libc::SPLICE_F_MOVE,
            )
        };
        match cvt_len(r) {
            Ok(0) => return Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// `sendfile(2)` of `len` bytes of `file` from offset 0 to the (blocking)
/// `dest`.
pub fn sendfile_all(file: BorrowedFd<'_>, dest: BorrowedFd<'_>, len: u64) -> io::Result<()> {
    let mut off: libc::off_t = 0;
    while (off as u64) < len {
        let want = ((len - off as u64) as usize).min(1 << 30);
        // SAFETY: off is a valid off_t.
        let r = unsafe { libc::sendfile(dest.as_raw_fd(), file.as_raw_fd(), &mut off, want) };
        match cvt_len(r) {
            Ok(0) => return Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A `read`/`write` loop of `len` bytes of `file` to `dest` through `buf`.
pub fn copy_rw(
    file: BorrowedFd<'_>,
    dest: BorrowedFd<'_>,
    len: u64,
    buf: &mut [u8],
) -> io::Result<()> {
    let mut done = 0u64;
    while done < len {
        let want = buf.len().min((len - done) as usize);
        let n = read(file, &mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
        }
        let mut w = 0;
        while w < n {
            // SAFETY: buf[w..n] is initialised and readable.
            let r = unsafe { libc::write(dest.as_raw_fd(), buf[w..n].as_ptr().cast(), n - w) };
            match cvt_len(r) {
                Ok(k) => w += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        done += n as u64;
    }
    Ok(())
}

/// Opens `path` read-only (the in-process reference's `open`).
pub fn open_ro(path: &CString) -> io::Result<OwnedFd> {
    // SAFETY: path is NUL-terminated.
    let fd = cvt(unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) })?;
    // SAFETY: open returned a new descriptor we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `fstat(2)`; returns the size.
pub fn fstat_size(fd: BorrowedFd<'_>) -> io::Result<u64> {
    Ok(sendfiled_sys::fstat(fd)?.st_size as u64)
}

/// The path as a C string.
pub fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("path without NUL")
}

/// Writes back and drops `file`'s cached pages: `fsync` then
/// `posix_fadvise(POSIX_FADV_DONTNEED)`.
pub fn evict(file: &File) -> io::Result<()> {
    file.sync_all()?;
    // SAFETY: plain call on a descriptor we borrow.
    let r = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    if r != 0 {
        return Err(io::Error::from_raw_os_error(r));
    }
    Ok(())
}

/// The fraction of `file`'s first `len` bytes resident in the page cache
/// (`mmap` + `mincore`).
pub fn resident_fraction(file: &File, len: u64) -> io::Result<f64> {
    if len == 0 {
        return Ok(1.0);
    }
    let page = 4096usize;
    let len = len as usize;
    // SAFETY: a fresh shared read-only mapping of an open file; unmapped below.
    let addr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        )
    };
    if addr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    let pages = len.div_ceil(page);
    let mut vec = vec![0u8; pages];
    // SAFETY: addr..addr+len is our mapping; vec has one byte per page.
    let r = unsafe { libc::mincore(addr, len, vec.as_mut_ptr()) };
    let err = io::Error::last_os_error();
    // SAFETY: unmapping the mapping made above.
    unsafe { libc::munmap(addr, len) };
    if r < 0 {
        return Err(err);
    }
    let resident = vec.iter().filter(|&&b| b & 1 != 0).count();
    Ok(resident as f64 / pages as f64)
}

/// `statfs(2)` of `path`: (filesystem type magic, free bytes).
pub fn statfs(path: &Path) -> io::Result<(i64, u64)> {
    let c = cpath(path);
    // SAFETY: zeroed statfs is a valid out buffer.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: c is NUL-terminated and st is writable.
    cvt(unsafe { libc::statfs(c.as_ptr(), &mut st) })?;
    Ok((st.f_type as i64, st.f_bavail as u64 * st.f_bsize as u64))
}

/// A name for a filesystem magic number (the common ones).
pub fn fs_name(magic: i64) -> String {
    match magic {
        0xEF53 => "ext4 (or ext2/3)".into(),
        0x5846_5342 => "xfs".into(),
        0x9123_683E => "btrfs".into(),
        0x0102_1994 => "tmpfs".into(),
        0x8584_58f6 => "ramfs".into(),
        0x794c_7630 => "overlayfs".into(),
        0x2FC1_2FC1 => "zfs".into(),
        0x6969 => "nfs".into(),
        other => format!("magic {other:#x}"),
    }
}

/// Whether pages of files on this filesystem can be evicted (not memory-only).
pub fn fs_can_evict(magic: i64) -> bool {
    !matches!(magic, 0x0102_1994 | 0x8584_58f6)
}

/// Raises the soft descriptor limit to the hard one (children inherit it).
pub fn raise_nofile() -> io::Result<u64> {
    // SAFETY: zeroed rlimit is a valid out buffer.
    let mut rl: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: rl is writable.
    cvt(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) })?;
    rl.rlim_cur = rl.rlim_max;
    // SAFETY: rl is a valid limit.
    cvt(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &rl) })?;
    Ok(rl.rlim_cur)
}

/// `VmRSS` of a process, in KiB.
pub fn vm_rss_kib(pid: i32) -> io::Result<u64> {
    status_kib(pid, "VmRSS:")
}

/// `RssAnon` of a process, in KiB: its private memory, without the code
/// pages it shares with every other process through the page cache.
pub fn rss_anon_kib(pid: i32) -> io::Result<u64> {
    status_kib(pid, "RssAnon:")
}

fn status_kib(pid: i32, field: &str) -> io::Result<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    s.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidData))
}

/// The 1-minute load average, as `/proc/loadavg` has it.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// What a status channel said.
#[derive(Debug, Default, Clone, Copy)]
pub struct Outcome {
    /// Transfer id from the file info.
    pub txnid: Option<u64>,
    /// Size from the file info.
    pub size: Option<u64>,
    /// Sum of progress messages.
    pub progress: u64,
    /// The completion message came.
    pub complete: bool,
    /// An error message came.
    pub error: Option<i32>,
}

/// Reads a status channel until completion, error or end of file (or, with
/// `until_info`, until the file info), parsing every message that arrived in
/// each `read` (the daemon writes info, progress and completion at once).
pub fn wait_status(fd: BorrowedFd<'_>, until_info: bool) -> io::Result<Outcome> {
    let mut out = Outcome::default();
    let mut buf = [0u8; 1024];
    let mut have = 0usize;
    loop {
        let n = read(fd, &mut buf[have..])?;
        if n == 0 {
            return Ok(out);
        }
        have += n;
        let mut at = 0;
        while have - at >= 2 {
            let len = Response::len_from_header(buf[at], buf[at + 1])
                .ok_or_else(|| io::Error::from_raw_os_error(libc::EPROTO))?;
            if have - at < len {
                break;
            }
            match Response::decode(&buf[at..at + len]) {
                Some(Response::FileInfo(fi)) => {
                    out.txnid = Some(fi.txnid as u64);
                    out.size = Some(fi.size as u64);
                }
                Some(Response::Progress(p)) => out.progress += p as u64,
                Some(Response::Complete) => out.complete = true,
                Some(Response::Error { errno, .. }) => out.error = Some(errno),
                _ => return Err(io::Error::from_raw_os_error(libc::EPROTO)),
            }
            at += len;
            if out.complete || out.error.is_some() || (until_info && out.txnid.is_some()) {
                return Ok(out);
            }
        }
        buf.copy_within(at..have, 0);
        have -= at;
    }
}

/// A new eventfd (counter 0, blocking, close-on-exec).
pub fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: plain call; the result is a new descriptor.
    let fd = cvt(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) })?;
    // SAFETY: eventfd returned a new descriptor we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Adds `n` to an eventfd's counter.
pub fn eventfd_add(fd: BorrowedFd<'_>, n: u64) -> io::Result<()> {
    let b = n.to_ne_bytes();
    loop {
        // SAFETY: b is 8 readable bytes.
        let r = unsafe { libc::write(fd.as_raw_fd(), b.as_ptr().cast(), 8) };
        match cvt_len(r) {
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Reads (and so resets) an eventfd's counter.
pub fn eventfd_take(fd: BorrowedFd<'_>) -> io::Result<u64> {
    let mut b = [0u8; 8];
    if read(fd, &mut b)? != 8 {
        return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
    }
    Ok(u64::from_ne_bytes(b))
}

/// `poll(2)` for `POLLIN` on one descriptor, without a timeout.
pub fn poll_in(fd: BorrowedFd<'_>) -> io::Result<()> {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        // SAFETY: p is one valid pollfd.
        match cvt(unsafe { libc::poll(&mut p, 1, -1) }) {
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// CPU time of the calling thread, in nanoseconds.
pub fn thread_cpu_ns() -> u64 {
    // SAFETY: zeroed timespec is a valid out buffer.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: ts is writable.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// A process's user and system CPU time (all its threads), in microseconds,
/// from `utime` and `stime` of `/proc/PID/stat` (clock-tick resolution).
pub fn proc_cpu_us(pid: i32) -> io::Result<(f64, f64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The fields after the command name, which is in parentheses and may
    // itself hold spaces or parentheses: the first is field 3 (state).
    let rest = s
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidData))?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| -> io::Result<f64> {
        f.get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .map(|t| t as f64)
            .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidData))
    };
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    // utime is field 14, stime field 15.
    Ok((tick(11)? * 1e6 / hz, tick(12)? * 1e6 / hz))
}

/// `syscr` + `syscw` of `/proc/PID/io`: the process's read-family and
/// write-family system calls (`read`, `readv`, `pread64`, `preadv`, `write`,
/// ...; `sendfile` counts once in each), not `recvmmsg`, `splice`, `epoll`,
/// `open` or `close`.
pub fn proc_rw_calls(pid: i32) -> io::Result<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/io"))?;
    let field = |name: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidData))
    };
    Ok(field("syscr:")? + field("syscw:")?)
}

/// Context switches of every thread of a process so far (voluntary: it
/// waited; involuntary: it was preempted), from `/proc/PID/task/*/status`.
pub fn ctx_switches(pid: i32) -> io::Result<(u64, u64)> {
    let mut total = (0, 0);
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let Ok(s) = std::fs::read_to_string(t?.path().join("status")) else {
            continue; // the thread ended meanwhile
        };
        let field = |name: &str| {
            s.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0)
        };
        total.0 += field("voluntary_ctxt_switches:");
        total.1 += field("nonvoluntary_ctxt_switches:");
    }
    Ok(total)
}
