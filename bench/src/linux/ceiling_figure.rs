//! The protocol's ceiling figure (`--only ceiling`): every engine's daemon
//! beside the minimal servers of `ceiling.rs` and the pool, and the floor
//! of any daemon (a one-byte round trip to another process).

use std::io;

use super::report::{Goal, Report};
use super::small::{plural, small_run, Via};
use super::stats::RunStats;
use super::{ceiling, os, Daemon, EngineKind, Files, Plan};

/// The protocol's ceiling (`--only ceiling`, [`ceiling`]): in each
/// repetition of each small-file configuration, every engine's daemon, the
/// minimal servers and the pool, back to back. Printed against the pool
/// (the goal's reference), each daemon also against the minimal server that
/// speaks its protocol, and for each the CPU per request of the server and
/// of this process (the clients; for the pool, its workers too).
pub fn protocol_ceiling(
    plan: &Plan,
    ds: &[Daemon],
    files: &Files,
    report: &mut Report,
) -> io::Result<()> {
    /// One side of the comparison, and what its runs measured.
    struct Subject<'a> {
        via: Via<'a>,
        /// The process serving the requests, if not this one.
        server: Option<i32>,
        engine: Option<EngineKind>,
        /// The protocol of a minimal server.
        protocol: Option<ceiling::Protocol>,
        name: String,
        runs: Vec<RunStats>,
        server_us: f64,
        bench_us: f64,
        /// The server's context switches (voluntary, involuntary).
        switches: (u64, u64),
        requests: u64,
    }
    let w = plan.pool_threads;
    println!(
        "ceiling: {} x {:.1} s per configuration, through every engine's daemon, each minimal server, then a {w}-thread pool",
        plan.small_reps, plan.small_secs
    );
    let servers = ceiling::Protocol::ALL
        .iter()
        .map(|&p| ceiling::Ceiling::start(p).map(|c| (p, c)))
        .collect::<io::Result<Vec<_>>>()?;
    let me = std::process::id() as i32;
    let cpu = |pid: i32| os::proc_cpu_us(pid).map(|(u, s)| u + s);
    for (rel, size, label) in [
        (Files::SMALL_4K, 4096u64, "4 KiB"),
        (Files::SMALL_64K, 64 << 10, "64 KiB"),
    ] {
        for clients in [1usize, 8] {
            let new = |via, server, engine, protocol, name: String| Subject {
                via,
                server,
                engine,
                protocol,
                name,
                runs: Vec::new(),
                server_us: 0.0,
                bench_us: 0.0,
                switches: (0, 0),
                requests: 0,
            };
            let mut subjects: Vec<Subject<'_>> = ds
                .iter()
                .map(|d| {
                    new(
                        Via::Daemon(d),
                        Some(d.pid),
                        Some(d.engine),
                        None,
                        "sendfiled".into(),
                    )
                })
                .chain(servers.iter().map(|(p, c)| {
                    new(
                        Via::Ceiling(c),
                        Some(c.pid()),
                        None,
                        Some(*p),
                        p.label().into(),
                    )
                }))
                .chain([new(
                    Via::Pool(w),
                    None,
                    None,
                    None,
                    format!("{w}-thread pool"),
                )])
                .collect();
            for _ in 0..plan.small_reps {
                for s in &mut subjects {
                    let (s0, b0) = (s.server.map_or(Ok(0.0), cpu)?, cpu(me)?);
                    let x0 = s.server.map_or(Ok((0, 0)), os::ctx_switches)?;
                    let run = small_run(s.via, files, rel, size, clients, plan.small_secs)?;
                    s.server_us += s.server.map_or(Ok(0.0), cpu)? - s0;
                    let x1 = s.server.map_or(Ok((0, 0)), os::ctx_switches)?;
                    s.switches.0 += x1.0 - x0.0;
                    s.switches.1 += x1.1 - x0.1;
                    s.bench_us += cpu(me)? - b0;
                    s.requests += run.stats.count as u64;
                    s.runs.push(run.stats);
                }
            }
            let median_where = |f: &dyn Fn(&Subject<'_>) -> bool| {
                subjects
                    .iter()
                    .find(|s| f(s))
                    .map(|s| RunStats::median_of(&s.runs))
            };
            let (Some(pm), Some(dm)) = (
                median_where(&|s| matches!(s.via, Via::Pool(_))),
                median_where(&|s| s.protocol == Some(ceiling::Protocol::Descriptors)),
            ) else {
                continue;
            };
            let what = format!("ceiling: {label} Send, {clients} client{}", plural(clients));
            for s in &subjects {
                let m = RunStats::median_of(&s.runs);
                let who = format!("{what}, {}", s.name);
                let n = s.requests.max(1) as f64;
                if s.server.is_some() {
                    report.row(
                        format!("{who}: requests/s vs the pool"),
                        s.engine,
                        m.rate,
                        Some((pm.rate, "pool")),
                        Some(m.rate / pm.rate),
                        Goal::None,
                    );
                    report.row(
                        format!("{who}: p50 vs the pool (µs)"),
                        s.engine,
                        m.p50_us,
                        Some((pm.p50_us, "pool")),
                        Some(m.p50_us / pm.p50_us),
                        Goal::None,
                    );
                    for (figure, per_request) in [
                        ("server CPU per request (µs)", s.server_us),
                        (
                            "server's voluntary context switches per request",
                            s.switches.0 as f64,
                        ),
                        (
                            "server's involuntary context switches per request",
                            s.switches.1 as f64,
                        ),
                    ] {
                        report.row(
                            format!("{who}: {figure}"),
                            s.engine,
                            per_request / n,
                            None,
                            None,
                            Goal::None,
                        );
                    }
                }
                if s.engine.is_some() {
                    report.row(
                        format!("{who}: requests/s vs the minimal server of its protocol"),
                        s.engine,
                        m.rate,
                        Some((dm.rate, "minimal")),
                        Some(m.rate / dm.rate),
                        Goal::None,
                    );
                }
                report.row(
                    format!(
                        "{who}: this process's CPU per request (µs; clients, and a pool's workers)"
                    ),
                    s.engine,
                    s.bench_us / n,
                    None,
                    None,
                    Goal::None,
                );
            }
        }
    }
    for (_, c) in servers {
        c.stop()?;
    }
    Ok(())
}
