//! `ImportBegin` .. `ImportEnd`: stream a tarball into a new image subvolume.

mod archive;
pub(crate) mod chunks;
pub(crate) mod compression;
pub(crate) mod data;
pub(crate) mod extract;
pub(crate) mod ids;
mod policy;
mod xattrs;
// OCI layers (issue 10, engineer "oci").
pub(crate) mod whiteout;

use std::os::fd::OwnedFd;
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{renameat2, RenameFlags};
use proto::Caller;
use proto::{Channel, StorageReply};

use crate::capabilities::{with_caps, STORE};
use crate::error::{Error, Result};
use crate::fsutil::{exists_at, open_dir_at};
use crate::store::Store;
use crate::subvol;
pub use chunks::request_name;
use chunks::ChunkReader;
use extract::Extractor;
use ids::Shift;

/// Handle one import whose `ImportBegin { name }` was just received. Always
/// reads the stream up to `ImportEnd` before returning, so the single reply
/// follows the last chunk. On any error nothing of the image is left.
pub fn run(
    chan: &mut Channel,
    caller: Caller,
    store: impl FnOnce() -> Result<Store>,
    name: &str,
) -> Result<StorageReply> {
    chunks::receive(chan, |reader| import(reader, caller, store, name))
}

fn import(
    reader: &mut ChunkReader<'_>,
    caller: Caller,
    store: impl FnOnce() -> Result<Store>,
    name: &str,
) -> Result<StorageReply> {
    // validate
    proto::reference::key(name)?;
    let (shift, limit) = Shift::and_limit_for(caller)?;
    let images = store()?.user_images(caller.uid)?;
    if exists_at(&images, name)? {
        return Err(Error::AlreadyExists(format!(
            "image {name:?} already exists"
        )));
    }

    // act: a hidden subvolume that is destroyed unless the import completes
    let partial = Partial::create(&images)?;
    let sub = open_dir_at(&images, &partial.name, "the new image")?;
    // Disk quota: everything the import writes counts against the caller.
    let (_, total) = crate::quota::limits_for(caller, None)?;
    crate::quota::charge(&sub, caller.uid, total, crate::quota::Owner::Image)?;
    let mut ex = Extractor::new(sub, shift, data::Budget::new(limit))?;
    {
        let input =
            compression::decompress(&mut *reader).map_err(|e| Error::Tarball(e.to_string()))?;
        let mut archive = tar::Archive::new(input);
        let entries = archive
            .entries()
            .map_err(|e| Error::Tarball(e.to_string()))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| Error::Tarball(e.to_string()))?;
            ex.apply(&mut entry)?;
        }
    }
    if ex.entries == 0 {
        return Err(Error::Tarball("it contains no entries".into()));
    }
    if let Some(format) = ex.sniffer.verdict() {
        return Err(Error::NotRootfs(format.refusal()));
    }
    let (entries, bytes, devices_skipped) = (ex.entries, ex.bytes, ex.devices_skipped);
    let xattrs_skipped = ex.xattrs_skipped;
    ex.finish()?;
    // Only a stream that reached ImportEnd makes an image.
    reader.drain();
    if let Some(e) = reader.stream_error() {
        return Err(e);
    }

    // commit: read-only, then visible under its name
    let sub = open_dir_at(&images, &partial.name, "the new image")?;
    subvol::make_readonly(&sub)?;
    drop(sub);
    partial.commit(name)?;
    Ok(StorageReply::Imported {
        name: name.to_string(),
        entries,
        bytes,
        devices_skipped,
        xattrs_skipped,
    })
}

/// `images/<uid>/.import-<random>` until committed; destroyed on drop.
///
/// The importing helper holds an `flock` on the partial subvolume for as long
/// as it works on it, so a partial import whose helper was killed is
/// recognisable: nobody holds its lock. Such leftovers are reaped by the next
/// import of the same user.
pub(crate) struct Partial<'d> {
    dir: &'d OwnedFd,
    name: String,
    lock: Option<tupper_sys::lock::Locked<OwnedFd>>,
    committed: bool,
}

impl<'d> Partial<'d> {
    fn create(dir: &'d OwnedFd) -> Result<Partial<'d>> {
        Partial::create_with(dir, |dir, name| subvol::create(dir, name))
    }

    /// A partial subvolume made by `make(dir, name)` (a snapshot, for a layer).
    pub(crate) fn create_with(
        dir: &'d OwnedFd,
        make: impl FnOnce(&OwnedFd, &str) -> Result<()>,
    ) -> Result<Partial<'d>> {
        // Serialise create+lock against other imports' reaping: on a new
        // open file of the directory, so the lock ends with this block, and
        // waited for only briefly (the holder may be stopped by its caller).
        let fresh = open_dir_at(dir, ".", "the image directory")?;
        let _dir_lock = tupper_sys::lock::exclusive_within(fresh, crate::store::LOCK_WAIT)
            .map_err(Error::io("cannot take a lock"))?
            .ok_or_else(|| {
                Error::Busy(
                    "another import of yours is starting (or is stopped while starting); \
                     try again"
                        .into(),
                )
            })?;
        reap_stale(dir);
        let name = format!(".import-{}", random_hex()?);
        make(dir, &name)?;
        let mut partial = Partial {
            dir,
            name,
            lock: None,
            committed: false,
        };
        let fd = open_dir_at(dir, &partial.name, "the new image")?;
        let held = tupper_sys::lock::exclusive_within(fd, Duration::ZERO)
            .and_then(|held| {
                held.ok_or_else(|| std::io::Error::from_raw_os_error(libc::EWOULDBLOCK))
            })
            .map_err(Error::io("cannot lock an import"))?;
        partial.lock = Some(held);
        Ok(partial)
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn commit(mut self, final_name: &str) -> Result<()> {
        with_caps(STORE, || {
            renameat2(
                self.dir,
                self.name.as_str(),
                self.dir,
                final_name,
                RenameFlags::RENAME_NOREPLACE,
            )
            .map_err(|e| match e {
                Errno::EEXIST => {
                    Error::AlreadyExists(format!("image {final_name:?} already exists"))
                }
                e => Error::sys("cannot name the new image")(e),
            })
        })?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for Partial<'_> {
    fn drop(&mut self) {
        self.lock = None;
        if !self.committed {
            if let Err(e) = subvol::destroy(self.dir, &self.name) {
                eprintln!("tupper-storage: cannot remove a partial import: {e}");
            }
        }
    }
}

/// Destroy partial imports whose helper died (their lock is free).
fn reap_stale(dir: &OwnedFd) {
    let Ok(names) = crate::fsutil::hidden_names(dir) else {
        return;
    };
    for name in names.iter().filter(|n| n.starts_with(".import-")) {
        let Ok(fd) = open_dir_at(dir, name, "a partial import") else {
            continue;
        };
        if let Ok(Some(held)) = tupper_sys::lock::exclusive_within(fd, Duration::ZERO) {
            drop(held);
            let _ = subvol::destroy(dir, name);
        }
    }
}

fn random_hex() -> Result<String> {
    tupper_sys::random::hex(8).map_err(Error::io("cannot get random bytes"))
}
