//! The `sendfiled` daemon: command line -> configuration -> the portable
//! server running the platform's backend, picked here and nowhere else.

mod activation;
mod cli;
mod completions;
mod error;
mod logging;
mod privileges;
mod signals;

use std::ffi::CString;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use sendfiled_core::backend::TransferBackend;
use sendfiled_core::fault::{FaultBackend, FAULTS_ENV};
use sendfiled_core::server::listener::{self, RequestSocket};
use sendfiled_core::server::{Config, Server};

use cli::{Args, LogTarget};
use error::StartError;

cfg_if::cfg_if! {
    if #[cfg(target_os = "linux")] {
        use sendfiled_backend_linux as platform;
    } else if #[cfg(target_os = "freebsd")] {
        use sendfiled_backend_freebsd as platform;
    } else if #[cfg(target_os = "macos")] {
        use sendfiled_backend_macos as platform;
    } else {
        compile_error!("sendfiled supports Linux, FreeBSD and macOS");
    }
}

fn main() {
    // `sendfiled --completions SHELL`: not an option of the daemon (it
    // needs no -s/-r), so looked for before the parser.
    completions::handle_flag(<Args as clap::CommandFactory>::command);
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) => {
            let usage_error = e.use_stderr();
            let _ = e.print();
            // --help and --version exit 0; a bad command line exits EINVAL.
            std::process::exit(if usage_error { libc::EINVAL } else { 0 });
        }
    };
    let target = args.log.unwrap_or(if args.daemonize {
        LogTarget::Syslog
    } else {
        LogTarget::Stderr
    });
    logging::init(target, args.log_level.filter());
    match run(&args, target) {
        Ok(()) => logging::exit(0),
        Err(e) => {
            log::error!("{}", e.what);
            if args.print_ready {
                report(&format!("error {} {}", e.errno, e.what));
            }
            if args.daemonize && !detach::failed(&e) && target != LogTarget::Stderr {
                // -d, still in the foreground: the log may go where nobody
                // looks (syslog without a syslog daemon, none), so the
                // failure is said on standard error too.
                eprintln!("sendfiled: {}", e.what);
            }
            logging::exit(e.errno.clamp(1, 255));
        }
    }
}

/// The `-d` start-up handshake: the parent of the fork waits on a pipe
/// until the detached daemon is serving (it then exits 0) or has failed
/// (it prints the daemon's message on its standard error and exits with
/// the daemon's errno), so a failed background start is never silent and
/// the socket is there when the command returns.
mod detach {
    use std::io::{Read, Write};
    use std::os::fd::OwnedFd;
    use std::sync::Mutex;

    use crate::error::StartError;

    /// The child's end of the pipe, until it has said how the start went.
    static TELL_PARENT: Mutex<Option<OwnedFd>> = Mutex::new(None);

    /// In the child after the fork: keep the writing end.
    pub fn keep(w: OwnedFd) {
        *TELL_PARENT.lock().unwrap_or_else(|p| p.into_inner()) = Some(w);
    }

    fn say(line: &str) -> bool {
        match TELL_PARENT.lock().unwrap_or_else(|p| p.into_inner()).take() {
            Some(w) => {
                let _ = std::fs::File::from(w).write_all(line.as_bytes());
                true
            }
            None => false,
        }
    }

    /// The detached daemon is serving.
    pub fn ready() {
        say("ok\n");
    }

    /// The detached daemon failed to start; false before the fork (no
    /// parent is waiting).
    pub fn failed(e: &StartError) -> bool {
        say(&format!("error {} {}\n", e.errno, e.what))
    }

    /// In the parent after the fork: wait for the child's word and exit.
    pub fn wait_and_exit(r: OwnedFd) -> ! {
        let mut said = String::new();
        let _ = std::fs::File::from(r).read_to_string(&mut said);
        if said.starts_with("ok") {
            std::process::exit(0);
        }
        let mut it = said.trim_end().splitn(3, ' ');
        match (
            it.next(),
            it.next().and_then(|n| n.parse::<i32>().ok()),
            it.next(),
        ) {
            (Some("error"), Some(errno), Some(what)) => {
                eprintln!("sendfiled: {what}");
                std::process::exit(errno.clamp(1, 255));
            }
            _ => {
                eprintln!("sendfiled: the detached daemon exited during start-up (see its log)");
                std::process::exit(libc::EIO);
            }
        }
    }
}

/// Writes one readiness line on stdout, then detaches stdout so a reader
/// waiting for end of file gets it.
fn report(line: &str) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
    redirect_to_null(libc::STDOUT_FILENO);
}

/// `/dev/null`, opened before any chroot (ROOT rarely has a `/dev`).
static DEV_NULL: std::sync::OnceLock<Option<std::fs::File>> = std::sync::OnceLock::new();

fn dev_null() -> Option<&'static std::fs::File> {
    DEV_NULL
        .get_or_init(|| {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/null")
                .ok()
        })
        .as_ref()
}

fn redirect_to_null(fd: libc::c_int) {
    if let Some(null) = dev_null() {
        // SAFETY: dup2 onto a standard descriptor we own.
        unsafe { libc::dup2(null.as_raw_fd(), fd) };
    }
}

fn allow_root(args: &Args) -> bool {
    args.allow_root || std::env::var("SENDFILED_ALLOW_ROOT").is_ok_and(|v| v == "1")
}

/// `ROOT/SOCKDIR/NAME`, with SOCKDIR taken inside ROOT.
fn socket_path(root: &Path, sockdir: &Path, name: &str) -> Result<PathBuf, StartError> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(StartError::new(
            libc::EINVAL,
            format!("bad server name {name:?}"),
        ));
    }
    let inside: PathBuf = sockdir
        .components()
        .filter(|c| !matches!(c, Component::RootDir | Component::CurDir))
        .collect();
    let path = root.join(inside).join(name);
    // sun_path holds 104 bytes on the BSDs, 108 on Linux, NUL included.
    if path.as_os_str().len() >= 104 {
        return Err(StartError::new(
            libc::ENAMETOOLONG,
            format!("socket path {} is too long", path.display()),
        ));
    }
    Ok(path)
}

fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        // macOS refuses an unlimited soft limit; a million is plenty.
        let want = hard.min(1 << 20);
        if want > soft {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, want, hard);
        }
    }
}

fn run(args: &Args, target: LogTarget) -> Result<(), StartError> {
    // First, before anything could start a thread: it edits the environment.
    let inherited = activation::take_request_socket()?;
    // Before any chroot: what the kernel reports for a sender without
    // credentials (see activation.rs).
    sendfiled_core::sys::learn_overflow_ids();
    let identity = privileges::resolve(args.user.as_deref(), args.group.as_deref())
        .map_err(|e| StartError::io("looking up -u/-g", e))?;
    if identity.is_some() && !nix::unistd::geteuid().is_root() {
        return Err(StartError::new(
            libc::EPERM,
            "-u/-g need root: the daemon chroots to ROOT and changes user and group; \
             start it as root, or without -u/-g to run as the current user",
        ));
    }
    if nix::unistd::geteuid().is_root() && identity.is_none() && !allow_root(args) {
        return Err(StartError::new(
            libc::EPERM,
            "refusing to run as root: give -u USER (and -g GROUP) to drop privileges, \
             or --allow-root / SENDFILED_ALLOW_ROOT=1",
        ));
    }
    let root = std::fs::canonicalize(&args.root)
        .map_err(|e| StartError::io(&format!("root {}", args.root.display()), e))?;
    if !root.is_dir() {
        return Err(StartError::new(
            libc::ENOTDIR,
            format!("root {} is not a directory", root.display()),
        ));
    }
    let (mut socket, shown) = match inherited {
        // The service manager bound it and owns its file, permissions,
        // group and removal; -s only names the server in logs.
        Some(fd) => {
            listener::prepare(fd.as_fd())
                .map_err(|e| StartError::io("preparing the inherited request socket", e))?;
            let shown = format!(
                "the socket passed by the service manager (server {})",
                args.name
            );
            (RequestSocket { fd, path: None }, shown)
        }
        None => {
            let sock_path = socket_path(&root, &args.sockdir, &args.name)?;
            let socket = bind_socket(args, &sock_path, identity)?;
            (socket, sock_path.display().to_string())
        }
    };
    raise_fd_limit();

    let mut root_for_server = root.clone();
    if let Some(id) = identity {
        // Standard descriptors are detached onto /dev/null after the chroot.
        let _ = dev_null();
        privileges::drop_to(&root, id).map_err(|e| StartError::io("dropping privileges", e))?;
        if root != Path::new("/") {
            root_for_server = PathBuf::from("/");
            // The socket file is removed at shutdown from inside the chroot.
            socket.path = socket.path.take().and_then(|p| {
                p.strip_prefix(&root)
                    .ok()
                    .map(|rel| Path::new("/").join(rel))
            });
        }
        log::info!("running as uid {} gid {}", id.uid, id.gid);
    }
    let root_c = CString::new(root_for_server.as_os_str().as_bytes())
        .map_err(|_| StartError::new(libc::EINVAL, "root path holds a NUL"))?;
    let root_fd = sendfiled_core::sys::open_dir(&root_c)
        .map_err(|e| StartError::io("opening the root", e))?;

    if args.daemonize {
        daemonize(target)?;
    }

    let config = Config {
        max_transfers: args.max_files as usize,
        open_timeout: Duration::from_millis(args.open_timeout_ms),
        disk_threads: args.disk_threads as usize,
        busy_poll: Duration::from_micros(args.busy_poll_us),
        uid_share_percent: args.uid_share,
        stall_timeout: Duration::from_millis(args.stall_timeout_ms),
        allow_uids: args.allow_uid.clone(),
        allow_gids: args.allow_gid.clone(),
        engine: args.engine,
        allow_inline: !args.no_inline,
        // The path as the clients see it, before any chroot: they open it
        // themselves and check it is the same directory.
        root_path: Some(root.clone()),
        ..Config::default()
    };
    let backend = platform::new_backend();
    let ready = Ready {
        root: &root,
        shown: &shown,
        print: args.print_ready,
    };
    // A test facility: SENDFILED_FAULTS makes chosen backend calls fail
    // (sendfiled_core::fault). It can only make requests fail.
    match std::env::var(FAULTS_ENV) {
        Ok(spec) if !spec.is_empty() => {
            let faulty = FaultBackend::from_spec(backend, &spec)
                .map_err(|e| StartError::new(libc::EINVAL, format!("{FAULTS_ENV}: {e}")))?;
            log::warn!("{FAULTS_ENV} set: injecting faults {spec:?} (a test facility)");
            serve(faulty, config, root_fd, socket, ready)
        }
        _ => serve(backend, config, root_fd, socket, ready),
    }
}

/// What to log and report once the server is up.
struct Ready<'a> {
    root: &'a Path,
    shown: &'a str,
    print: bool,
}

fn serve<B: TransferBackend>(
    backend: B,
    config: Config,
    root_fd: std::os::fd::OwnedFd,
    socket: RequestSocket,
    ready: Ready<'_>,
) -> Result<(), StartError> {
    let shutdown = signals::install_shutdown_signals()
        .map_err(|e| StartError::io("installing signal handlers", e))?;
    let mut server = Server::new(backend, config, root_fd, socket, shutdown)
        .map_err(|e| StartError::io("starting the server", e))?;
    log::info!(
        "{} {} serving {} on {}",
        env!("CARGO_PKG_NAME"),
        env!("CARGO_PKG_VERSION"),
        ready.root.display(),
        ready.shown
    );
    if ready.print {
        report(&format!("ready {}", std::process::id()));
    }
    detach::ready();
    server.run().map_err(|e| StartError::io("event loop", e))
}

/// Binds the request socket at `sock_path` and gives it to the user and
/// group the daemon will run as (or --socket-group).
fn bind_socket(
    args: &Args,
    sock_path: &Path,
    identity: Option<privileges::Identity>,
) -> Result<RequestSocket, StartError> {
    let socket = listener::bind(sock_path, args.socket_mode)
        .map_err(|e| StartError::io(&format!("request socket {}", sock_path.display()), e))?;
    if identity.is_some() || args.socket_group.is_some() {
        let group = match &args.socket_group {
            Some(g) => Some(
                privileges::resolve(None, Some(g))
                    .map_err(|e| StartError::io("--socket-group", e))?
                    .map(|i| i.gid)
                    .ok_or_else(|| StartError::new(libc::EINVAL, "--socket-group"))?,
            ),
            None => identity.map(|i| i.gid),
        };
        nix::unistd::chown(sock_path, identity.map(|i| i.uid), group)
            .map_err(|e| StartError::io("chown of the request socket", e.into()))?;
    }
    Ok(socket)
}

/// Detaches: the parent waits until the child serves or fails
/// ([`detach`]), the child leads a new session in `/` (so the start
/// directory's filesystem is not held busy), with standard input (and
/// standard error unless logging there) on /dev/null.
fn daemonize(target: LogTarget) -> Result<(), StartError> {
    let (r, w) = nix::unistd::pipe().map_err(|e| StartError::io("pipe", e.into()))?;
    // SAFETY: no thread has been started yet, so fork is safe here.
    match unsafe { nix::unistd::fork() }.map_err(|e| StartError::io("fork", e.into()))? {
        nix::unistd::ForkResult::Parent { .. } => {
            drop(w);
            detach::wait_and_exit(r)
        }
        nix::unistd::ForkResult::Child => {}
    }
    drop(r);
    detach::keep(w);
    nix::unistd::setsid().map_err(|e| StartError::io("setsid", e.into()))?;
    nix::unistd::chdir("/").map_err(|e| StartError::io("chdir /", e.into()))?;
    redirect_to_null(libc::STDIN_FILENO);
    if target != LogTarget::Stderr {
        redirect_to_null(libc::STDERR_FILENO);
    }
    Ok(())
}
