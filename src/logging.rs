//! Log lines to standard error (foreground) or syslog(3) (daemonised).

use std::ffi::CString;
use std::io::Write;

use crate::cli::LogTarget;

struct StderrLog;

impl log::Log for StderrLog {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) {
            // One write per line so concurrent processes' lines don't mix.
            let line = format!(
                "sendfiled[{}]: {}: {}\n",
                std::process::id(),
                r.level(),
                r.args()
            );
            let _ = std::io::stderr().write_all(line.as_bytes());
        }
    }

    fn flush(&self) {}
}

struct SyslogLog;

impl log::Log for SyslogLog {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, r: &log::Record<'_>) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let prio = match r.level() {
            log::Level::Error => libc::LOG_ERR,
            log::Level::Warn => libc::LOG_WARNING,
            log::Level::Info => libc::LOG_INFO,
            log::Level::Debug | log::Level::Trace => libc::LOG_DEBUG,
        };
        let msg = format!("{}", r.args()).replace('\0', "?");
        if let Ok(c) = CString::new(msg) {
            // SAFETY: both strings are NUL-terminated; "%s" takes one.
            unsafe { libc::syslog(prio, c"%s".as_ptr(), c.as_ptr()) };
        }
    }

    fn flush(&self) {}
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
    static STDERR: StderrLog = StderrLog;
    static SYSLOG: SyslogLog = SyslogLog;
    static NONE: NoLog = NoLog;
    let logger: &'static dyn log::Log = match target {
        LogTarget::Stderr => &STDERR,
        LogTarget::Syslog => {
            // SAFETY: the ident is a static NUL-terminated string.
            unsafe {
                libc::openlog(
                    c"sendfiled".as_ptr(),
                    libc::LOG_PID | libc::LOG_NDELAY,
                    libc::LOG_DAEMON,
                )
            };
            &SYSLOG
        }
        LogTarget::None => &NONE,
    };
    if log::set_logger(logger).is_ok() {
        log::set_max_level(level);
    }
}
