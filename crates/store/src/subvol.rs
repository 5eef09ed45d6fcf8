//! Subvolume operations with the capabilities each one needs raised.

use std::os::fd::{AsFd, OwnedFd};

use caps::Capability;

use crate::btrfs;
use crate::capabilities::{with_caps, STORE};
use crate::error::{Error, Result};
use crate::fsutil::open_dir_at;
use crate::nested;

/// Destroying: CAP_SYS_ADMIN for the ioctl, CAP_FOWNER to clear the
/// read-only flag of a subvolume owned by a container id, CAP_DAC_OVERRIDE
/// for the root-only parent directory.
const DESTROY: &[Capability] = &[
    Capability::CAP_SYS_ADMIN,
    Capability::CAP_DAC_OVERRIDE,
    Capability::CAP_FOWNER,
];

/// Empty subvolume `name` in `dir` (write access to the root-only directory).
pub fn create(dir: impl AsFd, name: &str) -> Result<()> {
    with_caps(STORE, || {
        btrfs::subvol_create(dir, name).map_err(Error::sys("cannot create a subvolume"))
    })
}

/// Writable snapshot of `source` as `name` in `dir` (CAP_FOWNER: the source
/// belongs to a container id, CAP_DAC_OVERRIDE: the directory to root).
pub fn snapshot(source: impl AsFd, dir: impl AsFd, name: &str) -> Result<()> {
    with_caps(STORE, || {
        btrfs::snapshot(source, dir, name).map_err(Error::sys("cannot create the snapshot"))
    })
}

/// Mark a finished image read-only.
pub fn make_readonly(subvol: impl AsFd) -> Result<()> {
    with_caps(STORE, || {
        let flags = btrfs::get_flags(subvol.as_fd())
            .map_err(Error::sys("cannot read the subvolume flags"))?;
        btrfs::set_flags(subvol, flags | btrfs::SUBVOL_RDONLY)
            .map_err(Error::sys("cannot make the image read-only"))
    })
}

/// Delete subvolume `name` of `dir` and every subvolume nested inside it,
/// at any depth, read-only ones too (see [`nested`]): the nested ones by id,
/// deepest first, then `name` itself.
pub fn destroy(dir: &OwnedFd, name: &str) -> Result<()> {
    let top = open_dir_at(dir, name, "the subvolume")?;
    with_caps(DESTROY, || {
        make_writable(&top)?;
        let below = nested::descendants(&top)?;
        // A link inside a read-only subvolume cannot be removed.
        let parents = nested::parents(&below);
        for n in below.iter().filter(|n| parents.contains(&n.id)) {
            make_writable(&nested::open(&top, n)?)?;
        }
        for n in below.iter().rev() {
            btrfs::subvol_destroy_by_id(&top, n.id)
                .map_err(Error::sys("cannot delete a subvolume inside the subvolume"))?;
        }
        drop(top);
        btrfs::subvol_destroy(dir, name).map_err(Error::sys("cannot delete the subvolume"))
    })
}

fn make_writable(sub: &OwnedFd) -> Result<()> {
    let flags = btrfs::get_flags(sub).map_err(Error::sys("cannot read the subvolume flags"))?;
    if flags & btrfs::SUBVOL_RDONLY != 0 {
        btrfs::set_flags(sub, flags & !btrfs::SUBVOL_RDONLY)
            .map_err(Error::sys("cannot make the subvolume writable"))?;
    }
    Ok(())
}
