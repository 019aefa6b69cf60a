//! `sendfiled-bench`: starts the real (release) daemon, once per event-loop
//! engine (`--engines`, default uring and epoll where io_uring is usable),
//! and measures each figure of issue 6 through every engine's daemon beside
//! an in-process reference that does the same work in this process, without
//! the daemon, by the best method for the destination; the small files also
//! beside a thread pool in this process and the floor of any daemon, a
//! one-byte round trip to another process (issue 14). The references are
//! measured once per run; every figure line names its engine.
//!
//! ```text
//! cargo run --release -p sendfiled-bench            # full run, both engines (about 5 min on 2 cores)
//! cargo run --release -p sendfiled-bench -- --only http # examples/tokio_httpd, both body modes
//! cargo run --release -p sendfiled-bench -- --engines epoll # one engine only
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
