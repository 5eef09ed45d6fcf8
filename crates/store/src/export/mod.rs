//! `ExportBegin`: a tar of a caller's container root (`export`) or of one
//! path inside it (`cp` out), streamed back as `ExportChunk` replies.
//!
//! The tree is walked through directory descriptors only: every entry is
//! looked at with `AT_SYMLINK_NOFOLLOW` and opened with `O_NOFOLLOW` relative
//! to its parent, so no symlink is ever followed and nothing outside the root
//! is reached. The one path a request names (`cp`) is resolved with
//! `openat2(RESOLVE_IN_ROOT)`: `..` and symlinks, absolute ones too, stay
//! inside the container root, as they would inside the container.

mod stream;
mod walk;
mod xattr;

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};

use proto::{Caller, Channel, StorageReply};

use crate::capabilities::{with_caps, STORE};
use crate::error::{Error, Result};
use crate::store::Store;
pub use stream::ChunkWriter;
pub use walk::TarWriter;

/// Handle one `ExportBegin`. The chunks are sent from here; the returned
/// reply is the final frame.
pub fn run(
    chan: &mut Channel,
    caller: Caller,
    store: Store,
    container: &str,
    path: Option<&str>,
) -> Result<StorageReply> {
    proto::validate::container_id(container)?;
    if let Some(p) = path {
        check_path(p)?;
    }
    let mapping = tupper_config::subid::mapping_for(caller)?;
    let root = crate::copy_in::open_root(&store, caller.uid, container)?;
    let mut out = ChunkWriter::new(chan);
    let result = (|| -> Result<walk::Counts> {
        let mut tar = TarWriter::new(&mut out, mapping);
        match path {
            None => tar.add_tree(&root, b"./")?,
            Some(p) => {
                let (fd, name) = resolve_in_root(&root, p)?;
                tar.add_top(&root, fd, &name, p)?;
            }
        }
        tar.finish()
    })();
    let counts = match result {
        Ok(c) => c,
        // A broken channel wins over whatever the walk made of it.
        Err(_) if out.closed() => return Err(Error::ChannelClosed),
        Err(e) => return Err(e),
    };
    out.flush_chunk()?;
    Ok(StorageReply::Exported {
        entries: counts.entries,
        sockets_skipped: counts.sockets_skipped,
        devices_skipped: counts.devices_skipped,
    })
}

/// A path inside a container as `cp` names it: absolute, no NUL, bounded.
/// `..` is allowed: it is resolved inside the root, like `cd /..` inside
/// the container.
pub fn check_path(p: &str) -> Result<()> {
    if !p.starts_with('/') || p.contains('\0') || p.len() > 4096 {
        return Err(Error::Proto(proto::Error::invalid(
            format!("path {p:?}"),
            "expected an absolute path inside the container",
        )));
    }
    Ok(())
}

/// The name a copied path gets in the tar: its last component, `.` for the
/// root (or a path ending in `.` or `..`).
pub fn top_name(p: &str) -> Vec<u8> {
    match p.rsplit('/').find(|c| !c.is_empty()) {
        Some(".") | Some("..") | None => b".".to_vec(),
        Some(c) => c.as_bytes().to_vec(),
    }
}

/// Resolve `p` inside the container root: `RESOLVE_IN_ROOT` makes the root
/// the process's `/` for this lookup, so `..` stops at it and an absolute
/// symlink (`/etc/shadow`) means the container's file. The last component is
/// followed if it is a symlink (inside the root, like everything else).
pub fn resolve_in_root(root: &OwnedFd, p: &str) -> Result<(OwnedFd, Vec<u8>)> {
    let rel = p.trim_start_matches('/');
    let rel = if rel.is_empty() { "." } else { rel };
    let c = CString::new(rel).map_err(|_| Error::NotFound(format!("{p:?} not found")))?;
    let fd = with_caps(STORE, || {
        tupper_sys::openat2(
            root.as_raw_fd(),
            &c,
            libc::O_PATH,
            libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS | libc::RESOLVE_NO_XDEV,
        )
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ENOENT) | Some(libc::ENOTDIR) => {
                Error::NotFound(format!("{p:?} not found in the container"))
            }
            _ => Error::io(format!("cannot open {p:?} in the container"))(e),
        })
    })?;
    Ok((fd, top_name(p)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_names() {
        assert_eq!(top_name("/etc/passwd"), b"passwd");
        assert_eq!(top_name("/etc/"), b"etc");
        assert_eq!(top_name("/"), b".");
        assert_eq!(top_name("/a/."), b".");
        assert_eq!(top_name("/a/.."), b".");
    }

    #[test]
    fn paths() {
        assert!(check_path("/../../etc/shadow").is_ok());
        assert!(check_path("etc").is_err());
        assert!(check_path("/a\0b").is_err());
        assert!(check_path(&format!("/{}", "a".repeat(5000))).is_err());
    }
}
