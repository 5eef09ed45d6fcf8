//! Opening the caller's container root inside the root-only store.

use std::os::fd::{AsRawFd, OwnedFd};

use caps::Capability;
use proto::Caller;
use tupper_config::system::SystemConfig;

use crate::capabilities::with_caps;
use crate::error::Error;

/// Open `containers/<caller uid>/<id>` in the store without following any
/// symlink. Every way of not finding it gives the same answer, so the reply
/// never tells whether some path exists.
pub fn open(config: &SystemConfig, caller: Caller, id: &str) -> Result<OwnedFd, Error> {
    with_caps(&[Capability::CAP_DAC_READ_SEARCH], || {
        tupper_store::layout::open_container(&config.store.path, caller.uid, id).map_err(
            |e| match e.raw_os_error() {
                Some(libc::ENOENT | libc::ENOTDIR | libc::ELOOP | libc::EACCES | libc::EXDEV) => {
                    Error::NoRootfs(id.to_string())
                }
                _ => Error::sys("cannot open the container's root filesystem")(e),
            },
        )
    })
}

/// Make the container root the current directory; the init inherits it and
/// `clone(CLONE_NEWNS)` carries it into the new mount namespace.
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
