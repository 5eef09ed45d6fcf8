//! Image references, `[REGISTRY/]REPOSITORY[:TAG|@DIGEST]`, normalised as
//! docker does: no registry means the default one (`docker.io` unless
//! `[registries] default` says otherwise), and a single name on Docker Hub is
//! an official image under `library/`.

use std::fmt;

use crate::error::{Error, Result};

/// Docker Hub, by the name references use.
pub const DOCKER_HUB: &str = "docker.io";
/// The host that serves Docker Hub's distribution API.
const DOCKER_HUB_API: &str = "registry-1.docker.io";
/// The longest repository name the distribution spec allows.
const MAX_NAME: usize = 255;

/// A parsed, normalised reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// The registry as written (`docker.io`, `127.0.0.1:5000`, `quay.io`).
    pub registry: String,
    /// The repository path (`library/busybox`).
    pub repository: String,
    /// The tag; `latest` when neither tag nor digest was given.
    pub tag: Option<String>,
    /// `sha256:<64 hex>`, when pulled by digest (it wins over a tag).
    pub digest: Option<String>,
}

impl Reference {
    /// Parse `text` with `default_registry` for references that name none.
    pub fn parse(text: &str, default_registry: &str) -> Result<Reference> {
        let bad = |why: &str| Error::user(format!("invalid image reference {text:?}: {why}"));
        if text.is_empty() || text.len() > MAX_NAME + 200 {
            return Err(bad("empty or too long"));
        }
        let (rest, digest) = match text.rsplit_once('@') {
            Some((r, d)) => {
                check_digest(d).map_err(|why| bad(&why))?;
                (r, Some(d.to_string()))
            }
            None => (text, None),
        };
        // A ':' after the last '/' starts a tag; one before it is a port.
        let (name, tag) = match rest.rsplit_once(':') {
            Some((n, t)) if !t.contains('/') => (n, Some(t)),
            _ => (rest, None),
        };
        if let Some(t) = tag {
            check_tag(t).map_err(|why| bad(&why))?;
        }
        let (registry, path) = match name.split_once('/') {
            Some((first, path)) if is_registry(first) => (first.to_string(), path.to_string()),
            _ => (default_registry.to_string(), name.to_string()),
        };
        let registry = if registry == "index.docker.io" {
            DOCKER_HUB.to_string()
        } else {
            registry
        };
        check_registry(&registry).map_err(|why| bad(&why))?;
        let repository = if registry == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        check_repository(&repository).map_err(|why| bad(&why))?;
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, None) => Some("latest".to_string()),
            (None, Some(_)) => None,
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// What the manifest request names: the digest if any, else the tag.
    pub fn manifest_reference(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }

    /// The host (and port) of the registry's API.
    pub fn api_host(&self) -> &str {
        api_host_of(&self.registry)
    }

    /// The image's local name: the repository's last component
    /// (`docker.io/library/busybox:latest` is `busybox`).
    pub fn local_name(&self) -> String {
        let last = self
            .repository
            .rsplit('/')
            .next()
            .unwrap_or(&self.repository);
        // Repository components are `[a-z0-9]+([._-]|__)...`: already a valid
        // local name once cut to its length.
        let last: String = last.chars().take(63).collect();
        match self.tag.as_deref() {
            Some(t) if t != "latest" => format!("{last}:{t}"),
            _ => last,
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// The host (and port) of `registry`'s API.
pub fn api_host_of(registry: &str) -> &str {
    if registry == DOCKER_HUB {
        DOCKER_HUB_API
    } else {
        registry
    }
}

/// docker's rule: the first component is a registry when it has a dot or a
/// port, is `localhost`, or has upper case (repositories cannot).
fn is_registry(first: &str) -> bool {
    first.contains('.')
        || first.contains(':')
        || first == "localhost"
        || first.chars().any(|c| c.is_ascii_uppercase())
}

pub(super) fn check_registry(r: &str) -> std::result::Result<(), String> {
    let (host, port) = match r.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (r, None),
    };
    if let Some(p) = port {
        if p.parse::<u16>().map(|n| n == 0).unwrap_or(true) {
            return Err(format!("bad port in registry {r:?}"));
        }
    }
    let ok = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        });
    if ok {
        Ok(())
    } else {
        Err(format!("bad registry host {r:?}"))
    }
}

/// Path components `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`, joined by `/`.
pub(super) fn check_repository(repo: &str) -> std::result::Result<(), String> {
    if repo.len() > MAX_NAME {
        return Err(format!("repository name longer than {MAX_NAME} characters"));
    }
    for comp in repo.split('/') {
        if !component_ok(comp) {
            return Err(format!(
                "repository component {comp:?} must be lower-case letters and digits, \
                 separated by '.', '_', '__' or dashes"
            ));
        }
    }
    Ok(())
}

fn component_ok(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator: '.', '_', '__' or a run of '-'.
        let start = i;
        match b[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < b.len() && b[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < b.len() && b[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
        if i == start || i >= b.len() || !alnum(b[i]) {
            return false;
        }
    }
    true
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn check_tag(t: &str) -> std::result::Result<(), String> {
    let ok = !t.is_empty()
        && t.len() <= 128
        && t.chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        && t.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!("bad tag {t:?}"))
    }
}

/// Only sha256 digests: `sha256:` and 64 lower-case hex digits.
pub fn check_digest(d: &str) -> std::result::Result<(), String> {
    match d.split_once(':') {
        Some(("sha256", hex)) if is_sha256_hex(hex) => Ok(()),
        Some(("sha256", _)) => Err(format!("bad sha256 digest {d:?}")),
        Some((alg, _)) => Err(format!(
            "digest algorithm {alg:?} is not supported (only sha256)"
        )),
        None => Err(format!("bad digest {d:?}")),
    }
}

pub fn is_sha256_hex(hex: &str) -> bool {
    hex.len() == 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn p(s: &str) -> Reference {
        Reference::parse(s, DOCKER_HUB).unwrap()
    }

    #[test]
    fn short_names_are_official_docker_hub_images() {
        let r = p("busybox");
        assert_eq!(r.to_string(), "docker.io/library/busybox:latest");
        assert_eq!(r.api_host(), "registry-1.docker.io");
        assert_eq!(r.local_name(), "busybox");
        assert_eq!(
            p("library/busybox:1.36").to_string(),
            "docker.io/library/busybox:1.36"
        );
        assert_eq!(
            p("someone/tool").to_string(),
            "docker.io/someone/tool:latest"
        );
        assert_eq!(
            p("index.docker.io/alpine").to_string(),
            "docker.io/library/alpine:latest"
        );
        assert_eq!(
            p("docker.io/alpine:3").to_string(),
            "docker.io/library/alpine:3"
        );
    }

    #[test]
    fn registries_are_told_by_dot_port_or_localhost() {
        let r = p("127.0.0.1:5000/busybox");
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str()),
            ("127.0.0.1:5000", "busybox")
        );
        assert_eq!(r.tag.as_deref(), Some("latest"));
        let r = p("localhost/a/b:v1");
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()),
            ("localhost", "a/b", Some("v1"))
        );
        let r = p("quay.io/org/img");
        assert_eq!((r.registry.as_str(), r.api_host()), ("quay.io", "quay.io"));
        // Upper case first component: a registry, not a repository.
        assert_eq!(p("MyHost/x").registry, "MyHost");
    }

    #[test]
    fn the_default_registry_is_configurable() {
        let r = Reference::parse("busybox", "registry.example.org").unwrap();
        assert_eq!(r.to_string(), "registry.example.org/busybox:latest");
    }

    #[test]
    fn digests_win_over_tags() {
        let r = p(&format!("busybox@{D}"));
        assert_eq!((r.tag.as_deref(), r.digest.as_deref()), (None, Some(D)));
        assert_eq!(r.manifest_reference(), D);
        let r = p(&format!("127.0.0.1:5000/x:v2@{D}"));
        assert_eq!(r.manifest_reference(), D);
        assert_eq!(r.tag.as_deref(), Some("v2"));
    }

    #[test]
    fn malformed_references_are_refused() {
        for bad in [
            "",
            "Busybox",
            "busybox:",
            "busybox:-x",
            "a//b",
            "a/-b",
            "a/b-",
            "a..b",
            "a___b",
            "busybox@sha256:abc",
            "busybox@sha512:00",
            "busybox@",
            "host:0/x",
            "host:99999/x",
            "ex ample.com/x",
            "../x",
            "x/../../etc",
        ] {
            assert!(
                Reference::parse(bad, DOCKER_HUB).is_err(),
                "{bad:?} accepted"
            );
        }
        assert!(Reference::parse(&"a".repeat(300), DOCKER_HUB).is_err());
        assert!(Reference::parse(&format!("x:{}", "t".repeat(129)), DOCKER_HUB).is_err());
    }

    #[test]
    fn separators_in_repository_components() {
        for good in ["a.b", "a_b", "a__b", "a---b", "a1-2.c_d"] {
            assert!(component_ok(good), "{good}");
        }
        for bad in ["a.", ".a", "a.-b", "a_.b", "-a", "A"] {
            assert!(!component_ok(bad), "{bad}");
        }
    }
}
