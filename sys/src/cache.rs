//! The page-cache probe: whether reading a file's range now would wait for
//! the disk, asked without waiting (`preadv2(2)` with `RWF_NOWAIT` and
//! `cachestat(2)` on Linux; other systems have no such read and answer
//! [`Residency::Unknown`]).

use std::io;
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::fsfacts::FsFacts;

/// What the probe found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Residency {
    /// Every page of the range is in memory (before Linux 6.5: both of
    /// its ends are), or the range is empty.
    Cached,
    /// A read would wait for the disk. When the first page was missing the
    /// kernel has started reading it in (readahead) before it answered.
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

/// `cachestat(2)` where the kernel has it (Linux 6.5): how many of the
/// pages spanning `len` (> 0) bytes at `offset` are in the page cache, and
/// how many pages that is. `ENOSYS` elsewhere.
pub fn cached_pages(file: BorrowedFd<'_>, offset: u64, len: u64) -> io::Result<(u64, u64)> {
    crate::os::cached_pages(file, offset, len)
}

/// Set once `cachestat(2)` answered `ENOSYS` (or `EINVAL`: a kernel that
/// knows the number but not these arguments): a fact of the kernel, so one
/// for the process.
static NO_CACHESTAT: AtomicBool = AtomicBool::new(false);

/// Whether `len` bytes of `file` at `offset` are in the page cache: a
/// one-byte [`read_cached`] read at the range's first byte, then, for a
/// range of more than one page, [`cached_pages`] over the whole range.
///
/// `RWF_NOWAIT` answers for the pages it would read, so one byte only
/// speaks for the first page; the read comes first because it also learns
/// whether the filesystem answers at all, and starts reading a cold file
/// in. `cachestat(2)` answers for every page, a hole in the middle (a page
/// evicted on its own) included, without reading any. Pages past the end
/// of the file are never cached: when the count falls short, a read of the
/// range's last byte tells a hole (`EAGAIN`: not cached) from the end of a
/// file that shrank (nothing there to wait for). Before Linux 6.5 that
/// last-byte read is the whole second look, and a hole in the middle is
/// missed (a system call per page would find it).
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
    if let Some(r) = probe_byte(file, first, facts)? {
        return Ok(r);
    }
    if !spans_pages(first, len) {
        return Ok(Residency::Cached);
    }
    if !NO_CACHESTAT.load(Ordering::Relaxed) {
        match cached_pages(file, first, len as u64) {
            Ok((cached, pages)) if cached >= pages => return Ok(Residency::Cached),
            // Short: a hole, or the end of a file that shrank; the last
            // byte says which.
            Ok(_) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOSYS) | Some(libc::EINVAL)) => {
                NO_CACHESTAT.store(true, Ordering::Relaxed);
            }
            // hugetlbfs and the like: the last byte speaks for the range.
            Err(_) => {}
        }
        let r = probe_byte(file, last, facts)?;
        return Ok(match r {
            Some(r) => r,
            None if last_byte_is_past_end(file, last) => Residency::Cached,
            None => Residency::NotCached,
        });
    }
    Ok(probe_byte(file, last, facts)?.unwrap_or(Residency::Cached))
}

/// [`probe`] for a caller that knows the file's device, `dev`, and
/// keeps `facts` from one probe to the next: once `dev`'s filesystem has
/// answered `RWF_NOWAIT`, a range of more than one page is first counted
/// with `cachestat(2)`, and every page there is [`Residency::Cached`] in
/// that one call (where [`probe`] reads the first byte, then counts).
/// Before the filesystem answered, and for anything `cachestat` does not
/// find whole, [`probe`] decides, and its answer teaches `facts`.
///
/// The first byte's read is not needed once the filesystem is known: it
/// tells whether the filesystem answers (known), and for a cached range it
/// finds nothing `cachestat` did not count.
pub fn probe_on(
    file: BorrowedFd<'_>,
    dev: libc::dev_t,
    offset: u64,
    len: usize,
    facts: &FsFacts,
) -> io::Result<Residency> {
    if facts.nowait_answered(dev) && counted_whole(file, offset, len) {
        return Ok(Residency::Cached);
    }
    // The device is known: no fstat in probe to find it.
    if facts.nowait_refused(dev) {
        return Ok(Residency::Unknown);
    }
    let r = probe(file, offset, len, facts)?;
    if len > 0 && r != Residency::Unknown {
        facts.set_nowait_answered(dev);
    }
    Ok(r)
}

/// [`probe`] for a caller that reads on when the system cannot tell
/// ([`Residency::Unknown`] counts as cached for it: the daemon's loop): a
/// range of more than one page whose every page `cachestat(2)` counts is
/// [`Residency::Cached`] in that one call. On a filesystem that refuses
/// `RWF_NOWAIT` such a range is then Cached where [`probe`] says Unknown,
/// which this caller acts on alike; every other answer is [`probe`]'s.
pub fn probe_counted_first(
    file: BorrowedFd<'_>,
    offset: u64,
    len: usize,
    facts: &FsFacts,
) -> io::Result<Residency> {
    if counted_whole(file, offset, len) {
        return Ok(Residency::Cached);
    }
    probe(file, offset, len, facts)
}

/// Whether `len` bytes at `offset` span more than one page and
/// `cachestat(2)` counts every one of them in the page cache. False where
/// the kernel has no `cachestat` (then [`probe`] finds out, once).
fn counted_whole(file: BorrowedFd<'_>, offset: u64, len: usize) -> bool {
    spans_pages(offset, len)
        && !NO_CACHESTAT.load(Ordering::Relaxed)
        && matches!(cached_pages(file, offset, len as u64), Ok((cached, pages)) if cached >= pages)
}

/// Whether `len` bytes at `offset` touch more than one 4 KiB page (the
/// page size the probes count in; a larger page only makes a range look
/// longer than it is, which costs a count, never a wrong answer).
fn spans_pages(offset: u64, len: usize) -> bool {
    len > 0 && offset / 4096 != offset.saturating_add(len as u64 - 1) / 4096
}

/// Whether the file ends before `last` (its size as `fstat` says): a count
/// of cached pages that falls short only for the pages past the end.
fn last_byte_is_past_end(file: BorrowedFd<'_>, last: u64) -> bool {
    crate::fd::fstat(file).is_ok_and(|st| (st.st_size.max(0) as u64) <= last)
}

/// A one-byte [`read_cached`] read at `at`: `None` when the byte is there
/// (or is past the end of the file: nothing to wait for), else what the
/// read says of the range (not cached; or the filesystem or the kernel
/// cannot tell, which is remembered in `facts`).
fn probe_byte(file: BorrowedFd<'_>, at: u64, facts: &FsFacts) -> io::Result<Option<Residency>> {
    let mut byte = [0u8; 1];
    match read_cached(file, &mut byte, at) {
        Ok(_) => Ok(None),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Some(Residency::NotCached)),
        Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
            let st = crate::fd::fstat(file)?;
            facts.set_nowait_refused(st.st_dev);
            Ok(Some(Residency::Unknown))
        }
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOSYS)) => {
            facts.set_no_nowait();
            Ok(Some(Residency::Unknown))
        }
        Err(e) => Err(e),
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::{AsFd, AsRawFd};

    const PAGE: usize = 4096;

    /// A file of `pages` pages, on disk where there is one (`/var/tmp` is
    /// meant to be; tmpfs pages cannot be dropped and tmpfs may refuse
    /// `RWF_NOWAIT`: the tests then say so and stop), written out and read
    /// back so that every page is cached and clean.
    fn cached_file(pages: usize) -> (tempfile::TempDir, std::fs::File) {
        let dir = tempfile::tempdir_in("/var/tmp")
            .or_else(|_| tempfile::tempdir())
            .unwrap();
        let path = dir.path().join("f");
        let mut f = std::fs::File::create(&path).unwrap();
        f.write_all(&vec![7u8; pages * PAGE]).unwrap();
        f.sync_all().unwrap();
        let f = std::fs::File::open(&path).unwrap();
        let mut buf = vec![0u8; pages * PAGE];
        crate::fd::pread(f.as_fd(), &mut buf, 0).unwrap();
        (dir, f)
    }

    fn advise(f: &std::fs::File, offset: usize, len: usize, advice: libc::c_int) {
        // SAFETY: plain advice on a descriptor we own.
        let r = unsafe { libc::posix_fadvise(f.as_raw_fd(), offset as i64, len as i64, advice) };
        assert_eq!(r, 0);
    }

    /// Leaves every page but `page` cached: drops the whole (clean) file,
    /// then reads the others back one page at a time with readahead off.
    fn all_but(f: &std::fs::File, pages: usize, page: usize) {
        advise(f, 0, 0, libc::POSIX_FADV_DONTNEED);
        advise(f, 0, 0, libc::POSIX_FADV_RANDOM);
        let mut buf = vec![0u8; PAGE];
        for p in (0..pages).filter(|&p| p != page) {
            crate::fd::pread(f.as_fd(), &mut buf, (p * PAGE) as u64).unwrap();
        }
    }

    fn has_cachestat(f: &std::fs::File) -> bool {
        !matches!(cached_pages(f.as_fd(), 0, 1), Err(e) if e.raw_os_error() == Some(libc::ENOSYS))
    }

    /// Drops page 1 of a cached 4-page file: whether `cachestat` now finds
    /// it missing (else says why the hole is not tested).
    fn made_hole(f: &std::fs::File) -> bool {
        if !has_cachestat(f) {
            eprintln!("no cachestat(2) here (Linux < 6.5): a hole in the middle is not tested");
            return false;
        }
        all_but(f, 4, 1);
        let (cached, pages) = cached_pages(f.as_fd(), 0, 4 * PAGE as u64).unwrap();
        if cached == pages {
            eprintln!("the page could not be dropped: the hole is not tested");
            return false;
        }
        true
    }

    #[test]
    fn a_cached_range_is_cached_and_counted_in_pages() {
        let (_d, f) = cached_file(4);
        if !has_cachestat(&f) {
            eprintln!("no cachestat(2) here (Linux < 6.5): the whole-range count is not tested");
        } else {
            assert_eq!(cached_pages(f.as_fd(), 0, 4 * PAGE as u64).unwrap(), (4, 4));
            // A range that starts and ends inside pages spans them all.
            assert_eq!(
                cached_pages(f.as_fd(), 100, 2 * PAGE as u64).unwrap(),
                (3, 3)
            );
        }
        let facts = FsFacts::new();
        assert_eq!(
            probe(f.as_fd(), 0, 4 * PAGE, &facts).unwrap(),
            Residency::Cached
        );
    }

    /// The hole the two-ends probe missed: a page evicted between cached
    /// ends. `cachestat` reads nothing, so the page stays out and the
    /// answer does not race with the disk.
    #[test]
    fn a_hole_in_the_middle_is_not_cached() {
        let (_d, f) = cached_file(4);
        if !made_hole(&f) {
            return;
        }
        let facts = FsFacts::new();
        assert_eq!(
            probe(f.as_fd(), 0, 4 * PAGE, &facts).unwrap(),
            Residency::NotCached
        );
        // Only the range's pages count: the rest of the file is cached.
        assert_eq!(
            probe(f.as_fd(), 2 * PAGE as u64, 2 * PAGE, &facts).unwrap(),
            Residency::Cached
        );
    }

    /// A range past the end of a file that shrank: the pages past the end
    /// are never cached, and reading them waits for nothing.
    #[test]
    fn a_range_past_the_end_is_cached() {
        let (_d, f) = cached_file(2);
        let facts = FsFacts::new();
        assert_eq!(
            probe(f.as_fd(), 0, 4 * PAGE, &facts).unwrap(),
            Residency::Cached
        );
    }
    /// `probe_on` learns that the filesystem answers from its first probe,
    /// then counts alone: the same answers, a hole included.
    #[test]
    fn probe_on_learns_the_filesystem_and_gives_probes_answers() {
        let (_d, f) = cached_file(4);
        let dev = crate::fd::fstat(f.as_fd()).unwrap().st_dev;
        let facts = FsFacts::new();
        assert!(!facts.nowait_answered(dev));
        let first = probe_on(f.as_fd(), dev, 0, 4 * PAGE, &facts).unwrap();
        if first == Residency::Unknown {
            eprintln!("this filesystem refuses RWF_NOWAIT: nothing to learn");
            assert!(!facts.nowait_answered(dev));
            return;
        }
        assert_eq!(first, Residency::Cached);
        assert!(facts.nowait_answered(dev), "learnt from the first probe");
        assert_eq!(
            probe_on(f.as_fd(), dev, 0, 4 * PAGE, &facts).unwrap(),
            Residency::Cached
        );
        if !made_hole(&f) {
            return;
        }
        assert_eq!(
            probe_on(f.as_fd(), dev, 0, 4 * PAGE, &facts).unwrap(),
            Residency::NotCached
        );
        assert_eq!(
            probe_on(f.as_fd(), dev, 2 * PAGE as u64, 2 * PAGE, &facts).unwrap(),
            Residency::Cached
        );
    }

    /// `probe_counted_first` gives `probe`'s answers where the filesystem
    /// answers: a cached range, a hole, a range past the end.
    #[test]
    fn probe_counted_first_agrees_with_probe() {
        let (_d, f) = cached_file(4);
        let facts = FsFacts::new();
        let same = |offset: u64, len: usize| {
            let a = probe_counted_first(f.as_fd(), offset, len, &facts).unwrap();
            let b = probe(f.as_fd(), offset, len, &facts).unwrap();
            if b != Residency::Unknown {
                assert_eq!(a, b, "{offset}+{len}");
            }
            a
        };
        assert_eq!(same(0, 4 * PAGE), Residency::Cached);
        assert_eq!(same(100, PAGE), Residency::Cached);
        assert_eq!(same(0, 6 * PAGE), Residency::Cached, "past the end");
        if !made_hole(&f) {
            return;
        }
        assert_ne!(same(0, 4 * PAGE), Residency::Cached, "the hole");
    }
}
