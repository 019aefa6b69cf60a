//! Hostile clients (issue 13): what one client puts under ROOT or into its
//! requests must not change how the daemon treats everybody else, nor what
//! its log says.
//!
//! Each test runs in both passes of `ci/test.sh`: with the native Linux
//! paths and with `SENDFILED_FORCE_FALLBACK=1` (inherited by the daemon).
#![cfg(target_os = "linux")]

mod common;

use std::ffi::CString;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use common::*;
use sendfiled_core::client::Range;

/// A tmpfs mounted on a directory of the test's own, unmounted on drop.
struct TmpfsMount {
    at: PathBuf,
}

impl TmpfsMount {
    /// Mounts a small tmpfs on `at` (created); `None`, with the reason
    /// printed, where mounting is not possible (no privilege, no tmpfs).
    fn new(at: &Path) -> Option<TmpfsMount> {
        std::fs::create_dir_all(at).expect("mount point");
        let target = CString::new(at.as_os_str().as_encoded_bytes()).expect("path");
        // SAFETY: NUL-terminated strings; the data string is tmpfs options.
        let r = unsafe {
            libc::mount(
                c"sendfiled-test".as_ptr(),
                target.as_ptr(),
                c"tmpfs".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV,
                c"size=16m".as_ptr().cast(),
            )
        };
        if r != 0 {
            eprintln!(
                "skipped: cannot mount a tmpfs on {}: {}",
                at.display(),
                std::io::Error::last_os_error()
            );
            return None;
        }
        Some(TmpfsMount { at: at.to_owned() })
    }
}

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        if let Ok(c) = CString::new(self.at.as_os_str().as_encoded_bytes()) {
            // SAFETY: NUL-terminated path of the mount we made. MNT_DETACH:
            // a daemon still holding a file there must not keep it mounted.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

fn read_all(d: &Daemon, path: &str) -> Vec<u8> {
    let mut ch = d.client().read(path, Range::WHOLE).expect("request");
    ch.file_info().expect("file info");
    let mut got = Vec::new();
    ch.read_to_end(&mut got).expect("read");
    got
}

/// Whether the first page of `f` is in the page cache (`mincore`, which does
/// not read it in).
fn resident(f: &std::fs::File) -> bool {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
    // SAFETY: a fresh read-only shared mapping of one page of our file,
    // unmapped below; mincore writes one byte into vec.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            page,
            libc::PROT_READ,
            libc::MAP_SHARED,
            f.as_raw_fd(),
            0,
        );
        assert_ne!(p, libc::MAP_FAILED, "mmap");
        let mut vec = [0u8; 1];
        let r = libc::mincore(p, page, vec.as_mut_ptr());
        libc::munmap(p, page);
        assert_eq!(r, 0, "mincore");
        vec[0] & 1 == 1
    }
}

/// Writes `data` to `path` and drops its pages from the cache; false if they
/// stay (a filesystem whose pages cannot be dropped).
fn write_cold(path: &Path, data: &[u8]) -> bool {
    std::fs::write(path, data).expect("write");
    let f = std::fs::File::open(path).expect("open");
    f.sync_all().expect("fsync");
    // SAFETY: plain advice on our own descriptor.
    let r = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    r == 0 && !resident(&f)
}

/// Row 5: a Read of a file on a filesystem without `RWF_NOWAIT` (tmpfs)
/// works, and the page-cache probe stays on for the other filesystem: a
/// cold file there still goes to the disk threads (the daemon's debug line
/// for a probe miss) instead of being read on the loop.
#[test]
fn a_tmpfs_under_root_does_not_switch_the_cache_probe_off() {
    let d = Daemon::start();
    let Some(_mnt) = TmpfsMount::new(&d.root().join("shm")) else {
        return;
    };
    let data = pattern(300_000);
    std::fs::write(d.root().join("shm/f"), &data).expect("write");
    assert!(read_all(&d, "shm/f") == data, "tmpfs file byte-exact");
    const REFUSED: &str = "unsupported on the filesystem of device";
    if !d.log().contains(REFUSED) {
        eprintln!("note: tmpfs answers RWF_NOWAIT on this kernel; the refusal is not exercised");
    }
    assert!(
        !d.log().contains("unsupported by the kernel"),
        "one filesystem's refusal is not the kernel's: {}",
        d.log()
    );

    const MISS: &str = "page cache miss";
    assert!(!d.log().contains(MISS), "no miss yet: {}", d.log());
    let cold = pattern(1 << 20);
    if !write_cold(&d.root().join("cold"), &cold) {
        eprintln!("skipped: the root's filesystem keeps its pages; no cold file to probe");
        return;
    }
    assert!(read_all(&d, "cold") == cold, "cold file byte-exact");
    assert!(
        d.log().contains(MISS),
        "the probe still runs for the root's filesystem: {}",
        d.log()
    );
}
