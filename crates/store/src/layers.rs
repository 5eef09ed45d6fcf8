//! Images made of layers (issue 10): each layer a read-only subvolume that
//! is a snapshot of its parent layer with the layer's tar applied, named by
//! its chain id, per user (`images/<uid>/.layers/<hex>`); an image a
//! read-only snapshot of its top layer (`images/<uid>/<key>`), with its layer
//! list and the supervisor's metadata in `images/<uid>/.meta/`.
//!
//! The chain id is computed here from the parent's chain id and the diff id
//! this helper hashed on the stream it extracted, so a layer's name always
//! says what it holds, whatever the supervisor claims. Only this helper
//! writes here (the store is root-only); the metadata is opaque to it.

use std::io::Read;
use std::os::fd::OwnedFd;

use proto::reference;
use proto::{Caller, Channel, StorageReply, MAX_IMAGE_LAYERS, MAX_IMAGE_META};
use sha2::{Digest, Sha256};

use crate::capabilities::{with_caps, STORE};
use crate::error::{Error, Result};
use crate::fsutil::{ensure_root_dir_at, exists_at, open_dir_at, visible_names};
use crate::import::chunks::{self, ChunkReader};
use crate::import::extract::Extractor;
use crate::import::ids::Shift;
use crate::import::{compression, data, Partial};
use crate::store::Store;
use crate::subvol;

const LAYERS: &str = ".layers";
const META: &str = ".meta";

fn hex(d: impl AsRef<[u8]>) -> String {
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The chain id of a layer with diff id `diff` over `parent`.
pub fn chain_id(parent: Option<&str>, diff: &str) -> String {
    match parent {
        None => diff.to_string(),
        Some(p) => format!("sha256:{}", hex(Sha256::digest(format!("{p} {diff}")))),
    }
}

/// Directory name of a layer: the hex of its (validated) chain id.
fn dir_name(chain: &str) -> Result<&str> {
    reference::digest(chain)?;
    Ok(&chain["sha256:".len()..])
}

fn layers_dir(images: &OwnedFd) -> Result<OwnedFd> {
    ensure_root_dir_at(images, LAYERS, "the layer directory")
}

fn meta_dir(images: &OwnedFd) -> Result<OwnedFd> {
    ensure_root_dir_at(images, META, "the image metadata directory")
}

/// A reader that hashes what passes through it.
struct Hashing<R> {
    inner: R,
    hash: Sha256,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

impl<R> Hashing<R> {
    fn new(inner: R) -> Self {
        Hashing {
            inner,
            hash: Sha256::new(),
        }
    }
    fn digest(self) -> String {
        format!("sha256:{}", hex(self.hash.finalize()))
    }
}

/// `LayerBegin`: always reads the stream to `ImportEnd`, then answers once.
pub fn store_layer(
    chan: &mut Channel,
    caller: Caller,
    store: impl FnOnce() -> Result<Store>,
    parent: Option<&str>,
    diff_id: &str,
    blob: Option<&str>,
) -> Result<StorageReply> {
    chunks::receive(chan, |reader| {
        layer(reader, caller, store, parent, diff_id, blob)
    })
}

fn layer(
    reader: &mut ChunkReader<'_>,
    caller: Caller,
    store: impl FnOnce() -> Result<Store>,
    parent: Option<&str>,
    diff_id: &str,
    blob: Option<&str>,
) -> Result<StorageReply> {
    // validate
    reference::digest(diff_id)?;
    if let Some(b) = blob {
        reference::digest(b)?;
    }
    let parent_dir = parent.map(dir_name).transpose()?;
    let chain = chain_id(parent, diff_id);
    let name = dir_name(&chain)?.to_string();
    let (shift, limit) = Shift::and_limit_for(caller)?;
    let images = store()?.user_images(caller.uid)?;
    let layers = layers_dir(&images)?;
    if exists_at(&layers, &name)? {
        return Ok(StorageReply::LayerStored {
            chain_id: chain,
            bytes: 0,
            present: true,
        });
    }
    let parent_fd = match parent_dir {
        Some(p) => Some(open_dir_at(&layers, p, "the parent layer").map_err(|_| {
            Error::NotFound(format!("parent layer {} not found", parent.unwrap_or("")))
        })?),
        None => None,
    };

    // act: a partial subvolume, destroyed unless everything matches
    let partial = new_layer_subvol(&layers, parent_fd.as_ref())?;
    let sub = open_dir_at(&layers, partial.name(), "the new layer")?;
    // Disk quota (issue 9): what a layer writes counts against its importer.
    let (_, total) = crate::quota::limits_for(caller, None)?;
    crate::quota::charge(&sub, caller.uid, total, crate::quota::Owner::Image)?;
    let mut ex = Extractor::for_layer(sub, shift, data::Budget::new(limit), parent_fd.is_none())?;
    let mut raw = Hashing::new(&mut *reader);
    let extracted = extract(&mut raw, &mut ex);
    // Whatever happened, the rest of the blob is hashed: a corrupt blob is
    // refused as one (the cause), not by the tar error its corruption makes.
    let rest = std::io::copy(&mut raw, &mut std::io::sink());
    let got_blob = raw.digest();
    reader.drain();
    if let Some(e) = reader.stream_error() {
        return Err(e);
    }
    rest.map_err(|e| Error::Tarball(e.to_string()))?;
    if let Some(b) = blob {
        if got_blob != b {
            return Err(Error::Tarball(format!(
                "the layer blob does not match its digest {b} (it is {got_blob}); nothing was kept"
            )));
        }
    }
    let got_diff = extracted?;
    let bytes = ex.bytes;
    ex.finish()?;
    if got_diff != diff_id {
        return Err(Error::Tarball(format!(
            "the layer does not match its diff id {diff_id} (it is {got_diff}); nothing was kept"
        )));
    }

    // commit: read-only, then named by its chain id
    let sub = open_dir_at(&layers, partial.name(), "the new layer")?;
    subvol::make_readonly(&sub)?;
    drop(sub);
    match partial.commit(&name) {
        // The same layer stored meanwhile by another import: same content.
        Ok(()) | Err(Error::AlreadyExists(_)) => {}
        Err(e) => return Err(e),
    }
    Ok(StorageReply::LayerStored {
        chain_id: chain,
        bytes,
        present: false,
    })
}

/// Decompress and apply one layer blob; the diff id of its tar stream.
fn extract(raw: &mut impl Read, ex: &mut Extractor) -> Result<String> {
    let input = compression::decompress(raw).map_err(|e| Error::Tarball(e.to_string()))?;
    let mut tarball = Hashing::new(input);
    {
        let mut archive = tar::Archive::new(&mut tarball);
        for entry in archive
            .entries()
            .map_err(|e| Error::Tarball(e.to_string()))?
        {
            let mut entry = entry.map_err(|e| Error::Tarball(e.to_string()))?;
            ex.apply(&mut entry)?;
        }
    }
    // The diff id covers the whole uncompressed stream, padding included.
    std::io::copy(&mut tarball, &mut std::io::sink()).map_err(|e| Error::Tarball(e.to_string()))?;
    Ok(tarball.digest())
}

/// The one place a layer subvolume is created: a writable snapshot of its
/// parent, or an empty subvolume for a first layer.
fn new_layer_subvol<'d>(layers: &'d OwnedFd, parent: Option<&OwnedFd>) -> Result<Partial<'d>> {
    Partial::create_with(layers, |dir, name| match parent {
        Some(p) => subvol::snapshot(p, dir, name),
        None => subvol::create(dir, name),
    })
}

pub fn has_layers(store: &Store, uid: u32, chains: &[String]) -> Result<StorageReply> {
    if chains.len() > MAX_IMAGE_LAYERS {
        return Err(Error::Protocol("too many layers".into()));
    }
    let layers = layers_dir(&store.user_images(uid)?)?;
    let mut out = Vec::with_capacity(chains.len());
    for c in chains {
        out.push(exists_at(&layers, dir_name(c)?)?);
    }
    Ok(StorageReply::HaveLayers(out))
}

/// `CreateImage`: `name` becomes a read-only snapshot of the top layer.
pub fn create_image(
    store: &Store,
    uid: u32,
    name: &str,
    chain: &[String],
    meta: &[u8],
) -> Result<StorageReply> {
    reference::key(name)?;
    if chain.is_empty() || chain.len() > MAX_IMAGE_LAYERS {
        return Err(Error::Protocol("an image has 1 to 256 layers".into()));
    }
    if meta.len() > MAX_IMAGE_META {
        return Err(Error::Protocol("image metadata too large".into()));
    }
    let images = store.user_images(uid)?;
    let layers = layers_dir(&images)?;
    let mut top = None;
    for c in chain {
        let fd = open_dir_at(&layers, dir_name(c)?, "a layer")
            .map_err(|_| Error::NotFound(format!("layer {c} not found")))?;
        top = Some(fd);
    }
    let top = top.ok_or_else(|| Error::Protocol("no layers".into()))?;
    let partial = Partial::create_with(&images, |dir, n| subvol::snapshot(&top, dir, n))?;
    let sub = open_dir_at(&images, partial.name(), "the new image")?;
    subvol::make_readonly(&sub)?;
    drop(sub);
    let metas = meta_dir(&images)?;
    write_meta(&metas, name, chain, meta)?;
    if exists_at(&images, name)? {
        subvol::destroy(&images, name)?;
    }
    partial.commit(name)?;
    Ok(StorageReply::Done)
}

fn write_meta(metas: &OwnedFd, name: &str, chain: &[String], meta: &[u8]) -> Result<()> {
    with_caps(STORE, || {
        tupper_sys::atomic::write_at(
            metas,
            &format!("{name}.layers"),
            chain.join("\n").as_bytes(),
            0o600,
            |_| Ok(()),
        )
        .map_err(Error::io("cannot write the image's layer list"))?;
        tupper_sys::atomic::write_at(metas, &format!("{name}.json"), meta, 0o600, |_| Ok(()))
            .map_err(Error::io("cannot write the image's metadata"))
    })
}

fn read_meta(metas: &OwnedFd, file: &str, limit: usize) -> Result<Option<Vec<u8>>> {
    let fd = with_caps(STORE, || {
        match nix::fcntl::openat(
            metas,
            file,
            nix::fcntl::OFlag::O_RDONLY
                | nix::fcntl::OFlag::O_NOFOLLOW
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        ) {
            Ok(fd) => Ok(Some(fd)),
            Err(nix::errno::Errno::ENOENT) => Ok(None),
            Err(e) => Err(Error::sys("cannot read image metadata")(e)),
        }
    })?;
    let Some(fd) = fd else { return Ok(None) };
    let mut out = Vec::new();
    std::fs::File::from(fd)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(Error::io("cannot read image metadata"))?;
    if out.len() > limit {
        return Err(Error::Other {
            what: "image metadata".into(),
            why: "too large".into(),
        });
    }
    Ok(Some(out))
}

pub fn image_meta(store: &Store, uid: u32, name: &str) -> Result<StorageReply> {
    reference::key(name)?;
    let images = store.user_images(uid)?;
    crate::images::require(&images, name)?;
    let metas = meta_dir(&images)?;
    Ok(StorageReply::ImageMeta(read_meta(
        &metas,
        &format!("{name}.json"),
        MAX_IMAGE_META,
    )?))
}

/// Remove an image's metadata (with `RemoveImage`).
pub fn forget(images: &OwnedFd, name: &str) -> Result<()> {
    let metas = meta_dir(images)?;
    with_caps(STORE, || {
        for f in [format!("{name}.layers"), format!("{name}.json")] {
            tupper_sys::atomic::remove_at(&metas, &f)
                .map_err(Error::io("cannot remove image metadata"))?;
        }
        Ok(())
    })
}

pub fn tag(store: &Store, uid: u32, source: &str, name: &str) -> Result<StorageReply> {
    reference::key(source)?;
    reference::key(name)?;
    let images = store.user_images(uid)?;
    crate::images::require(&images, source)?;
    if exists_at(&images, name)? {
        return Err(Error::AlreadyExists(format!(
            "image {name:?} already exists"
        )));
    }
    let src = open_dir_at(&images, source, "the image")?;
    let metas = meta_dir(&images)?;
    let layers = read_meta(&metas, &format!("{source}.layers"), MAX_IMAGE_LAYERS * 80)?;
    let meta = read_meta(&metas, &format!("{source}.json"), MAX_IMAGE_META)?;
    let partial = Partial::create_with(&images, |dir, n| subvol::snapshot(&src, dir, n))?;
    let sub = open_dir_at(&images, partial.name(), "the new image")?;
    subvol::make_readonly(&sub)?;
    drop(sub);
    if let (Some(l), Some(m)) = (layers, meta) {
        let chain: Vec<String> = String::from_utf8_lossy(&l)
            .lines()
            .map(str::to_string)
            .collect();
        write_meta(&metas, name, &chain, &m)?;
    }
    partial.commit(name)?;
    Ok(StorageReply::Done)
}

/// Remove every layer of the caller that no image's layer list names.
pub fn prune(store: &Store, uid: u32) -> Result<StorageReply> {
    let images = store.user_images(uid)?;
    let layers = layers_dir(&images)?;
    let metas = meta_dir(&images)?;
    let mut used = std::collections::HashSet::new();
    for image in visible_names(&images)? {
        if let Some(l) = read_meta(&metas, &format!("{image}.layers"), MAX_IMAGE_LAYERS * 80)? {
            for c in String::from_utf8_lossy(&l).lines() {
                if let Ok(d) = dir_name(c) {
                    used.insert(d.to_string());
                }
            }
        }
    }
    let mut removed = 0;
    for layer in visible_names(&layers)? {
        if !used.contains(&layer) {
            subvol::destroy(&layers, &layer)?;
            removed += 1;
        }
    }
    // Metadata of images that are gone (e.g. removed by an older helper).
    for f in visible_names(&metas)? {
        let image = f
            .strip_suffix(".layers")
            .or_else(|| f.strip_suffix(".json"))
            .unwrap_or(&f);
        if !exists_at(&images, image)? {
            with_caps(STORE, || {
                tupper_sys::atomic::remove_at(&metas, &f)
                    .map_err(Error::io("cannot remove image metadata"))
            })?;
        }
    }
    Ok(StorageReply::Pruned { layers: removed })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_image_spec() {
        let a = format!("sha256:{}", "a".repeat(64));
        let b = format!("sha256:{}", "b".repeat(64));
        assert_eq!(chain_id(None, &a), a);
        let c = chain_id(Some(&a), &b);
        assert_eq!(
            c,
            format!("sha256:{}", hex(Sha256::digest(format!("{a} {b}"))))
        );
        assert!(dir_name(&c).is_ok());
        assert!(dir_name("sha256:../../x").is_err());
    }
}
