//! The macOS [`TransferBackend`]: `sendfile(2)` with native headers/trailers
//! (`sf_hdtr`) to stream sockets, the portable [`ReadWriteCopy`] to
//! everything else, and the checked walk of
//! [`beneath::open_beneath_by_walk`] for path confinement (macOS has no
//! `RESOLVE_BENEATH`).
//!
//! | destination | file data | header + file + trailer |
//! |---|---|---|
//! | stream socket | `sendfile` | `sendfile` with `sf_hdtr` |
//! | pipe, file, other | `pread` + `write` | one part per call ([`send_parts`]) |
//!
//! macOS `sendfile` serves TCP sockets only; where it refuses a socket
//! (`ENOTSUP`, `ENOTSOCK`, `EINVAL` for a UNIX-domain stream, say) with
//! nothing sent, the portable paths take over for that call.
//!
//! `nowait` is ignored: macOS has no cheap page-cache probe (no
//! `SF_NODISKIO`, no `RWF_NOWAIT`), so this backend never answers
//! [`Moved::NotCached`] and a chunk that is not in memory is read from disk
//! by the call itself, on whichever thread made it. `more_follows` has no
//! effect either (a server wanting full segments sets `TCP_NOPUSH`).
//!
//! What a `sendfile` result means (partial progress, `EAGAIN`) is decided by
//! [`sendfiled_core::bsd_sendfile`], which is tested everywhere; this file
//! only makes the calls.
//!
//! The crate is empty on other systems.
#![cfg(target_os = "macos")]

use std::ffi::CStr;
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};

use sendfiled_core::backend::{
    send_parts, DestKind, FileChunk, HdtrChunk, Moved, ReadWriteCopy, TransferBackend,
};
use sendfiled_core::bsd_sendfile;
use sendfiled_core::sys::beneath;

/// The macOS backend. Stateless.
#[derive(Debug, Default)]
pub struct MacosBackend;

/// The backend of this system, under the name every backend crate exports
/// (see [`sendfiled_core::backend`]'s "What a backend crate exports").
pub type Backend = MacosBackend;

/// The backend as the daemon runs it (the same contract in every backend
/// crate).
pub fn new_backend() -> Backend {
    MacosBackend
}

/// Errors with which `sendfile` says "not this kind of socket".
fn refused(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOTSUP) | Some(libc::EOPNOTSUPP) | Some(libc::ENOTSOCK) | Some(libc::EINVAL)
    )
}

/// The userspace `sf_hdtr`: `send` for the bytes, [`ReadWriteCopy`] for the
/// file part.
fn hdtr_by_copy(chunk: HdtrChunk<'_>, dest: BorrowedFd<'_>) -> io::Result<Moved> {
    bsd_sendfile::hdtr_in_parts(
        chunk,
        |b| bsd_sendfile::write_bytes_by_kind(b, dest, DestKind::StreamSocket),
        |c| ReadWriteCopy::send_file(c, dest, DestKind::StreamSocket),
    )
}

/// Sends what fits of the header, the file part and (if the file covers
/// the part) the trailer with one `sendfile` call.
///
/// `len` goes in as header bytes + file bytes (macOS counts the headers
/// toward it) and comes back as everything sent, trailer included; the
/// kernel sends the trailer only after the whole file part. Because it would
/// also send the trailer after a file that ended early, the trailer is
/// passed only when the file covers the part; an empty file part (where a
/// `len` of 0 would mean "to the end of the file") goes through
/// [`bsd_sendfile::hdtr_in_parts`].
fn sendfile_hdtr(chunk: HdtrChunk<'_>, dest: BorrowedFd<'_>) -> io::Result<Moved> {
    let file = chunk.file;
    if file.len == 0 {
        return hdtr_by_copy(chunk, dest);
    }
    let trailer = if !chunk.trailer.is_empty()
        && bsd_sendfile::file_covers(file.file, file.offset, file.len)?
    {
        chunk.trailer
    } else {
        &[]
    };
    let len = libc::off_t::try_from(chunk.header.len() + file.len)
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let (r, sent) = sendfile(file.file, dest, file.offset, len, chunk.header, trailer);
    match r {
        Err(e) if sent == 0 && refused(&e) => hdtr_by_copy(chunk, dest),
        r => bsd_sendfile::outcome(r, sent),
    }
}

impl TransferBackend for MacosBackend {
    fn name(&self) -> &'static str {
        "macos-sendfile"
    }

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

    /// Native `sf_hdtr` on stream sockets (see [`sendfile_hdtr`]);
    /// [`send_parts`] for other destinations.
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

    /// The checked walk of [`beneath::open_beneath_by_walk`].
    fn open_beneath(&self, root: BorrowedFd<'_>, path: &CStr) -> io::Result<(OwnedFd, libc::stat)> {
        beneath::open_beneath_by_walk(root, path)
    }
}

/// `sendfile(2)` (through nix) of the file at `offset` to the socket `sock`,
/// with `header` before and `trailer` after. `len` is the header and file
/// bytes to send (never 0: that means "to the end of the file"). Returns the
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
    len: libc::off_t,
    header: &[u8],
    trailer: &[u8],
) -> (io::Result<()>, u64) {
    let Ok(offset) = libc::off_t::try_from(offset) else {
        return (Err(io::Error::from_raw_os_error(libc::EINVAL)), 0);
    };
    let (r, sent) = nix::sys::sendfile::sendfile(
        file,
        sock,
        offset,
        Some(len),
        bsd_sendfile::hdtr_part(&[header]),
        bsd_sendfile::hdtr_part(&[trailer]),
    );
    (r.map_err(io::Error::from), bsd_sendfile::sent_bytes(sent))
}
