//! Socket activation: taking the request socket from a service manager
//! (systemd's `LISTEN_FDS` protocol, used with `ListenDatagram=`).
//!
//! The manager binds the socket, starts the daemon with it as descriptor 3,
//! and sets `LISTEN_PID` to the daemon's pid and `LISTEN_FDS` to the number
//! of descriptors passed. The variables are meant for this process only, so
//! they are removed once read: a child started later must not take them as
//! its own.
//!
//! Credentials: the manager creates the socket, so datagrams may wait in
//! it before the daemon runs. Linux attaches credentials to a datagram only
//! if the socket asked for them (`SO_PASSCRED`) when it was sent; one sent
//! earlier arrives with none (pid 0, uid and gid 65534). The unit sets
//! `PassCredentials=yes`, so that the socket asks from its creation; an
//! inherited socket that did not is made to ask at once, with a warning, and
//! a datagram that came without credentials is refused with `EACCES`
//! (admission), never served as uid 65534.

use std::io;
use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd, RawFd};

use crate::error::StartError;

/// The first descriptor a service manager passes (`SD_LISTEN_FDS_START`).
pub const LISTEN_FDS_START: RawFd = 3;

/// What the environment says, read once and then removed.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Listen {
    /// No socket for us (variables absent, or meant for another process).
    None,
    /// `n` descriptors from `LISTEN_FDS_START` on.
    Fds(u32),
}

fn parse(
    listen_pid: Option<&str>,
    listen_fds: Option<&str>,
    our_pid: u32,
) -> Result<Listen, StartError> {
    let Some(pid) = listen_pid else {
        return Ok(Listen::None);
    };
    match pid.trim().parse::<u32>() {
        Ok(p) if p == our_pid => {}
        // Another process's variables (inherited through a parent that did
        // not clear them): not ours to use.
        Ok(_) => return Ok(Listen::None),
        Err(_) => {
            return Err(StartError::new(
                libc::EINVAL,
                format!("LISTEN_PID={pid:?} is not a pid"),
            ))
        }
    }
    let fds = listen_fds.unwrap_or("0");
    match fds.trim().parse::<u32>() {
        Ok(0) => Err(StartError::new(
            libc::EBADF,
            "LISTEN_PID names this process but LISTEN_FDS passes no socket",
        )),
        Ok(n) => Ok(Listen::Fds(n)),
        Err(_) => Err(StartError::new(
            libc::EINVAL,
            format!("LISTEN_FDS={fds:?} is not a number"),
        )),
    }
}

/// Takes the request socket passed by a service manager, if any.
///
/// Returns `Ok(None)` when no socket was passed to this process. Otherwise
/// checks that descriptor 3 is a UNIX datagram socket, marks it
/// close-on-exec and returns it; further descriptors are ignored (closed).
/// The `LISTEN_*` variables are removed from the environment either way.
///
/// Call before any thread is started (it changes the environment).
pub fn take_request_socket() -> Result<Option<OwnedFd>, StartError> {
    let pid = std::env::var("LISTEN_PID").ok();
    let fds = std::env::var("LISTEN_FDS").ok();
    let listen = parse(pid.as_deref(), fds.as_deref(), std::process::id());
    if pid.is_some() {
        // Edition 2021: a safe call; it is sound here because main calls
        // this before starting any thread.
        std::env::remove_var("LISTEN_PID");
        std::env::remove_var("LISTEN_FDS");
        std::env::remove_var("LISTEN_FDNAMES");
    }
    let n = match listen? {
        Listen::None => return Ok(None),
        Listen::Fds(n) => n,
    };
    check_socket(LISTEN_FDS_START)?;
    // SAFETY: the service manager handed descriptor 3 to this process and
    // nothing else in it owns that descriptor; check_socket showed it is open.
    let fd = unsafe { OwnedFd::from_raw_fd(LISTEN_FDS_START) };
    sendfiled_core::sys::set_cloexec(borrow(&fd))
        .map_err(|e| StartError::io("inherited socket", e))?;
    if sendfiled_core::sys::passcred_enabled(borrow(&fd)) == Some(false) {
        // Set at once (the listener sets it too): datagrams queued before
        // now carry no credentials, and are refused with EACCES rather
        // than taken for uid 65534.
        sendfiled_core::sys::enable_passcred(borrow(&fd))
            .map_err(|e| StartError::io("SO_PASSCRED on the inherited socket", e))?;
        log::warn!(
            "the inherited socket did not ask for credentials (PassCredentials=yes in the \
             socket unit): requests queued before now carry none and are refused with EACCES"
        );
    }
    if n > 1 {
        log::warn!("service manager passed {n} sockets; using the first (descriptor 3), closing the others");
        for extra in 1..n.min(1024) {
            let raw = LISTEN_FDS_START + extra as RawFd;
            // SAFETY: the manager passed these to us, unused by anything else.
            unsafe { libc::close(raw) };
        }
    }
    Ok(Some(fd))
}

fn borrow(fd: &OwnedFd) -> BorrowedFd<'_> {
    use std::os::fd::AsFd;
    fd.as_fd()
}

/// Checks that `fd` is an open UNIX-domain datagram socket.
fn check_socket(fd: RawFd) -> Result<(), StartError> {
    let last = |what: &str| StartError::io(what, io::Error::last_os_error());
    let mut ty: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: ty and len are valid out pointers of the sizes given.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_TYPE,
            (&mut ty as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if r < 0 {
        return Err(last("inherited descriptor 3 is not a usable socket"));
    }
    if ty != libc::SOCK_DGRAM {
        return Err(StartError::new(
            libc::EPROTOTYPE,
            "inherited socket is not a datagram socket (use ListenDatagram=)",
        ));
    }
    // SAFETY: sockaddr_storage is plain data; all zeroes is a valid value.
    let mut addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut alen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: addr and alen are valid out pointers of the sizes given.
    let r = unsafe {
        libc::getsockname(
            fd,
            (&mut addr as *mut libc::sockaddr_storage).cast(),
            &mut alen,
        )
    };
    if r < 0 {
        return Err(last("getsockname on the inherited socket"));
    }
    if libc::c_int::from(addr.ss_family) != libc::AF_UNIX {
        return Err(StartError::new(
            libc::EAFNOSUPPORT,
            "inherited socket is not a UNIX-domain socket (ListenDatagram= takes a path)",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_is_read_as_systemd_writes_it() {
        assert_eq!(parse(None, None, 7).unwrap(), Listen::None);
        assert_eq!(parse(None, Some("1"), 7).unwrap(), Listen::None);
        assert_eq!(parse(Some("8"), Some("1"), 7).unwrap(), Listen::None);
        assert_eq!(parse(Some("7"), Some("1"), 7).unwrap(), Listen::Fds(1));
        assert_eq!(parse(Some("7"), Some("2"), 7).unwrap(), Listen::Fds(2));
        assert_eq!(
            parse(Some("7"), Some("0"), 7).unwrap_err().errno,
            libc::EBADF
        );
        assert_eq!(parse(Some("7"), None, 7).unwrap_err().errno, libc::EBADF);
        assert_eq!(
            parse(Some("x"), Some("1"), 7).unwrap_err().errno,
            libc::EINVAL
        );
        assert_eq!(
            parse(Some("7"), Some("one"), 7).unwrap_err().errno,
            libc::EINVAL
        );
    }
}
