//! The benchmark proper (Linux).

mod figures;
mod http;
mod os;
mod pool;
mod trace;

use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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
    /// Size of the evicted file streamed during the isolation figure.
    pub cold_size: u64,
    /// Repetitions of the isolation figure.
    pub iso_reps: usize,
    /// Length of each isolation window (idle, then during the cold stream).
    pub iso_secs: f64,
    /// Concurrent slow transfers of the scale figure.
    pub scale_n: usize,
    /// Length of the timed window of the scale figure.
    pub scale_secs: f64,
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
}

impl Plan {
    fn full() -> Plan {
        Plan {
            quick: false,
            large_size: 1 << 30,
            large_reps: 5,
            small_reps: 5,
            small_secs: 1.0,
            cold_size: 1 << 30,
            iso_reps: 3,
            iso_secs: 2.0,
            scale_n: 1000,
            scale_secs: 2.0,
            only: Vec::new(),
            disk_threads: 2,
            busy_poll_us: 0,
            pool_threads: 0,
            strace: false,
        }
    }

    fn quick() -> Plan {
        Plan {
            quick: true,
            large_size: 32 << 20,
            large_reps: 2,
            small_reps: 2,
            small_secs: 0.1,
            cold_size: 32 << 20,
            iso_reps: 1,
            iso_secs: 0.2,
            scale_n: 100,
            scale_secs: 0.2,
            only: Vec::new(),
            disk_threads: 2,
            busy_poll_us: 0,
            pool_threads: 0,
            strace: false,
        }
    }

    pub fn wants(&self, figure: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|o| o == figure)
    }
}

const USAGE: &str = "\
usage: sendfiled-bench [--quick] [--only large,small,isolation,scale,open,http]
                       [--dir DIR] [--daemon PATH] [--disk-threads N] [--busy-poll US]
                       [--large-mib N] [--reps N] [--scale N] [--pool-threads N]
                       [--strace]

Starts the release sendfiled daemon and measures each figure beside the same
work done in this process (the small files also beside a thread pool of
--pool-threads workers, default --disk-threads). --strace also names the
daemon's system calls per small-file request (extra untimed runs under
strace -c -f). The http group runs examples/tokio_httpd (built in release
mode first) with both body modes. --quick runs in seconds (small sizes, few
repetitions). Bench files go under DIR (default: $SENDFILED_BENCH_DIR, the
temporary directory, or /var/tmp, whichever is on a disk-backed filesystem).";

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
            }
            "--scale" => plan.scale_n = val("--scale")?.parse().map_err(|e| format!("{e}"))?,
            "--pool-threads" => {
                plan.pool_threads = val("--pool-threads")?.parse().map_err(|e| format!("{e}"))?
            }
            "--strace" => plan.strace = true,
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
}

impl Daemon {
    fn start(bin: &Path, root: &Path, plan: &Plan) -> io::Result<Daemon> {
        let name = format!("bench-{}", std::process::id());
        let mut child = Command::new(bin)
            .arg("-s")
            .arg(&name)
            .arg("-r")
            .arg(root)
            .args(["-p", "--log", "none", "-n", "4096", "--disk-threads"])
            .arg(plan.disk_threads.to_string())
            .arg("--busy-poll")
            .arg(plan.busy_poll_us.to_string())
            .env("SENDFILED_ALLOW_ROOT", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()?;
        let pid = child.id() as i32;
        let out = child
            .stdout
            .take()
            .ok_or_else(|| io::Error::other("no stdout"))?;
        if !sendfiled_core::sys::wait_readable(out.as_fd(), Duration::from_secs(30))? {
            let _ = child.kill();
            return Err(io::Error::other("daemon did not report ready"));
        }
        let mut line = String::new();
        BufReader::new(out).read_line(&mut line)?;
        if line.trim() != format!("ready {pid}") {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::other(format!("daemon said {line:?}")));
        }
        Ok(Daemon {
            child,
            pid,
            root: root.to_owned(),
            name,
        })
    }

    pub fn client(&self) -> io::Result<sendfiled_core::client::Client> {
        sendfiled_core::client::Client::connect(&self.root, &self.name)
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

impl Drop for Daemon {
    fn drop(&mut self) {
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(self.pid, libc::SIGTERM) };
        let _ = self.child.wait();
    }
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
    let d = Daemon::start(&bin, &root, plan)?;
    std::thread::sleep(Duration::from_millis(200));
    let rss_idle = d.rss_kib();
    let anon_idle = d.rss_anon_kib();
    println!(
        "daemon pid {}, idle RSS at start {} KiB ({} KiB private)",
        d.pid, rss_idle, anon_idle
    );
    let mut report = figures::Report::default();
    report.rss_idle_kib = rss_idle;
    report.rss_anon_idle_kib = anon_idle;
    if plan.wants("large") {
        figures::large(plan, &d, &files, &mut report)?;
    }
    if plan.wants("small") {
        figures::small(plan, &d, &files, &mut report)?;
    }
    if plan.wants("open") {
        figures::open_cost(plan, &files, &mut report)?;
    }
    if plan.wants("isolation") {
        figures::isolation(plan, &d, &files, &mut report)?;
    }
    if plan.wants("scale") {
        figures::scale(plan, &d, &files, &mut report)?;
    }
    if plan.wants("http") {
        http::http(plan, &d, &files, &mut report)?;
    }
    drop(d);
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
