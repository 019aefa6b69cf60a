//! The async client for tokio (feature `tokio`). Rule: this module may only
//! drive the blocking client's pieces (request encoding, [`read_message`],
//! [`Messages`], [`try_send_request_bytes`]) on non-blocking descriptors registered
//! with [`AsyncFd`]; it never blocks a thread, spawns no task and holds no lock
//! across an await (the in-process attempt's table of open files is taken
//! for a lookup at a time).
//!
//! An [`AsyncClient`] is the daemon's request socket, non-blocking and
//! registered with tokio's reactor. Every operation returns a future that
//! sends its request datagram (waiting for the socket to be writable only if
//! the daemon's queue is full) and then resolves on the transfer's status
//! channel, a pipe whose read end is registered with the reactor too:
//!
//! | call | resolves to | when |
//! |---|---|---|
//! | [`AsyncClient::send`], [`AsyncClient::send_hdtr`] | [`Sent`] | the completion arrived |
//! | [`AsyncClient::open`] | [`OpenFile`] | the file info (with the transfer id) arrived, or at once for an open held here |
//! | [`OpenFile::send_open`], [`OpenFile::send_open_hdtr`] | [`Sent`] | the completion arrived |
//! | [`AsyncClient::read`] | [`DataReader`], an [`AsyncRead`] of the data | the file info arrived |
//! | [`AsyncClient::cancel`] | `()` | the Cancel request was sent |
//!
//! Errors are [`io::Error`]s: a refused request or a failed transfer carries
//! the daemon's errno ([`io::Error::raw_os_error`]); a channel that closed
//! without a completion (the transfer was cancelled, or the daemon shut
//! down) is `ECANCELED`.
//!
//! # Where a transfer runs
//!
//! With the in-process attempt on ([`crate::inline`]; the default on
//! Linux), a Send the attempt finishes resolves at once: no request, no
//! channel. An Open the kernel's caches answer is held by this client
//! alone: [`AsyncClient::open`] resolves at once with the file info the
//! daemon would have written (an id with the top bit set), and the
//! [`OpenFile`]'s Send Open is attempted here; only what is left goes to
//! the daemon (Adopt + ContinueOpen, under the same id). Such an open file
//! keeps the open-file deadline as the daemon would (`ETIMEDOUT` for a
//! later Send Open, nothing sent) and [`AsyncClient::cancel`] by its id
//! (`ECANCELED`); it is closed when the [`OpenFile`] is dropped, or past
//! its deadline at this process's next Open; it does not count against
//! the daemon's `-n`, and a daemon shutdown does not end it.
//!
//! # Cancellation by drop
//!
//! Dropping a future (or an [`OpenFile`], or a [`DataReader`]) before its
//! transfer finished ends the transfer:
//!
//! - once the file info has arrived, the drop sends a Cancel request for the
//!   transfer id (non-blocking; the daemon closes the transfer's descriptors
//!   and sends nothing more to the destination);
//! - before the file info has arrived the transfer id is not known, so it
//!   cannot be cancelled by id. The drop then only closes the status
//!   channel, which the daemon treats as the client gone: it ends a Send or
//!   Read as soon as it sees the closed pipe (at once if it is waiting,
//!   otherwise at its next status write; a small file may have been sent
//!   whole by then), and an Open at its next status write, at the latest
//!   when the open-file timeout passes.
//!
//! In both cases the drop also closes the status channel, so a Cancel that
//! could not be sent (the request queue full) still ends the transfer.
//!
//! # Runtime
//!
//! Constructors and the operations register descriptors with the current
//! tokio runtime's reactor: call them from within a runtime whose I/O driver
//! is enabled (`#[tokio::main]`, or a builder with `enable_io`), or they
//! panic as [`AsyncFd::register`] does. The futures are `Send` and may move
//! between worker threads.
//!
//! ```no_run
//! use sendfiled_client::{AsyncClient, HeaderTrailer, Range};
//! use std::os::fd::AsFd;
//!
//! # async fn serve(client: AsyncClient, sock: tokio::net::TcpStream) -> std::io::Result<()> {
//! let file = client.open("index.html", Range::WHOLE).await?;
//! let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", file.info().size);
//! let hdtr = HeaderTrailer { header: head.into_bytes(), trailer: Vec::new() };
//! file.send_open_hdtr(sock.as_fd(), hdtr).await?;
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, Interest, ReadBuf};

use crate::client::{path_arg, read_message, Client};
use crate::messages::Messages;
use crate::protocol::{self as proto, FileInfo, HeaderTrailer, Range, Request, Response};
use crate::request::try_send_request_bytes;
use crate::{inline, sys};

fn errno(e: i32) -> io::Error {
    io::Error::from_raw_os_error(e)
}

/// A connection to a daemon's request socket for use on a tokio runtime.
///
/// Cloning is cheap (a reference count): clones share the socket, so one
/// client can serve every task of a program.
///
/// ```no_run
/// use sendfiled_client::AsyncClient;
///
/// #[tokio::main]
/// async fn main() -> std::io::Result<()> {
///     let client = AsyncClient::connect("/srv/files/run".as_ref(), "web")?;
///     let other_task = client.clone();
///     # drop(other_task);
///     Ok(())
/// }
/// ```
#[derive(Clone)]
pub struct AsyncClient {
    sock: Arc<AsyncFd<Client>>,
}

impl fmt::Debug for AsyncClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncClient")
            .field("sock", self.sock.get_ref())
            .finish()
    }
}

impl AsyncClient {
    /// Connects to the daemon named `name` whose socket is in `sockdir`
    /// (as [`Client::connect`]).
    ///
    /// ```no_run
    /// # #[tokio::main] async fn main() -> std::io::Result<()> {
    /// let client = sendfiled_client::AsyncClient::connect("/srv/files/run".as_ref(), "web")?;
    /// # drop(client); Ok(()) }
    /// ```
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime with its I/O driver enabled.
    pub fn connect(sockdir: &Path, name: &str) -> io::Result<AsyncClient> {
        AsyncClient::new(Client::connect(sockdir, name)?)
    }

    /// Connects to the request socket at `path` (as
    /// [`Client::connect_path`]).
    ///
    /// ```no_run
    /// # #[tokio::main] async fn main() -> std::io::Result<()> {
    /// let client = sendfiled_client::AsyncClient::connect_path("/srv/files/run/web".as_ref())?;
    /// # drop(client); Ok(()) }
    /// ```
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime with its I/O driver enabled.
    pub fn connect_path(path: &Path) -> io::Result<AsyncClient> {
        AsyncClient::new(Client::connect_path(path)?)
    }

    /// Makes a connected [`Client`] asynchronous: sets its socket
    /// `O_NONBLOCK` and registers it with the runtime's reactor.
    ///
    /// ```no_run
    /// use sendfiled_client::{AsyncClient, Client};
    /// # #[tokio::main] async fn main() -> std::io::Result<()> {
    /// let sync = Client::connect("/srv/files/run".as_ref(), "web")?;
    /// let client = AsyncClient::new(sync)?;
    /// # drop(client); Ok(()) }
    /// ```
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime with its I/O driver enabled.
    pub fn new(client: Client) -> io::Result<AsyncClient> {
        // The handshake for the in-process attempt, once, here where waiting
        // for the daemon's answer is expected (crate::inline): a future must
        // not wait for it later.
        let _ = client.inline();
        sys::set_nonblocking(client.as_fd(), true)?;
        // SAFETY: the client owns its socket, which stays open and the same
        // until the AsyncFd (which owns the client) is dropped.
        let sock = unsafe { AsyncFd::register_with_interest(client, Interest::WRITABLE)? };
        Ok(AsyncClient {
            sock: Arc::new(sock),
        })
    }

    /// Send File: the data goes to `dest`; resolves when the daemon reports
    /// the completion. The daemon sets `O_NONBLOCK` on `dest`'s open file
    /// description (a tokio socket already is).
    ///
    /// ```no_run
    /// use sendfiled_client::{AsyncClient, Range};
    /// use std::os::fd::AsFd;
    /// # async fn f(client: AsyncClient, sock: tokio::net::TcpStream) -> std::io::Result<()> {
    /// let sent = client.send("big.iso", sock.as_fd(), Range::WHOLE).await?;
    /// println!("{} bytes", sent.info.size);
    /// # Ok(()) }
    /// ```
    pub fn send<'a>(&self, path: &str, dest: BorrowedFd<'a>, range: Range) -> Transfer<'a> {
        self.send_hdtr(path, dest, range, HeaderTrailer::default())
    }

    /// Send File with header and trailer bytes written around the range
    /// (at most [`proto::MAX_HDTR_LEN`] bytes each).
    ///
    /// ```no_run
    /// use sendfiled_client::{AsyncClient, HeaderTrailer, Range};
    /// use std::os::fd::AsFd;
    /// # async fn f(client: AsyncClient, sock: tokio::net::TcpStream) -> std::io::Result<()> {
    /// let hdtr = HeaderTrailer { header: b"begin\n".to_vec(), trailer: b"end\n".to_vec() };
    /// client.send_hdtr("a.txt", sock.as_fd(), Range::WHOLE, hdtr).await?;
    /// # Ok(()) }
    /// ```
    pub fn send_hdtr<'a>(
        &self,
        path: &str,
        dest: BorrowedFd<'a>,
        range: Range,
        hdtr: HeaderTrailer,
    ) -> Transfer<'a> {
        // The attempt runs here, before the future: it never waits
        // (crate::inline), and a Send it finished needs no request at all.
        let start = path_arg(path).and_then(|path| {
            proto::check_send_limits(&path, &hdtr)?;
            match inline::begin(self.client().inline(), &path, range, &hdtr, dest)? {
                // Nobody else reads this transfer's channel: a Send
                // finished here needs none.
                inline::Begun::Finished(info) => Ok(Start::done_here(info)),
                inline::Begun::Ask { bytes, file } => {
                    let (ch, mut out) = Channel::with_request(bytes, Some(dest))?;
                    out.file = file;
                    Ok(Start::asked(ch, out))
                }
            }
        });
        Transfer::new(self.clone(), start, None)
    }

    /// Open File: resolves to an [`OpenFile`] once the file info (with the
    /// transfer id) arrived; nothing is sent until
    /// [`OpenFile::send_open`]. The daemon ends an open file that is not
    /// sent within its open-file timeout (`ETIMEDOUT`).
    ///
    /// ```no_run
    /// use sendfiled_client::{AsyncClient, Range};
    /// use std::os::fd::AsFd;
    /// # async fn f(client: AsyncClient, sock: tokio::net::TcpStream) -> std::io::Result<()> {
    /// let file = client.open("a.txt", Range::WHOLE).await?;
    /// println!("{} bytes, modified {}", file.info().size, file.info().mtime);
    /// file.send_open(sock.as_fd()).await?;
    /// # Ok(()) }
    /// ```
    pub fn open(&self, path: &str, range: Range) -> Opening {
        // The attempt runs here, before the future, as for send_hdtr. An
        // open the kernel's caches answer is held here alone: this client
        // reads the channel itself, so the daemon need not write the file
        // info, nor hold a file that may never be handed to it.
        let cpath = path_arg(path);
        if let Ok(p) = &cpath {
            if p.to_bytes().len() <= proto::MAX_PATH_LEN {
                if let Some(h) = inline::begin_open_here(self.client().inline(), p, range) {
                    return Opening {
                        first: None,
                        here: Some((self.clone(), h)),
                    };
                }
            }
        }
        let start = cpath.and_then(|path| {
            if path.to_bytes().len() > proto::MAX_PATH_LEN {
                return Err(errno(libc::ENAMETOOLONG));
            }
            let begun = inline::begin_open(self.client().inline(), &path, range)?;
            let (bytes, fds) = begun.ask;
            let mut fds = fds.into_iter();
            let mut out = Outgoing::none();
            out.bytes = bytes;
            out.status_w = fds.next();
            out.file = fds.next();
            Ok((Channel::status(begun.status)?, out))
        });
        Opening {
            first: Some(FirstInfo::new(self.clone(), start)),
            here: None,
        }
    }

    /// Read File: resolves to a [`DataReader`] once the file info arrived;
    /// the reader yields the data.
    ///
    /// ```no_run
    /// use sendfiled_client::{AsyncClient, Range};
    /// use tokio::io::AsyncReadExt;
    /// # async fn f(client: AsyncClient) -> std::io::Result<()> {
    /// let mut data = client.read("a.txt", Range::WHOLE).await?;
    /// let mut body = Vec::new();
    /// data.read_to_end(&mut body).await?;
    /// assert_eq!(body.len(), data.info().size);
    /// # Ok(()) }
    /// ```
    pub fn read(&self, path: &str, range: Range) -> Reading {
        // The attempt runs here, before the future, as for send_hdtr.
        let start = path_arg(path).and_then(|path| {
            if path.to_bytes().len() > proto::MAX_PATH_LEN {
                return Err(errno(libc::ENAMETOOLONG));
            }
            let begun = inline::begin_read(self.client().inline(), &path, range)?;
            let mut out = Outgoing::none();
            if let Some((bytes, fds)) = begun.ask {
                let mut fds = fds.into_iter();
                out.bytes = bytes;
                out.status_w = fds.next();
                out.file = fds.next();
            }
            Ok((Channel::data(begun.data)?, out))
        });
        Reading {
            first: FirstInfo::new(self.clone(), start),
        }
    }

    /// Cancel: ends the transfer `txnid` (of this user); its status channel
    /// closes without a message, so its future resolves to `ECANCELED`.
    /// Resolves once the request is sent.
    ///
    /// ```no_run
    /// use sendfiled_client::{AsyncClient, Range};
    /// # async fn f(client: AsyncClient) -> std::io::Result<()> {
    /// let file = client.open("a.txt", Range::WHOLE).await?;
    /// client.cancel(file.txnid()).await?;
    /// # Ok(()) }
    /// ```
    pub async fn cancel(&self, txnid: u64) -> io::Result<()> {
        if inline::forget(self.client().inline(), txnid) {
            // Held here alone: the daemon never heard of it.
            return Ok(());
        }
        let bytes = Request::Cancel { txnid }.encode()?;
        self.send_request(&bytes, &[]).await
    }

    /// The blocking client underneath, e.g. for
    /// [`Client::server_status`]. Its socket is non-blocking now, so a send
    /// through it may fail with `WouldBlock` when the daemon's queue is full.
    ///
    /// ```no_run
    /// # async fn f(client: sendfiled_client::AsyncClient) -> std::io::Result<()> {
    /// let stat = client.client().server_status(std::time::Duration::from_secs(1))?;
    /// println!("{} live transfers", stat.live);
    /// # Ok(()) }
    /// ```
    pub fn client(&self) -> &Client {
        self.sock.get_ref()
    }

    /// Sends one request datagram, waiting for writability if the daemon's
    /// queue is full. (`writable()` rather than `poll_write_ready`: many
    /// tasks share the socket, and every one of them must be woken.)
    async fn send_request(&self, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
        loop {
            let mut guard = self.sock.writable().await?;
            match guard.try_io(|s| try_send_request_bytes(s.get_ref().as_fd(), bytes, fds)) {
                Ok(r) => return r,
                Err(_would_block) => continue,
            }
        }
    }

    /// A Cancel sent from a destructor: one non-blocking attempt. If it
    /// cannot go out, closing the status channel still ends the transfer.
    fn cancel_now(&self, txnid: usize) {
        if inline::forget(self.client().inline(), txnid as u64) {
            return;
        }
        if let Ok(bytes) = (Request::Cancel {
            txnid: txnid as u64,
        })
        .encode()
        {
            let _ = try_send_request_bytes(self.sock.get_ref().as_fd(), &bytes, &[]);
        }
    }
}

/// A request not sent yet: its bytes and the descriptors that go with it.
struct Outgoing<'a> {
    bytes: Vec<u8>,
    /// The status pipe's write end (the daemon's copy arrives with the
    /// request; ours closes once it is sent).
    status_w: Option<OwnedFd>,
    dest: Option<BorrowedFd<'a>>,
    /// A file the client's attempt opened and hands on (Continue).
    file: Option<OwnedFd>,
    /// A request to send first, with its descriptors: the Adopt of an open
    /// file held here whose Send Open is handed on.
    before: Option<(Vec<u8>, Vec<OwnedFd>)>,
}

/// A request on its way out: the send, boxed so that the futures that
/// hold it stay nameable.
type Sending<'a> = Pin<Box<dyn Future<Output = io::Result<()>> + Send + 'a>>;

impl<'a> Outgoing<'a> {
    /// The future that sends the request, then closes our copy of the
    /// status pipe's write end (so that the daemon's closing it is our end
    /// of file).
    fn start(self, client: &AsyncClient) -> Sending<'a> {
        let client = client.clone();
        Box::pin(async move {
            if self.bytes.is_empty() {
                // Finished in this process: nothing to ask.
                return Ok(());
            }
            if let Some((bytes, fds)) = &self.before {
                let fds: Vec<BorrowedFd<'_>> = fds.iter().map(|f| f.as_fd()).collect();
                client.send_request(bytes, &fds).await?;
            }
            let fds: Vec<BorrowedFd<'_>> = [
                self.status_w.as_ref().map(|w| w.as_fd()),
                self.dest,
                self.file.as_ref().map(|f| f.as_fd()),
            ]
            .into_iter()
            .flatten()
            .collect();
            client.send_request(&self.bytes, &fds).await
        })
    }

    /// Nothing to send: the transfer finished in this process.
    fn none() -> Outgoing<'a> {
        Outgoing {
            bytes: Vec::new(),
            status_w: None,
            dest: None,
            file: None,
            before: None,
        }
    }
}

/// How a [`Transfer`] starts: the request to send (if any), the channel to
/// read (if any), and what it resolves to without reading the channel when
/// the attempt moved every byte in this process.
struct Start<'a> {
    status: Option<Channel>,
    out: Outgoing<'a>,
    done_here: Option<Sent>,
}

impl<'a> Start<'a> {
    /// The daemon's transfer: resolved by what its channel says.
    fn asked(status: Channel, out: Outgoing<'a>) -> Start<'a> {
        Start {
            status: Some(status),
            out,
            done_here: None,
        }
    }

    /// A Send finished in this process: no request, no channel.
    fn done_here(info: FileInfo) -> Start<'a> {
        Start {
            status: None,
            out: Outgoing::none(),
            done_here: Some(Sent { info, progress: 0 }),
        }
    }
}

/// A status (or data) channel's read end, non-blocking and registered with
/// the reactor.
struct Channel {
    fd: AsyncFd<OwnedFd>,
    /// A status channel's bytes read and not yet given out as messages
    /// ([`crate::messages`]); `None` for a Read's data pipe, whose file
    /// info is read exactly (the file's bytes follow it).
    held: Option<Messages>,
}

impl Channel {
    /// A status channel: messages only (a Send's, an Open's), read in as
    /// few calls as the pipe allows: a short transfer's file info and
    /// completion in one `read`.
    fn status(fd: OwnedFd) -> io::Result<Channel> {
        Channel::new(fd, Some(Messages::new()))
    }

    /// A Read's data pipe: the file info, then the file's bytes.
    fn data(fd: OwnedFd) -> io::Result<Channel> {
        Channel::new(fd, None)
    }

    fn new(fd: OwnedFd, held: Option<Messages>) -> io::Result<Channel> {
        sys::set_nonblocking(fd.as_fd(), true)?;
        // SAFETY: the AsyncFd owns the descriptor, which stays open and the
        // same until it is dropped.
        let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE)? };
        Ok(Channel { fd, held })
    }

    /// A new status pipe with the request that passes its write end.
    fn with_request(
        bytes: Vec<u8>,
        dest: Option<BorrowedFd<'_>>,
    ) -> io::Result<(Channel, Outgoing<'_>)> {
        let (r, w) = sys::pipe()?;
        let out = Outgoing {
            bytes,
            status_w: Some(w),
            dest,
            file: None,
            before: None,
        };
        Ok((Channel::status(r)?, out))
    }

    /// The next whole message, or `None` at end of file.
    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Option<Response>>> {
        let Some(held) = &mut self.held else {
            return self.poll_recv_exact(cx);
        };
        loop {
            if let Some(msg) = held.take()? {
                return Poll::Ready(Ok(Some(msg)));
            }
            let mut guard = ready!(self.fd.poll_read_ready(cx))?;
            match guard.try_io(|fd| sys::read(fd.get_ref().as_fd(), held.space())) {
                Ok(Ok(n)) => {
                    if !held.read_gave(n)? {
                        return Poll::Ready(Ok(None));
                    }
                }
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => {}
            }
        }
    }

    /// The next message read exactly, nothing past it.
    fn poll_recv_exact(&self, cx: &mut Context<'_>) -> Poll<io::Result<Option<Response>>> {
        let mut buf = [0u8; proto::SERVER_STAT_LEN + proto::MAX_RESPONSE_LEN];
        loop {
            let mut guard = ready!(self.fd.poll_read_ready(cx))?;
            match guard.try_io(|fd| read_message(fd.get_ref().as_fd(), &mut buf)) {
                Ok(Ok(0)) => return Poll::Ready(Ok(None)),
                Ok(Ok(n)) => {
                    return Poll::Ready(
                        Response::decode(&buf[..n])
                            .map(Some)
                            .ok_or_else(|| errno(libc::EPROTO)),
                    )
                }
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }
}

/// What a finished Send, Send with header/trailer or Send Open reported.
///
/// ```no_run
/// use sendfiled_client::{AsyncClient, Range, Sent};
/// use std::os::fd::AsFd;
/// # async fn f(client: AsyncClient, sock: tokio::net::TcpStream) -> std::io::Result<()> {
/// let Sent { info, progress } = client.send("a.txt", sock.as_fd(), Range::WHOLE).await?;
/// assert!(progress <= info.size as u64);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    /// The file info: size (the range clipped to the file), times, the
    /// transfer id.
    pub info: FileInfo,
    /// The sum of the progress messages before the completion. Progress is
    /// written only when the transfer had to wait, so this is anything from
    /// 0 to less than `info.size`; the completion covers the rest.
    pub progress: u64,
}

/// The future of a Send, Send with header/trailer or Send Open: resolves to
/// [`Sent`] at the completion, to the daemon's errno if it refused or
/// failed the transfer, to `ECANCELED` if the channel closed without either.
///
/// Dropping it before it resolved cancels the transfer (see the [module
/// notes](self#cancellation-by-drop)). The lifetime is the destination's
/// borrow, needed until the request is sent.
///
/// ```no_run
/// use sendfiled_client::{AsyncClient, Range};
/// use std::os::fd::AsFd;
/// use std::time::Duration;
/// # async fn f(client: AsyncClient, sock: tokio::net::TcpStream) -> std::io::Result<()> {
/// // A transfer that takes longer than a minute is cancelled.
/// match tokio::time::timeout(Duration::from_secs(60), client.send("a.iso", sock.as_fd(), Range::WHOLE)).await {
///     Ok(done) => println!("{} bytes", done?.info.size),
///     Err(_elapsed) => println!("cancelled"),
/// }
/// # Ok(()) }
/// ```
#[must_use = "futures do nothing unless polled; dropping this one cancels the transfer"]
pub struct Transfer<'a> {
    client: AsyncClient,
    out: Option<Sending<'a>>,
    status: Option<Channel>,
    early: Option<io::Error>,
    info: Option<FileInfo>,
    progress: u64,
    /// The channel said its last word (completion, error, end of file), or
    /// the request never went out: nothing to cancel.
    ended: bool,
    /// Every byte went in this process: resolves to this once the request
    /// (if any) is sent, without waiting for the daemon.
    done_here: Option<Sent>,
}

impl fmt::Debug for Transfer<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transfer")
            .field("sent", &self.out.is_none())
            .field("info", &self.info)
            .field("progress", &self.progress)
            .field("ended", &self.ended)
            .finish()
    }
}

impl<'a> Transfer<'a> {
    fn new(
        client: AsyncClient,
        start: io::Result<Start<'a>>,
        info: Option<FileInfo>,
    ) -> Transfer<'a> {
        let (status, out, early, done_here) = match start {
            Ok(s) => (s.status, Some(s.out.start(&client)), None, s.done_here),
            Err(e) => (None, None, Some(e), None),
        };
        Transfer {
            client,
            out,
            status,
            early,
            info,
            progress: 0,
            ended: false,
            done_here,
        }
    }

    /// The file info, once it arrived (for Send Open: from the start). From
    /// then on a drop cancels the transfer by its id.
    ///
    /// ```no_run
    /// use sendfiled_client::{AsyncClient, Range};
    /// use std::os::fd::AsFd;
    /// # async fn f(client: AsyncClient, sock: tokio::net::TcpStream) {
    /// let t = client.send("a.txt", sock.as_fd(), Range::WHOLE);
    /// assert!(t.file_info().is_none()); // not polled yet
    /// # }
    /// ```
    pub fn file_info(&self) -> Option<FileInfo> {
        self.info
    }

    /// The progress reported so far.
    ///
    /// ```no_run
    /// use sendfiled_client::{AsyncClient, Range};
    /// use std::os::fd::AsFd;
    /// # async fn f(client: AsyncClient, sock: tokio::net::TcpStream) {
    /// let t = client.send("a.txt", sock.as_fd(), Range::WHOLE);
    /// assert_eq!(t.progress(), 0);
    /// # }
    /// ```
    pub fn progress(&self) -> u64 {
        self.progress
    }
}

impl Future for Transfer<'_> {
    type Output = io::Result<Sent>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<Sent>> {
        let this = self.get_mut();
        if let Some(e) = this.early.take() {
            this.ended = true;
            return Poll::Ready(Err(e));
        }
        if let Some(out) = &mut this.out {
            let sent = ready!(out.as_mut().poll(cx));
            this.out = None;
            if let Err(e) = sent {
                this.ended = true;
                this.status = None;
                return Poll::Ready(Err(e));
            }
        }
        if let Some(sent) = this.done_here.take() {
            // The daemon (for a Send Open) writes the completion to a
            // channel nobody reads any more, and closes it.
            this.info = Some(sent.info);
            this.ended = true;
            this.status = None;
            return Poll::Ready(Ok(sent));
        }
        let Some(status) = &mut this.status else {
            return Poll::Ready(Err(io::Error::other("Transfer polled after it resolved")));
        };
        loop {
            let msg = ready!(status.poll_recv(cx))?;
            let done = match msg {
                Some(Response::FileInfo(fi)) => {
                    this.info = Some(fi);
                    continue;
                }
                Some(Response::Progress(n)) => {
                    this.progress += n as u64;
                    continue;
                }
                Some(Response::Complete) => match this.info {
                    Some(info) => Ok(Sent {
                        info,
                        progress: this.progress,
                    }),
                    None => Err(errno(libc::EPROTO)),
                },
                Some(Response::Error { errno: e, .. }) => Err(errno(e)),
                Some(Response::ServerStat(_)) => return Poll::Ready(Err(errno(libc::EPROTO))),
                None => Err(errno(libc::ECANCELED)),
            };
            this.ended = true;
            this.status = None;
            return Poll::Ready(done);
        }
    }
}

impl Drop for Transfer<'_> {
    fn drop(&mut self) {
        if self.ended || self.out.is_some() {
            return;
        }
        if let Some(info) = self.info {
            self.client.cancel_now(info.txnid);
        }
        // The status channel closes with the rest of the fields.
    }
}

/// The part of Open and Read up to the file info.
struct FirstInfo {
    client: AsyncClient,
    out: Option<Sending<'static>>,
    status: Option<Channel>,
    early: Option<io::Error>,
}

impl FirstInfo {
    fn new(client: AsyncClient, start: io::Result<(Channel, Outgoing<'static>)>) -> FirstInfo {
        let (status, out, early) = match start {
            Ok((ch, out)) => (Some(ch), Some(out.start(&client)), None),
            Err(e) => (None, None, Some(e)),
        };
        FirstInfo {
            client,
            out,
            status,
            early,
        }
    }

    fn poll_info(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<(Channel, FileInfo)>> {
        if let Some(e) = self.early.take() {
            return Poll::Ready(Err(e));
        }
        if let Some(out) = &mut self.out {
            let sent = ready!(out.as_mut().poll(cx));
            self.out = None;
            if let Err(e) = sent {
                self.status = None;
                return Poll::Ready(Err(e));
            }
        }
        let Some(status) = &mut self.status else {
            return Poll::Ready(Err(io::Error::other("future polled after it resolved")));
        };
        let msg = ready!(status.poll_recv(cx));
        let status = self.status.take();
        Poll::Ready(match (msg?, status) {
            (Some(Response::FileInfo(fi)), Some(ch)) => Ok((ch, fi)),
            (Some(Response::Error { errno: e, .. }), _) => Err(errno(e)),
            (None, _) => Err(errno(libc::ECANCELED)),
            _ => Err(errno(libc::EPROTO)),
        })
    }
}

/// The future of [`AsyncClient::open`]: resolves to an [`OpenFile`] when
/// the file info arrived, or to the daemon's errno. Dropping it before then
/// closes the status channel (see the [module
/// notes](self#cancellation-by-drop)).
///
/// ```no_run
/// # async fn f(client: sendfiled_client::AsyncClient) -> std::io::Result<()> {
/// let opening = client.open("a.txt", sendfiled_client::Range::WHOLE);
/// let file = opening.await?;
/// # drop(file); Ok(()) }
/// ```
#[must_use = "futures do nothing unless polled"]
pub struct Opening {
    /// The daemon's Open (or Adopt): resolved by its channel.
    first: Option<FirstInfo>,
    /// An open held here alone: resolved at once.
    here: Option<(AsyncClient, inline::HeldHere)>,
}

impl fmt::Debug for Opening {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Opening")
            .field("sent", &self.first.as_ref().is_none_or(|f| f.out.is_none()))
            .field("here", &self.here.is_some())
            .finish()
    }
}

impl Drop for Opening {
    fn drop(&mut self) {
        if let Some((client, h)) = self.here.take() {
            inline::forget(client.client().inline(), h.info.txnid as u64);
        }
    }
}

impl Future for Opening {
    type Output = io::Result<OpenFile>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<OpenFile>> {
        let this = self.get_mut();
        if let Some((client, h)) = this.here.take() {
            return Poll::Ready(Ok(OpenFile {
                client,
                info: h.info,
                status: None,
                here: Some(h.deadline),
            }));
        }
        let Some(first) = &mut this.first else {
            return Poll::Ready(Err(io::Error::other("Opening polled after it resolved")));
        };
        let (status, info) = ready!(first.poll_info(cx))?;
        Poll::Ready(Ok(OpenFile {
            client: first.client.clone(),
            info,
            status: Some(status),
            here: None,
        }))
    }
}

/// A file the daemon opened for this client, not sent yet: its
/// [`FileInfo`] (size, times, transfer id) and its status channel.
///
/// Send it with [`send_open`](Self::send_open) or
/// [`send_open_hdtr`](Self::send_open_hdtr). Dropping it unsent cancels it
/// (the daemon's slot is free at once instead of at the open-file timeout).
///
/// ```no_run
/// use sendfiled_client::{AsyncClient, Range};
/// # async fn f(client: AsyncClient) -> std::io::Result<()> {
/// let file = client.open("a.txt", Range::WHOLE).await?;
/// if file.info().size == 0 {
///     drop(file); // cancels
/// }
/// # Ok(()) }
/// ```
pub struct OpenFile {
    client: AsyncClient,
    info: FileInfo,
    status: Option<Channel>,
    /// Held here alone ([`inline::begin_open_here`]), until this deadline;
    /// `None` once sent, or for an open the daemon holds.
    here: Option<Instant>,
}

impl fmt::Debug for OpenFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenFile")
            .field("info", &self.info)
            .finish()
    }
}

impl OpenFile {
    /// The file info the daemon answered the Open with.
    ///
    /// ```no_run
    /// # async fn f(client: sendfiled_client::AsyncClient) -> std::io::Result<()> {
    /// let file = client.open("a.txt", sendfiled_client::Range::WHOLE).await?;
    /// println!("{} bytes, mtime {}", file.info().size, file.info().mtime);
    /// # Ok(()) }
    /// ```
    pub fn info(&self) -> FileInfo {
        self.info
    }

    /// The transfer id, for [`AsyncClient::cancel`].
    ///
    /// ```no_run
    /// # async fn f(client: sendfiled_client::AsyncClient) -> std::io::Result<()> {
    /// let file = client.open("a.txt", sendfiled_client::Range::WHOLE).await?;
    /// client.cancel(file.txnid()).await?;
    /// # Ok(()) }
    /// ```
    pub fn txnid(&self) -> u64 {
        self.info.txnid as u64
    }

    /// Send Open File: the opened range goes to `dest`; the returned
    /// [`Transfer`] resolves at the completion.
    ///
    /// ```no_run
    /// use std::os::fd::AsFd;
    /// # async fn f(client: sendfiled_client::AsyncClient, sock: tokio::net::TcpStream) -> std::io::Result<()> {
    /// let file = client.open("a.txt", sendfiled_client::Range::WHOLE).await?;
    /// file.send_open(sock.as_fd()).await?;
    /// # Ok(()) }
    /// ```
    pub fn send_open(self, dest: BorrowedFd<'_>) -> Transfer<'_> {
        self.send_open_hdtr(dest, HeaderTrailer::default())
    }

    /// Send Open File with header and trailer bytes around the range: e.g.
    /// an HTTP response head and the body in one transfer, socket-direct.
    ///
    /// ```no_run
    /// use sendfiled_client::HeaderTrailer;
    /// use std::os::fd::AsFd;
    /// # async fn f(client: sendfiled_client::AsyncClient, sock: tokio::net::TcpStream) -> std::io::Result<()> {
    /// let file = client.open("a.txt", sendfiled_client::Range::WHOLE).await?;
    /// let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", file.info().size);
    /// let hdtr = HeaderTrailer { header: head.into_bytes(), trailer: Vec::new() };
    /// file.send_open_hdtr(sock.as_fd(), hdtr).await?;
    /// # Ok(()) }
    /// ```
    pub fn send_open_hdtr(mut self, dest: BorrowedFd<'_>, hdtr: HeaderTrailer) -> Transfer<'_> {
        if let Some(deadline) = self.here.take() {
            return self.send_held_here(deadline, dest, hdtr);
        }
        let status = self.status.take();
        let client = self.client.client();
        // The attempt runs here, before the future, as for send_hdtr.
        let start = proto::check_send_limits(c"", &hdtr)
            .map_err(io::Error::from)
            .and_then(|()| inline::begin_send_open(client.inline(), self.txnid(), dest, &hdtr))
            .and_then(|begun| {
                let ch = status.ok_or_else(|| errno(libc::EBADF))?;
                let out = Outgoing {
                    bytes: begun.bytes,
                    status_w: None,
                    dest: Some(dest),
                    file: None,
                    before: None,
                };
                let mut start = Start::asked(ch, out);
                if begun.finished_here {
                    start.done_here = Some(Sent {
                        info: self.info,
                        progress: 0,
                    });
                }
                Ok(start)
            });
        let t = Transfer::new(self.client.clone(), start, Some(self.info));
        if t.early.is_some() {
            // Not sent: the open file is cancelled as an unsent one is.
            self.client.cancel_now(self.info.txnid);
        }
        t
    }
}

impl OpenFile {
    /// The Send Open of a file held here alone: attempted here; what is
    /// left goes to the daemon as Adopt + ContinueOpen on a new channel.
    fn send_held_here<'a>(
        &self,
        deadline: Instant,
        dest: BorrowedFd<'a>,
        hdtr: HeaderTrailer,
    ) -> Transfer<'a> {
        let client = self.client.client();
        let start = proto::check_send_limits(c"", &hdtr)
            .map_err(io::Error::from)
            .and_then(|()| {
                inline::send_open_here(client.inline(), self.txnid(), deadline, dest, &hdtr)
            })
            .and_then(|begun| match begun {
                inline::SendOpenHere::Finished => Ok(Start {
                    status: None,
                    out: Outgoing::none(),
                    done_here: Some(Sent {
                        info: self.info,
                        progress: 0,
                    }),
                }),
                inline::SendOpenHere::HandOn { adopt, file, cont } => {
                    let (r, w) = sys::pipe()?;
                    let out = Outgoing {
                        bytes: cont,
                        status_w: None,
                        dest: Some(dest),
                        file: None,
                        before: Some((adopt, vec![w, file])),
                    };
                    Ok(Start::asked(Channel::status(r)?, out))
                }
            });
        if start.is_err() {
            // Not sent, and nothing held any more.
            inline::forget(client.inline(), self.txnid());
        }
        Transfer::new(self.client.clone(), start, Some(self.info))
    }
}

impl Drop for OpenFile {
    fn drop(&mut self) {
        if self.here.is_some() {
            // Held here alone: the file closes, the daemon never knew.
            inline::forget(self.client.client().inline(), self.txnid());
        } else if self.status.is_some() {
            self.client.cancel_now(self.info.txnid);
        }
    }
}

/// The future of [`AsyncClient::read`]: resolves to a [`DataReader`] when
/// the file info arrived, or to the daemon's errno. Dropping it before then
/// closes the data channel (see the [module
/// notes](self#cancellation-by-drop)).
///
/// ```no_run
/// # async fn f(client: sendfiled_client::AsyncClient) -> std::io::Result<()> {
/// let reading = client.read("a.txt", sendfiled_client::Range::WHOLE);
/// let reader = reading.await?;
/// # drop(reader); Ok(()) }
/// ```
#[must_use = "futures do nothing unless polled"]
pub struct Reading {
    first: FirstInfo,
}

impl fmt::Debug for Reading {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reading")
            .field("sent", &self.first.out.is_none())
            .finish()
    }
}

impl Future for Reading {
    type Output = io::Result<DataReader>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<DataReader>> {
        let this = self.get_mut();
        let (data, info) = ready!(this.first.poll_info(cx))?;
        Poll::Ready(Ok(DataReader {
            client: this.first.client.clone(),
            info,
            left: info.size as u64,
            data,
            ended: false,
        }))
    }
}

/// The data of a Read, as an [`AsyncRead`]: exactly `info().size` bytes,
/// then end of file. If the daemon's data pipe ends early (the transfer was
/// cancelled, failed, or the daemon shut down) the read fails with
/// [`io::ErrorKind::UnexpectedEof`] instead of looking complete.
///
/// Dropping it before the end cancels the transfer by its id.
///
/// ```no_run
/// use tokio::io::AsyncReadExt;
/// # async fn f(client: sendfiled_client::AsyncClient) -> std::io::Result<()> {
/// let mut data = client.read("a.txt", sendfiled_client::Range::WHOLE).await?;
/// let mut body = String::new();
/// data.read_to_string(&mut body).await?;
/// # Ok(()) }
/// ```
pub struct DataReader {
    client: AsyncClient,
    info: FileInfo,
    left: u64,
    data: Channel,
    ended: bool,
}

impl fmt::Debug for DataReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataReader")
            .field("info", &self.info)
            .field("left", &self.left)
            .finish()
    }
}

impl DataReader {
    /// The file info that came before the data.
    ///
    /// ```no_run
    /// # async fn f(client: sendfiled_client::AsyncClient) -> std::io::Result<()> {
    /// let data = client.read("a.txt", sendfiled_client::Range::WHOLE).await?;
    /// println!("{} bytes to come", data.info().size);
    /// # Ok(()) }
    /// ```
    pub fn info(&self) -> FileInfo {
        self.info
    }
}

impl AsyncRead for DataReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.ended || buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            let mut guard = ready!(this.data.fd.poll_read_ready(cx))?;
            let dst = buf.initialize_unfilled();
            match guard.try_io(|fd| sys::read(fd.get_ref().as_fd(), dst)) {
                Ok(Ok(0)) => {
                    this.ended = true;
                    if this.left > 0 {
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!("the data channel ended {} bytes early", this.left),
                        )));
                    }
                    return Poll::Ready(Ok(()));
                }
                Ok(Ok(n)) => {
                    buf.advance(n);
                    this.left = this.left.saturating_sub(n as u64);
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }
}

impl Drop for DataReader {
    fn drop(&mut self) {
        if !self.ended && self.left > 0 {
            self.client.cancel_now(self.info.txnid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixDatagram;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .unwrap()
    }

    #[test]
    fn bad_paths_fail_without_a_request() {
        rt().block_on(async {
            let (a, b) = UnixDatagram::pair().unwrap();
            let c = AsyncClient::new(Client::from_fd(a.into())).unwrap();
            let (_r, w) = sys::pipe().unwrap();
            let long = "a".repeat(proto::MAX_PATH_LEN + 1);
            let e = c.send(&long, w.as_fd(), Range::WHOLE).await.unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::ENAMETOOLONG));
            let e = c.open("nul\0inside", Range::WHOLE).await.unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
            let e = c.read("nul\0inside", Range::WHOLE).await.unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
            b.set_nonblocking(true).unwrap();
            let mut buf = [0u8; 64];
            assert_eq!(
                b.recv(&mut buf).unwrap_err().kind(),
                io::ErrorKind::WouldBlock
            );
        });
    }

    /// A fake daemon on a socket pair: answers the request's status pipe
    /// with the given messages, then closes it.
    fn answer(b: &UnixDatagram, msgs: &[&[u8]]) -> Vec<u8> {
        let mut buf = vec![0u8; proto::MAX_REQUEST_LEN + 1];
        let got = crate::sys::wait_readable(b.as_fd(), std::time::Duration::from_secs(20)).unwrap();
        assert!(got);
        let mut fds = recv_fds(b, &mut buf);
        let status = fds.remove(0);
        for m in msgs {
            sys::write_message(status.as_fd(), m).unwrap();
        }
        buf
    }

    fn recv_fds(b: &UnixDatagram, buf: &mut [u8]) -> Vec<OwnedFd> {
        use std::os::fd::AsFd;
        assert!(crate::sys::wait_readable(b.as_fd(), std::time::Duration::from_secs(5)).unwrap());
        crate::sys::recv_with_fds(b.as_fd(), buf).unwrap().fds
    }

    #[test]
    fn messages_resolve_the_futures() {
        let (a, b) = UnixDatagram::pair().unwrap();
        let fi = FileInfo::ok(5, 1, 2, 3, 7).encode();
        let p = proto::XferStat::progress(2).encode();
        let done = proto::XferStat::complete().encode();
        let refused = proto::error_header(proto::SFD_FILE_INFO, libc::ENOENT);
        let fake = std::thread::spawn(move || {
            answer(&b, &[&fi, &p, &done]);
            answer(&b, &[&refused]);
            answer(&b, &[&fi]);
        });
        rt().block_on(async {
            let c = AsyncClient::new(Client::from_fd(a.into())).unwrap();
            let (_r, w) = sys::pipe().unwrap();
            let sent = c.send("x", w.as_fd(), Range::WHOLE).await.unwrap();
            assert_eq!((sent.info.size, sent.info.txnid, sent.progress), (5, 7, 2));
            let e = c.open("x", Range::WHOLE).await.unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::ENOENT));
            let t = c.send("x", w.as_fd(), Range::WHOLE).await.unwrap_err();
            assert_eq!(t.raw_os_error(), Some(libc::ECANCELED));
        });
        fake.join().unwrap();
    }
}
