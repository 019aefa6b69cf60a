//! The page-cache probe: whether reading a file's range now would wait for
//! the disk, asked without waiting (`preadv2(2)` with `RWF_NOWAIT` on Linux;
//! other systems have no such read and answer [`Residency::Unknown`]).

use std::io;
use std::os::fd::BorrowedFd;

use crate::fsfacts::FsFacts;

/// What the probe found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Residency {
    /// Both ends of the range are in memory (or the range is empty).
    Cached,
    /// A read would wait for the disk; the kernel has started reading the
    /// page in (readahead) before it answered.
    NotCached,
    /// The system or this filesystem cannot tell (no `RWF_NOWAIT`: tmpfs,
    /// some network filesystems, kernels before 4.14, BSD, macOS).
    Unknown,
}

/// `preadv2(2)` with `RWF_NOWAIT`: reads what the page cache holds of
/// `buf.len()` bytes at `offset`, `EAGAIN` if the first page is not there;
/// a short count where the cached part ends. `EOPNOTSUPP` from a filesystem
/// that cannot tell, `ENOSYS` where the system has no such read.
pub fn read_cached(file: BorrowedFd<'_>, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    crate::os::read_cached(file, buf, offset)
}

/// Whether `len` bytes of `file` at `offset` are in the page cache, probed
/// with two one-byte [`read_cached`] reads: at the range's first byte and at
/// its last.
///
/// `RWF_NOWAIT` answers for the pages it would read, so one byte only
/// speaks for the first page. The two ends catch the common cases: a cold
/// file (nothing cached) and a file read partway (cached prefix, the
/// boundary falls inside the range). A hole in the middle (a page evicted
/// on its own) is missed; probing every page would cost a system call per
/// page. (`cachestat(2)`, Linux 6.5, could answer for the whole range.)
///
/// Support is a fact about a filesystem: one that answers `EOPNOTSUPP` is
/// remembered in `facts` by `st_dev` and its files are not probed again
/// (one tmpfs under the root must not switch the probe off for the disk
/// next to it). Only a kernel without the call or the flag (`ENOSYS`,
/// `EINVAL`) stops probing everywhere. While no filesystem has refused, a
/// probe costs no more than the reads; once one has, each probe first asks
/// `fstat` for the file's device.
pub fn probe(
    file: BorrowedFd<'_>,
    offset: u64,
    len: usize,
    facts: &FsFacts,
) -> io::Result<Residency> {
    if len == 0 {
        return Ok(Residency::Cached);
    }
    if facts.no_nowait() {
        return Ok(Residency::Unknown);
    }
    if facts.any_nowait_refused() {
        if let Ok(st) = crate::fd::fstat(file) {
            if facts.nowait_refused(st.st_dev) {
                return Ok(Residency::Unknown);
            }
        }
    }
    let first = offset;
    let last = first.saturating_add(len as u64 - 1);
    let probes = if first / 4096 == last / 4096 {
        &[first][..]
    } else {
        &[first, last][..]
    };
    for &at in probes {
        let mut byte = [0u8; 1];
        match read_cached(file, &mut byte, at) {
            // 0 is the end of the file: nothing there to wait for.
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Residency::NotCached),
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
                let st = crate::fd::fstat(file)?;
                facts.set_nowait_refused(st.st_dev);
                return Ok(Residency::Unknown);
            }
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOSYS)) => {
                facts.set_no_nowait();
                return Ok(Residency::Unknown);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(Residency::Cached)
}
