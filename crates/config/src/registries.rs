//! `[registries]` of `tupperware.toml` (issue 10): where `pull` goes for a
//! reference that names no registry, and which registries are reached
//! without TLS verification.
//!
//! ```toml
//! [registries]
//! default = "docker.io"          # `pull busybox` is docker.io/library/busybox:latest
//! insecure = ["registry.lan:5000"]  # as if --tls-verify=false (HTTPS unchecked, else HTTP)
//! ```

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistriesConfig {
    /// The registry of references without one.
    pub default: String,
    /// Registries pulled from without TLS verification (a local registry).
    pub insecure: Vec<String>,
}

impl Default for RegistriesConfig {
    fn default() -> Self {
        RegistriesConfig {
            default: "docker.io".into(),
            insecure: Vec::new(),
        }
    }
}

impl RegistriesConfig {
    pub(crate) fn check(&self) -> Result<(), String> {
        for r in std::iter::once(&self.default).chain(&self.insecure) {
            if !host_port(r) {
                return Err(format!(
                    "registries: {r:?} is not a registry (HOST or HOST:PORT)"
                ));
            }
        }
        Ok(())
    }

    /// Whether `registry` is listed as insecure.
    pub fn is_insecure(&self, registry: &str) -> bool {
        self.insecure.iter().any(|r| r == registry)
    }

    /// Whether `registry`'s TLS certificate is verified: as `asked`
    /// (`--tls-verify`), else unless the registry is listed as insecure.
    pub fn tls_verify(&self, registry: &str, asked: Option<bool>) -> bool {
        asked.unwrap_or(!self.is_insecure(registry))
    }
}

fn host_port(r: &str) -> bool {
    let (host, port) = match r.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (r, None),
    };
    port.is_none_or(|p| p.parse::<u16>().is_ok_and(|n| n > 0))
        && !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|l| {
            !l.is_empty()
                && l.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use crate::SystemConfig;

    #[test]
    fn registries_section() {
        let c = SystemConfig::parse("").unwrap();
        assert_eq!(c.registries.default, "docker.io");
        let c = SystemConfig::parse(
            "[registries]\ndefault = \"registry.lan:5000\"\ninsecure = [\"registry.lan:5000\", \"127.0.0.1:5000\"]\n",
        )
        .unwrap();
        assert_eq!(c.registries.default, "registry.lan:5000");
        assert!(c.registries.is_insecure("127.0.0.1:5000"));
        assert!(!c.registries.is_insecure("docker.io"));
        for bad in [
            "default = \"\"",
            "default = \"a/b\"",
            "insecure = [\"h:0\"]",
            "bogus = 1",
        ] {
            assert!(
                SystemConfig::parse(&format!("[registries]\n{bad}\n")).is_err(),
                "{bad}"
            );
        }
    }
}
