//! Small helpers for working relative to directory descriptors, never
//! following symlinks at store level.

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{openat, OFlag};
use nix::sys::stat::{fchmod, fstat, mkdirat, Mode};
use nix::unistd::{fchown, Gid, Uid};

use crate::capabilities::{with_caps, STORE, STORE_CREATE};
use crate::error::{Error, Result};

pub const DIR_FLAGS: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_CLOEXEC);

/// Open directory `name` of `dir` without following a symlink.
pub fn open_dir_at(dir: impl AsFd, name: &str, what: &str) -> Result<OwnedFd> {
    with_caps(STORE, || {
        openat(dir, name, DIR_FLAGS, Mode::empty())
            .map_err(Error::sys(format!("cannot open {what}")))
    })
}

/// Open an absolute directory path (from the system configuration) without
/// following a symlink in its last component.
pub fn open_dir_path(path: &Path) -> std::result::Result<OwnedFd, Errno> {
    nix::fcntl::open(path, DIR_FLAGS, Mode::empty())
}

/// Make sure `fd` is root-owned with `mode` (things the helper creates while
/// running as the caller's uid start out owned by the caller).
pub fn make_root_owned(fd: impl AsFd, mode: u32) -> Result<()> {
    let st = fstat(fd.as_fd()).map_err(Error::sys("cannot inspect a store directory"))?;
    with_caps(STORE_CREATE, || {
        if st.st_uid != 0 || st.st_gid != 0 {
            fchown(fd.as_fd(), Some(Uid::from_raw(0)), Some(Gid::from_raw(0)))
                .map_err(Error::sys("cannot give a store directory to root"))?;
        }
        if st.st_mode & 0o7777 != mode {
            fchmod(fd.as_fd(), Mode::from_bits_truncate(mode))
                .map_err(Error::sys("cannot set store directory permissions"))?;
        }
        Ok(())
    })
}

/// Directory `name` of `dir`, created 0700 root:root if missing, opened.
pub fn ensure_root_dir_at(dir: impl AsFd, name: &str, what: &str) -> Result<OwnedFd> {
    match with_caps(STORE_CREATE, || {
        mkdirat(dir.as_fd(), name, Mode::from_bits_truncate(0o700)).map_err(Error::sys(""))
    }) {
        Ok(()) => {
            let fd = open_dir_at(dir.as_fd(), name, what)?;
            make_root_owned(&fd, 0o700)?;
            Ok(fd)
        }
        Err(Error::Sys {
            errno: Errno::EEXIST,
            ..
        }) => open_dir_at(dir, name, what),
        Err(Error::Sys { errno, .. }) => Err(Error::sys(format!("cannot create {what}"))(errno)),
        Err(e) => Err(e),
    }
}

/// Names in a directory, without `.`/`..` and without hidden names.
pub fn visible_names(dir: impl AsFd) -> Result<Vec<String>> {
    Ok(names(dir)?
        .into_iter()
        .filter(|n| !n.starts_with('.'))
        .collect())
}

/// Hidden names (starting with `.`) in a directory, without `.`/`..`.
pub fn hidden_names(dir: impl AsFd) -> Result<Vec<String>> {
    Ok(names(dir)?
        .into_iter()
        .filter(|n| n.starts_with('.') && n != "." && n != "..")
        .collect())
}

/// Every name in `dir` but `.` and `..`, dot names included.
pub fn all_names(dir: impl AsFd) -> Result<Vec<String>> {
    Ok(names(dir)?
        .into_iter()
        .filter(|n| n != "." && n != "..")
        .collect())
}

fn names(dir: impl AsFd) -> Result<Vec<String>> {
    // A new open file (not a dup): its own read position, starting at 0.
    let fresh = open_dir_at(dir, ".", "a store directory")?;
    let mut d =
        nix::dir::Dir::from_fd(fresh).map_err(Error::sys("cannot read a store directory"))?;
    let mut names = Vec::new();
    for ent in d.iter() {
        let ent = ent.map_err(Error::sys("cannot read a store directory"))?;
        if let Ok(name) = ent.file_name().to_str() {
            names.push(name.to_string());
        }
    }
    names.sort();
    Ok(names)
}

/// Whether `name` exists in `dir` (not following a symlink).
pub fn exists_at(dir: impl AsFd, name: &str) -> Result<bool> {
    let r = with_caps(STORE, || {
        nix::sys::stat::fstatat(dir, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
            .map_err(Error::sys("cannot look into the store"))
    });
    match r {
        Ok(_) => Ok(true),
        Err(Error::Sys {
            errno: Errno::ENOENT,
            ..
        }) => Ok(false),
        Err(e) => Err(e),
    }
}
