//! Reading and setting the calling thread's `errno`, the one place where the
//! systems differ (`__errno_location` on Linux, `__error` on FreeBSD and
//! macOS, `__errno` on the other BSDs).

use std::ffi::c_int;

fn location() -> *mut c_int {
    cfg_if::cfg_if! {
        if #[cfg(any(target_os = "linux", target_os = "emscripten", target_os = "redox"))] {
            // SAFETY: always returns this thread's errno slot.
            unsafe { libc::__errno_location() }
        } else if #[cfg(any(target_os = "freebsd", target_os = "macos", target_os = "ios",
                            target_os = "dragonfly"))] {
            // SAFETY: always returns this thread's errno slot.
            unsafe { libc::__error() }
        } else if #[cfg(any(target_os = "netbsd", target_os = "openbsd", target_os = "android"))] {
            // SAFETY: always returns this thread's errno slot.
            unsafe { libc::__errno() }
        } else {
            compile_error!("no errno location known for this target")
        }
    }
}

/// Sets `errno` for the calling thread.
pub fn set_errno(e: c_int) {
    // SAFETY: location() is this thread's errno slot, valid for writes.
    unsafe { *location() = e }
}

/// The calling thread's `errno`.
pub fn errno() -> c_int {
    // SAFETY: location() is this thread's errno slot, valid for reads.
    unsafe { *location() }
}
