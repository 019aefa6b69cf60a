//! Log lines to standard error (foreground) or syslog(3) (daemonised).
//! On standard error under systemd (`$JOURNAL_STREAM` names it) each line
//! starts with its priority, `<3>` error to `<7>` debug, which the journal
//! takes as the line's priority.
//!
//! Two rules hold for every line, whatever its level or target, because log
//! lines carry what clients sent (paths above all):
//!
//! - **Control characters are escaped** ([`escape`]): a path holding `\n`
//!   cannot start a line of its own, nor `\r`, `ESC` or a bidirectional
//!   override rewrite what a terminal shows. `\` itself is doubled, so an
//!   escape in the log always means an escape.
//! - **Lines are rate-limited per cause** ([`Limiter`]): a cause is the call
//!   site (module path and line) of the `log!` that wrote the line. At most
//!   [`BURST`] lines of one cause go out per [`WINDOW`]; the rest are counted,
//!   and the count goes out as one line ("N similar lines suppressed") once
//!   the window is over and any line is logged, and at exit. A client
//!   flooding the daemon with bad requests then costs a few lines a second
//!   instead of one per request.

use std::borrow::Cow;
use std::collections::HashMap;
use std::ffi::CString;
use std::fmt::Write as _;
use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::cli::LogTarget;

/// Most lines of one cause per [`WINDOW`].
pub const BURST: u32 = 10;

/// The window of [`BURST`].
pub const WINDOW: Duration = Duration::from_secs(1);

/// Whether `c` must not reach a log verbatim: C0 and C1 controls, DEL, the
/// Unicode line and paragraph separators and the bidirectional controls.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{061c}'
        )
        || ('\u{202a}'..='\u{202e}').contains(&c)
        || ('\u{2066}'..='\u{2069}').contains(&c)
}

/// `s` with control characters escaped: `\n`, `\r`, `\t`, `\\`, `\xNN` for
/// the other ASCII and C1 controls, `\u{NNNN}` for the Unicode separators and
/// bidirectional controls. Borrowed when there is nothing to escape.
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(|c| c == '\\' || needs_escape(c)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\\' => out.push_str("\\\\"),
            c if needs_escape(c) && (c as u32) < 0x100 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{{{:04x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Where a line came from: the call site of the `log!` that wrote it.
pub type Cause = (&'static str, u32);

#[derive(Debug)]
struct Slot {
    level: log::Level,
    window_start: Instant,
    shown: u32,
    suppressed: u64,
}

/// A line the limiter lets out: a record's own, or a count of suppressed
/// ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Out {
    /// The record's line.
    Line,
    /// `count` lines of `cause`, at `level`, were suppressed.
    Suppressed {
        cause: Cause,
        level: log::Level,
        count: u64,
    },
}

/// Per-cause rate limit: at most `burst` lines of one cause per window,
/// counting the rest. Time is passed in, so tests need no clock.
///
/// Memory is one small entry per call site that ever logged, a number fixed
/// by the binary.
#[derive(Debug)]
pub struct Limiter {
    burst: u32,
    window: Duration,
    slots: Mutex<HashMap<Cause, Slot>>,
}

impl Limiter {
    /// A limiter of `burst` lines per `window` per cause.
    pub fn new(burst: u32, window: Duration) -> Limiter {
        Limiter {
            burst,
            window,
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// What to write for one line of `cause` at `now`, in order: the counts
    /// of causes whose window is over (this one's included), then
    /// [`Out::Line`] unless this line is suppressed.
    pub fn admit(&self, cause: Cause, level: log::Level, now: Instant) -> Vec<Out> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::new();
        for (c, s) in slots.iter_mut() {
            if s.suppressed > 0 && now.saturating_duration_since(s.window_start) >= self.window {
                out.push(Out::Suppressed {
                    cause: *c,
                    level: s.level,
                    count: std::mem::take(&mut s.suppressed),
                });
            }
        }
        let slot = slots.entry(cause).or_insert(Slot {
            level,
            window_start: now,
            shown: 0,
            suppressed: 0,
        });
        if now.saturating_duration_since(slot.window_start) >= self.window {
            slot.window_start = now;
            slot.shown = 0;
        }
        slot.level = level;
        if slot.shown < self.burst {
            slot.shown += 1;
            out.push(Out::Line);
        } else {
            slot.suppressed += 1;
        }
        out
    }

    /// The counts not yet reported, whatever the window (at exit).
    pub fn drain(&self) -> Vec<Out> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots
            .iter_mut()
            .filter(|(_, s)| s.suppressed > 0)
            .map(|(c, s)| Out::Suppressed {
                cause: *c,
                level: s.level,
                count: std::mem::take(&mut s.suppressed),
            })
            .collect()
    }
}

/// The text of a suppressed-count line.
pub fn suppressed_line(cause: Cause, count: u64) -> String {
    let what = if count == 1 { "line" } else { "lines" };
    format!(
        "{count} similar {what} suppressed ({}:{})",
        cause.0, cause.1
    )
}

fn cause_of(r: &log::Record<'_>) -> Cause {
    (
        r.module_path_static()
            .or(r.file_static())
            .unwrap_or("unknown"),
        r.line().unwrap_or(0),
    )
}

/// Where the lines go.
enum Sink {
    /// Standard error; `journal`: it is systemd's journal, and each line
    /// starts with its priority (`<3>` ... `<7>`, sd-daemon(3)).
    Stderr {
        journal: bool,
    },
    Syslog,
}

/// The sd-daemon(3) prefix of a line at `level`: syslog's priority in
/// angle brackets, which the journal reads and strips.
pub fn journal_prefix(level: log::Level) -> &'static str {
    match level {
        log::Level::Error => "<3>",
        log::Level::Warn => "<4>",
        log::Level::Info => "<6>",
        log::Level::Debug | log::Level::Trace => "<7>",
    }
}

/// Whether `journal_stream` (`$JOURNAL_STREAM`, `DEVICE:INODE` of the
/// stream systemd connected the service to) names the file `st` describes.
// st_dev and st_ino are u64 on Linux, not everywhere (macOS: i32 and u64).
#[allow(clippy::unnecessary_cast)]
pub fn names_stream(journal_stream: &str, st: &libc::stat) -> bool {
    let Some((dev, ino)) = journal_stream.split_once(':') else {
        return false;
    };
    matches!(
        (dev.parse::<u64>(), ino.parse::<u64>()),
        (Ok(dev), Ok(ino)) if st.st_dev as u64 == dev && st.st_ino as u64 == ino
    )
}

/// Whether standard error is the journal: `$JOURNAL_STREAM` is set and
/// names standard error itself, not a stream a parent was given and this
/// process's standard error was redirected away from.
fn stderr_is_journal() -> bool {
    let Some(v) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some(v) = v.to_str() else {
        return false;
    };
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat of descriptor 2 into a stat buffer of the right size.
    if unsafe { libc::fstat(libc::STDERR_FILENO, st.as_mut_ptr()) } != 0 {
        return false;
    }
    // SAFETY: fstat succeeded and filled it.
    names_stream(v, &unsafe { st.assume_init() })
}

impl Sink {
    fn emit(&self, level: log::Level, msg: &str) {
        match self {
            Sink::Stderr { journal } => {
                let prio = if *journal { journal_prefix(level) } else { "" };
                // One write per line so concurrent processes' lines don't mix.
                let line = format!(
                    "{prio}sendfiled[{}]: {}: {}\n",
                    std::process::id(),
                    level,
                    msg
                );
                let _ = std::io::stderr().write_all(line.as_bytes());
            }
            Sink::Syslog => {
                let prio = match level {
                    log::Level::Error => libc::LOG_ERR,
                    log::Level::Warn => libc::LOG_WARNING,
                    log::Level::Info => libc::LOG_INFO,
                    log::Level::Debug | log::Level::Trace => libc::LOG_DEBUG,
                };
                // Escaped text holds no NUL; the fallback never applies.
                if let Ok(c) = CString::new(msg) {
                    // SAFETY: both strings are NUL-terminated; "%s" takes one.
                    unsafe { libc::syslog(prio, c"%s".as_ptr(), c.as_ptr()) };
                }
            }
        }
    }
}

struct Logger {
    sink: Sink,
    limiter: Limiter,
}

impl Logger {
    fn write(&self, outs: Vec<Out>, level: log::Level, line: impl FnOnce() -> String) {
        let mut line = Some(line);
        for o in outs {
            match o {
                Out::Line => {
                    if let Some(f) = line.take() {
                        self.sink.emit(level, &escape(&f()));
                    }
                }
                Out::Suppressed {
                    cause,
                    level,
                    count,
                } => self.sink.emit(level, &suppressed_line(cause, count)),
            }
        }
    }
}

impl log::Log for Logger {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, r: &log::Record<'_>) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let outs = self.limiter.admit(cause_of(r), r.level(), Instant::now());
        self.write(outs, r.level(), || r.args().to_string());
    }

    /// Writes the counts of lines still suppressed.
    fn flush(&self) {
        self.write(self.limiter.drain(), log::Level::Info, String::new);
    }
}

struct NoLog;

impl log::Log for NoLog {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        false
    }
    fn log(&self, _: &log::Record<'_>) {}
    fn flush(&self) {}
}

/// Installs the logger once, at start-up.
pub fn init(target: LogTarget, level: log::LevelFilter) {
    static NONE: NoLog = NoLog;
    let logger: &'static dyn log::Log = match target {
        LogTarget::Stderr => Box::leak(Box::new(Logger {
            sink: Sink::Stderr {
                journal: stderr_is_journal(),
            },
            limiter: Limiter::new(BURST, WINDOW),
        })),
        LogTarget::Syslog => {
            // SAFETY: the ident is a static NUL-terminated string.
            unsafe {
                libc::openlog(
                    c"sendfiled".as_ptr(),
                    libc::LOG_PID | libc::LOG_NDELAY,
                    libc::LOG_DAEMON,
                )
            };
            Box::leak(Box::new(Logger {
                sink: Sink::Syslog,
                limiter: Limiter::new(BURST, WINDOW),
            }))
        }
        LogTarget::None => &NONE,
    };
    if log::set_logger(logger).is_ok() {
        log::set_max_level(level);
    }
}

/// Writes what the limiter still holds back, then exits with `code`.
pub fn exit(code: i32) -> ! {
    log::logger().flush();
    std::process::exit(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_priorities_and_stream_matching() {
        assert_eq!(journal_prefix(log::Level::Error), "<3>");
        assert_eq!(journal_prefix(log::Level::Warn), "<4>");
        assert_eq!(journal_prefix(log::Level::Info), "<6>");
        assert_eq!(journal_prefix(log::Level::Debug), "<7>");
        // SAFETY: all-zero is a valid stat.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        st.st_dev = 8;
        st.st_ino = 1234;
        assert!(names_stream("8:1234", &st));
        assert!(!names_stream("8:1235", &st));
        assert!(!names_stream("9:1234", &st));
        for bad in ["", "8", "8:", ":1234", "x:y", "8:1234:5"] {
            assert!(!names_stream(bad, &st), "{bad:?}");
        }
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escape("plain/path.txt"), "plain/path.txt");
        assert!(matches!(escape("plain"), Cow::Borrowed(_)));
        assert_eq!(escape("a\nFORGED line"), "a\\nFORGED line");
        assert_eq!(escape("\r\t\\"), "\\r\\t\\\\");
        assert_eq!(escape("\x1b[31mred"), "\\x1b[31mred");
        assert_eq!(escape("nul\0del\x7f"), "nul\\x00del\\x7f");
        assert_eq!(escape("c1\u{85}"), "c1\\x85");
        assert_eq!(escape("ls\u{2028}ps\u{2029}"), "ls\\u{2028}ps\\u{2029}");
        assert_eq!(escape("rlo\u{202e}txt"), "rlo\\u{202e}txt");
        assert_eq!(escape("é ü 日本"), "é ü 日本", "printable non-ASCII stays");
        assert_eq!(escape("\u{fffd}"), "\u{fffd}", "lossy replacement stays");
        for s in ["x\ny", "\r", "\u{2028}", "a\u{b}b"] {
            let e = escape(s);
            assert!(!e.chars().any(needs_escape), "{e:?}");
        }
    }

    const A: Cause = ("mod_a", 1);
    const B: Cause = ("mod_b", 2);
    const W: log::Level = log::Level::Warn;

    fn shown(outs: &[Out]) -> bool {
        outs.contains(&Out::Line)
    }

    #[test]
    fn a_burst_passes_then_lines_are_counted() {
        let l = Limiter::new(3, Duration::from_secs(1));
        let t0 = Instant::now();
        for i in 0..3 {
            assert_eq!(l.admit(A, W, t0), vec![Out::Line], "line {i}");
        }
        for _ in 0..100 {
            assert!(l.admit(A, W, t0 + Duration::from_millis(500)).is_empty());
        }
        // Another cause has its own budget.
        assert_eq!(l.admit(B, W, t0), vec![Out::Line]);
        // The window is over: the count, then the line.
        let outs = l.admit(A, W, t0 + Duration::from_secs(1));
        assert_eq!(
            outs,
            vec![
                Out::Suppressed {
                    cause: A,
                    level: W,
                    count: 100
                },
                Out::Line
            ]
        );
        // The count is reported once.
        assert_eq!(
            l.admit(A, W, t0 + Duration::from_millis(1100)),
            vec![Out::Line]
        );
    }

    #[test]
    fn any_line_after_the_window_reports_other_causes_counts() {
        let l = Limiter::new(1, Duration::from_secs(1));
        let t0 = Instant::now();
        assert!(shown(&l.admit(A, W, t0)));
        assert!(l.admit(A, W, t0).is_empty());
        assert!(l.admit(A, W, t0).is_empty());
        // Within A's window, B's line does not report A yet.
        assert_eq!(
            l.admit(B, log::Level::Info, t0 + Duration::from_millis(10)),
            vec![Out::Line]
        );
        let outs = l.admit(B, log::Level::Info, t0 + Duration::from_secs(2));
        assert_eq!(
            outs,
            vec![
                Out::Suppressed {
                    cause: A,
                    level: W,
                    count: 2
                },
                Out::Line
            ]
        );
    }

    #[test]
    fn drain_reports_what_is_left_once() {
        let l = Limiter::new(1, Duration::from_secs(1));
        let t0 = Instant::now();
        l.admit(A, W, t0);
        l.admit(A, W, t0);
        assert_eq!(
            l.drain(),
            vec![Out::Suppressed {
                cause: A,
                level: W,
                count: 1
            }]
        );
        assert!(l.drain().is_empty());
    }

    #[test]
    fn the_suppressed_line_names_the_cause() {
        assert_eq!(
            suppressed_line(("sendfiled_core::server", 389), 4990),
            "4990 similar lines suppressed (sendfiled_core::server:389)"
        );
        assert_eq!(suppressed_line(A, 1), "1 similar line suppressed (mod_a:1)");
    }
}
