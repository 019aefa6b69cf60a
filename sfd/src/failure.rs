//! How `sfd` fails: a message that names the errno, and an exit status that
//! tells a script which kind of failure it was.

use std::fmt;
use std::io;

/// The operation failed: the daemon reported an error, or a local step
/// (opening the destination, writing standard output) failed.
pub const EXIT_FAILURE: i32 = 1;
/// A bad command line (what clap uses too).
pub const EXIT_USAGE: i32 = 2;
/// The daemon could not be reached, or did not answer (sysexits
/// `EX_UNAVAILABLE`).
pub const EXIT_UNAVAILABLE: i32 = 69;

/// A failure on its way to standard error and the exit status.
#[derive(Debug)]
pub struct Failure {
    /// The exit status.
    pub code: i32,
    /// The message, without the leading `sfd: `.
    pub message: String,
}

impl Failure {
    /// The daemon (or a local step) failed with `errno` while doing `what`.
    /// Where the daemon gives one errno for several causes, the message
    /// lists them ([`daemon_causes`]).
    pub fn errno(what: impl fmt::Display, errno: i32) -> Failure {
        let message = match daemon_causes(errno) {
            Some(causes) => format!("{what}: {}: {causes}", describe(errno)),
            None => format!("{what}: {}", describe(errno)),
        };
        Failure {
            code: EXIT_FAILURE,
            message,
        }
    }

    /// A local step failed with `err` while doing `what`.
    pub fn io(what: impl fmt::Display, err: &io::Error) -> Failure {
        Failure {
            code: EXIT_FAILURE,
            message: format!("{what}: {}", describe_io(err)),
        }
    }

    /// The daemon could not be reached (`err` says why).
    pub fn unavailable(what: impl fmt::Display, err: &io::Error) -> Failure {
        Failure {
            code: EXIT_UNAVAILABLE,
            message: format!("{what}: {}", describe_io(err)),
        }
    }

    /// A failure with a message of its own and no errno.
    pub fn other(code: i32, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }
}

/// What the daemon means by an errno it answers a request with, where one
/// errno stands for several causes (the client sees the original
/// sendfiled's errno; the daemon's log line names the one that applied).
pub fn daemon_causes(errno: i32) -> Option<&'static str> {
    match errno {
        libc::EINVAL => Some(
            "not a regular file (a directory, FIFO, socket or device), \
             or the daemon's root itself",
        ),
        libc::EACCES => Some(
            "the path leads outside the daemon's root (through .. or a symbolic link), \
             or the daemon may not read the file, or it does not take requests from \
             this user (--allow-uid/--allow-gid); the daemon's log names which",
        ),
        _ => None,
    }
}

/// Whether an error of the request socket means that no daemon is there.
pub fn is_unreachable(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(
            libc::ENOENT
                | libc::ECONNREFUSED
                | libc::ENOTCONN
                | libc::ECONNRESET
                | libc::EPIPE
                | libc::EACCES
                | libc::EPERM
                | libc::ENOTSOCK
                | libc::EPROTOTYPE
                | libc::ETIMEDOUT
        )
    )
}

/// `No such file or directory (ENOENT)`.
pub fn describe(errno: i32) -> String {
    describe_io(&io::Error::from_raw_os_error(errno))
}

/// Like [`describe`] for any I/O error (one without an errno is shown as
/// it is).
pub fn describe_io(err: &io::Error) -> String {
    let Some(errno) = err.raw_os_error() else {
        return err.to_string();
    };
    let text = err.to_string();
    // std shows "text (os error N)"; the symbolic name says more to a
    // reader of man pages.
    let text = match text.rfind(" (os error ") {
        Some(i) => text[..i].to_owned(),
        None => text,
    };
    match errno_name(errno) {
        Some(name) => format!("{text} ({name})"),
        None => format!("{text} (errno {errno})"),
    }
}

/// The symbolic name of an errno value ([`sendfiled_sys::errno::name`]).
pub fn errno_name(errno: i32) -> Option<&'static str> {
    sendfiled_sys::errno::name(errno)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_errno() {
        assert_eq!(describe(libc::ENOENT), "No such file or directory (ENOENT)");
        assert!(describe(libc::ECANCELED).ends_with("(ECANCELED)"));
        assert!(describe(4000).ends_with("(errno 4000)"));
        let f = Failure::errno("cat missing.txt", libc::ENOENT);
        assert_eq!(f.code, EXIT_FAILURE);
        assert_eq!(
            f.message,
            "cat missing.txt: No such file or directory (ENOENT)"
        );
        let f = Failure::errno("cat adir", libc::EINVAL);
        assert_eq!(
            f.message,
            "cat adir: Invalid argument (EINVAL): not a regular file (a directory, \
             FIFO, socket or device), or the daemon's root itself"
        );
        let f = Failure::errno("cat ../x", libc::EACCES);
        assert!(
            f.message.starts_with(
                "cat ../x: Permission denied (EACCES): the path leads outside the daemon's root"
            ),
            "{}",
            f.message
        );
        assert!(f.message.contains("may not read the file"), "{}", f.message);
        let plain = io::Error::other("no errno here");
        assert_eq!(describe_io(&plain), "no errno here");
    }

    #[test]
    fn shared_values_take_the_first_name() {
        assert_eq!(errno_name(libc::EWOULDBLOCK), Some("EAGAIN"));
        assert_eq!(errno_name(0), None);
    }

    #[test]
    fn socket_errors_mean_unreachable() {
        let e = |n| io::Error::from_raw_os_error(n);
        assert!(is_unreachable(&e(libc::ECONNREFUSED)));
        assert!(is_unreachable(&e(libc::ENOENT)));
        assert!(!is_unreachable(&e(libc::ENAMETOOLONG)));
        assert!(!is_unreachable(&e(libc::EINVAL)));
    }
}
