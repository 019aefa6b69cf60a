//! `sendfiled-bench`: starts the real (release) daemon and measures each
//! figure of issue 6 beside an in-process reference that does the same work
//! in this process, without the daemon, by the best method for the
//! destination; the small files also beside a thread pool in this process
//! and the floor of any daemon, a one-byte round trip to another process
//! (issue 14).
//!
//! ```text
//! cargo run --release -p sendfiled-bench            # full run (about 3.5 min on 2 cores)
//! cargo run --release -p sendfiled-bench -- --only http # examples/tokio_httpd, both body modes
//! cargo run --release -p sendfiled-bench -- --quick # seconds; what CI runs
//! ```
//!
//! See `BENCHMARKS.md` for what each figure means. The benchmark is Linux-only
//! inside (it measures `splice`/`sendfile`, page-cache eviction and
//! `/proc/PID/status`); elsewhere it says so and exits.

#[cfg(target_os = "linux")]
mod linux;

#[cfg(target_os = "linux")]
fn main() {
    std::process::exit(linux::main());
}

#[cfg(not(target_os = "linux"))]
fn main() {
    println!("sendfiled-bench: not supported here (the benchmark is Linux-only)");
}
