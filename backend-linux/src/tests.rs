use super::*;
use sendfiled_core::sys::linux::{opens_never_wait, preadv2_nowait};

use std::ffi::CString;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::symlink;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

const SIZE: usize = 300_000;

fn pattern(len: usize) -> Vec<u8> {
    // Not periodic at any power of two, so an offset error shows.
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

fn data_file() -> (std::fs::File, Vec<u8>) {
    let data = pattern(SIZE);
    let mut f = tempfile::tempfile().expect("tempfile");
    f.write_all(&data).expect("write");
    (f, data)
}

fn chunk(file: &std::fs::File, offset: u64, len: usize) -> FileChunk<'_> {
    FileChunk {
        file: file.as_fd(),
        offset,
        len,
        more_follows: false,
        nowait: false,
    }
}

fn backends() -> Vec<LinuxBackend> {
    vec![
        LinuxBackend::new(),
        LinuxBackend::with_options(LinuxOptions {
            force_walk: true,
            force_read_write: true,
        }),
    ]
}

fn nonblocking_pipe() -> (OwnedFd, OwnedFd) {
    let (r, w) = sys::pipe().expect("pipe");
    sys::set_nonblocking(w.as_fd(), true).expect("nonblock");
    (r, w)
}

fn drain(fd: BorrowedFd<'_>, n: usize) -> Vec<u8> {
    let mut out = vec![0u8; n];
    let mut got = 0;
    while got < n {
        let k = sys::read(fd, &mut out[got..]).expect("read");
        assert!(k > 0, "early EOF");
        got += k;
    }
    out
}

#[test]
fn env_value_forces_both_portable_paths() {
    let off = LinuxOptions::default();
    assert_eq!(LinuxOptions::from_env_value(None), off);
    assert_eq!(LinuxOptions::from_env_value(Some(OsStr::new("0"))), off);
    assert_eq!(LinuxOptions::from_env_value(Some(OsStr::new(""))), off);
    let on = LinuxOptions::from_env_value(Some(OsStr::new("1")));
    assert!(on.force_walk && on.force_read_write);
}

#[test]
fn splice_to_pipe_is_byte_exact_and_leaves_file_position() {
    for b in backends() {
        let (mut f, data) = data_file();
        f.seek(SeekFrom::Start(0)).expect("seek");
        let (r, w) = nonblocking_pipe();
        assert_eq!(sys::dest_kind(w.as_fd()).expect("kind"), DestKind::Pipe);

        let got = b.send_file(chunk(&f, 1234, 5000), w.as_fd(), DestKind::Pipe);
        assert_eq!(got.expect("send"), Moved::Bytes(5000), "{}", b.name());
        assert_eq!(drain(r.as_fd(), 5000), &data[1234..6234]);

        // A chunk running past the end moves what is there.
        let tail = SIZE as u64 - 100;
        let got = b.send_file(chunk(&f, tail, 1000), w.as_fd(), DestKind::Pipe);
        assert_eq!(got.expect("send"), Moved::Bytes(100), "{}", b.name());
        assert_eq!(drain(r.as_fd(), 100), &data[SIZE - 100..]);

        // At or past the end: the file ended early.
        for at in [SIZE as u64, SIZE as u64 + 10] {
            let got = b.send_file(chunk(&f, at, 10), w.as_fd(), DestKind::Pipe);
            assert_eq!(got.expect("send"), Moved::Bytes(0), "{}", b.name());
        }
        // The explicit offsets never moved the file's own position.
        assert_eq!(f.stream_position().expect("pos"), 0);
    }
}

#[test]
fn full_pipe_is_destination_full() {
    for b in backends() {
        let (f, data) = data_file();
        let (r, w) = nonblocking_pipe();
        let mut sent = 0usize;
        let mut full = false;
        // A default pipe holds 64 KiB; the file is larger.
        for _ in 0..1000 {
            match b
                .send_file(
                    chunk(&f, sent as u64, SIZE - sent),
                    w.as_fd(),
                    DestKind::Pipe,
                )
                .expect("send")
            {
                Moved::Bytes(n) => {
                    assert!(n > 0, "file ended early at {sent}");
                    sent += n;
                }
                Moved::DestinationFull => {
                    full = true;
                    break;
                }
                Moved::NotCached => panic!("not asked for"),
            }
        }
        assert!(full, "{}: pipe never filled ({sent} bytes)", b.name());
        assert!(sent < SIZE);
        assert_eq!(drain(r.as_fd(), sent), &data[..sent]);
    }
}

#[test]
fn sendfile_to_unix_stream_socket() {
    for b in backends() {
        let (f, data) = data_file();
        let (tx, mut rx) = UnixStream::pair().expect("socketpair");
        tx.set_nonblocking(true).expect("nonblock");
        let kind = sys::dest_kind(tx.as_fd()).expect("kind");
        assert_eq!(kind, DestKind::StreamSocket);

        let got = b.send_file(chunk(&f, 777, 3000), tx.as_fd(), kind);
        assert_eq!(got.expect("send"), Moved::Bytes(3000), "{}", b.name());
        let mut buf = vec![0u8; 3000];
        rx.read_exact(&mut buf).expect("read");
        assert_eq!(buf, &data[777..3777]);

        let got = b.send_file(chunk(&f, SIZE as u64, 10), tx.as_fd(), kind);
        assert_eq!(got.expect("send"), Moved::Bytes(0));

        // Fill the socket until it says so.
        let mut full = false;
        for _ in 0..10_000 {
            match b
                .send_file(chunk(&f, 0, SIZE), tx.as_fd(), kind)
                .expect("send")
            {
                Moved::Bytes(n) => assert!(n > 0),
                Moved::DestinationFull => {
                    full = true;
                    break;
                }
                Moved::NotCached => panic!("not asked for"),
            }
        }
        assert!(full, "{}: socket never filled", b.name());
    }
}

#[test]
fn sendfile_to_regular_file() {
    for b in backends() {
        let (f, data) = data_file();
        let mut out = tempfile::tempfile().expect("tempfile");
        let kind = sys::dest_kind(out.as_fd()).expect("kind");
        assert_eq!(kind, DestKind::RegularFile);

        let mut sent = 0usize;
        let want = 100_000usize;
        while sent < want {
            match b
                .send_file(chunk(&f, 5 + sent as u64, want - sent), out.as_fd(), kind)
                .expect("send")
            {
                Moved::Bytes(n) => {
                    assert!(n > 0);
                    sent += n;
                }
                other => panic!("{}: {other:?} to a regular file", b.name()),
            }
        }
        out.seek(SeekFrom::Start(0)).expect("seek");
        let mut buf = Vec::new();
        out.read_to_end(&mut buf).expect("read");
        assert_eq!(buf, &data[5..5 + want]);

        let got = b.send_file(chunk(&f, SIZE as u64, 10), out.as_fd(), kind);
        assert_eq!(got.expect("send"), Moved::Bytes(0));
    }
}

#[test]
fn sendfile_to_append_only_file_falls_back() {
    let b = LinuxBackend::new();
    let (f, data) = data_file();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("out");
    std::fs::write(&path, b"x").expect("write");
    let out = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .expect("open");
    let got = b.send_file(chunk(&f, 0, 1000), out.as_fd(), DestKind::RegularFile);
    assert_eq!(got.expect("send"), Moved::Bytes(1000));
    let written = std::fs::read(&path).expect("read");
    assert_eq!(&written[..1], b"x");
    assert_eq!(&written[1..], &data[..1000]);
}

#[test]
fn write_bytes_with_more_to_sockets_and_pipes() {
    let b = LinuxBackend::new();
    let (tx, mut rx) = UnixStream::pair().expect("socketpair");
    tx.set_nonblocking(true).expect("nonblock");
    let n = b
        .write_bytes(b"HEAD", true, tx.as_fd(), DestKind::StreamSocket)
        .expect("send MSG_MORE");
    assert_eq!(n, 4);
    let (f, data) = data_file();
    let mut c = chunk(&f, 0, 10);
    c.more_follows = true;
    assert_eq!(
        b.send_file(c, tx.as_fd(), DestKind::StreamSocket)
            .expect("send"),
        Moved::Bytes(10)
    );
    let n = b
        .write_bytes(b"TAIL", false, tx.as_fd(), DestKind::StreamSocket)
        .expect("send");
    assert_eq!(n, 4);
    let mut buf = [0u8; 18];
    rx.read_exact(&mut buf).expect("read");
    assert_eq!(&buf[..4], b"HEAD");
    assert_eq!(&buf[4..14], &data[..10]);
    assert_eq!(&buf[14..], b"TAIL");

    // A closed peer is EPIPE, not a signal.
    drop(rx);
    let e = b
        .write_bytes(b"x", false, tx.as_fd(), DestKind::StreamSocket)
        .expect_err("peer gone");
    assert_eq!(e.raw_os_error(), Some(libc::EPIPE));

    let (r, w) = nonblocking_pipe();
    assert_eq!(
        b.write_bytes(b"abc", true, w.as_fd(), DestKind::Pipe)
            .expect("write"),
        3
    );
    assert_eq!(drain(r.as_fd(), 3), b"abc");
}

/// Whether the page holding `offset` is in the page cache, by `mincore(2)`
/// on a mapping: unlike an `RWF_NOWAIT` read, asking does not start a read.
fn resident(file: &std::fs::File, offset: u64) -> bool {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64;
    let start = offset / page * page;
    // SAFETY: a fresh private read-only mapping of one page of our file,
    // unmapped below; mincore writes one byte into vec.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            page as usize,
            libc::PROT_READ,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            start as libc::off_t,
        );
        assert_ne!(p, libc::MAP_FAILED, "mmap: {}", io::Error::last_os_error());
        let mut vec = [0u8; 1];
        let r = libc::mincore(p, page as usize, vec.as_mut_ptr());
        libc::munmap(p, page as usize);
        assert_eq!(r, 0, "mincore: {}", io::Error::last_os_error());
        vec[0] & 1 == 1
    }
}

/// Drops the file's pages in the range from the page cache; false if this
/// filesystem (tmpfs, some overlays) keeps them anyway.
fn evict(file: &std::fs::File, offset: i64, len: i64) -> bool {
    file.sync_all().expect("fsync");
    // SAFETY: plain advice on our own descriptor.
    let r =
        unsafe { libc::posix_fadvise(file.as_raw_fd(), offset, len, libc::POSIX_FADV_DONTNEED) };
    r == 0 && !resident(file, offset as u64)
}

/// Whether this filesystem answers `RWF_NOWAIT` reads at all.
fn has_nowait(file: &std::fs::File) -> bool {
    let mut byte = [0u8; 1];
    !matches!(
        preadv2_nowait(file.as_fd(), &mut byte, 0),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP) | Some(libc::EINVAL) | Some(libc::ENOSYS))
    )
}

/// What [`cold_probe`] saw.
#[derive(Debug, PartialEq, Eq)]
enum ColdProbe {
    /// The probe said `NotCached` at least once.
    Missed,
    /// Plain `RWF_NOWAIT` reads of the same freshly dropped page missed
    /// [`PLAIN_MISSES_FOR_A_VERDICT`] times before the probe ever did: the
    /// probe is broken.
    NeverMissed,
    /// Too few plain `RWF_NOWAIT` reads missed for a verdict: this disk
    /// completes reads at once, and a miss cannot be seen here.
    NotObservable,
    /// `make_cold` could not drop the pages.
    CannotEvict,
}

/// Probes cold data up to [`COLD_TRIES`] times, each after a fresh
/// `make_cold`, and on every other try reads the byte at `offset` of
/// `file` with a plain `RWF_NOWAIT` read instead, to tell a probe that
/// never misses from a disk on which nothing misses.
///
/// `RWF_NOWAIT` promises only not to wait: for a page that is not cached it
/// starts the read, and where the disk completes reads at once (this VM's
/// answers from the host's cache: 140 of 200 `RWF_NOWAIT` reads of a page
/// just dropped returned its data, and at times all of them do) it finds
/// the page there and returns it, and the probe rightly calls the chunk
/// cached. `probe` makes its own destination: a pipe holding spliced pages
/// keeps them from being dropped again.
///
/// The verdict is a count, not a rate: where misses are rare, one plain
/// miss among 25 hitting probes says nothing, but [`PLAIN_MISSES_FOR_A_VERDICT`]
/// plain misses before any probe miss do (the probe reads at least the page
/// the plain read does, so each miss is at least as likely to be the
/// probe's: a working probe loses that race about once in 2^16).
fn cold_probe(
    file: &std::fs::File,
    offset: u64,
    mut make_cold: impl FnMut() -> bool,
    mut probe: impl FnMut() -> Moved,
) -> ColdProbe {
    let mut plain_misses = 0;
    for i in 0..COLD_TRIES {
        if !make_cold() {
            return ColdProbe::CannotEvict;
        }
        if i % 2 == 1 {
            let mut byte = [0u8; 1];
            if let Err(e) = preadv2_nowait(file.as_fd(), &mut byte, offset) {
                assert_eq!(e.kind(), io::ErrorKind::WouldBlock, "plain read: {e}");
                plain_misses += 1;
                if plain_misses == PLAIN_MISSES_FOR_A_VERDICT {
                    return ColdProbe::NeverMissed;
                }
                // The miss started a read. Wait for it: `make_cold` skips a
                // page still under I/O while `mincore` already calls it
                // absent, and the page arriving then would make the next
                // probe hit.
                sys::pread(file.as_fd(), &mut byte, offset).expect("pread");
            }
        } else if probe() == Moved::NotCached {
            return ColdProbe::Missed;
        }
    }
    ColdProbe::NotObservable
}

/// Checks what [`cold_probe`] saw; false (with a note) where the test
/// cannot go on.
fn cold_probe_missed(seen: ColdProbe, what: &str) -> bool {
    match seen {
        ColdProbe::Missed => true,
        ColdProbe::NeverMissed => panic!(
            "{what}: {PLAIN_MISSES_FOR_A_VERDICT} plain RWF_NOWAIT reads missed, the probe never"
        ),
        ColdProbe::NotObservable => {
            eprintln!(
                "note: fewer than {PLAIN_MISSES_FOR_A_VERDICT} of {} RWF_NOWAIT reads of dropped \
                 pages missed, and no probe; {what} not checked",
                COLD_TRIES / 2
            );
            false
        }
        ColdProbe::CannotEvict => {
            eprintln!(
                "note: pages cannot be dropped here (or lack RWF_NOWAIT); {what} not checked"
            );
            false
        }
    }
}

/// Tries of [`cold_probe`], half of them probes: enough for the verdict
/// even where only one read in ten misses.
const COLD_TRIES: usize = 400;

/// Plain misses with no probe miss among them that say the probe is broken.
const PLAIN_MISSES_FOR_A_VERDICT: usize = 16;

fn disk_file(dir: &tempfile::TempDir, len: usize) -> (std::fs::File, Vec<u8>) {
    let data = pattern(len);
    let path = dir.path().join("cold");
    std::fs::write(&path, &data).expect("write");
    (std::fs::File::open(&path).expect("open"), data)
}

/// A directory on a disk-backed filesystem if there is one: the system temp
/// directory is often tmpfs, whose pages cannot be evicted. `/var/tmp` is
/// meant to be on disk; the build directory usually is.
fn disk_tempdir() -> tempfile::TempDir {
    let candidates = [
        Some(std::path::PathBuf::from("/var/tmp")),
        std::env::var_os("CARGO_TARGET_DIR").map(std::path::PathBuf::from),
    ];
    candidates
        .into_iter()
        .flatten()
        .find_map(|d| tempfile::tempdir_in(d).ok())
        .unwrap_or_else(|| tempfile::tempdir().expect("tempdir"))
}

#[test]
fn evicted_file_is_not_cached_until_prefetched() {
    let b = LinuxBackend::new();
    let dir = disk_tempdir();
    let len = 1 << 20;
    let (f, data) = disk_file(&dir, len);
    let (r, w) = nonblocking_pipe();
    let mut c = chunk(&f, 0, 4096);
    c.nowait = true;

    let seen = cold_probe(
        &f,
        0,
        || has_nowait(&f) && evict(&f, 0, 0),
        || {
            let (_r, w) = nonblocking_pipe();
            b.send_file(c, w.as_fd(), DestKind::Pipe).expect("send")
        },
    );
    if !cold_probe_missed(seen, "NotCached for an evicted page") {
        // Still: nowait on a cached file moves data.
        let mut byte = [0u8; 1];
        sys::pread(f.as_fd(), &mut byte, 0).expect("pread");
        assert_eq!(
            b.send_file(c, w.as_fd(), DestKind::Pipe).expect("send"),
            Moved::Bytes(4096)
        );
        return;
    }
    b.prefetch(f.as_fd(), 0, 4096).expect("prefetch");
    assert_eq!(
        b.send_file(c, w.as_fd(), DestKind::Pipe).expect("send"),
        Moved::Bytes(4096)
    );
    assert_eq!(drain(r.as_fd(), 4096), &data[..4096]);
}

#[test]
fn probe_checks_the_last_page_too() {
    let b = LinuxBackend::new();
    let dir = disk_tempdir();
    let len = 4 << 20;
    let (f, _) = disk_file(&dir, len);
    let half = (len / 2) as i64;
    let mut c = chunk(&f, 0, len);
    c.nowait = true;
    let mut readahead_took_all = false;
    let seen = cold_probe(
        &f,
        (len - 1) as u64,
        || {
            if !has_nowait(&f) || !evict(&f, 0, 0) || !evict(&f, half, half) {
                return false;
            }
            // Bring in the first page only (readahead may add a little
            // more, far less than half the file).
            let mut byte = [0u8; 1];
            sys::pread(f.as_fd(), &mut byte, 0).expect("pread");
            readahead_took_all = resident(&f, (len - 1) as u64);
            !readahead_took_all
        },
        || {
            let (_r, w) = nonblocking_pipe();
            b.send_file(c, w.as_fd(), DestKind::Pipe).expect("send")
        },
    );
    if readahead_took_all {
        eprintln!("note: readahead brought in the whole file");
    }
    if !cold_probe_missed(seen, "the last-page probe") {
        return;
    }
    // The first page alone is cached.
    let (_r, w) = nonblocking_pipe();
    c.len = 1;
    assert_eq!(
        b.send_file(c, w.as_fd(), DestKind::Pipe).expect("send"),
        Moved::Bytes(1)
    );
}

#[test]
fn prefetch_brings_a_range_in() {
    let b = LinuxBackend::new();
    let dir = disk_tempdir();
    let (f, _) = disk_file(&dir, 1 << 20);
    evict(&f, 0, 0);
    b.prefetch(f.as_fd(), 0, 1 << 20).expect("prefetch");
    b.prefetch(f.as_fd(), 2 << 20, 4096)
        .expect("prefetch past the end");
    b.prefetch(f.as_fd(), 0, 0).expect("prefetch nothing");
    for at in [0u64, 1 << 19, (1 << 20) - 1] {
        assert!(resident(&f, at), "page at {at} not cached after prefetch");
    }
}

#[test]
fn sendfile_to_null_waits_for_the_pages() {
    let dir = disk_tempdir();
    let (f, _) = disk_file(&dir, 1 << 20);
    if !evict(&f, 0, 0) {
        return;
    }
    let null = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/null")
        .expect("/dev/null");
    super::prefetch_to_null(f.as_fd(), null.as_fd(), 0, 1 << 20).expect("sendfile to null");
    for at in [0u64, 1 << 19, (1 << 20) - 1] {
        assert!(resident(&f, at), "page at {at} not cached after prefetch");
    }
}

struct Tree {
    tmp: tempfile::TempDir,
    root: OwnedFd,
}

/// tmp/outside/secret and tmp/root/{file, dir/inner, links}.
fn tree() -> Tree {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("root");
    std::fs::create_dir_all(tmp.path().join("outside")).expect("mkdir");
    std::fs::create_dir_all(root.join("dir")).expect("mkdir");
    std::fs::write(tmp.path().join("outside/secret"), b"secret").expect("write");
    std::fs::write(root.join("file"), b"top").expect("write");
    std::fs::write(root.join("dir/inner"), b"inner").expect("write");
    symlink(tmp.path().join("outside/secret"), root.join("abs_out")).expect("symlink");
    symlink("../outside/secret", root.join("rel_out")).expect("symlink");
    symlink("../file", root.join("dir/rel_in")).expect("symlink");
    let c = CString::new(root.as_os_str().as_encoded_bytes()).expect("cstring");
    let fd = sys::open_dir(&c).expect("open root");
    Tree { tmp, root: fd }
}

/// Whether `fd` has `O_NONBLOCK` on its open file description.
fn is_nonblocking(fd: BorrowedFd<'_>) -> bool {
    // SAFETY: plain fcntl on a borrowed descriptor.
    let fl = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    assert!(fl >= 0, "F_GETFL");
    fl & libc::O_NONBLOCK != 0
}

/// Whether `fd`'s filesystem is one [`opens_never_wait`] counts as local.
fn on_local_fs(fd: BorrowedFd<'_>) -> bool {
    let mut sfs = std::mem::MaybeUninit::<libc::statfs>::zeroed();
    // SAFETY: fstatfs writes one statfs through the pointer.
    assert_eq!(
        unsafe { libc::fstatfs(fd.as_raw_fd(), sfs.as_mut_ptr()) },
        0
    );
    // SAFETY: written by the successful call.
    opens_never_wait(unsafe { sfs.assume_init() }.f_type as u32)
}

/// An opened file may keep `O_NONBLOCK` only on a local filesystem, whose
/// regular files ignore it; anywhere else its reads could answer `EAGAIN`.
fn assert_blocking_where_it_matters(fd: BorrowedFd<'_>, p: &str) {
    assert!(
        !is_nonblocking(fd) || on_local_fs(fd),
        "{p}: O_NONBLOCK left on a file whose filesystem may honour it"
    );
}

#[test]
fn a_file_on_a_local_filesystem_keeps_its_o_nonblock_and_one_elsewhere_loses_it() {
    let t = tree();
    let c = CString::new("file").expect("cstring");
    let b = LinuxBackend::new();
    let (fd, st) = b.open_beneath(t.root.as_fd(), &c).expect("open");
    let mut buf = [0u8; 8];
    if !on_local_fs(fd.as_fd()) {
        eprintln!("note: the temporary directory is not on a local filesystem");
        assert!(!is_nonblocking(fd.as_fd()), "O_NONBLOCK left on");
        return;
    }
    // The open learnt the filesystem: the loop's cached open keeps the flag
    // (no ioctl), and the file reads as any other.
    assert!(b.facts().opens_never_wait(st.st_dev));
    let fd = match b.open_beneath_cached(t.root.as_fd(), &c) {
        OpenAttempt::Done(r) => r.expect("cached open").0,
        // Evicted meanwhile (memory pressure): the server's next step.
        OpenAttempt::WouldBlock => b.open_beneath(t.root.as_fd(), &c).expect("open").0,
    };
    assert!(
        is_nonblocking(fd.as_fd()),
        "the flag was cleared with a call"
    );
    assert_eq!(sys::pread(fd.as_fd(), &mut buf, 0).expect("pread"), 3);
    assert_eq!(&buf[..3], b"top");
    // A filesystem counted as remote (as NFS or FUSE would be) clears it.
    let remote = LinuxBackend::new();
    remote.facts().mark_remote(st.st_dev);
    let (fd, _) = remote.open_beneath(t.root.as_fd(), &c).expect("open");
    assert!(!remote.facts().opens_never_wait(st.st_dev));
    assert!(
        !is_nonblocking(fd.as_fd()),
        "O_NONBLOCK left on a remote file"
    );
}

fn open_errno(b: &LinuxBackend, t: &Tree, p: &str, cached: bool) -> Result<Vec<u8>, i32> {
    let c = CString::new(p).expect("cstring");
    let opened = if cached {
        match b.open_beneath_cached(t.root.as_fd(), &c) {
            OpenAttempt::Done(r) => r,
            // Evicted meanwhile (memory pressure): the server's next step.
            OpenAttempt::WouldBlock => b.open_beneath(t.root.as_fd(), &c),
        }
    } else {
        b.open_beneath(t.root.as_fd(), &c)
    };
    match opened {
        Ok((fd, given)) => {
            let st = sys::fstat(fd.as_fd()).expect("fstat");
            assert!(beneath::same_file(&given, &st), "{p}: stat of another file");
            assert_eq!(given.st_size, st.st_size, "{p}: stale stat");
            if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
                return Ok(b"<dir>".to_vec());
            }
            assert_blocking_where_it_matters(fd.as_fd(), p);
            // SAFETY: plain fcntl on our descriptor.
            let fl = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
            assert_eq!(fl & libc::O_ACCMODE, libc::O_RDONLY);
            let mut buf = vec![0u8; 64];
            let n = sys::pread(fd.as_fd(), &mut buf, 0).expect("pread");
            buf.truncate(n);
            Ok(buf)
        }
        Err(e) => Err(e.raw_os_error().unwrap_or(0)),
    }
}

fn check_confinement(b: &LinuxBackend, cached: bool) {
    let t = tree();
    let o = |p: &str| open_errno(b, &t, p, cached);
    assert_eq!(o("file"), Ok(b"top".to_vec()));
    assert_eq!(o("/file"), Ok(b"top".to_vec()), "leading / is the root");
    assert_eq!(o("/dir/inner"), Ok(b"inner".to_vec()));
    assert_eq!(o("dir/rel_in"), Ok(b"top".to_vec()), "symlink inside");
    assert_eq!(o("dir/../file"), Ok(b"top".to_vec()), ".. inside");
    assert_eq!(o(".."), Err(libc::EXDEV));
    assert_eq!(o("../outside/secret"), Err(libc::EXDEV));
    assert_eq!(o("/../outside/secret"), Err(libc::EXDEV));
    assert_eq!(o("abs_out"), Err(libc::EXDEV), "absolute symlink out");
    assert_eq!(o("rel_out"), Err(libc::EXDEV), "relative symlink out");
    assert_eq!(o("missing"), Err(libc::ENOENT));
    assert_eq!(o("dir/missing"), Err(libc::ENOENT));
    assert_eq!(o(""), Err(libc::ENOENT));
    assert_eq!(o("file/x"), Err(libc::ENOTDIR));
    // Only regular files open: directories are EINVAL.
    assert_eq!(o("dir"), Err(libc::EINVAL));
    assert_eq!(o("."), Err(libc::EINVAL));
    assert!(t.tmp.path().join("outside/secret").exists());
}

#[test]
fn open_beneath_with_openat2() {
    check_confinement(&LinuxBackend::new(), false);
}

/// The loop's cache-only attempt answers the same table (a tree just made
/// is in the caches).
#[test]
fn open_beneath_cached_answers_as_open_beneath() {
    check_confinement(&LinuxBackend::new(), true);
    let walk = LinuxBackend::with_options(LinuxOptions {
        force_walk: true,
        force_read_write: false,
    });
    check_confinement(&walk, true);
}

/// With the directory entries and inodes dropped from memory
/// (`drop_caches` 2, root only: skipped otherwise), the cache-only open
/// opens nothing and says it would wait; the blocking open then opens the
/// file and brings the path in, and the next cache-only attempt is done.
#[test]
fn a_lookup_not_in_the_caches_would_block_and_opens_nothing() {
    let t = tree();
    std::fs::create_dir_all(t.tmp.path().join("root/cold/deeper")).expect("mkdir");
    std::fs::write(t.tmp.path().join("root/cold/deeper/f"), b"cold").expect("write");
    if std::fs::write("/proc/sys/vm/drop_caches", "2").is_err() {
        eprintln!("skipped: cannot write /proc/sys/vm/drop_caches (not root?)");
        return;
    }
    let b = LinuxBackend::new();
    // The filesystem learnt first, so that only the caches decide below.
    let (known, st) = b
        .open_beneath(t.root.as_fd(), c"file")
        .expect("open of a warm file");
    drop(known);
    if !b.facts().opens_never_wait(st.st_dev) {
        eprintln!("skipped: the temporary directory's filesystem is not a local one");
        return;
    }
    let path = CString::new("cold/deeper/f").expect("cstring");
    match b.open_beneath_cached(t.root.as_fd(), &path) {
        OpenAttempt::WouldBlock => {}
        OpenAttempt::Done(r) => panic!("answered from evicted caches: {:?}", r.map(|(fd, _)| fd)),
    }
    // By name, not by count: the other tests of this binary open and close
    // descriptors on their own threads meanwhile.
    let cold = t
        .tmp
        .path()
        .join("root/cold")
        .canonicalize()
        .expect("canonical");
    assert_eq!(
        descriptors_under(&cold),
        Vec::<PathBuf>::new(),
        "nothing left open"
    );
    let (fd, st) = b
        .open_beneath(t.root.as_fd(), &path)
        .expect("blocking open");
    assert_eq!(st.st_size, 4);
    // Held open, the file pins its path's entries against memory pressure.
    match b.open_beneath_cached(t.root.as_fd(), &path) {
        OpenAttempt::Done(r) => assert_eq!(r.expect("cached open").1.st_size, 4),
        OpenAttempt::WouldBlock => panic!("the path was just looked up"),
    }
    drop(fd);
}

/// What this process's descriptors name at or beneath `dir`.
fn descriptors_under(dir: &Path) -> Vec<PathBuf> {
    let entries = std::fs::read_dir("/proc/self/fd").expect("fd dir");
    entries
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.starts_with(dir))
        .collect()
}

#[test]
fn open_beneath_with_forced_walk() {
    let b = LinuxBackend::with_options(LinuxOptions {
        force_walk: true,
        force_read_write: false,
    });
    check_confinement(&b, false);
}

#[test]
fn backend_names() {
    assert_eq!(new_backend_for_test(false).name(), "linux-splice");
    assert_eq!(new_backend_for_test(true).name(), "linux-read-write");
}

fn new_backend_for_test(fallback: bool) -> Backend {
    let v = if fallback { "1" } else { "0" };
    Backend::with_options(LinuxOptions::from_env_value(Some(OsStr::new(v))))
}

/// A refusal remembered for one filesystem stops the probe for files there
/// and only there: a cold file elsewhere is still answered `NotCached`.
#[test]
fn a_refusing_filesystem_does_not_switch_the_probe_off_elsewhere() {
    let dir = disk_tempdir();
    let (f, _) = disk_file(&dir, 1 << 20);
    if !has_nowait(&f) || !evict(&f, 0, 0) {
        eprintln!(
            "note: {} cannot drop cached pages or lacks RWF_NOWAIT; per-device memory not checked",
            dir.path().display()
        );
        return;
    }
    let dev = sys::fstat(f.as_fd()).expect("fstat").st_dev;
    let mut c = chunk(&f, 0, 4096);
    c.nowait = true;

    // This filesystem refused: its files count as cached, unprobed.
    let here = LinuxBackend::new();
    let (r, w) = nonblocking_pipe();
    assert!(here.facts().set_nowait_refused(dev));
    assert!(!resident(&f, 0), "still cold before the send");
    assert_eq!(
        here.send_file(c, w.as_fd(), DestKind::Pipe).expect("send"),
        Moved::Bytes(4096)
    );
    // The pipe holds references to the spliced pages: drop it so that they
    // can be dropped from the cache again.
    drop((r, w));

    // Another filesystem refused: this one is still probed.
    let elsewhere = LinuxBackend::new();
    assert!(elsewhere.facts().set_nowait_refused(dev.wrapping_add(1)));
    let seen = cold_probe(
        &f,
        0,
        || evict(&f, 0, 0),
        || {
            let (_r, w) = nonblocking_pipe();
            elsewhere
                .send_file(c, w.as_fd(), DestKind::Pipe)
                .expect("send")
        },
    );
    assert!(!elsewhere.facts().no_nowait());
    cold_probe_missed(seen, "the probe on the other filesystem");
}

/// The table tests/hostile.rs also runs through the daemon.
#[path = "../../tests/common/errno_table.rs"]
mod errno_table;

/// What one implementation answers for `p` beneath `root`.
fn answer(
    open: &dyn Fn(BorrowedFd<'_>, &CStr) -> io::Result<OwnedFd>,
    root: BorrowedFd<'_>,
    p: &str,
) -> errno_table::Expect {
    let c = CString::new(p).expect("cstring");
    match open(root, &c) {
        Ok(fd) => {
            let st = sys::fstat(fd.as_fd()).expect("fstat");
            assert!(sys::is_regular(&st), "{p}: not a regular file opened");
            assert_blocking_where_it_matters(fd.as_fd(), p);
            let mut buf = vec![0u8; 64];
            let n = sys::pread(fd.as_fd(), &mut buf, 0).expect("pread");
            buf.truncate(n);
            // The table's contents are 'static; find the one read.
            let known: [&'static [u8]; 3] =
                [errno_table::TOP, errno_table::INNER, errno_table::DEEP];
            match known.iter().find(|k| **k == buf.as_slice()) {
                Some(k) => errno_table::Expect::Data(k),
                None => panic!("{p}: unexpected contents {buf:?}"),
            }
        }
        Err(e) => errno_table::Expect::Errno(e.raw_os_error().unwrap_or(0)),
    }
}

fn check_table(root: BorrowedFd<'_>, cases: &[(String, errno_table::Expect)]) {
    let openat2 = LinuxBackend::new();
    // Each open's stat must be the descriptor's own.
    let checked = |r: io::Result<(OwnedFd, libc::stat)>| {
        r.map(|(fd, given)| {
            let st = sys::fstat(fd.as_fd()).expect("fstat");
            assert!(beneath::same_file(&given, &st), "stat of another file");
            assert!(sys::is_regular(&given), "stat not of a regular file");
            fd
        })
    };
    let by_openat2 = |r: BorrowedFd<'_>, p: &CStr| checked(openat2.open_beneath(r, p));
    let by_walk = |r: BorrowedFd<'_>, p: &CStr| checked(beneath::open_beneath_by_walk(r, p));
    let mut wrong = Vec::new();
    for (p, want) in cases {
        let a = answer(&by_openat2, root, p);
        let w = answer(&by_walk, root, p);
        if a != *want || w != *want {
            let shown: String = p.chars().take(60).collect();
            wrong.push(format!(
                "{shown:?} ({} bytes): want {want:?}, openat2 {a:?}, walk {w:?}",
                p.len()
            ));
        }
    }
    assert!(wrong.is_empty(), "disagreements:\n{}", wrong.join("\n"));
}

/// Row 11 of issue 13: `openat2` and the checked walk answer every path of
/// one table with the same errno (and open the same files).
#[test]
fn openat2_and_the_walk_answer_the_table_alike() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("root");
    std::fs::create_dir(&root).expect("mkdir");
    errno_table::build(&root, &tmp.path().join("outside"));
    let c = CString::new(root.as_os_str().as_encoded_bytes()).expect("cstring");
    let fd = sys::open_dir(&c).expect("open root");
    check_table(fd.as_fd(), &errno_table::cases());
    // Longer than any request may be.
    let long = "./".repeat(2048) + "file";
    check_table(
        fd.as_fd(),
        &[(long, errno_table::Expect::Errno(libc::ENAMETOOLONG))],
    );
}

/// The same under ROOT=/, where /proc's magic links are reachable.
#[test]
fn openat2_and_the_walk_answer_alike_under_slash() {
    let fd = sys::open_dir(c"/").expect("open /");
    check_table(fd.as_fd(), &errno_table::slash_cases());
}

/// A filesystem is learnt by its first open, off the loop: until then the
/// cache-only attempt says it would wait; a local one (the temporary
/// directory's) then opens on the loop.
#[test]
fn opens_stay_on_the_loop_once_the_filesystem_is_known_to_answer_locally() {
    let t = tree();
    let b = LinuxBackend::new();
    let path = CString::new("file").expect("cstring");
    assert!(matches!(
        b.open_beneath_cached(t.root.as_fd(), &path),
        OpenAttempt::WouldBlock
    ));
    let (fd, st) = b.open_beneath(t.root.as_fd(), &path).expect("open");
    let mut sfs = std::mem::MaybeUninit::<libc::statfs>::zeroed();
    // SAFETY: fstatfs writes one statfs through the pointer.
    assert_eq!(
        unsafe { libc::fstatfs(fd.as_raw_fd(), sfs.as_mut_ptr()) },
        0
    );
    // SAFETY: written by the successful call.
    let local = opens_never_wait(unsafe { sfs.assume_init() }.f_type as u32);
    assert_eq!(
        b.facts().opens_never_wait(st.st_dev),
        local,
        "learnt as fstatfs says"
    );
    assert!(b.facts().knows(st.st_dev), "learnt");
    assert_eq!(
        b.facts().knows(st.st_dev) && !b.facts().opens_never_wait(st.st_dev),
        !local,
        "learnt as fstatfs says"
    );
    match b.open_beneath_cached(t.root.as_fd(), &path) {
        OpenAttempt::Done(r) if local => assert_eq!(r.expect("open").1.st_size, 3),
        OpenAttempt::WouldBlock if !local => {}
        other => panic!("local {local}: {other:?}"),
    }
}

#[test]
fn only_filesystems_known_to_be_local_answer_opens_on_the_loop() {
    for local in [0xEF53, 0x5846_5342, 0x9123_683E, 0x0102_1994, 0x794C_7630] {
        assert!(opens_never_wait(local), "{local:#x}");
    }
    // NFS, CIFS/SMB2, FUSE, 9p, Ceph, procfs, and an unknown type.
    for other in [
        0x6969,
        0xFE53_4D42,
        0x6573_5546,
        0x0102_1997,
        0x00C3_6400,
        0x9FA0,
        0x1234_5678,
    ] {
        assert!(!opens_never_wait(other), "{other:#x}");
    }
}
