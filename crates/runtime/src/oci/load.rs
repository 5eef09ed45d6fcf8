//! `tupper_runtime::oci::load`: recognise the format, read and verify the
//! manifest and config, stream the missing layers, name the image.

use std::io::Read;
use std::path::Path;

use proto::frame::MAX_CHUNK_LEN;
use proto::reference::Reference;
use proto::{StorageReply, StorageRequest, MAX_IMAGE_LAYERS};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::config::{ImageConfig, ImageMeta};
use super::source::{clean, sha256_hex, verify, Source};
use crate::error::{Error, Result};
use crate::helpers::{Helper, HelperProcess, HelperStdio};

/// Largest index, manifest, config or `manifest.json` we read.
const MAX_JSON: u64 = 4 << 20;
/// Deepest nesting of indexes we follow.
const MAX_INDEX_DEPTH: usize = 4;

/// The annotation naming an image of a layout (its tag).
const REF_NAME: &str = "org.opencontainers.image.ref.name";

const INDEX_TYPES: &[&str] = &[
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

#[derive(Deserialize)]
struct Platform {
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    os: String,
    #[serde(default)]
    variant: Option<String>,
}

#[derive(Deserialize)]
struct Descriptor {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    platform: Option<Platform>,
    #[serde(default)]
    annotations: std::collections::BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct Index {
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

#[derive(Deserialize)]
struct Manifest {
    config: Descriptor,
    #[serde(default)]
    layers: Vec<Descriptor>,
}

#[derive(Deserialize)]
struct DockerEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

/// One layer to store: where its blob is and what it must hash to.
struct Layer {
    path: String,
    blob: Option<String>,
    size: u64,
}

/// This host's architecture in OCI's words.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

fn parse<T: for<'a> Deserialize<'a>>(bytes: &[u8], what: &str) -> Result<T> {
    serde_json::from_slice(bytes)
        .map_err(|e| Error::user(format!("the image's {what} is not valid: {e}")))
}

/// Load `source` (an OCI layout directory, an OCI archive, a Docker archive
/// or a root filesystem tarball, told apart by content) into the caller's
/// store; returns the name (reference key) it was stored under.
pub fn load(source: &Path, name: Option<&str>) -> Result<String> {
    let key = name.map(proto::reference::key_of).transpose()?;
    let meta = std::fs::metadata(source)
        .map_err(|e| Error::io(format!("cannot read {}", source.display()), e))?;
    let src = if meta.is_dir() {
        Source::dir(source)?
    } else if is_plain_tar(source)? {
        Source::tar(source)?
    } else {
        return rootfs(source, key);
    };
    if src.has("manifest.json") {
        docker(&src, key)
    } else if src.has("oci-layout") && src.has("index.json") {
        oci(&src, key)
    } else if meta.is_dir() {
        Err(Error::user(format!(
            "{} is a directory but not an OCI image layout (no oci-layout and index.json)",
            source.display()
        )))
    } else {
        rootfs(source, key)
    }
}

fn rootfs(source: &Path, key: Option<String>) -> Result<String> {
    let key = key.ok_or_else(|| {
        Error::user("a root filesystem tarball needs a name: image import NAME FILE")
    })?;
    let shown = source.to_string_lossy();
    crate::images::import(&key, &shown)?;
    Ok(key)
}

/// A tar with no compression (archives are; a compressed tarball is a root
/// filesystem).
fn is_plain_tar(path: &Path) -> Result<bool> {
    let mut head = [0u8; 512];
    let mut f = std::fs::File::open(path)
        .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
    let mut got = 0;
    while got < head.len() {
        match f.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) => return Err(Error::io(format!("cannot read {}", path.display()), e)),
        }
    }
    Ok(got == 512 && (&head[257..262] == b"ustar"))
}

fn platform_ok(p: &Option<Platform>) -> bool {
    match p {
        None => true,
        Some(p) => {
            (p.os.is_empty() || p.os == "linux")
                && (p.architecture.is_empty() || p.architecture == host_arch())
                && (host_arch() != "arm"
                    || p.variant.is_none()
                    || p.variant.as_deref() == Some("v7"))
        }
    }
}

/// The manifest for this host from an index, following nested indexes.
fn pick_manifest(
    src: &Source,
    index: Index,
    depth: usize,
    want_tag: Option<&str>,
) -> Result<(String, Manifest)> {
    if depth > MAX_INDEX_DEPTH {
        return Err(Error::user("the image's indexes nest too deeply"));
    }
    let mut candidates: Vec<&Descriptor> = index
        .manifests
        .iter()
        .filter(|d| platform_ok(&d.platform))
        .collect();
    if let Some(tag) = want_tag {
        let named: Vec<&Descriptor> = candidates
            .iter()
            .copied()
            .filter(|d| d.annotations.get(REF_NAME).map(String::as_str) == Some(tag))
            .collect();
        if !named.is_empty() {
            candidates = named;
        }
    }
    let d = *candidates.first().ok_or_else(|| {
        Error::user(format!(
            "the image has no manifest for linux/{}",
            host_arch()
        ))
    })?;
    // A layout holding several images (tags) and a name that selects none of
    // them: refuse rather than guess (a nested index lists platforms, where
    // the first for this host is the one).
    if depth == 0 && candidates.iter().any(|c| c.digest != d.digest) {
        let tags: Vec<&str> = candidates
            .iter()
            .filter_map(|c| c.annotations.get(REF_NAME).map(String::as_str))
            .collect();
        return Err(Error::user(format!(
            "the image layout holds {} images{}: choose one by its tag (image load FILE NAME:TAG)",
            candidates.len(),
            if tags.is_empty() {
                String::new()
            } else {
                format!(" (tags {})", tags.join(", "))
            }
        )));
    }
    let bytes = src.blob(&d.digest, MAX_JSON)?;
    if INDEX_TYPES.contains(&d.media_type.as_str()) {
        return pick_manifest(src, parse(&bytes, "index")?, depth + 1, None);
    }
    Ok((d.digest.clone(), parse(&bytes, "manifest")?))
}

fn oci(src: &Source, key: Option<String>) -> Result<String> {
    let index: Index = parse(&src.read_small("index.json", MAX_JSON)?, "index.json")?;
    // A name from the user wins; else the layout's ref.name annotation.
    let annotated = index
        .manifests
        .iter()
        .find_map(|d| d.annotations.get(REF_NAME).cloned());
    let want_tag = key.as_deref().map(|k| Reference::from_key(k).tag);
    let (manifest_digest, manifest) = pick_manifest(src, index, 0, want_tag.as_deref())?;
    let key = match key {
        Some(k) => k,
        None => {
            let n = annotated.filter(|a| Reference::parse(a).is_ok());
            let n = n.ok_or_else(|| {
                Error::user(
                    "the image layout names no repository: give a name (image load FILE NAME)",
                )
            })?;
            proto::reference::key_of(&n)?
        }
    };
    let config_bytes = src.blob(&manifest.config.digest, MAX_JSON)?;
    let layers = manifest
        .layers
        .iter()
        .map(|d| {
            Ok(Layer {
                path: super::source::blob_path(&d.digest)?,
                blob: Some(d.digest.clone()),
                size: d.size,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    store(
        src,
        &key,
        Some(manifest_digest),
        &manifest.config.digest,
        &config_bytes,
        layers,
    )
}

fn docker(src: &Source, key: Option<String>) -> Result<String> {
    let entries: Vec<DockerEntry> =
        parse(&src.read_small("manifest.json", MAX_JSON)?, "manifest.json")?;
    let entry = entries
        .into_iter()
        .next()
        .ok_or_else(|| Error::user("the archive's manifest.json lists no image"))?;
    let key = match key {
        Some(k) => k,
        None => {
            let tag = entry
                .repo_tags
                .as_ref()
                .and_then(|t| t.first().cloned())
                .ok_or_else(|| {
                    Error::user("the archive names no image: give a name (image load FILE NAME)")
                })?;
            proto::reference::key_of(&tag)?
        }
    };
    let config_path =
        clean(&entry.config).ok_or_else(|| Error::user("manifest.json: bad Config path"))?;
    let config_bytes = src.read_small(&config_path, MAX_JSON)?;
    // The config is named by its digest (`<hex>.json` or `blobs/sha256/<hex>`).
    let hex = config_path
        .rsplit('/')
        .next()
        .unwrap_or("")
        .trim_end_matches(".json");
    let id = format!("sha256:{hex}");
    if proto::reference::digest(&id).is_ok() {
        verify(&config_bytes, &id)?;
    }
    let id = format!("sha256:{}", sha256_hex(&config_bytes));
    let layers = entry
        .layers
        .iter()
        .map(|p| {
            let path = clean(p).ok_or_else(|| Error::user("manifest.json: bad layer path"))?;
            let blob = path
                .strip_prefix("blobs/sha256/")
                .map(|h| format!("sha256:{h}"))
                .filter(|d| proto::reference::digest(d).is_ok());
            let size = src.open(&path)?.1;
            Ok(Layer { path, blob, size })
        })
        .collect::<Result<Vec<_>>>()?;
    store(src, &key, None, &id, &config_bytes, layers)
}

fn chain_id(parent: Option<&str>, diff: &str) -> String {
    match parent {
        None => diff.to_string(),
        Some(p) => format!(
            "sha256:{}",
            Sha256::digest(format!("{p} {diff}"))
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        ),
    }
}

fn store(
    src: &Source,
    key: &str,
    manifest: Option<String>,
    config_digest: &str,
    config_bytes: &[u8],
    layers: Vec<Layer>,
) -> Result<String> {
    let config: ImageConfig = parse(config_bytes, "config")?;
    if !config.os.is_empty() && config.os != "linux" {
        return Err(Error::user(format!(
            "the image is for {}, not linux",
            config.os
        )));
    }
    let diffs = &config.rootfs.diff_ids;
    if layers.is_empty() || layers.len() > MAX_IMAGE_LAYERS {
        return Err(Error::user(format!(
            "an image has 1 to {MAX_IMAGE_LAYERS} layers; this one has {}",
            layers.len()
        )));
    }
    if diffs.len() != layers.len() {
        return Err(Error::user(format!(
            "the image's config lists {} layers and its manifest {}",
            diffs.len(),
            layers.len()
        )));
    }
    for d in diffs {
        proto::reference::digest(d)?;
    }
    let mut chains = Vec::with_capacity(diffs.len());
    for d in diffs {
        chains.push(chain_id(chains.last().map(String::as_str), d));
    }
    let mut helper = HelperProcess::spawn(Helper::Storage, HelperStdio::default())?;
    let have: StorageReply = helper.call(&StorageRequest::HasLayers {
        chains: chains.clone(),
    })?;
    let StorageReply::HaveLayers(have) = have else {
        return Err(Error::user("storage: unexpected reply to HasLayers"));
    };
    let progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
    for (i, layer) in layers.iter().enumerate() {
        if have.get(i).copied().unwrap_or(false) {
            continue;
        }
        let (mut input, _) = src.open(&layer.path)?;
        helper.send(&StorageRequest::LayerBegin {
            parent: i.checked_sub(1).map(|p| chains[p].clone()),
            diff_id: diffs[i].clone(),
            blob: layer.blob.clone(),
        })?;
        let mut buf = vec![0u8; MAX_CHUNK_LEN];
        let mut sent = 0u64;
        loop {
            let n = match input.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                // Dropping the helper without ImportEnd discards the layer.
                Err(e) => return Err(Error::io(format!("reading layer {}", layer.path), e)),
            };
            helper.send(&StorageRequest::ImportChunk(buf[..n].to_vec()))?;
            sent += n as u64;
            if progress {
                eprint!("\rlayer {}/{}: {} MiB", i + 1, layers.len(), sent >> 20);
            }
        }
        helper.send(&StorageRequest::ImportEnd)?;
        let reply: StorageReply = helper.recv_reply()?;
        if progress {
            eprintln!();
        }
        match reply {
            StorageReply::LayerStored { chain_id, .. } if chain_id == chains[i] => {}
            _ => return Err(Error::user("storage: unexpected reply to a layer")),
        }
    }
    let meta = ImageMeta {
        id: config_digest.to_string(),
        manifest,
        created: config.created.clone(),
        architecture: config.architecture.clone(),
        os: config.os.clone(),
        layers: diffs.clone(),
        size: layers.iter().map(|l| l.size).sum(),
        config: config.config.clone().unwrap_or_default(),
    };
    let meta = serde_json::to_vec(&meta)
        .map_err(|e| Error::user(format!("cannot encode image metadata: {e}")))?;
    let _: StorageReply = helper.call(&StorageRequest::CreateImage {
        name: key.to_string(),
        layers: chains,
        meta,
    })?;
    Ok(key.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_match_the_helpers() {
        let a = format!("sha256:{}", "a".repeat(64));
        let b = format!("sha256:{}", "b".repeat(64));
        assert_eq!(chain_id(None, &a), a);
        assert_eq!(chain_id(Some(&a), &b).len(), 71);
    }

    /// A layout whose index lists `tags` (each a manifest of its own).
    fn layout(tags: &[&str]) -> (tempfile::TempDir, Index) {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("blobs/sha256")).unwrap();
        let mut manifests = Vec::new();
        for tag in tags {
            let m = format!(
                r#"{{"config":{{"digest":"sha256:{}"}},"layers":[],"tag":"{tag}"}}"#,
                "c".repeat(64)
            );
            let hex = sha256_hex(m.as_bytes());
            std::fs::write(t.path().join("blobs/sha256").join(&hex), &m).unwrap();
            manifests.push(format!(
                r#"{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:{hex}","annotations":{{"{REF_NAME}":"{tag}"}}}}"#
            ));
        }
        let index = format!(r#"{{"manifests":[{}]}}"#, manifests.join(","));
        (t, serde_json::from_str(&index).unwrap())
    }

    #[test]
    fn a_layout_of_several_images_needs_a_tag() {
        let (t, index) = layout(&["base", "final"]);
        let src = Source::dir(t.path()).unwrap();
        let (digest, _) = pick_manifest(&src, index, 0, Some("final")).unwrap();
        let (_, index) = layout(&["base", "final"]);
        assert_eq!(index.manifests[1].digest, digest);
        // No tag, or one the layout does not have: refused, never the first.
        for want in [None, Some("latest")] {
            let (_, index) = layout(&["base", "final"]);
            let err = pick_manifest(&src, index, 0, want).err().unwrap();
            assert!(err.to_string().contains("base, final"), "{err}");
        }
        // One image: whatever the name.
        let (t, index) = layout(&["only"]);
        let src = Source::dir(t.path()).unwrap();
        assert!(pick_manifest(&src, index, 0, Some("latest")).is_ok());
    }

    #[test]
    fn platforms() {
        let p = |os: &str, arch: &str| {
            Some(Platform {
                os: os.into(),
                architecture: arch.into(),
                variant: None,
            })
        };
        assert!(platform_ok(&None));
        assert!(platform_ok(&p("linux", host_arch())));
        assert!(!platform_ok(&p("windows", host_arch())));
        assert!(!platform_ok(&p("linux", "s390x")));
    }
}
