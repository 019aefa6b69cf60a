//! The header/file/trailer state machine (`sendfiled_core::server::pump`)
//! driven by a fake backend whose every answer comes from the fuzz input:
//! partial writes, full destinations, `EINTR`, cache misses, errors, a file
//! shorter than promised, and a native `sf_hdtr`-style call or separate
//! calls. After every `pump` call the bytes "written" must be exactly the
//! first `pos` bytes of `header | file range | trailer`, and a transfer that
//! says it is done must have written all of them.
#![no_main]

use std::cell::RefCell;
use std::collections::VecDeque;
use std::ffi::CStr;
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};

use libfuzzer_sys::fuzz_target;
use sendfiled_core::backend::{send_parts, DestKind, FileChunk, HdtrChunk, Moved, TransferBackend};
use sendfiled_core::server::pump::{pump, Cursor, Limits, PumpStop};

/// What the fake does on one call.
#[derive(Debug, Clone, Copy)]
enum Act {
    Take(usize),
    All,
    Full,
    Intr,
    Miss,
    Fail(i32),
}

struct Fake {
    script: RefCell<VecDeque<Act>>,
    out: RefCell<Vec<u8>>,
    file: Vec<u8>,
    native: bool,
}

// The fake is used from one thread; the trait wants Sync for the daemon.
unsafe impl Sync for Fake {}

impl Fake {
    fn next(&self) -> Act {
        self.script.borrow_mut().pop_front().unwrap_or(Act::All)
    }

    /// The file bytes a call for `chunk` can see.
    fn file_part(&self, chunk: &FileChunk<'_>) -> &[u8] {
        let start = (chunk.offset as usize).min(self.file.len());
        let end = start.saturating_add(chunk.len).min(self.file.len());
        &self.file[start..end]
    }

    /// Applies `act` to `avail` bytes on offer: how many go out.
    fn take(&self, act: Act, avail: &[u8], nowait: bool) -> io::Result<Moved> {
        let n = match act {
            Act::Take(n) => n.min(avail.len()),
            Act::All => avail.len(),
            Act::Full => return Ok(Moved::DestinationFull),
            Act::Intr => return Err(io::Error::from_raw_os_error(libc::EINTR)),
            Act::Miss if nowait => return Ok(Moved::NotCached),
            Act::Miss => avail.len(),
            Act::Fail(e) => return Err(io::Error::from_raw_os_error(e)),
        };
        self.out.borrow_mut().extend_from_slice(&avail[..n]);
        Ok(Moved::Bytes(n))
    }
}

impl TransferBackend for Fake {
    fn name(&self) -> &'static str {
        "fuzz"
    }

    fn send_file(
        &self,
        chunk: FileChunk<'_>,
        _d: BorrowedFd<'_>,
        _k: DestKind,
    ) -> io::Result<Moved> {
        let act = self.next();
        let avail = self.file_part(&chunk).to_vec();
        self.take(act, &avail, chunk.nowait)
    }

    fn write_bytes(
        &self,
        buf: &[u8],
        _m: bool,
        _d: BorrowedFd<'_>,
        _k: DestKind,
    ) -> io::Result<usize> {
        match self.take(self.next(), buf, false)? {
            Moved::Bytes(n) => Ok(n),
            _ => Err(io::Error::from_raw_os_error(libc::EAGAIN)),
        }
    }

    fn send_hdtr(&self, c: HdtrChunk<'_>, d: BorrowedFd<'_>, k: DestKind) -> io::Result<Moved> {
        if !self.native {
            return send_parts(self, c, d, k);
        }
        // As the FreeBSD and macOS backends do: the trailer goes with the
        // call only if the file holds the whole part
        // (`bsd_sendfile::file_covers`), and each part goes out only once
        // the ones before it went out whole.
        let mut all = c.header.to_vec();
        let part = self.file_part(&c.file);
        all.extend_from_slice(part);
        if part.len() == c.file.len {
            all.extend_from_slice(c.trailer);
        }
        self.take(self.next(), &all, c.file.nowait)
    }

    fn open_beneath(&self, _r: BorrowedFd<'_>, _p: &CStr) -> io::Result<(OwnedFd, libc::stat)> {
        Err(io::Error::from_raw_os_error(libc::ENOSYS))
    }
}

/// Reads the fuzz input a piece at a time, zeros when it runs out.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        let (b, rest) = self
            .0
            .split_first()
            .map(|(b, r)| (*b, r))
            .unwrap_or((0, &[]));
        self.0 = rest;
        b
    }

    fn u16(&mut self) -> u16 {
        u16::from(self.byte()) | (u16::from(self.byte()) << 8)
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let flags = input.byte();
    let native = flags & 1 != 0;
    let probe_cache = flags & 2 != 0;
    // A destination strictness is asked for (its open file description was
    // caught blocking): file data never goes by a native call.
    let strict = flags & 8 != 0;
    let hlen = usize::from(input.byte() % 64);
    let tlen = usize::from(input.byte() % 64);
    let file_len_actual = usize::from(input.u16() % 2048);
    let offset = u64::from(input.u16() % 2048);
    let range_len = u64::from(input.u16() % 2048);
    let chunk = usize::from(input.byte()) + 1;
    let budget = usize::from(input.u16()) + 1;
    let header: Vec<u8> = (0..hlen).map(|i| 0xA0 ^ i as u8).collect();
    let trailer: Vec<u8> = (0..tlen).map(|i| 0x50 ^ i as u8).collect();
    let file: Vec<u8> = (0..file_len_actual).map(|i| (i * 7 + 3) as u8).collect();
    // The daemon clips the range to the size at open; the file may shrink
    // afterwards: `range_len` may reach past the end of `file`.
    let script: VecDeque<Act> = input
        .0
        .chunks(2)
        .map(|p| {
            let arg = usize::from(p.get(1).copied().unwrap_or(0));
            match p[0] % 8 {
                0 | 1 => Act::Take(arg),
                2 => Act::All,
                3 => Act::Full,
                4 => Act::Intr,
                5 => Act::Miss,
                6 if arg % 16 == 0 => Act::Fail(libc::EPIPE),
                _ => Act::Take(arg % 8),
            }
        })
        .collect();
    let fake = Fake {
        script: RefCell::new(script),
        out: RefCell::new(Vec::new()),
        file,
        native,
    };
    let mut expected = header.clone();
    let fstart = (offset as usize).min(fake.file.len());
    let fend = (offset as usize + range_len as usize).min(fake.file.len());
    expected.extend_from_slice(&fake.file[fstart..fend]);
    let file_short = fend - fstart < range_len as usize;
    if !file_short {
        expected.extend_from_slice(&trailer);
    }
    let mut cur = Cursor::new(header, offset, range_len, trailer);
    // SAFETY: descriptor 0 is only passed through to the fake, which never
    // uses it.
    let fd = unsafe { BorrowedFd::borrow_raw(0) };
    let limits = Limits {
        chunk,
        budget,
        probe_cache,
        strict,
    };
    for _ in 0..100_000 {
        let before = cur.pos;
        let (moved, stop) = pump(&fake, &mut cur, fd, fd, DestKind::StreamSocket, limits);
        assert_eq!(cur.pos - before, moved, "moved counts what pos advanced");
        let out = fake.out.borrow();
        assert!(cur.pos <= cur.total());
        assert_eq!(out.len() as u64, cur.pos, "bytes out == pos");
        assert!(
            out.len() <= expected.len() && out[..] == expected[..out.len()],
            "bytes out are a prefix of header|file|trailer: {cur:?} {stop:?}\n out {:?}\n want {:?}",
            &out[..],
            expected
        );
        match stop {
            PumpStop::Done => {
                assert!(!file_short, "done although the file is short");
                assert_eq!(out.len(), expected.len());
                return;
            }
            PumpStop::Failed(errno) => {
                assert!((errno as i32) > 0);
                return;
            }
            PumpStop::NotCached { offset, len } => {
                assert!(len > 0);
                cur.mark_prefetched(offset, len);
            }
            PumpStop::BudgetSpent | PumpStop::DestinationFull | PumpStop::Blocked => {}
        }
    }
});
