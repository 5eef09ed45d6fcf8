//! Listing and removing a caller's images.

use std::os::fd::OwnedFd;

use nix::fcntl::AtFlags;
use nix::sys::stat::fstatat;
use proto::{ImageInfo, StorageReply};

use crate::capabilities::{with_caps, STORE};
use crate::error::{Error, Result};
use crate::fsutil::{exists_at, visible_names};
use crate::subvol;
use crate::suggest;

pub fn list(images: &OwnedFd) -> Result<StorageReply> {
    let mut out = Vec::new();
    for name in visible_names(images)? {
        // The image root's ctime is when the import set its last metadata,
        // i.e. when it finished; nothing changes it afterwards (read-only).
        let st = with_caps(STORE, || {
            fstatat(images, name.as_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
                .map_err(Error::sys("cannot inspect an image"))
        })?;
        out.push(ImageInfo {
            name,
            created: st.st_ctime.max(0) as u64,
        });
    }
    Ok(StorageReply::Images(out))
}

/// Fail with `image "x" not found (did you mean "y"?)` unless it exists.
pub fn require(images: &OwnedFd, name: &str) -> Result<()> {
    if exists_at(images, name)? {
        return Ok(());
    }
    let names = visible_names(images)?;
    Err(Error::NotFound(suggest::not_found("image", name, &names)))
}

pub fn remove(images: &OwnedFd, name: &str) -> Result<StorageReply> {
    require(images, name)?;
    subvol::destroy(images, name)?;
    Ok(StorageReply::Done)
}
