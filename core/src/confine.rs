//! Opening a path confined beneath a root directory, portably.
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
//! - The result is opened `O_RDONLY | O_CLOEXEC | O_NOCTTY`. Any file type
//!   opens, directories included; the caller checks with `fstat` that it got a
//!   regular file. The open itself uses `O_NONBLOCK` so that a FIFO placed
//!   under the root cannot block the opener waiting for a writer; the flag is
//!   cleared again before the descriptor is returned.

use std::collections::VecDeque;
use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

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

fn err(code: libc::c_int) -> io::Error {
    io::Error::from_raw_os_error(code)
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
    crate::sys::set_nonblocking(fd.as_fd(), false)?;
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
pub fn open_beneath_by_walk(root: BorrowedFd<'_>, path: &CStr) -> io::Result<OwnedFd> {
    let path = strip_leading_slashes(path).to_bytes();
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
        let flags = if last {
            OPEN_FLAGS | libc::O_NOFOLLOW
        } else {
            libc::O_RDONLY | libc::O_CLOEXEC | libc::O_DIRECTORY | libc::O_NOFOLLOW
        };
        match openat(cur, &cname, flags) {
            Ok(fd) if last => return finish_open(fd),
            Ok(_) if dirs.len() >= MAX_DEPTH => return Err(err(libc::ENAMETOOLONG)),
            Ok(fd) => dirs.push(fd),
            Err(e) if may_be_symlink(&e) => {
                let target = match readlinkat(cur, &cname) {
                    Ok(t) => t,
                    // Not a link after all: the open's error stands.
                    Err(_) => return Err(e),
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
            Err(e) => return Err(e),
        }
    }
    // The path ended in a directory ("a/..", ".", "a/"): open it.
    let cur = dirs.last().map_or(root, |d| d.as_fd());
    finish_open(openat(cur, c".", OPEN_FLAGS)?)
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
        let root = crate::sys::open_dir(&c).expect("open root");
        Tree {
            _tmp: tmp,
            outside,
            root,
        }
    }

    fn open(t: &Tree, p: &str) -> io::Result<OwnedFd> {
        let c = CString::new(p).expect("cstring");
        open_beneath_by_walk(t.root.as_fd(), &c)
    }

    fn contents(fd: OwnedFd) -> Vec<u8> {
        let mut buf = vec![0u8; 64];
        let n = crate::sys::pread(fd.as_fd(), &mut buf, 0).expect("pread");
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
        let shallow = "dir/sub/../../".repeat(300) + "dir/inner";
        assert_eq!(contents(open(&t, &shallow).expect("shallow")), b"inner");
        let deep = "dir/".to_string() + &"sub/".repeat(MAX_DEPTH + 1);
        std::fs::create_dir_all(t._tmp.path().join("root").join(&deep)).expect("mkdir");
        assert_eq!(errno(open(&t, &(deep + "x"))), libc::ENAMETOOLONG);
    }

    #[test]
    fn directories_open_and_are_left_to_the_caller() {
        let t = tree();
        for p in ["dir", "dir/", ".", "dir/..", "dirlink"] {
            let fd = open(&t, p).unwrap_or_else(|e| panic!("{p}: {e}"));
            let st = crate::sys::fstat(fd.as_fd()).expect("fstat");
            assert_eq!(st.st_mode & libc::S_IFMT, libc::S_IFDIR, "{p}");
        }
    }

    #[test]
    fn fifo_does_not_block_and_result_is_blocking() {
        let t = tree();
        let name = c"fifo";
        // SAFETY: name is NUL-terminated.
        let r = unsafe { libc::mkfifoat(t.root.as_raw_fd(), name.as_ptr(), 0o600) };
        assert_eq!(r, 0, "mkfifoat: {}", io::Error::last_os_error());
        let fd = open(&t, "fifo").expect("fifo opens without a writer");
        // SAFETY: plain fcntl on our descriptor.
        let fl = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
        assert_eq!(fl & libc::O_NONBLOCK, 0);
        let fd = open(&t, "file").expect("file");
        // SAFETY: as above.
        let fl = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
        assert_eq!(fl & libc::O_NONBLOCK, 0);
    }
}
