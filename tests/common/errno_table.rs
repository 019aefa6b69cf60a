//! One table of request paths and what every way of opening beneath a root
//! answers for them: `openat2` and the checked walk in-process
//! (backend-linux's tests include this file), and the daemon in both passes
//! (tests/hostile.rs). The errnos are the backends'; the daemon answers
//! `EACCES` where they say `EXDEV`.
//!
//! Included with `#[path]`/`include!`, so it uses nothing but std and libc.
#![allow(dead_code)]

use std::os::unix::fs::symlink;
use std::path::Path;

/// What opening a path must give.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// The file opens and holds these bytes.
    Data(&'static [u8]),
    /// The open fails with this errno.
    Errno(i32),
}

/// `MAX_DEPTH` of `sendfiled_core::sys::beneath`, repeated here so that the
/// table stays std-only.
pub const DEPTH: usize = 128;

pub const TOP: &[u8] = b"top";
pub const INNER: &[u8] = b"inner";
pub const DEEP: &[u8] = b"deep";

/// Builds the tree under `root` (which must exist), with `outside` a
/// sibling directory holding a secret.
pub fn build(root: &Path, outside: &Path) {
    let w = |p: &str, d: &[u8]| std::fs::write(root.join(p), d).expect("write");
    let l = |target: &str, p: &str| symlink(target, root.join(p)).expect("symlink");
    std::fs::create_dir_all(outside).expect("mkdir");
    std::fs::write(outside.join("secret"), b"SECRET").expect("write");
    std::fs::create_dir_all(root.join("dir/sub")).expect("mkdir");
    w("file", TOP);
    w("dir/inner", INNER);
    l(&outside.join("secret").display().to_string(), "abs_out");
    l(&root.join("file").display().to_string(), "abs_in");
    l("/", "abs_root");
    l("../outside/secret", "rel_out");
    l("..", "uplink");
    l("dir/inner", "rel_in");
    l("../../file", "dir/sub/up_up_in");
    l("dir", "dirlink");
    l("file/", "slashlink");
    l("loop_b", "loop_a");
    l("loop_a", "loop_b");
    l("self", "self");
    l("nowhere", "dangling");
    l("fifo", "fifolink");
    // A chain of exactly 40 links (the most any resolver follows) and one
    // of 41.
    // chain0 -> chain1 -> ... -> chain40 -> file: 41 links from chain0, 40
    // from chain1.
    for i in 0..40 {
        l(&format!("chain{}", i + 1), &format!("chain{i}"));
    }
    l("file", "chain40");
    std::fs::create_dir_all(root.join("a/".repeat(DEPTH + 13))).expect("deep mkdir");
    w(&("a/".repeat(DEPTH) + "f"), DEEP);
    let fifo =
        std::ffi::CString::new(root.join("fifo").as_os_str().as_encoded_bytes()).expect("path");
    // SAFETY: NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0, "mkfifo");
    // The listener's socket file stays after it is dropped.
    drop(std::os::unix::net::UnixListener::bind(root.join("sock")).expect("bind"));
}

/// The table for a root built by [`build`].
pub fn cases() -> Vec<(String, Expect)> {
    use Expect::*;
    let mut v: Vec<(String, Expect)> = [
        // Files, and the ways of naming them.
        ("file", Data(TOP)),
        ("/file", Data(TOP)),
        ("//file", Data(TOP)),
        ("./file", Data(TOP)),
        ("dir/../file", Data(TOP)),
        ("dir/./inner", Data(INNER)),
        ("rel_in", Data(INNER)),
        ("dirlink/inner", Data(INNER)),
        ("dir/sub/up_up_in", Data(TOP)),
        ("chain1", Data(TOP)),
        // Nothing after the slashes (the server answers EINVAL first).
        ("", Errno(libc::ENOENT)),
        ("/", Errno(libc::ENOENT)),
        ("//", Errno(libc::ENOENT)),
        // Not regular files.
        (".", Errno(libc::EINVAL)),
        ("./", Errno(libc::EINVAL)),
        ("dir", Errno(libc::EINVAL)),
        ("dir/", Errno(libc::EINVAL)),
        ("dir/sub/..", Errno(libc::EINVAL)),
        ("dirlink", Errno(libc::EINVAL)),
        ("dirlink/", Errno(libc::EINVAL)),
        ("fifo", Errno(libc::EINVAL)),
        ("fifolink", Errno(libc::EINVAL)),
        ("sock", Errno(libc::EINVAL)),
        // A file used as a directory.
        ("file/", Errno(libc::ENOTDIR)),
        ("file/.", Errno(libc::ENOTDIR)),
        ("file/..", Errno(libc::ENOTDIR)),
        ("file/x", Errno(libc::ENOTDIR)),
        ("rel_in/", Errno(libc::ENOTDIR)),
        ("slashlink", Errno(libc::ENOTDIR)),
        // Missing.
        ("missing", Errno(libc::ENOENT)),
        ("dir/missing", Errno(libc::ENOENT)),
        ("missing/..", Errno(libc::ENOENT)),
        ("dangling", Errno(libc::ENOENT)),
        // Escapes.
        ("..", Errno(libc::EXDEV)),
        ("../outside/secret", Errno(libc::EXDEV)),
        ("/../outside/secret", Errno(libc::EXDEV)),
        ("dir/../..", Errno(libc::EXDEV)),
        ("abs_out", Errno(libc::EXDEV)),
        ("abs_in", Errno(libc::EXDEV)),
        ("abs_root", Errno(libc::EXDEV)),
        ("abs_root/etc/passwd", Errno(libc::EXDEV)),
        ("rel_out", Errno(libc::EXDEV)),
        ("uplink", Errno(libc::EXDEV)),
        ("uplink/x", Errno(libc::EXDEV)),
        // Loops.
        ("loop_a", Errno(libc::ELOOP)),
        ("self", Errno(libc::ELOOP)),
        ("self/x", Errno(libc::ELOOP)),
        ("chain0", Errno(libc::ELOOP)),
    ]
    .into_iter()
    .map(|(p, e)| (p.to_string(), e))
    .collect();
    // Depth: DEPTH levels and a file open; more levels (141 `a/`, existing
    // or not) are too deep for everyone.
    v.push(("a/".repeat(DEPTH) + "f", Expect::Data(DEEP)));
    v.push((
        "a/".repeat(DEPTH + 1) + "f",
        Expect::Errno(libc::ENAMETOOLONG),
    ));
    v.push(("a/".repeat(141), Expect::Errno(libc::ENAMETOOLONG)));
    v.push(("b/".repeat(141), Expect::Errno(libc::ENAMETOOLONG)));
    v.push(("b/".repeat(140) + "b", Expect::Errno(libc::ENAMETOOLONG)));
    v.push(("a/../".repeat(500) + "file", Expect::Data(TOP)));
    // Component lengths: NAME_MAX is fine (and missing), one more is not.
    v.push(("x".repeat(255), Expect::Errno(libc::ENOENT)));
    v.push(("x".repeat(256), Expect::Errno(libc::ENAMETOOLONG)));
    v.push((
        format!("dir/{}/x", "y".repeat(256)),
        Expect::Errno(libc::ENAMETOOLONG),
    ));
    v
}

/// Paths under ROOT=/ (in-process only): magic links of /proc are escapes,
/// like any absolute link.
pub fn slash_cases() -> Vec<(String, Expect)> {
    use Expect::*;
    [
        ("proc/self/root", Errno(libc::EXDEV)),
        ("proc/self/root/etc/passwd", Errno(libc::EXDEV)),
        ("proc/self/cwd", Errno(libc::EXDEV)),
        ("proc/self/exe", Errno(libc::EXDEV)),
        ("..", Errno(libc::EXDEV)),
        ("proc/..", Errno(libc::EINVAL)),
        ("dev/null", Errno(libc::EINVAL)),
        ("/", Errno(libc::ENOENT)),
    ]
    .into_iter()
    .map(|(p, e)| (p.to_string(), e))
    .collect()
}
