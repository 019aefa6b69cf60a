//! The large-file figures: a large cached file to each destination and
//! Read, through every engine's daemon beside the in-process reference.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use sendfiled_client::client::Client;
use sendfiled_client::protocol::Range;

use super::report::{Goal, Report};
use super::small::clients_of;
use super::stats::{median, mib_s};
use super::{os, other, Daemon, Files, Plan};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dest {
    Pipe,
    Unix,
    Tcp,
    Read,
}

impl Dest {
    fn name(self) -> &'static str {
        match self {
            Dest::Pipe => "Send to a pipe",
            Dest::Unix => "Send to a UNIX stream socket",
            Dest::Tcp => "Send to TCP loopback",
            Dest::Read => "Read (data pipe to the client)",
        }
    }

    /// A fresh destination: (the end data is written to, the end read from).
    fn make(self) -> io::Result<(OwnedFd, OwnedFd)> {
        match self {
            Dest::Pipe | Dest::Read => os::pipe().map(|(r, w)| (w, r)),
            Dest::Unix => os::unix_stream_pair(),
            Dest::Tcp => os::tcp_pair(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Method {
    ZeroCopy,
    ReadWrite,
}

pub(super) fn daemon_large(
    client: &Client,
    dest: Dest,
    size: u64,
    buf: &mut [u8],
) -> io::Result<Duration> {
    if dest == Dest::Read {
        let t = Instant::now();
        let mut ch = client.read(Files::LARGE, Range::WHOLE)?;
        ch.file_info()?;
        let fd = ch.into_fd();
        let got = os::drain(fd.as_fd(), size, buf)?;
        let e = t.elapsed();
        if got != size {
            return Err(other(format!("Read delivered {got} of {size} bytes")));
        }
        return Ok(e);
    }
    let (w, r) = dest.make()?;
    let t = Instant::now();
    let st = client.send(Files::LARGE, w.as_fd(), Range::WHOLE)?;
    drop(w);
    let got = os::drain(r.as_fd(), size, buf)?;
    let e = t.elapsed();
    let o = os::wait_status(st.as_fd(), false)?;
    if got != size || !o.complete {
        return Err(other(format!(
            "{}: {got} of {size} bytes, status {o:?}",
            dest.name()
        )));
    }
    Ok(e)
}

pub(super) fn inproc_large(
    path: &Path,
    dest: Dest,
    size: u64,
    method: Method,
    buf: &mut [u8],
) -> io::Result<Duration> {
    if dest == Dest::Read && method == Method::ReadWrite {
        let t = Instant::now();
        let f = File::open(path)?;
        let got = os::drain(f.as_fd(), size, buf)?;
        let e = t.elapsed();
        if got != size {
            return Err(other(format!("read {got} of {size} bytes")));
        }
        return Ok(e);
    }
    let (w, r) = dest.make()?;
    if dest == Dest::Read {
        // What a Read's pipe is given by the daemon (backend-linux's
        // grow_pipe), so that this is the same pipe in one process.
        os::grow_pipe(w.as_fd(), 1 << 20);
    }
    let path = path.to_owned();
    let t = Instant::now();
    let h = thread::spawn(move || -> io::Result<()> {
        let f = File::open(&path)?;
        match (method, dest) {
            (Method::ZeroCopy, Dest::Pipe | Dest::Read) => {
                os::splice_all(f.as_fd(), w.as_fd(), size)
            }
            (Method::ZeroCopy, _) => os::sendfile_all(f.as_fd(), w.as_fd(), size),
            (Method::ReadWrite, _) => {
                let mut b = vec![0u8; 256 << 10];
                os::copy_rw(f.as_fd(), w.as_fd(), size, &mut b)
            }
        }
    });
    let got = os::drain(r.as_fd(), size, buf)?;
    let e = t.elapsed();
    h.join().map_err(|_| other("writer panicked".into()))??;
    if got != size {
        return Err(other(format!("in-process: {got} of {size} bytes")));
    }
    Ok(e)
}

pub fn large(plan: &Plan, ds: &[Daemon], files: &Files, report: &mut Report) -> io::Result<()> {
    let clients = clients_of(ds)?;
    // Inline first, through the first engine's daemon: a range over the
    // attempt's budget goes to the daemon whole, with the file the client
    // opened (Continue), so this should match the daemon's own figure.
    let inline = ds[0].inline_client()?;
    let path = files.path(Files::LARGE);
    let size = files.large;
    let resident = os::resident_fraction(&File::open(&path)?, size)?;
    println!(
        "large: {} MiB file, {:.0}% in the page cache, {} repetitions (each: every engine's daemon, inline first, then in-process)",
        size >> 20,
        resident * 100.0,
        plan.large_reps
    );
    let mut buf = vec![0u8; 256 << 10];
    for dest in [Dest::Pipe, Dest::Unix, Dest::Tcp, Dest::Read] {
        let mut dm = vec![Vec::new(); ds.len()];
        let mut inl = Vec::new();
        let mut cpu = vec![Vec::new(); ds.len()];
        let (mut zc, mut rw) = (Vec::new(), Vec::new());
        for _ in 0..plan.large_reps {
            for (i, (d, client)) in ds.iter().zip(&clients).enumerate() {
                let c0 = d.cpu_ns();
                dm[i].push(mib_s(size, daemon_large(client, dest, size, &mut buf)?));
                cpu[i].push((d.cpu_ns() - c0) as f64 / 1e6 * (1u64 << 30) as f64 / size as f64);
            }
            inl.push(mib_s(size, daemon_large(&inline, dest, size, &mut buf)?));
            rw.push(mib_s(
                size,
                inproc_large(&path, dest, size, Method::ReadWrite, &mut buf)?,
            ));
            zc.push(mib_s(
                size,
                inproc_large(&path, dest, size, Method::ZeroCopy, &mut buf)?,
            ));
        }
        let (zc, rw) = (median(zc), median(rw));
        let (reference, method) = if dest == Dest::Read {
            (rw, "read")
        } else if zc >= rw {
            (
                zc,
                if dest == Dest::Pipe {
                    "splice"
                } else {
                    "sendfile"
                },
            )
        } else {
            (rw, "read/write")
        };
        let dm_medians: Vec<f64> = dm.into_iter().map(median).collect();
        for (d, &daemon) in ds.iter().zip(&dm_medians) {
            report.row(
                format!("large {} MiB: {} (MiB/s)", size >> 20, dest.name()),
                Some(d.engine),
                daemon,
                Some((reference, method)),
                Some(daemon / reference),
                Goal::AtLeast(0.9),
            );
        }
        let inl = median(inl);
        report.row(
            format!(
                "large {} MiB: {}, inline first (MiB/s)",
                size >> 20,
                dest.name()
            ),
            Some(ds[0].engine),
            inl,
            Some((reference, method)),
            Some(inl / reference),
            Goal::AtLeast(0.9),
        );
        if dest == Dest::Read {
            // The least a Read can cost: the data must cross a pipe, which
            // `read(2)` of the file does not. One thread splices the file
            // into a 1 MiB pipe, another reads it.
            report.row(
                "  read through a 1 MiB pipe in-process (MiB/s)".to_string(),
                None,
                zc,
                Some((rw, "read")),
                Some(zc / rw),
                Goal::None,
            );
            for (d, dm) in ds.iter().zip(&dm_medians) {
                report.row(
                    "  daemon's Read against that pipe".to_string(),
                    Some(d.engine),
                    *dm,
                    Some((zc, "splice+read")),
                    Some(*dm / zc),
                    Goal::None,
                );
            }
        }
        for (d, cpu) in ds.iter().zip(cpu) {
            report.row(
                format!("  daemon CPU per GiB, {} (ms)", dest.name()),
                Some(d.engine),
                median(cpu),
                None,
                None,
                Goal::None,
            );
        }
    }
    Ok(())
}
