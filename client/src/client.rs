//! The blocking Rust client API. Rule: may use [`crate::protocol`],
//! [`crate::messages`], [`crate::request`], [`crate::inline`] and
//! [`crate::sys`] only; never blocks except where a method says it waits, and
//! knows nothing of the server.
//!
//! A [`Client`] is a datagram socket connected to a running daemon. Each
//! operation sends one request and returns the descriptor the daemon answers
//! on: a [`StatusChannel`] for Send and Open, a [`DataChannel`] for Read. Both
//! are plain pipes: use them blocking ([`StatusChannel::recv`]) or register
//! them (they implement [`AsFd`]) in your own event loop and call
//! [`StatusChannel::try_recv`] when readable.
//!
//! ```no_run
//! use sendfiled_client::client::{Client, Response};
//! use sendfiled_client::protocol::Range;
//! use std::io::Read;
//!
//! # fn main() -> std::io::Result<()> {
//! let client = Client::connect("/srv/files/run".as_ref(), "web")?;
//! let mut data = client.read("index.html", Range::WHOLE)?;
//! let info = data.file_info()?;
//! let mut body = Vec::new();
//! data.read_to_end(&mut body)?;
//! assert_eq!(body.len(), info.size);
//! # Ok(())
//! # }
//! ```
//!
//! # What a channel carries
//!
//! As in the original sendfiled, message by message:
//!
//! | request | channel carries, in order |
//! |---|---|
//! | Read | [`Response::FileInfo`], the data, end of file |
//! | Send, Send Open | [`Response::FileInfo`] (for Send Open: at Open), zero or more [`Response::Progress`], then [`Response::Complete`] or [`Response::Error`], then end of file |
//! | Open | [`Response::FileInfo`] with the transfer id; then as Send Open, or `ETIMEDOUT` if no Send Open came in time |
//! | refused request | [`Response::Error`] in place of the file info, end of file |
//! | after Cancel, or when the daemon shuts down | end of file, with no message (a Read's data pipe too) |
//!
//! Progress is written only when a transfer had to stop and wait
//! (destination full, data coming from disk) and never reports what the
//! completion would: a transfer that ran through without waiting sends the
//! file info and then the completion, nothing else.

use std::ffi::CString;
use std::io::{self, BufRead, BufReader, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::messages::Messages;
use crate::protocol::{self as proto, Request, SFD_HDR_SIZE};
pub use crate::protocol::{FileInfo, HeaderTrailer, Range, Response, ServerStat};
pub use crate::request::{send_request_bytes, try_send_request_bytes, REQUEST_WAIT};
use crate::sys;

/// A connection to a daemon's request socket.
#[derive(Debug)]
pub struct Client {
    sock: UnixDatagram,
    /// The handshake's result, made on the first Send
    /// ([`crate::inline`]); `None` inside: every request goes whole.
    inline: std::sync::OnceLock<Option<Box<crate::inline::Inline>>>,
}

/// The path of a daemon's request socket: `SOCKDIR/NAME`.
pub fn socket_path(sockdir: &Path, name: &str) -> PathBuf {
    sockdir.join(name)
}

pub(crate) fn path_arg(path: &str) -> io::Result<CString> {
    CString::new(path).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

impl Client {
    /// Connects to the daemon named `name` whose socket is in `sockdir`.
    pub fn connect(sockdir: &Path, name: &str) -> io::Result<Client> {
        Client::connect_path(&socket_path(sockdir, name))
    }

    /// Connects to the request socket at `path`.
    pub fn connect_path(path: &Path) -> io::Result<Client> {
        let sock = UnixDatagram::unbound()?;
        // Systems with a small default datagram limit (2 KiB on macOS) need a
        // larger send buffer for the largest request.
        sys::raise_socket_buffer(sock.as_fd(), libc::SO_SNDBUF, 2 * proto::MAX_REQUEST_LEN);
        sock.connect(path)?;
        Ok(Client {
            sock,
            inline: std::sync::OnceLock::new(),
        })
    }

    /// Wraps an already-connected datagram socket. Such a client makes no
    /// in-process attempt (the socket may be anything, a test's fake server
    /// say): every request goes to the other end whole.
    pub fn from_fd(fd: OwnedFd) -> Client {
        Client {
            sock: UnixDatagram::from(fd),
            inline: std::sync::OnceLock::from(None),
        }
    }

    /// This client with the in-process attempt off: every request goes to
    /// the daemon whole (as with `SENDFILED_INLINE=0`, for this client
    /// only; benchmarks and tests compare the two).
    pub fn daemon_only(self) -> Client {
        Client {
            sock: self.sock,
            inline: std::sync::OnceLock::from(None),
        }
    }

    /// The handshake's result for this connection, made on first use
    /// ([`crate::inline::Inline::handshake`]); `None` when every request
    /// goes to the daemon whole.
    pub fn inline(&self) -> Option<&crate::inline::Inline> {
        self.inline
            .get_or_init(|| crate::inline::Inline::handshake(self.sock.as_fd()).map(Box::new))
            .as_deref()
    }

    /// Gives the socket back.
    pub fn into_fd(self) -> OwnedFd {
        self.sock.into()
    }

    /// Sends one encoded request with its descriptors.
    pub fn send_request(&self, req: &Request, fds: &[BorrowedFd<'_>]) -> io::Result<()> {
        let bytes = req.encode()?;
        send_request_bytes(self.sock.as_fd(), &bytes, fds)
    }

    /// Read File: the file info, then the data, arrive on the returned pipe.
    pub fn read(&self, path: &str, range: Range) -> io::Result<DataChannel> {
        let path = path_arg(path)?;
        if path.to_bytes().len() > proto::MAX_PATH_LEN {
            return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
        }
        let fd = crate::inline::read(self.sock.as_fd(), self.inline(), &path, range)?;
        Ok(DataChannel { fd, info: None })
    }

    /// Send File: the data goes to `dest`; file info, progress and completion
    /// arrive on the returned status channel. The daemon sets `O_NONBLOCK` on
    /// the open file description of `dest`.
    pub fn send(
        &self,
        path: &str,
        dest: BorrowedFd<'_>,
        range: Range,
    ) -> io::Result<StatusChannel> {
        self.send_hdtr(path, dest, range, HeaderTrailer::default())
    }

    /// Send File with header and trailer bytes written around the range.
    pub fn send_hdtr(
        &self,
        path: &str,
        dest: BorrowedFd<'_>,
        range: Range,
        hdtr: HeaderTrailer,
    ) -> io::Result<StatusChannel> {
        let path = path_arg(path)?;
        proto::check_send_limits(&path, &hdtr)?;
        let fd = crate::inline::send(self.sock.as_fd(), self.inline(), &path, range, &hdtr, dest)?;
        Ok(StatusChannel { fd })
    }

    /// Send File and wait for its end: what [`Client::send`] followed by
    /// [`StatusChannel::wait_complete`] returns, for a caller that does not
    /// need the channel itself. A Send the attempt finished in this process
    /// ([`crate::inline`]) returns at once and makes no channel at all (no
    /// pipe to create, write and read); one handed to the daemon waits at
    /// most `timeout` for each message.
    pub fn send_complete(
        &self,
        path: &str,
        dest: BorrowedFd<'_>,
        range: Range,
        hdtr: HeaderTrailer,
        timeout: Duration,
    ) -> io::Result<Completion> {
        let path = path_arg(path)?;
        proto::check_send_limits(&path, &hdtr)?;
        match crate::inline::begin(self.inline(), &path, range, &hdtr, dest)? {
            crate::inline::Begun::Finished(info) => Ok(Completion {
                info: Some(info),
                complete: true,
                ..Completion::default()
            }),
            crate::inline::Begun::Ask { bytes, file } => {
                let fd = crate::inline::ask(self.sock.as_fd(), &bytes, dest, file)?;
                StatusChannel { fd }.wait_complete(timeout)
            }
        }
    }

    /// Open File: the file info with a transfer id arrives on the returned
    /// status channel; nothing is sent until [`Client::send_open`].
    pub fn open(&self, path: &str, range: Range) -> io::Result<StatusChannel> {
        let path = path_arg(path)?;
        if path.to_bytes().len() > proto::MAX_PATH_LEN {
            return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
        }
        let begun = crate::inline::begin_open(self.inline(), &path, range)?;
        let (bytes, fds) = &begun.ask;
        let fds: Vec<BorrowedFd<'_>> = fds.iter().map(|f| f.as_fd()).collect();
        send_request_bytes(self.sock.as_fd(), bytes, &fds)?;
        Ok(StatusChannel { fd: begun.status })
    }

    /// Send Open File: starts the transfer of an opened file to `dest`;
    /// progress arrives on the channel [`Client::open`] returned.
    pub fn send_open(&self, txnid: u64, dest: BorrowedFd<'_>) -> io::Result<()> {
        self.send_open_hdtr(txnid, dest, HeaderTrailer::default())
    }

    /// Send Open File with header and trailer bytes around the range.
    pub fn send_open_hdtr(
        &self,
        txnid: u64,
        dest: BorrowedFd<'_>,
        hdtr: HeaderTrailer,
    ) -> io::Result<()> {
        proto::check_send_limits(c"", &hdtr)?;
        let begun = crate::inline::begin_send_open(self.inline(), txnid, dest, &hdtr)?;
        send_request_bytes(self.sock.as_fd(), &begun.bytes, &[dest])
    }

    /// Cancel: ends the transfer `txnid`; its status channel (a Read's data
    /// pipe) closes without a message, so its reader sees end of file
    /// ([`Completion::closed`]). The destination gets nothing more.
    pub fn cancel(&self, txnid: u64) -> io::Result<()> {
        crate::inline::forget(self.inline(), txnid);
        self.send_request(&Request::Cancel { txnid }, &[])
    }

    /// Asks the daemon for its counters (waits at most `timeout`).
    pub fn server_status(&self, timeout: Duration) -> io::Result<ServerStat> {
        let (r, w) = sys::pipe()?;
        self.send_request(&Request::Status, &[w.as_fd()])?;
        drop(w);
        let ch = StatusChannel { fd: r };
        match ch.recv_timeout(timeout)? {
            Some(Response::ServerStat(s)) => Ok(s),
            Some(Response::Error { errno, .. }) => Err(io::Error::from_raw_os_error(errno)),
            Some(_) => Err(io::Error::from_raw_os_error(libc::EPROTO)),
            None => Err(io::Error::from_raw_os_error(libc::ETIMEDOUT)),
        }
    }
}

impl AsFd for Client {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

impl AsRawFd for Client {
    fn as_raw_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }
}

/// Reads one whole message from a status or data channel into `buf`
/// (at least [`proto::MAX_RESPONSE_LEN`] bytes); returns its length, or 0 at
/// end of file. A message is written atomically, so once its header has
/// arrived the rest is already in the pipe.
pub fn read_message(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    let got = read_full(fd, &mut buf[..SFD_HDR_SIZE])?;
    if got == 0 {
        return Ok(0);
    }
    if got < SFD_HDR_SIZE {
        return Err(io::Error::from_raw_os_error(libc::EPROTO));
    }
    let len = proto::Response::len_from_header(buf[0], buf[1])
        .ok_or_else(|| io::Error::from_raw_os_error(libc::EPROTO))?;
    if len > buf.len() {
        return Err(io::Error::from_raw_os_error(libc::EPROTO));
    }
    let rest = read_full(fd, &mut buf[SFD_HDR_SIZE..len])?;
    if rest != len - SFD_HDR_SIZE {
        return Err(io::Error::from_raw_os_error(libc::EPROTO));
    }
    Ok(len)
}

/// Reads until `buf` is full or end of file, retrying `EINTR`, and waiting
/// for readability if the descriptor is non-blocking and a message is split.
fn read_full(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match sys::read(fd, &mut buf[done..]) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && done > 0 => {
                sys::wait_readable(fd, Duration::from_secs(5))?;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// The pipe a transfer's status messages arrive on.
#[derive(Debug)]
pub struct StatusChannel {
    fd: OwnedFd,
}

impl StatusChannel {
    /// Wraps a status pipe's read end.
    pub fn from_fd(fd: OwnedFd) -> StatusChannel {
        StatusChannel { fd }
    }

    /// Gives the pipe back.
    pub fn into_fd(self) -> OwnedFd {
        self.fd
    }

    /// Reads the next message, blocking; `None` at end of file (the daemon
    /// closed the channel).
    pub fn recv(&self) -> io::Result<Option<Response>> {
        let mut buf = [0u8; proto::SERVER_STAT_LEN + proto::MAX_RESPONSE_LEN];
        let n = read_message(self.fd.as_fd(), &mut buf)?;
        if n == 0 {
            return Ok(None);
        }
        Response::decode(&buf[..n])
            .map(Some)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EPROTO))
    }

    /// Like [`recv`](Self::recv) but waits at most `timeout` for the message
    /// to start; `Err(ETIMEDOUT)` if nothing came.
    pub fn recv_timeout(&self, timeout: Duration) -> io::Result<Option<Response>> {
        if !sys::wait_readable(self.fd.as_fd(), timeout)? {
            return Err(io::Error::from_raw_os_error(libc::ETIMEDOUT));
        }
        self.recv()
    }

    /// For callers whose own event loop said the channel is readable and
    /// who set it non-blocking: `Err(WouldBlock)` if nothing is there yet.
    pub fn try_recv(&self) -> io::Result<Option<Response>> {
        self.recv()
    }

    /// Reads messages until completion, error or end of file, waiting at
    /// most `timeout` for each read. Returns the file info and the total
    /// progress.
    ///
    /// Reads what the pipe holds at once ([`crate::messages`]): a short
    /// transfer's file info and completion in one `read`. Nothing follows
    /// the completion or the error, so nothing is read that a later call
    /// would miss.
    pub fn wait_complete(&self, timeout: Duration) -> io::Result<Completion> {
        let mut c = Completion::default();
        let mut held = Messages::new();
        loop {
            let msg = match held.take()? {
                Some(msg) => Some(msg),
                None => {
                    if !sys::wait_readable(self.fd.as_fd(), timeout)? {
                        return Err(io::Error::from_raw_os_error(libc::ETIMEDOUT));
                    }
                    match sys::read(self.fd.as_fd(), held.space()) {
                        Ok(n) if held.read_gave(n)? => continue,
                        Ok(_) => None,
                        Err(e)
                            if matches!(
                                e.kind(),
                                io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
                            ) =>
                        {
                            continue
                        }
                        Err(e) => return Err(e),
                    }
                }
            };
            match msg {
                Some(Response::FileInfo(fi)) => c.info = Some(fi),
                Some(Response::Progress(n)) => c.progress += n as u64,
                Some(Response::Complete) => {
                    c.complete = true;
                    return Ok(c);
                }
                Some(Response::Error { errno, .. }) => {
                    c.error = Some(errno);
                    return Ok(c);
                }
                Some(Response::ServerStat(_)) => {
                    return Err(io::Error::from_raw_os_error(libc::EPROTO))
                }
                None => {
                    c.closed = true;
                    return Ok(c);
                }
            }
        }
    }
}

/// What a status channel said over a whole transfer.
///
/// Exactly one of `complete`, `error` and `closed` is set once
/// [`StatusChannel::wait_complete`] returns:
///
/// - `complete`: every byte was moved. Progress is reported only when the
///   transfer had to wait, so `progress` may be anything from 0 to less
///   than the file info's size; the completion covers the rest.
/// - `error`: the daemon refused the request (the error replaced the file
///   info, which is then `None`) or the transfer failed after it started.
/// - `closed`: **cancelled or closed**: the channel reached end of file
///   before a completion or an error. This is what [`Client::cancel`] and
///   the daemon's shutdown produce, as in the original sendfiled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Completion {
    /// The file info, if it came.
    pub info: Option<FileInfo>,
    /// The sum of the progress messages.
    pub progress: u64,
    /// Whether the completion message came.
    pub complete: bool,
    /// The errno of an error message, if one came.
    pub error: Option<i32>,
    /// Whether the channel ended without either: cancelled or closed.
    pub closed: bool,
}

impl AsFd for StatusChannel {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for StatusChannel {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// The pipe a Read delivers on: one file info, then the data, then EOF.
#[derive(Debug)]
pub struct DataChannel {
    fd: OwnedFd,
    info: Option<FileInfo>,
}

impl DataChannel {
    /// Reads the file info (first message); fails with the daemon's errno if
    /// it refused the request.
    pub fn file_info(&mut self) -> io::Result<FileInfo> {
        if let Some(fi) = self.info {
            return Ok(fi);
        }
        let mut buf = [0u8; proto::MAX_RESPONSE_LEN];
        let n = read_message(self.fd.as_fd(), &mut buf)?;
        match Response::decode(&buf[..n]) {
            Some(Response::FileInfo(fi)) => {
                self.info = Some(fi);
                Ok(fi)
            }
            Some(Response::Error { errno, .. }) => Err(io::Error::from_raw_os_error(errno)),
            _ if n == 0 => Err(io::Error::from_raw_os_error(libc::EPIPE)),
            _ => Err(io::Error::from_raw_os_error(libc::EPROTO)),
        }
    }

    /// Gives the pipe back (after the file info, if it was read).
    pub fn into_fd(self) -> OwnedFd {
        self.fd
    }
}

impl Read for DataChannel {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.file_info()?;
        sys::read(self.fd.as_fd(), buf)
    }
}

impl AsFd for DataChannel {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// How to start a daemon with [`spawn`].
#[derive(Debug, Clone)]
pub struct SpawnOptions {
    /// The executable; `None` means `$SENDFILED_BIN`, else `sendfiled` on
    /// `PATH`.
    pub program: Option<PathBuf>,
    /// Server name (`-s`).
    pub name: String,
    /// Root directory (`-r`).
    pub root: PathBuf,
    /// Socket directory, relative to the root (`-S`).
    pub sockdir: PathBuf,
    /// Most concurrent transfers (`-n`); 0 for the default.
    pub max_files: u32,
    /// Open-file timeout in milliseconds (`-t`); 0 for the default.
    pub open_timeout_ms: u32,
    /// Further arguments, appended as given.
    pub extra_args: Vec<String>,
    /// Where the daemon's log goes: `None` leaves the daemon's default for a
    /// spawned server (syslog), unless `$SENDFILED_LOG` says otherwise.
    pub log: Option<String>,
}

impl SpawnOptions {
    /// Options with the given name, root and socket directory.
    pub fn new(name: &str, root: &Path, sockdir: &Path) -> SpawnOptions {
        SpawnOptions {
            program: None,
            name: name.to_owned(),
            root: root.to_owned(),
            sockdir: sockdir.to_owned(),
            max_files: 0,
            open_timeout_ms: 0,
            extra_args: Vec::new(),
            log: None,
        }
    }
}

/// What [`spawn`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spawned {
    /// A new daemon, ready to accept requests.
    Started(libc::pid_t),
    /// A daemon of that name already serves that socket directory.
    AlreadyRunning,
}

/// How long [`spawn`] waits for the daemon to report ready.
pub const SPAWN_READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Starts the daemon as a child process and waits until it accepts requests.
///
/// The daemon runs with `-p`: once its socket is bound it prints
/// `ready PID` on its standard output; if it cannot start it prints
/// `error ERRNO MESSAGE` and exits. The child is not waited for here: reap
/// it with [`shutdown`] (`waitpid(2)`).
pub fn spawn(opts: &SpawnOptions) -> io::Result<Spawned> {
    let program = opts
        .program
        .clone()
        .or_else(|| std::env::var_os("SENDFILED_BIN").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("sendfiled"));
    let mut cmd = Command::new(&program);
    cmd.arg("-s")
        .arg(&opts.name)
        .arg("-r")
        .arg(&opts.root)
        .arg("-S")
        .arg(&opts.sockdir)
        .arg("-p");
    if opts.max_files > 0 {
        cmd.arg("-n").arg(opts.max_files.to_string());
    }
    if opts.open_timeout_ms > 0 {
        cmd.arg("-t").arg(opts.open_timeout_ms.to_string());
    }
    let log = opts
        .log
        .clone()
        .or_else(|| std::env::var("SENDFILED_LOG").ok())
        .unwrap_or_else(|| "syslog".to_owned());
    cmd.arg("--log").arg(&log);
    cmd.args(&opts.extra_args);
    cmd.stdin(Stdio::null()).stdout(Stdio::piped());
    if log != "stderr" {
        cmd.stderr(Stdio::null());
    }
    let mut child = cmd.spawn()?;
    let pid = child.id() as libc::pid_t;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| io::Error::from_raw_os_error(libc::EIO))?;
    let ready = sys::wait_readable(stdout.as_fd(), SPAWN_READY_TIMEOUT)?;
    if !ready {
        let _ = child.kill();
        let _ = child.wait();
        return Err(io::Error::from_raw_os_error(libc::ETIMEDOUT));
    }
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    match parse_ready_line(&line) {
        Some(ReadyLine::Ready(p)) if p == pid => Ok(Spawned::Started(pid)),
        Some(ReadyLine::Error(errno)) => {
            let _ = child.wait();
            if errno == libc::EADDRINUSE {
                Ok(Spawned::AlreadyRunning)
            } else {
                Err(io::Error::from_raw_os_error(errno))
            }
        }
        _ => {
            // No line: the daemon died before saying anything, or said
            // something we do not understand. Its exit status is an errno
            // by convention (see sendfiled(8)).
            let status = child.wait()?;
            let errno = match status.code() {
                // The shell conventions for "not found" and "not executable",
                // which a spawn that cannot report a failed exec falls back on.
                Some(127) => libc::ENOENT,
                Some(126) => libc::EACCES,
                Some(c) if c > 0 => c,
                _ => libc::EIO,
            };
            Err(io::Error::from_raw_os_error(errno))
        }
    }
}

/// A parsed readiness line of the daemon's `-p` protocol.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadyLine {
    /// `ready PID`
    Ready(libc::pid_t),
    /// `error ERRNO ...`
    Error(i32),
}

/// Parses one readiness line.
pub fn parse_ready_line(line: &str) -> Option<ReadyLine> {
    let mut it = line.split_whitespace();
    match it.next()? {
        "ready" => it.next()?.parse().ok().map(ReadyLine::Ready),
        "error" => it.next()?.parse().ok().map(ReadyLine::Error),
        _ => None,
    }
}

/// Sends `SIGTERM` to a daemon started by [`spawn`] and waits for it like
/// `waitpid(2)`; returns the raw wait status (0 for a clean exit).
pub fn shutdown(pid: libc::pid_t) -> io::Result<libc::c_int> {
    if pid <= 0 {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: kill with a positive pid signals that one process.
    if unsafe { libc::kill(pid, libc::SIGTERM) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut status: libc::c_int = 0;
    loop {
        // SAFETY: status is a valid out pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        return Ok(status);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_lines_parse() {
        assert_eq!(parse_ready_line("ready 42\n"), Some(ReadyLine::Ready(42)));
        assert_eq!(
            parse_ready_line("error 98 address in use\n"),
            Some(ReadyLine::Error(98))
        );
        assert_eq!(parse_ready_line(""), None);
        assert_eq!(parse_ready_line("ready x"), None);
    }

    #[test]
    fn read_message_reads_whole_messages_in_order() {
        let (r, w) = sys::pipe().unwrap();
        let fi = FileInfo::ok(5, 1, 2, 3, 7).encode();
        let p = proto::XferStat::progress(5).encode();
        let e = proto::error_header(proto::SFD_XFER_STAT, libc::EPIPE);
        sys::write_message(w.as_fd(), &fi).unwrap();
        sys::write_message(w.as_fd(), &p).unwrap();
        sys::write_message(w.as_fd(), &e).unwrap();
        drop(w);
        let ch = StatusChannel::from_fd(r);
        assert!(
            matches!(ch.recv().unwrap(), Some(Response::FileInfo(f)) if f.size == 5 && f.txnid == 7)
        );
        assert_eq!(ch.recv().unwrap(), Some(Response::Progress(5)));
        assert_eq!(
            ch.recv().unwrap(),
            Some(Response::Error {
                cmd: proto::SFD_XFER_STAT,
                errno: libc::EPIPE
            })
        );
        assert_eq!(ch.recv().unwrap(), None);
    }

    #[test]
    fn encode_errors_fail_before_sending() {
        let (a, _b) = UnixDatagram::pair().unwrap();
        let c = Client::from_fd(a.into());
        let long = "a".repeat(proto::MAX_PATH_LEN + 1);
        let err = c.read(&long, Range::WHOLE).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENAMETOOLONG));
        let err = c.read("nul\0inside", Range::WHOLE).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EINVAL));
    }
}
