//! nginx as the HTTP figure's outside reference (issue 22): one worker
//! serving the bench files from a configuration written into a temporary
//! prefix, in one of the two modes a user would pick for static files.
//!
//! Rule: this file only starts and stops nginx; the load and the tables are
//! `http.rs`'s. Where nginx is not installed the figure says so and goes on.

use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How nginx sends a file's body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NginxMode {
    /// `sendfile on; aio threads;`: every `sendfile` runs on nginx's thread
    /// pool, so its event loop never waits on the disk (the disk-safe mode,
    /// what sendfiled's users would otherwise pick).
    AioThreads,
    /// `sendfile on;` alone: `sendfile` in the event loop, which waits for
    /// the disk when the file is not cached.
    Sendfile,
}

impl NginxMode {
    pub fn label(self) -> &'static str {
        match self {
            NginxMode::AioThreads => "nginx (sendfile, aio threads)",
            NginxMode::Sendfile => "nginx (sendfile)",
        }
    }

    fn directives(self) -> &'static str {
        match self {
            NginxMode::AioThreads => "sendfile on; aio threads=sfdbench;",
            NginxMode::Sendfile => "sendfile on;",
        }
    }
}

/// The nginx executable: `$SENDFILED_BENCH_NGINX`, else `nginx` on `PATH`
/// or in `/usr/sbin`; `None` when there is none.
pub fn nginx_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("SENDFILED_BENCH_NGINX") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin")])
        .map(|d| d.join("nginx"))
        .find(|p| p.is_file())
}

/// One running nginx; stopped (and its prefix removed) on drop.
pub struct Nginx {
    child: Child,
    pub pid: i32,
    pub addr: SocketAddr,
    _prefix: tempfile::TempDir,
}

impl Nginx {
    /// Starts `bin` serving `root` on a free loopback port, one process
    /// (`master_process off`: the one worker the figure compares with one
    /// tokio thread), and waits until it accepts connections.
    pub fn start(bin: &Path, root: &Path, mode: NginxMode) -> io::Result<Nginx> {
        let prefix = tempfile::Builder::new()
            .prefix("sfd-bench-nginx")
            .tempdir()?;
        let p = prefix.path();
        std::fs::create_dir_all(p.join("logs"))?;
        std::fs::create_dir_all(p.join("tmp"))?;
        // A free port: bound here, released, then nginx's (it binds at
        // once; a port taken in between fails the start, not the figure's
        // numbers).
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let tmp = p.join("tmp");
        let conf = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\n\
             error_log {logs}/error.log warn;\npid {logs}/nginx.pid;\n\
             thread_pool sfdbench threads=2;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {tmp};\n  proxy_temp_path {tmp};\n\
             fastcgi_temp_path {tmp};\n  uwsgi_temp_path {tmp};\n  scgi_temp_path {tmp};\n\
             keepalive_requests 1000000000;\n  keepalive_timeout 300s;\n\
             server {{\n    listen {addr};\n    root {root};\n    {directives}\n  }}\n}}\n",
            logs = p.join("logs").display(),
            tmp = tmp.display(),
            root = root.display(),
            directives = mode.directives(),
        );
        let conf_path = p.join("nginx.conf");
        std::fs::File::create(&conf_path)?.write_all(conf.as_bytes())?;
        let mut child = Command::new(bin)
            .arg("-p")
            .arg(p)
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let pid = child.id() as i32;
        // Ready once it accepts; it exits at once on a bad configuration.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                break;
            }
            if let Some(status) = child.try_wait()? {
                let log = std::fs::read_to_string(p.join("logs/error.log")).unwrap_or_default();
                return Err(io::Error::other(format!(
                    "nginx exited ({status}): {}",
                    log.trim()
                )));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(io::Error::other("nginx did not accept within 10 s"));
            }
            // Not yet listening: a bounded pause on a descriptor that never
            // becomes ready (a refused connect returns at once).
            let (r, _w) = sendfiled_sys::pipe()?;
            let _ = sendfiled_sys::wait_readable(r.as_fd(), Duration::from_millis(20));
        }
        Ok(Nginx {
            child,
            pid,
            addr,
            _prefix: prefix,
        })
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SAFETY: signalling our own child by pid (TERM: a fast shutdown).
        unsafe { libc::kill(self.pid, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}
