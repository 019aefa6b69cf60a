//! Drift test: `include/responses.h` and `include/sendfiled.h` must agree
//! with the Rust definitions the library is built from.
//!
//! Compiles `tests/layout.c` with every Rust value passed as `-DRUST_*`
//! (a difference fails the C compile through `_Static_assert`), links it
//! against `libsendfiled.a` (every exported function must exist with the
//! header's prototype), runs it and compares what C printed with Rust's
//! `size_of`/`offset_of!`/constants. Compiles the same file as C++ too.

use std::collections::BTreeMap;
use std::mem::{align_of, offset_of, size_of};
use std::path::{Path, PathBuf};
use std::process::Command;

use sendfiled::{SFD_MAX_HDTR_LEN, SFD_MAX_PATH_LEN};
use sendfiled_client::protocol::{
    FileInfo, XferStat, MAX_RESPONSE_LEN, SFD_FILE_INFO, SFD_HDR_SIZE, SFD_STAT_OK, SFD_XFER_STAT,
};

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The directory holding `libsendfiled.a`: the profile directory above this
/// test binary's `deps/`.
/// Builds the library first if this test runs before anything built it
/// (`cargo test` builds only the rlib for tests).
fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap().to_owned();
    if !dir.join("libsendfiled.a").exists() {
        let target_dir = dir.parent().unwrap();
        let mut cargo =
            std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cargo
            .args(["build", "-q", "-p", "sendfiled-client-c", "--target-dir"])
            .arg(target_dir);
        if dir.file_name().is_some_and(|n| n == "release") {
            cargo.arg("--release");
        }
        let st = cargo.status().expect("run cargo build");
        assert!(st.success(), "building libsendfiled.a failed");
    }
    dir
}

fn expected() -> Vec<(&'static str, &'static str, usize)> {
    vec![
        ("file_info.size", "FILE_INFO_SIZE", size_of::<FileInfo>()),
        ("file_info.align", "FILE_INFO_ALIGN", align_of::<FileInfo>()),
        ("file_info.cmd", "FILE_INFO_CMD", offset_of!(FileInfo, cmd)),
        (
            "file_info.stat",
            "FILE_INFO_STAT",
            offset_of!(FileInfo, stat),
        ),
        (
            "file_info.size_off",
            "FILE_INFO_SIZE_OFF",
            offset_of!(FileInfo, size),
        ),
        (
            "file_info.atime",
            "FILE_INFO_ATIME",
            offset_of!(FileInfo, atime),
        ),
        (
            "file_info.mtime",
            "FILE_INFO_MTIME",
            offset_of!(FileInfo, mtime),
        ),
        (
            "file_info.ctime",
            "FILE_INFO_CTIME",
            offset_of!(FileInfo, ctime),
        ),
        (
            "file_info.txnid",
            "FILE_INFO_TXNID",
            offset_of!(FileInfo, txnid),
        ),
        ("xfer_stat.size", "XFER_STAT_SIZE", size_of::<XferStat>()),
        ("xfer_stat.align", "XFER_STAT_ALIGN", align_of::<XferStat>()),
        ("xfer_stat.cmd", "XFER_STAT_CMD", offset_of!(XferStat, cmd)),
        (
            "xfer_stat.stat",
            "XFER_STAT_STAT",
            offset_of!(XferStat, stat),
        ),
        (
            "xfer_stat.size_off",
            "XFER_STAT_SIZE_OFF",
            offset_of!(XferStat, size),
        ),
        ("SFD_FILE_INFO", "SFD_FILE_INFO", SFD_FILE_INFO.into()),
        ("SFD_XFER_STAT", "SFD_XFER_STAT", SFD_XFER_STAT.into()),
        ("SFD_STAT_OK", "SFD_STAT_OK", SFD_STAT_OK.into()),
        ("SFD_HDR_SIZE", "SFD_HDR_SIZE", SFD_HDR_SIZE),
        ("SFD_MAX_RESP_SIZE", "SFD_MAX_RESP_SIZE", MAX_RESPONSE_LEN),
        ("SFD_MAX_PATH_LEN", "SFD_MAX_PATH_LEN", SFD_MAX_PATH_LEN),
        ("SFD_MAX_HDTR_LEN", "SFD_MAX_HDTR_LEN", SFD_MAX_HDTR_LEN),
        ("time_t", "TIME_T_SIZE", size_of::<libc::time_t>()),
        ("off_t", "OFF_T_SIZE", size_of::<libc::off_t>()),
        ("pid_t", "PID_T_SIZE", size_of::<libc::pid_t>()),
    ]
}

fn compile(compiler: &str, std: &str, lang: Option<&str>, out: &Path) -> std::process::Output {
    let mut cmd = Command::new(compiler);
    cmd.arg(format!("-std={std}"))
        .args(["-Wall", "-Wextra", "-Werror", "-pedantic"])
        .arg("-D_POSIX_C_SOURCE=200809L")
        .arg("-I")
        .arg(crate_dir().join("include"));
    for (_, def, v) in expected() {
        cmd.arg(format!("-DRUST_{def}={v}"));
    }
    if let Some(l) = lang {
        cmd.args(["-x", l]);
    }
    cmd.arg(crate_dir().join("tests/layout.c"));
    if lang.is_some() {
        cmd.args(["-x", "none"]);
    }
    cmd.arg(lib_dir().join("libsendfiled.a"))
        .args(["-lpthread", "-ldl", "-lm"])
        .arg("-o")
        .arg(out);
    cmd.output().expect("run the C compiler")
}

#[test]
fn header_matches_rust_definitions() {
    let dir = std::env::temp_dir().join(format!("sfd-layout-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let exe = dir.join("layout");
    let out = compile("cc", "c11", None, &exe);
    assert!(
        out.status.success(),
        "layout.c does not compile against the header:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = Command::new(&exe).output().unwrap();
    assert!(run.status.success(), "layout program failed");
    let seen: BTreeMap<String, usize> = String::from_utf8(run.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let (k, v) = l.split_once(' ').unwrap();
            (k.to_owned(), v.parse().unwrap())
        })
        .collect();
    for (name, _, v) in expected() {
        assert_eq!(seen.get(name), Some(&v), "{name}: C and Rust differ");
    }
    assert_eq!(seen.len(), expected().len());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn header_compiles_as_cplusplus() {
    if Command::new("c++").arg("--version").output().is_err() {
        eprintln!("no c++ compiler; skipped");
        return;
    }
    let dir = std::env::temp_dir().join(format!("sfd-layout-cxx-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let exe = dir.join("layout");
    let out = compile("c++", "c++11", Some("c++"), &exe);
    assert!(
        out.status.success(),
        "layout.c does not compile as C++:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(Command::new(&exe).output().unwrap().status.success());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_drift_fails_the_check() {
    // The check is only worth something if a wrong value fails it.
    let dir = std::env::temp_dir().join(format!("sfd-layout-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = Command::new("cc")
        .args(["-std=c11", "-fsyntax-only", "-I"])
        .arg(crate_dir().join("include"))
        .args(expected().iter().map(|(_, def, v)| {
            let v = if *def == "FILE_INFO_TXNID" { v + 8 } else { *v };
            format!("-DRUST_{def}={v}")
        }))
        .arg(crate_dir().join("tests/layout.c"))
        .output()
        .unwrap();
    assert!(!out.status.success(), "a wrong offset was not caught");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("txnid") && err.contains("differs from Rust"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
