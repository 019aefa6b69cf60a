//! The cold-open figure: what Sends of files whose directory entries and
//! inodes are not cached, one after another from one client, cost the
//! cached 4 KiB Sends of another client of the same daemon. The daemon
//! opens (`openat2`) and `fstat`s on its event loop, so a lookup that must
//! rebuild dentries and inodes is loop time every other client waits
//! behind; this measures how much, per engine, against an idle window just
//! before, and the same in-process for comparison.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use sendfiled_client::client::Client;

use super::other;
use super::report::{Goal, Report};
use super::small::{small_daemon_once, timed_sends, timed_sends_until};
use super::stats::{median, quantile_us, sorted};
use super::{os, warm, Daemon, Files, Plan};

/// Where the kernel takes the order to drop its caches; "2" frees the
/// unused dentries and inodes (the slab caches), not the page cache.
const DROP_CACHES: &str = "/proc/sys/vm/drop_caches";

/// The tree of cold files, beneath the daemon's root.
const TREE: &str = "coldtree";

/// Directories at the tree's first level; the second level has as many per
/// first-level directory as keep about 20 files in each leaf.
const TOP_DIRS: usize = 64;

/// Many 1-byte files in two levels of directories, built once per run.
/// The files are spread over the leaves in turn, so that consecutive
/// requests of the cold client look up different directories.
struct ColdTree {
    dir: PathBuf,
    /// Second-level directories per first-level one.
    sub: usize,
    /// Each file's path relative to the daemon's root, in request order.
    rels: Arc<[String]>,
    /// The same, absolute, for the in-process reference.
    paths: Arc<[CString]>,
    /// How many files (from the first) a window has read since the last
    /// drop: those whose data pages are cached again.
    touched: usize,
    /// How many files a window has looked up since the last drop: those
    /// whose inodes a drop should free.
    looked_up: usize,
    /// The lowest share, over the drops, of `looked_up` that the drop took
    /// off the kernel's inode count (`/proc/sys/fs/inode-nr`, every
    /// filesystem, so other work blurs it a little): near 1 or more when
    /// the tree went cold, near 0 when its inodes stayed.
    freed_min: f64,
}

impl ColdTree {
    /// `n` files beneath `root`; each is written once (1 byte, so that a
    /// Send of it moves data as a real small file does) and left to
    /// `make_cold`, which the first window calls.
    fn build(root: &Path, n: usize) -> io::Result<ColdTree> {
        let dir = root.join(TREE);
        let sub = n.div_ceil(TOP_DIRS * 20).clamp(1, 64);
        let leaves = TOP_DIRS * sub;
        for a in 0..TOP_DIRS {
            for b in 0..sub {
                std::fs::create_dir_all(dir.join(format!("d{a:02}/e{b:02}")))?;
            }
        }
        let mut rels = Vec::with_capacity(n);
        let mut paths = Vec::with_capacity(n);
        for k in 0..n {
            let leaf = k % leaves;
            let rel = format!("{TREE}/d{:02}/e{:02}/f{k}", leaf / sub, leaf % sub);
            let p = root.join(&rel);
            File::create(&p)?.write_all(b"x")?;
            paths.push(os::cpath(&p));
            rels.push(rel);
        }
        Ok(ColdTree {
            dir,
            sub,
            rels: rels.into(),
            paths: paths.into(),
            // Every file was just written: all have a cached page.
            touched: n,
            looked_up: n,
            freed_min: f64::INFINITY,
        })
    }

    /// Makes every file of the tree cold again: writes back what is dirty
    /// (the new files, and the access times the last window's reads
    /// updated under `relatime`: a dirty inode cannot be freed), drops the
    /// data pages of the files a window read (since Linux 5.16 an inode
    /// with cached pages stays off the inode shrinker's list, so "2" alone
    /// would keep it), then drops the dentry and inode caches. The 4 KiB
    /// file is read again after, so that the timed Sends stay cached.
    fn make_cold(&mut self, files: &Files) -> io::Result<()> {
        let before = cached_inodes();
        evict_dentries_and_inodes(&self.dir, &self.paths[..self.touched])?;
        let freed = before.saturating_sub(cached_inodes());
        if self.looked_up > 0 {
            self.freed_min = self.freed_min.min(freed as f64 / self.looked_up as f64);
        }
        self.touched = 0;
        self.looked_up = 0;
        warm(&files.path(Files::SMALL_4K))
    }
}

/// Frees the dentries and inodes of `paths` (files under `dir`, which had
/// data read or written): `syncfs` (a dirty inode is not freed), their data
/// pages dropped (nor is an inode with cached pages), then "2" written to
/// `/proc/sys/vm/drop_caches`. Needs root for the last step.
pub(super) fn evict_dentries_and_inodes(dir: &Path, paths: &[CString]) -> io::Result<()> {
    let d = File::open(dir)?;
    // SAFETY: syncfs(2) on a descriptor we hold.
    sendfiled_sys::cvt(unsafe { libc::syncfs(d.as_raw_fd()) })?;
    for p in paths {
        let f = os::open_ro(p)?;
        // SAFETY: plain call on a descriptor we hold.
        let r = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        if r != 0 {
            return Err(io::Error::from_raw_os_error(r));
        }
    }
    std::fs::write(DROP_CACHES, b"2")
}

/// Inodes in the kernel's cache, all filesystems (the first field of
/// `/proc/sys/fs/inode-nr`); 0 if unreadable.
fn cached_inodes() -> u64 {
    std::fs::read_to_string("/proc/sys/fs/inode-nr")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// What the cold thread of one window did.
struct ColdRun {
    requests: usize,
    took: Duration,
    /// It Sent (or opened) every file of the tree before the window ended.
    ran_out: bool,
}

impl ColdRun {
    fn rate(&self) -> f64 {
        self.requests as f64 / self.took.as_secs_f64()
    }
}

/// How one window's cold load is made: through a daemon by a client of its
/// own, or in-process by `open` + `fstat` + `close`.
enum Load {
    Daemon(Client),
    InProc,
}

/// Times 4 KiB Sends (`client`, or in-process with `None`) while another
/// thread goes through the cold tree once, one file after another: a Send
/// of each to a UNIX stream socket it drains (`Load::Daemon`), or `open`,
/// `fstat` and `close` of each (`Load::InProc`). The window ends after
/// `secs` or when the tree runs out, whichever is first; returns the sorted
/// latencies (ns) and what the cold thread did.
fn window(
    client: Option<&Client>,
    load: Load,
    tree: &mut ColdTree,
    files: &Files,
    secs: f64,
) -> io::Result<(Vec<u64>, ColdRun)> {
    let stop = Arc::new(AtomicBool::new(false));
    let barrier = Arc::new(Barrier::new(2));
    let (s, b) = (Arc::clone(&stop), Arc::clone(&barrier));
    let (rels, paths) = (Arc::clone(&tree.rels), Arc::clone(&tree.paths));
    // Only the daemon's cold Sends read the data (1 byte each): their pages
    // are the ones to drop before the next window.
    let reads = matches!(load, Load::Daemon(_));
    let cold = thread::spawn(move || -> io::Result<ColdRun> {
        let (w, r) = os::unix_stream_pair()?;
        let mut buf = [0u8; 64];
        let mut requests = 0;
        b.wait();
        let t = Instant::now();
        let res = (|| -> io::Result<()> {
            while requests < rels.len() && !s.load(Ordering::Relaxed) {
                match &load {
                    Load::Daemon(c) => {
                        small_daemon_once(c, &rels[requests], w.as_fd(), r.as_fd(), 1, &mut buf)?
                    }
                    Load::InProc => {
                        let f = os::open_ro(&paths[requests])?;
                        os::fstat_size(f.as_fd())?;
                    }
                }
                requests += 1;
            }
            Ok(())
        })();
        let took = t.elapsed();
        // Ends the timed window too, whether the tree ran out or a request
        // failed.
        s.store(true, Ordering::Relaxed);
        res.map(|()| ColdRun {
            requests,
            took,
            ran_out: requests == rels.len(),
        })
    });
    barrier.wait();
    let lat = timed_sends_until(client, files, secs, Some(&stop));
    stop.store(true, Ordering::Relaxed);
    let run = cold
        .join()
        .map_err(|_| other("cold-open thread panicked".into()))?;
    let run = run?;
    tree.looked_up = tree.looked_up.max(run.requests);
    if reads {
        tree.touched = tree.touched.max(run.requests);
    }
    Ok((sorted(lat?), run))
}

/// One side's figures (an engine's daemon, or in-process) over the
/// repetitions.
#[derive(Default)]
struct Acc {
    idle50: Vec<f64>,
    idle99: Vec<f64>,
    idle_max: Vec<f64>,
    busy50: Vec<f64>,
    busy99: Vec<f64>,
    busy_max: Vec<f64>,
    rates: Vec<f64>,
    secs: Vec<f64>,
    ran_out: usize,
}

impl Acc {
    fn idle(&mut self, lat: &[u64]) {
        self.idle50.push(quantile_us(lat, 0.5));
        self.idle99.push(quantile_us(lat, 0.99));
        self.idle_max.push(quantile_us(lat, 1.0));
    }

    fn busy(&mut self, lat: &[u64], run: &ColdRun) {
        self.busy50.push(quantile_us(lat, 0.5));
        self.busy99.push(quantile_us(lat, 0.99));
        self.busy_max.push(quantile_us(lat, 1.0));
        self.rates.push(run.rate());
        self.secs.push(run.took.as_secs_f64());
        self.ran_out += usize::from(run.ran_out);
    }

    /// The line that says how long the windows were and whether the tree
    /// lasted them.
    fn note(&self, who: &str, reps: usize, tree: usize) -> String {
        let out = if self.ran_out > 0 {
            format!(
                "; the {tree} files ran out before the end in {} of {reps}",
                self.ran_out
            )
        } else {
            String::new()
        };
        format!(
            "  {who}: cold windows {:.2} s (median){out}",
            median(self.secs.clone())
        )
    }
}

/// The median of a list of rates (0 for none).
fn report_rate(rates: &[f64]) -> f64 {
    if rates.is_empty() {
        0.0
    } else {
        median(rates.to_vec())
    }
}

pub fn cold_opens(
    plan: &Plan,
    ds: &[Daemon],
    files: &Files,
    report: &mut Report,
) -> io::Result<()> {
    // Asked first, so that a machine where it cannot be done builds no tree.
    if let Err(e) = evict_dentries_and_inodes(&files.root, &[]) {
        println!(
            "note: cold opens skipped: cannot write \"2\" to {DROP_CACHES} ({e}); dropping the dentry and inode caches needs root and a writable /proc"
        );
        return Ok(());
    }
    let clients: Vec<Client> = ds.iter().map(Daemon::client).collect::<io::Result<_>>()?;
    let started = Instant::now();
    let mut tree = ColdTree::build(&files.root, plan.coldopen_files)?;
    let n = tree.rels.len();
    let secs = plan.coldopen_secs;
    println!(
        "cold opens: {} x ({secs:.1} s idle + up to {secs:.1} s while another client Sends each of {n} 1-byte files in {TOP_DIRS}x{} directories once, dentry and inode caches dropped before), every engine's daemon then in-process; tree built in {:.1} s",
        plan.coldopen_reps,
        tree.sub,
        started.elapsed().as_secs_f64()
    );
    let mut accs: Vec<Acc> = ds.iter().map(|_| Acc::default()).collect();
    let mut reference = Acc::default();
    // The miss-heavy figure of inline first: the cold client attempts each
    // Send in its own process first, and every attempt fails (the lookup
    // is not cached) and hands the request to the first engine's daemon.
    let mut inline_acc = Acc::default();
    for _ in 0..plan.coldopen_reps {
        tree.make_cold(files)?;
        let (lat, run) = window(
            Some(&clients[0]),
            Load::Daemon(ds[0].inline_client()?),
            &mut tree,
            files,
            secs,
        )?;
        inline_acc.busy(&lat, &run);
        for ((d, client), acc) in ds.iter().zip(&clients).zip(&mut accs) {
            acc.idle(&sorted(timed_sends(Some(client), files, secs)?));
            tree.make_cold(files)?;
            let (lat, run) = window(
                Some(client),
                Load::Daemon(d.client()?),
                &mut tree,
                files,
                secs,
            )?;
            acc.busy(&lat, &run);
        }
        // The same in-process: 4 KiB sends on this thread while another
        // opens the cold files. What the opens cost these sends is what
        // sharing the CPUs (and the kernel's caches) costs, with no event
        // loop in between.
        reference.idle(&sorted(timed_sends(None, files, secs)?));
        tree.make_cold(files)?;
        let (lat, run) = window(None, Load::InProc, &mut tree, files, secs)?;
        reference.busy(&lat, &run);
    }
    println!(
        "  each drop freed at least {:.2}x as many inodes as the files looked up since the one before{}",
        tree.freed_min,
        if tree.freed_min < 0.9 {
            ": WARNING, the drops left some of the tree cached; the opens were not all cold"
        } else {
            ""
        }
    );
    for (d, acc) in ds.iter().zip(&accs) {
        println!(
            "{}",
            acc.note(&format!("[{}]", d.engine), plan.coldopen_reps, n)
        );
    }
    println!("{}", reference.note("in-process", plan.coldopen_reps, n));
    println!(
        "{}",
        inline_acc.note(
            &format!("inline first, hand-offs to [{}]", ds[0].engine),
            plan.coldopen_reps,
            n
        )
    );
    let accs_rates_first = accs.first().map(|a| a.rates.clone()).unwrap_or_default();
    for (d, acc) in ds.iter().zip(accs) {
        let e = Some(d.engine);
        let (i50, i99, imax) = (median(acc.idle50), median(acc.idle99), median(acc.idle_max));
        let (b50, b99, bmax) = (median(acc.busy50), median(acc.busy99), median(acc.busy_max));
        report.vs_idle(
            "cold opens: 4 KiB Send p50 during cold opens vs idle (µs)",
            e,
            b50,
            i50,
            Goal::None,
        );
        report.vs_idle(
            "cold opens: 4 KiB Send p99 during cold opens vs idle (µs)",
            e,
            b99,
            i99,
            // The isolation figure's bar: another client's slow work must
            // not show in a cached Send's p99.
            Goal::AtMost(1.5),
        );
        report.vs_idle(
            "cold opens: 4 KiB Send max during cold opens vs idle max (µs)",
            e,
            bmax,
            imax,
            Goal::None,
        );
        report.row(
            "cold opens: cold requests per second during the window",
            e,
            median(acc.rates),
            None,
            None,
            Goal::None,
        );
    }
    let daemon_rate = report_rate(&accs_rates_first);
    report.row(
        "cold opens, inline first (every attempt misses and hands off): cold requests per second vs daemon only",
        Some(ds[0].engine),
        median(inline_acc.rates.clone()),
        Some((daemon_rate, "daemon only")),
        Some(median(inline_acc.rates) / daemon_rate),
        // p50 <= 1.1x daemon only, as a rate: >= 1/1.1.
        Goal::AtLeast(0.9),
    );
    let (ri, rb) = (median(reference.idle99), median(reference.busy99));
    report.vs_idle(
        "cold opens, same in-process (thread opens+fstats+closes, thread sends): p99 vs idle (µs)",
        None,
        rb,
        ri,
        Goal::None,
    );
    report.row(
        "cold opens, same in-process: cold open+fstat+close per second",
        None,
        median(reference.rates),
        None,
        None,
        Goal::None,
    );
    println!(
        "  (cold opens took {:.1} s)",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
