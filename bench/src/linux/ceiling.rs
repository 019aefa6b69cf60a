//! The protocol's ceiling (issue 14): the least any daemon can cost per
//! small request, by the protocol it speaks.
//!
//! A minimal server in another process (this executable again, as
//! `--ceiling-child MODE`) does the pool's work per request (`open`,
//! `fstat`, `sendfile`, `close`) and answers with the 64 bytes sendfiled's
//! status channel carries for a small Send (file info + completion). It has
//! no confinement, no lock, no limits, no cache probe, no event loop beyond
//! what its protocol needs: what it costs is what the protocol costs.
//!
//! - [`Protocol::Descriptors`]: sendfiled's protocol. One datagram per
//!   request on one socket shared by every client, carrying the destination
//!   and a new status pipe's write end (`SCM_RIGHTS`); the answer goes to
//!   that pipe, and the server closes both descriptors. The server blocks
//!   in `recvmsg(2)`: one socket needs no event loop.
//! - [`Protocol::DestPerRequest`] and [`Protocol::Connection`]: what a
//!   protocol change would allow. Each client has its own `SOCK_SEQPACKET`
//!   connection and the answer comes back on it, so no status pipe is made
//!   per request; the destination still comes with each request
//!   (`DestPerRequest`, as a server writing to many sockets would pass
//!   them), or once, when the client connects (`Connection`: a request is
//!   the path alone). The server waits in `epoll_wait(2)`
//!   (level-triggered) on every connection.
//!
//! Set beside the pool and sendfiled in the same run, the first says how
//! much of the daemon's gap to the pool its protocol leaves no daemon to
//! close, and the others what the status pipe and the destination passed
//! per request cost.
//!
//! This file may talk only to the child it starts and to the descriptors it
//! makes; the child opens only the paths the bench sends it.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::process::{Child, Command, Stdio};

use sendfiled_sys::{self as sys, cvt, send_with_fds};

use super::os;

/// The hidden argument that makes this executable a ceiling server.
pub const CEILING_CHILD: &str = "--ceiling-child";

/// Bytes of every successful answer: what sendfiled writes for a small Send
/// (a 48-byte file info and a 16-byte completion, in one `write`).
const ANSWER_LEN: usize = 64;

/// The longest path a request may carry.
const PATH_MAX: usize = 4096;

/// Which protocol the minimal server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Destination and status pipe passed with every request (sendfiled's).
    Descriptors,
    /// One connection per client, the destination passed with each request.
    DestPerRequest,
    /// One connection per client, the destination passed once.
    Connection,
}

impl Protocol {
    pub const ALL: [Protocol; 3] = [
        Protocol::Descriptors,
        Protocol::DestPerRequest,
        Protocol::Connection,
    ];

    fn arg(self) -> &'static str {
        match self {
            Protocol::Descriptors => "descriptors",
            Protocol::DestPerRequest => "dest-per-request",
            Protocol::Connection => "connection",
        }
    }

    /// How the figure's rows name it.
    pub fn label(self) -> &'static str {
        match self {
            Protocol::Descriptors => "minimal server, descriptors per request",
            Protocol::DestPerRequest => {
                "minimal server, a connection per client, destination per request"
            }
            Protocol::Connection => "minimal server, a connection per client, destination once",
        }
    }
}

/// A running minimal server.
pub struct Ceiling {
    child: Child,
    protocol: Protocol,
    /// `Descriptors`: the request socket every client sends on.
    /// `Connection`: the control socket new connections are passed on.
    sock: OwnedFd,
}

impl Ceiling {
    pub fn start(protocol: Protocol) -> io::Result<Ceiling> {
        let (ours, theirs) = socket_pair(libc::SOCK_DGRAM)?;
        // This very binary, even if it was rebuilt (replaced) meanwhile.
        let child = Command::new("/proc/self/exe")
            .arg(CEILING_CHILD)
            .arg(protocol.arg())
            .stdin(Stdio::from(theirs))
            .spawn()?;
        Ok(Ceiling {
            child,
            protocol,
            sock: ours,
        })
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// A client of this server, sending `path` to its own UNIX stream
    /// socket.
    pub fn requester(&self, path: CString) -> io::Result<Requester> {
        let (w, r) = os::small_dest_pair()?;
        let conn = match self.protocol {
            Protocol::Descriptors => None,
            Protocol::DestPerRequest => {
                let (mine, server) = socket_pair(libc::SOCK_SEQPACKET)?;
                send_with_fds(self.sock.as_fd(), b"c", &[server.as_fd()])?;
                Some(mine)
            }
            Protocol::Connection => {
                let (mine, server) = socket_pair(libc::SOCK_SEQPACKET)?;
                send_with_fds(self.sock.as_fd(), b"c", &[server.as_fd(), w.as_fd()])?;
                Some(mine)
            }
        };
        Ok(Requester {
            sock: self.sock.try_clone()?,
            protocol: self.protocol,
            conn,
            path,
            dest: w,
            read_end: r,
        })
    }

    /// Tells the server to exit (an empty datagram) and waits for it.
    pub fn stop(mut self) -> io::Result<()> {
        send_with_fds(self.sock.as_fd(), &[], &[])?;
        let st = self.child.wait()?;
        if !st.success() {
            return Err(io::Error::other(format!(
                "{} exited with {st}",
                self.protocol.label()
            )));
        }
        Ok(())
    }
}

/// One client: its destination pair and, for [`Protocol::Connection`], its
/// connection.
pub struct Requester {
    sock: OwnedFd,
    protocol: Protocol,
    conn: Option<OwnedFd>,
    path: CString,
    dest: OwnedFd,
    read_end: OwnedFd,
}

impl Requester {
    /// One request: sent, answered, and its data read back.
    pub fn once(&self, size: u64, buf: &mut [u8]) -> io::Result<()> {
        let mut answer = [0u8; ANSWER_LEN];
        let got = match &self.conn {
            None => {
                let (status_r, status_w) = os::pipe()?;
                send_with_fds(
                    self.sock.as_fd(),
                    self.path.as_bytes(),
                    &[self.dest.as_fd(), status_w.as_fd()],
                )?;
                drop(status_w);
                read_answer(status_r.as_fd(), &mut answer)?
            }
            Some(c) => {
                let dest = [self.dest.as_fd()];
                let with: &[BorrowedFd<'_>] = match self.protocol {
                    Protocol::DestPerRequest => &dest,
                    _ => &[],
                };
                if send_with_fds(c.as_fd(), self.path.as_bytes(), with)?
                    != self.path.as_bytes().len()
                {
                    return Err(io::Error::other("short request"));
                }
                os::read(c.as_fd(), &mut answer)?
            }
        };
        if got != ANSWER_LEN {
            let errno = if got == 2 { i32::from(answer[1]) } else { 0 };
            return Err(io::Error::other(format!(
                "minimal server answered {got} bytes (errno {errno})"
            )));
        }
        let n = os::drain(self.read_end.as_fd(), size, buf)?;
        if n != size {
            return Err(io::Error::other(format!(
                "minimal server: {n} of {size} bytes"
            )));
        }
        Ok(())
    }
}

/// Reads a status pipe to its end (the server closes it after answering).
fn read_answer(fd: BorrowedFd<'_>, answer: &mut [u8; ANSWER_LEN]) -> io::Result<usize> {
    let mut have = 0;
    loop {
        let n = os::read(fd, &mut answer[have..])?;
        if n == 0 || have + n == ANSWER_LEN {
            return Ok(have + n);
        }
        have += n;
    }
}

fn socket_pair(kind: libc::c_int) -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds has room for two descriptors.
    cvt(unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            kind | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    })?;
    // SAFETY: socketpair returned two new descriptors we now own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

// ----- the child -----

/// The minimal server: `MODE` is `descriptors` or `connection`; its
/// standard input is the socket the bench holds the other end of.
pub fn ceiling_child(mode: Option<&str>) -> i32 {
    let r = match mode {
        Some("descriptors") => serve_descriptors(),
        Some("dest-per-request") | Some("connection") => serve_connections(),
        _ => Err(io::Error::other("unknown mode")),
    };
    match r {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("sendfiled-bench {CEILING_CHILD}: {e}");
            1
        }
    }
}

/// Blocking receive of one datagram and at most two descriptors
/// ([`sys::recv_few_blocking`]). Not the daemon's `sys::recv_with_fds`: that
/// one never blocks (a loop waits first) and zeroes a control buffer sized
/// for credentials and a group list on every call; the ceiling is the least
/// a server can do.
fn recv_two(sock: RawFd, buf: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>)> {
    // SAFETY: the caller's socket stays open for the call.
    let sock = unsafe { BorrowedFd::borrow_raw(sock) };
    let got = sys::recv_few_blocking(sock, buf)?;
    Ok((got.len, got.fds))
}

/// `open` + `fstat` + `sendfile` + `close`; the answer's bytes.
fn serve_one(path: &[u8], dest: BorrowedFd<'_>, answer: &mut [u8; ANSWER_LEN]) -> usize {
    let r = CString::new(path)
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
        .and_then(|p| {
            let f = os::open_ro(&p)?;
            let n = os::fstat_size(f.as_fd())?;
            os::sendfile_all(f.as_fd(), dest, n)?;
            Ok(n)
        });
    match r {
        Ok(n) => {
            answer[0] = 0x81;
            answer[1] = 0;
            answer[8..16].copy_from_slice(&n.to_ne_bytes());
            answer[48] = 0x82;
            answer[49] = 0;
            ANSWER_LEN
        }
        Err(e) => {
            answer[0] = 0x81;
            answer[1] = e.raw_os_error().unwrap_or(libc::EIO) as u8;
            2
        }
    }
}

fn serve_descriptors() -> io::Result<()> {
    let mut path = vec![0u8; PATH_MAX];
    let mut answer = [0u8; ANSWER_LEN];
    loop {
        let (n, fds) = recv_two(0, &mut path)?;
        if n == 0 && fds.is_empty() {
            return Ok(());
        }
        let [dest, status] = <[OwnedFd; 2]>::try_from(fds)
            .map_err(|_| io::Error::other("a request without its two descriptors"))?;
        let len = serve_one(&path[..n], dest.as_fd(), &mut answer);
        // A client that went away has nobody to tell.
        let _ = sendfiled_sys::write(status.as_fd(), &answer[..len]);
    }
}

fn serve_connections() -> io::Result<()> {
    // SAFETY: plain call; the result is a new descriptor.
    let ep = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
    // SAFETY: epoll_create1 returned a new descriptor we now own.
    let ep = unsafe { OwnedFd::from_raw_fd(ep) };
    let watch = |fd: RawFd, token: u64| -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: token,
        };
        // SAFETY: ev is a valid event for the call.
        cvt(unsafe { libc::epoll_ctl(ep.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) })?;
        Ok(())
    };
    const CONTROL: u64 = u64::MAX;
    watch(0, CONTROL)?;
    // (connection, the destination if passed once); a closed connection's
    // slot becomes None.
    let mut conns: Vec<Option<(OwnedFd, Option<OwnedFd>)>> = Vec::new();
    let mut path = vec![0u8; PATH_MAX];
    let mut answer = [0u8; ANSWER_LEN];
    let mut events = [libc::epoll_event { events: 0, u64: 0 }; 64];
    loop {
        // SAFETY: events is writable for its length.
        let n = unsafe {
            libc::epoll_wait(ep.as_raw_fd(), events.as_mut_ptr(), events.len() as i32, -1)
        };
        let n = match cvt(n) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => r? as usize,
        };
        for ev in &events[..n] {
            let token = ev.u64;
            if token == CONTROL {
                let (len, fds) = recv_two(0, &mut path)?;
                if len == 0 && fds.is_empty() {
                    return Ok(());
                }
                let mut fds = fds.into_iter();
                let conn = fds
                    .next()
                    .ok_or_else(|| io::Error::other("a connection message without one"))?;
                watch(conn.as_raw_fd(), conns.len() as u64)?;
                conns.push(Some((conn, fds.next())));
                continue;
            }
            let slot = &mut conns[token as usize];
            let Some((conn, once)) = slot.as_ref() else {
                continue;
            };
            let (len, passed) = recv_two(conn.as_raw_fd(), &mut path)?;
            if len == 0 {
                *slot = None;
                continue;
            }
            let Some(dest) = passed
                .first()
                .map(AsFd::as_fd)
                .or(once.as_ref().map(AsFd::as_fd))
            else {
                return Err(io::Error::other("a request without a destination"));
            };
            let out = serve_one(&path[..len], dest, &mut answer);
            let _ = sendfiled_sys::write(conn.as_fd(), &answer[..out]);
        }
    }
}
