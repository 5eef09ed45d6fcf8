//! Manifests and indexes (OCI and Docker schema 2), their bounds, and the
//! choice of this machine's platform from an index.

use serde::{Deserialize, Serialize};

use super::reference::check_digest;
use crate::error::{Error, Result};

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// What a manifest request accepts, best first.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.docker.distribution.manifest.v2+json";

/// A manifest or an index larger than this is refused (the distribution
/// spec's recommended limit).
pub const MAX_MANIFEST: u64 = 4 << 20;
/// An image configuration larger than this is refused.
pub const MAX_CONFIG: u64 = 8 << 20;
/// At most this many layers (docker stops at 127).
pub const MAX_LAYERS: usize = 256;
/// At most this many bytes in one layer blob (compressed).
pub const MAX_LAYER: u64 = 64 << 30;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    schema_version: Option<u32>,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<serde_json::Value>,
    #[serde(default)]
    layers: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct IndexDoc {
    manifests: Vec<Descriptor>,
}

#[derive(Debug, Deserialize)]
struct ManifestDoc {
    config: Descriptor,
    layers: Vec<Descriptor>,
}

/// A parsed manifest document.
#[derive(Debug, PartialEq, Eq)]
pub enum Document {
    Index(Vec<Descriptor>),
    Manifest {
        media_type: String,
        config: Descriptor,
        layers: Vec<Descriptor>,
    },
}

/// Parse a manifest document; `header_type` is the response's
/// `Content-Type`, used when the document does not say its own.
pub fn parse(bytes: &[u8], header_type: Option<&str>) -> Result<Document> {
    let bad = |why: String| Error::user(format!("the registry sent an invalid manifest: {why}"));
    let probe: Probe = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
    if probe.schema_version != Some(2) {
        return Err(bad(format!(
            "schema version {:?} (only schema 2, OCI and Docker, is supported)",
            probe.schema_version
        )));
    }
    let header_type = header_type.map(|h| h.split(';').next().unwrap_or(h).trim());
    let media_type = probe
        .media_type
        .clone()
        .or_else(|| header_type.map(str::to_string))
        .unwrap_or_else(|| {
            if probe.manifests.is_some() {
                OCI_INDEX.to_string()
            } else {
                OCI_MANIFEST.to_string()
            }
        });
    match media_type.as_str() {
        OCI_INDEX | DOCKER_LIST => {
            let doc: IndexDoc = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
            if probe.layers.is_some() {
                return Err(bad("an index with layers".into()));
            }
            for d in &doc.manifests {
                check_descriptor(d, MAX_MANIFEST).map_err(bad)?;
            }
            Ok(Document::Index(doc.manifests))
        }
        OCI_MANIFEST | DOCKER_MANIFEST => {
            let doc: ManifestDoc = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
            if probe.manifests.is_some() {
                return Err(bad("a manifest with manifests".into()));
            }
            check_descriptor(&doc.config, MAX_CONFIG).map_err(bad)?;
            if doc.layers.len() > MAX_LAYERS {
                return Err(bad(format!(
                    "{} layers (at most {MAX_LAYERS})",
                    doc.layers.len()
                )));
            }
            for d in &doc.layers {
                check_descriptor(d, MAX_LAYER).map_err(bad)?;
            }
            Ok(Document::Manifest {
                media_type,
                config: doc.config,
                layers: doc.layers,
            })
        }
        other => Err(bad(format!("media type {other:?} is not supported"))),
    }
}

fn check_descriptor(d: &Descriptor, max: u64) -> std::result::Result<(), String> {
    check_digest(&d.digest)?;
    if d.size > max {
        return Err(format!(
            "{} declares {} bytes (at most {max})",
            d.digest, d.size
        ));
    }
    if d.media_type.len() > 255 || d.media_type.chars().any(|c| c.is_control()) {
        return Err(format!("{}: bad media type", d.digest));
    }
    Ok(())
}

/// This machine's platform in OCI's words (`linux`, `amd64`, variant).
pub fn host_platform() -> Platform {
    let (architecture, variant) = match std::env::consts::ARCH {
        "x86_64" => ("amd64", None),
        "x86" => ("386", None),
        "aarch64" => ("arm64", Some("v8")),
        "arm" => ("arm", Some("v7")),
        "powerpc64" => ("ppc64le", None),
        "riscv64" => ("riscv64", None),
        "s390x" => ("s390x", None),
        "loongarch64" => ("loong64", None),
        other => (other, None),
    };
    Platform {
        architecture: architecture.to_string(),
        os: "linux".to_string(),
        variant: variant.map(str::to_string),
    }
}

/// The manifest of `want` in an index: same os and architecture; when the
/// platform has a variant, an entry with that variant is preferred, then
/// one naming none. Attestations (`unknown/unknown`) never match.
pub fn select_platform<'a>(index: &'a [Descriptor], want: &Platform) -> Result<&'a Descriptor> {
    let candidates: Vec<&Descriptor> = index
        .iter()
        .filter(|d| matches!(d.media_type.as_str(), OCI_MANIFEST | DOCKER_MANIFEST))
        .filter(|d| {
            d.platform
                .as_ref()
                .is_some_and(|p| p.os == want.os && p.architecture == want.architecture)
        })
        .collect();
    let variant_of = |d: &Descriptor| d.platform.as_ref().and_then(|p| p.variant.clone());
    let chosen = candidates
        .iter()
        .find(|d| want.variant.is_some() && variant_of(d) == want.variant)
        .or_else(|| candidates.iter().find(|d| variant_of(d).is_none()))
        .or_else(|| {
            // arm64 images are often published as plain "arm64" or "v8";
            // any remaining candidate of this architecture will do for it.
            candidates
                .iter()
                .find(|_| want.architecture == "arm64" || want.variant.is_none())
        });
    chosen.copied().ok_or_else(|| {
        let offered: Vec<String> = index
            .iter()
            .filter_map(|d| d.platform.as_ref())
            .map(|p| match &p.variant {
                Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
                None => format!("{}/{}", p.os, p.architecture),
            })
            .collect();
        Error::user(format!(
            "the image has no manifest for {}/{} (it offers: {})",
            want.os,
            want.architecture,
            if offered.is_empty() {
                "none with a platform".to_string()
            } else {
                offered.join(", ")
            }
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(n: u8) -> String {
        format!("sha256:{}", format!("{n:02x}").repeat(32))
    }

    fn entry(n: u8, os: &str, arch: &str, variant: Option<&str>) -> Descriptor {
        Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: digest(n),
            size: 500,
            platform: Some(Platform {
                architecture: arch.into(),
                os: os.into(),
                variant: variant.map(Into::into),
            }),
        }
    }

    fn platform(arch: &str, variant: Option<&str>) -> Platform {
        Platform {
            architecture: arch.into(),
            os: "linux".into(),
            variant: variant.map(Into::into),
        }
    }

    #[test]
    fn the_platform_is_chosen_from_an_index() {
        let idx = vec![
            entry(1, "unknown", "unknown", None),
            entry(2, "linux", "arm", Some("v6")),
            entry(3, "linux", "arm", Some("v7")),
            entry(4, "linux", "amd64", None),
            entry(5, "windows", "amd64", None),
            entry(6, "linux", "arm64", Some("v8")),
        ];
        assert_eq!(
            select_platform(&idx, &platform("amd64", None))
                .unwrap()
                .digest,
            digest(4)
        );
        assert_eq!(
            select_platform(&idx, &platform("arm", Some("v7")))
                .unwrap()
                .digest,
            digest(3)
        );
        assert_eq!(
            select_platform(&idx, &platform("arm64", Some("v8")))
                .unwrap()
                .digest,
            digest(6)
        );
        let e = select_platform(&idx, &platform("s390x", None))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("linux/s390x") && e.contains("linux/amd64"),
            "{e}"
        );
        // arm64 without a variant in the index.
        let idx = vec![entry(7, "linux", "arm64", None)];
        assert_eq!(
            select_platform(&idx, &platform("arm64", Some("v8")))
                .unwrap()
                .digest,
            digest(7)
        );
        // Only a windows image: refused.
        assert!(select_platform(
            &[entry(5, "windows", "amd64", None)],
            &platform("amd64", None)
        )
        .is_err());
    }

    #[test]
    fn this_machine_is_linux() {
        let p = host_platform();
        assert_eq!(p.os, "linux");
        if cfg!(target_arch = "x86_64") {
            assert_eq!(p.architecture, "amd64");
        }
    }

    #[test]
    fn manifests_and_indexes_are_parsed_and_bounded() {
        let m = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}",
                "config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":10}},
                "layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{}","size":20}}]}}"#,
            digest(1),
            digest(2)
        );
        match parse(m.as_bytes(), None).unwrap() {
            Document::Manifest { config, layers, .. } => {
                assert_eq!((config.size, layers.len()), (10, 1));
            }
            d => panic!("{d:?}"),
        }
        // The media type from the header when the document has none.
        let m2 = m.replace(&format!(r#""mediaType":"{OCI_MANIFEST}","#), "");
        assert!(matches!(
            parse(m2.as_bytes(), Some(DOCKER_MANIFEST)),
            Ok(Document::Manifest { .. })
        ));
        let i = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":3,"platform":{{"os":"linux","architecture":"amd64"}}}}]}}"#,
            digest(3)
        );
        assert!(matches!(parse(i.as_bytes(), None), Ok(Document::Index(v)) if v.len() == 1));
        // Refused: schema 1, bad digests, huge configs, unknown types, garbage.
        assert!(parse(br#"{"schemaVersion":1}"#, None).is_err());
        assert!(parse(m.replace(&digest(2), "sha256:xyz").as_bytes(), None).is_err());
        assert!(parse(
            m.replace(r#""size":10"#, r#""size":99999999999"#)
                .as_bytes(),
            None
        )
        .is_err());
        assert!(parse(m.replace(OCI_MANIFEST, "text/html").as_bytes(), None).is_err());
        assert!(parse(b"<html>", None).is_err());
    }
}
