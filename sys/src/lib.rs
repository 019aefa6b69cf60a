//! `sendfiled-sys`: the system calls both sides of sendfiled make, written
//! once. The daemon (its backends and loop), the Rust client, the C library
//! and the benchmark all come here for them; nothing here knows the protocol
//! or either side's rules.
//!
//! Rule: every public function is a thin wrapper over one system call (or a
//! fixed short sequence that only makes sense whole, such as an open beneath
//! a root), named after its man page; it depends on `libc`, `nix` and
//! `cfg-if` only. Where the systems differ, the difference lives in one file
//! of `os/`, chosen below in one place, as mio's `sys/` does: every other
//! module calls `os::NAME` and never mentions an OS. What is Linux's alone
//! (`splice`, `openat2`, `preadv2`) is reached through [`linux`], which exists
//! on Linux only.
//!
//! | module | what it holds |
//! |---|---|
//! | [`fd`] | descriptors in general: `read`, `write`, pipes, flags, `fstat`, `flock`, waits |
//! | [`passing`] | descriptor passing over UNIX datagram sockets, with credentials |
//! | [`nowait`] | writes that never wait whatever the descriptor's `O_NONBLOCK`, the pipe free-space rule, the interrupt backstop |
//! | [`beneath`] | opening a regular file beneath a root: `openat2`, `O_RESOLVE_BENEATH`, or the checked walk |
//! | [`fsfacts`] | facts learnt once per filesystem (device): opens that never wait, `RWF_NOWAIT` support |
//! | [`cache`] | the page-cache probe |

pub mod beneath;
pub mod cache;
pub mod errno;
pub mod fd;
pub mod fsfacts;
pub mod nowait;
pub mod passing;

cfg_if::cfg_if! {
    if #[cfg(target_os = "linux")] {
        #[path = "os/linux.rs"]
        mod os;
        /// What only Linux has, for the Linux backend and the client's
        /// in-process attempt.
        pub mod linux {
            pub use crate::os::{
                opens_never_wait, openat2, preadv2_nowait, readahead, sendfile, set_pipe_size, splice,
                stat_unsynced, OpenHow,
            };
        }
    } else if #[cfg(target_os = "freebsd")] {
        #[path = "os/kqueue.rs"]
        mod kqueue;
        #[path = "os/portable.rs"]
        mod portable;
        #[path = "os/freebsd.rs"]
        mod os;
    } else if #[cfg(target_os = "macos")] {
        #[path = "os/kqueue.rs"]
        mod kqueue;
        #[path = "os/portable.rs"]
        mod portable;
        #[path = "os/macos.rs"]
        mod os;
    } else {
        #[path = "os/portable.rs"]
        mod portable;
        #[path = "os/other.rs"]
        mod os;
    }
}

// The flat names every caller used before the layer had modules: one
// `sendfiled_sys::pipe`, one `sendfiled_sys::recv_with_fds`.
pub use fd::*;
pub use nowait::*;
pub use passing::*;
