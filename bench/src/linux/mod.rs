//! The benchmark proper (Linux).

mod ceiling;
mod ceiling_figure;
mod coldopen;
mod http;
mod isolation;
mod large;
mod nginx;
mod open_cost;
mod os;
mod pool;
mod report;
mod ring;
mod scale;
mod small;
mod stats;
mod trace;

use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::os::fd::{AsFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use sendfiled_core::server::engine::EngineKind;

/// How much work each figure does.
#[derive(Debug, Clone)]
pub struct Plan {
    pub quick: bool,
    /// Size of the large (page-cached) file.
    pub large_size: u64,
    /// Repetitions of each large transfer.
    pub large_reps: usize,
    /// Repetitions of each small-file run.
    pub small_reps: usize,
    /// Length of one small-file run.
    pub small_secs: f64,
    /// Length of each untimed run whose system calls are counted (perf,
    /// strace): a count per request needs only enough requests, not the
    /// timed runs' length.
    pub count_secs: f64,
    /// Size of the evicted file streamed during the isolation figure.
    pub cold_size: u64,
    /// Repetitions of the isolation figure.
    pub iso_reps: usize,
    /// Length of each isolation window (idle, then during the cold stream).
    pub iso_secs: f64,
    /// Files of the cold-open tree (1 byte each, two levels of directories).
    pub coldopen_files: usize,
    /// Repetitions of the cold-open figure.
    pub coldopen_reps: usize,
    /// Length of each cold-open window (idle, then at most this long while
    /// the cold client goes through the tree).
    pub coldopen_secs: f64,
    /// Concurrent slow transfers of the scale figure.
    pub scale_n: usize,
    /// Length of the timed window of the scale figure.
    pub scale_secs: f64,
    /// How long the scale figure's slow transfers run before it is timed.
    pub scale_settle: Duration,
    /// Which figures to run.
    pub only: Vec<String>,
    /// Disk I/O threads for the daemon.
    pub disk_threads: u32,
    /// The daemon's `--busy-poll` (microseconds).
    pub busy_poll_us: u64,
    /// Worker threads of the small-file pool reference (default: the
    /// daemon's disk threads).
    pub pool_threads: usize,
    /// Also count the daemon's system calls with `strace -c -f` (slow; in
    /// extra untimed runs).
    pub strace: bool,
    /// The engines to measure (`--engines`); `None`: every engine this
    /// machine can run (uring and epoll, or epoll alone, said why).
    pub engines: Option<Vec<EngineKind>>,
}

impl Plan {
    fn full() -> Plan {
        Plan {
            quick: false,
            large_size: 1 << 30,
            large_reps: 5,
            small_reps: 5,
            small_secs: 1.0,
            count_secs: 1.0,
            cold_size: 1 << 30,
            iso_reps: 3,
            iso_secs: 2.0,
            coldopen_files: 20_000,
            coldopen_reps: 3,
            coldopen_secs: 1.0,
            scale_n: 1000,
            scale_secs: 2.0,
            scale_settle: Duration::from_millis(300),
            only: Vec::new(),
            disk_threads: 2,
            busy_poll_us: 0,
            pool_threads: 0,
            strace: false,
            engines: None,
        }
    }

    fn quick() -> Plan {
        Plan {
            quick: true,
            large_size: 32 << 20,
            large_reps: 2,
            small_reps: 2,
            small_secs: 0.1,
            // A thousand or so requests: enough for the shape of the
            // counts, and eight of these runs per engine.
            count_secs: 0.03,
            cold_size: 32 << 20,
            iso_reps: 1,
            iso_secs: 0.2,
            coldopen_files: 1_000,
            coldopen_reps: 1,
            coldopen_secs: 0.2,
            scale_n: 100,
            scale_secs: 0.2,
            // One round of the slow readers (100 ms apart) instead of three:
            // the quick figures are not meant to be steady, and the settle
            // is paid once per engine.
            scale_settle: Duration::from_millis(100),
            only: Vec::new(),
            disk_threads: 2,
            busy_poll_us: 0,
            pool_threads: 0,
            strace: false,
            engines: None,
        }
    }

    pub fn wants(&self, figure: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|o| o == figure)
    }
}

const USAGE: &str = "\
usage: sendfiled-bench [--quick] [--only large,small,ceiling,isolation,coldopen,scale,open,ring,http,nginx]
                       [--engines uring,epoll] [--dir DIR] [--daemon PATH]
                       [--disk-threads N] [--busy-poll US] [--large-mib N] [--reps N]
                       [--scale N] [--pool-threads N] [--strace] [--blocking-dests]

Starts the release sendfiled daemon once per engine of --engines (default:
uring,epoll where io_uring is usable, else epoll alone, saying why), each
with --engine ENGINE, and measures each figure through every one of them
beside the same work done in this process (the small files also beside a
thread pool of --pool-threads workers, default --disk-threads). Every figure
line names its engine; the references without a daemon (in-process, pool,
floor, open) are measured once and each engine's figure is set against them,
and the small files also print uring against epoll. --strace also names the
daemon's system calls per small-file request (extra untimed runs under
strace -c -f, per engine). The http group runs examples/tokio_httpd (built in
release mode first): its sendfiled bodies through each engine, its tokio-fs
bodies once. The nginx group (not in --quick) sets tokio_httpd with one
runtime thread, bodies inline first and daemon only, beside nginx with one
worker (`sendfile on; aio threads;` and plain `sendfile on;`) on the same
cached 4 KiB, 64 KiB and 1 MiB files; it is skipped, saying so, where nginx
is not installed. The ceiling group sets the small Sends beside minimal servers
in another process that do only the pool's work, speaking sendfiled's
protocol or a connection per client (the least any daemon speaking each
can cost). The coldopen group times cached 4 KiB Sends while another
client Sends files whose dentries and inodes were dropped (it writes 2 to
/proc/sys/vm/drop_caches: root; skipped with a note where that fails).
The small Sends' destinations (every contender's) are UNIX stream sockets
whose sending end is non-blocking, as an event-driven server's are;
--blocking-dests keeps O_NONBLOCK clear (the in-process attempt then copies
through a buffer: sendfile could wait).
--quick runs in seconds (small sizes, few repetitions). Bench files go under
DIR (default: $SENDFILED_BENCH_DIR, the temporary directory, or /var/tmp,
whichever is on a disk-backed filesystem).";

/// `--engines`: a comma-separated list of distinct engines, `auto` not among
/// them (the point is to know which engine each figure is for).
fn parse_engines(s: &str) -> Result<Vec<EngineKind>, String> {
    let mut v = Vec::new();
    for name in s.split(',') {
        let e: EngineKind = name.parse()?;
        if e == EngineKind::Auto {
            return Err("--engines: name the engines (uring, epoll), not auto".into());
        }
        if v.contains(&e) {
            return Err(format!("--engines: {e} given twice"));
        }
        v.push(e);
    }
    Ok(v)
}

fn parse_args() -> Result<(Plan, Option<PathBuf>, Option<PathBuf>), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let mut plan = if quick { Plan::quick() } else { Plan::full() };
    let mut dir = None;
    let mut daemon = None;
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        let mut val = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match a.as_str() {
            "--quick" => {}
            "--only" => plan.only = val("--only")?.split(',').map(str::to_owned).collect(),
            "--dir" => dir = Some(PathBuf::from(val("--dir")?)),
            "--daemon" => daemon = Some(PathBuf::from(val("--daemon")?)),
            "--disk-threads" => {
                plan.disk_threads = val("--disk-threads")?.parse().map_err(|e| format!("{e}"))?
            }
            "--busy-poll" => {
                plan.busy_poll_us = val("--busy-poll")?.parse().map_err(|e| format!("{e}"))?
            }
            "--large-mib" => {
                let m: u64 = val("--large-mib")?.parse().map_err(|e| format!("{e}"))?;
                plan.large_size = m << 20;
                plan.cold_size = m << 20;
            }
            "--reps" => {
                let r: usize = val("--reps")?.parse().map_err(|e| format!("{e}"))?;
                plan.large_reps = r;
                plan.small_reps = r;
                plan.iso_reps = r;
                plan.coldopen_reps = r;
            }
            "--scale" => plan.scale_n = val("--scale")?.parse().map_err(|e| format!("{e}"))?,
            "--pool-threads" => {
                plan.pool_threads = val("--pool-threads")?.parse().map_err(|e| format!("{e}"))?
            }
            "--strace" => plan.strace = true,
            "--blocking-dests" => os::set_blocking_dests(true),
            "--engines" => plan.engines = Some(parse_engines(&val("--engines")?)?),
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if plan.pool_threads == 0 {
        plan.pool_threads = plan.disk_threads.max(1) as usize;
    }
    Ok((plan, dir, daemon))
}

/// Picks the directory for the bench files: the first candidate on a
/// filesystem whose pages can be evicted, with room for the files.
fn pick_dir(explicit: Option<PathBuf>, need: u64) -> io::Result<(PathBuf, i64)> {
    let mut candidates = Vec::new();
    if let Some(d) = explicit {
        candidates.push(d);
    } else {
        if let Some(d) = std::env::var_os("SENDFILED_BENCH_DIR") {
            candidates.push(PathBuf::from(d));
        }
        candidates.push(std::env::temp_dir());
        candidates.push(PathBuf::from("/var/tmp"));
    }
    let mut fallback = None;
    for c in &candidates {
        let Ok((magic, free)) = os::statfs(c) else {
            continue;
        };
        if free < need {
            continue;
        }
        if os::fs_can_evict(magic) {
            return Ok((c.clone(), magic));
        }
        fallback.get_or_insert((c.clone(), magic));
    }
    fallback.ok_or_else(|| {
        io::Error::other(format!(
            "no directory among {candidates:?} has {} MiB free",
            need >> 20
        ))
    })
}

/// The daemon binary: `--daemon`, `$SENDFILED_BIN`, or `sendfiled` built in
/// release mode next to this executable (built now if cargo is at hand).
fn daemon_path(explicit: Option<PathBuf>) -> io::Result<PathBuf> {
    if let Some(p) = explicit.or_else(|| std::env::var_os("SENDFILED_BIN").map(PathBuf::from)) {
        return Ok(p);
    }
    let exe = std::env::current_exe()?;
    let dir = exe.parent().unwrap_or(Path::new("."));
    if dir.file_name().is_some_and(|n| n != "release") {
        eprintln!("warning: the benchmark was not built with --release; the daemon still is");
    }
    let target = dir.parent().unwrap_or(Path::new("."));
    let bin = target.join("release").join("sendfiled");
    // `cargo run -p sendfiled-bench` builds only this package: make sure the
    // daemon is built (and current) too.
    build_release(target, &["--bin", "sendfiled"], &bin, "the daemon")
}

/// Builds a target of the `sendfiled` package in release mode into
/// `target` (`cargo build --release -p sendfiled ARGS`) and returns `bin`,
/// which that build makes. A failed build only warns while `bin` exists (a
/// bench machine without the toolchain can still run what is there).
pub(super) fn build_release(
    target: &Path,
    args: &[&str],
    bin: &Path,
    what: &str,
) -> io::Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let ws = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let status = Command::new(cargo)
        .args(["build", "--quiet", "--release", "-p", "sendfiled"])
        .args(args)
        .env("CARGO_TARGET_DIR", target)
        .current_dir(&ws)
        .status();
    match status {
        Ok(s) if s.success() => {}
        other => eprintln!("warning: building {what} failed ({other:?}); using what is there"),
    }
    if !bin.exists() {
        return Err(io::Error::other(format!("no {what} at {}", bin.display())));
    }
    Ok(bin.to_path_buf())
}

/// A running daemon started for the benchmark.
pub struct Daemon {
    child: Child,
    pub pid: i32,
    pub root: PathBuf,
    pub name: String,
    /// The engine its start-up line says it runs (the one asked for).
    pub engine: EngineKind,
    /// `VmRSS` and `RssAnon` once it had settled after start (KiB).
    pub rss_idle_kib: u64,
    pub rss_anon_idle_kib: u64,
    /// Reads its log lines until it exits.
    log_reader: Option<JoinHandle<()>>,
}

/// The daemon's log line that names its engine, logged once the loop runs.
const SERVING: &str = "serving with backend ";

impl Daemon {
    /// Starts the daemon with `--engine engine` and returns once it is
    /// ready and its start-up line confirms that engine.
    fn start(
        bin: &Path,
        root: &Path,
        plan: &Plan,
        engine: EngineKind,
    ) -> Result<Daemon, StartFailure> {
        // One daemon per engine runs side by side: the names must differ.
        let name = format!("bench-{}-{engine}", std::process::id());
        let mut child = Command::new(bin)
            .arg("-s")
            .arg(&name)
            .arg("-r")
            .arg(root)
            .arg("--engine")
            .arg(engine.to_string())
            // Info is the level of the start-up line that names the engine;
            // nothing is logged at it per successful request, so the timed
            // runs and the system call counts see no log writes.
            .args(["-p", "--log", "stderr", "--log-level", "info"])
            .args(["-n", "4096", "--disk-threads"])
            .arg(plan.disk_threads.to_string())
            .arg("--busy-poll")
            .arg(plan.busy_poll_us.to_string())
            .env("SENDFILED_ALLOW_ROOT", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| StartFailure::refused(engine, format!("{}: {e}", bin.display())))?;
        let pid = child.id() as i32;
        let fail = |child: &mut Child, msg: String| {
            // A daemon that ended on its own by a signal or a panic (exit
            // 101) crashed: that is never io_uring being refused (a
            // refusal exits with its errno).
            let crashed = match exit_status_within(child, Duration::from_secs(1)) {
                Some(st) => st.signal().is_some() || st.code() == Some(101),
                None => false,
            };
            let _ = child.kill();
            let _ = child.wait();
            let mut f = StartFailure::refused(engine, msg);
            if crashed {
                f.came_up = true;
                f.error = io::Error::other(format!("{} (it crashed)", f.error));
            }
            f
        };
        let (Some(out), Some(err)) = (child.stdout.take(), child.stderr.take()) else {
            return Err(fail(&mut child, "no stdout or stderr".into()));
        };
        let (tx, rx) = mpsc::channel();
        let log_reader = std::thread::spawn(move || read_log(err, engine, tx));
        match sendfiled_sys::wait_readable(out.as_fd(), Duration::from_secs(30)) {
            Ok(true) => {}
            Ok(false) => return Err(fail(&mut child, "did not report ready".into())),
            Err(e) => return Err(fail(&mut child, format!("waiting for ready: {e}"))),
        }
        let mut line = String::new();
        if let Err(e) = BufReader::new(out).read_line(&mut line) {
            return Err(fail(&mut child, format!("reading its ready line: {e}")));
        }
        if line.trim() != format!("ready {pid}") {
            return Err(fail(&mut child, format!("said {:?}", line.trim())));
        }
        // The line comes right after "ready", from the loop itself; a
        // daemon that stays silent or names another engine is not
        // measured under the wrong name.
        let wrong = match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(running) if running == engine.to_string() => None,
            Ok(running) => Some(format!("its start-up line says engine {running}")),
            Err(_) => Some(format!(
                "no start-up line naming its engine ({SERVING}...) within 10 s"
            )),
        };
        if let Some(msg) = wrong {
            let mut f = fail(&mut child, msg);
            f.came_up = true;
            return Err(f);
        }
        Ok(Daemon {
            child,
            pid,
            root: root.to_owned(),
            name,
            engine,
            rss_idle_kib: 0,
            rss_anon_idle_kib: 0,
            log_reader: Some(log_reader),
        })
    }

    /// A client whose every request goes to this daemon (the attempt in
    /// the client's process off): what every daemon figure measures.
    pub fn client(&self) -> io::Result<sendfiled_client::client::Client> {
        sendfiled_client::client::Client::connect(&self.root, &self.name)
            .map(sendfiled_client::client::Client::daemon_only)
    }

    /// A client that attempts each transfer in its own process first and
    /// hands this daemon the rest (inline first, the default for users).
    pub fn inline_client(&self) -> io::Result<sendfiled_client::client::Client> {
        sendfiled_client::client::Client::connect(&self.root, &self.name)
    }

    pub fn rss_kib(&self) -> u64 {
        os::vm_rss_kib(self.pid).unwrap_or(0)
    }

    pub fn rss_anon_kib(&self) -> u64 {
        os::rss_anon_kib(self.pid).unwrap_or(0)
    }

    /// CPU time the daemon's threads have used so far, in nanoseconds
    /// (`/proc/PID/task/*/schedstat`).
    pub fn cpu_ns(&self) -> u64 {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{}/task", self.pid)) else {
            return 0;
        };
        tasks
            .flatten()
            .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
            .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
            .sum()
    }

    /// Waits until the daemon holds no transfer (at most `limit`).
    pub fn wait_idle(&self, limit: Duration) -> io::Result<u64> {
        let c = self.client()?;
        let end = Instant::now() + limit;
        loop {
            let live = c.server_status(Duration::from_secs(5))?.live;
            if live == 0 || Instant::now() > end {
                return Ok(live);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Why a daemon was not started. `came_up`: it did start, but its
/// start-up line did not confirm the engine asked for, or it crashed
/// (a signal, a panic) — never a refused io_uring (that daemon exits with
/// the refusal's errno) but a daemon that cannot be measured under that
/// engine's name, and an error even by default.
struct StartFailure {
    came_up: bool,
    error: io::Error,
}

impl StartFailure {
    fn refused(engine: EngineKind, msg: String) -> StartFailure {
        StartFailure {
            came_up: false,
            error: io::Error::other(format!("daemon --engine {engine}: {msg}")),
        }
    }
}

impl From<StartFailure> for io::Error {
    fn from(f: StartFailure) -> io::Error {
        f.error
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(self.pid, libc::SIGTERM) };
        let _ = self.child.wait();
        // Its last lines are out once the daemon is gone (end of file).
        if let Some(r) = self.log_reader.take() {
            let _ = r.join();
        }
    }
}

/// Reads the daemon's log lines until end of file: sends the engine named by
/// the start-up line, passes warnings and errors on to this process's
/// standard error (they may explain a figure), and drops the info lines.
/// Reading them all also keeps a full pipe from ever blocking the daemon.
fn read_log(err: ChildStderr, engine: EngineKind, tx: mpsc::Sender<String>) {
    for line in BufReader::new(err).lines() {
        let Ok(line) = line else { break };
        if let Some((_, rest)) = line.split_once(SERVING) {
            let running = rest
                .split_once("engine ")
                .and_then(|(_, e)| e.split([',', ' ']).next())
                .unwrap_or("?");
            let _ = tx.send(running.to_owned());
        } else if line.contains(": WARN: ") || line.contains(": ERROR: ") {
            eprintln!("daemon --engine {engine}: {line}");
        }
    }
}

/// How `child` ended, if it does within `limit` (its stdout closes a
/// moment before it can be reaped, so one `try_wait` could miss it):
/// `pidfd_open(2)` becomes readable when the process exits.
fn exit_status_within(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, child.id() as libc::pid_t, 0) };
    if raw >= 0 {
        // SAFETY: a fresh descriptor nobody else owns.
        let pidfd = unsafe { OwnedFd::from_raw_fd(raw as RawFd) };
        let _ = sendfiled_sys::wait_readable(pidfd.as_fd(), limit);
    }
    child.try_wait().ok().flatten()
}

/// The engines to measure and one running daemon for each: those of
/// `--engines`, where any that does not come up is an error; by default
/// uring and epoll, or epoll alone (with a note) where io_uring is not
/// usable.
fn start_daemons(bin: &Path, root: &Path, plan: &Plan) -> io::Result<Vec<Daemon>> {
    if let Some(engines) = &plan.engines {
        return engines
            .iter()
            .map(|&e| Daemon::start(bin, root, plan, e).map_err(io::Error::from))
            .collect();
    }
    let uring = match io_uring_disabled() {
        Some(v) => {
            println!(
                "note: /proc/sys/kernel/io_uring_disabled is {v}: measuring the epoll engine only"
            );
            None
        }
        None => match Daemon::start(bin, root, plan, EngineKind::Uring) {
            Ok(d) => Some(d),
            Err(f) if f.came_up => return Err(f.into()),
            Err(f) => {
                println!(
                    "note: io_uring is not usable here ({}): measuring the epoll engine only",
                    f.error
                );
                None
            }
        },
    };
    let epoll = Daemon::start(bin, root, plan, EngineKind::Epoll)?;
    Ok(uring.into_iter().chain([epoll]).collect())
}

/// The value of `kernel.io_uring_disabled` when it is set and not 0 (1:
/// only for members of `kernel.io_uring_group`; 2: for nobody). Absent on
/// kernels before 6.6, which have no such switch.
fn io_uring_disabled() -> Option<String> {
    let v = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled").ok()?;
    let v = v.trim();
    (v != "0").then(|| v.to_owned())
}

/// Writes `len` bytes of a non-zero pattern to `path`, `fsync`s it, and
/// leaves its pages cached.
fn make_file(path: &Path, len: u64) -> io::Result<File> {
    let mut f = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    let block: Vec<u8> = (0..1 << 20).map(pattern_byte).collect();
    let mut left = len;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        f.write_all(&block[..n])?;
        left -= n as u64;
    }
    f.sync_all()?;
    Ok(f)
}

/// The byte at offset `off` of every file `make_file` writes (its 1 MiB
/// block repeats the same 256-byte cycle).
fn pattern_byte(off: u64) -> u8 {
    off.wrapping_mul(7).wrapping_add(3) as u8
}

/// Reads a file once so that its pages are cached.
fn warm(path: &Path) -> io::Result<()> {
    let f = File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    let len = f.metadata()?.len();
    os::drain(f.as_fd(), len, &mut buf)?;
    Ok(())
}

/// The bench files beneath the daemon's root.
pub struct Files {
    pub root: PathBuf,
    pub large: u64,
    pub cold: u64,
}

impl Files {
    pub const LARGE: &'static str = "large.bin";
    pub const COLD: &'static str = "cold.bin";
    pub const SMALL_4K: &'static str = "small-4k.bin";
    pub const SMALL_64K: &'static str = "small-64k.bin";

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }
}

fn machine_line() -> String {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "?".into());
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "?".into());
    format!("{cpus} CPUs ({model}), Linux {kernel}")
}

pub fn main() -> i32 {
    if std::env::args().nth(1).as_deref() == Some(pool::ECHO_CHILD) {
        return pool::echo_child();
    }
    if std::env::args().nth(1).as_deref() == Some(ceiling::CEILING_CHILD) {
        return ceiling::ceiling_child(std::env::args().nth(2).as_deref());
    }
    let (plan, dir, daemon) = match parse_args() {
        Ok(x) => x,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("sendfiled-bench: {e}");
            }
            eprintln!("{USAGE}");
            return if e.is_empty() { 0 } else { 2 };
        }
    };
    match run(&plan, dir, daemon) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("sendfiled-bench: {e}");
            1
        }
    }
}

fn run(plan: &Plan, dir: Option<PathBuf>, daemon: Option<PathBuf>) -> io::Result<()> {
    let started = Instant::now();
    let bin = daemon_path(daemon)?;
    let need = plan.large_size + plan.cold_size + (64 << 20);
    let (base, magic) = pick_dir(dir, need)?;
    let root = base.join(format!("sendfiled-bench.{}", std::process::id()));
    std::fs::create_dir_all(&root)?;
    let _cleanup = Cleanup(root.clone());
    let nofile = os::raise_nofile()?;
    // A reader that stops early must be EPIPE for a writer, not a signal.
    // SAFETY: ignoring SIGPIPE has no preconditions.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    let load_before = os::loadavg();
    println!(
        "# sendfiled-bench{}",
        if plan.quick { " --quick" } else { "" }
    );
    println!("machine: {}", machine_line());
    println!(
        "bench files: {} on {}{}",
        root.display(),
        os::fs_name(magic),
        if os::fs_can_evict(magic) {
            ""
        } else {
            " (memory-only: pages cannot be evicted, the isolation figure is not meaningful)"
        }
    );
    println!(
        "daemon: {} --disk-threads {}; pool reference: {} threads",
        bin.display(),
        plan.disk_threads,
        plan.pool_threads
    );
    println!("load average at start: {load_before}; descriptor limit {nofile}");
    let files = Files {
        root: root.clone(),
        large: plan.large_size,
        cold: plan.cold_size,
    };
    make_file(&files.path(Files::SMALL_4K), 4096)?;
    make_file(&files.path(Files::SMALL_64K), 64 << 10)?;
    if plan.wants("large") || plan.wants("scale") {
        make_file(&files.path(Files::LARGE), plan.large_size)?;
        warm(&files.path(Files::LARGE))?;
    }
    if plan.wants("isolation") || (plan.wants("http") && !plan.quick) {
        make_file(&files.path(Files::COLD), plan.cold_size)?;
    }
    let mut ds = start_daemons(&bin, &root, plan)?;
    let engines: Vec<String> = ds
        .iter()
        .map(|d| format!("{} (pid {})", d.engine, d.pid))
        .collect();
    println!(
        "engines: {}; each daemon's start-up line names its engine",
        engines.join(", ")
    );
    // One settling pause for all of them.
    std::thread::sleep(Duration::from_millis(200));
    for d in &mut ds {
        d.rss_idle_kib = d.rss_kib();
        d.rss_anon_idle_kib = d.rss_anon_kib();
        println!(
            "daemon [{}] pid {}, idle RSS at start {} KiB ({} KiB private)",
            d.engine, d.pid, d.rss_idle_kib, d.rss_anon_idle_kib
        );
    }
    let mut report = report::Report::new(ds.iter().map(|d| d.engine).collect());
    if plan.wants("large") {
        large::large(plan, &ds, &files, &mut report)?;
    }
    if plan.wants("small") {
        small::small(plan, &ds, &files, &mut report)?;
    }
    if plan.wants("ceiling") {
        ceiling_figure::protocol_ceiling(plan, &ds, &files, &mut report)?;
    }
    if plan.wants("open") {
        open_cost::open_cost(plan, &files, &mut report)?;
    }
    if plan.wants("ring") {
        ring::ring_ops(plan, &files, &mut report)?;
    }
    if plan.wants("isolation") {
        isolation::isolation(plan, &ds, &files, &mut report)?;
    }
    if plan.wants("coldopen") {
        coldopen::cold_opens(plan, &ds, &files, &mut report)?;
    }
    if plan.wants("scale") {
        scale::scale(plan, &ds, &files, &mut report)?;
    }
    if plan.wants("http") {
        http::http(plan, &ds, &files, &mut report)?;
    }
    if plan.wants("nginx") && !plan.quick {
        http::against_nginx(plan, &ds, &files, &mut report)?;
    }
    drop(ds);
    println!();
    report.print();
    println!(
        "\nload average at start: {load_before}; at end: {}; total time {:.0} s",
        os::loadavg(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Removes the bench directory at the end.
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An error with a message of the bench's own.
pub(super) fn other(msg: String) -> io::Error {
    io::Error::other(msg)
}
