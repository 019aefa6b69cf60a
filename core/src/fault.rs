//! Fault injection, a **test facility**: a [`TransferBackend`] wrapper that
//! makes chosen backend calls fail with chosen errors, so that the test suite
//! can drive the real daemon through read errors, broken or full
//! destinations, `EINTR` and `EAGAIN` storms and disk-thread failures.
//!
//! The daemon wraps its backend in a [`FaultBackend`] only when the
//! environment variable [`FAULTS_ENV`] is set at start-up (and logs a warning
//! that it did). Faults only ever make calls fail, or report data as not
//! cached: they never move bytes, open files or touch descriptors that the
//! real backend would not.
//!
//! # Spec
//!
//! A comma-separated list of faults, each `OP:ERR[@START][*COUNT][%PERIOD][:TAG]`:
//!
//! - `OP`: `send` ([`TransferBackend::send_file`], file data), `write`
//!   ([`TransferBackend::write_bytes`], header and trailer bytes),
//!   `prefetch` ([`TransferBackend::prefetch`], on a disk thread) or `open`
//!   ([`TransferBackend::open_beneath_cached`], the loop's attempt; the
//!   disk thread's open after a `MISS` counts for none).
//! - `ERR`: an errno name (`EIO`, `EPIPE`, `ENOSPC`, `EAGAIN`, `EINTR`, ...,
//!   see [`errno_from_name`]), a number, or `MISS` (`send`: answer
//!   [`Moved::NotCached`] when the caller accepts it, which sends the chunk
//!   to a disk thread; `open`: answer [`OpenAttempt::WouldBlock`], which
//!   sends the open to a disk thread).
//! - `@START`: the first call (1-based) that fails; default 1.
//! - `*COUNT`: how many calls in a row fail from there; default 1.
//! - `%PERIOD`: repeat the window every PERIOD calls; default never.
//! - `:TAG`: count only calls about files opened through a path containing
//!   TAG (for `write`: header/trailer bytes containing TAG). Without a tag
//!   every call of `OP` counts.
//!
//! Each fault counts its own matching calls. `send:EIO@2` fails the second
//! file-data call of the daemon; `send:EAGAIN*50:storm` fails the first 50
//! calls on files whose path contains `storm`; `send:EINTR%3:flaky` fails
//! every third.
//!
//! The wrapper keeps the trait's default
//! [`send_hdtr`](TransferBackend::send_hdtr), which sends header, file part
//! and trailer one at a time through the wrapper's own `write_bytes` and
//! `send_file`: a fault hits the same call on every system, and a native
//! `sf_hdtr` of the inner backend is not used while faults are injected.

use std::collections::HashMap;
use std::ffi::CStr;
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::backend::{DestKind, FileChunk, Moved, OpenAttempt, TransferBackend};

/// The environment variable the daemon reads its fault spec from.
pub const FAULTS_ENV: &str = "SENDFILED_FAULTS";

/// Which backend call a fault hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultOp {
    /// `send_file`.
    Send,
    /// `write_bytes`.
    Write,
    /// `prefetch`.
    Prefetch,
    /// `open_beneath`.
    Open,
}

/// What a fault does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// The call fails with this errno.
    Errno(i32),
    /// `send` only: the data is reported as not in the page cache.
    Miss,
}

/// One fault of a spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// The call it hits.
    pub op: FaultOp,
    /// What it does.
    pub kind: FaultKind,
    /// First failing call, 1-based.
    pub start: u64,
    /// Calls in a row that fail.
    pub count: u64,
    /// Repeat period in calls (0: no repeat).
    pub period: u64,
    /// Only calls about a path (or bytes) containing this count.
    pub tag: Option<Vec<u8>>,
}

impl Fault {
    /// Whether the `n`th matching call (1-based) fails.
    pub fn fires_at(&self, n: u64) -> bool {
        if n < self.start {
            return false;
        }
        let k = n - self.start;
        let k = if self.period > 0 { k % self.period } else { k };
        k < self.count
    }
}

/// The errno of a name the spec accepts (`EIO`, ...), or a number
/// ([`crate::sys::errno::from_name`]).
pub fn errno_from_name(name: &str) -> Option<i32> {
    crate::sys::errno::from_name(name)
}

fn parse_number(s: &str, what: &str, item: &str) -> Result<u64, String> {
    s.parse::<u64>()
        .map_err(|_| format!("{item:?}: {what} {s:?} is not a number"))
}

/// Parses one `OP:ERR[@START][*COUNT][%PERIOD][:TAG]`.
fn parse_fault(item: &str) -> Result<Fault, String> {
    let mut parts = item.splitn(3, ':');
    let op = match parts.next().unwrap_or("") {
        "send" => FaultOp::Send,
        "write" => FaultOp::Write,
        "prefetch" => FaultOp::Prefetch,
        "open" => FaultOp::Open,
        other => return Err(format!("{item:?}: unknown operation {other:?}")),
    };
    let rest = parts
        .next()
        .ok_or_else(|| format!("{item:?}: expected OP:ERR"))?;
    let tag = parts.next().map(|t| t.as_bytes().to_vec());
    if tag.as_ref().is_some_and(|t| t.is_empty()) {
        return Err(format!("{item:?}: empty tag"));
    }
    let name_end = rest.find(['@', '*', '%']).unwrap_or(rest.len());
    let kind = match &rest[..name_end] {
        "MISS" if matches!(op, FaultOp::Send | FaultOp::Open) => FaultKind::Miss,
        name => FaultKind::Errno(
            errno_from_name(name).ok_or_else(|| format!("{item:?}: unknown error {name:?}"))?,
        ),
    };
    let mut fault = Fault {
        op,
        kind,
        start: 1,
        count: 1,
        period: 0,
        tag,
    };
    let mut mods = &rest[name_end..];
    while let Some(sym) = mods.chars().next() {
        let body = &mods[1..];
        let end = body.find(['@', '*', '%']).unwrap_or(body.len());
        let n = parse_number(&body[..end], "count", item)?;
        match sym {
            '@' => fault.start = n.max(1),
            '*' => fault.count = n,
            _ => fault.period = n,
        }
        mods = &body[end..];
    }
    if fault.period > 0 && fault.count > fault.period {
        return Err(format!("{item:?}: count above period"));
    }
    Ok(fault)
}

/// Parses a whole spec (see the [module documentation](self)).
pub fn parse_spec(spec: &str) -> Result<Vec<Fault>, String> {
    spec.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(parse_fault)
        .collect()
}

/// (device, inode): identifies a file across descriptors.
// The field types differ between systems (i32 device numbers on macOS).
#[allow(clippy::unnecessary_cast)]
fn file_key(st: &libc::stat) -> (u64, u64) {
    (st.st_dev as u64, st.st_ino as u64)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// A backend that delegates every call to `B`, except those a fault hits.
#[derive(Debug)]
pub struct FaultBackend<B> {
    inner: B,
    faults: Vec<Fault>,
    /// Matching calls seen so far, one counter per fault.
    calls: Vec<AtomicU64>,
    /// Files opened through a tagged path: (device, inode) -> bit set of the
    /// faults whose tag the path contained.
    tagged: Mutex<HashMap<(u64, u64), u64>>,
}

impl<B: TransferBackend> FaultBackend<B> {
    /// Wraps `inner` with `faults` (at most 64).
    pub fn new(inner: B, faults: Vec<Fault>) -> FaultBackend<B> {
        let mut faults = faults;
        faults.truncate(64);
        FaultBackend {
            calls: faults.iter().map(|_| AtomicU64::new(0)).collect(),
            inner,
            faults,
            tagged: Mutex::new(HashMap::new()),
        }
    }

    /// Wraps `inner` with the faults of `spec`.
    pub fn from_spec(inner: B, spec: &str) -> Result<FaultBackend<B>, String> {
        Ok(FaultBackend::new(inner, parse_spec(spec)?))
    }

    fn tags_of_file(&self, file: BorrowedFd<'_>) -> u64 {
        let any_tag = self.faults.iter().any(|f| f.tag.is_some());
        if !any_tag {
            return 0;
        }
        let Ok(st) = crate::sys::fstat(file) else {
            return 0;
        };
        let key = file_key(&st);
        self.tagged
            .lock()
            .map(|m| m.get(&key).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    /// The first fault of `op` that fires on this call, counting the call
    /// against every fault it matches. `matches(i, tag)` says whether the
    /// call is about fault `i`'s tag.
    fn check(&self, op: FaultOp, matches: impl Fn(usize, &[u8]) -> bool) -> Option<FaultKind> {
        let mut hit = None;
        for (i, f) in self.faults.iter().enumerate() {
            if f.op != op {
                continue;
            }
            if let Some(tag) = &f.tag {
                if !matches(i, tag) {
                    continue;
                }
            }
            let n = self.calls[i].fetch_add(1, Ordering::Relaxed) + 1;
            if hit.is_none() && f.fires_at(n) {
                hit = Some(f.kind);
                log::info!(
                    "fault injected: {op:?} {:?} (call {n} of fault {i})",
                    f.kind
                );
            }
        }
        hit
    }

    fn check_file(&self, op: FaultOp, file: BorrowedFd<'_>) -> Option<FaultKind> {
        let bits = self.tags_of_file(file);
        self.check(op, |i, _| bits & (1 << i) != 0)
    }

    /// Remembers which tagged faults a file opened through `path` counts
    /// for (by its identity, see `tags_of_file`).
    fn tag_opened(
        &self,
        path: &CStr,
        opened: io::Result<(OwnedFd, libc::stat)>,
    ) -> io::Result<(OwnedFd, libc::stat)> {
        let (fd, st) = opened?;
        let bytes = path.to_bytes();
        let mut bits = 0u64;
        for (i, f) in self.faults.iter().enumerate() {
            if f.tag.as_deref().is_some_and(|t| contains(bytes, t)) {
                bits |= 1 << i;
            }
        }
        if bits != 0 {
            if let Ok(mut m) = self.tagged.lock() {
                m.insert(file_key(&st), bits);
            }
        }
        Ok((fd, st))
    }
}

fn fail<T>(errno: i32) -> io::Result<T> {
    Err(io::Error::from_raw_os_error(errno))
}

impl<B: TransferBackend> TransferBackend for FaultBackend<B> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn send_file(
        &self,
        chunk: FileChunk<'_>,
        dest: BorrowedFd<'_>,
        kind: DestKind,
    ) -> io::Result<Moved> {
        match self.check_file(FaultOp::Send, chunk.file) {
            Some(FaultKind::Errno(e)) => fail(e),
            Some(FaultKind::Miss) if chunk.nowait => Ok(Moved::NotCached),
            _ => self.inner.send_file(chunk, dest, kind),
        }
    }

    fn write_bytes(
        &self,
        buf: &[u8],
        more_follows: bool,
        dest: BorrowedFd<'_>,
        kind: DestKind,
    ) -> io::Result<usize> {
        match self.check(FaultOp::Write, |_, tag| contains(buf, tag)) {
            Some(FaultKind::Errno(e)) => fail(e),
            _ => self.inner.write_bytes(buf, more_follows, dest, kind),
        }
    }

    /// The open a disk thread makes after [`OpenAttempt::WouldBlock`]: no
    /// fault of its own (the loop's attempt counted the request).
    fn open_beneath(&self, root: BorrowedFd<'_>, path: &CStr) -> io::Result<(OwnedFd, libc::stat)> {
        self.tag_opened(path, self.inner.open_beneath(root, path))
    }

    fn open_beneath_cached(&self, root: BorrowedFd<'_>, path: &CStr) -> OpenAttempt {
        let bytes = path.to_bytes();
        match self.check(FaultOp::Open, |_, tag| contains(bytes, tag)) {
            Some(FaultKind::Errno(e)) => return OpenAttempt::Done(fail(e)),
            Some(FaultKind::Miss) => return OpenAttempt::WouldBlock,
            None => {}
        }
        match self.inner.open_beneath_cached(root, path) {
            OpenAttempt::Done(r) => OpenAttempt::Done(self.tag_opened(path, r)),
            OpenAttempt::WouldBlock => OpenAttempt::WouldBlock,
        }
    }

    fn prefetch(&self, file: BorrowedFd<'_>, offset: u64, len: usize) -> io::Result<()> {
        match self.check_file(FaultOp::Prefetch, file) {
            Some(FaultKind::Errno(e)) => fail(e),
            _ => self.inner.prefetch(file, offset, len),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse() {
        let f =
            parse_spec("send:EIO@2, write:EPIPE@1,send:EAGAIN*50,prefetch:5%10*3:bad/").unwrap();
        assert_eq!(f.len(), 4);
        assert_eq!(
            f[0],
            Fault {
                op: FaultOp::Send,
                kind: FaultKind::Errno(libc::EIO),
                start: 2,
                count: 1,
                period: 0,
                tag: None
            }
        );
        assert_eq!((f[2].start, f[2].count), (1, 50));
        assert_eq!(f[3].kind, FaultKind::Errno(5));
        assert_eq!((f[3].period, f[3].count), (10, 3));
        assert_eq!(f[3].tag.as_deref(), Some(&b"bad/"[..]));
        assert_eq!(parse_spec("send:MISS").unwrap()[0].kind, FaultKind::Miss);
        assert_eq!(parse_spec("open:MISS").unwrap()[0].kind, FaultKind::Miss);
        for bad in [
            "recv:EIO",
            "send",
            "send:EWHAT",
            "write:MISS",
            "prefetch:MISS",
            "send:EIO@x",
            "send:EIO*5%2",
            "send:EIO:",
        ] {
            assert!(parse_spec(bad).is_err(), "{bad}");
        }
        assert!(parse_spec("").unwrap().is_empty());
    }

    #[test]
    fn windows_fire_where_asked() {
        let f = &parse_spec("send:EIO@3*2%5").unwrap()[0];
        let fired: Vec<u64> = (1..=15).filter(|&n| f.fires_at(n)).collect();
        assert_eq!(fired, [3, 4, 8, 9, 13, 14]);
        let once = &parse_spec("send:EIO@2").unwrap()[0];
        let fired: Vec<u64> = (1..=10).filter(|&n| once.fires_at(n)).collect();
        assert_eq!(fired, [2]);
    }
}
