//! Image references `[REGISTRY[:PORT]/]REPO[:TAG]` (issue 10) and the name an
//! image is stored under in the store (its *key*).
//!
//! The key is the reference with `/` written as `+` (which no reference
//! holds) and the tag `latest` left out, so `busybox`, `busybox:latest` name
//! the same image and every name of before references stays valid. Keys are
//! what the storage helper validates ([`key`]) and names files after.

use crate::Error;

/// Longest reference (the distribution spec's bound on a name is 255).
pub const MAX_REFERENCE_LEN: usize = 255;
/// Longest tag (the distribution spec's bound).
pub const MAX_TAG_LEN: usize = 128;

const RULES: &str = "a reference is [REGISTRY[:PORT]/]REPOSITORY[:TAG]: lowercase path \
    components of a-z, 0-9, '.', '_', '-' separated by '/', an optional registry host \
    (with a '.' or a ':PORT', or 'localhost'), and a tag of up to 128 letters, digits, \
    '_', '.', '-'";

fn bad(s: &str, why: &str) -> Error {
    Error::invalid(format!("image name {s:?}"), format!("{why}; {RULES}"))
}

fn component_ok(c: &str) -> bool {
    let b = c.as_bytes();
    !b.is_empty()
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|x| x.is_ascii_lowercase() || x.is_ascii_digit() || b"._-".contains(x))
        && !c.contains("..")
}

fn registry_ok(c: &str) -> bool {
    let (host, port) = match c.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (c, None),
    };
    let port_ok =
        port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    let host_ok = !host.is_empty()
        && host.split('.').all(|l| {
            !l.is_empty()
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
        });
    port_ok && host_ok
}

fn tag_ok(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_TAG_LEN
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|x| x.is_ascii_alphanumeric() || b"_.-".contains(x))
}

/// A parsed reference: repository (registry included) and tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub repository: String,
    pub tag: String,
}

impl Reference {
    /// Parse and validate a reference as a user writes it.
    pub fn parse(s: &str) -> Result<Reference, Error> {
        if s.is_empty() || s.len() > MAX_REFERENCE_LEN {
            return Err(bad(s, "it must be 1 to 255 characters"));
        }
        if s.starts_with('-') || s.starts_with('/') {
            return Err(bad(s, "it must not start with '-' or '/'"));
        }
        if s.contains('@') {
            return Err(bad(s, "digests are not accepted here"));
        }
        let last_slash = s.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (repo, tag) = match s[last_slash..].rfind(':') {
            Some(i) => (&s[..last_slash + i], &s[last_slash + i + 1..]),
            None => (s, "latest"),
        };
        if !tag_ok(tag) {
            return Err(bad(s, "bad tag"));
        }
        let parts: Vec<&str> = repo.split('/').collect();
        for (i, p) in parts.iter().enumerate() {
            let is_registry = i == 0
                && parts.len() > 1
                && (p.contains('.') || p.contains(':') || *p == "localhost");
            let ok = if is_registry {
                registry_ok(p)
            } else {
                component_ok(p)
            };
            if !ok {
                return Err(bad(s, &format!("bad component {p:?}")));
            }
        }
        Ok(Reference {
            repository: repo.to_string(),
            tag: tag.to_string(),
        })
    }

    /// The name the image is stored under.
    pub fn key(&self) -> String {
        let repo = self.repository.replace('/', "+");
        if self.tag == "latest" {
            repo
        } else {
            format!("{repo}:{}", self.tag)
        }
    }

    /// Back from a stored key (the inverse of [`Reference::key`]).
    pub fn from_key(key: &str) -> Reference {
        let (repo, tag) = match key.rsplit_once(':') {
            // A ':' followed by digits only and then '+' is a port, never a tag:
            // a tag comes after the last '+'.
            Some((r, t)) if !t.contains('+') => (r, t),
            _ => (key, "latest"),
        };
        Reference {
            repository: repo.replace('+', "/"),
            tag: tag.to_string(),
        }
    }
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.repository, self.tag)
    }
}

/// The key of a reference the user wrote.
pub fn key_of(s: &str) -> Result<String, Error> {
    Reference::parse(s).map(|r| r.key())
}

/// A stored image name as the storage helper receives it: 1 to 255
/// characters of a-z, A-Z, 0-9, `_.-:+`, starting with a lowercase letter or
/// a digit, no `..`, no `/`. Every [`name`](crate::validate::name) is one.
pub fn key(s: &str) -> Result<(), Error> {
    let b = s.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= MAX_REFERENCE_LEN
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|x| x.is_ascii_alphanumeric() || b"_.-:+".contains(x))
        && !s.contains("..");
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!("image name {s:?}"), RULES))
    }
}

/// `sha256:` and 64 lowercase hex digits (the only digest algorithm taken).
pub fn digest(s: &str) -> Result<(), Error> {
    match s.strip_prefix("sha256:") {
        Some(h)
            if h.len() == 64
                && h.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) =>
        {
            Ok(())
        }
        _ => Err(Error::invalid(
            format!("digest {s:?}"),
            "a digest is sha256: and 64 lowercase hex digits",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_and_keys() {
        for (r, k) in [
            ("busybox", "busybox"),
            ("busybox:latest", "busybox"),
            ("busybox:1.36", "busybox:1.36"),
            ("library/debian:bookworm", "library+debian:bookworm"),
            ("localhost:5000/a/b", "localhost:5000+a+b"),
            ("localhost:5000/a/b:v1", "localhost:5000+a+b:v1"),
            ("quay.io/x/y_z:V1.0", "quay.io+x+y_z:V1.0"),
            ("my_image", "my_image"),
        ] {
            let p = Reference::parse(r).unwrap();
            assert_eq!(p.key(), k, "{r}");
            key(k).unwrap();
            assert_eq!(Reference::from_key(k), p, "{r}");
        }
    }

    #[test]
    fn hostile_references() {
        for r in [
            "",
            "-rf",
            "/etc/passwd",
            "a/../b",
            "..",
            "a/..",
            "a..b",
            "A",
            "a:",
            "a:-x",
            "a@sha256:00",
            "a//b",
            "a/b/",
            "a+b",
            "a b",
            "a\0b",
            &"a".repeat(256),
            &format!("a:{}", "t".repeat(129)),
            "host:99999999/x",
        ] {
            assert!(Reference::parse(r).is_err(), "{r:?}");
        }
        for k in [
            "",
            ".layers",
            ".import-x",
            "a/b",
            "..",
            "a..b",
            "-a",
            "+a",
            &"a".repeat(256),
        ] {
            assert!(key(k).is_err(), "{k:?}");
        }
    }

    #[test]
    fn digests() {
        digest(&format!("sha256:{}", "a".repeat(64))).unwrap();
        for d in [
            "sha256:",
            "sha512:aa",
            &format!("sha256:{}", "A".repeat(64)),
            &format!("sha256:{}/", "a".repeat(63)),
        ] {
            assert!(digest(d).is_err(), "{d}");
        }
    }
}
