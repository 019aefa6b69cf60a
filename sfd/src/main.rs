//! `sfd`: the command-line client of sendfiled. It reads a file through the
//! daemon to standard output, has the daemon send one to a socket or
//! descriptor, shows a file's metadata, and asks whether the daemon is up.
//! See sfd(1).

// Shared with the daemon, which generates its own the same way (see the
// file's comment for why it is not a crate).
#[path = "../../src/completions.rs"]
mod completions;
mod dest;
mod failure;
mod show;

use std::fs::File;
use std::io::{self, IsTerminal, Read, Write};
use std::mem::ManuallyDrop;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd};
use std::path::PathBuf;
use std::time::Duration;

use clap::{CommandFactory, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sendfiled_client::client::{Client, Response};
use sendfiled_client::protocol::Range;

use dest::Dest;
use failure::{Failure, EXIT_FAILURE, EXIT_UNAVAILABLE, EXIT_USAGE};

/// Where a daemon started by the service files listens (`-s` without `-S`).
const DEFAULT_SOCKDIR: &str = "/run/sendfiled";

const EXIT_HELP: &str = "\
Exit status: 0 success; 1 the daemon reported an error (the message names \
the errno) or a local step failed; 2 bad command line; 69 the daemon could \
not be reached or did not answer.

The daemon's socket: --socket PATH, else -S SOCKDIR -s NAME (SOCKDIR \
defaults to /run/sendfiled), else $SENDFILED_SOCKET.";

/// Command-line client of sendfiled: read, send, stat files through a
/// running daemon, and check that it is up.
#[derive(Debug, Parser)]
#[command(name = "sfd", version, about, long_about, after_help = EXIT_HELP)]
struct Cli {
    /// The daemon's request socket.
    #[arg(long, global = true, value_name = "PATH")]
    socket: Option<PathBuf>,

    /// Directory of the daemon's socket (with -s) [default: /run/sendfiled].
    #[arg(short = 'S', long = "sockdir", global = true, value_name = "SOCKDIR")]
    sockdir: Option<PathBuf>,

    /// The daemon's server name (its -s).
    #[arg(short = 's', long = "name", global = true, value_name = "NAME")]
    name: Option<String>,

    /// Seconds to wait for the daemon's first answer.
    #[arg(long, global = true, value_name = "SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    timeout: u64,

    /// No progress bar (it is only ever drawn on a terminal).
    #[arg(short = 'q', long, global = true)]
    quiet: bool,

    #[command(subcommand)]
    command: Cmd,
}

/// The part of a file to move.
#[derive(Debug, Clone, Copy, clap::Args)]
struct RangeArgs {
    /// First byte to move.
    #[arg(short = 'o', long, value_name = "BYTES", default_value_t = 0)]
    offset: u64,

    /// Bytes to move (0: to the end of the file).
    #[arg(
        short = 'l',
        long = "length",
        value_name = "BYTES",
        default_value_t = 0
    )]
    length: u64,
}

impl RangeArgs {
    fn range(self) -> Range {
        Range {
            offset: self.offset,
            len: self.length,
        }
    }
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Read a file through the daemon and write it to standard output.
    Cat {
        /// The file, relative to the daemon's root.
        path: String,
        #[command(flatten)]
        range: RangeArgs,
    },
    /// Have the daemon send a file to a socket, descriptor or file.
    Send {
        /// The file, relative to the daemon's root.
        path: String,
        /// unix:PATH (stream socket), tcp:HOST:PORT, fd:N (inherited
        /// descriptor) or file:PATH (created or truncated).
        #[arg(long, value_name = "DEST", value_parser = dest::parse)]
        to: Dest,
        #[command(flatten)]
        range: RangeArgs,
    },
    /// Show a file's size and times as the daemon sees them.
    Stat {
        /// The file, relative to the daemon's root.
        path: String,
    },
    /// Check that the daemon is up: protocol version, transfers, uptime.
    Ping,
}

fn main() {
    // Die quietly on a closed pipe, as cat(1) does: `sfd cat f | head`.
    // SAFETY: resetting a signal disposition before any thread starts.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    // `sfd --completions SHELL` (hidden: for packagers and ci/install.sh).
    completions::handle_flag(Cli::command);
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            std::process::exit(if e.use_stderr() { EXIT_USAGE } else { 0 });
        }
    };
    match run(&cli) {
        Ok(()) => {}
        Err(f) => {
            eprintln!("sfd: {}", f.message);
            std::process::exit(f.code);
        }
    }
}

/// The socket the options name; a usage error (exit 2) if they name none.
fn socket_path(cli: &Cli) -> PathBuf {
    let usage = |msg: &str| -> ! {
        let _ = Cli::command()
            .error(clap::error::ErrorKind::ArgumentConflict, msg)
            .print();
        std::process::exit(EXIT_USAGE)
    };
    match (&cli.socket, &cli.name, &cli.sockdir) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
            usage("--socket cannot be used with -s/-S")
        }
        (Some(p), None, None) => p.clone(),
        (None, Some(name), dir) => {
            if name.is_empty() || name.contains('/') {
                usage("-s takes a server name, not a path (use --socket PATH)");
            }
            dir.clone()
                .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKDIR))
                .join(name)
        }
        (None, None, Some(_)) => usage("-S needs -s NAME"),
        (None, None, None) => match std::env::var_os("SENDFILED_SOCKET") {
            Some(p) if !p.is_empty() => PathBuf::from(p),
            _ => usage(
                "which daemon? give --socket PATH, or -s NAME [-S SOCKDIR], or set SENDFILED_SOCKET",
            ),
        },
    }
}

/// How the options named the socket, for the hint when nothing answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// `-s NAME` without `-S`: the default directory.
    DefaultDir,
    /// `$SENDFILED_SOCKET`.
    Env,
    /// `--socket PATH` or `-S DIR -s NAME`.
    Given,
}

fn origin(cli: &Cli) -> Origin {
    match (&cli.socket, &cli.sockdir, &cli.name) {
        (None, None, Some(_)) => Origin::DefaultDir,
        (None, None, None) => Origin::Env,
        _ => Origin::Given,
    }
}

/// The second line of a "cannot reach" message: where sfd looked and how to
/// point it elsewhere (the daemon's own default socket directory is its
/// root, which sfd cannot know), or why the socket may be closed to us.
fn unreachable_hint(origin: Origin, err: &io::Error) -> Option<String> {
    const STARTED: &str = "a daemon started as `sendfiled -s NAME -r ROOT [-S DIR]` \
                           listens on ROOT/DIR/NAME (DIR defaults to ROOT itself)";
    match err.raw_os_error()? {
        libc::ENOENT | libc::ECONNREFUSED => Some(match origin {
            Origin::DefaultDir => format!(
                "-s NAME without -S looks in {DEFAULT_SOCKDIR}, where the service units put \
                 the socket; {STARTED}: give -S ROOT/DIR, or --socket ROOT/DIR/NAME"
            ),
            Origin::Env => format!(
                "the socket path came from $SENDFILED_SOCKET; is the daemon running? {STARTED}"
            ),
            Origin::Given => format!(
                "is the daemon running? {STARTED}; name its socket with --socket PATH, \
                 or -S DIR -s NAME"
            ),
        }),
        libc::EACCES | libc::EPERM => Some(
            "the request socket is mode 600 (its owner only) unless the daemon was given \
             --socket-mode and --socket-group; the service units open it to the group sendfiled"
                .to_owned(),
        ),
        _ => None,
    }
}

/// `WHAT: cannot reach sendfiled at PATH: ERRNO`, and a hint line.
fn unreachable(what: &str, sock: &std::path::Path, origin: Origin, err: &io::Error) -> Failure {
    let mut f = Failure::unavailable(
        format!("{what}: cannot reach sendfiled at {}", sock.display()),
        err,
    );
    if let Some(hint) = unreachable_hint(origin, err) {
        f.message.push_str("\nsfd: hint: ");
        f.message.push_str(&hint);
    }
    f
}

fn run(cli: &Cli) -> Result<(), Failure> {
    let sock = socket_path(cli);
    let origin = origin(cli);
    let timeout = Duration::from_secs(cli.timeout);
    let what = match &cli.command {
        Cmd::Cat { path, .. } => format!("cat {path}"),
        Cmd::Send { path, to, .. } => format!("send {path} to {to}"),
        Cmd::Stat { path } => format!("stat {path}"),
        Cmd::Ping => "ping".to_owned(),
    };
    let client = Client::connect_path(&sock).map_err(|e| unreachable(&what, &sock, origin, &e))?;
    let ctx = Ctx {
        client,
        sock,
        origin,
        timeout,
        what,
        quiet: cli.quiet,
    };
    match &cli.command {
        Cmd::Cat { path, range } => cat(&ctx, path, range.range()),
        Cmd::Send { path, to, range } => send(&ctx, path, to, range.range()),
        Cmd::Stat { path } => stat(&ctx, path),
        Cmd::Ping => ping(&ctx),
    }
}

/// What every command needs.
struct Ctx {
    client: Client,
    sock: PathBuf,
    origin: Origin,
    timeout: Duration,
    /// `cat PATH`, ... for messages.
    what: String,
    quiet: bool,
}

impl Ctx {
    /// A failure to send the request: the daemon is gone (69), or the
    /// request itself was refused before sending (1).
    fn request_failed(&self, e: io::Error) -> Failure {
        if failure::is_unreachable(&e) {
            unreachable(&self.what, &self.sock, self.origin, &e)
        } else {
            Failure::io(&self.what, &e)
        }
    }

    /// Waits for the daemon's first answer on `fd`.
    fn wait_answer(&self, fd: BorrowedFd<'_>) -> Result<(), Failure> {
        match sendfiled_sys::wait_readable(fd, self.timeout) {
            Ok(true) => Ok(()),
            Ok(false) => Err(Failure::other(
                EXIT_UNAVAILABLE,
                format!(
                    "{}: no answer from sendfiled at {} within {} s",
                    self.what,
                    self.sock.display(),
                    self.timeout.as_secs()
                ),
            )),
            Err(e) => Err(Failure::io(&self.what, &e)),
        }
    }

    /// A progress bar for `total` bytes, drawn on standard error if that is
    /// a terminal (and `also` holds); hidden otherwise.
    fn progress(&self, total: u64, also: bool) -> ProgressBar {
        if self.quiet || !also || !io::stderr().is_terminal() {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template(
            "{binary_bytes:>10}/{binary_total_bytes} [{wide_bar}] {binary_bytes_per_sec} {eta}",
        );
        if let Ok(style) = style {
            bar.set_style(style.progress_chars("=> "));
        }
        bar
    }
}

/// Errors of a file-info read: the daemon's errno, or the channel's.
fn info_failed(what: &str, e: &io::Error) -> Failure {
    match e.raw_os_error() {
        Some(n) => Failure::errno(what, n),
        None => Failure::io(what, e),
    }
}

fn cat(ctx: &Ctx, path: &str, range: Range) -> Result<(), Failure> {
    let mut data = ctx
        .client
        .read(path, range)
        .map_err(|e| ctx.request_failed(e))?;
    ctx.wait_answer(data.as_fd())?;
    let info = data.file_info().map_err(|e| info_failed(&ctx.what, &e))?;
    let total = info.size as u64;
    let bar = ctx.progress(total, !io::stdout().is_terminal());
    // Unbuffered standard output: file data goes out in large writes.
    // SAFETY: descriptor 1 is open for the life of the process; ManuallyDrop
    // keeps this File from closing it.
    let mut out = ManuallyDrop::new(unsafe { File::from_raw_fd(libc::STDOUT_FILENO) });
    let mut buf = vec![0u8; 128 * 1024];
    let mut done = 0u64;
    loop {
        let n = match data.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                bar.abandon();
                return Err(Failure::io(&ctx.what, &e));
            }
        };
        if let Err(e) = out.write_all(&buf[..n]) {
            bar.abandon();
            return Err(Failure::io(
                format!("{}: writing standard output", ctx.what),
                &e,
            ));
        }
        done += n as u64;
        bar.set_position(done);
    }
    bar.finish_and_clear();
    if done != total {
        return Err(Failure::other(
            EXIT_FAILURE,
            format!(
                "{}: the daemon stopped after {done} of {total} bytes (see its log)",
                ctx.what
            ),
        ));
    }
    Ok(())
}

fn send(ctx: &Ctx, path: &str, to: &Dest, range: Range) -> Result<(), Failure> {
    let dest = to
        .open()
        .map_err(|e| Failure::io(format!("{}: opening {to}", ctx.what), &e))?;
    let status = ctx
        .client
        .send(path, dest.fd(), range)
        .map_err(|e| ctx.request_failed(e))?;
    // The daemon holds its own duplicate and closes it when done, so the
    // receiver sees end of file right after the last byte.
    drop(dest);
    ctx.wait_answer(status.as_fd())?;
    let bar = match status.recv() {
        Ok(Some(Response::FileInfo(fi))) => ctx.progress(fi.size as u64, true),
        Ok(Some(Response::Error { errno, .. })) => return Err(Failure::errno(&ctx.what, errno)),
        // The daemon may write the file info only once it waits or is
        // done, so data may have moved already.
        Ok(None) => return Err(cut_short(&ctx.what, 0)),
        Ok(Some(_)) => return Err(Failure::errno(&ctx.what, libc::EPROTO)),
        Err(e) => return Err(info_failed(&ctx.what, &e)),
    };
    let mut moved = 0u64;
    loop {
        let msg = status.recv();
        let fail = |f: Failure| {
            bar.abandon();
            Err(f)
        };
        match msg {
            Ok(Some(Response::Progress(n))) => {
                moved += n as u64;
                bar.set_position(moved);
            }
            Ok(Some(Response::Complete)) => {
                bar.finish_and_clear();
                return Ok(());
            }
            Ok(Some(Response::Error { errno, .. })) => {
                let what = if moved > 0 {
                    format!("{} (after at least {moved} bytes)", ctx.what)
                } else {
                    ctx.what.clone()
                };
                return fail(Failure::errno(what, errno));
            }
            Ok(None) => return fail(cut_short(&ctx.what, moved)),
            Ok(Some(_)) => return fail(Failure::errno(&ctx.what, libc::EPROTO)),
            Err(e) => return fail(Failure::io(&ctx.what, &e)),
        }
    }
}

/// A send whose status channel closed without a completion (the daemon
/// stopped). Progress comes only at waits, in steps of at least 1 MiB: what
/// moved since the last report (all of it, without one) is unknown here,
/// so the count is a lower bound, or absent.
fn cut_short(what: &str, moved: u64) -> Failure {
    let count = if moved > 0 {
        format!(" after at least {moved} bytes (its last progress report)")
    } else {
        String::new()
    };
    Failure::other(
        EXIT_FAILURE,
        format!(
            "{what}: failed: the daemon closed the status channel{count} without \
             completing; how much reached the destination is unknown (see its log)"
        ),
    )
}

fn stat(ctx: &Ctx, path: &str) -> Result<(), Failure> {
    // Open, read the file info, cancel: no data moves.
    let status = ctx
        .client
        .open(path, Range::WHOLE)
        .map_err(|e| ctx.request_failed(e))?;
    ctx.wait_answer(status.as_fd())?;
    let info = match status.recv() {
        Ok(Some(Response::FileInfo(fi))) => fi,
        Ok(Some(Response::Error { errno, .. })) => return Err(Failure::errno(&ctx.what, errno)),
        Ok(None) => return Err(Failure::errno(&ctx.what, libc::EPIPE)),
        Ok(Some(_)) => return Err(Failure::errno(&ctx.what, libc::EPROTO)),
        Err(e) => return Err(info_failed(&ctx.what, &e)),
    };
    // Free the daemon's slot now rather than at its open-file timeout; the
    // channel then just closes, and is not waited for.
    let _ = ctx.client.cancel(info.txnid as u64);
    let mut out = io::stdout().lock();
    let mut print = || -> io::Result<()> {
        writeln!(out, "file:  {path}")?;
        writeln!(
            out,
            "size:  {} ({})",
            info.size,
            show::bytes(info.size as u64)
        )?;
        for (name, t) in [
            ("mtime", info.mtime),
            ("atime", info.atime),
            ("ctime", info.ctime),
        ] {
            writeln!(out, "{name}: {} ({t})", show::utc(t))?;
        }
        // Where the open ran (README, "Inline first"): an id of this
        // process's marks one it made itself and the daemon held.
        let opened = if sendfiled_client::protocol::is_client_id(info.txnid as u64) {
            "in this process (inline first), held by the daemon"
        } else {
            "by the daemon"
        };
        writeln!(out, "open:  {opened}")?;
        out.flush()
    };
    print().map_err(|e| Failure::io(format!("{}: writing standard output", ctx.what), &e))
}

fn ping(ctx: &Ctx) -> Result<(), Failure> {
    let st = match ctx.client.server_status(ctx.timeout) {
        Ok(st) => st,
        Err(e) if e.raw_os_error() == Some(libc::ETIMEDOUT) => {
            return Err(Failure::other(
                EXIT_UNAVAILABLE,
                format!(
                    "ping: no answer from sendfiled at {} within {} s",
                    ctx.sock.display(),
                    ctx.timeout.as_secs()
                ),
            ))
        }
        Err(e) => return Err(ctx.request_failed(e)),
    };
    if ctx.quiet {
        return Ok(());
    }
    let mut out = io::stdout().lock();
    let mut print = || -> io::Result<()> {
        writeln!(out, "sendfiled at {} is up", ctx.sock.display())?;
        writeln!(out, "protocol:  version {}", st.version)?;
        writeln!(out, "uptime:    {}", show::duration(st.uptime_secs))?;
        writeln!(
            out,
            "transfers: {} live, {} completed, {} failed",
            st.live, st.completed, st.failed
        )?;
        writeln!(
            out,
            "moved:     {} bytes ({})",
            st.bytes,
            show::bytes(st.bytes)
        )?;
        writeln!(
            out,
            "hand-offs: {} (transfers clients began in their own process)",
            st.handoffs
        )?;
        out.flush()
    };
    print().map_err(|e| Failure::io("ping: writing standard output", &e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_options_go_before_or_after_the_command() {
        let a = Cli::try_parse_from(["sfd", "-s", "web", "cat", "x"]).unwrap();
        let b = Cli::try_parse_from(["sfd", "cat", "x", "-s", "web"]).unwrap();
        assert_eq!(a.name, b.name);
        assert_eq!(socket_path(&a), PathBuf::from("/run/sendfiled/web"));
        let c = Cli::try_parse_from(["sfd", "--socket", "/tmp/s", "send", "f", "--to", "fd:1"])
            .unwrap();
        assert_eq!(socket_path(&c), PathBuf::from("/tmp/s"));
        assert!(
            Cli::try_parse_from(["sfd", "send", "f"]).is_err(),
            "--to is required"
        );
        assert!(Cli::try_parse_from(["sfd", "send", "f", "--to", "udp:x:1"]).is_err());
        assert!(Cli::try_parse_from(["sfd", "--timeout", "0", "ping"]).is_err());
    }
}
