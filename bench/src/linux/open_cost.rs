//! What `open` + `fstat` cost, cached and (where the kernel lets us drop
//! its caches) cold.

use std::io;
use std::os::fd::AsFd;
use std::time::Instant;

use super::report::{Goal, Report};
use super::stats::quantile_us;
use super::{os, Files, Plan};

/// What `open` + `fstat` (the part of a request the loop does before any
/// data moves) costs when the metadata is cached, and, if the kernel lets us
/// drop the dentry/inode caches (`SENDFILED_BENCH_DROP_CACHES=1`, root), when
/// it is not.
pub fn open_cost(plan: &Plan, files: &Files, report: &mut Report) -> io::Result<()> {
    let path = os::cpath(&files.path(Files::SMALL_4K));
    let n = if plan.quick { 2_000 } else { 100_000 };
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let f = os::open_ro(&path)?;
        os::fstat_size(f.as_fd())?;
        drop(f);
        lat.push(t.elapsed().as_nanos() as u64);
    }
    lat.sort_unstable();
    report.row(
        "open+fstat+close, warm metadata, in-process: p50 (µs)",
        None,
        quantile_us(&lat, 0.5),
        None,
        None,
        Goal::None,
    );
    report.row(
        "open+fstat+close, warm metadata, in-process: p99 (µs)",
        None,
        quantile_us(&lat, 0.99),
        None,
        None,
        Goal::None,
    );
    if std::env::var_os("SENDFILED_BENCH_DROP_CACHES").is_some_and(|v| v == "1") {
        let dir = files.root.join("meta");
        std::fs::create_dir_all(&dir)?;
        let count = if plan.quick { 200 } else { 2_000 };
        for i in 0..count {
            std::fs::write(dir.join(format!("f{i}")), b"x")?;
        }
        let paths: Vec<_> = (0..count)
            .map(|i| os::cpath(&dir.join(format!("f{i}"))))
            .collect();
        // Files just written keep their inodes while dirty or while their
        // pages are cached: see the cold-opens group.
        if super::coldopen::evict_dentries_and_inodes(&dir, &paths).is_ok() {
            let mut lat = Vec::with_capacity(count);
            for p in &paths {
                let t = Instant::now();
                let f = os::open_ro(p)?;
                os::fstat_size(f.as_fd())?;
                drop(f);
                lat.push(t.elapsed().as_nanos() as u64);
            }
            lat.sort_unstable();
            for (q, name) in [(0.5, "p50"), (0.99, "p99"), (1.0, "max")] {
                report.row(
                    format!("open+fstat+close, cold metadata (dentry/inode caches dropped): {name} (µs)"),
                    None,
                    quantile_us(&lat, q),
                    None,
                    None,
                    Goal::None,
                );
            }
        } else {
            println!(
                "  (could not write /proc/sys/vm/drop_caches: cold-metadata opens not measured)"
            );
        }
    }
    Ok(())
}
