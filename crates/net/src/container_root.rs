//! Is the process a tupperware container of the caller, not just any process
//! in a user namespace the caller made (`unshare -Urn` would be)?
//!
//! The proof: the root of its mount namespace is the caller's container root
//! in the store, `containers/<uid>/<id>` (a btrfs subvolume). `tupper-ns`
//! pivots the container init into it before the supervisor sends `Attach`,
//! and no user can reach the `0700 root` store to build such a namespace by
//! hand. The store path is computed from the system configuration, the
//! caller's uid and the validated container id, and opened without following
//! any symlink; the namespace's root is looked at from a dedicated thread
//! that enters the namespace (its own filesystem attributes, so nothing else
//! of the helper moves) and only `statx`es `/`, without asking the
//! filesystem (a FUSE root cannot make us wait).
//!
//! Every way of failing is the caller's uniform refusal, except a capability
//! missing from the installation, which the administrator has to hear about.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use caps::Capability::{CAP_DAC_OVERRIDE, CAP_SYS_ADMIN, CAP_SYS_CHROOT};
use proto::Caller;

use crate::capabilities::with_caps;
use crate::error::{Error, Result};
use crate::ownership::Container;

/// Device and inode of a directory: for a btrfs subvolume root the device is
/// the subvolume's own, so the pair names one subvolume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
}

/// Refuse (`NotYourContainer`) unless `target`'s mount namespace is rooted in
/// the caller's container root `container`.
pub fn verify(store: &Path, caller: Caller, container: &str, target: &Container) -> Result<()> {
    let refuse = || Error::NotYourContainer { pid: target.pid };
    let expected = store_root(store, caller.uid, container)?.ok_or_else(refuse)?;
    let found = namespace_root(&target.mntns)?.ok_or_else(refuse)?;
    // The namespace fd pins the namespace we looked at; the process must
    // still be the one verified, so its netns is that container's too.
    if found != expected || !target.is_alive() {
        return Err(refuse());
    }
    Ok(())
}

/// `containers/<uid>/<id>` in the store, opened from the host without
/// following symlinks; `None` whatever the reason it cannot be.
fn store_root(store: &Path, uid: u32, container: &str) -> Result<Option<FileId>> {
    with_caps(&[CAP_DAC_OVERRIDE], || {
        let Ok(fd) = tupper_store::layout::open_container(store, uid, container) else {
            return Ok(None);
        };
        Ok(stat_of(fd.as_raw_fd(), c"", libc::AT_EMPTY_PATH))
    })
}

/// The root of the mount namespace `mntns`, seen from inside it.
fn namespace_root(mntns: &OwnedFd) -> Result<Option<FileId>> {
    let mntns = mntns
        .try_clone()
        .map_err(|e| Error::sys("duplicate the mount namespace descriptor", e))?;
    let worker = std::thread::Builder::new()
        .name("container-mntns".into())
        .spawn(move || -> Result<Option<FileId>> {
            // SAFETY: gives this thread its own root and cwd (setns into a
            // mount namespace requires it); the other threads keep theirs.
            if unsafe { libc::unshare(libc::CLONE_FS) } != 0 {
                return Err(Error::last_os("unshare the filesystem attributes"));
            }
            let entered = with_caps(&[CAP_SYS_ADMIN, CAP_SYS_CHROOT], || {
                // SAFETY: setns on a namespace fd we own; affects this thread only.
                Ok(unsafe { libc::setns(mntns.as_raw_fd(), libc::CLONE_NEWNS) } == 0)
            })?;
            if !entered {
                return Ok(None);
            }
            // setns made the namespace's root our root and cwd.
            Ok(stat_of(libc::AT_FDCWD, c"/", 0))
        })
        .map_err(|e| Error::sys("start the container mount thread", e))?;
    worker
        .join()
        .map_err(|_| Error::State("the container mount thread failed".into()))?
}

/// Device and inode by `statx`, from what the kernel has cached (never a
/// request to the filesystem).
fn stat_of(dirfd: libc::c_int, path: &std::ffi::CStr, flags: libc::c_int) -> Option<FileId> {
    // SAFETY: statx writes into a zeroed struct we own.
    let mut st: libc::statx = unsafe { std::mem::zeroed() };
    let rc = unsafe {
        libc::statx(
            dirfd,
            path.as_ptr(),
            flags | libc::AT_STATX_DONT_SYNC | libc::AT_SYMLINK_NOFOLLOW,
            libc::STATX_INO | libc::STATX_TYPE,
            &mut st,
        )
    };
    if rc != 0 || u32::from(st.stx_mode) & libc::S_IFMT != libc::S_IFDIR {
        return None;
    }
    Some(FileId {
        dev: libc::makedev(st.stx_dev_major, st.stx_dev_minor),
        ino: st.stx_ino,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;

    #[test]
    fn a_directory_is_named_by_device_and_inode() {
        let tmp = tempfile::tempdir().unwrap();
        let path = CString::new(tmp.path().as_os_str().as_bytes()).unwrap();
        let id = stat_of(libc::AT_FDCWD, &path, 0).unwrap();
        use std::os::unix::fs::MetadataExt;
        let md = std::fs::metadata(tmp.path()).unwrap();
        assert_eq!(
            id,
            FileId {
                dev: md.dev(),
                ino: md.ino()
            }
        );
        // Not a directory, or missing: nothing.
        std::fs::write(tmp.path().join("f"), b"").unwrap();
        let file = CString::new(tmp.path().join("f").as_os_str().as_bytes()).unwrap();
        assert!(stat_of(libc::AT_FDCWD, &file, 0).is_none());
        let gone = CString::new(tmp.path().join("nope").as_os_str().as_bytes()).unwrap();
        assert!(stat_of(libc::AT_FDCWD, &gone, 0).is_none());
    }
}
