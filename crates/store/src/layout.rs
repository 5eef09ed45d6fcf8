//! Where things live in the store, computed here only: `tupper-ns` and
//! `tupper-net` ask this module for a container's root. Always from the
//! system configuration and the caller's real uid, never from a request.

use std::ffi::CString;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Directory holding a user's images: `<store>/images/<uid>`.
pub fn user_images(store: &Path, uid: u32) -> PathBuf {
    store.join("images").join(uid.to_string())
}

/// Subvolume of one image: `<store>/images/<uid>/<name>`.
pub fn image(store: &Path, uid: u32, name: &str) -> PathBuf {
    user_images(store, uid).join(name)
}

/// Directory holding a user's container roots: `<store>/containers/<uid>`.
pub fn user_containers(store: &Path, uid: u32) -> PathBuf {
    store.join("containers").join(uid.to_string())
}

/// Snapshot serving as one container's root: `<store>/containers/<uid>/<id>`.
pub fn container(store: &Path, uid: u32, id: &str) -> PathBuf {
    user_containers(store, uid).join(id)
}

/// Open one container's root from the host (`O_PATH`, a directory), following
/// no symlink and no magic link on the way. The store is root-only: the
/// caller raises what it needs to reach it (CAP_DAC_READ_SEARCH or
/// CAP_DAC_OVERRIDE) around this call. A path with a NUL byte cannot name a
/// root and fails like a missing one (ENOENT).
pub fn open_container(store: &Path, uid: u32, id: &str) -> io::Result<OwnedFd> {
    let path = CString::new(container(store, uid, id).as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::ENOENT))?;
    tupper_sys::openat2(
        libc::AT_FDCWD,
        &path,
        libc::O_PATH | libc::O_DIRECTORY,
        libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS,
    )
}
