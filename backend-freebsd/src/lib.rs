//! The FreeBSD [`TransferBackend`]: `sendfile(2)` with `SF_NODISKIO` and
//! native headers/trailers (`sf_hdtr`) to stream sockets, the portable
//! [`ReadWriteCopy`](sendfiled_core::backend::ReadWriteCopy) to everything else, and `O_RESOLVE_BENEATH` (FreeBSD
//! 13 and later) for path confinement.
//!
//! | destination | file data | header + file + trailer |
//! |---|---|---|
//! | stream socket | `sendfile` (`SF_NODISKIO` when `nowait`) | `sendfile` with `sf_hdtr` |
//! | pipe, file, other | `pread` + `write` | one part per call ([`send_parts`]) |
//!
//! What a `sendfile` result means (partial progress, `EAGAIN`, `EBUSY`) is
//! decided by [`sendfiled_core::bsd_sendfile`], which is tested everywhere;
//! this file only makes the calls.
//!
//! `nowait` has no effect on the read/write path: FreeBSD has no cheap
//! page-cache probe for `pread`, so a pipe or file destination may block on
//! the disk. `more_follows` has no effect either (`SF_NOPUSH` is gone); a
//! server wanting full segments sets `TCP_NOPUSH` on the socket.
//!
//! The crate is empty on other systems.
#![cfg(target_os = "freebsd")]

use std::ffi::CStr;
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};

use nix::sys::sendfile::SfFlags;
use sendfiled_core::backend::{send_parts, DestKind, FileChunk, HdtrChunk, Moved, TransferBackend};
use sendfiled_core::bsd_sendfile;
use sendfiled_core::sys::beneath::{self, OpenAttempt, Resolve};
use sendfiled_core::sys::fsfacts::FsFacts;

/// The FreeBSD backend. Stateless.
#[derive(Debug, Default)]
pub struct FreeBsdBackend {
    /// What the kernel lacks (nothing learnt per filesystem here yet).
    facts: FsFacts,
}

/// The backend of this system, under the name every backend crate exports
/// (see [`sendfiled_core::backend`]'s "What a backend crate exports").
pub type Backend = FreeBsdBackend;

/// The backend as the daemon runs it (the same contract in every backend
/// crate).
pub fn new_backend() -> Backend {
    FreeBsdBackend::default()
}

/// Sends what fits of `header`, the file part and (if the file covers the
/// part) `trailer` with one `sendfile` call.
fn sendfile_hdtr(chunk: HdtrChunk<'_>, dest: BorrowedFd<'_>) -> io::Result<Moved> {
    let file = chunk.file;
    // nbytes 0 would mean "to the end of the file".
    if file.len == 0 {
        return bsd_sendfile::hdtr_in_parts(
            chunk,
            |b| bsd_sendfile::write_bytes_by_kind(b, dest, DestKind::StreamSocket),
            |_| Ok(Moved::Bytes(0)),
        );
    }
    let trailer = if !chunk.trailer.is_empty()
        && bsd_sendfile::file_covers(file.file, file.offset, file.len)?
    {
        chunk.trailer
    } else {
        &[]
    };
    let (r, sent) = sendfile(
        file.file,
        dest,
        file.offset,
        file.len,
        chunk.header,
        trailer,
        file.nowait,
    );
    bsd_sendfile::outcome(r, sent)
}

impl TransferBackend for FreeBsdBackend {
    fn name(&self) -> &'static str {
        "freebsd-sendfile"
    }

    /// `sendfile` to stream sockets: with `nowait`, `SF_NODISKIO` makes a
    /// page that is not in memory an `EBUSY` ([`Moved::NotCached`]) instead
    /// of a disk read, after whatever could be sent from memory was sent
    /// (reported first, as [`Moved::Bytes`]).
    fn send_file(
        &self,
        chunk: FileChunk<'_>,
        dest: BorrowedFd<'_>,
        kind: DestKind,
    ) -> io::Result<Moved> {
        bsd_sendfile::send_file_by_kind(chunk, dest, kind, sendfile_hdtr)
    }

    /// `send(MSG_NOSIGNAL)` on sockets (a closed peer is `EPIPE`, not a
    /// signal), `write` elsewhere.
    fn write_bytes(
        &self,
        buf: &[u8],
        more_follows: bool,
        dest: BorrowedFd<'_>,
        kind: DestKind,
    ) -> io::Result<usize> {
        let _ = more_follows;
        bsd_sendfile::write_bytes_by_kind(buf, dest, kind)
    }

    /// Native `sf_hdtr` on stream sockets. The count is `*sbytes`, which
    /// covers header, file and trailer bytes in order; the kernel sends the
    /// trailer only after the whole file part. Because it would also send
    /// the trailer after a file that ended early, the trailer is passed only
    /// when the file covers the part ([`bsd_sendfile::file_covers`]); an empty
    /// file part goes through [`bsd_sendfile::hdtr_in_parts`]. Other
    /// destinations: [`send_parts`].
    fn send_hdtr(
        &self,
        chunk: HdtrChunk<'_>,
        dest: BorrowedFd<'_>,
        kind: DestKind,
    ) -> io::Result<Moved> {
        match kind {
            DestKind::StreamSocket => sendfile_hdtr(chunk, dest),
            _ => send_parts(self, chunk, dest, kind),
        }
    }

    /// `openat(O_RESOLVE_BENEATH)` after `fstatat(AT_RESOLVE_BENEATH)`
    /// ([`beneath::open_beneath`]): the rules of [`beneath`], with
    /// `ENOTCAPABLE` reported as `EXDEV`, as on Linux. Needs FreeBSD 13.
    fn open_beneath(&self, root: BorrowedFd<'_>, path: &CStr) -> io::Result<(OwnedFd, libc::stat)> {
        match beneath::open_beneath(root, path, Resolve::default(), &self.facts) {
            OpenAttempt::Done(r) => r,
            // Not asked for: only a cached lookup answers it.
            OpenAttempt::WouldBlock => Err(io::Error::from_raw_os_error(libc::EAGAIN)),
        }
    }
}

/// `sendfile(2)` (through nix) of `len` (> 0) bytes of `file` at `offset` to
/// the socket `sock`, with `header` before and `trailer` after. Returns the
/// call's result and the bytes it sent, headers and trailers included, also
/// when it fails.
///
/// An empty header or trailer is passed as none, so the file-data path
/// builds no `sf_hdtr` at all; with one, nix builds it in a small
/// allocation, which happens once or twice per transfer (the call that
/// carries the header, the one that carries the trailer).
fn sendfile(
    file: BorrowedFd<'_>,
    sock: BorrowedFd<'_>,
    offset: u64,
    len: usize,
    header: &[u8],
    trailer: &[u8],
    nowait: bool,
) -> (io::Result<()>, u64) {
    let Ok(offset) = libc::off_t::try_from(offset) else {
        return (Err(io::Error::from_raw_os_error(libc::EINVAL)), 0);
    };
    let flags = if nowait {
        SfFlags::SF_NODISKIO
    } else {
        SfFlags::empty()
    };
    let (r, sent) = nix::sys::sendfile::sendfile(
        file,
        sock,
        offset,
        Some(len),
        bsd_sendfile::hdtr_part(&[header]),
        bsd_sendfile::hdtr_part(&[trailer]),
        flags,
        0,
    );
    (r.map_err(io::Error::from), bsd_sendfile::sent_bytes(sent))
}
