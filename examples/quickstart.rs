//! Moves files through a running `sendfiled` with the Rust client API, and
//! checks every byte against the file on disk.
//!
//! ```text
//! quickstart ROOT NAME FILE...
//! ```
//!
//! `ROOT` is the daemon's `-r` directory and `NAME` its `-s` name; the request
//! socket is `ROOT/NAME` (the default `-S .`). Each `FILE` is a path relative
//! to `ROOT`. For each file the example does two operations:
//!
//! - **Read File**: the daemon writes the file info, then the data, into a pipe
//!   it got from us; we read it to the end.
//! - **Send File**: we pass the write end of a pipe of our own as the
//!   destination; the data arrives there while the progress and completion
//!   messages arrive on a separate status pipe.
//!
//! `ci/quickstart.sh` starts a daemon on a temporary root and runs this.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use sendfiled_client::client::{Client, Range};
use sendfiled_client::sys;

/// How long to wait for any one status message before giving up.
const TIMEOUT: Duration = Duration::from_secs(30);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        eprintln!("usage: quickstart ROOT NAME FILE...");
        return ExitCode::from(2);
    }
    let root = PathBuf::from(&args[0]);
    let name = &args[1];
    let client = match Client::connect(&root, name) {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "quickstart: cannot connect to {}: {e}",
                root.join(name).display()
            );
            return ExitCode::FAILURE;
        }
    };
    println!("connected to {}", root.join(name).display());
    let mut ok = true;
    for file in &args[2..] {
        let expected = match std::fs::read(root.join(file)) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("quickstart: {file}: {e}");
                return ExitCode::FAILURE;
            }
        };
        for (what, result) in [
            ("read", read_file(&client, file, &expected)),
            ("send", send_file(&client, file, &expected)),
        ] {
            if let Err(e) = result {
                eprintln!("quickstart: {what} {file}: {e}");
                ok = false;
            }
        }
    }
    if ok {
        println!("all transfers complete and byte-exact");
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Read File: the data comes back on a pipe the daemon writes.
fn read_file(client: &Client, file: &str, expected: &[u8]) -> io::Result<()> {
    let start = Instant::now();
    let mut data = client.read(file, Range::WHOLE)?;
    let info = data.file_info()?;
    let mut got = Vec::with_capacity(info.size);
    data.read_to_end(&mut got)?;
    check(file, &got, expected)?;
    println!(
        "read {file}: file info said {} bytes; {} bytes arrived on the data pipe in {:.1?}",
        info.size,
        got.len(),
        start.elapsed()
    );
    Ok(())
}

/// Send File: the data goes to a descriptor we pass (here a pipe we drain in
/// a thread); status messages come on their own pipe.
fn send_file(client: &Client, file: &str, expected: &[u8]) -> io::Result<()> {
    let start = Instant::now();
    let (dest_r, dest_w) = sys::pipe()?;
    let status = client.send(file, dest_w.as_fd(), Range::WHOLE)?;
    // The daemon holds its own copy of the write end now; closing ours lets
    // the reader see end of file once the daemon is done with it.
    drop(dest_w);
    let reader = thread::spawn(move || -> io::Result<Vec<u8>> {
        let mut got = Vec::new();
        File::from(dest_r).read_to_end(&mut got)?;
        Ok(got)
    });
    let done = status.wait_complete(TIMEOUT)?;
    let got = reader
        .join()
        .map_err(|_| io::Error::other("reader thread panicked"))??;
    if let Some(errno) = done.error {
        return Err(io::Error::from_raw_os_error(errno));
    }
    if !done.complete {
        return Err(io::Error::other(
            "status channel closed without a completion message",
        ));
    }
    check(file, &got, expected)?;
    println!(
        "send {file}: {} bytes to a pipe; status pipe reported {} bytes of progress, then completion, in {:.1?}",
        got.len(),
        done.progress,
        start.elapsed()
    );
    Ok(())
}

fn check(file: &str, got: &[u8], expected: &[u8]) -> io::Result<()> {
    if got == expected {
        return Ok(());
    }
    let at = got
        .iter()
        .zip(expected)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(expected.len()));
    Err(io::Error::other(format!(
        "{}: got {} bytes, expected {}; first difference at byte {at}",
        Path::new(file).display(),
        got.len(),
        expected.len()
    )))
}
