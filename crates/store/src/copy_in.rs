//! `StatPath` and `CopyInBegin`: what a path inside a container root is, and
//! a tar extracted into the root (`cp` in), through the import's extractor
//! with all its refusals (`..`, escapes through symlinks, device nodes, ids
//! outside the container's range). Entries are named relative to the
//! container root; the supervisor names them (it reads the host side).

use std::os::fd::OwnedFd;

use nix::sys::stat::{fchmod, fstat, Mode, SFlag};
use nix::unistd::{fchown, Gid, Uid};
use proto::{Caller, Channel, PathKind, StorageReply};

use crate::capabilities::{with_caps, EXTRACT};
use crate::error::{Error, Result};
use crate::export::{check_path, resolve_in_root};
use crate::fsutil::{exists_at, open_dir_at};
use crate::import::{chunks::ChunkReader, data::Budget, extract::Extractor, ids::Shift};
use crate::store::Store;

/// The caller's container root `containers/<uid>/<id>`, opened as a
/// directory without following a link. Another user's id is simply not there.
pub fn open_root(store: &Store, uid: u32, container: &str) -> Result<OwnedFd> {
    proto::validate::container_id(container)?;
    let dir = store.user_containers(uid)?;
    if !exists_at(&dir, container)? {
        return Err(Error::NotFound(format!(
            "container {container:?} not found"
        )));
    }
    open_dir_at(&dir, container, "the container root")
}

pub fn stat(store: &Store, uid: u32, container: &str, path: &str) -> Result<StorageReply> {
    check_path(path)?;
    let root = open_root(store, uid, container)?;
    let kind = match resolve_in_root(&root, path) {
        Ok((fd, _)) => {
            let st = fstat(&fd).map_err(Error::sys("cannot inspect a path in the container"))?;
            if SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) == SFlag::S_IFDIR {
                PathKind::Directory
            } else {
                PathKind::Other
            }
        }
        Err(Error::NotFound(_)) => PathKind::Missing,
        Err(e) => return Err(e),
    };
    Ok(StorageReply::PathKind(kind))
}

/// Handle one `CopyInBegin`: always reads the stream up to `ImportEnd`
/// before answering, like an import.
pub fn run(
    chan: &mut Channel,
    caller: Caller,
    store: impl FnOnce() -> Result<Store>,
    container: &str,
    running: Option<i32>,
) -> Result<StorageReply> {
    crate::import::chunks::receive(chan, |reader| {
        copy_in(reader, caller, store, container, running)
    })
}

fn copy_in(
    reader: &mut ChunkReader<'_>,
    caller: Caller,
    store: impl FnOnce() -> Result<Store>,
    container: &str,
    running: Option<i32>,
) -> Result<StorageReply> {
    // validate
    proto::validate::container_id(container)?;
    let (shift, limit) = Shift::and_limit_for(caller)?;
    let root = open_root(&store()?, caller.uid, container)?;
    // Issue 9: a running container sees its root through its overlay; write
    // through that very mount, or it may not see what was written.
    let root = match running {
        Some(pid) => crate::root_mount::running_view(&root, pid)?,
        None => root,
    };

    // act: the extractor sets the owner and mode of the tree it is given;
    // the container's `/` keeps its own.
    let before = fstat(&root).map_err(Error::sys("cannot inspect the container root"))?;
    let keep = root
        .try_clone()
        .map_err(Error::io("cannot open the container root"))?;
    let mut ex = Extractor::new(root, shift, Budget::new(limit))?;
    let result = (|| -> Result<()> {
        let mut archive = tar::Archive::new(&mut *reader);
        let entries = archive
            .entries()
            .map_err(|e| Error::Tarball(e.to_string()))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| Error::Tarball(e.to_string()))?;
            ex.apply(&mut entry)?;
        }
        Ok(())
    })();
    let entries = ex.entries;
    let finished = ex.finish();
    with_caps(EXTRACT, || {
        fchown(
            &keep,
            Some(Uid::from_raw(before.st_uid)),
            Some(Gid::from_raw(before.st_gid)),
        )
        .map_err(Error::sys("cannot restore the owner of the container root"))?;
        fchmod(&keep, Mode::from_bits_truncate(before.st_mode & 0o7777))
            .map_err(Error::sys("cannot restore the mode of the container root"))
    })?;
    result?;
    finished?;
    Ok(StorageReply::CopiedIn { entries })
}
