//! The report every figure adds its rows to, and how it prints them
//! (tables with ratios and goals). Rule: formatting only; nothing here
//! measures.

use super::EngineKind;

/// Which way a goal points.
#[derive(Debug, Clone, Copy)]
pub(super) enum Goal {
    None,
    /// ratio >= x
    AtLeast(f64),
    /// ratio <= x
    AtMost(f64),
    /// value (the daemon column) <= x
    ValueAtMost(f64),
}

pub(super) struct Row {
    pub(super) figure: String,
    /// The engine of the daemon measured; `None` for a figure without one
    /// (the floor, the in-process references).
    pub(super) engine: Option<EngineKind>,
    pub(super) daemon: f64,
    pub(super) reference: Option<(f64, String)>,
    pub(super) ratio: Option<f64>,
    pub(super) goal: Goal,
    pub(super) unit_digits: usize,
}

/// Every figure measured, printed as one table at the end.
#[derive(Default)]
pub struct Report {
    /// The engines measured, in the order of every table.
    pub(super) engines: Vec<EngineKind>,
    pub(super) rows: Vec<Row>,
    /// 4 KiB Send, one client, daemon idle: p50 and p99 (µs), per engine.
    pub(super) idle_4k: Vec<(EngineKind, f64, f64)>,
    /// Inline first against the daemon alone, the pool and in-process.
    pub(super) inline_rows: Vec<InlineRow>,
    /// The small-file figure, against the pool and in-process.
    pub(super) small_rows: Vec<SmallRow>,
    /// Worker threads of the pool reference.
    pub pool_threads: usize,
    /// Whether "perf not usable" was said.
    pub(super) perf_said: bool,
    /// What the daemon spent per small-file request.
    pub(super) cost_rows: Vec<CostRow>,
    /// Tables of their own (the HTTP figure), printed last.
    pub sections: Vec<String>,
}

/// An engine's name for a table cell, blank for figures without a daemon.
pub(super) fn engine_cell(e: Option<EngineKind>) -> String {
    e.map_or(String::new(), |e| e.to_string())
}

/// The daemon's cost per request in one small-file configuration.
pub(super) struct CostRow {
    pub(super) what: String,
    pub(super) engine: EngineKind,
    /// utime + stime (`/proc/PID/stat`) over the timed runs / requests (µs).
    pub(super) cpu_us: f64,
    /// Of which stime.
    pub(super) sys_us: f64,
    /// The same from `/proc/PID/task/*/schedstat` (ns clock).
    pub(super) sched_us: f64,
    /// The pool's workers' CPU per request (`CLOCK_THREAD_CPUTIME_ID`).
    pub(super) pool_us: f64,
    /// `syscr` + `syscw` per request.
    pub(super) rw_calls: f64,
    /// All system calls per request (perf), in an untimed run.
    pub(super) perf: Option<f64>,
    /// The same from `strace -c -f` (`--strace`).
    pub(super) strace: Option<f64>,
}

impl CostRow {
    const HEAD: &'static str = "| small Send | engine | daemon CPU/request, utime+stime (µs) | of which system (µs) | daemon CPU/request, schedstat (µs) | pool workers' CPU/request (µs) | daemon syscr+syscw/request | daemon system calls/request, perf | same, strace |\n|---|---|---:|---:|---:|---:|---:|---:|---:|";

    pub(super) fn line(&self) -> String {
        let opt = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.1}"));
        format!(
            "| {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {} |",
            self.what,
            self.engine,
            self.cpu_us,
            self.sys_us,
            self.sched_us,
            self.pool_us,
            self.rw_calls,
            opt(self.perf),
            opt(self.strace)
        )
    }
}

/// A row of the small-file table: one engine's daemon beside the thread
/// pool and the in-process reference; the goal is on the ratio to the pool.
/// Inline first against the daemon alone, the pool and in-process, for
/// one small-file figure.
pub(super) struct InlineRow {
    pub(super) figure: String,
    /// The engine of the daemon that took the hand-offs and the
    /// daemon-only runs.
    pub(super) engine: EngineKind,
    /// `Client::send` and the status channel read to its end, as a C
    /// caller does (a pipe made for a Send finished here).
    pub(super) inline: f64,
    /// `Client::send_complete`: no channel for a Send finished here (what
    /// C's `sfd_send_here` and the tokio client do too).
    pub(super) inline_complete: f64,
    pub(super) daemon_only: f64,
    pub(super) pool: f64,
    pub(super) inproc: f64,
    /// Against the pool, judged on the channel column (what every caller,
    /// C included, gets).
    pub(super) goal: Goal,
}

impl InlineRow {
    pub(super) const HEAD: &'static str = "| figure | engine | inline first | daemon only | pool | inline vs pool | inline vs daemon only | in-process | inline vs in-process | goal | inline, no channel (send_complete, sfd_send_here) | no channel vs pool |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|";

    pub(super) fn line(&self) -> String {
        let vs_pool = self.inline / self.pool;
        let goal = match self.goal {
            Goal::AtLeast(x) => verdict(vs_pool >= x, &format!(">= {x}x pool")),
            Goal::AtMost(x) => verdict(vs_pool <= x, &format!("<= {x}x pool")),
            _ => String::new(),
        };
        format!(
            "| {} | {} | {} | {} | {} | {vs_pool:.2}x | {:.2}x | {} | {:.2}x | {goal} | {} | {:.2}x |",
            self.figure,
            self.engine,
            cell(self.inline),
            cell(self.daemon_only),
            cell(self.pool),
            self.inline / self.daemon_only,
            cell(self.inproc),
            self.inline / self.inproc,
            cell(self.inline_complete),
            self.inline_complete / self.pool,
        )
    }
}

pub(super) struct SmallRow {
    pub(super) figure: String,
    pub(super) engine: EngineKind,
    pub(super) daemon: f64,
    pub(super) pool: f64,
    pub(super) inproc: f64,
    /// On the uring row when epoll was measured too: uring / epoll.
    pub(super) vs_epoll: Option<f64>,
    pub(super) goal: Goal,
}

pub(super) fn cell(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

impl SmallRow {
    /// The row; with `vs_column` it has the uring-vs-epoll cell.
    pub(super) fn line(&self, vs_column: bool) -> String {
        let vs_pool = self.daemon / self.pool;
        let goal = match self.goal {
            Goal::AtLeast(x) => verdict(vs_pool >= x, &format!(">= {x}x pool")),
            Goal::AtMost(x) => verdict(vs_pool <= x, &format!("<= {x}x pool")),
            _ => String::new(),
        };
        let vs_epoll = match (vs_column, self.vs_epoll) {
            (false, _) => String::new(),
            (true, Some(r)) => format!(" {r:.2}x |"),
            (true, None) => " |".to_owned(),
        };
        format!(
            "| {} | {} | {} | {} | {vs_pool:.2}x | {} | {:.2}x |{vs_epoll} {goal} |",
            self.figure,
            self.engine,
            cell(self.daemon),
            cell(self.pool),
            cell(self.inproc),
            self.daemon / self.inproc,
        )
    }
}

impl Report {
    pub fn new(engines: Vec<EngineKind>) -> Report {
        Report {
            engines,
            ..Report::default()
        }
    }

    /// Whether both engines are measured, so that uring is also set
    /// against epoll.
    pub(super) fn compares_engines(&self) -> bool {
        self.engines.contains(&EngineKind::Uring) && self.engines.contains(&EngineKind::Epoll)
    }

    /// A figure measured during some load against the same measured idle:
    /// the ratio is `during / idle`.
    pub(super) fn vs_idle(
        &mut self,
        figure: impl Into<String>,
        engine: Option<EngineKind>,
        during: f64,
        idle: f64,
        goal: Goal,
    ) {
        self.row(
            figure,
            engine,
            during,
            Some((idle, "idle")),
            Some(during / idle),
            goal,
        );
    }

    pub(super) fn row(
        &mut self,
        figure: impl Into<String>,
        engine: Option<EngineKind>,
        daemon: f64,
        reference: Option<(f64, &str)>,
        ratio: Option<f64>,
        goal: Goal,
    ) {
        let figure = figure.into();
        let digits = if daemon.abs() >= 100.0 { 0 } else { 1 };
        let r = Row {
            figure,
            engine,
            daemon,
            reference: reference.map(|(v, m)| (v, m.to_owned())),
            ratio,
            goal,
            unit_digits: digits,
        };
        println!("  {}", r.line());
        self.rows.push(r);
    }

    /// One small-file figure: a row per engine (`daemon`, in the order of
    /// the engines), each against the same pool and in-process values.
    pub(super) fn small_rows(
        &mut self,
        figure: &str,
        daemon: &[(EngineKind, f64)],
        pool: f64,
        inproc: f64,
        goal: Goal,
    ) {
        let epoll = daemon
            .iter()
            .find(|(e, _)| *e == EngineKind::Epoll)
            .map(|&(_, v)| v);
        for &(engine, v) in daemon {
            let r = SmallRow {
                figure: figure.to_owned(),
                engine,
                daemon: v,
                pool,
                inproc,
                vs_epoll: epoll.filter(|_| engine == EngineKind::Uring).map(|e| v / e),
                goal,
            };
            println!("  {}", r.line(self.compares_engines()));
            self.small_rows.push(r);
        }
    }

    pub fn print(&self) {
        if !self.rows.is_empty() {
            println!("| figure | engine | sendfiled | in-process reference | ratio | goal |");
            println!("|---|---|---:|---:|---:|---|");
        }
        for r in &self.rows {
            println!("{}", r.line());
        }
        if !self.small_rows.is_empty() {
            println!(
                "\nsmall files against a {}-thread pool and in-process (measured once, for every engine):\n",
                self.pool_threads
            );
            let vs = self.compares_engines();
            println!(
                "| figure | engine | sendfiled | pool | vs pool | in-process | vs in-process |{} goal |",
                if vs { " uring vs epoll |" } else { "" }
            );
            println!(
                "|---|---|---:|---:|---:|---:|---:|{}---|",
                if vs { "---:|" } else { "" }
            );
            for r in &self.small_rows {
                println!("{}", r.line(vs));
            }
        }
        if !self.inline_rows.is_empty() {
            println!(
                "\ninline first (the client attempts each Send itself and hands the rest on) against the daemon alone, a {}-thread pool and in-process:\n",
                self.pool_threads
            );
            println!("{}", InlineRow::HEAD);
            for r in &self.inline_rows {
                println!("{}", r.line());
            }
        }
        if !self.cost_rows.is_empty() {
            println!("\nthe daemon's cost per small-file request (timed runs; system calls in extra untimed runs):\n");
            println!("{}", CostRow::HEAD);
            for r in &self.cost_rows {
                println!("{}", r.line());
            }
        }
        for s in &self.sections {
            println!("{s}");
        }
    }
}

impl Row {
    pub(super) fn line(&self) -> String {
        let d = self.unit_digits;
        let reference = match &self.reference {
            Some((v, m)) if m.is_empty() => format!("{v:.d$}"),
            Some((v, m)) => format!("{v:.d$} ({m})"),
            None => String::new(),
        };
        let ratio = self.ratio.map_or(String::new(), |r| format!("{r:.2}x"));
        let goal = match self.goal {
            Goal::None => String::new(),
            Goal::AtLeast(x) => verdict(self.ratio.is_some_and(|r| r >= x), &format!(">= {x}x")),
            Goal::AtMost(x) => verdict(self.ratio.is_some_and(|r| r <= x), &format!("<= {x}x")),
            Goal::ValueAtMost(x) => verdict(self.daemon <= x, &format!("<= {x}")),
        };
        format!(
            "| {} | {} | {:.d$} | {} | {} | {} |",
            self.figure,
            engine_cell(self.engine),
            self.daemon,
            reference,
            ratio,
            goal
        )
    }
}

pub(super) fn verdict(met: bool, goal: &str) -> String {
    format!("{goal} {}", if met { "met" } else { "NOT met" })
}
