//! The request socket: created with restrictive permissions, refusing to
//! steal a live server's name, replacing a dead one's socket file; and the
//! buffers its datagrams are received into, several at a time. The system
//! calls are [`sys`]'s; nothing here differs between systems.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};

use crate::protocol::MAX_REQUEST_LEN;
use crate::sys;

/// A bound request socket and the file it created.
#[derive(Debug)]
pub struct RequestSocket {
    /// The socket.
    pub fd: OwnedFd,
    /// The socket file to remove at shutdown (`None` when the socket came
    /// from the service manager).
    pub path: Option<PathBuf>,
}

/// Binds a datagram socket at `path` with permissions `mode`.
///
/// If a socket file is already there: when a server answers on it, fail with
/// `EADDRINUSE`; when nothing does (`ECONNREFUSED`), it is a dead server's,
/// so remove it and bind. Any other file there is left alone (`EEXIST`).
pub fn bind(path: &Path, mode: u32) -> io::Result<RequestSocket> {
    match std::fs::symlink_metadata(path) {
        Ok(md) => {
            use std::os::unix::fs::FileTypeExt;
            if !md.file_type().is_socket() {
                return Err(io::Error::from_raw_os_error(libc::EEXIST));
            }
            if owner_is_alive(path)? {
                return Err(io::Error::from_raw_os_error(libc::EADDRINUSE));
            }
            log::info!("removing stale socket {}", path.display());
            std::fs::remove_file(path)?;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    // Bind under a restrictive umask so the socket never exists with wider
    // permissions than asked, not even between bind and chmod. The mask is
    // the process's: two servers binding at once in one process (the
    // tests, an embedding program) would otherwise restore each other's
    // 0o177 for good.
    static UMASK_WINDOW: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let bound = {
        let _window = UMASK_WINDOW.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: umask only changes this process's file-creation mask.
        let old = unsafe { libc::umask(0o177) };
        let bound = UnixDatagram::bind(path);
        // SAFETY: as above, restoring it.
        unsafe { libc::umask(old) };
        bound
    };
    let sock = bound?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    prepare(sock.as_fd())?;
    Ok(RequestSocket {
        fd: sock.into(),
        path: Some(path.to_owned()),
    })
}

/// How long a socket file that still takes connections is watched for its
/// owner's death before the name counts as in use.
const STALE_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Whether a daemon still serves the socket at `path` (`connect(2)`
/// succeeds) or it is stale (`ECONNREFUSED`). A daemon that has just died
/// can keep its socket connectable for a moment: the kernel tears down a
/// dead process's io_uring, whose polls hold the socket open, after the
/// process is gone. So a connectable socket is asked again for up to
/// [`STALE_GRACE`] before it counts as live; a live daemon stays
/// connectable, so its name is never taken.
fn owner_is_alive(path: &Path) -> io::Result<bool> {
    let deadline = std::time::Instant::now() + STALE_GRACE;
    loop {
        let probe = UnixDatagram::unbound()?;
        match probe.connect(path) {
            Ok(()) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(10))
            }
            Ok(()) => return Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) => return Ok(false),
            Err(e) => return Err(e),
        }
    }
}

/// Makes a request socket ready for the loop: non-blocking, a receive buffer
/// for many largest requests, credentials on every datagram where the OS
/// offers it.
pub fn prepare(fd: BorrowedFd<'_>) -> io::Result<()> {
    sys::set_nonblocking(fd, true)?;
    sys::raise_socket_buffer(fd, libc::SO_RCVBUF, 64 * MAX_REQUEST_LEN);
    sys::enable_passcred(fd)?;
    Ok(())
}

/// Datagrams one [`RecvBatch::recv`] takes at most.
pub const BATCH: usize = sys::RECV_BATCH;

/// Receive buffers for [`BATCH`] request datagrams, allocated once and
/// reused for every batch ([`sys::recv_batch`] says how many one call
/// takes on each system).
#[derive(Debug, Default)]
pub struct RecvBatch {
    bufs: Vec<u8>,
    buf_len: usize,
    lens: [usize; BATCH],
}

impl RecvBatch {
    /// Room for [`BATCH`] datagrams of up to `buf_len` bytes each.
    pub fn new(buf_len: usize) -> RecvBatch {
        RecvBatch {
            bufs: vec![0u8; buf_len * BATCH],
            buf_len,
            lens: [0; BATCH],
        }
    }

    /// The payload of datagram `i` of the last batch.
    pub fn payload(&self, i: usize) -> &[u8] {
        let start = i * self.buf_len;
        &self.bufs[start..start + self.lens[i]]
    }

    /// Receives a batch into `out` (cleared first). Returns whether the
    /// queue is known to be empty now; `WouldBlock` when nothing was queued.
    pub fn recv(&mut self, sock: BorrowedFd<'_>, out: &mut Vec<sys::Received>) -> io::Result<bool> {
        let empty = sys::recv_batch(sock, &mut self.bufs, self.buf_len, out)?;
        for (len, r) in self.lens.iter_mut().zip(out.iter()) {
            *len = r.len;
        }
        Ok(empty)
    }
}

impl Drop for RequestSocket {
    fn drop(&mut self) {
        if let Some(p) = &self.path {
            let _ = std::fs::remove_file(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_name_is_refused_dead_one_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("srv");
        let a = bind(&p, 0o600).unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let err = bind(&p, 0o600).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EADDRINUSE));
        // A dead server: the file stays but nobody listens.
        let dead = UnixDatagram::bind(dir.path().join("dead")).unwrap();
        drop(dead);
        let b = bind(&dir.path().join("dead"), 0o660).unwrap();
        drop(a);
        assert!(!p.exists(), "socket file removed when the server goes");
        drop(b);
        std::fs::write(&p, b"not a socket").unwrap();
        assert_eq!(
            bind(&p, 0o600).unwrap_err().raw_os_error(),
            Some(libc::EEXIST)
        );
    }
}
