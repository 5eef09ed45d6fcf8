//! `Commit`: a new image of the caller that is a read-only snapshot of one
//! of the caller's container roots. A snapshot copies no data: it costs the
//! same for an empty root and a root of many gigabytes. For a running
//! container it is crash-consistent (what a power cut at that instant would
//! leave on disk). Subvolumes the container made inside its root are not
//! part of a snapshot (btrfs leaves an empty directory in their place).

use proto::StorageReply;

use crate::btrfs;
use crate::capabilities::{with_caps, STORE};
use crate::copy_in::open_root;
use crate::error::{Error, Result};
use crate::fsutil::exists_at;
use crate::store::Store;

pub fn commit(store: &Store, uid: u32, container: &str, image: &str) -> Result<StorageReply> {
    proto::validate::container_id(container)?;
    proto::reference::key(image)?;
    let images = store.user_images(uid)?;
    // An existing name is refused, never replaced: images are what
    // containers are snapshots of, and `image rm` is the way to drop one.
    let exists = || Error::AlreadyExists(format!("image {image:?} already exists"));
    if exists_at(&images, image)? {
        return Err(exists());
    }
    let root = open_root(store, uid, container)?;
    // Read-only from the first instant, and visible under its name only once
    // complete: the ioctl creates it in one transaction.
    with_caps(STORE, || {
        btrfs::snapshot_readonly(&root, &images, image).map_err(|e| match e {
            nix::errno::Errno::EEXIST => exists(),
            e => Error::sys("cannot snapshot the container root")(e),
        })
    })?;
    // Disk quota: the new image (and what is written while it is shared)
    // counts against the caller, like an import.
    let (_, total) = crate::quota::limits_for(proto::Caller::current(), None)?;
    let new = crate::fsutil::open_dir_at(&images, image, "the new image")?;
    crate::quota::charge(&new, uid, total, crate::quota::Owner::Image)?;
    Ok(StorageReply::Done)
}
