//! Tests of the shells without a daemon: the request socket is one end of a
//! socket pair, and the test decodes what arrived with the daemon's decoder.

use super::*;
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

fn pair() -> (UnixDatagram, UnixDatagram) {
    UnixDatagram::pair().unwrap()
}

fn recv(sock: &UnixDatagram) -> (Request, Vec<OwnedFd>) {
    assert!(sys::wait_readable(sock.as_fd(), Duration::from_secs(5)).unwrap());
    let mut buf = vec![0u8; proto::MAX_REQUEST_LEN + 1];
    let got = sys::recv_with_fds(sock.as_fd(), &mut buf).unwrap();
    (Request::decode(&buf[..got.len]).unwrap(), got.fds)
}

fn nothing_sent(sock: &UnixDatagram) -> bool {
    !sys::wait_readable(sock.as_fd(), Duration::from_millis(0)).unwrap()
}

fn take(fd: c_int) -> OwnedFd {
    assert!(fd >= 0, "errno {}", errno::errno());
    // SAFETY: the shell returned a new descriptor we now own.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

fn is_nonblocking(fd: &OwnedFd) -> bool {
    // SAFETY: plain fcntl on an open descriptor.
    let fl = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    fl & libc::O_NONBLOCK != 0
}

#[test]
fn read_sends_one_request_with_the_pipe() {
    let (a, b) = pair();
    let p = CString::new("dir/file").unwrap();
    // SAFETY: the strings are NUL-terminated and live for the call.
    let fd = take(unsafe { sfd_read(a.as_raw_fd(), p.as_ptr(), 7, 9, true) });
    assert!(is_nonblocking(&fd));
    let (req, fds) = recv(&b);
    assert_eq!(
        req,
        Request::Read {
            path: p.clone(),
            range: Range { offset: 7, len: 9 }
        }
    );
    assert_eq!(fds.len(), 1);
    // The write end we got is the one the returned descriptor reads.
    sys::write(fds[0].as_fd(), b"xy").unwrap();
    let mut buf = [0u8; 2];
    assert_eq!(sys::read(fd.as_fd(), &mut buf).unwrap(), 2);
    assert_eq!(&buf, b"xy");
    // The library kept no copy of the write end: EOF once ours is closed.
    drop(fds);
    assert_eq!(sys::read(fd.as_fd(), &mut buf).unwrap(), 0);

    // SAFETY: the strings are NUL-terminated and live for the call.
    let fd = take(unsafe { sfd_read(a.as_raw_fd(), p.as_ptr(), 0, 0, false) });
    assert!(!is_nonblocking(&fd));
    let _ = recv(&b);
}

#[test]
fn send_hdtr_carries_header_trailer_and_destination() {
    let (a, b) = pair();
    let (d1, _d2) = pair();
    let p = CString::new("f").unwrap();
    // SAFETY: the strings are NUL-terminated and live for the call.
    let fd = take(unsafe {
        sfd_send_hdtr(
            a.as_raw_fd(),
            p.as_ptr(),
            d1.as_raw_fd(),
            0,
            0,
            b"HEAD".as_ptr().cast(),
            4,
            b"TR".as_ptr().cast(),
            2,
            false,
        )
    });
    let (req, fds) = recv(&b);
    assert_eq!(
        req,
        Request::Send {
            path: p,
            range: Range::WHOLE,
            hdtr: HeaderTrailer {
                header: b"HEAD".to_vec(),
                trailer: b"TR".to_vec()
            }
        }
    );
    assert_eq!(fds.len(), 2);
    drop(fd);
}

#[test]
fn open_send_open_and_cancel_encode_the_txnid() {
    let (a, b) = pair();
    let (d1, _d2) = pair();
    let p = CString::new("f").unwrap();
    // SAFETY: the strings are NUL-terminated and live for the call.
    let _fd = take(unsafe { sfd_open(a.as_raw_fd(), p.as_ptr(), 3, 0, false) });
    let (req, fds) = recv(&b);
    assert_eq!(
        req,
        Request::Open {
            path: p,
            range: Range { offset: 3, len: 0 }
        }
    );
    assert_eq!(fds.len(), 1);
    assert!(sfd_send_open(a.as_raw_fd(), 0x1234_5678, d1.as_raw_fd()));
    let (req, fds) = recv(&b);
    assert_eq!(
        req,
        Request::SendOpen {
            txnid: 0x1234_5678,
            hdtr: HeaderTrailer::default()
        }
    );
    assert_eq!(fds.len(), 1);
    assert!(sfd_cancel(a.as_raw_fd(), 99));
    let (req, fds) = recv(&b);
    assert_eq!(req, Request::Cancel { txnid: 99 });
    assert!(fds.is_empty());
}

#[test]
fn bad_arguments_fail_with_errno_before_sending() {
    let (a, b) = pair();
    let s = a.as_raw_fd();
    let p = CString::new("f").unwrap();
    let check = |r: c_int, e: c_int| {
        assert_eq!(r, -1);
        assert_eq!(errno::errno(), e);
    };
    // SAFETY: every pointer is null (which the shell refuses, the point of
    // this test) or a live NUL-terminated string.
    unsafe {
        check(sfd_read(s, std::ptr::null(), 0, 0, false), libc::EINVAL);
        check(sfd_read(-1, p.as_ptr(), 0, 0, false), libc::EBADF);
        check(sfd_read(s, p.as_ptr(), -1, 0, false), libc::EINVAL);
        let long = CString::new(vec![b'a'; SFD_MAX_PATH_LEN + 1]).unwrap();
        check(sfd_read(s, long.as_ptr(), 0, 0, false), libc::ENAMETOOLONG);
        check(sfd_open(s, long.as_ptr(), 0, 0, false), libc::ENAMETOOLONG);
        check(sfd_send(s, p.as_ptr(), -1, 0, 0, false), libc::EBADF);
        check(
            sfd_send_hdtr(
                s,
                p.as_ptr(),
                s,
                0,
                0,
                std::ptr::null(),
                1,
                std::ptr::null(),
                0,
                false,
            ),
            libc::EINVAL,
        );
        let big = vec![0u8; SFD_MAX_HDTR_LEN];
        check(
            sfd_send_hdtr(
                s,
                p.as_ptr(),
                s,
                0,
                0,
                big.as_ptr().cast(),
                big.len(),
                big.as_ptr().cast(),
                1,
                false,
            ),
            libc::EMSGSIZE,
        );
        check(
            sfd_send_hdtr(
                s,
                p.as_ptr(),
                s,
                0,
                0,
                big.as_ptr().cast(),
                usize::MAX,
                big.as_ptr().cast(),
                2,
                false,
            ),
            libc::EMSGSIZE,
        );
        assert!(!sfd_send_open_hdtr(
            s,
            1,
            s,
            big.as_ptr().cast(),
            big.len() + 1,
            std::ptr::null(),
            0
        ));
        assert_eq!(errno::errno(), libc::EMSGSIZE);
        assert!(!sfd_send_open(s, 1, -5));
        assert_eq!(errno::errno(), libc::EBADF);
        assert!(!sfd_cancel(-1, 1));
        assert_eq!(errno::errno(), libc::EBADF);
        check(sfd_connect(std::ptr::null(), p.as_ptr()), libc::EINVAL);
        check(sfd_connect(p.as_ptr(), std::ptr::null()), libc::EINVAL);
        check(
            sfd_spawn(std::ptr::null(), p.as_ptr(), p.as_ptr(), 0, 0),
            libc::EINVAL,
        );
        check(
            sfd_spawn(p.as_ptr(), p.as_ptr(), p.as_ptr(), -1, 0),
            libc::EINVAL,
        );
        check(sfd_shutdown(0), libc::EINVAL);
        check(sfd_get_cmd(std::ptr::null()), libc::EINVAL);
        check(sfd_get_stat(std::ptr::null()), libc::EINVAL);
    }
    assert!(nothing_sent(&b));
}

#[test]
fn exactly_the_limits_are_accepted() {
    let (a, b) = pair();
    let s = a.as_raw_fd();
    let path = CString::new(vec![b'a'; SFD_MAX_PATH_LEN]).unwrap();
    let hdr = vec![b'h'; SFD_MAX_HDTR_LEN / 2];
    let trl = vec![b't'; SFD_MAX_HDTR_LEN - hdr.len()];
    // SAFETY: the strings are NUL-terminated and live for the call.
    let fd = unsafe {
        sfd_send_hdtr(
            s,
            path.as_ptr(),
            s,
            0,
            0,
            hdr.as_ptr().cast(),
            hdr.len(),
            trl.as_ptr().cast(),
            trl.len(),
            false,
        )
    };
    let _fd = take(fd);
    let (req, _) = recv(&b);
    match req {
        Request::Send { path: p, hdtr, .. } => {
            assert_eq!(p, path);
            assert_eq!(hdtr.header, hdr);
            assert_eq!(hdtr.trailer, trl);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn connect_to_a_missing_socket_fails() {
    let dir = CString::new("/nonexistent-sendfiled-dir").unwrap();
    let name = CString::new("x").unwrap();
    // SAFETY: the strings are NUL-terminated and live for the call.
    assert_eq!(unsafe { sfd_connect(dir.as_ptr(), name.as_ptr()) }, -1);
    assert_eq!(errno::errno(), libc::ENOENT);
    let long = CString::new(vec![b'd'; 200]).unwrap();
    // SAFETY: the strings are NUL-terminated and live for the call.
    assert_eq!(unsafe { sfd_connect(long.as_ptr(), name.as_ptr()) }, -1);
    assert_eq!(errno::errno(), libc::ENAMETOOLONG);
}

#[test]
fn unmarshal_checks_command_and_status() {
    let fi = FileInfo::ok(10, 1, 2, 3, 77).encode();
    let mut out = FileInfo::default();
    // SAFETY: the pointers are to live values of the types the call takes.
    assert!(unsafe { sfd_unmarshal_file_info(&mut out, fi.as_ptr().cast()) });
    assert_eq!(out.size, 10);
    assert_eq!(out.txnid, 77);
    assert_eq!(out.mtime, 2);
    // SAFETY: the pointers are to live values of the types the call takes.
    assert_eq!(unsafe { sfd_get_cmd(fi.as_ptr().cast()) }, 0x81);
    // SAFETY: the pointers are to live values of the types the call takes.
    assert_eq!(unsafe { sfd_get_stat(fi.as_ptr().cast()) }, 0);

    // An error header is only two bytes: nothing past it is read.
    let err = proto::error_header(SFD_FILE_INFO, libc::ENOENT);
    let mut out2 = FileInfo::default();
    // SAFETY: the pointers are to live values of the types the call takes.
    assert!(!unsafe { sfd_unmarshal_file_info(&mut out2, err.as_ptr().cast()) });
    assert_eq!(out2, FileInfo::default());
    // SAFETY: the pointers are to live values of the types the call takes.
    assert_eq!(unsafe { sfd_get_stat(err.as_ptr().cast()) }, libc::ENOENT);

    let x = XferStat::progress(5).encode();
    // SAFETY: the pointers are to live values of the types the call takes.
    assert!(!unsafe { sfd_unmarshal_file_info(&mut out2, x.as_ptr().cast()) });
    let mut xs = XferStat::default();
    // SAFETY: the pointers are to live values of the types the call takes.
    assert!(unsafe { sfd_unmarshal_xfer_stat(&mut xs, x.as_ptr().cast()) });
    assert_eq!(xs.size, 5);
    // SAFETY: the pointers are to live values of the types the call takes.
    assert!(!unsafe { sfd_xfer_complete(&xs) });
    let c = XferStat::complete().encode();
    // SAFETY: the pointers are to live values of the types the call takes.
    assert!(unsafe { sfd_unmarshal_xfer_stat(&mut xs, c.as_ptr().cast()) });
    // SAFETY: the pointers are to live values of the types the call takes.
    assert!(unsafe { sfd_xfer_complete(&xs) });
    // SAFETY: the pointers are to live values of the types the call takes.
    assert!(!unsafe { sfd_unmarshal_xfer_stat(&mut xs, fi.as_ptr().cast()) });
    let bad = XferStat {
        cmd: SFD_XFER_STAT,
        stat: libc::EIO as u8,
        size: usize::MAX,
    };
    // SAFETY: the pointers are to live values of the types the call takes.
    assert!(!unsafe { sfd_xfer_complete(&bad) });
    // SAFETY: the shell checks its pointer arguments and refuses null ones.
    assert!(!unsafe { sfd_xfer_complete(std::ptr::null()) });
    assert_eq!(errno::errno(), libc::EINVAL);
    // SAFETY: the shell checks its pointer arguments and refuses null ones.
    assert!(!unsafe { sfd_unmarshal_xfer_stat(std::ptr::null_mut(), c.as_ptr().cast()) });
    assert_eq!(errno::errno(), libc::EINVAL);
}

#[test]
fn a_panic_in_a_shell_becomes_eio_quietly() {
    let r = shell(-1, || -> Res<c_int> { panic!("boom") });
    assert_eq!(r, -1);
    assert_eq!(errno::errno(), libc::EIO);
    // And the next call works normally.
    assert_eq!(shell(-1, || Ok(5)), 5);
}
