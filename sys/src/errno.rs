//! Errno values: their names, and the one errno an I/O error stands for.
//! Rule: pure lookups; every part of sendfiled that reports or parses an
//! errno (the daemon's replies and logs, the C library's `errno`, `sfd`'s
//! messages, the fault-injection spec) goes through here, so that they
//! agree. Inside the programs an errno is an [`Errno`]; it is an `i32`
//! only where it crosses a boundary (a protocol message, the C library's
//! `errno`, an exit status) and in the names below, which also name the
//! numbers such a boundary brings in.

use std::io;

/// The one errno type: `nix`'s, re-exported here so that every crate names
/// it through this module.
pub use nix::errno::Errno;

/// Every errno sendfiled, the socket calls or the fault spec can give, with
/// its symbolic name. Several names may share a value on one system
/// (`EAGAIN`/`EWOULDBLOCK`): the first listed is the one [`name`] gives.
const NAMES: &[(i32, &str)] = &[
    (libc::EPERM, "EPERM"),
    (libc::ENOENT, "ENOENT"),
    (libc::ESRCH, "ESRCH"),
    (libc::EINTR, "EINTR"),
    (libc::EIO, "EIO"),
    (libc::ENXIO, "ENXIO"),
    (libc::E2BIG, "E2BIG"),
    (libc::EBADF, "EBADF"),
    (libc::ECHILD, "ECHILD"),
    (libc::EAGAIN, "EAGAIN"),
    (libc::ENOMEM, "ENOMEM"),
    (libc::EACCES, "EACCES"),
    (libc::EFAULT, "EFAULT"),
    (libc::EBUSY, "EBUSY"),
    (libc::EEXIST, "EEXIST"),
    (libc::EXDEV, "EXDEV"),
    (libc::ENODEV, "ENODEV"),
    (libc::ENOTDIR, "ENOTDIR"),
    (libc::EISDIR, "EISDIR"),
    (libc::EINVAL, "EINVAL"),
    (libc::ENFILE, "ENFILE"),
    (libc::EMFILE, "EMFILE"),
    (libc::ETXTBSY, "ETXTBSY"),
    (libc::EFBIG, "EFBIG"),
    (libc::ENOSPC, "ENOSPC"),
    (libc::ESPIPE, "ESPIPE"),
    (libc::EROFS, "EROFS"),
    (libc::EPIPE, "EPIPE"),
    (libc::ERANGE, "ERANGE"),
    (libc::ENAMETOOLONG, "ENAMETOOLONG"),
    (libc::ENOSYS, "ENOSYS"),
    (libc::ELOOP, "ELOOP"),
    (libc::EOVERFLOW, "EOVERFLOW"),
    (libc::EPROTO, "EPROTO"),
    (libc::ENOTSOCK, "ENOTSOCK"),
    (libc::EDESTADDRREQ, "EDESTADDRREQ"),
    (libc::EMSGSIZE, "EMSGSIZE"),
    (libc::EPROTOTYPE, "EPROTOTYPE"),
    (libc::EOPNOTSUPP, "EOPNOTSUPP"),
    (libc::EAFNOSUPPORT, "EAFNOSUPPORT"),
    (libc::EADDRINUSE, "EADDRINUSE"),
    (libc::EADDRNOTAVAIL, "EADDRNOTAVAIL"),
    (libc::ENETDOWN, "ENETDOWN"),
    (libc::ENETUNREACH, "ENETUNREACH"),
    (libc::ECONNABORTED, "ECONNABORTED"),
    (libc::ECONNRESET, "ECONNRESET"),
    (libc::ENOBUFS, "ENOBUFS"),
    (libc::EISCONN, "EISCONN"),
    (libc::ENOTCONN, "ENOTCONN"),
    (libc::ETIMEDOUT, "ETIMEDOUT"),
    (libc::ECONNREFUSED, "ECONNREFUSED"),
    (libc::EHOSTUNREACH, "EHOSTUNREACH"),
    (libc::EALREADY, "EALREADY"),
    (libc::EINPROGRESS, "EINPROGRESS"),
    (libc::ECANCELED, "ECANCELED"),
    (libc::EDQUOT, "EDQUOT"),
    (libc::ESTALE, "ESTALE"),
];

/// The symbolic name of `errno` (`ENOENT`), where it is one of [`NAMES`].
pub fn name(errno: i32) -> Option<&'static str> {
    NAMES.iter().find(|(n, _)| *n == errno).map(|(_, s)| *s)
}

/// The errno named `name` (`EIO`, or the alias `EWOULDBLOCK`), or written
/// as a positive number.
pub fn from_name(name: &str) -> Option<i32> {
    if let Ok(n) = name.parse::<i32>() {
        return (n > 0).then_some(n);
    }
    if name == "EWOULDBLOCK" {
        return Some(libc::EWOULDBLOCK);
    }
    NAMES.iter().find(|(_, s)| *s == name).map(|(n, _)| *n)
}

/// The errno to report for `e`: its OS error code, or that of the first
/// error in its chain of sources that has one (an error wrapped with
/// context), or else one that says what kind of failure it was (`EINVAL`
/// for bad input, `EPROTO` for a message cut short, ...), `EIO` for the
/// rest. Every reply, `errno` and exit status is an errno. A number this
/// system does not know (never 0: no error is success) is `EIO`.
pub fn of_io(e: &io::Error) -> Errno {
    let mut source: Option<&(dyn std::error::Error + 'static)> = e.get_ref().map(|r| r as _);
    let mut found = e.raw_os_error();
    while found.is_none() {
        let Some(s) = source else { break };
        found = s
            .downcast_ref::<io::Error>()
            .and_then(io::Error::raw_os_error);
        source = s.source();
    }
    match found.map(Errno::from_raw) {
        // A number this system has no name for (or 0, which is no error)
        // would reach a client as no errno at all.
        Some(Errno::UnknownErrno) => Errno::EIO,
        Some(n) => n,
        None => match e.kind() {
            io::ErrorKind::InvalidInput | io::ErrorKind::InvalidData => Errno::EINVAL,
            io::ErrorKind::NotFound => Errno::ENOENT,
            io::ErrorKind::PermissionDenied => Errno::EACCES,
            io::ErrorKind::WouldBlock => Errno::EAGAIN,
            io::ErrorKind::TimedOut => Errno::ETIMEDOUT,
            io::ErrorKind::UnexpectedEof => Errno::EPROTO,
            _ => Errno::EIO,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_values_go_both_ways() {
        for &(n, s) in NAMES {
            assert_eq!(name(n).map(|_| from_name(s)), Some(from_name(s)));
            assert_eq!(from_name(name(n).unwrap()), Some(n), "{s}");
        }
        assert_eq!(name(libc::EWOULDBLOCK), Some("EAGAIN"), "the first listed");
        assert_eq!(from_name("EWOULDBLOCK"), Some(libc::EWOULDBLOCK));
        assert_eq!(from_name("12"), Some(12));
        assert_eq!(
            (from_name("0"), from_name("-3"), from_name("ENOPE")),
            (None, None, None)
        );
        assert_eq!(name(0), None);
    }

    #[test]
    fn the_names_are_the_errno_types_own() {
        // An `Errno` shows its own name (`{:?}`) and goes on the wire as
        // its number: the table must agree with it on both.
        for &(n, s) in NAMES {
            let e = Errno::from_raw(n);
            assert_eq!((e as i32, format!("{e:?}")), (n, s.to_string()));
        }
    }

    #[test]
    fn an_io_error_stands_for_one_errno() {
        assert_eq!(
            of_io(&io::Error::from_raw_os_error(libc::EPIPE)),
            Errno::EPIPE
        );
        let wrapped = io::Error::other(io::Error::from_raw_os_error(libc::ENOSPC));
        assert_eq!(of_io(&wrapped), Errno::ENOSPC, "the source's errno");
        assert_eq!(
            of_io(&io::Error::from(io::ErrorKind::InvalidInput)),
            Errno::EINVAL
        );
        assert_eq!(
            of_io(&io::Error::from(io::ErrorKind::UnexpectedEof)),
            Errno::EPROTO
        );
        assert_eq!(of_io(&io::Error::other("no errno")), Errno::EIO);
    }
}
