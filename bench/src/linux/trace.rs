//! Counting the daemon's system calls from outside: `perf stat` of the
//! `raw_syscalls:sys_enter` tracepoint (every system call of every thread,
//! counted in the kernel, enabled only for the measured window), and an
//! optional `strace -c -f` mode that names them (it stops the daemon at each
//! call, so its runs are never timed).

use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::os;

/// Set once `perf` failed, so that it is not tried again.
static PERF_BROKEN: AtomicBool = AtomicBool::new(false);

fn signal_and_wait(child: &mut Child, sig: libc::c_int) -> io::Result<()> {
    // SAFETY: signalling our own child by pid.
    unsafe { libc::kill(child.id() as i32, sig) };
    child.wait()?;
    Ok(())
}

/// `perf stat -e raw_syscalls:sys_enter -p PID`, started with its counter
/// disabled and switched on and off through its control descriptors.
pub struct Perf {
    child: Child,
    ctl: OwnedFd,
    ack: OwnedFd,
    out: PathBuf,
}

impl Perf {
    /// Starts perf on `pid` (counter off), or says why not.
    pub fn start(pid: i32, out: &Path) -> Result<Perf, String> {
        if PERF_BROKEN.load(Ordering::Relaxed) {
            return Err("perf failed before".into());
        }
        let r = Perf::try_start(pid, out);
        if r.is_err() {
            PERF_BROKEN.store(true, Ordering::Relaxed);
        }
        r
    }

    /// Stops trying perf (it failed).
    pub fn give_up() {
        PERF_BROKEN.store(true, Ordering::Relaxed);
    }

    fn try_start(pid: i32, out: &Path) -> Result<Perf, String> {
        let (ctl_r, ctl_w) = os::pipe().map_err(|e| e.to_string())?;
        let (ack_r, ack_w) = os::pipe().map_err(|e| e.to_string())?;
        let (cr, aw) = (ctl_r.as_raw_fd(), ack_w.as_raw_fd());
        let mut cmd = Command::new("perf");
        cmd.args(["stat", "-x,", "-e", "raw_syscalls:sys_enter", "-D", "-1"])
            .arg("--control")
            .arg(format!("fd:{cr},{aw}"))
            .arg("-o")
            .arg(out)
            .arg("-p")
            .arg(pid.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: fcntl is async-signal-safe; the descriptors are open.
        unsafe {
            cmd.pre_exec(move || {
                for fd in [cr, aw] {
                    if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                        return Err(io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|e| format!("perf: {e}"))?;
        drop((ctl_r, ack_w));
        let mut p = Perf {
            child,
            ctl: ctl_w,
            ack: ack_r,
            out: out.to_owned(),
        };
        // One round of the control protocol proves perf is attached.
        if let Err(e) = p.command("disable") {
            let _ = signal_and_wait(&mut p.child, libc::SIGKILL);
            return Err(format!("perf did not answer ({e})"));
        }
        Ok(p)
    }

    fn command(&mut self, what: &str) -> io::Result<()> {
        sendfiled_sys::write_message(self.ctl.as_fd(), format!("{what}\n").as_bytes())?;
        if !sendfiled_sys::wait_readable(self.ack.as_fd(), Duration::from_secs(10))? {
            return Err(io::Error::from(io::ErrorKind::TimedOut));
        }
        let mut b = [0u8; 16];
        let n = os::read(self.ack.as_fd(), &mut b)?;
        if !b[..n].starts_with(b"ack") {
            return Err(io::Error::other("perf did not ack"));
        }
        Ok(())
    }

    /// Switches the counter on.
    pub fn enable(&mut self) -> io::Result<()> {
        self.command("enable")
    }

    /// Switches the counter off, stops perf and returns the count.
    pub fn finish(mut self) -> io::Result<u64> {
        let r = self.command("disable");
        signal_and_wait(&mut self.child, libc::SIGINT)?;
        r?;
        let s = std::fs::read_to_string(&self.out)?;
        let _ = std::fs::remove_file(&self.out);
        s.lines()
            .find(|l| l.contains("raw_syscalls:sys_enter"))
            .and_then(|l| l.split(',').next())
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| io::Error::other(format!("perf output not understood: {s:?}")))
    }
}

/// `strace -c -f -p PID` writing its summary to a file.
pub struct Strace {
    child: Child,
    out: PathBuf,
}

impl Strace {
    pub fn start(pid: i32, out: &Path) -> io::Result<Strace> {
        let mut child = Command::new("strace")
            .args(["-c", "-f", "-o"])
            .arg(out)
            .arg("-p")
            .arg(pid.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        // strace says "Process N attached with T threads" on stderr once it
        // has attached to all of them (the loop and the disk threads).
        let mut err = child
            .stderr
            .take()
            .ok_or_else(|| io::Error::other("no stderr"))?;
        let mut seen = String::new();
        let mut b = [0u8; 512];
        while !seen
            .split_once("attached")
            .is_some_and(|(_, after)| after.contains('\n'))
        {
            if !sendfiled_sys::wait_readable(err.as_fd(), Duration::from_secs(10))? {
                let _ = signal_and_wait(&mut child, libc::SIGKILL);
                return Err(io::Error::other(format!("strace did not attach: {seen:?}")));
            }
            let n = err.read(&mut b)?;
            if n == 0 {
                let _ = child.wait();
                return Err(io::Error::other(format!("strace: {seen:?}")));
            }
            seen.push_str(&String::from_utf8_lossy(&b[..n]));
        }
        // Keep its stderr drained to nowhere from here on.
        std::thread::spawn(move || {
            let mut sink = [0u8; 512];
            while matches!(err.read(&mut sink), Ok(n) if n > 0) {}
        });
        Ok(Strace {
            child,
            out: out.to_owned(),
        })
    }

    /// Detaches strace; returns its summary and the total number of calls.
    pub fn finish(mut self) -> io::Result<(String, u64)> {
        signal_and_wait(&mut self.child, libc::SIGINT)?;
        let s = std::fs::read_to_string(&self.out)?;
        let _ = std::fs::remove_file(&self.out);
        // Rows: % time, seconds, usecs/call, calls, [errors], syscall; the
        // total row repeats the sum, so it is skipped.
        let mut total = 0u64;
        for l in s.lines() {
            let t: Vec<&str> = l.split_whitespace().collect();
            if t.len() >= 5 && t.last() != Some(&"total") && t[0].parse::<f64>().is_ok() {
                total += t[3].parse::<u64>().unwrap_or(0);
            }
        }
        Ok((s, total))
    }
}
