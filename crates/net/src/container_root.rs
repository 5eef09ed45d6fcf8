//! Is the process a tupperware container of the caller, not just any process
//! in a user namespace the caller made (`unshare -Urn` would be)?
//!
//! The proof (issue 9): the root of its mount namespace is the very mount
//! `tupper-storage` made of the caller's container root for this start —
//! its unique mount id (never reused) is the one recorded on the root in the
//! store (`trusted.tupperware.mount`, which no user and no container can
//! write). The store path is computed from the system configuration, the
//! caller's uid and the validated container id, and opened without
//! following any symlink; the namespace's root is looked at from a
//! dedicated thread that enters the namespace (its own filesystem
//! attributes, so nothing else of the helper moves) and only `statx`es `/`
//! from what the kernel has cached, without asking the filesystem (a FUSE
//! root cannot make us wait).
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

/// Refuse (`NotYourContainer`) unless `target`'s mount namespace is rooted in
/// the caller's container root `container`.
pub fn verify(store: &Path, caller: Caller, container: &str, target: &Container) -> Result<()> {
    let refuse = || Error::NotYourContainer { pid: target.pid };
    let expected = recorded_mount(store, caller.uid, container)?.ok_or_else(refuse)?;
    let found = namespace_root(&target.mntns)?.ok_or_else(refuse)?;
    // The namespace fd pins the namespace we looked at; the process must
    // still be the one verified, so its netns is that container's too.
    if found != expected || !target.is_alive() {
        return Err(refuse());
    }
    Ok(())
}

/// The mount id recorded on `containers/<uid>/<id>` in the store; `None`
/// whatever the reason it cannot be read.
fn recorded_mount(store: &Path, uid: u32, container: &str) -> Result<Option<u64>> {
    with_caps(&[CAP_DAC_OVERRIDE, CAP_SYS_ADMIN], || {
        Ok(tupper_store::layout::recorded_mount(store, uid, container)
            .ok()
            .flatten())
    })
}

/// The root of the mount namespace `mntns`, seen from inside it.
fn namespace_root(mntns: &OwnedFd) -> Result<Option<u64>> {
    let mntns = mntns
        .try_clone()
        .map_err(|e| Error::sys("duplicate the mount namespace descriptor", e))?;
    let worker = std::thread::Builder::new()
        .name("container-mntns".into())
        .spawn(move || -> Result<Option<u64>> {
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
            Ok(mount_of(c"/"))
        })
        .map_err(|e| Error::sys("start the container mount thread", e))?;
    worker
        .join()
        .map_err(|_| Error::State("the container mount thread failed".into()))?
}

/// The unique id of the mount `path` is on, by `statx` from what the kernel
/// has cached (never a request to the filesystem).
fn mount_of(path: &std::ffi::CStr) -> Option<u64> {
    tupper_sys::fsmount::unique_mount_id(libc::AT_FDCWD, path, libc::AT_SYMLINK_NOFOLLOW)
        .ok()
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_are_named_by_their_unique_id() {
        let root = mount_of(c"/").expect("this kernel names mounts (Linux 6.8)");
        let proc = mount_of(c"/proc").expect("/proc");
        assert_ne!(root, proc);
        assert_eq!(mount_of(c"/"), Some(root));
        assert!(mount_of(c"/no/such/path").is_none());
    }
}
