//! `libsendfiled`: the C client library of sendfiled.
//!
//! Every function here is exported with the name and signature that
//! `include/sendfiled.h` and `include/responses.h` declare; those headers and
//! the manual page `man/sendfiled.3` (at the top of the repository) are the
//! contract and document every function. They are thin shells over the Rust
//! client in `sendfiled_client::client` and the one request encoder in
//! `sendfiled_client::protocol`:
//!
//! 1. check the arguments (`NULL` -> `EINVAL`, negative descriptor ->
//!    `EBADF`, negative offset -> `EINVAL`, ...);
//! 2. run the body inside [`std::panic::catch_unwind`], so a panic never
//!    unwinds into C (it becomes `EIO` and the error return);
//! 3. on failure set `errno` and return -1 / `false`.
//!
//! The library writes nothing to stdout or stderr. A panic inside a shell is
//! kept quiet by a panic hook installed on first use that defers to the
//! previous hook for every panic outside the shells (so a Rust program that
//! links this crate keeps its own hook behaviour).

use std::cell::Cell;
use std::ffi::{c_char, c_int, c_void, CStr, CString, OsStr};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, IntoRawFd};
use std::os::unix::ffi::OsStrExt;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Once, RwLock};

use sendfiled_client::client::{self, SpawnOptions, Spawned};
use sendfiled_client::inline::{self, Inline};
use sendfiled_client::protocol::{
    self as proto, FileInfo, HeaderTrailer, Range, Request, XferStat, SFD_FILE_INFO, SFD_HDR_SIZE,
    SFD_STAT_OK, SFD_XFER_STAT,
};
use sendfiled_sys as sys;

pub mod errno;

/// `SFD_MAX_PATH_LEN` in `sendfiled.h`.
pub const SFD_MAX_PATH_LEN: usize = proto::MAX_PATH_LEN;
/// `SFD_MAX_HDTR_LEN` in `sendfiled.h`.
pub const SFD_MAX_HDTR_LEN: usize = proto::MAX_HDTR_LEN;

/// The errno a shell reports, or the value it returns.
type Res<T> = Result<T, c_int>;

thread_local! {
    static IN_SHELL: Cell<bool> = const { Cell::new(false) };
}

static QUIET_HOOK: Once = Once::new();

/// Installs (once) a panic hook that is silent for panics inside a shell and
/// calls the previous hook for every other panic.
fn install_quiet_hook() {
    QUIET_HOOK.call_once(|| {
        let prev = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !IN_SHELL.try_with(Cell::get).unwrap_or(false) {
                prev(info);
            }
        }));
    });
}

/// Runs `body`; on `Err(e)` sets `errno = e` and returns `fail`; on a panic
/// sets `errno = EIO` and returns `fail`.
fn shell<T>(fail: T, body: impl FnOnce() -> Res<T>) -> T {
    install_quiet_hook();
    let outer = IN_SHELL.with(|f| f.replace(true));
    let r = panic::catch_unwind(AssertUnwindSafe(body));
    IN_SHELL.with(|f| f.set(outer));
    match r {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            errno::set_errno(e);
            fail
        }
        Err(_) => {
            errno::set_errno(libc::EIO);
            fail
        }
    }
}

/// The errno of an I/O error; errors that carry none get the closest one.
fn os(e: io::Error) -> c_int {
    sendfiled_sys::errno::of_io(&e) as c_int
}

/// A C string argument; `NULL` is `EINVAL`.
///
/// # Safety
/// `p` is `NULL` or points to a NUL-terminated string that outlives `'a`.
unsafe fn cstr<'a>(p: *const c_char) -> Res<&'a CStr> {
    if p.is_null() {
        Err(libc::EINVAL)
    } else {
        // SAFETY: non-NULL and NUL-terminated by the caller's contract.
        Ok(unsafe { CStr::from_ptr(p) })
    }
}

/// A descriptor argument; negative is `EBADF`.
fn fd_arg<'a>(fd: c_int) -> Res<BorrowedFd<'a>> {
    if fd < 0 {
        Err(libc::EBADF)
    } else {
        // SAFETY: the caller lends an open descriptor for the duration of
        // the call; if it is not open, the system call using it says EBADF.
        Ok(unsafe { BorrowedFd::borrow_raw(fd) })
    }
}

/// The byte range of a request; a negative offset is `EINVAL`. A length that
/// would run past the largest offset is clipped (the daemon clips every range
/// to the file anyway).
fn range_arg(offset: libc::off_t, len: usize) -> Res<Range> {
    if offset < 0 {
        return Err(libc::EINVAL);
    }
    let offset = offset as u64;
    let len = (len as u64).min(u64::MAX - offset);
    Ok(Range { offset, len })
}

/// Header and trailer arguments: a `NULL` pointer with a non-zero length is
/// `EINVAL`; more than `SFD_MAX_HDTR_LEN` bytes together is `EMSGSIZE`.
///
/// # Safety
/// Each non-NULL pointer is valid for reads of its length.
unsafe fn hdtr_arg(
    hdr: *const c_void,
    hdr_len: usize,
    trl: *const c_void,
    trl_len: usize,
) -> Res<HeaderTrailer> {
    if (hdr_len > 0 && hdr.is_null()) || (trl_len > 0 && trl.is_null()) {
        return Err(libc::EINVAL);
    }
    match hdr_len.checked_add(trl_len) {
        Some(n) if n <= SFD_MAX_HDTR_LEN => {}
        _ => return Err(libc::EMSGSIZE),
    }
    let bytes = |p: *const c_void, n: usize| {
        if n == 0 {
            Vec::new()
        } else {
            // SAFETY: non-NULL (checked) and readable for n bytes by the
            // caller's contract; n <= SFD_MAX_HDTR_LEN.
            unsafe { std::slice::from_raw_parts(p.cast::<u8>(), n) }.to_vec()
        }
    };
    Ok(HeaderTrailer {
        header: bytes(hdr, hdr_len),
        trailer: bytes(trl, trl_len),
    })
}

/// Sends `req` with `fds` on `srv`. Encodes first, so an argument no daemon
/// accepts fails before anything is sent.
fn submit(srv: BorrowedFd<'_>, req: &Request, fds: &[BorrowedFd<'_>]) -> Res<()> {
    let bytes = req.encode().map_err(|e| e.errno())?;
    client::send_request_bytes(srv, &bytes, fds).map_err(os)
}

// ---------------------------------------------------------------------------
// Server interaction
// ---------------------------------------------------------------------------

/// Starts a daemon serving `root_dir` and waits until it accepts requests.
/// Returns its pid, 0 if a daemon of that name already serves that socket
/// directory, or -1 with `errno` (the daemon's own error if it refused to
/// start).
///
/// # Safety
/// The string arguments are `NULL` or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn sfd_spawn(
    server_name: *const c_char,
    root_dir: *const c_char,
    sockdir: *const c_char,
    maxfiles: c_int,
    open_fd_timeout_ms: c_int,
) -> libc::pid_t {
    shell(-1, || {
        // SAFETY: per this function's contract.
        let (name, root, sockdir) =
            unsafe { (cstr(server_name)?, cstr(root_dir)?, cstr(sockdir)?) };
        let name = name.to_str().map_err(|_| libc::EINVAL)?;
        if name.is_empty() || root.is_empty() || sockdir.is_empty() {
            return Err(libc::EINVAL);
        }
        let max_files = u32::try_from(maxfiles).map_err(|_| libc::EINVAL)?;
        let open_timeout_ms = u32::try_from(open_fd_timeout_ms).map_err(|_| libc::EINVAL)?;
        let mut opts = SpawnOptions::new(
            name,
            Path::new(OsStr::from_bytes(root.to_bytes())),
            Path::new(OsStr::from_bytes(sockdir.to_bytes())),
        );
        opts.max_files = max_files;
        opts.open_timeout_ms = open_timeout_ms;
        opts.program = Some(daemon_program()?);
        make_socket_dir(&opts.root, &opts.sockdir)?;
        match client::spawn(&opts).map_err(os)? {
            Spawned::Started(pid) => Ok(pid),
            Spawned::AlreadyRunning => Ok(0),
        }
    })
}

/// Creates the socket directory `root/sockdir` (as the daemon takes it:
/// inside the root, a leading `/` included) with its missing parents, mode
/// 0755 less the umask, when the root exists; a missing root is left to the
/// daemon (`ENOENT`). A component that is not a directory is `ENOTDIR`; a
/// directory that may not be created, its errno (`EACCES`, `EROFS`, ...).
fn make_socket_dir(root: &Path, sockdir: &Path) -> Res<()> {
    use std::os::unix::fs::DirBuilderExt;
    if !root.is_dir() {
        return Ok(());
    }
    let inside: PathBuf = sockdir
        .components()
        .filter(|c| {
            !matches!(
                c,
                std::path::Component::RootDir | std::path::Component::CurDir
            )
        })
        .collect();
    let dir = root.join(inside);
    match std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(&dir)
    {
        Ok(()) => Ok(()),
        // The path exists and is not a directory.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(libc::ENOTDIR),
        Err(e) => Err(os(e)),
    }
}

/// The daemon executable: `$SENDFILED_BIN`, else `sendfiled` on `PATH`,
/// else the daemon installed with this library (`PREFIX/sbin/sendfiled`,
/// baked in by the build when `SENDFILED_PREFIX` was set, as `make -C
/// client-c` and `ci/install.sh` do).
///
/// Resolved here, before anything is started, so that a missing or
/// non-executable program fails with its own errno (`ENOENT`, `EACCES`)
/// however the process is spawned (a `posix_spawn` emulated with fork, as
/// under valgrind, can only report an exec failure as exit status 127).
fn daemon_program() -> Res<PathBuf> {
    fn executable(p: &Path) -> Res<()> {
        if p.is_dir() {
            return Err(libc::EACCES);
        }
        let c = CString::new(p.as_os_str().as_bytes()).map_err(|_| libc::EINVAL)?;
        // SAFETY: c is a valid NUL-terminated path.
        if unsafe { libc::access(c.as_ptr(), libc::X_OK) } == 0 {
            Ok(())
        } else {
            Err(os(io::Error::last_os_error()))
        }
    }
    if let Some(bin) = std::env::var_os("SENDFILED_BIN").filter(|b| !b.is_empty()) {
        let bin = PathBuf::from(bin);
        executable(&bin)?;
        return Ok(bin);
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .map(|d| d.join("sendfiled"))
        .chain(option_env!("SFD_INSTALLED_DAEMON").map(PathBuf::from))
        .find(|p| executable(p).is_ok())
        .ok_or(libc::ENOENT)
}

/// The longest socket path `connect(2)` takes (the size of `sun_path`, minus
/// the NUL).
fn max_socket_path() -> usize {
    // SAFETY: sockaddr_un is plain old data; all-zero is a valid value.
    let a: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    std::mem::size_of_val(&a.sun_path) - 1
}

/// Returns a datagram socket connected to the daemon `server_name` whose
/// socket lives in `server_sockdir`, or -1 with `errno`.
///
/// # Safety
/// The string arguments are `NULL` or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn sfd_connect(
    server_sockdir: *const c_char,
    server_name: *const c_char,
) -> c_int {
    shell(-1, || {
        // SAFETY: per this function's contract.
        let (dir, name) = unsafe { (cstr(server_sockdir)?, cstr(server_name)?) };
        if name.is_empty() {
            return Err(libc::EINVAL);
        }
        let path =
            Path::new(OsStr::from_bytes(dir.to_bytes())).join(OsStr::from_bytes(name.to_bytes()));
        if path.as_os_str().len() > max_socket_path() {
            return Err(libc::ENAMETOOLONG);
        }
        let c = client::Client::connect_path(&path).map_err(os)?;
        let fd = c.into_fd();
        register_connection(fd.as_fd());
        Ok(fd.into_raw_fd())
    })
}

/// Sends `SIGTERM` to `pid` and waits for it; returns the wait status, or
/// -1 with `errno`.
#[no_mangle]
pub extern "C" fn sfd_shutdown(pid: libc::pid_t) -> c_int {
    shell(-1, || {
        if pid <= 0 {
            return Err(libc::EINVAL);
        }
        client::shutdown(pid).map_err(os)
    })
}

// ---------------------------------------------------------------------------
// Transfers
// ---------------------------------------------------------------------------

/// Read File: returns the data pipe (file info, then the data, then EOF),
/// or -1 with `errno`.
///
/// # Safety
/// `path` is `NULL` or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn sfd_read(
    srv: c_int,
    path: *const c_char,
    offset: libc::off_t,
    len: usize,
    nonblock: bool,
) -> c_int {
    shell(-1, || {
        // SAFETY: per this function's contract.
        let path = unsafe { cstr(path)? }.to_owned();
        let srv = fd_arg(srv)?;
        let range = range_arg(offset, len)?;
        // The limit fails before anything is sent, the handshake included.
        if path.to_bytes().len() > SFD_MAX_PATH_LEN {
            return Err(libc::ENAMETOOLONG);
        }
        let inline = inline_for(srv);
        let data = inline::read(srv, inline.as_deref(), &path, range).map_err(os)?;
        if nonblock {
            sys::set_nonblocking(data.as_fd(), true).map_err(os)?;
        }
        Ok(data.into_raw_fd())
    })
}

/// Send File: returns the status pipe, or -1 with `errno`.
///
/// # Safety
/// `path` is `NULL` or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn sfd_send(
    srv: c_int,
    path: *const c_char,
    dest_fd: c_int,
    offset: libc::off_t,
    len: usize,
    nonblock: bool,
) -> c_int {
    // SAFETY: per this function's contract; no header or trailer.
    unsafe {
        sfd_send_hdtr(
            srv,
            path,
            dest_fd,
            offset,
            len,
            std::ptr::null(),
            0,
            std::ptr::null(),
            0,
            nonblock,
        )
    }
}

/// Send File with header and trailer bytes: returns the status pipe, or -1
/// with `errno`.
///
/// # Safety
/// `path` is `NULL` or NUL-terminated; `hdr`/`trl` are `NULL` or readable
/// for `hdr_len`/`trl_len` bytes.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn sfd_send_hdtr(
    srv: c_int,
    path: *const c_char,
    dest_fd: c_int,
    offset: libc::off_t,
    len: usize,
    hdr: *const c_void,
    hdr_len: usize,
    trl: *const c_void,
    trl_len: usize,
    nonblock: bool,
) -> c_int {
    shell(-1, || {
        // SAFETY: per this function's contract.
        let a = unsafe { send_args(srv, path, dest_fd, offset, len, hdr, hdr_len, trl, trl_len)? };
        let inline = inline_for(a.srv);
        let status = inline::send(a.srv, inline.as_deref(), &a.path, a.range, &a.hdtr, a.dest)
            .map_err(os)?;
        status_out(status, nonblock)
    })
}

/// A Send's arguments, checked as [`sfd_send_hdtr`] documents.
struct SendArgs<'a> {
    path: CString,
    srv: BorrowedFd<'a>,
    dest: BorrowedFd<'a>,
    range: Range,
    hdtr: HeaderTrailer,
}

/// Checks a Send's arguments: the path, both descriptors, the range, the
/// header and trailer, and the protocol's limits, which fail before
/// anything is sent, the handshake included.
///
/// # Safety
/// As [`sfd_send_hdtr`].
#[allow(clippy::too_many_arguments)]
unsafe fn send_args<'a>(
    srv: c_int,
    path: *const c_char,
    dest_fd: c_int,
    offset: libc::off_t,
    len: usize,
    hdr: *const c_void,
    hdr_len: usize,
    trl: *const c_void,
    trl_len: usize,
) -> Res<SendArgs<'a>> {
    // SAFETY: per this function's contract.
    let path = unsafe { cstr(path)? }.to_owned();
    let srv = fd_arg(srv)?;
    let dest = fd_arg(dest_fd)?;
    let range = range_arg(offset, len)?;
    // SAFETY: per this function's contract.
    let hdtr = unsafe { hdtr_arg(hdr, hdr_len, trl, trl_len)? };
    proto::check_send_limits(&path, &hdtr).map_err(|e| e.errno())?;
    Ok(SendArgs {
        path,
        srv,
        dest,
        range,
        hdtr,
    })
}

/// A status pipe handed to the caller: `O_NONBLOCK` if asked, its number.
fn status_out(status: std::os::fd::OwnedFd, nonblock: bool) -> Res<c_int> {
    if nonblock {
        sys::set_nonblocking(status.as_fd(), true).map_err(os)?;
    }
    Ok(status.into_raw_fd())
}

/// Send File with header and trailer, told at once when it finished in
/// this process: 1 with `*info` filled and `*status_fd` set to -1 (no
/// channel was made), 0 with `*status_fd` the status pipe
/// [`sfd_send_hdtr`] would return, or -1 with `errno` (`*info` and
/// `*status_fd` untouched).
///
/// # Safety
/// As [`sfd_send_hdtr`]; `info` and `status_fd` are `NULL` or writable.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn sfd_send_here(
    srv: c_int,
    path: *const c_char,
    dest_fd: c_int,
    offset: libc::off_t,
    len: usize,
    hdr: *const c_void,
    hdr_len: usize,
    trl: *const c_void,
    trl_len: usize,
    nonblock: bool,
    info: *mut FileInfo,
    status_fd: *mut c_int,
) -> c_int {
    shell(-1, || {
        if info.is_null() || status_fd.is_null() {
            return Err(libc::EINVAL);
        }
        // SAFETY: per this function's contract.
        let a = unsafe { send_args(srv, path, dest_fd, offset, len, hdr, hdr_len, trl, trl_len)? };
        let inline = inline_for(a.srv);
        match inline::begin(inline.as_deref(), &a.path, a.range, &a.hdtr, a.dest).map_err(os)? {
            inline::Begun::Finished(fi) => {
                // SAFETY: both non-NULL and writable by the contract;
                // unaligned writes keep this sound whatever the caller's
                // buffers.
                unsafe {
                    info.write_unaligned(fi);
                    status_fd.write_unaligned(-1);
                }
                Ok(1)
            }
            inline::Begun::Ask { bytes, file } => {
                let status = inline::ask(a.srv, &bytes, a.dest, file).map_err(os)?;
                let fd = status_out(status, nonblock)?;
                // SAFETY: non-NULL and writable by the contract.
                unsafe { status_fd.write_unaligned(fd) };
                Ok(0)
            }
        }
    })
}

/// Per request socket made by [`sfd_connect`], the handshake's result
/// (`sendfiled_client::inline`), made on the first Send through it. Kept by
/// descriptor number, and checked against the socket's identity (`st_dev`,
/// `st_ino`) on every use: an application may close a descriptor and get
/// the same number back for another socket, which is then the daemon's
/// alone. A socket the library did not connect (one the application made
/// itself, a test's fake server) never sees a handshake.
type InlineEntry = (
    c_int,
    (libc::dev_t, libc::ino_t),
    Option<Option<Arc<Inline>>>,
);
/// Read on every Send by every thread, written once per connection: a
/// read lock, so that threads sending at once do not wait for each other.
static INLINE: RwLock<Vec<InlineEntry>> = RwLock::new(Vec::new());

/// The identity of the socket `fd`.
fn socket_id(fd: BorrowedFd<'_>) -> Option<(libc::dev_t, libc::ino_t)> {
    sys::fstat(fd).ok().map(|st| (st.st_dev, st.st_ino))
}

/// Remembers a socket [`sfd_connect`] made; its handshake comes later.
fn register_connection(fd: BorrowedFd<'_>) {
    let Some(id) = socket_id(fd) else { return };
    let raw = fd.as_raw_fd();
    let mut table = INLINE.write().unwrap_or_else(|e| e.into_inner());
    table.retain(|(n, _, _)| *n != raw);
    table.push((raw, id, None));
}

/// The handshake's result for `srv` if one was made already: a Send Open
/// or Cancel never starts one (the open file they name was made here only
/// if a handshake happened).
fn inline_for_known(srv: BorrowedFd<'_>) -> Option<Arc<Inline>> {
    let id = socket_id(srv)?;
    let raw = srv.as_raw_fd();
    let table = INLINE.read().unwrap_or_else(|e| e.into_inner());
    table
        .iter()
        .find(|(fd, i, _)| *fd == raw && *i == id)
        .and_then(|(_, _, known)| known.clone().flatten())
}

fn inline_for(srv: BorrowedFd<'_>) -> Option<Arc<Inline>> {
    if !inline::enabled_by_env() {
        return None;
    }
    let id = socket_id(srv)?;
    let raw = srv.as_raw_fd();
    {
        let table = INLINE.read().unwrap_or_else(|e| e.into_inner());
        let at = table.iter().position(|(fd, _, _)| *fd == raw)?;
        if table[at].1 == id {
            if let Some(known) = &table[at].2 {
                return known.clone();
            }
        }
    }
    {
        let mut table = INLINE.write().unwrap_or_else(|e| e.into_inner());
        let at = table.iter().position(|(fd, _, _)| *fd == raw)?;
        if table[at].1 != id {
            // The number was closed and reused for another socket.
            table.swap_remove(at);
            return None;
        }
        if let Some(known) = &table[at].2 {
            return known.clone();
        }
    }
    // Outside the lock: the handshake waits for the daemon.
    let made = Inline::handshake(srv).map(Arc::new);
    let mut table = INLINE.write().unwrap_or_else(|e| e.into_inner());
    if let Some(e) = table.iter_mut().find(|(fd, i, _)| *fd == raw && *i == id) {
        e.2 = Some(made.clone());
    }
    made
}

/// Open File: returns the status pipe (the file info with the transfer id
/// comes first), or -1 with `errno`.
///
/// # Safety
/// `path` is `NULL` or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn sfd_open(
    srv: c_int,
    path: *const c_char,
    offset: libc::off_t,
    len: usize,
    nonblock: bool,
) -> c_int {
    shell(-1, || {
        // SAFETY: per this function's contract.
        let path = unsafe { cstr(path)? }.to_owned();
        let srv = fd_arg(srv)?;
        let range = range_arg(offset, len)?;
        // The limit fails before anything is sent, the handshake included.
        if path.to_bytes().len() > SFD_MAX_PATH_LEN {
            return Err(libc::ENAMETOOLONG);
        }
        let inline = inline_for(srv);
        let begun = inline::begin_open(inline.as_deref(), &path, range).map_err(os)?;
        let (bytes, fds) = &begun.ask;
        let fds: Vec<BorrowedFd<'_>> = fds.iter().map(|f| f.as_fd()).collect();
        client::send_request_bytes(srv, bytes, &fds).map_err(os)?;
        if nonblock {
            sys::set_nonblocking(begun.status.as_fd(), true).map_err(os)?;
        }
        Ok(begun.status.into_raw_fd())
    })
}

/// Send Open File: starts sending the opened file `txnid` to `dest_fd`.
#[no_mangle]
pub extern "C" fn sfd_send_open(srv: c_int, txnid: usize, dest_fd: c_int) -> bool {
    // SAFETY: no header or trailer pointers.
    unsafe {
        sfd_send_open_hdtr(
            srv,
            txnid,
            dest_fd,
            std::ptr::null(),
            0,
            std::ptr::null(),
            0,
        )
    }
}

/// Send Open File with header and trailer bytes.
///
/// # Safety
/// `hdr`/`trl` are `NULL` or readable for `hdr_len`/`trl_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn sfd_send_open_hdtr(
    srv: c_int,
    txnid: usize,
    dest_fd: c_int,
    hdr: *const c_void,
    hdr_len: usize,
    trl: *const c_void,
    trl_len: usize,
) -> bool {
    shell(false, || {
        let srv = fd_arg(srv)?;
        let dest = fd_arg(dest_fd)?;
        // SAFETY: per this function's contract.
        let hdtr = unsafe { hdtr_arg(hdr, hdr_len, trl, trl_len)? };
        let inline = inline_for_known(srv);
        let begun =
            inline::begin_send_open(inline.as_deref(), txnid as u64, dest, &hdtr).map_err(os)?;
        client::send_request_bytes(srv, &begun.bytes, &[dest]).map_err(os)?;
        Ok(true)
    })
}

/// Cancel: ends the transfer `txnid`.
#[no_mangle]
pub extern "C" fn sfd_cancel(srv: c_int, txnid: usize) -> bool {
    shell(false, || {
        let srv = fd_arg(srv)?;
        inline::forget(inline_for_known(srv).as_deref(), txnid as u64);
        submit(
            srv,
            &Request::Cancel {
                txnid: txnid as u64,
            },
            &[],
        )?;
        Ok(true)
    })
}

// ---------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------

/// The message header at `buf`: `[cmd, stat]`.
///
/// # Safety
/// `buf` is `NULL` or readable for `SFD_HDR_SIZE` bytes.
unsafe fn header<'a>(buf: *const c_void) -> Res<&'a [u8]> {
    if buf.is_null() {
        return Err(libc::EINVAL);
    }
    // SAFETY: non-NULL and readable for the header by the contract.
    Ok(unsafe { std::slice::from_raw_parts(buf.cast::<u8>(), SFD_HDR_SIZE) })
}

/// The command id of the message at `buf`, or -1 (`EINVAL`) for `NULL`.
///
/// # Safety
/// `buf` is `NULL` or readable for `SFD_HDR_SIZE` bytes.
#[no_mangle]
pub unsafe extern "C" fn sfd_get_cmd(buf: *const c_void) -> c_int {
    // SAFETY: per this function's contract.
    shell(-1, || Ok(c_int::from(unsafe { header(buf)? }[0])))
}

/// The status byte of the message at `buf`, or -1 (`EINVAL`) for `NULL`.
///
/// # Safety
/// `buf` is `NULL` or readable for `SFD_HDR_SIZE` bytes.
#[no_mangle]
pub unsafe extern "C" fn sfd_get_stat(buf: *const c_void) -> c_int {
    // SAFETY: per this function's contract.
    shell(-1, || Ok(c_int::from(unsafe { header(buf)? }[1])))
}

/// Decodes a file info message into `*out`; false (and `*out` untouched)
/// for a wrong command id or a non-zero status.
///
/// # Safety
/// `out` is `NULL` or writable; `buf` is `NULL` or readable for
/// `SFD_HDR_SIZE` bytes, and for `sizeof(struct sfd_file_info)` bytes when
/// its header is `SFD_FILE_INFO`/`SFD_STAT_OK`.
#[no_mangle]
pub unsafe extern "C" fn sfd_unmarshal_file_info(out: *mut FileInfo, buf: *const c_void) -> bool {
    shell(false, || {
        if out.is_null() {
            return Err(libc::EINVAL);
        }
        // SAFETY: per this function's contract.
        let h = unsafe { header(buf)? };
        if h[0] != SFD_FILE_INFO || h[1] != SFD_STAT_OK {
            return Ok(false);
        }
        // SAFETY: an OK file info header promises the whole struct.
        let all = unsafe { std::slice::from_raw_parts(buf.cast::<u8>(), proto::FILE_INFO_LEN) };
        let fi = FileInfo::decode(all).ok_or(libc::EINVAL)?;
        // SAFETY: out is non-NULL and writable by the contract; unaligned
        // writes keep this sound whatever the caller's buffer.
        unsafe { out.write_unaligned(fi) };
        Ok(true)
    })
}

/// Decodes a transfer status message into `*out`; false (and `*out`
/// untouched) for a wrong command id or a non-zero status.
///
/// # Safety
/// As [`sfd_unmarshal_file_info`], with `struct sfd_xfer_stat`.
#[no_mangle]
pub unsafe extern "C" fn sfd_unmarshal_xfer_stat(out: *mut XferStat, buf: *const c_void) -> bool {
    shell(false, || {
        if out.is_null() {
            return Err(libc::EINVAL);
        }
        // SAFETY: per this function's contract.
        let h = unsafe { header(buf)? };
        if h[0] != SFD_XFER_STAT || h[1] != SFD_STAT_OK {
            return Ok(false);
        }
        // SAFETY: an OK transfer status header promises the whole struct.
        let all = unsafe { std::slice::from_raw_parts(buf.cast::<u8>(), proto::XFER_STAT_LEN) };
        let x = XferStat::decode(all).ok_or(libc::EINVAL)?;
        // SAFETY: as in sfd_unmarshal_file_info.
        unsafe { out.write_unaligned(x) };
        Ok(true)
    })
}

/// Whether `*stat` marks the completion of a transfer.
///
/// # Safety
/// `stat` is `NULL` or points to a readable `struct sfd_xfer_stat`.
#[no_mangle]
pub unsafe extern "C" fn sfd_xfer_complete(stat: *const XferStat) -> bool {
    shell(false, || {
        if stat.is_null() {
            return Err(libc::EINVAL);
        }
        // SAFETY: non-NULL and readable by the contract.
        Ok(unsafe { stat.read_unaligned() }.is_complete())
    })
}

#[cfg(test)]
mod tests;
