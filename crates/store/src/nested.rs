//! Subvolumes nested inside a subvolume, found by id in the kernel's records.
//!
//! A container can create subvolumes and snapshots inside its root (the
//! ioctls need no privilege) and make them read-only, but cannot delete them;
//! a subvolume with subvolumes inside cannot be deleted either (ENOTEMPTY).
//! So removal has to find them, and must do it without trusting the tree the
//! container controls: the descendants come from the ROOT_REF items of the
//! root tree (`BTRFS_IOC_TREE_SEARCH`, keyed by subvolume id), and are deleted
//! by id. The only path ever opened is the one the kernel records for a
//! read-only subvolume that has subvolumes inside (a link in a read-only
//! subvolume cannot be removed): it is opened beneath the top subvolume with
//! no symlink or mount crossing, and used only if it is that very subvolume.

use std::collections::{HashSet, VecDeque};
use std::ffi::{CString, OsStr};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use nix::errno::Errno;
use nix::sys::stat::fstat;

use crate::btrfs;
use crate::error::{Error, Result};

/// One subvolume below the top one.
#[derive(Debug)]
pub struct Nested {
    pub id: u64,
    pub parent: u64,
    /// Where the kernel says it is, relative to the top subvolume.
    pub path: PathBuf,
}

fn search_err(e: Errno) -> Error {
    Error::sys("cannot list the subvolumes inside the subvolume")(e)
}

/// Every subvolume below `top`, parents before their children (breadth
/// first), so the reverse order deletes the deepest first. Needs
/// CAP_SYS_ADMIN.
pub fn descendants(top: &OwnedFd) -> Result<Vec<Nested>> {
    let top_id = btrfs::subvol_id(top).map_err(search_err)?;
    let mut out = Vec::new();
    let mut queue = VecDeque::from([(top_id, PathBuf::new())]);
    while let Some((parent, parent_path)) = queue.pop_front() {
        for child in btrfs::child_subvols(top, parent).map_err(search_err)? {
            let dir = btrfs::dir_path_in(top, parent, child.dirid).map_err(search_err)?;
            if child.name.is_empty()
                || child.name.contains(&b'/')
                || child.name == b"."
                || child.name == b".."
            {
                return Err(search_err(Errno::EUCLEAN));
            }
            let path = parent_path
                .join(OsStr::from_bytes(&dir))
                .join(OsStr::from_bytes(&child.name));
            queue.push_back((child.id, path.clone()));
            out.push(Nested {
                id: child.id,
                parent,
                path,
            });
        }
    }
    Ok(out)
}

/// The ids of the nested subvolumes that have subvolumes inside.
pub fn parents(nested: &[Nested]) -> HashSet<u64> {
    nested.iter().map(|n| n.parent).collect()
}

/// Open nested subvolume `n` below `top` at the path the kernel recorded,
/// never following a symlink or crossing a mount, and only if what is there
/// is the root of subvolume `n.id`. Needs CAP_DAC_OVERRIDE (trees owned by
/// container ids).
pub fn open(top: impl AsFd, n: &Nested) -> Result<OwnedFd> {
    let what = "cannot open a subvolume inside the subvolume";
    let path = CString::new(n.path.as_os_str().as_bytes()).map_err(|_| Error::Other {
        what: what.into(),
        why: "the subvolume path holds a NUL byte".into(),
    })?;
    let fd = tupper_sys::openat2(
        top.as_fd().as_raw_fd(),
        &path,
        libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
        libc::RESOLVE_BENEATH
            | libc::RESOLVE_NO_SYMLINKS
            | libc::RESOLVE_NO_MAGICLINKS
            | libc::RESOLVE_NO_XDEV,
    )
    .map_err(Error::io(what))?;
    let st = fstat(&fd).map_err(Error::sys(what))?;
    let id = btrfs::subvol_id(&fd).map_err(Error::sys(what))?;
    if st.st_ino != btrfs::FIRST_FREE_OBJECTID || id != n.id {
        return Err(Error::Other {
            what: what.into(),
            why: "it is not where the filesystem records it (was the container still running?)"
                .into(),
        });
    }
    Ok(fd)
}
