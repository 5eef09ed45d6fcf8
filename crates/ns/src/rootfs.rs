//! The container root: the overlay mount `tupper-storage` made of the
//! caller's container root (issue 9), received as a descriptor right after
//! `Spawn`, never a path.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use caps::Capability;
use proto::{Channel, ContainerRoot};

use crate::capabilities::with_caps;
use crate::error::Error;

/// Receive the root (the `ContainerRoot` frame after `Spawn`) and refuse
/// anything but the root of an overlay mount: a btrfs directory of the
/// store must never become a container's root, where its subvolume ioctls
/// would let the caller choose quota groups. Which container it is, is
/// `tupper-net`'s proof (the mount id recorded on the root); a caller who
/// sends an overlay of their own gets a container of their own making,
/// nothing more than `unshare` gives them.
pub fn receive(chan: &mut Channel, id: &str) -> Result<OwnedFd, Error> {
    let (_, fd) = chan.recv_with_fd::<ContainerRoot>()?;
    let fd = fd.ok_or_else(|| Error::NoRootfs(id.to_string()))?;
    let overlay = tupper_sys::fsmount::is_overlay(fd.as_fd())
        .map_err(Error::sys("cannot inspect the container's root filesystem"))?;
    if !overlay {
        return Err(Error::Unsafe(
            "the container root must be the overlay tupper-storage mounted".into(),
        ));
    }
    Ok(fd)
}

/// Make the container root the current directory; the init inherits it and
/// moves the mount it is the root of onto its own `/` in its new mount
/// namespace.
pub fn enter(rootfs: &OwnedFd) -> Result<(), Error> {
    with_caps(&[Capability::CAP_DAC_READ_SEARCH], || {
        // SAFETY: fchdir on a descriptor we own.
        if unsafe { libc::fchdir(rootfs.as_raw_fd()) } != 0 {
            return Err(Error::sys("cannot enter the container's root filesystem")(
                std::io::Error::last_os_error(),
            ));
        }
        Ok(())
    })
}
