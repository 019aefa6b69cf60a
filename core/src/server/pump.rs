//! Moving one transfer's bytes: header, file range, trailer, in that order,
//! across any number of partial writes, full destinations and interrupted
//! calls.
//!
//! A transfer's progress is one number, [`Cursor::pos`], counted over the
//! concatenation `header | file range | trailer`. Every backend call advances
//! it by what the call reports, whatever part the bytes came from, so a
//! native `sf_hdtr` call that moves "the header and part of the file" and
//! separate `write` + `sendfile` calls account alike.

use std::io;
use std::os::fd::BorrowedFd;

use crate::backend::{DestKind, FileChunk, HdtrChunk, Moved, TransferBackend};
use crate::sys::{self, errno::Errno};

use super::backstop;

/// Where a transfer stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// Header bytes, written first.
    pub header: Vec<u8>,
    /// Trailer bytes, written last.
    pub trailer: Vec<u8>,
    /// File offset of the first byte of the range.
    pub file_offset: u64,
    /// Bytes of the file range.
    pub file_len: u64,
    /// Bytes moved so far, over header, file range and trailer.
    pub pos: u64,
    /// Bytes of the file range at or after which data may be missing from the
    /// page cache: below it the data was just brought in by a disk thread and
    /// the backend is asked to send without probing.
    pub prefetched_until: u64,
}

/// Why [`pump`] stopped.
#[derive(Debug, PartialEq, Eq)]
pub enum PumpStop {
    /// Everything (header, file, trailer) went out.
    Done,
    /// The byte budget of this turn is spent; more remains.
    BudgetSpent,
    /// The destination is full; wait for it to become writable.
    DestinationFull,
    /// The next file bytes are not in the page cache: fetch this many bytes
    /// at this file offset off the loop, then call again.
    NotCached {
        /// File offset of the missing data.
        offset: u64,
        /// How many bytes to bring in.
        len: usize,
    },
    /// A call blocked (the client cleared `O_NONBLOCK` on the destination
    /// it shares with the daemon) and the backstop (`backstop.rs`) interrupted it: wait
    /// for writability as for a full destination, and check the flag.
    Blocked,
    /// The transfer failed with this errno.
    Failed(Errno),
}

/// Bytes a disk thread brings in per cache miss.
pub const PREFETCH_WINDOW: usize = 4 << 20;

/// The longest one [`pump`] call goes on making calls: after this it
/// yields its turn whatever its byte budget says. A call can be slow
/// without blocking long enough for the backstop (`backstop.rs`) (a `sendfile` to a
/// socket whose client flips `O_NONBLOCK` and drains a few KiB a
/// millisecond); a turn of many such calls must not add up.
pub const TURN_TIME: std::time::Duration = std::time::Duration::from_millis(2);

/// A `sendfile` this slow, on a socket whose flag is found clear after it,
/// waited on the socket: caught as the backstop would have.
const SLOW_CALL: std::time::Duration = std::time::Duration::from_millis(1);

impl Cursor {
    /// The file bytes among the cursor positions `[from, to)` (header and
    /// trailer bytes are not the file's): what progress counts, by the
    /// contract (spec/c-api.md: progress counts file bytes only).
    pub fn file_bytes_between(&self, from: u64, to: u64) -> u64 {
        let header = self.header.len() as u64;
        let file_part = |pos: u64| pos.saturating_sub(header).min(self.file_len);
        file_part(to).saturating_sub(file_part(from))
    }

    /// Whether every file byte has moved (a trailer may still be to go).
    pub fn file_done(&self) -> bool {
        self.file_bytes_between(0, self.pos) == self.file_len
    }

    /// A cursor at the start of `header | file[offset, offset+len) | trailer`.
    pub fn new(header: Vec<u8>, file_offset: u64, file_len: u64, trailer: Vec<u8>) -> Cursor {
        Cursor {
            header,
            trailer,
            file_offset,
            file_len,
            pos: 0,
            prefetched_until: 0,
        }
    }

    /// Total bytes the transfer moves.
    pub fn total(&self) -> u64 {
        self.header.len() as u64 + self.file_len + self.trailer.len() as u64
    }

    /// Whether everything went out.
    pub fn is_done(&self) -> bool {
        self.pos >= self.total()
    }

    fn hdr_len(&self) -> u64 {
        self.header.len() as u64
    }

    /// Records that `len` bytes from file offset `offset` are now cached.
    pub fn mark_prefetched(&mut self, offset: u64, len: usize) {
        let rel = offset.saturating_sub(self.file_offset) + len as u64;
        self.prefetched_until = self.prefetched_until.max(rel.min(self.file_len));
    }
}

/// Bounds on one [`pump`] call.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most bytes one backend call moves.
    pub chunk: usize,
    /// Most bytes the whole call moves, so that one fast destination cannot
    /// starve the others.
    pub budget: usize,
    /// Whether to ask the backend to report uncached data instead of reading
    /// it from disk.
    pub probe_cache: bool,
    /// Whether the destination's open file description was caught blocking
    /// once (the backstop (`backstop.rs`) interrupted a call on it, for this transfer or
    /// another sharing it, or its uid was caught often: `Caught`): file data
    /// to a socket then never goes by `sendfile`, whatever its flag says.
    /// Without it every call is still non-blocking per call (pipes and
    /// devices take `sys::write_nowait`, file data into a pipe
    /// `SPLICE_F_NONBLOCK`); only `sendfile` looks at the flag, just before
    /// each call.
    pub strict: bool,
}

/// Moves bytes of one transfer until it is done, the destination is full,
/// the budget is spent, data is missing from the cache, or an error.
/// Returns the bytes moved in this call and why it stopped.
pub fn pump<B: TransferBackend + ?Sized>(
    backend: &B,
    cur: &mut Cursor,
    file: BorrowedFd<'_>,
    dest: BorrowedFd<'_>,
    kind: DestKind,
    limits: Limits,
) -> (u64, PumpStop) {
    let Limits {
        chunk,
        budget,
        probe_cache,
        strict,
    } = limits;
    let is_socket = matches!(kind, DestKind::StreamSocket | DestKind::OtherSocket);
    let mut moved = 0u64;
    let mut interrupts = 0u32;
    let started = std::time::Instant::now();
    loop {
        if cur.is_done() {
            return (moved, PumpStop::Done);
        }
        if moved >= budget as u64 || started.elapsed() >= TURN_TIME {
            return (moved, PumpStop::BudgetSpent);
        }
        let left_budget = budget - moved as usize;
        let max = chunk.min(left_budget);
        // `sendfile` to a socket has no per-call flag: it waits when the
        // socket's `O_NONBLOCK` is clear. Look at the flag before every call
        // (the client may flip it at any moment; one that flips it between
        // the look and the call is caught by the backstop, once per open
        // file description), and copy with `MSG_DONTWAIT` instead.
        let no_sendfile = is_socket && (strict || sys::is_nonblocking(dest).map_or(true, |nb| !nb));
        let hdr_len = cur.hdr_len();
        let file_end = hdr_len + cur.file_len;
        let step = Step {
            cur,
            file,
            dest,
            kind,
            max,
            probe_cache,
            no_sendfile,
        };
        let call_started = std::time::Instant::now();
        let (result, mut interrupted) = backstop::guarded(|| {
            if step.cur.pos < hdr_len || (step.cur.pos >= file_end && !step.cur.trailer.is_empty())
            {
                bytes_step(backend, &step)
            } else {
                file_step(backend, &step)
            }
        });
        if !interrupted
            && is_socket
            && !no_sendfile
            && call_started.elapsed() >= SLOW_CALL
            && sys::is_nonblocking(dest).is_ok_and(|nb| !nb)
        {
            // The flag was cleared while `sendfile` ran, and it waited:
            // caught, as if the backstop had fired.
            interrupted = true;
        }
        if interrupted {
            // Whatever the call moved before the interrupt counts; then the
            // transfer waits, as for a full destination.
            match result {
                Ok(Moved::Bytes(n)) if n > 0 => {
                    let n = (n as u64).min(cur.total() - cur.pos);
                    cur.pos += n;
                    moved += n;
                    return (moved, PumpStop::Blocked);
                }
                Ok(_) => return (moved, PumpStop::Blocked),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
                    ) =>
                {
                    return (moved, PumpStop::Blocked)
                }
                Err(_) => {}
            }
        }
        match result {
            Ok(Moved::Bytes(0)) => {
                if cur.pos >= hdr_len && cur.pos < file_end {
                    // The file is shorter than when it was opened: the reader
                    // was promised `size` bytes it cannot get.
                    return (moved, PumpStop::Failed(Errno::EIO));
                }
                return (moved, PumpStop::DestinationFull);
            }
            Ok(Moved::Bytes(n)) => {
                let n = (n as u64).min(cur.total() - cur.pos);
                cur.pos += n;
                moved += n;
                interrupts = 0;
            }
            Ok(Moved::DestinationFull) => return (moved, PumpStop::DestinationFull),
            Ok(Moved::NotCached) => {
                let rel = cur.pos.saturating_sub(hdr_len).min(cur.file_len);
                let left = cur.file_len - rel;
                let len = left.min(PREFETCH_WINDOW as u64) as usize;
                return (
                    moved,
                    PumpStop::NotCached {
                        offset: cur.file_offset + rel,
                        len: len.max(1),
                    },
                );
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                // A signal storm must not spin the loop forever; after a few
                // in a row the transfer yields its turn.
                interrupts += 1;
                if interrupts >= 16 {
                    return (moved, PumpStop::BudgetSpent);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return (moved, PumpStop::DestinationFull)
            }
            // A device with no non-blocking write (`sys::write_nowait`):
            // the daemon cannot bound a write to it, so it writes nothing.
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) && kind == DestKind::Other => {
                return (moved, PumpStop::Failed(Errno::EINVAL))
            }
            Err(e) => return (moved, PumpStop::Failed(crate::sys::errno(&e))),
        }
    }
}

/// What one backend call works on.
struct Step<'a> {
    cur: &'a Cursor,
    file: BorrowedFd<'a>,
    dest: BorrowedFd<'a>,
    kind: DestKind,
    max: usize,
    probe_cache: bool,
    /// File data to this socket must not go by `sendfile` (its flag is
    /// clear, or it was caught blocking).
    no_sendfile: bool,
}

/// One call for the header or trailer part, or all three parts at once where
/// the backend has a native facility.
fn bytes_step<B: TransferBackend + ?Sized>(backend: &B, step: &Step<'_>) -> io::Result<Moved> {
    let Step {
        cur,
        file,
        dest,
        kind,
        max,
        probe_cache,
        no_sendfile,
    } = *step;
    let hdr_len = cur.hdr_len();
    let file_end = hdr_len + cur.file_len;
    let (hdr_left, file_left_from, trl_left): (&[u8], u64, &[u8]) = if cur.pos < hdr_len {
        (&cur.header[cur.pos as usize..], 0, &cur.trailer[..])
    } else {
        let t = (cur.pos - file_end) as usize;
        (&[], cur.file_len, &cur.trailer[t..])
    };
    let file_len_left = cur.file_len - file_left_from;
    let part_len = file_len_left.min(max.max(1) as u64) as usize;
    // The trailer may ride along only if this call's file part is the rest
    // of the range: a native call sends it right after the part.
    let whole_rest = part_len as u64 == file_len_left;
    let native = HdtrChunk {
        header: hdr_left,
        file: FileChunk {
            file,
            offset: cur.file_offset + file_left_from,
            len: part_len,
            more_follows: !whole_rest || !trl_left.is_empty(),
            nowait: probe_cache && file_left_from >= cur.prefetched_until,
        },
        trailer: if whole_rest { trl_left } else { &[] },
    };
    // A native call (`sendfile` with `sf_hdtr`) blocks on a socket whose
    // `O_NONBLOCK` is clear: the header or trailer goes on its own, within
    // `max`, with `MSG_DONTWAIT`.
    if no_sendfile {
        let (part, more) = if !hdr_left.is_empty() {
            (hdr_left, cur.file_len > 0 || !cur.trailer.is_empty())
        } else {
            (trl_left, false)
        };
        let n = backend.write_bytes(&part[..part.len().min(max.max(1))], more, dest, kind)?;
        return Ok(Moved::Bytes(n));
    }
    backend.send_hdtr(native, dest, kind)
}

/// One `send_file` call for the file part.
fn file_step<B: TransferBackend + ?Sized>(backend: &B, step: &Step<'_>) -> io::Result<Moved> {
    let Step {
        cur,
        file,
        dest,
        kind,
        max,
        probe_cache,
        no_sendfile,
    } = *step;
    let rel = cur.pos - cur.hdr_len();
    let left = cur.file_len - rel;
    let mut len = left.min(max.max(1) as u64);
    // The header's bytes count against the turn's budget, which puts every
    // step's end that many bytes short of a chunk boundary; the last step
    // takes such a tail with it rather than make a probe and a call of its
    // own (a 1 MiB Send with a 188-byte header was five sendfile calls).
    if left - len <= cur.hdr_len() {
        len = left;
    }
    let len = len as usize;
    let chunk = FileChunk {
        file,
        offset: cur.file_offset + rel,
        len,
        more_follows: (len as u64) < left || !cur.trailer.is_empty(),
        nowait: probe_cache && rel >= cur.prefetched_until,
    };
    if no_sendfile {
        // `sendfile` has no per-call non-blocking flag; `send` has.
        return backend.send_file_dontwait(chunk, dest, kind);
    }
    backend.send_file(chunk, dest, kind)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::ffi::CStr;
    use std::os::fd::{AsFd, OwnedFd};
    use std::sync::Mutex;

    /// What the fake does on its next call.
    #[derive(Debug, Clone, Copy)]
    enum Act {
        /// Accept at most this many bytes.
        Take(usize),
        /// EAGAIN.
        Full,
        /// EINTR.
        Intr,
        /// The data is not cached.
        Miss,
        /// Fail with this errno.
        Fail(i32),
    }

    /// A backend that records every byte "written" and follows a script.
    struct Fake {
        script: Mutex<VecDeque<Act>>,
        out: Mutex<Vec<u8>>,
        file: Vec<u8>,
        calls: Mutex<Vec<&'static str>>,
    }

    impl Fake {
        fn new(file: &[u8], script: &[Act]) -> Fake {
            Fake {
                script: Mutex::new(script.iter().copied().collect()),
                out: Mutex::new(Vec::new()),
                file: file.to_vec(),
                calls: Mutex::new(Vec::new()),
            }
        }

        fn next(&self, avail: usize) -> io::Result<Moved> {
            match self
                .script
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or(Act::Take(usize::MAX))
            {
                Act::Take(n) => Ok(Moved::Bytes(n.min(avail))),
                Act::Full => Ok(Moved::DestinationFull),
                Act::Intr => Err(io::Error::from_raw_os_error(libc::EINTR)),
                Act::Miss => Ok(Moved::NotCached),
                Act::Fail(e) => Err(io::Error::from_raw_os_error(e)),
            }
        }
    }

    impl TransferBackend for Fake {
        fn name(&self) -> &'static str {
            "fake"
        }

        fn send_file(
            &self,
            chunk: FileChunk<'_>,
            _dest: BorrowedFd<'_>,
            _kind: DestKind,
        ) -> io::Result<Moved> {
            self.calls.lock().unwrap().push("file");
            let start = (chunk.offset as usize).min(self.file.len());
            let avail = chunk.len.min(self.file.len() - start);
            let r = match self.next(avail)? {
                // Without nowait a real backend blocks and reads.
                Moved::NotCached if !chunk.nowait => Moved::Bytes(avail),
                other => other,
            };
            if let Moved::Bytes(n) = r {
                self.out
                    .lock()
                    .unwrap()
                    .extend_from_slice(&self.file[start..start + n]);
            }
            Ok(r)
        }

        fn send_file_dontwait(
            &self,
            chunk: FileChunk<'_>,
            dest: BorrowedFd<'_>,
            kind: DestKind,
        ) -> io::Result<Moved> {
            let r = self.send_file(chunk, dest, kind);
            let mut calls = self.calls.lock().unwrap();
            calls.pop();
            calls.push("dontwait");
            r
        }

        fn write_bytes(
            &self,
            buf: &[u8],
            _more: bool,
            _dest: BorrowedFd<'_>,
            _kind: DestKind,
        ) -> io::Result<usize> {
            self.calls.lock().unwrap().push("bytes");
            match self.next(buf.len())? {
                Moved::Bytes(n) => {
                    self.out.lock().unwrap().extend_from_slice(&buf[..n]);
                    Ok(n)
                }
                Moved::DestinationFull | Moved::NotCached => {
                    Err(io::Error::from_raw_os_error(libc::EAGAIN))
                }
            }
        }

        fn open_beneath(
            &self,
            _root: BorrowedFd<'_>,
            _path: &CStr,
        ) -> io::Result<(OwnedFd, libc::stat)> {
            Err(io::Error::from_raw_os_error(libc::ENOSYS))
        }
    }

    /// A stand-in destination, non-blocking as the daemon's are (the pump
    /// looks at the flag before each file call to a socket).
    fn dummy() -> OwnedFd {
        let (r, _w) = crate::sys::pipe().unwrap();
        crate::sys::set_nonblocking(r.as_fd(), true).unwrap();
        r
    }

    fn run(fake: &Fake, cur: &mut Cursor, budget: usize) -> Vec<PumpStop> {
        let fd = dummy();
        let mut stops = Vec::new();
        for _ in 0..1000 {
            let (_, stop) = pump(
                fake,
                cur,
                fd.as_fd(),
                fd.as_fd(),
                DestKind::StreamSocket,
                Limits {
                    chunk: 7,
                    budget,
                    probe_cache: true,
                    strict: false,
                },
            );
            let done = matches!(stop, PumpStop::Done | PumpStop::Failed(_));
            if let PumpStop::NotCached { offset, len } = stop {
                cur.mark_prefetched(offset, len);
            }
            stops.push(stop);
            if done {
                break;
            }
        }
        stops
    }

    const FILE: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";

    fn expected(h: &[u8], off: usize, len: usize, t: &[u8]) -> Vec<u8> {
        [h, &FILE[off..off + len], t].concat()
    }

    #[test]
    fn progress_counts_only_the_file_part() {
        // Issue 23, row 9's geometry: a 4 KiB header, a 2,093,056-byte
        // file, a 4,000-byte trailer. Progress once summed 2,097,152.
        let mut c = Cursor::new(vec![0; 4096], 0, 2_093_056, vec![0; 4000]);
        let total = 4096 + 2_093_056 + 4000;
        assert_eq!(c.file_bytes_between(0, total), 2_093_056);
        assert_eq!(c.file_bytes_between(0, 4096), 0, "the header");
        assert_eq!(c.file_bytes_between(total - 4000, total), 0, "the trailer");
        assert_eq!(c.file_bytes_between(0, 1 << 20), (1 << 20) - 4096);
        assert_eq!(c.file_bytes_between(1 << 20, 2 << 20), 1 << 20);
        // Moves that span a boundary count their file bytes only.
        assert_eq!(c.file_bytes_between(4000, 5000), 904);
        let mut at = |pos: u64| {
            c.pos = pos;
            c.file_done()
        };
        assert!(!at(4096), "only the header");
        assert!(!at(total - 4001), "one file byte left");
        assert!(at(total - 4000), "the trailer left");
        assert!(at(total));
        assert_eq!(c.file_bytes_between(total - 5000, total), 1000);
        // Summed over any split, never more than the file.
        let mut sum = 0;
        let mut at = 0;
        for step in [1000, 3096, 1 << 20, 5, (1 << 20) - 10, 123_456, total] {
            let to = (at + step).min(total);
            sum += c.file_bytes_between(at, to);
            at = to;
        }
        assert_eq!(sum, 2_093_056);
    }

    #[test]
    fn header_file_trailer_in_order_across_partial_writes() {
        let script = [
            Act::Take(1),
            Act::Full,
            Act::Intr,
            Act::Take(2),
            Act::Take(3),
            Act::Full,
            Act::Take(1),
            Act::Intr,
            Act::Take(4),
        ];
        let fake = Fake::new(FILE, &script);
        let mut cur = Cursor::new(b"HEAD:".to_vec(), 3, 20, b":TAIL".to_vec());
        let stops = run(&fake, &mut cur, 1 << 20);
        assert_eq!(stops.last(), Some(&PumpStop::Done));
        assert_eq!(
            *fake.out.lock().unwrap(),
            expected(b"HEAD:", 3, 20, b":TAIL")
        );
        assert_eq!(cur.pos, cur.total());
    }

    #[test]
    fn header_only_trailer_only_and_empty_file() {
        for (h, len, t) in [
            (&b"H"[..], 10usize, &b""[..]),
            (&b""[..], 10, &b"T"[..]),
            (&b"HH"[..], 0, &b"TT"[..]),
            (&b""[..], 0, &b""[..]),
        ] {
            let fake = Fake::new(FILE, &[Act::Take(1), Act::Full, Act::Take(1)]);
            let mut cur = Cursor::new(h.to_vec(), 0, len as u64, t.to_vec());
            let stops = run(&fake, &mut cur, 1 << 20);
            assert_eq!(stops.last(), Some(&PumpStop::Done));
            assert_eq!(*fake.out.lock().unwrap(), expected(h, 0, len, t));
        }
    }

    #[test]
    fn errors_at_every_boundary_stop_with_their_errno() {
        // Inside the header, at the first file byte, inside the file, inside
        // the trailer.
        for (pre, errno) in [
            (vec![Act::Take(2)], libc::EPIPE),
            (vec![Act::Take(5)], libc::ENOSPC),
            (vec![Act::Take(5), Act::Take(3)], libc::EIO),
            (
                vec![
                    Act::Take(5),
                    Act::Take(7),
                    Act::Take(7),
                    Act::Take(6),
                    Act::Take(2),
                ],
                libc::EPIPE,
            ),
        ] {
            let mut script = pre.clone();
            script.push(Act::Fail(errno));
            let fake = Fake::new(FILE, &script);
            let mut cur = Cursor::new(b"HEAD:".to_vec(), 0, 20, b":TAIL".to_vec());
            let stops = run(&fake, &mut cur, 1 << 20);
            assert_eq!(
                stops.last(),
                Some(&PumpStop::Failed(Errno::from_raw(errno)))
            );
            let sent: usize = pre
                .iter()
                .map(|a| if let Act::Take(n) = a { *n } else { 0 })
                .sum();
            assert_eq!(cur.pos as usize, sent);
            assert_eq!(fake.out.lock().unwrap().len(), sent);
        }
    }

    #[test]
    fn file_data_to_a_socket_whose_flag_is_clear_never_goes_by_sendfile() {
        // The flag is looked at before every file call: flipped between
        // two turns, the call follows it.
        let (sock, _peer) = std::os::unix::net::UnixStream::pair().unwrap();
        let limits = Limits {
            chunk: 7,
            budget: 7,
            probe_cache: false,
            strict: false,
        };
        let fake = Fake::new(FILE, &[]);
        let mut cur = Cursor::new(Vec::new(), 0, 30, Vec::new());
        let file = dummy();
        let kind = DestKind::StreamSocket;
        crate::sys::set_nonblocking(sock.as_fd(), false).unwrap();
        pump(&fake, &mut cur, file.as_fd(), sock.as_fd(), kind, limits);
        crate::sys::set_nonblocking(sock.as_fd(), true).unwrap();
        pump(&fake, &mut cur, file.as_fd(), sock.as_fd(), kind, limits);
        // Strict (caught once): never sendfile, whatever the flag says.
        let strict = Limits {
            strict: true,
            ..limits
        };
        pump(&fake, &mut cur, file.as_fd(), sock.as_fd(), kind, strict);
        assert_eq!(
            *fake.calls.lock().unwrap(),
            ["dontwait", "file", "dontwait"]
        );
        assert_eq!(*fake.out.lock().unwrap(), FILE[..21].to_vec());
    }

    #[test]
    fn budget_bounds_one_turn() {
        let fake = Fake::new(FILE, &[]);
        let mut cur = Cursor::new(Vec::new(), 0, 30, Vec::new());
        let fd = dummy();
        let (moved, stop) = pump(
            &fake,
            &mut cur,
            fd.as_fd(),
            fd.as_fd(),
            DestKind::Pipe,
            Limits {
                chunk: 7,
                budget: 10,
                probe_cache: false,
                strict: false,
            },
        );
        assert_eq!(stop, PumpStop::BudgetSpent);
        assert!((10..=14).contains(&moved), "moved {moved}");
    }

    #[test]
    fn a_tail_as_short_as_the_header_rides_with_the_last_step() {
        // A 2-byte header shifts each step's end 2 bytes short of the chunk
        // (7): 5 + 7 + 7 + 7 of 28 file bytes leaves 2, which the last
        // step takes (five file calls before, four now). A longer tail
        // keeps its own step.
        /// The file calls of a whole Send of `len` file bytes after "HH".
        fn file_calls(len: usize) -> usize {
            let fake = Fake::new(FILE, &[]);
            let mut cur = Cursor::new(b"HH".to_vec(), 0, len as u64, Vec::new());
            let stops = run(&fake, &mut cur, 7);
            assert_eq!(stops.last(), Some(&PumpStop::Done));
            assert_eq!(*fake.out.lock().unwrap(), expected(b"HH", 0, len, b""));
            let calls = fake.calls.lock().unwrap();
            calls.iter().filter(|c| **c == "file").count()
        }
        assert_eq!(file_calls(28), 4);
        assert_eq!(file_calls(29), 5);
    }

    #[test]
    fn cache_miss_asks_for_prefetch_then_goes_on_without_probing() {
        let fake = Fake::new(FILE, &[Act::Take(4), Act::Miss, Act::Miss]);
        let mut cur = Cursor::new(Vec::new(), 2, 30, Vec::new());
        let stops = run(&fake, &mut cur, 1 << 20);
        assert_eq!(stops[0], PumpStop::NotCached { offset: 6, len: 26 });
        assert_eq!(stops.last(), Some(&PumpStop::Done));
        assert_eq!(*fake.out.lock().unwrap(), expected(b"", 2, 30, b""));
    }

    #[test]
    fn interrupt_storm_yields_instead_of_spinning() {
        let fake = Fake::new(FILE, &[Act::Intr; 40]);
        let mut cur = Cursor::new(Vec::new(), 0, 10, Vec::new());
        let fd = dummy();
        let (moved, stop) = pump(
            &fake,
            &mut cur,
            fd.as_fd(),
            fd.as_fd(),
            DestKind::Pipe,
            Limits {
                chunk: 7,
                budget: 100,
                probe_cache: false,
                strict: false,
            },
        );
        assert_eq!((moved, stop), (0, PumpStop::BudgetSpent));
    }

    #[test]
    fn file_shrinking_under_us_is_an_io_error() {
        let fake = Fake::new(&FILE[..5], &[]);
        let mut cur = Cursor::new(Vec::new(), 0, 10, Vec::new());
        let stops = run(&fake, &mut cur, 1 << 20);
        assert_eq!(stops.last(), Some(&PumpStop::Failed(Errno::EIO)));
        assert_eq!(cur.pos, 5);
    }

    #[test]
    fn native_hdtr_accounting_spans_the_parts() {
        /// A backend whose send_hdtr moves a fixed number of bytes across
        /// the parts, like sf_hdtr.
        struct Native {
            out: Mutex<Vec<u8>>,
            step: usize,
        }
        impl TransferBackend for Native {
            fn name(&self) -> &'static str {
                "native"
            }
            fn send_file(
                &self,
                c: FileChunk<'_>,
                _d: BorrowedFd<'_>,
                _k: DestKind,
            ) -> io::Result<Moved> {
                let s = c.offset as usize;
                let n = c.len.min(self.step);
                self.out.lock().unwrap().extend_from_slice(&FILE[s..s + n]);
                Ok(Moved::Bytes(n))
            }
            fn send_hdtr(
                &self,
                c: HdtrChunk<'_>,
                _d: BorrowedFd<'_>,
                _k: DestKind,
            ) -> io::Result<Moved> {
                let mut all = c.header.to_vec();
                let s = c.file.offset as usize;
                all.extend_from_slice(&FILE[s..s + c.file.len]);
                all.extend_from_slice(c.trailer);
                let n = all.len().min(self.step);
                self.out.lock().unwrap().extend_from_slice(&all[..n]);
                Ok(Moved::Bytes(n))
            }
            fn open_beneath(
                &self,
                _r: BorrowedFd<'_>,
                _p: &CStr,
            ) -> io::Result<(OwnedFd, libc::stat)> {
                Err(io::Error::from_raw_os_error(libc::ENOSYS))
            }
        }
        let b = Native {
            out: Mutex::new(Vec::new()),
            step: 4,
        };
        /// Pumps to a stream socket stand-in until done (at most 100 calls).
        fn pump_until_done(b: &Native, cur: &mut Cursor, chunk: usize) {
            let fd = dummy();
            let limits = Limits {
                chunk,
                budget: 1 << 20,
                probe_cache: false,
                strict: false,
            };
            for _ in 0..100 {
                let (_, stop) = pump(
                    b,
                    cur,
                    fd.as_fd(),
                    fd.as_fd(),
                    DestKind::StreamSocket,
                    limits,
                );
                if stop == PumpStop::Done {
                    break;
                }
            }
        }
        let mut cur = Cursor::new(b"HDR".to_vec(), 1, 9, b"TR".to_vec());
        pump_until_done(&b, &mut cur, 64);
        assert!(cur.is_done());
        let want = [&b"HDR"[..], &FILE[1..10], b"TR"].concat();
        assert_eq!(*b.out.lock().unwrap(), want);

        // A range longer than one chunk: the first native call carries the
        // header and one chunk of the file, never the trailer (found by the
        // hdtr_pump fuzz target).
        let b = Native {
            out: Mutex::new(Vec::new()),
            step: 1000,
        };
        let mut cur = Cursor::new(b"HDR".to_vec(), 1, 20, b"TR".to_vec());
        pump_until_done(&b, &mut cur, 4);
        assert!(cur.is_done());
        let want = [&b"HDR"[..], &FILE[1..21], b"TR"].concat();
        assert_eq!(*b.out.lock().unwrap(), want);
    }
}
