//! Gives the shared library a versioned name: the SONAME `libsendfiled.so.0`
//! on ELF systems, the install name `@rpath/libsendfiled.0.dylib` on macOS.
//! Bump the `0` together with `SOVERSION` in `client-c/Makefile` on an ABI
//! break.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    match os.as_str() {
        "linux" | "freebsd" | "netbsd" | "openbsd" | "dragonfly" => {
            println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libsendfiled.so.0");
        }
        "macos" => {
            println!("cargo:rustc-cdylib-link-arg=-Wl,-install_name,@rpath/libsendfiled.0.dylib");
        }
        _ => {}
    }
}
