//! Giving up root: chroot to the served root and switch to an unprivileged
//! user and group, with the supplementary groups cleared, and check that it
//! took.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::unistd::{Gid, Group, Uid, User};

/// Who the daemon becomes.
#[derive(Debug, Clone, Copy)]
pub struct Identity {
    /// Target uid.
    pub uid: Uid,
    /// Target gid.
    pub gid: Gid,
}

fn not_found(what: &str, name: &str) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("no such {what}: {name}"))
}

/// Looks up `-u USER` / `-g GROUP` (names or numbers) before chroot, while
/// the user database is reachable.
pub fn resolve(user: Option<&str>, group: Option<&str>) -> io::Result<Option<Identity>> {
    if user.is_none() && group.is_none() {
        return Ok(None);
    }
    let u = match user {
        Some(name) => {
            let found = match name.parse::<u32>() {
                Ok(n) => User::from_uid(Uid::from_raw(n)).map_err(io::Error::from)?,
                Err(_) => User::from_name(name).map_err(io::Error::from)?,
            };
            Some(found.ok_or_else(|| not_found("user", name))?)
        }
        None => None,
    };
    let gid = match group {
        Some(name) => match name.parse::<u32>() {
            Ok(n) => Gid::from_raw(n),
            Err(_) => {
                Group::from_name(name)
                    .map_err(io::Error::from)?
                    .ok_or_else(|| not_found("group", name))?
                    .gid
            }
        },
        None => u.as_ref().map(|u| u.gid).unwrap_or_else(Gid::current),
    };
    let uid = u.map(|u| u.uid).unwrap_or_else(Uid::current);
    Ok(Some(Identity { uid, gid }))
}

/// Chroots to `root` (unless it is "/") and becomes `id`. Must run before
/// any thread starts. Fails unless afterwards real and effective ids are the
/// target ones, no supplementary group is left, and root cannot be regained.
pub fn drop_to(root: &Path, id: Identity) -> io::Result<()> {
    if root != Path::new("/") {
        let c = CString::new(root.as_os_str().as_bytes())
            .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        nix::unistd::chroot(c.as_c_str()).map_err(io::Error::from)?;
        nix::unistd::chdir("/").map_err(io::Error::from)?;
    }
    // SAFETY: an empty list clears the supplementary groups.
    if unsafe { libc::setgroups(0, std::ptr::null()) } < 0 {
        return Err(io::Error::last_os_error());
    }
    nix::unistd::setgid(id.gid).map_err(io::Error::from)?;
    nix::unistd::setuid(id.uid).map_err(io::Error::from)?;
    let ok = Uid::current() == id.uid
        && Uid::effective() == id.uid
        && Gid::current() == id.gid
        && Gid::effective() == id.gid
        && only_group_is(id.gid)
        && (id.uid.is_root() || nix::unistd::setuid(Uid::from_raw(0)).is_err());
    if !ok {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "privileges were not fully dropped",
        ));
    }
    Ok(())
}

/// Whether `getgroups(2)` lists no group but `gid` (POSIX lets it list the
/// effective gid).
fn only_group_is(gid: Gid) -> bool {
    let mut buf = [0 as libc::gid_t; 64];
    // SAFETY: buf has room for 64 gids.
    let n = unsafe { libc::getgroups(buf.len() as libc::c_int, buf.as_mut_ptr()) };
    n >= 0 && buf[..n as usize].iter().all(|&g| g == gid.as_raw())
}
