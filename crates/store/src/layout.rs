//! Where things live in the store, computed here only: `tupper-net` asks
//! this module for the mount recorded on a container's root. Always from the
//! system configuration and the caller's real uid, never from a request.

use std::ffi::CString;
use std::io;
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

/// Issue 9: the extended attribute on a container root naming the unique
/// id of the overlay mount `tupper-storage` made of it for its last start
/// (8 bytes, little-endian). Only `CAP_SYS_ADMIN` of the initial namespace
/// reads or writes `trusted.*`, so neither a user nor a container can forge
/// or read it.
pub const MOUNT_XATTR: &std::ffi::CStr = c"trusted.tupperware.mount";

/// The mount id recorded on the caller's container root (`None` when there
/// is no such root or no record). The caller raises what reading it needs
/// (CAP_DAC_OVERRIDE to reach the store, CAP_SYS_ADMIN for `trusted.*`).
pub fn recorded_mount(store: &Path, uid: u32, id: &str) -> io::Result<Option<u64>> {
    let path = CString::new(container(store, uid, id).as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::ENOENT))?;
    let dir = match tupper_sys::openat2(
        libc::AT_FDCWD,
        &path,
        libc::O_RDONLY | libc::O_DIRECTORY,
        libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS,
    ) {
        Ok(dir) => dir,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(None),
        Err(e) => return Err(e),
    };
    read_mount_record(&dir)
}

/// The mount id recorded on an open container root (`None`: no record).
/// Needs CAP_SYS_ADMIN for `trusted.*`.
pub fn read_mount_record(root: &impl std::os::fd::AsRawFd) -> io::Result<Option<u64>> {
    let mut value = [0u8; 8];
    // SAFETY: a valid descriptor, name and buffer living across the call.
    let n = unsafe {
        libc::fgetxattr(
            root.as_raw_fd(),
            MOUNT_XATTR.as_ptr(),
            value.as_mut_ptr().cast(),
            value.len(),
        )
    };
    if n < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ENODATA | libc::ERANGE) => Ok(None),
            _ => Err(e),
        };
    }
    Ok((n == 8).then(|| u64::from_le_bytes(value)))
}
