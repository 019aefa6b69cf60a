//! The small-file figures: cached 4 KiB and 64 KiB Sends from 1 and 8
//! clients through every engine's daemon, inline first, a thread pool and
//! in-process, and the timed Sends other figures reuse.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use sendfiled_client::client::Client;
use sendfiled_client::protocol::Range;

use super::report::{CostRow, Goal, InlineRow, Report};
use super::stats::RunStats;
use super::{ceiling, os, other, pool, trace, Daemon, EngineKind, Files, Plan};

pub(super) fn small_daemon_once(
    c: &Client,
    rel: &str,
    w: BorrowedFd<'_>,
    r: BorrowedFd<'_>,
    size: u64,
    buf: &mut [u8],
) -> io::Result<()> {
    small_once(c, rel, w, r, size, buf, false)
}

/// One Send waited for with `Client::send_complete`.
pub(super) fn small_complete_once(
    c: &Client,
    rel: &str,
    w: BorrowedFd<'_>,
    r: BorrowedFd<'_>,
    size: u64,
    buf: &mut [u8],
) -> io::Result<()> {
    small_once(c, rel, w, r, size, buf, true)
}

/// One Send, waited for on its channel (`Client::send`, as a C caller
/// does) or with `Client::send_complete`, then its bytes read back.
fn small_once(
    c: &Client,
    rel: &str,
    w: BorrowedFd<'_>,
    r: BorrowedFd<'_>,
    size: u64,
    buf: &mut [u8],
    with_send_complete: bool,
) -> io::Result<()> {
    let complete = if with_send_complete {
        let done = c.send_complete(
            rel,
            w,
            Range::WHOLE,
            sendfiled_client::client::HeaderTrailer::default(),
            Duration::from_secs(10),
        )?;
        done.complete
    } else {
        let st = c.send(rel, w, Range::WHOLE)?;
        os::wait_status(st.as_fd(), false)?.complete
    };
    if !complete {
        return Err(other(format!("Send of {rel} did not complete")));
    }
    let got = os::drain(r, size, buf)?;
    if got != size {
        return Err(other(format!("Send of {rel}: {got} of {size} bytes")));
    }
    Ok(())
}

pub(super) fn small_inproc_once(
    path: &std::ffi::CStr,
    w: BorrowedFd<'_>,
    r: BorrowedFd<'_>,
    size: u64,
    buf: &mut [u8],
) -> io::Result<()> {
    let f = os::open_ro(&path.to_owned())?;
    let n = os::fstat_size(f.as_fd())?;
    os::sendfile_all(f.as_fd(), w, n)?;
    drop(f);
    let got = os::drain(r, size, buf)?;
    if got != size {
        return Err(other(format!("in-process: {got} of {size} bytes")));
    }
    Ok(())
}

/// Who serves the requests of a small-file run.
#[derive(Clone, Copy)]
pub(super) enum Via<'a> {
    Daemon(&'a Daemon),
    /// Inline first: the client attempts each Send itself, hands the rest
    /// to this daemon.
    Inline(&'a Daemon),
    /// The same, waited for with `Client::send_complete`.
    InlineComplete(&'a Daemon),
    InProc,
    /// A thread pool of this many workers.
    Pool(usize),
    /// A minimal server in another process (the protocol's ceiling).
    Ceiling(&'a ceiling::Ceiling),
}

/// One small-file run: its statistics and, for the pool, the CPU time its
/// workers used (ns).
pub(super) struct SmallRun {
    pub(super) stats: RunStats,
    pub(super) pool_cpu_ns: u64,
}

/// `clients` threads, each sending `rel` to its own UNIX stream socket and
/// reading it back, back to back for `secs`.
pub(super) fn small_run(
    via: Via<'_>,
    files: &Files,
    rel: &str,
    size: u64,
    clients: usize,
    secs: f64,
) -> io::Result<SmallRun> {
    enum Per {
        Daemon(Client, OwnedFd, OwnedFd),
        Complete(Client, OwnedFd, OwnedFd),
        InProc(std::ffi::CString, OwnedFd, OwnedFd),
        Pool(pool::Requester),
        Ceiling(ceiling::Requester),
    }
    let barrier = Arc::new(Barrier::new(clients + 1));
    let dur = Duration::from_secs_f64(secs);
    let pool = match via {
        Via::Pool(w) => Some(pool::Pool::start(w)),
        _ => None,
    };
    let mut handles = Vec::new();
    for _ in 0..clients {
        let cpath = os::cpath(&files.path(rel));
        let per = match (via, &pool) {
            (Via::Daemon(d), _) => {
                let (w, r) = os::small_dest_pair()?;
                Per::Daemon(d.client()?, w, r)
            }
            (Via::Inline(d), _) => {
                let (w, r) = os::small_dest_pair()?;
                Per::Daemon(d.inline_client()?, w, r)
            }
            (Via::InlineComplete(d), _) => {
                let (w, r) = os::small_dest_pair()?;
                Per::Complete(d.inline_client()?, w, r)
            }
            (Via::Pool(_), Some(p)) => Per::Pool(pool::Requester::new(p.handle(), cpath)?),
            (Via::Ceiling(c), _) => Per::Ceiling(c.requester(cpath)?),
            _ => {
                let (w, r) = os::small_dest_pair()?;
                Per::InProc(cpath, w, r)
            }
        };
        let rel = rel.to_owned();
        let b = Arc::clone(&barrier);
        handles.push(thread::spawn(move || -> io::Result<Vec<u64>> {
            let mut buf = vec![0u8; size as usize];
            let mut lat = Vec::with_capacity(1 << 16);
            b.wait();
            let start = Instant::now();
            loop {
                let t = Instant::now();
                if t - start >= dur {
                    break;
                }
                match &per {
                    Per::Daemon(c, w, r) => {
                        small_daemon_once(c, &rel, w.as_fd(), r.as_fd(), size, &mut buf)?
                    }
                    Per::Complete(c, w, r) => {
                        small_complete_once(c, &rel, w.as_fd(), r.as_fd(), size, &mut buf)?
                    }
                    Per::InProc(p, w, r) => {
                        small_inproc_once(p, w.as_fd(), r.as_fd(), size, &mut buf)?
                    }
                    Per::Pool(q) => q.once(size, &mut buf)?,
                    Per::Ceiling(q) => q.once(size, &mut buf)?,
                }
                lat.push(t.elapsed().as_nanos() as u64);
            }
            Ok(lat)
        }));
    }
    barrier.wait();
    let t0 = Instant::now();
    let mut all = Vec::new();
    let mut err = None;
    for h in handles {
        match h.join() {
            Ok(Ok(l)) => all.extend(l),
            Ok(Err(e)) => err = Some(e),
            Err(_) => err = Some(other("client thread panicked".into())),
        }
    }
    let elapsed = t0.elapsed();
    let pool_cpu_ns = pool.map_or(0, pool::Pool::stop);
    if let Some(e) = err {
        return Err(e);
    }
    Ok(SmallRun {
        stats: RunStats::from(all, elapsed),
        pool_cpu_ns,
    })
}

/// What the daemon spent on the measured runs of one configuration.
#[derive(Default)]
pub(super) struct DaemonCost {
    pub(super) requests: u64,
    /// utime and stime from `/proc/PID/stat` (µs).
    pub(super) user_us: f64,
    pub(super) sys_us: f64,
    /// From `/proc/PID/task/*/schedstat` (ns).
    pub(super) sched_ns: u64,
    /// `syscr` + `syscw`.
    pub(super) rw_calls: u64,
}

pub fn small(plan: &Plan, ds: &[Daemon], files: &Files, report: &mut Report) -> io::Result<()> {
    let w = plan.pool_threads;
    report.pool_threads = w;
    println!(
        "small: {} x {:.1} s per configuration, each through every engine's daemon, then a {w}-thread pool and in-process; destinations: UNIX stream sockets, {}",
        plan.small_reps,
        plan.small_secs,
        if os::blocking_dests() {
            "blocking (--blocking-dests)"
        } else {
            "non-blocking (as an event-driven server's)"
        }
    );
    let mut idle_4k = Vec::new();
    for (rel, size, label) in [
        (Files::SMALL_4K, 4096u64, "4 KiB"),
        (Files::SMALL_64K, 64 << 10, "64 KiB"),
    ] {
        for clients in [1usize, 8] {
            let mut ds_runs = vec![Vec::new(); ds.len()];
            let mut costs: Vec<DaemonCost> = ds.iter().map(|_| DaemonCost::default()).collect();
            let (mut ps, mut rs) = (Vec::new(), Vec::new());
            let mut pool_cpu_ns = 0u64;
            let mut pool_requests = 0u64;
            let mut inl = Vec::new();
            let mut inl_complete = Vec::new();
            let before = sendfiled_client::inline::stats();
            for _ in 0..plan.small_reps {
                // Inline first, through the first engine's daemon (a
                // cached Send never reaches it; the engine only serves the
                // hand-offs).
                let run = small_run(
                    Via::Inline(&ds[0]),
                    files,
                    rel,
                    size,
                    clients,
                    plan.small_secs,
                )?;
                inl.push(run.stats);
                let run = small_run(
                    Via::InlineComplete(&ds[0]),
                    files,
                    rel,
                    size,
                    clients,
                    plan.small_secs,
                )?;
                inl_complete.push(run.stats);
                for (i, d) in ds.iter().enumerate() {
                    let cost = &mut costs[i];
                    let (u0, s0) = os::proc_cpu_us(d.pid)?;
                    let c0 = d.cpu_ns();
                    let io0 = os::proc_rw_calls(d.pid).unwrap_or(0);
                    let run =
                        small_run(Via::Daemon(d), files, rel, size, clients, plan.small_secs)?;
                    let (u1, s1) = os::proc_cpu_us(d.pid)?;
                    cost.sched_ns += d.cpu_ns() - c0;
                    cost.rw_calls += os::proc_rw_calls(d.pid).unwrap_or(0).saturating_sub(io0);
                    cost.user_us += u1 - u0;
                    cost.sys_us += s1 - s0;
                    cost.requests += run.stats.count as u64;
                    ds_runs[i].push(run.stats);
                }
                let run = small_run(Via::Pool(w), files, rel, size, clients, plan.small_secs)?;
                pool_cpu_ns += run.pool_cpu_ns;
                pool_requests += run.stats.count as u64;
                ps.push(run.stats);
                let run = small_run(Via::InProc, files, rel, size, clients, plan.small_secs)?;
                rs.push(run.stats);
            }
            let dm: Vec<(EngineKind, RunStats)> = ds
                .iter()
                .zip(&ds_runs)
                .map(|(d, runs)| (d.engine, RunStats::median_of(runs)))
                .collect();
            let (pm, rm) = (RunStats::median_of(&ps), RunStats::median_of(&rs));
            let what = format!("small {label} Send, {clients} client{}", plural(clients));
            let im = RunStats::median_of(&inl);
            let icm = RunStats::median_of(&inl_complete);
            let after = sendfiled_client::inline::stats();
            let (big, rate_x, p50_x) = if size == 4096 {
                (false, 2.0, 0.2)
            } else {
                (true, 1.3, 0.3)
            };
            let _ = big;
            let d0 = &dm[0].1;
            for (metric, i, ic, d, p, r, goal) in [
                (
                    "requests/s",
                    im.rate,
                    icm.rate,
                    d0.rate,
                    pm.rate,
                    rm.rate,
                    if clients == 8 {
                        Goal::AtLeast(rate_x)
                    } else {
                        Goal::None
                    },
                ),
                (
                    "p50 latency (µs)",
                    im.p50_us,
                    icm.p50_us,
                    d0.p50_us,
                    pm.p50_us,
                    rm.p50_us,
                    if clients == 1 {
                        Goal::AtMost(p50_x)
                    } else {
                        Goal::None
                    },
                ),
                (
                    "p99 latency (µs)",
                    im.p99_us,
                    icm.p99_us,
                    d0.p99_us,
                    pm.p99_us,
                    rm.p99_us,
                    Goal::None,
                ),
            ] {
                let row = InlineRow {
                    figure: format!("{what}: {metric}"),
                    engine: ds[0].engine,
                    inline: i,
                    inline_complete: ic,
                    daemon_only: d,
                    pool: p,
                    inproc: r,
                    goal,
                };
                println!("  {}", row.line());
                report.inline_rows.push(row);
            }
            println!(
                "  inline first, {what}: {} finished in the client, {} handed on part-way, {} handed on whole",
                after.finished - before.finished,
                after.handed_on_partial - before.handed_on_partial,
                after.handed_on_whole - before.handed_on_whole
            );
            let rate_goal = if clients == 8 {
                Goal::AtLeast(1.0)
            } else {
                Goal::None
            };
            let p50_goal = if clients == 1 {
                Goal::AtMost(1.0)
            } else {
                Goal::None
            };
            let of = |f: fn(&RunStats) -> f64| -> Vec<(EngineKind, f64)> {
                dm.iter().map(|(e, r)| (*e, f(r))).collect()
            };
            report.small_rows(
                &format!("{what}: requests/s"),
                &of(|r| r.rate),
                pm.rate,
                rm.rate,
                rate_goal,
            );
            report.small_rows(
                &format!("{what}: p50 latency (µs)"),
                &of(|r| r.p50_us),
                pm.p50_us,
                rm.p50_us,
                p50_goal,
            );
            report.small_rows(
                &format!("{what}: p99 latency (µs)"),
                &of(|r| r.p99_us),
                pm.p99_us,
                rm.p99_us,
                Goal::None,
            );
            for (d, cost) in ds.iter().zip(&costs) {
                let n = cost.requests.max(1) as f64;
                let (perf, strace) =
                    syscalls_per_request(plan, d, files, rel, size, clients, report)?;
                let c = CostRow {
                    what: format!("{label}, {clients} client{}", plural(clients)),
                    engine: d.engine,
                    cpu_us: (cost.user_us + cost.sys_us) / n,
                    sys_us: cost.sys_us / n,
                    sched_us: cost.sched_ns as f64 / 1e3 / n,
                    pool_us: pool_cpu_ns as f64 / 1e3 / pool_requests.max(1) as f64,
                    rw_calls: cost.rw_calls as f64 / n,
                    perf,
                    strace,
                };
                println!("  {}", c.line());
                report.cost_rows.push(c);
            }
            if size == 4096 && clients == 1 {
                idle_4k = dm.iter().map(|(e, r)| (*e, r.p50_us, r.p99_us)).collect();
            }
        }
    }
    report.idle_4k.clone_from(&idle_4k);
    floor(plan, &idle_4k, report)
}

pub(super) fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// One client sending the 4 KiB file back to back for `secs` through the
/// daemon (or, with `None`, doing the same in-process); latencies in
/// nanoseconds.
pub(super) fn timed_sends(
    client: Option<&Client>,
    files: &Files,
    secs: f64,
) -> io::Result<Vec<u64>> {
    timed_sends_until(client, files, secs, None)
}

/// [`timed_sends`] that also ends early once `stop` is set: a window
/// "during" a load that can run out (the cold-open tree) ends with it, so
/// that no Send of the window is timed against an idle daemon.
pub(super) fn timed_sends_until(
    client: Option<&Client>,
    files: &Files,
    secs: f64,
    stop: Option<&AtomicBool>,
) -> io::Result<Vec<u64>> {
    let (w, r) = os::small_dest_pair()?;
    let cpath = os::cpath(&files.path(Files::SMALL_4K));
    let mut buf = vec![0u8; 4096];
    let mut lat = Vec::with_capacity(1 << 16);
    let dur = Duration::from_secs_f64(secs);
    let start = Instant::now();
    loop {
        let t = Instant::now();
        if t - start >= dur || stop.is_some_and(|s| s.load(Ordering::Relaxed)) {
            break;
        }
        match client {
            Some(c) => small_daemon_once(c, Files::SMALL_4K, w.as_fd(), r.as_fd(), 4096, &mut buf)?,
            None => small_inproc_once(&cpath, w.as_fd(), r.as_fd(), 4096, &mut buf)?,
        }
        lat.push(t.elapsed().as_nanos() as u64);
    }
    Ok(lat)
}

/// The daemon's system calls per request in one extra, untimed run of the
/// configuration: all of them with perf if it works here, and by name with
/// strace in `--strace` mode. Returns (perf, strace) calls per request.
/// Whatever the engine waits with (`epoll_wait`, `io_uring_enter`) counts
/// like any other call; work the ring does without a call of its own (its
/// closes) is not a system call and is not counted.
pub(super) fn syscalls_per_request(
    plan: &Plan,
    d: &Daemon,
    files: &Files,
    rel: &str,
    size: u64,
    clients: usize,
    report: &mut Report,
) -> io::Result<(Option<f64>, Option<f64>)> {
    let what = format!("{rel}, {clients} client{}", plural(clients));
    let mut perf = None;
    let out = files.root.join("perf.out");
    match trace::Perf::start(d.pid, &out) {
        Ok(mut p) => {
            // perf failing is not the daemon failing: say so and go on.
            let failed = match p.enable() {
                Ok(()) => {
                    let run =
                        small_run(Via::Daemon(d), files, rel, size, clients, plan.count_secs)?;
                    match p.finish() {
                        Ok(calls) => {
                            perf = Some(calls as f64 / run.stats.count.max(1) as f64);
                            None
                        }
                        Err(e) => Some(e),
                    }
                }
                Err(e) => {
                    let _ = p.finish();
                    Some(e)
                }
            };
            if let Some(e) = failed {
                trace::Perf::give_up();
                println!("  (perf failed: {e}; system calls counted only as syscr+syscw)");
                report.perf_said = true;
            }
        }
        Err(e) => {
            if !report.perf_said {
                println!("  (perf not usable: {e}; system calls counted only as syscr+syscw)");
                report.perf_said = true;
            }
        }
    }
    if plan.strace {
        let out = files.root.join("strace.out");
        let s = trace::Strace::start(d.pid, &out)?;
        let run = small_run(Via::Daemon(d), files, rel, size, clients, plan.count_secs)?;
        let (summary, calls) = s.finish()?;
        let n = run.stats.count.max(1) as f64;
        println!(
            "  strace -c -f of the daemon [{}], {what}: {} requests, {:.1} calls per request",
            d.engine,
            run.stats.count,
            calls as f64 / n
        );
        for l in summary.lines() {
            println!("    {l}");
        }
        return Ok((perf, Some(calls as f64 / n)));
    }
    Ok((perf, None))
}

/// The floor: a one-byte round trip to a child process over a pipe pair, the
/// least a request to any other process can cost. `idle_4k` holds each
/// engine's 4 KiB, 1-client p50 (and p99), set against the floor's p50.
pub(super) fn floor(
    plan: &Plan,
    idle_4k: &[(EngineKind, f64, f64)],
    report: &mut Report,
) -> io::Result<()> {
    let echo = pool::Echo::start()?;
    let mut runs = Vec::new();
    for _ in 0..plan.small_reps {
        let dur = Duration::from_secs_f64(plan.small_secs);
        let t = Instant::now();
        let lat = echo.run(dur)?;
        runs.push(RunStats::from(lat, t.elapsed()));
    }
    echo.stop()?;
    let f = RunStats::median_of(&runs);
    report.row(
        "floor: 1-byte round trip to a child process over two pipes: round trips/s",
        None,
        f.rate,
        None,
        None,
        Goal::None,
    );
    report.row(
        "floor: 1-byte round trip to a child process over two pipes: p50 (µs)",
        None,
        f.p50_us,
        None,
        None,
        Goal::None,
    );
    report.row(
        "floor: 1-byte round trip to a child process over two pipes: p99 (µs)",
        None,
        f.p99_us,
        None,
        None,
        Goal::None,
    );
    for &(engine, p50, _) in idle_4k {
        report.row(
            "small 4 KiB Send, 1 client: p50 vs the floor's p50 (µs)",
            Some(engine),
            p50,
            Some((f.p50_us, "floor")),
            Some(p50 / f.p50_us),
            Goal::None,
        );
    }
    Ok(())
}

/// One client of each daemon, in order.
pub(super) fn clients_of(ds: &[Daemon]) -> io::Result<Vec<Client>> {
    ds.iter().map(Daemon::client).collect()
}
