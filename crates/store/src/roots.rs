//! Container roots: writable snapshots of a caller's images.

use std::os::fd::OwnedFd;

use proto::StorageReply;

use crate::error::{Error, Result};
use crate::fsutil::{exists_at, open_dir_at, visible_names};
use crate::images;
use crate::quota;
use crate::subvol;

pub fn snapshot(
    images_dir: &OwnedFd,
    containers: &OwnedFd,
    image: &str,
    container: &str,
    quota: Quota,
) -> Result<StorageReply> {
    images::require(images_dir, image)?;
    if exists_at(containers, container)? {
        return Err(Error::AlreadyExists(format!(
            "container {container:?} already exists"
        )));
    }
    let source = open_dir_at(images_dir, image, "the image")?;
    subvol::snapshot(&source, containers, container).map_err(|e| match e {
        Error::Sys {
            errno: nix::errno::Errno::EEXIST,
            ..
        } => Error::AlreadyExists(format!("container {container:?} already exists")),
        e => e,
    })?;
    // Disk quota: the new root counts against the caller before anything
    // runs in it; if that fails the root goes again.
    let charged = open_dir_at(containers, container, "the container root").and_then(|root| {
        quota::charge(
            &root,
            quota.uid,
            quota.total,
            quota::Owner::Container { limit: quota.size },
        )
    });
    if let Err(e) = charged {
        let _ = subvol::destroy(containers, container);
        return Err(e);
    }
    Ok(StorageReply::Done)
}

/// Who a new container root is charged to, and its limits (see [`quota`]).
pub struct Quota {
    pub uid: u32,
    /// The container's own size (`--storage-opt size=`, policy `disk`).
    pub size: Option<u64>,
    /// The user's total (policy `total_disk`).
    pub total: Option<u64>,
}

pub fn remove(containers: &OwnedFd, container: &str, uid: u32) -> Result<StorageReply> {
    if !exists_at(containers, container)? {
        return Err(Error::NotFound(format!(
            "container {container:?} not found"
        )));
    }
    let root_id = open_dir_at(containers, container, "the container root")
        .and_then(|root| quota::subvol_id(&root))?;
    let (_, total) = quota::limits_for(proto::Caller::current(), None)?;
    quota::removing(containers, root_id, uid, total, || {
        subvol::destroy(containers, container)
    })?;
    // Its quota group goes once the kernel has freed what it held: now if
    // it can, else at the user's next removal, snapshot or `gc`.
    quota::release_container(containers, root_id)?;
    quota::sweep_user(containers, uid);
    Ok(StorageReply::Done)
}

pub fn list(containers: &OwnedFd) -> Result<StorageReply> {
    Ok(StorageReply::Containers(visible_names(containers)?))
}
