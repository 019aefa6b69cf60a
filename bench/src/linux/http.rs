//! The HTTP figure (issue 15): `examples/tokio_httpd` serving the bench
//! files with bodies through the daemon (`--body sendfiled`, one server per
//! engine's daemon) and with `tokio::fs` + `write_all` (`--body tokio-fs`,
//! one server: it sends nothing through a daemon, so it is a reference
//! measured once), loaded by plain blocking keep-alive `GET`s from this
//! process.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use super::report::{cell, engine_cell, Report};
use super::stats::{median, quantile_us};
use super::{make_file, os, pattern_byte, warm, Daemon, Files, Plan};

/// The 16 MiB file of this figure (the other two are the small figure's).
const FILE_16M: &str = "http-16m.bin";

/// A socket read that takes longer than this fails the run.
const IO_TIMEOUT: Duration = Duration::from_secs(20);

fn other(msg: String) -> io::Error {
    io::Error::other(msg)
}

/// `tokio_httpd` built in release mode next to this executable's target
/// directory (`cargo build --release -p sendfiled --example tokio_httpd`,
/// run now as `daemon_path` does for the daemon, so that `cargo run -p
/// sendfiled-bench` alone is enough), or `$SENDFILED_BENCH_HTTPD`.
fn httpd_path() -> io::Result<PathBuf> {
    if let Some(p) = std::env::var_os("SENDFILED_BENCH_HTTPD") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe()?;
    let target = exe
        .parent()
        .and_then(Path::parent)
        .unwrap_or(Path::new("."));
    let bin = target.join("release").join("examples").join("tokio_httpd");
    super::build_release(target, &["--example", "tokio_httpd"], &bin, "tokio_httpd")
}

/// The body mode that goes through the daemon, and the one that does not.
const SENDFILED: &str = "sendfiled";
const TOKIO_FS: &str = "tokio-fs";

/// One running `tokio_httpd`.
struct Server {
    child: Child,
    pid: i32,
    addr: SocketAddr,
    /// Held so that the server's stdout stays open.
    _stdout: BufReader<ChildStdout>,
}

impl Server {
    /// `inline`: the example's client attempts each transfer itself first
    /// (the default); without it, `SENDFILED_INLINE=0`: every body goes
    /// through the daemon.
    /// `threads`: the runtime's worker threads (`None`: tokio's default).
    fn start(
        bin: &Path,
        d: &Daemon,
        mode: &str,
        inline: bool,
        threads: Option<usize>,
    ) -> io::Result<Server> {
        let mut cmd = Command::new(bin);
        if !inline {
            cmd.env("SENDFILED_INLINE", "0");
        }
        if let Some(n) = threads {
            cmd.args(["--threads", &n.to_string()]);
        }
        let mut child = cmd
            .arg("--root")
            .arg(&d.root)
            .args(["--listen", "127.0.0.1:0", "--body", mode, "--sockdir"])
            .arg(&d.root)
            .arg("--name")
            .arg(&d.name)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()?;
        let pid = child.id() as i32;
        let out = child
            .stdout
            .take()
            .ok_or_else(|| other("no stdout".into()))?;
        let ready = sendfiled_sys::wait_readable(out.as_fd(), Duration::from_secs(30))?;
        let mut out = BufReader::new(out);
        let mut line = String::new();
        if ready {
            out.read_line(&mut line)?;
        }
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|a| a.parse().ok());
        let Some(addr) = addr else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(other(format!("tokio_httpd --body {mode} said {line:?}")));
        };
        Ok(Server {
            child,
            pid,
            addr,
            _stdout: out,
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(self.pid, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// utime + stime of a process (µs).
fn cpu_us(pid: i32) -> f64 {
    os::proc_cpu_us(pid).map_or(0.0, |(u, s)| u + s)
}

/// One keep-alive connection to the server.
struct Conn {
    sock: TcpStream,
    /// Bytes read past the last response head.
    pending: Vec<u8>,
    buf: Vec<u8>,
    request: Vec<u8>,
}

impl Conn {
    fn open(addr: SocketAddr, path: &str) -> io::Result<Conn> {
        let sock = TcpStream::connect(addr)?;
        sock.set_nodelay(true)?;
        sock.set_read_timeout(Some(IO_TIMEOUT))?;
        sock.set_write_timeout(Some(IO_TIMEOUT))?;
        Ok(Conn {
            sock,
            pending: Vec::with_capacity(8192),
            buf: vec![0; 256 << 10],
            request: format!("GET /{path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").into_bytes(),
        })
    }

    /// Sends the request and reads the response head; checks the status
    /// line and returns the `Content-Length`.
    fn head(&mut self) -> io::Result<u64> {
        self.sock.write_all(&self.request)?;
        let end = loop {
            if let Some(i) = self.pending.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let n = self.sock.read(&mut self.buf)?;
            if n == 0 {
                return Err(other("connection closed before the response head".into()));
            }
            self.pending.extend_from_slice(&self.buf[..n]);
        };
        let head = String::from_utf8_lossy(&self.pending[..end]).into_owned();
        self.pending.drain(..end);
        if !head.starts_with("HTTP/1.1 200 ") {
            return Err(other(format!("response {:?}", head.lines().next())));
        }
        head.lines()
            .find_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse::<u64>().ok())?
            })
            .ok_or_else(|| other(format!("no Content-Length in {head:?}")))
    }

    /// Reads exactly `len` body bytes (or until `stop`), checking them
    /// against the bench files' pattern: every byte if `full`, else the
    /// first and last byte of each read. Returns the bytes read.
    fn body(&mut self, len: u64, full: bool, stop: Option<&AtomicBool>) -> io::Result<u64> {
        let check = |off: u64, chunk: &[u8]| -> io::Result<()> {
            let bad = if full {
                chunk.iter().zip(off..).any(|(&b, o)| b != pattern_byte(o))
            } else {
                let last = chunk.len() as u64 - 1;
                chunk[0] != pattern_byte(off) || chunk[last as usize] != pattern_byte(off + last)
            };
            if bad {
                return Err(other(format!("wrong body bytes near offset {off}")));
            }
            Ok(())
        };
        let first = (self.pending.len() as u64).min(len) as usize;
        if first > 0 {
            check(0, &self.pending[..first])?;
            self.pending.drain(..first);
        }
        let mut got = first as u64;
        while got < len {
            if stop.is_some_and(|s| s.load(Ordering::Relaxed)) {
                break;
            }
            let want = (len - got).min(self.buf.len() as u64) as usize;
            let n = self.sock.read(&mut self.buf[..want])?;
            if n == 0 {
                return Err(other(format!(
                    "connection closed after {got} of {len} bytes"
                )));
            }
            check(got, &self.buf[..n])?;
            got += n as u64;
        }
        Ok(got)
    }

    /// One timed request; returns its latency (ns).
    fn get(&mut self, want_len: u64, full: bool) -> io::Result<u64> {
        let t = Instant::now();
        let len = self.head()?;
        if len != want_len {
            return Err(other(format!("Content-Length {len}, file has {want_len}")));
        }
        self.body(len, full, None)?;
        Ok(t.elapsed().as_nanos() as u64)
    }
}

/// One timed run: `conns` connections GET `path` back to back for `secs`.
struct Run {
    lat: Vec<u64>,
    elapsed: Duration,
    /// CPU of the server and of the daemon over the run (µs).
    server_cpu: f64,
    daemon_cpu: f64,
}

/// `d`: the daemon the server's bodies go through, whose CPU is counted
/// (none for tokio-fs bodies).
fn run(
    srv: (SocketAddr, i32),
    d: Option<&Daemon>,
    path: &str,
    len: u64,
    conns: usize,
    secs: f64,
) -> io::Result<Run> {
    let barrier = Arc::new(Barrier::new(conns + 1));
    let window = Duration::from_secs_f64(secs);
    let mut threads = Vec::new();
    for _ in 0..conns {
        let mut c = Conn::open(srv.0, path)?;
        // Warm the connection (and check one body byte by byte) untimed.
        c.get(len, true)?;
        let barrier = Arc::clone(&barrier);
        threads.push(thread::spawn(move || -> io::Result<Vec<u64>> {
            let mut lat = Vec::with_capacity(1 << 16);
            barrier.wait();
            let end = Instant::now() + window;
            while Instant::now() < end {
                lat.push(c.get(len, false)?);
            }
            Ok(lat)
        }));
    }
    let daemon_cpu = || d.map_or(0.0, |d| cpu_us(d.pid));
    let (s0, d0) = (cpu_us(srv.1), daemon_cpu());
    barrier.wait();
    let t = Instant::now();
    let mut lat = Vec::new();
    let mut err = None;
    for th in threads {
        match th.join() {
            Ok(Ok(l)) => lat.extend(l),
            Ok(Err(e)) => err = err.or(Some(e)),
            Err(_) => err = err.or(Some(other("load thread panicked".into()))),
        }
    }
    let elapsed = t.elapsed();
    let (s1, d1) = (cpu_us(srv.1), daemon_cpu());
    if let Some(e) = err {
        return Err(e);
    }
    lat.sort_unstable();
    Ok(Run {
        lat,
        elapsed,
        server_cpu: s1 - s0,
        daemon_cpu: d1 - d0,
    })
}

/// Which of a side's per-run figures a table row shows.
type Figure = fn(&Agg) -> &Vec<f64>;

/// The medians over the repetitions of one mode in one configuration.
#[derive(Default)]
struct Agg {
    rate: Vec<f64>,
    p50: Vec<f64>,
    p99: Vec<f64>,
    requests: usize,
    server_cpu: f64,
    daemon_cpu: f64,
}

impl Agg {
    fn add(&mut self, r: &Run) {
        self.rate.push(r.lat.len() as f64 / r.elapsed.as_secs_f64());
        self.p50.push(quantile_us(&r.lat, 0.5));
        self.p99.push(quantile_us(&r.lat, 0.99));
        self.requests += r.lat.len();
        self.server_cpu += r.server_cpu;
        self.daemon_cpu += r.daemon_cpu;
    }

    /// CPU per request (µs): the example's, and the daemon's.
    fn cpu(&self) -> (f64, f64) {
        let n = self.requests.max(1) as f64;
        (self.server_cpu / n, self.daemon_cpu / n)
    }
}

/// A table with a sendfiled and a tokio-fs column and their ratio, a row
/// per engine (the tokio-fs value, measured once, on each).
struct Table {
    title: String,
    lines: Vec<String>,
}

impl Table {
    fn new(title: String) -> Table {
        Table {
            title,
            lines: vec![
                "| HTTP | engine, where bodies run | sendfiled body | tokio-fs body | sendfiled / tokio-fs |".into(),
                "|---|---|---:|---:|---:|".into(),
            ],
        }
    }

    fn row(&mut self, what: impl AsRef<str>, who: &str, s: f64, t: f64) {
        let line = format!(
            "| {} | {who} | {} | {} | {:.2}x |",
            what.as_ref(),
            cell(s),
            cell(t),
            s / t
        );
        println!("  {line}");
        self.lines.push(line);
    }

    fn text_row(&mut self, what: &str, who: &str, s: String, t: String) {
        let line = format!("| {what} | {who} | {s} | {t} | |");
        println!("  {line}");
        self.lines.push(line);
    }

    fn finish(self, report: &mut Report) {
        let mut s = format!("\n{}\n\n", self.title);
        s.push_str(&self.lines.join("\n"));
        report.sections.push(s);
    }
}

/// One server of the figure: sendfiled bodies through `daemon`, or
/// tokio-fs bodies (`daemon` None).
struct Side<'a> {
    srv: Server,
    daemon: Option<&'a Daemon>,
    /// Bodies inline first (the example's default) or daemon only.
    inline: bool,
}

impl Side<'_> {
    fn label(&self) -> String {
        match self.daemon {
            Some(d) => format!("{SENDFILED} [{}]", self.who_of(d)),
            None => TOKIO_FS.to_owned(),
        }
    }

    /// The table's engine cell: the engine, and where bodies run.
    fn who(&self) -> String {
        match self.daemon {
            Some(d) => self.who_of(d),
            None => engine_cell(None),
        }
    }

    fn who_of(&self, d: &Daemon) -> String {
        format!(
            "{}, {}",
            d.engine,
            if self.inline {
                "inline first"
            } else {
                "daemon only"
            }
        )
    }
}

pub fn http(plan: &Plan, ds: &[Daemon], files: &Files, report: &mut Report) -> io::Result<()> {
    let bin = httpd_path()?;
    let mut sizes = vec![(Files::SMALL_4K, 4u64 << 10, "4 KiB")];
    if !plan.quick {
        make_file(&files.path(FILE_16M), 16 << 20)?;
        warm(&files.path(FILE_16M))?;
        sizes.push((Files::SMALL_64K, 64 << 10, "64 KiB"));
        sizes.push((FILE_16M, 16 << 20, "16 MiB"));
    }
    for (path, _, _) in &sizes {
        warm(&files.path(path))?;
    }
    // A sendfiled-body server on each engine's daemon, then the tokio-fs
    // one, which needs a daemon to connect to but sends nothing through it.
    // Each engine's daemon twice: bodies inline first (the default), and
    // through the daemon alone.
    let mut sides = Vec::with_capacity(2 * ds.len() + 1);
    for d in ds {
        for inline in [true, false] {
            sides.push(Side {
                srv: Server::start(&bin, d, SENDFILED, inline, None)?,
                daemon: Some(d),
                inline,
            });
        }
    }
    sides.push(Side {
        srv: Server::start(&bin, &ds[0], TOKIO_FS, true, None)?,
        daemon: None,
        inline: false,
    });
    let load = os::loadavg();
    let shown: Vec<String> = sides
        .iter()
        .map(|s| match s.daemon {
            Some(d) => format!(
                "pid {} --body {SENDFILED}{} on the {} daemon (pid {})",
                s.srv.pid,
                if s.inline { "" } else { " SENDFILED_INLINE=0" },
                d.engine,
                d.pid
            ),
            None => format!("pid {} --body {TOKIO_FS}", s.srv.pid),
        })
        .collect();
    println!(
        "http: {} ({}; default tokio worker threads); {} x {:.1} s per configuration, the servers alternating; load average {load}",
        bin.display(),
        shown.join(", "),
        plan.small_reps,
        plan.small_secs
    );
    if plan.quick {
        println!("  64 KiB, 16 MiB and the cold stream: skipped in --quick");
    }
    let mut table = Table::new(format!(
        "HTTP, cached files, keep-alive GETs from blocking std::net::TcpStream threads ({} x {:.1} s, medians; load average at its start {load}, at its end LOAD_END):",
        plan.small_reps, plan.small_secs
    ));
    for &(path, len, label) in &sizes {
        for conns in [1usize, 8] {
            let mut agg: Vec<Agg> = sides.iter().map(|_| Agg::default()).collect();
            for _ in 0..plan.small_reps {
                for (side, a) in sides.iter().zip(&mut agg) {
                    a.add(&run(
                        (side.srv.addr, side.srv.pid),
                        side.daemon,
                        path,
                        len,
                        conns,
                        plan.small_secs,
                    )?);
                }
            }
            let what = format!("{label}, {conns} conn{}", if conns == 1 { "" } else { "s" });
            let (t, s) = agg.split_last().expect("the tokio-fs side is last");
            let ts = t.cpu().0;
            let engines = || s.iter().zip(&sides).map(|(a, side)| (side.who(), a));
            let figures: [(&str, Figure); 3] = [
                ("req/s", |a| &a.rate),
                ("p50 (µs)", |a| &a.p50),
                ("p99 (µs)", |a| &a.p99),
            ];
            for (name, of) in figures {
                for (who, s) in engines() {
                    table.row(
                        format!("{what}: {name}"),
                        &who,
                        median(of(s).clone()),
                        median(of(t).clone()),
                    );
                }
            }
            for (who, s) in engines() {
                let (ss, sd) = s.cpu();
                table.row(
                    format!("{what}: server CPU/request, example + daemon (µs)"),
                    &who,
                    ss + sd,
                    ts,
                );
                table.text_row(
                    &format!("{what}: of which the daemon (µs)"),
                    &who,
                    cell(sd),
                    "-".into(),
                );
            }
        }
    }
    let load_end = os::loadavg();
    table.title = table.title.replace("LOAD_END", &load_end);
    table.finish(report);
    if !plan.quick {
        cold(plan, files, &sides, report)?;
    }
    Ok(())
}

/// The 1 MiB file of the nginx figure.
const FILE_1M: &str = "http-1m.bin";

/// Issue 22's user-level goal: `tokio_httpd` with one runtime thread,
/// bodies inline first (and daemon only), against nginx with one worker in
/// its disk-safe mode (`aio threads`) and plain `sendfile`, on the same
/// cached files and load. Skipped, with a line saying so, where nginx is
/// not installed.
pub fn against_nginx(
    plan: &Plan,
    ds: &[Daemon],
    files: &Files,
    report: &mut Report,
) -> io::Result<()> {
    use super::nginx::{nginx_path, Nginx, NginxMode};
    let (bin, d) = (httpd_path()?, &ds[0]);
    let Some(nginx) = nginx_path() else {
        let line = "HTTP against nginx: skipped, nginx is not installed (`apt install nginx-light`, or SENDFILED_BENCH_NGINX=PATH)";
        println!("{line}");
        report.sections.push(format!("\n{line}"));
        return Ok(());
    };
    make_file(&files.path(FILE_1M), 1 << 20)?;
    let sizes = [
        (Files::SMALL_4K, 4u64 << 10, "4 KiB"),
        (Files::SMALL_64K, 64 << 10, "64 KiB"),
        (FILE_1M, 1 << 20, "1 MiB"),
    ];
    for (path, _, _) in &sizes {
        warm(&files.path(path))?;
    }
    let inline = Server::start(&bin, d, SENDFILED, true, Some(1))?;
    let only = Server::start(&bin, d, SENDFILED, false, Some(1))?;
    let aio = Nginx::start(&nginx, &files.root, NginxMode::AioThreads)?;
    let plain = Nginx::start(&nginx, &files.root, NginxMode::Sendfile)?;
    let servers: [(SocketAddr, i32); 4] = [
        (inline.addr, inline.pid),
        (only.addr, only.pid),
        (aio.addr, aio.pid),
        (plain.addr, plain.pid),
    ];
    let load = os::loadavg();
    println!(
        "http against nginx: tokio_httpd --threads 1 (pids {} inline first, {} daemon only, {} daemon) and {} (pid {}, {}), one worker each; {} x {:.1} s, alternating; load average {load}",
        inline.pid,
        only.pid,
        d.engine,
        nginx.display(),
        aio.pid,
        plain.pid,
        plan.small_reps,
        plan.small_secs
    );
    let mut lines = vec![
        format!(
            "HTTP against nginx, cached files, keep-alive GETs; one tokio thread, one nginx worker ({} engine; {} x {:.1} s, medians; load average at its start {load}, at its end LOAD_END):\n",
            d.engine, plan.small_reps, plan.small_secs
        ),
        format!(
            "| HTTP | sendfiled inline first | sendfiled daemon only | {} | {} | inline / aio threads | goal |",
            NginxMode::AioThreads.label(),
            NginxMode::Sendfile.label()
        ),
        "|---|---:|---:|---:|---:|---:|---|".into(),
    ];
    for &(path, len, label) in &sizes {
        for conns in [1usize, 8] {
            let mut agg: Vec<Agg> = servers.iter().map(|_| Agg::default()).collect();
            for _ in 0..plan.small_reps {
                for (srv, a) in servers.iter().zip(&mut agg) {
                    a.add(&run(*srv, None, path, len, conns, plan.small_secs)?);
                }
            }
            let what = format!("{label}, {conns} conn{}", if conns == 1 { "" } else { "s" });
            let figures: [(&str, Figure, bool); 2] = [
                ("req/s", |a| &a.rate, true),
                ("p50 (µs)", |a| &a.p50, false),
            ];
            for (name, of, higher_better) in figures {
                let m: Vec<f64> = agg.iter().map(|a| median(of(a).clone())).collect();
                let ratio = m[0] / m[2];
                let goal = if higher_better {
                    let met = if ratio >= 1.0 { "met" } else { "NOT met" };
                    format!(">= 1.0x {met}")
                } else {
                    String::new()
                };
                let line = format!(
                    "| {what}: {name} | {} | {} | {} | {} | {ratio:.2}x | {goal} |",
                    cell(m[0]),
                    cell(m[1]),
                    cell(m[2]),
                    cell(m[3])
                );
                println!("  {line}");
                lines.push(line);
            }
        }
    }
    let load_end = os::loadavg();
    lines[0] = lines[0].replace("LOAD_END", &load_end);
    report.sections.push(format!("\n{}", lines.join("\n")));
    Ok(())
}

/// Streams the cold file on its own keep-alive connection until `stop`,
/// evicting it again before each further GET so that every byte comes from
/// the disk (a fast disk reads 1 GiB in well under a window). Returns the
/// bytes read, the time taken and the GETs read to the end.
fn stream_cold(
    addr: SocketAddr,
    file: File,
    size: u64,
    started: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) -> io::Result<(u64, Duration, usize)> {
    let mut c = Conn::open(addr, Files::COLD)?;
    let t = Instant::now();
    let (mut bytes, mut whole) = (0, 0);
    while !stop.load(Ordering::Relaxed) {
        if whole > 0 {
            os::evict(&file)?;
        }
        let len = c.head()?;
        if len != size {
            return Err(other(format!("cold Content-Length {len}, file has {size}")));
        }
        started.store(true, Ordering::Relaxed);
        let got = c.body(len, false, Some(&stop))?;
        bytes += got;
        if got < len {
            break;
        }
        whole += 1;
    }
    Ok((bytes, t.elapsed(), whole))
}

/// Cached 4 KiB GETs on one connection for `secs`; sorted latencies (ns).
fn timed_4k(srv: &Server, secs: f64) -> io::Result<Vec<u64>> {
    let mut c = Conn::open(srv.addr, Files::SMALL_4K)?;
    c.get(4096, true)?;
    let mut lat = Vec::new();
    let end = Instant::now() + Duration::from_secs_f64(secs);
    while Instant::now() < end {
        lat.push(c.get(4096, false)?);
    }
    lat.sort_unstable();
    Ok(lat)
}

fn cold(plan: &Plan, files: &Files, sides: &[Side<'_>], report: &mut Report) -> io::Result<()> {
    let cold = File::options()
        .read(true)
        .write(true)
        .open(files.path(Files::COLD))?;
    let reps = plan.small_reps.max(plan.iso_reps);
    let load = os::loadavg();
    println!(
        "http, cold stream: {reps} x ({:.1} s idle + {:.1} s during cold {} MiB GETs on another connection), the servers alternating; load average {load}",
        plan.iso_secs,
        plan.iso_secs,
        files.cold >> 20
    );
    #[derive(Default)]
    struct Cold {
        i50: Vec<f64>,
        i99: Vec<f64>,
        b50: Vec<f64>,
        b99: Vec<f64>,
        ratio: Vec<f64>,
        rate: Vec<f64>,
        resident: f64,
        whole: Vec<f64>,
    }
    let mut acc: Vec<Cold> = sides.iter().map(|_| Cold::default()).collect();
    for _ in 0..reps {
        for (side, a) in sides.iter().zip(&mut acc) {
            let srv = &side.srv;
            let idle = timed_4k(srv, plan.iso_secs)?;
            os::evict(&cold)?;
            a.resident = a.resident.max(os::resident_fraction(&cold, files.cold)?);
            let (started, stop) = (
                Arc::new(AtomicBool::new(false)),
                Arc::new(AtomicBool::new(false)),
            );
            let streamer = {
                let (addr, size) = (srv.addr, files.cold);
                let (started, stop) = (Arc::clone(&started), Arc::clone(&stop));
                let file = cold.try_clone()?;
                thread::spawn(move || stream_cold(addr, file, size, started, stop))
            };
            let wait = Instant::now();
            while !started.load(Ordering::Relaxed) && wait.elapsed() < IO_TIMEOUT {
                if streamer.is_finished() {
                    break;
                }
                thread::sleep(Duration::from_millis(1));
            }
            let busy = timed_4k(srv, plan.iso_secs);
            stop.store(true, Ordering::Relaxed);
            let streamed = streamer
                .join()
                .map_err(|_| other("cold streamer panicked".into()))?;
            let busy = busy?;
            let (bytes, took, whole) = streamed?;
            // The aborted stream's transfer ends in the daemon before the
            // next measurement.
            if let Some(d) = side.daemon {
                d.wait_idle(Duration::from_secs(10))?;
            }
            thread::sleep(Duration::from_millis(100));
            let (i99, b99) = (quantile_us(&idle, 0.99), quantile_us(&busy, 0.99));
            a.i50.push(quantile_us(&idle, 0.5));
            a.i99.push(i99);
            a.b50.push(quantile_us(&busy, 0.5));
            a.b99.push(b99);
            a.ratio.push(b99 / i99);
            a.rate
                .push(bytes as f64 / (1 << 20) as f64 / took.as_secs_f64());
            a.whole.push(whole as f64);
        }
    }
    let mut t = Table::new(format!(
        "HTTP, cached 4 KiB GETs on one connection while another streams a cold (evicted) {} MiB file ({reps} x {:.1} s, medians; load average at its start {load}, at its end {}):",
        files.cold >> 20,
        plan.iso_secs,
        os::loadavg()
    ));
    for (side, a) in sides.iter().zip(&acc) {
        if a.resident > 0.05 {
            println!(
                "  warning ({}): eviction left {:.0}% of the cold file cached",
                side.label(),
                a.resident * 100.0
            );
        }
    }
    let (f, engines) = acc.split_last().expect("the tokio-fs side is last");
    type Field = fn(&Cold) -> &Vec<f64>;
    let rows: [(&str, Field); 7] = [
        (
            "cold GETs read to the end per window (evicted again before each)",
            |c| &c.whole,
        ),
        ("cold stream rate over the window (MiB/s)", |c| &c.rate),
        ("4 KiB p50 idle (µs)", |c| &c.i50),
        ("4 KiB p50 during the cold stream (µs)", |c| &c.b50),
        ("4 KiB p99 idle (µs)", |c| &c.i99),
        ("4 KiB p99 during the cold stream (µs)", |c| &c.b99),
        ("4 KiB p99 during / idle (median of per-run ratios)", |c| {
            &c.ratio
        }),
    ];
    for (what, field) in rows {
        for (side, s) in sides.iter().zip(engines) {
            t.row(
                what,
                &side.who(),
                median(field(s).clone()),
                median(field(f).clone()),
            );
        }
    }
    for (side, s) in sides.iter().zip(engines) {
        t.text_row(
            "cold file cached at eviction (max)",
            &side.who(),
            format!("{:.0}%", s.resident * 100.0),
            format!("{:.0}%", f.resident * 100.0),
        );
    }
    t.finish(report);
    Ok(())
}
