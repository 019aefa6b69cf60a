//! Opening a regular file confined beneath a root directory, portably:
//! [`open_beneath`] takes the system's own confined lookup where it has one
//! (`os/`) and the checked walk of [`open_beneath_by_walk`] elsewhere.
//!
//! Linux has `openat2(RESOLVE_BENEATH)` and FreeBSD `O_RESOLVE_BENEATH`; where
//! neither exists (macOS, Linux before 5.6) [`open_beneath_by_walk`] resolves
//! the path one component at a time, never letting the kernel follow a
//! symbolic link or `..` on its own.
//!
//! Semantics shared by every backend, so that the server sees the same errors
//! everywhere:
//!
//! - Paths in requests are relative to the root: leading `/` are ignored, so
//!   `/a/b` means `ROOT/a/b`. An empty path (or only slashes) is `ENOENT`.
//! - `..` may be used as long as it stays beneath the root; climbing above the
//!   root is `EXDEV` (what `openat2(RESOLVE_BENEATH)` reports).
//! - Relative symbolic links are followed while they stay beneath the root;
//!   an absolute symbolic link is `EXDEV` even if it names a place inside the
//!   root (again as `RESOLVE_BENEATH` does: the link's meaning would depend on
//!   where the root is mounted, including a `chroot`). More than
//!   [`MAX_SYMLINKS`] links is `ELOOP`.
//! - Only a regular file is opened, `O_RDONLY | O_CLOEXEC | O_NOCTTY`. Any
//!   other type (directory, FIFO, socket, device) is `EINVAL`, and its type is
//!   known before anything opens it: a FIFO is never opened, so a writer
//!   blocked in `open` on it stays blocked and a reader count is never
//!   touched. The type comes from `fstatat(AT_SYMLINK_NOFOLLOW)` on the last
//!   component (the walk), an `O_PATH` descriptor (Linux) or
//!   `fstatat(AT_RESOLVE_BENEATH)` (FreeBSD); the open that follows uses
//!   `O_NONBLOCK`, so that something swapped in between cannot block it, and
//!   its `st_dev`/`st_ino` must be those just seen, or it is closed and the
//!   lookup starts again ([`same_file`]). `O_NONBLOCK` is cleared before the
//!   descriptor is returned.
//! - A request path more than [`MAX_DEPTH`] directories deep, counted on the
//!   path as written ([`check_request`]), or of `PATH_MAX` bytes or more is
//!   `ENAMETOOLONG`, whichever implementation resolves it. (The walk also
//!   stops at [`MAX_DEPTH`] levels reached through symbolic links; the kernel
//!   has no such limit, so only there can the two differ.)
//!
//! | request path (ROOT-relative) | errno from every implementation |
//! |---|---|
//! | missing file, dangling link | `ENOENT` |
//! | `""`, `/`, `//` (nothing after the slashes) | `ENOENT` (the server answers `EINVAL` before asking) |
//! | `.`, `dir`, `dir/`, a FIFO, a socket, a device | `EINVAL` |
//! | `file/`, `file/x`, `file/..` | `ENOTDIR` |
//! | `..`, `../x`, `dir/../..`, relative link out, any absolute link (also `proc/self/root` under ROOT=/) | `EXDEV` (the server answers `EACCES`) |
//! | more than [`MAX_SYMLINKS`] links, a loop | `ELOOP` |
//! | more than [`MAX_DEPTH`] levels (`a/` 141 times), a component over `NAME_MAX` | `ENAMETOOLONG` |

use std::collections::VecDeque;
use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use crate::fsfacts::FsFacts;

/// Most symbolic links followed while resolving one path (Linux's limit).
pub const MAX_SYMLINKS: usize = 40;

/// Most directories deep a walk may go below the root. The walk holds a
/// descriptor for every level (that is what makes `..` safe), so a request
/// path of thousands of `a/` must not cost thousands of descriptors. Deeper
/// is `ENAMETOOLONG`.
pub const MAX_DEPTH: usize = 128;

/// The flags of the final open, before [`finish_open`] clears `O_NONBLOCK`.
pub const OPEN_FLAGS: libc::c_int =
    libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOCTTY | libc::O_NONBLOCK;

/// How many times a lookup starts again when the file found differs from
/// the file opened (a rename raced with it) before giving up with `EAGAIN`.
pub const SWAP_RETRIES: usize = 8;

/// Longest request path, in bytes without the NUL (Linux's `PATH_MAX` less
/// one, which the protocol also allows at most).
pub const MAX_PATH_BYTES: usize = 4095;

/// How [`open_beneath`] may resolve a path.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resolve {
    /// Only from the kernel's caches (Linux `RESOLVE_CACHED`), and only on
    /// a filesystem known to answer opens locally ([`FsFacts`]): anything
    /// else is [`OpenAttempt::WouldBlock`].
    pub cached_only: bool,
    /// Without crossing a mount point (Linux `RESOLVE_NO_XDEV`): a path
    /// that does, and any `EXDEV`, is [`OpenAttempt::WouldBlock`].
    pub same_mount: bool,
    /// With `cached_only`, where the system has no cache-only lookup, make
    /// the whole open anyway (the daemon's loop does, on systems without
    /// one) rather than answer `WouldBlock` (a client's attempt).
    pub else_open: bool,
    /// Use the checked walk even where the system has its own lookup (the
    /// daemon's forced fallback, tests).
    pub force_walk: bool,
}

/// What [`open_beneath`] did.
// Returned by value once per request and never stored: a `libc::stat` on
// the stack is cheaper than a box per open.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum OpenAttempt {
    /// The open was made (or refused): the file with the `fstat` its type
    /// and identity checks made, or the errno.
    Done(io::Result<(OwnedFd, libc::stat)>),
    /// Answering would have waited (a disk read, a server, another mount):
    /// nothing was opened.
    WouldBlock,
}

/// Opens the regular file `path` names beneath `root`, by the rules at the
/// top of this file, as `how` allows: the system's confined lookup
/// (`openat2(2)` on Linux 5.6+, `O_RESOLVE_BENEATH` on FreeBSD 13+), else the
/// checked walk (which has no cache-only form: with `how.cached_only` it is
/// made only if `how.else_open`).
pub fn open_beneath(
    root: BorrowedFd<'_>,
    path: &CStr,
    how: Resolve,
    facts: &FsFacts,
) -> OpenAttempt {
    if !how.force_walk {
        if let Some(attempt) = crate::os::open_beneath(root, path, how, facts) {
            return attempt;
        }
    }
    if how.cached_only && !how.else_open {
        return OpenAttempt::WouldBlock;
    }
    OpenAttempt::Done(open_beneath_by_walk(root, path))
}

fn err(code: libc::c_int) -> io::Error {
    io::Error::from_raw_os_error(code)
}

/// The checks every implementation makes on a request path before resolving
/// it, so that the limits answer alike whoever resolves: leading `/` dropped
/// ([`strip_leading_slashes`]); more than [`MAX_PATH_BYTES`] bytes, or more
/// than [`MAX_DEPTH`] directories deep counted on the path as written (`..`
/// climbs one, `.` and empty components count nothing, the last component
/// is not a directory level unless a `/` follows it), is `ENAMETOOLONG`.
pub fn check_request(path: &CStr) -> io::Result<&CStr> {
    let path = strip_leading_slashes(path);
    let bytes = path.to_bytes();
    if bytes.len() > MAX_PATH_BYTES {
        return Err(err(libc::ENAMETOOLONG));
    }
    let mut depth = 0usize;
    let mut parts = components(bytes).peekable();
    while let Some(c) = parts.next() {
        match c {
            b"" | b"." => {}
            // Above the root is the resolver's EXDEV, not a depth.
            b".." => depth = depth.saturating_sub(1),
            _ if parts.peek().is_some() => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(err(libc::ENAMETOOLONG));
                }
            }
            _ => {}
        }
    }
    Ok(path)
}

/// Whether two `stat` results are of the same file (device and inode).
pub fn same_file(a: &libc::stat, b: &libc::stat) -> bool {
    a.st_dev == b.st_dev && a.st_ino == b.st_ino
}

/// `fstatat(2)`.
fn fstatat(dir: BorrowedFd<'_>, name: &CStr, flags: libc::c_int) -> io::Result<libc::stat> {
    loop {
        let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
        // SAFETY: name is NUL-terminated; st is written by a successful call.
        let r = unsafe { libc::fstatat(dir.as_raw_fd(), name.as_ptr(), st.as_mut_ptr(), flags) };
        if r == 0 {
            // SAFETY: fstatat succeeded, so st is initialised.
            return Ok(unsafe { st.assume_init() });
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// What the last component of a walk turned out to be.
// One value, returned once per open: boxing the stat (large on FreeBSD)
// would cost an allocation per request for nothing.
#[allow(clippy::large_enum_variant)]
enum Last {
    /// A regular file, opened, and its `fstat`.
    File(OwnedFd, libc::stat),
    /// A symbolic link, to be resolved.
    Link,
}

/// Opens the last component `name` in `dir` if it is a regular file: its
/// type comes from `fstatat(AT_SYMLINK_NOFOLLOW)` first, so nothing else is
/// ever opened (`EINVAL`); the open (`O_NOFOLLOW | O_NONBLOCK`) must then
/// give the file just seen, or the look starts again.
fn open_last(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<Last> {
    for _ in 0..SWAP_RETRIES {
        let seen = fstatat(dir, name, libc::AT_SYMLINK_NOFOLLOW)?;
        match seen.st_mode & libc::S_IFMT {
            libc::S_IFLNK => return Ok(Last::Link),
            libc::S_IFREG => {}
            _ => return Err(err(libc::EINVAL)),
        }
        let fd = match openat(dir, name, OPEN_FLAGS | libc::O_NOFOLLOW) {
            Ok(fd) => fd,
            // Swapped for a link (or, on Linux, ENXIO for a socket) since the
            // look: look again.
            Err(e) if may_be_symlink(&e) || e.raw_os_error() == Some(libc::ENXIO) => continue,
            Err(e) => return Err(e),
        };
        let got = crate::fd::fstat(fd.as_fd())?;
        if same_file(&seen, &got) && crate::fd::is_regular(&got) {
            return finish_open(fd).map(|fd| Last::File(fd, got));
        }
    }
    Err(err(libc::EAGAIN))
}

/// Drops leading `/` from a request path: paths are relative to the root.
pub fn strip_leading_slashes(path: &CStr) -> &CStr {
    let bytes = path.to_bytes_with_nul();
    let skip = bytes.iter().take_while(|&&b| b == b'/').count();
    // The NUL is never a '/', so at least the terminator remains and there
    // is no interior NUL: the conversion cannot fail.
    CStr::from_bytes_with_nul(&bytes[skip..]).unwrap_or(c"")
}

/// Clears the `O_NONBLOCK` that [`OPEN_FLAGS`] used for the open itself: the
/// server's reads from the file (`sendfile`, `splice`, `pread`) must not see
/// it.
pub fn finish_open(fd: OwnedFd) -> io::Result<OwnedFd> {
    crate::fd::set_nonblocking(fd.as_fd(), false)?;
    Ok(fd)
}

/// `openat(2)`.
fn openat(dir: BorrowedFd<'_>, name: &CStr, flags: libc::c_int) -> io::Result<OwnedFd> {
    loop {
        // SAFETY: name is NUL-terminated; no mode is needed without O_CREAT.
        let fd = unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), flags) };
        if fd >= 0 {
            // SAFETY: openat returned a new descriptor we now own.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// `readlinkat(2)`: the target of the symbolic link `name` in `dir`, or
/// `EINVAL` if it is not a symbolic link.
fn readlinkat(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; 256];
    loop {
        // SAFETY: buf is writable for its length; name is NUL-terminated.
        let n = unsafe {
            libc::readlinkat(
                dir.as_raw_fd(),
                name.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        if n < buf.len() {
            buf.truncate(n);
            return Ok(buf);
        }
        // Possibly truncated: grow, within reason (PATH_MAX is 1024 on macOS,
        // 4096 on Linux).
        if buf.len() >= 64 * 1024 {
            return Err(err(libc::ENAMETOOLONG));
        }
        buf.resize(buf.len() * 2, 0);
    }
}

/// Errors with which `open(O_NOFOLLOW)` reports that the name is a symbolic
/// link: `ELOOP` (Linux, macOS, POSIX), `EMLINK` (FreeBSD), and `ENOTDIR` when
/// `O_DIRECTORY` was also given (Linux checks that first).
fn may_be_symlink(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ELOOP) | Some(libc::EMLINK) | Some(libc::ENOTDIR)
    )
}

fn components(bytes: &[u8]) -> impl DoubleEndedIterator<Item = &[u8]> {
    bytes.split(|&b| b == b'/')
}

/// Opens `path` beneath `root` by walking it component by component, with the
/// semantics in the [module documentation](self).
///
/// Every component is opened with `O_NOFOLLOW` relative to the directory
/// descriptor of the one before, and symbolic links are read and resolved
/// here, so the kernel never resolves a link or `..` for us. `..` pops back to
/// the directory descriptor we came through, which is why a directory renamed
/// away under our feet cannot lead us above the root by `..`.
///
/// Escapes return `EXDEV`; a missing component `ENOENT`; a non-directory used
/// as a directory `ENOTDIR`; more than [`MAX_DEPTH`] levels `ENAMETOOLONG`.
/// The file comes back with the `fstat` of the open descriptor (the one its
/// identity was checked with).
pub fn open_beneath_by_walk(
    root: BorrowedFd<'_>,
    path: &CStr,
) -> io::Result<(OwnedFd, libc::stat)> {
    let path = check_request(path)?.to_bytes();
    if path.is_empty() {
        return Err(err(libc::ENOENT));
    }
    let mut pending: VecDeque<Vec<u8>> = components(path).map(<[u8]>::to_vec).collect();
    if path.ends_with(b"/") {
        // "file/" must be a directory, as the kernel says: keep the last real
        // component from being treated as the final one.
        pending.push_back(b".".to_vec());
    }
    // Directories opened so far below the root; the last is the current one.
    let mut dirs: Vec<OwnedFd> = Vec::new();
    let mut links = 0usize;

    while let Some(name) = pending.pop_front() {
        match name.as_slice() {
            b"" | b"." => continue,
            b".." => {
                if dirs.pop().is_none() {
                    return Err(err(libc::EXDEV));
                }
                continue;
            }
            _ => {}
        }
        let cur = dirs.last().map_or(root, |d| d.as_fd());
        let last = pending.iter().all(|c| c.is_empty());
        let cname = CString::new(name).map_err(|_| err(libc::EINVAL))?;
        let link_error = if last {
            match open_last(cur, &cname)? {
                Last::File(fd, st) => return Ok((fd, st)),
                // Gone or replaced before it could be read: as if it had
                // been moved while we looked.
                Last::Link => err(libc::EAGAIN),
            }
        } else {
            let flags = libc::O_RDONLY | libc::O_CLOEXEC | libc::O_DIRECTORY | libc::O_NOFOLLOW;
            match openat(cur, &cname, flags) {
                Ok(_) if dirs.len() >= MAX_DEPTH => return Err(err(libc::ENAMETOOLONG)),
                Ok(fd) => {
                    dirs.push(fd);
                    continue;
                }
                Err(e) if may_be_symlink(&e) => e,
                Err(e) => return Err(e),
            }
        };
        let target = match readlinkat(cur, &cname) {
            Ok(t) => t,
            // Not a link after all: the open's error stands.
            Err(_) => return Err(link_error),
        };
        links += 1;
        if links > MAX_SYMLINKS {
            return Err(err(libc::ELOOP));
        }
        if target.first() == Some(&b'/') {
            return Err(err(libc::EXDEV));
        }
        if target.is_empty() {
            return Err(err(libc::ENOENT));
        }
        // The link's components replace its name, resolved from the
        // directory that holds it; a trailing '/' demands a directory.
        if target.ends_with(b"/") {
            pending.push_front(b".".to_vec());
        }
        for c in components(&target).rev() {
            pending.push_front(c.to_vec());
        }
    }
    // The path ended in a directory ("a/..", ".", "a/"): not a regular file,
    // and never opened for reading.
    Err(err(libc::EINVAL))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    struct Tree {
        // Keeps the directory alive for the test.
        _tmp: tempfile::TempDir,
        outside: std::path::PathBuf,
        root: OwnedFd,
    }

    /// tmp/outside/secret, tmp/root/{file, dir/inner, links...}
    fn tree() -> Tree {
        let tmp = tempfile::tempdir().expect("tempdir");
        let outside = tmp.path().join("outside");
        let root = tmp.path().join("root");
        std::fs::create_dir_all(&outside).expect("mkdir");
        std::fs::create_dir_all(root.join("dir/sub")).expect("mkdir");
        std::fs::write(outside.join("secret"), b"secret").expect("write");
        std::fs::write(root.join("file"), b"top").expect("write");
        std::fs::write(root.join("dir/inner"), b"inner").expect("write");
        symlink(outside.join("secret"), root.join("abs_out")).expect("symlink");
        symlink("../outside/secret", root.join("rel_out")).expect("symlink");
        symlink("dir/inner", root.join("rel_in")).expect("symlink");
        symlink("../inner", root.join("dir/sub/up_in")).expect("symlink");
        symlink("../../file", root.join("dir/sub/up_up_in")).expect("symlink");
        symlink("../../../outside/secret", root.join("dir/sub/up_out")).expect("symlink");
        symlink("dir", root.join("dirlink")).expect("symlink");
        symlink(root.join("file"), root.join("abs_in")).expect("symlink");
        symlink("loop_b", root.join("loop_a")).expect("symlink");
        symlink("loop_a", root.join("loop_b")).expect("symlink");
        symlink("nowhere", root.join("dangling")).expect("symlink");
        let c = CString::new(root.as_os_str().as_encoded_bytes()).expect("cstring");
        let root = crate::fd::open_dir(&c).expect("open root");
        Tree {
            _tmp: tmp,
            outside,
            root,
        }
    }

    fn open(t: &Tree, p: &str) -> io::Result<OwnedFd> {
        let c = CString::new(p).expect("cstring");
        open_beneath_by_walk(t.root.as_fd(), &c).map(|(fd, _)| fd)
    }

    fn contents(fd: OwnedFd) -> Vec<u8> {
        let mut buf = vec![0u8; 64];
        let n = crate::fd::pread(fd.as_fd(), &mut buf, 0).expect("pread");
        buf.truncate(n);
        buf
    }

    fn errno(r: io::Result<OwnedFd>) -> i32 {
        r.err().and_then(|e| e.raw_os_error()).unwrap_or(0)
    }

    #[test]
    fn opens_plain_and_nested_files() {
        let t = tree();
        assert_eq!(contents(open(&t, "file").expect("file")), b"top");
        assert_eq!(contents(open(&t, "dir/inner").expect("inner")), b"inner");
        assert_eq!(contents(open(&t, "./dir//inner").expect("inner")), b"inner");
    }

    #[test]
    fn leading_slash_means_the_root() {
        let t = tree();
        assert_eq!(contents(open(&t, "/file").expect("file")), b"top");
        assert_eq!(contents(open(&t, "///dir/inner").expect("inner")), b"inner");
        assert_eq!(errno(open(&t, "/")), libc::ENOENT);
        assert_eq!(errno(open(&t, "")), libc::ENOENT);
    }

    #[test]
    fn dotdot_above_root_is_exdev() {
        let t = tree();
        assert_eq!(errno(open(&t, "..")), libc::EXDEV);
        assert_eq!(errno(open(&t, "../outside/secret")), libc::EXDEV);
        assert_eq!(errno(open(&t, "dir/../../outside/secret")), libc::EXDEV);
        assert_eq!(errno(open(&t, "/../root/file")), libc::EXDEV);
    }

    #[test]
    fn dotdot_within_root_is_allowed() {
        let t = tree();
        assert_eq!(contents(open(&t, "dir/../file").expect("file")), b"top");
        assert_eq!(
            contents(open(&t, "dir/sub/../inner").expect("inner")),
            b"inner"
        );
    }

    #[test]
    fn symlinks_out_are_exdev() {
        let t = tree();
        assert!(t.outside.join("secret").exists());
        assert_eq!(errno(open(&t, "abs_out")), libc::EXDEV);
        assert_eq!(errno(open(&t, "rel_out")), libc::EXDEV);
        assert_eq!(errno(open(&t, "dir/sub/up_out")), libc::EXDEV);
        // Absolute links are refused even when they point inside.
        assert_eq!(errno(open(&t, "abs_in")), libc::EXDEV);
    }

    #[test]
    fn relative_symlinks_inside_are_followed() {
        let t = tree();
        assert_eq!(contents(open(&t, "rel_in").expect("rel_in")), b"inner");
        assert_eq!(
            contents(open(&t, "dir/sub/up_in").expect("up_in")),
            b"inner"
        );
        assert_eq!(
            contents(open(&t, "dir/sub/up_up_in").expect("up_up")),
            b"top"
        );
        assert_eq!(
            contents(open(&t, "dirlink/inner").expect("dirlink")),
            b"inner"
        );
    }

    #[test]
    fn loops_and_dangling_links() {
        let t = tree();
        assert_eq!(errno(open(&t, "loop_a")), libc::ELOOP);
        assert_eq!(errno(open(&t, "dangling")), libc::ENOENT);
    }

    #[test]
    fn missing_and_not_a_directory() {
        let t = tree();
        assert_eq!(errno(open(&t, "nope")), libc::ENOENT);
        assert_eq!(errno(open(&t, "dir/nope")), libc::ENOENT);
        assert_eq!(errno(open(&t, "file/x")), libc::ENOTDIR);
        assert_eq!(errno(open(&t, "file/")), libc::ENOTDIR);
    }

    #[test]
    fn depth_is_bounded() {
        let t = tree();
        // Going down and back up any number of times stays shallow.
        let shallow = "dir/sub/../../".repeat(250) + "dir/inner";
        assert_eq!(contents(open(&t, &shallow).expect("shallow")), b"inner");
        let deep = "dir/".to_string() + &"sub/".repeat(MAX_DEPTH + 1);
        std::fs::create_dir_all(t._tmp.path().join("root").join(&deep)).expect("mkdir");
        assert_eq!(errno(open(&t, &(deep.clone() + "x"))), libc::ENAMETOOLONG);
        // Counted on the path before the walk: missing levels too.
        assert_eq!(errno(open(&t, &"a/".repeat(141))), libc::ENAMETOOLONG);
        // Through a link, the walk's own count stops it.
        let half = "sub/".repeat(MAX_DEPTH / 2 + 1);
        symlink(format!("dir/{half}"), t._tmp.path().join("root/deeplink")).expect("symlink");
        assert_eq!(
            errno(open(&t, &format!("deeplink/{half}x"))),
            libc::ENAMETOOLONG
        );
        // Too long in bytes.
        assert_eq!(
            errno(open(&t, &"./".repeat(MAX_PATH_BYTES / 2 + 1))),
            libc::ENAMETOOLONG
        );
    }

    #[test]
    fn check_request_counts_directory_levels_as_written() {
        let ok = |p: &str| check_request(&CString::new(p).expect("c")).is_ok();
        let at = "a/".repeat(MAX_DEPTH);
        assert!(ok(&(at.clone() + "f")), "MAX_DEPTH levels and a file");
        assert!(!ok(&(at.clone() + "a/f")), "one level more");
        assert!(!ok(&(at.clone() + "a/")), "a trailing / makes a level");
        assert!(ok(&(at.clone() + "..")), ".. climbs");
        assert!(ok(&(at.clone() + "../f")));
        assert!(ok(&(at.clone() + "./f")), ". counts nothing");
        assert!(
            ok(&("../".repeat(10) + &at + "f")),
            "above the root is not depth"
        );
        assert!(ok(&"a/../".repeat(800)));
        assert_eq!(
            check_request(c"///x").expect("ok").to_bytes(),
            b"x",
            "leading slashes dropped"
        );
    }

    #[test]
    fn only_regular_files_open_and_others_are_einval() {
        let t = tree();
        for p in ["dir", "dir/", ".", "./", "dir/..", "dirlink", "dirlink/"] {
            assert_eq!(errno(open(&t, p)), libc::EINVAL, "{p}");
        }
        let fd = open(&t, "file").expect("file");
        // SAFETY: plain fcntl on our descriptor.
        let fl = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
        assert_eq!(fl & libc::O_NONBLOCK, 0, "returned blocking");
    }

    /// A FIFO is never opened: a non-blocking writer still finds no reader
    /// after the walk refused it.
    #[test]
    fn a_fifo_is_refused_without_being_opened() {
        let t = tree();
        let name = c"fifo";
        // SAFETY: name is NUL-terminated.
        let r = unsafe { libc::mkfifoat(t.root.as_raw_fd(), name.as_ptr(), 0o600) };
        assert_eq!(r, 0, "mkfifoat: {}", io::Error::last_os_error());
        symlink("fifo", t._tmp.path().join("root/fifolink")).expect("symlink");
        for p in ["fifo", "fifolink"] {
            assert_eq!(errno(open(&t, p)), libc::EINVAL, "{p}");
        }
        // SAFETY: as above; O_NONBLOCK write-only open of a FIFO fails with
        // ENXIO while nobody has it open for reading.
        let w = unsafe {
            libc::openat(
                t.root.as_raw_fd(),
                name.as_ptr(),
                libc::O_WRONLY | libc::O_NONBLOCK | libc::O_CLOEXEC,
            )
        };
        let e = io::Error::last_os_error();
        assert!(w < 0, "a reader is holding the FIFO open");
        assert_eq!(e.raw_os_error(), Some(libc::ENXIO));
    }
}
