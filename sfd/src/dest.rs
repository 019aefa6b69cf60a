//! Where `sfd send` sends to: `unix:PATH`, `tcp:HOST:PORT`, `fd:N` or
//! `file:PATH`.

use std::fmt;
use std::fs::OpenOptions;
use std::io;
use std::net::TcpStream;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

/// A destination as given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dest {
    /// Connect a stream socket to this path.
    Unix(PathBuf),
    /// Connect to this host and port.
    Tcp(String, u16),
    /// A descriptor this process inherited.
    Fd(RawFd),
    /// Create (or truncate) this file.
    File(PathBuf),
}

impl fmt::Display for Dest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dest::Unix(p) => write!(f, "unix:{}", p.display()),
            Dest::Tcp(h, p) if h.contains(':') => write!(f, "tcp:[{h}]:{p}"),
            Dest::Tcp(h, p) => write!(f, "tcp:{h}:{p}"),
            Dest::Fd(n) => write!(f, "fd:{n}"),
            Dest::File(p) => write!(f, "file:{}", p.display()),
        }
    }
}

/// Parses `unix:PATH`, `tcp:HOST:PORT` (`tcp:[::1]:PORT` for IPv6),
/// `fd:N` or `file:PATH`.
pub fn parse(s: &str) -> Result<Dest, String> {
    let (kind, rest) = s
        .split_once(':')
        .ok_or_else(|| "expected unix:PATH, tcp:HOST:PORT, fd:N or file:PATH".to_owned())?;
    match kind {
        "unix" | "file" if rest.is_empty() => Err(format!("{kind}: needs a path")),
        "unix" => Ok(Dest::Unix(PathBuf::from(rest))),
        "file" => Ok(Dest::File(PathBuf::from(rest))),
        "fd" => match rest.parse::<RawFd>() {
            Ok(n) if n >= 0 => Ok(Dest::Fd(n)),
            _ => Err(format!("fd:{rest}: not a descriptor number")),
        },
        "tcp" => {
            let (host, port) = rest
                .rsplit_once(':')
                .ok_or_else(|| format!("tcp:{rest}: expected HOST:PORT"))?;
            let host = host
                .strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .unwrap_or(host);
            if host.is_empty() {
                return Err(format!("tcp:{rest}: no host"));
            }
            if host.contains(':') && !rest.starts_with('[') {
                return Err(format!("tcp:{rest}: write an IPv6 address as [ADDR]:PORT"));
            }
            let port = port
                .parse::<u16>()
                .ok()
                .filter(|&p| p != 0)
                .ok_or_else(|| format!("tcp:{rest}: {port:?} is not a port number"))?;
            Ok(Dest::Tcp(host.to_owned(), port))
        }
        other => Err(format!(
            "{other}: unknown destination kind (unix, tcp, fd or file)"
        )),
    }
}

/// An opened destination: owned (a socket or file this process made), or
/// borrowed (an inherited descriptor).
#[derive(Debug)]
pub enum Opened {
    /// Closed when dropped.
    Owned(OwnedFd),
    /// Left open.
    Inherited(RawFd),
}

impl Opened {
    /// The descriptor to pass to the daemon.
    pub fn fd(&self) -> BorrowedFd<'_> {
        match self {
            Opened::Owned(fd) => fd.as_fd(),
            // SAFETY: open() checked that the descriptor is open; it stays
            // open for the life of the process (nothing here closes it).
            Opened::Inherited(n) => unsafe { BorrowedFd::borrow_raw(*n) },
        }
    }
}

impl Dest {
    /// Connects or opens the destination.
    pub fn open(&self) -> io::Result<Opened> {
        Ok(match self {
            Dest::Unix(p) => Opened::Owned(UnixStream::connect(p)?.into()),
            Dest::Tcp(h, port) => Opened::Owned(TcpStream::connect((h.as_str(), *port))?.into()),
            Dest::File(p) => Opened::Owned(
                OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(p)?
                    .into(),
            ),
            Dest::Fd(n) => {
                // SAFETY: F_GETFL only reads the descriptor's flags.
                let flags = unsafe { libc::fcntl(*n, libc::F_GETFL) };
                if flags < 0 {
                    return Err(io::Error::last_os_error());
                }
                if flags & libc::O_ACCMODE == libc::O_RDONLY {
                    return Err(io::Error::from_raw_os_error(libc::EBADF));
                }
                Opened::Inherited(*n)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_parse() {
        assert_eq!(parse("unix:/run/x").unwrap(), Dest::Unix("/run/x".into()));
        assert_eq!(parse("file:out.bin").unwrap(), Dest::File("out.bin".into()));
        assert_eq!(parse("fd:1").unwrap(), Dest::Fd(1));
        assert_eq!(
            parse("tcp:localhost:8080").unwrap(),
            Dest::Tcp("localhost".into(), 8080)
        );
        assert_eq!(parse("tcp:[::1]:80").unwrap(), Dest::Tcp("::1".into(), 80));
        assert_eq!(parse("tcp:[::1]:80").unwrap().to_string(), "tcp:[::1]:80");
        for bad in [
            "",
            "unix:",
            "fd:-1",
            "fd:x",
            "tcp:host",
            "tcp::80",
            "tcp:h:0",
            "tcp:h:99999",
            "tcp:::1:80",
            "udp:h:1",
            "/path",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn a_closed_or_read_only_descriptor_is_refused() {
        let err = Dest::Fd(999_999).open().unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EBADF));
        let f = std::fs::File::open("/dev/null").unwrap();
        let n = std::os::fd::AsRawFd::as_raw_fd(&f);
        let err = Dest::Fd(n).open().unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EBADF));
    }
}
