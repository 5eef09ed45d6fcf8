//! The user's blob cache and the OCI image layouts a pull writes.
//!
//! Blobs live in `$XDG_CACHE_HOME/tupperware/blobs/sha256/<hex>` (else
//! `~/.cache/...`), a private (0700) directory of the user's: a blob is
//! written to a temporary file while its sha256 is computed, and renamed to
//! its digest only when digest and size match, so the cache never holds a
//! blob under a digest it does not have. An interrupted or repeated pull
//! reuses every blob that is complete (each is hashed again before use).
//! A pull's layout hard-links the blobs it needs from the cache.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

use super::manifest::Descriptor;
use crate::error::{Error, Result};

/// Temporary files older than this are left over from killed pulls.
const STALE: Duration = Duration::from_secs(24 * 3600);

pub struct Cache {
    /// `.../tupperware`
    root: PathBuf,
}

/// Make `dir` (and missing parents) with mode 0700 for the new ones.
fn private_dir(dir: &Path) -> Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::io(format!("create {}", dir.display()), e))
}

fn hex_of(digest: &str) -> Result<&str> {
    match digest.strip_prefix("sha256:") {
        Some(h) if super::reference::is_sha256_hex(h) => Ok(h),
        _ => Err(Error::user(format!("bad digest {digest:?}"))),
    }
}

impl Cache {
    /// The user's cache, created private if missing; one that is not the
    /// user's own, or that others may write to, is refused.
    pub fn open() -> Result<Cache> {
        let base = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .or_else(|| {
                std::env::var_os("HOME")
                    .map(PathBuf::from)
                    .filter(|p| p.is_absolute())
                    .map(|h| h.join(".cache"))
            })
            .ok_or_else(|| {
                Error::user(
                    "no cache directory: set HOME or XDG_CACHE_HOME to a directory of yours",
                )
            })?;
        Self::at(base.join("tupperware"))
    }

    pub fn at(root: PathBuf) -> Result<Cache> {
        private_dir(&root.join("blobs/sha256"))?;
        let meta = fs::symlink_metadata(&root)
            .map_err(|e| Error::io(format!("stat {}", root.display()), e))?;
        let me = nix::unistd::geteuid().as_raw();
        if !meta.is_dir() || meta.uid() != me || meta.mode() & 0o022 != 0 {
            return Err(Error::user(format!(
                "{} must be a directory of yours that others cannot write to",
                root.display()
            )));
        }
        let cache = Cache { root };
        cache.remove_stale();
        Ok(cache)
    }

    fn blobs(&self) -> PathBuf {
        self.root.join("blobs/sha256")
    }

    pub fn blob_path(&self, digest: &str) -> Result<PathBuf> {
        Ok(self.blobs().join(hex_of(digest)?))
    }

    /// Whether the cache holds `digest` with `size` bytes that hash right;
    /// a cached file that does not is removed.
    pub fn has(&self, digest: &str, size: u64) -> Result<bool> {
        let path = self.blob_path(digest)?;
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(Error::io(format!("open {}", path.display()), e)),
        };
        let ok = file.metadata().map(|m| m.len() == size).unwrap_or(false)
            && hash_reader(file, size, |_| {}).ok() == Some((hex_of(digest)?.to_string(), size));
        if !ok {
            let _ = fs::remove_file(&path);
        }
        Ok(ok)
    }

    /// Store the blob `digest` of `size` bytes from `reader`, hashing as it
    /// is written; on a mismatch nothing is left under any name.
    pub fn store(
        &self,
        digest: &str,
        size: u64,
        reader: impl Read,
        mut progress: impl FnMut(u64),
    ) -> Result<()> {
        let hex = hex_of(digest)?.to_string();
        let tmp_name = format!(
            ".tmp-{}-{}",
            std::process::id(),
            tupper_sys::random::hex(8).map_err(|e| Error::io("random name", e))?
        );
        let tmp = self.blobs().join(&tmp_name);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| Error::io(format!("create {}", tmp.display()), e))?;
        let result = (|| {
            let mut hasher = Sha256::new();
            let mut total: u64 = 0;
            let mut buf = vec![0u8; 256 << 10];
            let mut reader = reader.take(size.saturating_add(1));
            loop {
                let n = reader
                    .read(&mut buf)
                    .map_err(|e| Error::user(format!("download of {digest}: {e}")))?;
                if n == 0 {
                    break;
                }
                total += n as u64;
                if total > size {
                    return Err(Error::user(format!(
                        "the registry sent more than the {size} bytes of {digest}: refused"
                    )));
                }
                hasher.update(&buf[..n]);
                file.write_all(&buf[..n])
                    .map_err(|e| Error::io(format!("write {}", tmp.display()), e))?;
                progress(n as u64);
            }
            if total != size {
                return Err(Error::user(format!(
                    "the registry sent {total} of the {size} bytes of {digest}: refused"
                )));
            }
            let got = hex::encode(hasher.finalize());
            if got != hex {
                return Err(Error::user(format!(
                    "the registry sent a blob that does not match its digest {digest} \
                     (its content hashes to sha256:{got}): refused, nothing kept"
                )));
            }
            file.sync_all()
                .map_err(|e| Error::io(format!("sync {}", tmp.display()), e))?;
            Ok(())
        })();
        drop(file);
        match result {
            Ok(()) => {
                let dest = self.blobs().join(&hex);
                fs::rename(&tmp, &dest).map_err(|e| {
                    let _ = fs::remove_file(&tmp);
                    Error::io(format!("rename to {}", dest.display()), e)
                })?;
                // Read-only: a blob never changes once named.
                let _ =
                    fs::set_permissions(&dest, std::os::unix::fs::PermissionsExt::from_mode(0o400));
                Ok(())
            }
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                Err(e)
            }
        }
    }

    /// Read a small cached blob (a manifest or a config), at most `max` bytes.
    pub fn read(&self, digest: &str, max: u64) -> Result<Vec<u8>> {
        let path = self.blob_path(digest)?;
        let mut v = Vec::new();
        File::open(&path)
            .and_then(|f| f.take(max).read_to_end(&mut v))
            .map_err(|e| Error::io(format!("read {}", path.display()), e))?;
        Ok(v)
    }

    /// A new private directory for a pull's layout, in the cache.
    pub fn new_layout_dir(&self) -> Result<PathBuf> {
        let pulls = self.root.join("pulls");
        private_dir(&pulls)?;
        let id = tupper_sys::random::hex(8).map_err(|e| Error::io("random name", e))?;
        let dir = pulls.join(id);
        DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
        Ok(dir)
    }

    /// Remove temporary files and layouts that killed pulls left behind.
    fn remove_stale(&self) {
        let old = |p: &Path| {
            fs::symlink_metadata(p)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .is_some_and(|age| age > STALE)
        };
        if let Ok(d) = fs::read_dir(self.blobs()) {
            for e in d.flatten() {
                if e.file_name().to_string_lossy().starts_with(".tmp-") && old(&e.path()) {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
        if let Ok(d) = fs::read_dir(self.root.join("pulls")) {
            for e in d.flatten() {
                if old(&e.path()) {
                    let _ = fs::remove_dir_all(e.path());
                }
            }
        }
    }
}

/// sha256 (hex) and length of at most `max` bytes of `r`.
fn hash_reader(
    r: impl Read,
    max: u64,
    mut progress: impl FnMut(u64),
) -> std::io::Result<(String, u64)> {
    let mut hasher = Sha256::new();
    let mut r = r.take(max.saturating_add(1));
    let mut buf = vec![0u8; 256 << 10];
    let mut total = 0u64;
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
        progress(n as u64);
    }
    Ok((hex::encode(hasher.finalize()), total))
}

/// `sha256:<hex>` of `bytes`.
pub fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

mod hex {
    pub fn encode(bytes: impl AsRef<[u8]>) -> String {
        bytes.as_ref().iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Write an OCI image layout in `dir` (empty, the caller's): `oci-layout`,
/// `index.json` naming `manifest` with the reference annotations, and
/// `blobs/sha256/` holding `blobs` (the manifest's own digest among them),
/// hard-linked from the cache, or copied when `dir` is on another
/// filesystem.
pub fn write_layout(
    dir: &Path,
    cache: &Cache,
    manifest: &Descriptor,
    blobs: &[&str],
    ref_name: &str,
    full_name: &str,
) -> Result<()> {
    let blob_dir = dir.join("blobs/sha256");
    private_dir(&blob_dir)?;
    for digest in blobs {
        let from = cache.blob_path(digest)?;
        let to = blob_dir.join(hex_of(digest)?);
        if to.exists() {
            continue;
        }
        if fs::hard_link(&from, &to).is_err() {
            fs::copy(&from, &to).map_err(|e| {
                Error::io(format!("copy {} to {}", from.display(), to.display()), e)
            })?;
        }
    }
    let mut desc = serde_json::to_value(manifest)
        .map_err(|e| Error::user(format!("encode index.json: {e}")))?;
    desc["annotations"] = serde_json::json!({
        "org.opencontainers.image.ref.name": ref_name,
        "io.containerd.image.name": full_name,
    });
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": super::manifest::OCI_INDEX,
        "manifests": [desc],
    });
    write_file(
        &dir.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;
    let text = serde_json::to_vec_pretty(&index)
        .map_err(|e| Error::user(format!("encode index.json: {e}")))?;
    write_file(&dir.join("index.json"), &text)
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io(format!("create {}", path.display()), e))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| Error::io(format!("write {}", path.display()), e))
}

/// Check a layout written by [`write_layout`]: `oci-layout`, an
/// `index.json` with one manifest, and every blob it needs present with its
/// size (sizes only: the loader hashes what it uses).
pub fn check_layout(dir: &Path) -> Result<()> {
    let bad = |why: String| {
        Error::user(format!(
            "{}: not a complete OCI layout: {why}",
            dir.display()
        ))
    };
    let read = |name: &str| -> Result<Vec<u8>> {
        let mut v = Vec::new();
        File::open(dir.join(name))
            .and_then(|f| f.take(super::manifest::MAX_MANIFEST).read_to_end(&mut v))
            .map_err(|e| bad(format!("{name}: {e}")))?;
        Ok(v)
    };
    read("oci-layout")?;
    let index: serde_json::Value =
        serde_json::from_slice(&read("index.json")?).map_err(|e| bad(e.to_string()))?;
    let manifests: Vec<Descriptor> = serde_json::from_value(index["manifests"].clone())
        .map_err(|e| bad(format!("index.json: {e}")))?;
    let [m] = manifests.as_slice() else {
        return Err(bad("index.json must name exactly one manifest".into()));
    };
    let blob = |d: &Descriptor| -> Result<()> {
        let p = dir.join("blobs/sha256").join(hex_of(&d.digest)?);
        match fs::metadata(&p) {
            Ok(meta) if meta.len() == d.size => Ok(()),
            _ => Err(bad(format!(
                "blob {} missing or of the wrong size",
                d.digest
            ))),
        }
    };
    blob(m)?;
    let bytes = read(&format!("blobs/sha256/{}", hex_of(&m.digest)?))?;
    match super::manifest::parse(&bytes, Some(&m.media_type))? {
        super::manifest::Document::Manifest { config, layers, .. } => {
            blob(&config)?;
            layers.iter().try_for_each(blob)
        }
        super::manifest::Document::Index(_) => Err(bad("index.json names an index".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blob_is_kept_only_under_its_own_digest() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::at(dir.path().join("tupperware")).unwrap();
        let data = b"hello layer".to_vec();
        let d = digest_of(&data);
        let mut seen = 0;
        cache
            .store(&d, data.len() as u64, &data[..], |n| seen += n)
            .unwrap();
        assert_eq!(seen, data.len() as u64);
        assert!(cache.has(&d, data.len() as u64).unwrap());
        assert_eq!(cache.read(&d, 100).unwrap(), data);

        // Wrong content, short and long content: refused, nothing left.
        let other = digest_of(b"something else");
        for (content, size) in [
            (&b"hello layer"[..], 11u64),
            (&b"hello"[..], 11),
            (&b"hello layer!"[..], 11),
        ] {
            let e = cache
                .store(&other, size, content, |_| {})
                .unwrap_err()
                .to_string();
            assert!(e.contains("refused"), "{e}");
            assert!(!cache.has(&other, size).unwrap());
        }
        let names: Vec<_> = fs::read_dir(cache.blobs())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names.len(), 1, "only the good blob: {names:?}");
        let mode = fs::metadata(dir.path().join("tupperware")).unwrap().mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    #[test]
    fn a_tampered_cached_blob_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::at(dir.path().join("tw")).unwrap();
        let data = b"abc".to_vec();
        let d = digest_of(&data);
        cache.store(&d, 3, &data[..], |_| {}).unwrap();
        let p = cache.blob_path(&d).unwrap();
        fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        fs::write(&p, b"abd").unwrap();
        assert!(!cache.has(&d, 3).unwrap());
        assert!(!p.exists());
    }

    #[test]
    fn a_layout_names_its_manifest_and_holds_its_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::at(dir.path().join("tw")).unwrap();
        let config =
            br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
        let layer = b"not really gzip".to_vec();
        let (cd, ld) = (digest_of(config), digest_of(&layer));
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cd}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{ld}","size":{}}}]}}"#,
            super::super::manifest::OCI_MANIFEST,
            config.len(),
            layer.len()
        );
        let md = digest_of(manifest.as_bytes());
        for (d, b) in [
            (&cd, &config[..]),
            (&ld, &layer[..]),
            (&md, manifest.as_bytes()),
        ] {
            cache.store(d, b.len() as u64, b, |_| {}).unwrap();
        }
        let desc = Descriptor {
            media_type: super::super::manifest::OCI_MANIFEST.into(),
            digest: md.clone(),
            size: manifest.len() as u64,
            platform: None,
        };
        let out = dir.path().join("layout");
        fs::create_dir(&out).unwrap();
        write_layout(
            &out,
            &cache,
            &desc,
            &[&md, &cd, &ld],
            "latest",
            "r.example/x:latest",
        )
        .unwrap();
        check_layout(&out).unwrap();
        let index = fs::read_to_string(out.join("index.json")).unwrap();
        assert!(
            index.contains(r#""org.opencontainers.image.ref.name": "latest""#),
            "{index}"
        );
        fs::remove_file(
            out.join("blobs/sha256")
                .join(ld.strip_prefix("sha256:").unwrap()),
        )
        .unwrap();
        assert!(check_layout(&out).is_err());
    }
}
