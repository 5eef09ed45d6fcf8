//! Issue 9: the container root as the container gets it — the overlay mount
//! `tupper-storage` makes of the caller's root for each start
//! (`MountRoot`), passed on to `tupper-ns` as a descriptor. No process of
//! the user ever holds a directory of the btrfs store, whose subvolume
//! ioctls would let it choose its own disk quota groups.

use std::os::fd::OwnedFd;

use proto::{RemoteError, StorageReply, StorageRequest};

use crate::error::{Error, Result};
use crate::helpers::{wrap, Helper, HelperProcess};

/// Ask `storage` (a storage helper session) to mount container `id`'s root;
/// the descriptor is the root of a mount attached nowhere.
/// `transient`: the container is removed when it ends (`--rm`; see
/// [`StorageRequest::MountRoot`]).
pub fn mount(storage: &mut HelperProcess, id: &str, transient: bool) -> Result<OwnedFd> {
    storage.send(&StorageRequest::MountRoot {
        container: id.to_string(),
        transient,
    })?;
    let (first, fd) = storage.recv_with_fd::<std::result::Result<StorageReply, RemoteError>>()?;
    let fd = match (first, fd) {
        (Ok(StorageReply::RootMount), Some(fd)) => fd,
        (Err(e), _) => return Err(wrap(Helper::Storage, proto::Error::Remote(e))),
        _ => return Err(Error::user("storage: expected the container root's mount")),
    };
    let _: StorageReply = storage.recv_reply()?;
    Ok(fd)
}
