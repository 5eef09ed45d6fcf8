//! `pull` over the OCI distribution API (issue 10).
//!
//! Everything here runs in the unprivileged supervisor as the user: the
//! reference is normalised ([`reference`]), the registry reached over HTTPS
//! with the system's CA store (or, with `--tls-verify=false`, without
//! verification or over plain HTTP) and authenticated against with a token
//! or basic auth from the user's `auth.json` ([`client`], [`auth`]); the
//! manifest (this machine's platform chosen from an index), the config and
//! the layers are streamed into the user's blob cache, each hashed while it
//! is written and kept only under the digest it matches ([`cache`]). The
//! pull then writes a private OCI image layout and hands it to the loader
//! ([`hand_off`]); no helper is involved before that.

pub mod auth;
pub mod cache;
pub mod client;
pub mod login;
pub mod manifest;
pub mod progress;
pub mod reference;

use std::path::{Path, PathBuf};

use tupper_config::registries::RegistriesConfig;

use crate::error::{Error, Result};
use cache::Cache;
use client::Client;
use manifest::{Descriptor, Document, MAX_CONFIG, MAX_MANIFEST};
use progress::Progress;
use reference::Reference;

/// `pull [REGISTRY/]REPOSITORY[:TAG|@DIGEST]`.
#[derive(Debug, Clone, clap::Args)]
pub struct PullOptions {
    /// The image: `[REGISTRY/]REPOSITORY[:TAG|@DIGEST]`; without a registry,
    /// the default one (`[registries] default`, docker.io unless set).
    pub reference: String,
    /// Verify the registry's TLS certificate (`=false` for a local registry:
    /// HTTPS without checking the certificate, else plain HTTP).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub tls_verify: Option<bool>,
    /// No progress output.
    #[arg(short, long)]
    pub quiet: bool,
    /// The local image name (default: the repository's last component).
    #[arg(long)]
    pub name: Option<String>,
    /// Write the image as an OCI image layout into DIR (new or empty)
    /// instead of loading it.
    #[arg(long, value_name = "DIR")]
    pub layout: Option<PathBuf>,
}

/// `run --pull`: podman's policies.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum PullPolicy {
    /// Pull when the image is not present.
    #[default]
    Missing,
    /// Pull every time.
    Always,
    /// Never pull: a missing image is an error.
    Never,
}

/// What `run IMAGE` starts from: a local image name, pulled first or not.
#[derive(Debug, PartialEq, Eq)]
pub struct RunImage {
    pub local: String,
    pub pull: Option<Reference>,
}

/// Decide, for `run IMAGE --pull POLICY`, which local image runs and whether
/// it is pulled first. `present` says whether a local image exists. A plain
/// local name that is present runs as it is (unless `always`); anything else
/// is read as a reference, whose local name is its repository's last
/// component.
pub fn plan_run_image(
    image: &str,
    policy: PullPolicy,
    default_registry: &str,
    present: impl Fn(&str) -> Result<bool>,
) -> Result<RunImage> {
    let local_ok = proto::validate::name(image).is_ok();
    if local_ok && policy != PullPolicy::Always && present(image)? {
        return Ok(RunImage {
            local: image.to_string(),
            pull: None,
        });
    }
    let reference = Reference::parse(image, default_registry)?;
    let local = reference.local_name();
    let have = present(&local)?;
    match policy {
        PullPolicy::Never if have => Ok(RunImage { local, pull: None }),
        PullPolicy::Never => Err(Error::user(format!(
            "image {image:?} is not present and --pull=never forbids pulling it \
             (see `tupper-supervisor image ls`)"
        ))),
        PullPolicy::Missing if have => Ok(RunImage { local, pull: None }),
        PullPolicy::Missing | PullPolicy::Always => Ok(RunImage {
            local,
            pull: Some(reference),
        }),
    }
}

/// `tupper-supervisor pull`: prints the image's local name (or, with
/// `--layout`, the manifest digest) on standard output.
pub fn pull(opts: &PullOptions) -> Result<()> {
    let config = registries_config()?;
    let reference = Reference::parse(&opts.reference, &config.default)?;
    if let Some(n) = &opts.name {
        proto::validate::name(n)?;
    }
    let tls_verify = config.tls_verify(&reference.registry, opts.tls_verify);
    let progress = Progress::new(opts.quiet);
    let cache = Cache::open()?;
    match &opts.layout {
        Some(dir) => {
            let created = prepare_output_dir(dir)?;
            let digest =
                fetch_into(&reference, tls_verify, &cache, dir, &progress).inspect_err(|_| {
                    // Nothing of a failed pull is left: the directory goes
                    // if the pull made it, else what the pull wrote in it.
                    if created {
                        let _ = std::fs::remove_dir_all(dir);
                    } else if let Ok(entries) = std::fs::read_dir(dir) {
                        for e in entries.flatten() {
                            let _ = std::fs::remove_dir_all(e.path())
                                .or_else(|_| std::fs::remove_file(e.path()));
                        }
                    }
                })?;
            println!("{digest}");
        }
        None => {
            let name = opts.name.clone().unwrap_or_else(|| reference.local_name());
            let image = pull_image(&reference, &name, tls_verify, &cache, &progress)?;
            println!("{image}");
        }
    }
    Ok(())
}

/// Pull `reference` and load it as `name` (what `run --pull` calls);
/// `tls_verify` is `run --tls-verify`, else the configuration decides.
pub fn pull_for_run(
    reference: &Reference,
    name: &str,
    tls_verify: Option<bool>,
    quiet: bool,
) -> Result<String> {
    let config = registries_config()?;
    let tls_verify = config.tls_verify(&reference.registry, tls_verify);
    let cache = Cache::open()?;
    pull_image(reference, name, tls_verify, &cache, &Progress::new(quiet))
}

pub(crate) fn registries_config() -> Result<RegistriesConfig> {
    tupper_config::SystemConfig::load()
        .map(|c| c.registries)
        .map_err(|e| Error::user(e.to_string()))
}

fn pull_image(
    reference: &Reference,
    name: &str,
    tls_verify: bool,
    cache: &Cache,
    progress: &Progress,
) -> Result<String> {
    let dir = cache.new_layout_dir()?;
    let result =
        fetch_into(reference, tls_verify, cache, &dir, progress).and_then(|_| hand_off(&dir, name));
    // The layout only links cached blobs: removing it frees nothing the
    // cache still holds, and a failed pull leaves no layout behind.
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Hand a complete layout to the OCI loader, which makes it the user's
/// image `name` and returns its name.
///
/// The loader (`crate::oci::load`, issue 10's other half) is not in this
/// build: the layout is checked, and the pull fails with a clear message.
/// Integration replaces the error with `crate::oci::load(layout, Some(name))`.
pub fn hand_off(layout: &Path, name: &str) -> Result<String> {
    proto::reference::key_of(name).map_err(|e| Error::user(e.to_string()))?;
    cache::check_layout(layout)?;
    crate::oci::load(layout, Some(name))
}

/// `--layout DIR`: a new directory (0700), or an empty one of the user's;
/// true when it was made here.
fn prepare_output_dir(dir: &Path) -> Result<bool> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let empty = std::fs::read_dir(dir)
                .map(|mut d| d.next().is_none())
                .unwrap_or(false);
            if !empty {
                return Err(Error::user(format!(
                    "{} exists and is not an empty directory",
                    dir.display()
                )));
            }
            Ok(false)
        }
        Err(e) => Err(Error::io(format!("create {}", dir.display()), e)),
    }
}

/// Download what `reference` names into the cache and write its layout
/// into `dir`; returns the manifest's digest.
fn fetch_into(
    reference: &Reference,
    tls_verify: bool,
    cache: &Cache,
    dir: &Path,
    progress: &Progress,
) -> Result<String> {
    progress.note(&format!("Pulling {reference}"));
    let auth_path = auth::auth_file_path();
    let auths = match &auth_path {
        Some(p) => auth::load(p)?,
        None => auth::AuthConfig::default(),
    };
    let credentials = auths
        .lookup(&reference.registry, &reference.repository)
        .cloned();
    let mut client = Client::connect(reference, tls_verify, credentials)?;

    // The manifest, through an index if the reference names one.
    let first = client.manifest(reference.manifest_reference())?;
    let first_digest = cache::digest_of(&first.bytes);
    if let Some(d) = &reference.digest {
        if *d != first_digest {
            return Err(Error::user(format!(
                "the registry answered {reference} with a manifest whose digest is \
                 {first_digest}: refused"
            )));
        }
    }
    let (bytes, media_type, digest, platform) =
        match manifest::parse(&first.bytes, first.content_type.as_deref())? {
            Document::Index(entries) => {
                let want = manifest::host_platform();
                let chosen = manifest::select_platform(&entries, &want)?.clone();
                let m = client.manifest(&chosen.digest)?;
                let got = cache::digest_of(&m.bytes);
                if got != chosen.digest || m.bytes.len() as u64 != chosen.size {
                    return Err(Error::user(format!(
                        "the registry sent a manifest for {} that does not match it \
                         (digest {got}, {} bytes): refused",
                        chosen.digest,
                        m.bytes.len()
                    )));
                }
                (m.bytes, chosen.media_type, chosen.digest, chosen.platform)
            }
            Document::Manifest { media_type, .. } => (first.bytes, media_type, first_digest, None),
        };
    let Document::Manifest { config, layers, .. } = manifest::parse(&bytes, Some(&media_type))?
    else {
        return Err(Error::user(format!(
            "{reference}: the index names another index; nested indexes are not supported"
        )));
    };
    // Config and layers into the cache, each verified while written.
    fetch_blob(&mut client, cache, progress, "config", &config)?;
    for (i, layer) in layers.iter().enumerate() {
        fetch_blob(
            &mut client,
            cache,
            progress,
            &format!("layer {}", i + 1),
            layer,
        )?;
    }
    // The config must be JSON of a bounded size (the loader reads it).
    let config_bytes = cache.read(&config.digest, MAX_CONFIG)?;
    serde_json::from_slice::<serde_json::Value>(&config_bytes).map_err(|e| {
        Error::user(format!(
            "the image config {} is not JSON: {e}",
            config.digest
        ))
    })?;
    // The manifest itself, under its digest, as the layout's root.
    if !cache.has(&digest, bytes.len() as u64)? {
        cache.store(&digest, bytes.len() as u64, &bytes[..], |_| {})?;
    }
    let manifest_desc = Descriptor {
        media_type,
        digest: digest.clone(),
        size: bytes.len() as u64,
        platform,
    };
    debug_assert!(bytes.len() as u64 <= MAX_MANIFEST);
    let mut blobs: Vec<&str> = vec![&digest, &config.digest];
    blobs.extend(layers.iter().map(|l| l.digest.as_str()));
    let ref_name = reference
        .tag
        .clone()
        .unwrap_or_else(|| reference.to_string());
    cache::write_layout(
        dir,
        cache,
        &manifest_desc,
        &blobs,
        &ref_name,
        &reference.to_string(),
    )?;
    progress.note(&format!("Digest: {digest}"));
    Ok(digest)
}

/// One blob into the cache, unless it is there already.
fn fetch_blob(
    client: &mut Client,
    cache: &Cache,
    progress: &Progress,
    what: &str,
    d: &Descriptor,
) -> Result<()> {
    let short = &d.digest[7..19];
    let bar = progress.blob(format!("{what} {short}"), d.size);
    if cache.has(&d.digest, d.size)? {
        bar.done(true);
        return Ok(());
    }
    let result = client
        .blob(&d.digest, d.size)
        .and_then(|reader| cache.store(&d.digest, d.size, reader, |n| bar.advance(n)));
    match result {
        Ok(()) => {
            bar.done(false);
            Ok(())
        }
        Err(e) => {
            bar.abandon();
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn present(names: &'static [&'static str]) -> impl Fn(&str) -> Result<bool> {
        move |n| Ok(names.contains(&n))
    }

    #[test]
    fn run_pulls_only_what_its_policy_says() {
        use PullPolicy::*;
        let hub = reference::DOCKER_HUB;
        // A present local image runs as it is, unless `always`.
        let r = plan_run_image("busybox", Missing, hub, present(&["busybox"])).unwrap();
        assert_eq!((r.local.as_str(), r.pull.is_none()), ("busybox", true));
        let r = plan_run_image("busybox", Never, hub, present(&["busybox"])).unwrap();
        assert!(r.pull.is_none());
        let r = plan_run_image("busybox", Always, hub, present(&["busybox"])).unwrap();
        assert_eq!(
            r.pull.unwrap().to_string(),
            "docker.io/library/busybox:latest"
        );
        // Missing: pulled under the repository's last component and its tag.
        let r =
            plan_run_image("127.0.0.1:5000/tools/alpine:3", Missing, hub, present(&[])).unwrap();
        assert_eq!(r.local, "alpine:3");
        assert_eq!(r.pull.unwrap().registry, "127.0.0.1:5000");
        // ... unless that name is present.
        let r = plan_run_image("quay.io/x/alpine", Missing, hub, present(&["alpine"])).unwrap();
        assert!(r.pull.is_none());
        // Never and absent: an error that says why.
        let e = plan_run_image("alpine", Never, hub, present(&[])).unwrap_err();
        assert!(e.to_string().contains("--pull=never"), "{e}");
        assert!(plan_run_image("Bad Name", Missing, hub, present(&[])).is_err());
    }

    #[test]
    fn pull_takes_its_flags() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct T {
            #[command(flatten)]
            p: PullOptions,
        }
        let t = T::try_parse_from(["t", "--tls-verify=false", "-q", "127.0.0.1:5000/x"]).unwrap();
        assert_eq!((t.p.tls_verify, t.p.quiet), (Some(false), true));
        let t = T::try_parse_from(["t", "--tls-verify", "x"]).unwrap();
        assert_eq!(t.p.tls_verify, Some(true));
        let t = T::try_parse_from(["t", "x"]).unwrap();
        assert_eq!(t.p.tls_verify, None);
    }
}
