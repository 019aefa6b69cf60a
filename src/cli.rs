//! The daemon's command line, compatible with the original sendfiled's
//! short options, plus long forms and this project's additions.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use sendfiled_core::server::engine::EngineKind;

/// Where log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogTarget {
    /// Standard error (the default in the foreground).
    Stderr,
    /// syslog(3), facility daemon (the default with -d).
    Syslog,
    /// Nowhere.
    None,
}

/// Log verbosity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    /// Only failures of the daemon itself.
    Error,
    /// Also refused and malformed requests.
    Warn,
    /// Also start-up, shutdown and refusals (default).
    Info,
    /// Also one line per transfer with its outcome and duration.
    Debug,
    /// Everything.
    Trace,
}

impl LogLevel {
    /// The `log` crate's filter for this level.
    pub fn filter(self) -> log::LevelFilter {
        match self {
            LogLevel::Error => log::LevelFilter::Error,
            LogLevel::Warn => log::LevelFilter::Warn,
            LogLevel::Info => log::LevelFilter::Info,
            LogLevel::Debug => log::LevelFilter::Debug,
            LogLevel::Trace => log::LevelFilter::Trace,
        }
    }
}

/// sendfiled: sends or reads files on behalf of client programs, so that
/// event-driven servers never block on disk I/O.
///
/// Clients send requests to the datagram socket ROOT/SOCKDIR/NAME; paths in
/// requests resolve beneath ROOT. See sendfiled(8).
#[derive(Debug, Parser)]
#[command(name = "sendfiled", version, about, long_about)]
pub struct Args {
    /// Server name: the request socket's file name.
    #[arg(short = 's', long = "name", value_name = "NAME")]
    pub name: String,

    /// Directory whose files are served; requests cannot reach outside it.
    #[arg(short = 'r', long = "root", value_name = "ROOT")]
    pub root: PathBuf,

    /// Directory of the request socket, inside ROOT (a leading '/' is
    /// relative to ROOT too).
    #[arg(
        short = 'S',
        long = "sockdir",
        value_name = "SOCKDIR",
        default_value = "."
    )]
    pub sockdir: PathBuf,

    /// Most concurrent transfers, open files included; more get EMFILE.
    #[arg(short = 'n', long = "max-files", value_name = "MAXFILES", default_value_t = 1024,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_files: u32,

    /// Milliseconds an opened file waits for send-open before it is closed
    /// with ETIMEDOUT.
    #[arg(short = 't', long = "open-timeout", value_name = "MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub open_timeout_ms: u64,

    /// When all MAXFILES slots are taken, a uid holding more than PERCENT of
    /// them (or than an equal part among the uids holding slots) gives back
    /// its least-used one to a request from a uid holding less (it gets
    /// EMFILE); 100: never (Linux: needs peer credentials).
    #[arg(long = "uid-share", value_name = "PERCENT", default_value_t = 50,
          value_parser = clap::value_parser!(u32).range(1..=100))]
    pub uid_share: u32,

    /// Milliseconds a transfer may move no byte (destination or status
    /// pipe unread) before it ends with ETIMEDOUT, or is closed if its
    /// status pipe is full; 0: never.
    #[arg(long = "stall-timeout", value_name = "MS", default_value_t = 60_000)]
    pub stall_timeout_ms: u64,

    /// With privileges: chroot to ROOT and run as this user.
    #[arg(short = 'u', long = "user", value_name = "USER")]
    pub user: Option<String>,

    /// With privileges: run as this group (default: USER's primary group).
    #[arg(short = 'g', long = "group", value_name = "GROUP")]
    pub group: Option<String>,

    /// Detach from the terminal and run in the background (logs go to
    /// syslog unless --log says otherwise).
    #[arg(short = 'd', long = "daemon")]
    pub daemonize: bool,

    /// Report readiness on standard output: "ready PID" once requests are
    /// accepted, or "error ERRNO MESSAGE" if start-up failed.
    #[arg(short = 'p', long = "print-ready")]
    pub print_ready: bool,

    /// Run as root without dropping privileges (also: SENDFILED_ALLOW_ROOT=1).
    #[arg(long = "allow-root")]
    pub allow_root: bool,

    /// Where log lines go [default: stderr, or syslog with -d].
    #[arg(long = "log", value_enum, value_name = "TARGET")]
    pub log: Option<LogTarget>,

    /// Log verbosity.
    #[arg(
        long = "log-level",
        value_enum,
        default_value = "info",
        value_name = "LEVEL"
    )]
    pub log_level: LogLevel,

    /// Disk I/O threads that bring uncached file data in off the event loop.
    #[arg(long = "disk-threads", value_name = "N", default_value_t = 2,
          value_parser = clap::value_parser!(u32).range(1..=256))]
    pub disk_threads: u32,

    /// After activity, keep polling this many microseconds before sleeping:
    /// lower latency for a client that sends its next request at once, at
    /// the cost of CPU time spent spinning (0: never spin).
    #[arg(long = "busy-poll", value_name = "US", default_value_t = 0,
          value_parser = clap::value_parser!(u64).range(0..=10_000))]
    pub busy_poll_us: u64,

    /// Permissions of the request socket, in octal.
    #[arg(long = "socket-mode", value_name = "MODE", default_value = "600", value_parser = parse_mode)]
    pub socket_mode: u32,

    /// Group owning the request socket (give it mode 660 to let the group in).
    #[arg(long = "socket-group", value_name = "GROUP")]
    pub socket_group: Option<String>,

    /// Only these uids may make requests (repeat, or comma-separate);
    /// others get EACCES. Needs peer credentials (Linux).
    #[arg(long = "allow-uid", value_name = "UID", value_delimiter = ',')]
    pub allow_uid: Vec<u32>,

    /// Only these gids may make requests (with --allow-uid: either matches).
    #[arg(long = "allow-gid", value_name = "GID", value_delimiter = ',')]
    pub allow_gid: Vec<u32>,

    /// The event loop's engine: uring (Linux's io_uring; fails to start if
    /// the kernel refuses it), epoll (the readiness loop: epoll on Linux,
    /// kqueue elsewhere), or auto (uring where allowed, else epoll, with one
    /// log line saying why). The choice is logged at start.
    #[arg(long = "engine", value_name = "ENGINE", env = "SENDFILED_ENGINE",
          default_value = "auto", value_parser = parse_engine)]
    pub engine: EngineKind,

    /// Tell clients not to attempt transfers in their own process: every
    /// request comes here whole. By default a client first does in its own
    /// process what cannot wait (a file in the page cache, a destination
    /// with room) and hands on only the rest; that needs nothing it could
    /// not do already (it opens files beneath the root with its own
    /// credentials), so this is for measuring and for debugging.
    #[arg(long = "no-inline")]
    pub no_inline: bool,
}

fn parse_engine(s: &str) -> Result<EngineKind, String> {
    s.parse()
}

fn parse_mode(s: &str) -> Result<u32, String> {
    let m = u32::from_str_radix(s.trim_start_matches("0o"), 8)
        .map_err(|e| format!("not an octal mode: {e}"))?;
    if m > 0o777 {
        return Err("mode above 777".into());
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn original_short_options_parse() {
        let a = Args::try_parse_from([
            "sendfiled",
            "-s",
            "srv",
            "-r",
            "/srv",
            "-S",
            "/run",
            "-n",
            "5",
            "-t",
            "250",
            "-u",
            "www",
            "-g",
            "www",
            "-d",
            "-p",
        ])
        .unwrap();
        assert_eq!(a.name, "srv");
        assert_eq!(a.max_files, 5);
        assert_eq!(a.open_timeout_ms, 250);
        assert!(a.daemonize && a.print_ready);
        assert_eq!(a.user.as_deref(), Some("www"));
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(Args::try_parse_from(["sendfiled", "-s", "x", "-r", "/", "-n", "0"]).is_err());
        assert!(
            Args::try_parse_from(["sendfiled", "-s", "x", "-r", "/", "--socket-mode", "999"])
                .is_err()
        );
        assert!(Args::try_parse_from(["sendfiled", "-r", "/"]).is_err());
        let a = Args::try_parse_from(["sendfiled", "-s", "x", "-r", "/", "--socket-mode", "660"])
            .unwrap();
        assert_eq!(a.socket_mode, 0o660);
        assert_eq!(a.busy_poll_us, 0, "no spinning unless asked");
        if std::env::var_os("SENDFILED_ENGINE").is_none() {
            assert_eq!(a.engine, EngineKind::Auto);
        }
        assert_eq!((a.uid_share, a.stall_timeout_ms), (50, 60_000));
        for bad in ["0", "101"] {
            assert!(
                Args::try_parse_from(["sendfiled", "-s", "x", "-r", "/", "--uid-share", bad])
                    .is_err()
            );
        }
        let a = Args::try_parse_from([
            "sendfiled",
            "-s",
            "x",
            "-r",
            "/",
            "--uid-share",
            "100",
            "--stall-timeout",
            "0",
        ])
        .unwrap();
        assert_eq!((a.uid_share, a.stall_timeout_ms), (100, 0));
        let a = Args::try_parse_from(["sendfiled", "-s", "x", "-r", "/", "--busy-poll", "100"])
            .unwrap();
        assert_eq!(a.busy_poll_us, 100);
        assert!(
            Args::try_parse_from(["sendfiled", "-s", "x", "-r", "/", "--busy-poll", "20000"])
                .is_err()
        );
    }

    #[test]
    fn engine_is_chosen_by_name_and_unknown_names_are_refused() {
        for (name, kind) in [
            ("auto", EngineKind::Auto),
            ("uring", EngineKind::Uring),
            ("epoll", EngineKind::Epoll),
        ] {
            let a = Args::try_parse_from(["sendfiled", "-s", "x", "-r", "/", "--engine", name])
                .unwrap();
            assert_eq!(a.engine, kind);
        }
        let e = Args::try_parse_from(["sendfiled", "-s", "x", "-r", "/", "--engine", "select"])
            .unwrap_err();
        assert!(e.to_string().contains("unknown engine"), "{e}");
    }
}
