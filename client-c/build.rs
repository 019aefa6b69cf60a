//! Gives the shared library a versioned name: the SONAME `libsendfiled.so.0`
//! on ELF systems, the install name `@rpath/libsendfiled.0.dylib` on macOS.
//! Bump the `0` together with `SOVERSION` in `client-c/Makefile` and
//! `[package.metadata.capi.library]` in `Cargo.toml` on an ABI break.
//!
//! A program linked against the build tree (`-L target/release
//! -lsendfiled`) asks the dynamic loader for that versioned name, so this
//! script also puts the link `libsendfiled.so.0 -> libsendfiled.so`
//! (`libsendfiled.0.dylib -> libsendfiled.dylib` on macOS) beside the
//! library in cargo's output directory. It runs before the library is
//! linked, so the link dangles until cargo writes `libsendfiled.so`; a
//! relative link to the name cargo always writes stays right after every
//! rebuild. Best effort: a failure is a warning, not a failed build.

use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    installed_daemon();
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let (link, to) = match os.as_str() {
        "linux" | "freebsd" | "netbsd" | "openbsd" | "dragonfly" => {
            println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libsendfiled.so.0");
            ("libsendfiled.so.0", "libsendfiled.so")
        }
        "macos" => {
            println!("cargo:rustc-cdylib-link-arg=-Wl,-install_name,@rpath/libsendfiled.0.dylib");
            ("libsendfiled.0.dylib", "libsendfiled.dylib")
        }
        _ => return,
    };
    if let Some(dir) = output_dir() {
        if let Err(e) = soname_link(&dir, link, to) {
            println!(
                "cargo:warning=could not create {}: {e}",
                dir.join(link).display()
            );
        }
    }
}

/// Where `sfd_spawn` looks for the daemon after `$SENDFILED_BIN` and `PATH`:
/// `$SENDFILED_PREFIX/sbin/sendfiled`, the daemon installed with this
/// library (`make -C client-c` and `ci/install.sh` pass their `PREFIX`; a
/// `cargo build` without it bakes in no path). Given to the crate as
/// `SFD_INSTALLED_DAEMON`.
fn installed_daemon() {
    println!("cargo:rerun-if-env-changed=SENDFILED_PREFIX");
    let Some(prefix) = std::env::var_os("SENDFILED_PREFIX") else {
        return;
    };
    let prefix = PathBuf::from(prefix);
    if !prefix.is_absolute() {
        println!(
            "cargo:warning=SENDFILED_PREFIX={} is not absolute: sfd_spawn gets no installed daemon path",
            prefix.display()
        );
        return;
    }
    let daemon = prefix.join("sbin").join("sendfiled");
    match daemon.to_str() {
        Some(d) if !d.contains('\n') => println!("cargo:rustc-env=SFD_INSTALLED_DAEMON={d}"),
        _ => {
            println!("cargo:warning=SENDFILED_PREFIX is not plain UTF-8: no installed daemon path")
        }
    }
}

/// The directory cargo writes the library to (`target/PROFILE`, or
/// `target/TRIPLE/PROFILE`): OUT_DIR is `<it>/build/<package>-<hash>/out`.
fn output_dir() -> Option<PathBuf> {
    let out = PathBuf::from(std::env::var_os("OUT_DIR")?);
    let pkg_dir = out.parent()?;
    let build = pkg_dir.parent()?;
    if out.file_name()? != "out" || build.file_name()? != "build" {
        return None;
    }
    Some(build.parent()?.to_path_buf())
}

#[cfg(unix)]
fn soname_link(dir: &Path, link: &str, to: &str) -> std::io::Result<()> {
    let path = dir.join(link);
    match std::fs::read_link(&path) {
        Ok(old) if old == Path::new(to) => return Ok(()),
        Ok(_) => std::fs::remove_file(&path)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        // Something that is not a symlink (a copy put there by hand): leave it.
        Err(_) => return Ok(()),
    }
    std::os::unix::fs::symlink(to, &path)
}

#[cfg(not(unix))]
fn soname_link(_dir: &Path, _link: &str, _to: &str) -> std::io::Result<()> {
    Ok(())
}
