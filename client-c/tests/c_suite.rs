//! Runs the C test suite (`ci/c-tests.sh`) as part of `cargo test`.
//!
//! `ci/c-tests.sh` is the one driver of the C suite: it builds the library
//! and the daemon, compiles the C tests and examples with warnings as
//! errors, installs into a temporary prefix and runs everything, ending with
//! `N passed, M failed`. This test only calls it and fails if it fails, so
//! `cargo test --workspace` covers the C API too.
//!
//! Set `SFD_SKIP_C_SUITE=1` to skip it (for a CI that runs the script
//! itself, e.g. `ci/c-tests.sh --valgrind`, and does not want it twice).

use std::path::PathBuf;
use std::process::Command;

#[test]
fn c_suite() {
    if std::env::var_os("SFD_SKIP_C_SUITE").is_some_and(|v| v == "1") {
        eprintln!("SFD_SKIP_C_SUITE=1: C suite skipped");
        return;
    }
    if !cfg!(any(
        target_os = "linux",
        target_os = "freebsd",
        target_os = "macos"
    )) {
        return;
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new("bash")
        .arg(root.join("ci/c-tests.sh"))
        .current_dir(&root)
        .output()
        .expect("run ci/c-tests.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stdout.lines().last().unwrap_or("");
    assert!(
        out.status.success(),
        "ci/c-tests.sh failed ({last}):\n{stdout}\n{stderr}"
    );
    assert!(last.ends_with(" 0 failed"), "unexpected summary: {last}");
    eprintln!("C suite: {last}");
}
