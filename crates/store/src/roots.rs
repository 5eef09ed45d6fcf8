//! Container roots: writable snapshots of a caller's images.

use std::os::fd::OwnedFd;

use proto::StorageReply;

use crate::error::{Error, Result};
use crate::fsutil::{exists_at, open_dir_at, visible_names};
use crate::images;
use crate::subvol;

pub fn snapshot(
    images_dir: &OwnedFd,
    containers: &OwnedFd,
    image: &str,
    container: &str,
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
    Ok(StorageReply::Done)
}

pub fn remove(containers: &OwnedFd, container: &str) -> Result<StorageReply> {
    if !exists_at(containers, container)? {
        return Err(Error::NotFound(format!(
            "container {container:?} not found"
        )));
    }
    subvol::destroy(containers, container)?;
    Ok(StorageReply::Done)
}

pub fn list(containers: &OwnedFd) -> Result<StorageReply> {
    Ok(StorageReply::Containers(visible_names(containers)?))
}
