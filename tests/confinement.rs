//! Confinement: no request reaches a byte outside ROOT.
//!
//! Every case runs twice: with `openat2(RESOLVE_BENEATH)` (the default on
//! Linux 5.6+) and with the portable checked walk
//! (`SENDFILED_FORCE_FALLBACK=1`, the macOS path). On the wire an escape is
//! `EACCES` (the backends' `EXDEV`, mapped by the server), a missing file
//! `ENOENT`, a symbolic link loop `ELOOP`, a directory `EINVAL`.
//!
//! Absolute symbolic links are refused even when they name a file inside
//! ROOT: that is `RESOLVE_BENEATH`'s rule (an absolute link means something
//! else inside and outside a chroot), and the walk follows it so that every
//! platform answers alike.
//!
//! Linux only: the race swaps names with `renameat2(RENAME_EXCHANGE)` and the
//! privileged test reads `/proc/PID/status`.
#![cfg(target_os = "linux")]

mod common;

use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use common::*;
use rstest::rstest;
use sendfiled_client::client::{Client, Range, Response};

const INSIDE: &[u8] = b"inside the root\n";
const SECRET: &[u8] = b"OUTSIDE SECRET - must never be served\n";

/// A root inside a parent directory that also holds `outside/secret.txt`
/// (and `outside/d/f`, for the race).
struct Layout {
    parent: tempfile::TempDir,
    d: Daemon,
}

fn layout(fallback: bool, extra: &[&str]) -> Layout {
    let parent = tempfile::tempdir().unwrap();
    let out = parent.path().join("outside");
    std::fs::create_dir_all(out.join("sub")).unwrap();
    std::fs::write(out.join("secret.txt"), SECRET).unwrap();
    std::fs::write(out.join("f"), SECRET).unwrap();
    let root = tempfile::Builder::new()
        .prefix("root")
        .tempdir_in(parent.path())
        .unwrap();
    let env: &[(&str, &str)] = if fallback {
        &[("SENDFILED_FORCE_FALLBACK", "1")]
    } else {
        &[("SENDFILED_FORCE_FALLBACK", "0")]
    };
    let name = unique_name("conf");
    let d = Daemon::start_in_env(root, &name, extra, env).expect("daemon");
    if fallback {
        assert!(d.log().contains("path walk"), "fallback on: {}", d.log());
    }
    Layout { parent, d }
}

impl Layout {
    fn outside(&self) -> std::path::PathBuf {
        self.parent.path().join("outside")
    }

    /// The files and links of the static cases.
    fn populate(&self) {
        let r = self.d.root();
        let out = self.outside();
        self.d.write("in.txt", INSIDE);
        self.d.write("sub/in2.txt", INSIDE);
        std::fs::create_dir_all(r.join("sub/deeper")).unwrap();
        symlink("sub/in2.txt", r.join("link_in_rel")).unwrap();
        symlink("../in.txt", r.join("sub/up_in")).unwrap();
        symlink("../../sub", r.join("sub/deeper/sub_again")).unwrap();
        symlink("sub", r.join("dir_in_rel")).unwrap();
        symlink(r.join("in.txt"), r.join("link_in_abs")).unwrap();
        symlink(out.join("secret.txt"), r.join("link_out_abs")).unwrap();
        symlink("../outside/secret.txt", r.join("link_out_rel")).unwrap();
        symlink("../../outside/secret.txt", r.join("sub/link_out_rel2")).unwrap();
        symlink("../outside", r.join("dir_out_rel")).unwrap();
        symlink(&out, r.join("dir_out_abs")).unwrap();
        symlink("link_out_rel", r.join("chain_out")).unwrap();
        symlink("loop_b", r.join("loop_a")).unwrap();
        symlink("loop_a", r.join("loop_b")).unwrap();
        symlink("/proc/self/root/etc/passwd", r.join("magic")).unwrap();
    }
}

/// What a Read of `path` gave: its bytes, or the errno it was refused with.
/// A Read made by the daemon (these tests are about its confinement: the
/// client's in-process attempt is off).
fn read(d: &Daemon, path: &str) -> Result<Vec<u8>, i32> {
    read_with(d.client().daemon_only(), path)
}

fn read_with(c: Client, path: &str) -> Result<Vec<u8>, i32> {
    let mut ch = c.read(path, Range::WHOLE).unwrap();
    assert!(
        sendfiled_core::sys::wait_readable(ch.as_fd(), WAIT).unwrap(),
        "{path}: no answer"
    );
    match ch.file_info() {
        Ok(_) => {
            let mut v = Vec::new();
            ch.read_to_end(&mut v).unwrap();
            Ok(v)
        }
        Err(e) => Err(e.raw_os_error().unwrap_or(0)),
    }
}

/// The errno a Send and an Open of `path` got on their status channels
/// (`None` if the file was served).
fn send_and_open_errno(d: &Daemon, path: &str) -> (Option<i32>, Option<i32>) {
    let c = d.client();
    let (r, w) = pipe();
    let st = c.send(path, w.as_fd(), Range::WHOLE).unwrap();
    drop(w);
    let sent = complete(&st);
    let data = read_to_end(r.as_fd());
    if sent.error.is_some() {
        assert!(data.is_empty(), "{path}: bytes sent despite an error");
    } else {
        assert!(data != SECRET, "{path}: the outside file was sent");
    }
    let op = c.open(path, Range::WHOLE).unwrap();
    let opened = match op.recv_timeout(WAIT).unwrap() {
        Some(Response::Error { errno, .. }) => Some(errno),
        Some(Response::FileInfo(i)) => {
            c.cancel(i.txnid as u64).unwrap();
            None
        }
        other => panic!("{path}: {other:?}"),
    };
    (sent.error, opened)
}

#[rstest]
#[case::openat2(false)]
#[case::walk(true)]
fn paths_and_links_resolve_beneath_the_root_only(#[case] fallback: bool) {
    let l = layout(fallback, &[]);
    l.populate();
    let d = &l.d;
    let outside_abs = l.outside().join("secret.txt");
    let outside_abs = outside_abs.to_str().unwrap();
    let served: &[&str] = &[
        "in.txt",
        "/in.txt",
        "//sub/in2.txt",
        "./sub/../in.txt",
        "sub/./in2.txt",
        "link_in_rel",
        "sub/up_in",
        "dir_in_rel/in2.txt",
        "sub/deeper/sub_again/in2.txt",
        "sub/deeper/../../in.txt",
    ];
    for p in served {
        assert_eq!(read(d, p).as_deref(), Ok(INSIDE), "{p} is served");
    }
    let eacces = libc::EACCES;
    let refused: &[(&str, i32)] = &[
        ("..", eacces),
        ("../outside/secret.txt", eacces),
        ("sub/../../outside/secret.txt", eacces),
        ("sub/deeper/../../../outside/secret.txt", eacces),
        ("/../outside/secret.txt", eacces),
        ("link_out_abs", eacces),
        ("link_out_rel", eacces),
        ("sub/link_out_rel2", eacces),
        ("dir_out_rel/secret.txt", eacces),
        ("dir_out_abs/secret.txt", eacces),
        ("chain_out", eacces),
        // Absolute links are refused even pointing inside (documented).
        ("link_in_abs", eacces),
        ("magic", eacces),
        // A leading '/' means ROOT: the outside file's absolute path is
        // looked up inside ROOT, where it does not exist.
        (outside_abs, libc::ENOENT),
        ("/etc/passwd", libc::ENOENT),
        ("loop_a", libc::ELOOP),
        ("sub", libc::EINVAL),
        // The root itself is not a regular file (the contract, as the
        // original answers).
        ("/", libc::EINVAL),
        ("in.txt/", libc::ENOTDIR),
        ("nope", libc::ENOENT),
    ];
    for &(p, errno) in refused {
        assert_eq!(read(d, p), Err(errno), "Read {p}");
    }
    // The same through Send and Open, whose status channels carry the errno.
    for p in [
        "../outside/secret.txt",
        "link_out_abs",
        "link_out_rel",
        "dir_out_rel/secret.txt",
        "link_in_abs",
    ] {
        assert_eq!(
            send_and_open_errno(d, p),
            (Some(eacces), Some(eacces)),
            "Send/Open {p}"
        );
    }
    assert_eq!(send_and_open_errno(d, "link_in_rel"), (None, None));
    assert!(eventually(|| d.live() == 0));
    assert!(!d.log().contains("OUTSIDE"), "nothing of the secret logged");
}

/// `renameat2(RENAME_EXCHANGE)`: swaps two names atomically.
fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let a = CString::new(a.as_os_str().as_bytes()).unwrap();
    let b = CString::new(b.as_os_str().as_bytes()).unwrap();
    // SAFETY: both paths are NUL-terminated.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[rstest]
#[case::openat2(false)]
#[case::walk(true)]
fn a_directory_swapped_for_a_link_out_never_leaks_a_byte(#[case] fallback: bool) {
    let l = layout(fallback, &[]);
    let d = &l.d;
    let r = d.root().to_owned();
    d.write("d/f", INSIDE);
    d.write("d/sub/g", INSIDE);
    // What `d` is swapped with: a relative and an absolute link to a
    // directory outside holding files of the same names.
    std::fs::write(l.outside().join("sub/g"), SECRET).unwrap();
    symlink("../outside", r.join("alt_rel")).unwrap();
    symlink(l.outside(), r.join("alt_abs")).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let flips = Arc::new(AtomicU64::new(0));
    let flipper = {
        let (stop, flips, r) = (Arc::clone(&stop), Arc::clone(&flips), r.clone());
        std::thread::spawn(move || {
            let d = r.join("d");
            while !stop.load(Ordering::Relaxed) {
                for alt in ["alt_rel", "alt_abs"] {
                    let alt = r.join(alt);
                    exchange(&d, &alt).expect("RENAME_EXCHANGE");
                    exchange(&d, &alt).expect("RENAME_EXCHANGE");
                    flips.fetch_add(2, Ordering::Relaxed);
                }
            }
        })
    };
    let mut served = 0;
    let mut errors = std::collections::BTreeMap::<i32, u32>::new();
    let paths = ["d/f", "d/sub/g", "d/sub/../f", "./d/./f"];
    for i in 0..600 {
        let p = paths[i % paths.len()];
        match read(d, p) {
            Ok(v) => {
                assert!(v != SECRET, "{p}: the outside file leaked");
                assert_eq!(v, INSIDE, "{p}");
                served += 1;
            }
            Err(e) => *errors.entry(e).or_default() += 1,
        }
    }
    stop.store(true, Ordering::Relaxed);
    flipper.join().unwrap();
    eprintln!(
        "race ({}): {served} served, errors {errors:?}, {} flips",
        if fallback { "walk" } else { "openat2" },
        flips.load(Ordering::Relaxed)
    );
    for e in errors.keys() {
        // EACCES: resolved through a link out; ENOENT: `d/sub/..` taken
        // while `sub` was briefly elsewhere; ENOTDIR: the walk met `d` as a
        // link, then read it as a directory again; EAGAIN: openat2 gave up
        // after its retries under a relentless renamer.
        assert!(
            [libc::EACCES, libc::ENOENT, libc::ENOTDIR, libc::EAGAIN].contains(e),
            "unexpected errno {e}: {errors:?}"
        );
    }
    assert!(flips.load(Ordering::Relaxed) > 0);
    assert!(eventually(|| d.live() == 0));
}

/// Privileged mode: as root, `-u 65534 -g 65534` chroots to ROOT and drops to
/// nobody with no supplementary groups.
#[test]
fn privileged_mode_chroots_and_drops_to_the_named_user() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIP privileged_mode_chroots_and_drops_to_the_named_user: not root");
        return;
    }
    let root = tempfile::tempdir().unwrap();
    // nobody must be able to enter the root and read the public file.
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(root.path().join("pub.txt"), INSIDE).unwrap();
    std::fs::set_permissions(
        root.path().join("pub.txt"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    std::fs::write(root.path().join("secret.txt"), SECRET).unwrap();
    std::fs::set_permissions(
        root.path().join("secret.txt"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    std::fs::create_dir(root.path().join("private")).unwrap();
    std::fs::set_permissions(
        root.path().join("private"),
        std::fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    std::fs::write(root.path().join("private/x"), SECRET).unwrap();
    std::fs::set_permissions(
        root.path().join("private/x"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let name = unique_name("priv");
    let d = Daemon::start_in(root, &name, &["-u", "65534", "-g", "65534"]).expect("daemon");

    let status = std::fs::read_to_string(format!("/proc/{}/status", d.pid)).unwrap();
    let field = |k: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .map(|v| v.split_whitespace().collect::<Vec<_>>())
            .unwrap_or_default()
    };
    assert_eq!(field("Uid:"), ["65534"; 4], "{status}");
    assert_eq!(field("Gid:"), ["65534"; 4], "{status}");
    assert!(field("Groups:").is_empty(), "{status}");
    // The daemon's root is ROOT (chroot).
    let proc_root = std::fs::read_link(format!("/proc/{}/root", d.pid)).unwrap();
    assert_eq!(proc_root, std::fs::canonicalize(d.root()).unwrap());

    assert_eq!(read(&d, "pub.txt").as_deref(), Ok(INSIDE));
    assert_eq!(read(&d, "/pub.txt").as_deref(), Ok(INSIDE));
    assert_eq!(read(&d, "secret.txt"), Err(libc::EACCES), "0600 root file");
    // The one documented difference of inline first (sendfiled.3, "Where a
    // transfer runs"): this test runs as root, which may read the file the
    // daemon's user may not, and reads it in its own process.
    if sendfiled_client::inline::in_effect() {
        assert_eq!(
            read_with(d.client(), "secret.txt").as_deref(),
            Ok(SECRET),
            "read in the caller's process, with the caller's permissions"
        );
    }
    assert_eq!(read(&d, "private/x"), Err(libc::EACCES), "0700 root dir");
    assert_eq!(read(&d, "../etc/passwd"), Err(libc::EACCES), "escape");
    assert_eq!(
        read(&d, "/etc/passwd"),
        Err(libc::ENOENT),
        "chroot's own /etc"
    );
    let log = d.log();
    assert!(log.contains("running as uid 65534 gid 65534"), "{log}");
}
