//! tokio_httpd: a small HTTP/1.1 file server on tokio whose bodies go
//! socket-direct through sendfiled. Rule: an example of the public API of
//! `sendfiled-client` (feature `tokio`) and nothing else of this workspace;
//! the two body modes share every line but the body's.
//!
//! ```text
//! cargo build && cargo run --example tokio_httpd -- --root DIR [--listen 127.0.0.1:8080]
//!     [--body sendfiled|tokio-fs] [--sockdir DIR --name NAME | --daemon PATH] [--threads N]
//! ```
//!
//! - GET and HEAD, keep-alive (HTTP/1.1 by default, HTTP/1.0 when asked),
//!   `Content-Length`, `Last-Modified`, `Date`, a `Content-Type` from the
//!   extension; `/` and paths ending in `/` serve `index.html`.
//! - `--body sendfiled` (the default): the file is opened through the
//!   client ([`AsyncClient::open`]), which answers the size and times; the
//!   response head and the body then go to the client's socket in one
//!   transfer ([`OpenFile::send_open_hdtr`]). With inline first (the
//!   default on Linux) a cached file is opened and sent from this process
//!   and only what would wait goes to the daemon; `SENDFILED_INLINE=0`
//!   sends every body through the daemon. A HEAD request drops the open
//!   file, which cancels it.
//! - `--body tokio-fs`: the file is opened with `tokio::fs`, its metadata
//!   gives the size and times, and the head and body go out with
//!   `write_all` from a 256 KiB buffer.
//! - Errors: the errno of the open (the daemon's, or the OS's for tokio-fs)
//!   picks the status: `ENOENT`, `ENOTDIR`, `ELOOP`, `EINVAL` (not a
//!   regular file), `ENAMETOOLONG` give 404; `EACCES`, `EPERM`, `EXDEV` 403;
//!   `EMFILE`, `ENFILE`, `EAGAIN`, `ENOMEM`, `ETIMEDOUT`, `EBUSY` 503 with
//!   `Retry-After: 1`; anything else 500. A path with a `..` segment is 403
//!   before anything is opened, in both modes.
//! - Without `--name` the example starts its own daemon on `--root` (the
//!   binary from `--daemon`, else `$SENDFILED_BIN`, else `sendfiled` next
//!   to this example's directory or on `PATH`) and stops it on SIGINT or
//!   SIGTERM.
//!
//! It prints `listening on ADDR` once it accepts connections (`--listen
//! 127.0.0.1:0` picks a free port).

use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use sendfiled_client::{client, AsyncClient, HeaderTrailer, Range, SpawnOptions, Spawned};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Where response bodies come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyMode {
    Sendfiled,
    TokioFs,
}

struct Args {
    root: PathBuf,
    listen: String,
    body: BodyMode,
    sockdir: Option<PathBuf>,
    name: Option<String>,
    daemon: Option<PathBuf>,
    threads: usize,
}

const USAGE: &str = "usage: tokio_httpd --root DIR [--listen ADDR] [--body sendfiled|tokio-fs] \
                     [--sockdir DIR --name NAME | --daemon PATH] [--threads N]";

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        root: PathBuf::new(),
        listen: "127.0.0.1:8080".into(),
        body: BodyMode::Sendfiled,
        sockdir: None,
        name: None,
        daemon: None,
        threads: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))
        };
        match flag.as_str() {
            "--root" => a.root = value()?.into(),
            "--listen" => a.listen = value()?,
            "--body" => {
                a.body = match value()?.as_str() {
                    "sendfiled" => BodyMode::Sendfiled,
                    "tokio-fs" => BodyMode::TokioFs,
                    other => return Err(format!("--body {other}: sendfiled or tokio-fs")),
                }
            }
            "--sockdir" => a.sockdir = Some(value()?.into()),
            "--name" => a.name = Some(value()?),
            "--daemon" => a.daemon = Some(value()?.into()),
            "--threads" => a.threads = value()?.parse().map_err(|e| format!("--threads: {e}"))?,
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    if a.root.as_os_str().is_empty() {
        return Err(USAGE.into());
    }
    Ok(a)
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("{msg}");
            std::process::exit(2);
        }
    };
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if args.threads > 0 {
        rt.worker_threads(args.threads);
    }
    let rt = rt.enable_all().build().expect("tokio runtime");
    if let Err(e) = rt.block_on(serve(args)) {
        eprintln!("tokio_httpd: {e}");
        std::process::exit(1);
    }
}

struct Server {
    client: AsyncClient,
    root: PathBuf,
    body: BodyMode,
}

/// The daemon binary to start: `--daemon`, `$SENDFILED_BIN`, the
/// `sendfiled` that cargo built next to `examples/`, or `PATH`'s.
fn daemon_program(flag: Option<PathBuf>) -> Option<PathBuf> {
    if flag.is_some() || std::env::var_os("SENDFILED_BIN").is_some() {
        return flag;
    }
    let exe = std::env::current_exe().ok()?;
    let built = exe.parent()?.parent()?.join("sendfiled");
    built.is_file().then_some(built)
}

async fn serve(args: Args) -> io::Result<()> {
    let root = std::fs::canonicalize(&args.root)?;
    let mut spawned = None;
    let client = match &args.name {
        Some(name) => {
            let sockdir = args.sockdir.clone().unwrap_or_else(|| root.clone());
            AsyncClient::connect(&sockdir, name)?
        }
        None => {
            let name = format!("tokio-httpd-{}", std::process::id());
            let mut opts = SpawnOptions::new(&name, &root, Path::new("."));
            opts.program = daemon_program(args.daemon.clone());
            match client::spawn(&opts)? {
                Spawned::Started(pid) => spawned = Some(pid),
                Spawned::AlreadyRunning => {}
            }
            AsyncClient::connect(&root, &name)?
        }
    };
    let listener = TcpListener::bind(&args.listen).await?;
    println!("listening on {}", listener.local_addr()?);
    let server = Arc::new(Server {
        client,
        root,
        body: args.body,
    });
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let result = loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((sock, _)) => {
                    let server = server.clone();
                    tokio::spawn(async move {
                        // A connection's I/O error only ends that connection.
                        let _ = connection(&server, sock).await;
                    });
                }
                // EMFILE and the like: this connection is lost, the server
                // goes on.
                Err(e) => eprintln!("accept: {e}"),
            },
            _ = tokio::signal::ctrl_c() => break Ok(()),
            _ = term.recv() => break Ok(()),
        }
    };
    if let Some(pid) = spawned {
        client::shutdown(pid)?;
    }
    result
}

/// The most a request head may take.
const MAX_HEAD: usize = 16 * 1024;

/// One parsed request head.
#[derive(Debug)]
struct Request {
    head_only: bool,
    path: String,
    keep_alive: bool,
    http10: bool,
    /// A well-formed request refused before anything is opened (a method
    /// other than GET and HEAD, a `..` segment): answered, and the
    /// connection goes on.
    refusal: Option<Refusal>,
}

/// Why a request head cannot be served: a status and its reason.
type Refusal = (u16, &'static str);

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

fn parse_request(head: &[u8]) -> Result<Request, Refusal> {
    const BAD: Refusal = (400, "Bad Request");
    let text = std::str::from_utf8(head).map_err(|_| BAD)?;
    let mut lines = text.split("\r\n");
    let mut first = lines.next().ok_or(BAD)?.split(' ');
    let (method, target, version) = match (first.next(), first.next(), first.next(), first.next()) {
        (Some(m), Some(t), Some(v), None) => (m, t, v),
        _ => return Err(BAD),
    };
    let http10 = match version {
        "HTTP/1.1" => false,
        "HTTP/1.0" => true,
        _ => return Err((505, "HTTP Version Not Supported")),
    };
    let mut keep_alive = !http10;
    for line in lines.take_while(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':').ok_or(BAD)?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("connection") {
            for opt in value.split(',').map(str::trim) {
                if opt.eq_ignore_ascii_case("close") {
                    keep_alive = false;
                } else if opt.eq_ignore_ascii_case("keep-alive") {
                    keep_alive = true;
                }
            }
        } else if (name.eq_ignore_ascii_case("content-length") && value != "0")
            || name.eq_ignore_ascii_case("transfer-encoding")
        {
            // A file server takes no request bodies.
            return Err((413, "Content Too Large"));
        }
    }
    let mut refusal = None;
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => {
            refusal = Some((405, "Method Not Allowed"));
            false
        }
    };
    let raw = target.split(['?', '#']).next().unwrap_or("");
    if !raw.starts_with('/') {
        return Err(BAD);
    }
    let mut path = percent_decode(raw).ok_or(BAD)?;
    if path.contains('\0') {
        return Err(BAD);
    }
    if path.split('/').any(|seg| seg == "..") {
        refusal = refusal.or(Some((403, "Forbidden")));
    }
    if path.ends_with('/') {
        path.push_str("index.html");
    }
    Ok(Request {
        head_only,
        path: path.trim_start_matches('/').to_owned(),
        keep_alive,
        http10,
        refusal,
    })
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The status for a failed open, from its errno.
fn status_for(e: &io::Error) -> Refusal {
    match e.raw_os_error().unwrap_or(libc::EIO) {
        libc::ENOENT | libc::ENOTDIR | libc::ELOOP | libc::EINVAL | libc::ENAMETOOLONG => {
            (404, "Not Found")
        }
        libc::EACCES | libc::EPERM | libc::EXDEV => (403, "Forbidden"),
        libc::EMFILE
        | libc::ENFILE
        | libc::EAGAIN
        | libc::ENOMEM
        | libc::ETIMEDOUT
        | libc::EBUSY => (503, "Service Unavailable"),
        _ => (500, "Internal Server Error"),
    }
}

/// `Sun, 06 Nov 1994 08:49:37 GMT` (RFC 9110's IMF-fixdate) for seconds
/// since the epoch.
fn http_date(secs: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from a day count (proleptic Gregorian, 400-year eras).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        DAYS[days.rem_euclid(7) as usize],
        day,
        MONTHS[(month - 1) as usize],
        year,
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, e)| e) {
        Some("html" | "htm") => "text/html; charset=utf-8",
        Some("txt") => "text/plain; charset=utf-8",
        Some("css") => "text/css",
        Some("js") => "text/javascript",
        Some("json") => "application/json",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("svg") => "image/svg+xml",
        _ => "application/octet-stream",
    }
}

/// The head of a 200 response.
fn ok_head(req: &Request, size: u64, mtime: i64) -> Vec<u8> {
    let mut h = format!(
        "HTTP/1.1 200 OK\r\nServer: tokio_httpd\r\nDate: {}\r\nContent-Type: {}\r\n\
         Content-Length: {size}\r\nLast-Modified: {}\r\n",
        http_date(now_secs()),
        content_type(&req.path),
        http_date(mtime)
    );
    connection_header(&mut h, req.keep_alive, req.http10);
    h.push_str("\r\n");
    h.into_bytes()
}

fn connection_header(h: &mut String, keep_alive: bool, http10: bool) {
    if !keep_alive {
        h.push_str("Connection: close\r\n");
    } else if http10 {
        h.push_str("Connection: keep-alive\r\n");
    }
}

/// A whole error response (a short text body, none for HEAD).
fn error_response(
    (code, reason): Refusal,
    head_only: bool,
    keep_alive: bool,
    http10: bool,
) -> Vec<u8> {
    let body = format!("{code} {reason}\n");
    let mut h = format!(
        "HTTP/1.1 {code} {reason}\r\nServer: tokio_httpd\r\nDate: {}\r\n\
         Content-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n",
        http_date(now_secs()),
        body.len()
    );
    if code == 503 {
        h.push_str("Retry-After: 1\r\n");
    }
    if code == 405 {
        h.push_str("Allow: GET, HEAD\r\n");
    }
    connection_header(&mut h, keep_alive, http10);
    h.push_str("\r\n");
    if !head_only {
        h.push_str(&body);
    }
    h.into_bytes()
}

/// Serves one connection until the client closes it, asks to, or a body
/// fails half-way (the only honest way to end a response whose length was
/// promised).
async fn connection(server: &Server, mut sock: TcpStream) -> io::Result<()> {
    sock.set_nodelay(true)?;
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    loop {
        let end = loop {
            if let Some(end) = find_head_end(&buf) {
                break end;
            }
            if buf.len() > MAX_HEAD {
                let r = error_response(
                    (431, "Request Header Fields Too Large"),
                    false,
                    false,
                    false,
                );
                return sock.write_all(&r).await;
            }
            if sock.read_buf(&mut buf).await? == 0 {
                return Ok(());
            }
        };
        let parsed = parse_request(&buf[..end]);
        buf.drain(..end);
        let req = match parsed {
            Ok(req) => req,
            Err(refusal) => {
                let r = error_response(refusal, false, false, false);
                return sock.write_all(&r).await;
            }
        };
        match req.refusal {
            Some(refusal) => {
                let r = error_response(refusal, req.head_only, req.keep_alive, req.http10);
                sock.write_all(&r).await?;
            }
            None => respond(server, &mut sock, &req).await?,
        }
        if !req.keep_alive {
            return sock.shutdown().await;
        }
    }
}

/// One response: the same for both modes but the lines that move the body.
async fn respond(server: &Server, sock: &mut TcpStream, req: &Request) -> io::Result<()> {
    match server.body {
        BodyMode::Sendfiled => {
            let file = match server.client.open(&req.path, Range::WHOLE).await {
                Ok(f) => f,
                Err(e) => return refuse(sock, req, &e).await,
            };
            let info = file.info();
            let head = ok_head(req, info.size as u64, info.mtime as i64);
            if req.head_only {
                drop(file); // cancels the open file
                return sock.write_all(&head).await;
            }
            let hdtr = HeaderTrailer {
                header: head,
                trailer: Vec::new(),
            };
            file.send_open_hdtr(sock.as_fd(), hdtr).await.map(drop)
        }
        BodyMode::TokioFs => {
            let opened = match tokio::fs::File::open(server.root.join(&req.path)).await {
                Ok(f) => f.metadata().await.map(|m| (f, m)),
                Err(e) => Err(e),
            };
            let (mut file, meta) = match opened {
                Ok((_, m)) if !m.is_file() => {
                    let e = io::Error::from_raw_os_error(libc::EINVAL);
                    return refuse(sock, req, &e).await;
                }
                Ok(x) => x,
                Err(e) => return refuse(sock, req, &e).await,
            };
            let mtime = meta
                .modified()?
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0);
            let size = meta.len();
            let head = ok_head(req, size, mtime);
            if req.head_only {
                return sock.write_all(&head).await;
            }
            let mut chunk = vec![0u8; 256 * 1024];
            chunk[..head.len()].copy_from_slice(&head);
            let mut fill = head.len();
            let mut sent = 0u64;
            loop {
                let want = (chunk.len() - fill).min((size - sent) as usize);
                let n = if want > 0 {
                    file.read(&mut chunk[fill..fill + want]).await?
                } else {
                    0
                };
                fill += n;
                sent += n as u64;
                if fill > 0 {
                    sock.write_all(&chunk[..fill]).await?;
                    fill = 0;
                }
                if n == 0 {
                    break;
                }
            }
            if sent != size {
                // The file shrank under us: the promised length cannot be kept.
                return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
            }
            Ok(())
        }
    }
}

async fn refuse(sock: &mut TcpStream, req: &Request, e: &io::Error) -> io::Result<()> {
    let r = error_response(status_for(e), req.head_only, req.keep_alive, req.http10);
    sock.write_all(&r).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_imf_fixdates() {
        assert_eq!(http_date(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(http_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
    }

    #[test]
    fn heads_parse() {
        let r = parse_request(b"GET /a%20b.txt?x=1 HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        assert_eq!(
            (r.path.as_str(), r.head_only, r.keep_alive),
            ("a b.txt", false, true)
        );
        let r = parse_request(b"HEAD / HTTP/1.0\r\n\r\n").unwrap();
        assert_eq!(
            (r.path.as_str(), r.head_only, r.keep_alive),
            ("index.html", true, false)
        );
        let r = parse_request(b"GET /x HTTP/1.1\r\nConnection: close\r\n\r\n").unwrap();
        assert!(!r.keep_alive);
        let refused = |h: &[u8]| parse_request(h).unwrap().refusal.map(|r| r.0);
        assert_eq!(refused(b"GET /../etc HTTP/1.1\r\n\r\n"), Some(403));
        assert_eq!(refused(b"POST / HTTP/1.1\r\n\r\n"), Some(405));
        assert_eq!(parse_request(b"GET x HTTP/1.1\r\n\r\n").unwrap_err().0, 400);
        assert_eq!(
            parse_request(b"GET /%00 HTTP/1.1\r\n\r\n").unwrap_err().0,
            400
        );
    }
}
