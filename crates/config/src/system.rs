//! System configuration, read only from the path compiled into the binaries.
//!
//! Helpers never take a configuration path from their caller. Test builds set
//! `TUPPER_SYSCONFDIR` at compile time to point at a test prefix instead.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::Error;

/// Directory holding `tupperware.toml`, fixed at build time.
pub const SYSCONFDIR: &str = match option_env!("TUPPER_SYSCONFDIR") {
    Some(d) => d,
    None => "/etc/tupperware",
};

/// Directory holding the helper binaries, fixed at build time.
pub const LIBEXECDIR: &str = match option_env!("TUPPER_LIBEXECDIR") {
    Some(d) => d,
    None => "/usr/local/libexec/tupperware",
};

pub fn system_config_path() -> PathBuf {
    Path::new(SYSCONFDIR).join("tupperware.toml")
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SystemConfig {
    pub store: StoreConfig,
    pub network: NetworkConfig,
    pub runtime: RuntimeConfig,
    // Issue 10: where `pull` goes (engineer "pull").
    pub registries: crate::registries::RegistriesConfig,
    // Issue 9: where the cgroups go.
    pub cgroups: crate::cgroups::CgroupsConfig,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Root of the store.
    pub path: PathBuf,
    /// Size of the sparse btrfs image created when `path` is not on btrfs,
    /// in bytes or with a K/M/G/T suffix.
    pub image_size: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkConfig {
    /// Name of the bridge the containers attach to.
    pub bridge: String,
    /// Container subnet in CIDR form.
    pub subnet: String,
    /// Address of the bridge, the containers' default gateway.
    pub gateway: Ipv4Addr,
    // Issue 11 (engineer "net"): outbound access and published ports.
    /// Masquerade the subnet to the host's uplinks and forward for the bridge.
    pub outbound: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// Where helpers keep host-wide state (address leases). Root-owned.
    pub state_dir: PathBuf,
    // Issue 8: container logs written by each container's monitor.
    /// Size at which a container's log file is rotated (bytes or K/M/G).
    pub log_size_max: String,
    /// Log files kept per container, the current one included (at least 1).
    pub log_files: u32,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            path: PathBuf::from("/var/lib/tupperware"),
            image_size: "20G".into(),
        }
    }
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            bridge: "tupper0".into(),
            subnet: "10.88.0.0/16".into(),
            gateway: Ipv4Addr::new(10, 88, 0, 1),
            outbound: true,
        }
    }
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            state_dir: PathBuf::from("/run/tupperware"),
            log_size_max: "10M".into(),
            log_files: 2,
        }
    }
}

impl SystemConfig {
    /// Load the compiled-in system configuration; a missing file means defaults.
    pub fn load() -> Result<SystemConfig, Error> {
        Self::load_from(&system_config_path())
    }

    pub fn load_from(path: &Path) -> Result<SystemConfig, Error> {
        let cfg_err = |why: String| Error::Config {
            path: path.display().to_string(),
            why,
        };
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(SystemConfig::default())
            }
            Err(e) => return Err(cfg_err(e.to_string())),
        };
        let cfg = Self::parse(&text).map_err(cfg_err)?;
        Ok(cfg)
    }

    pub fn parse(text: &str) -> Result<SystemConfig, String> {
        let cfg: SystemConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        cfg.check()?;
        Ok(cfg)
    }

    fn check(&self) -> Result<(), String> {
        if !self.store.path.is_absolute() {
            return Err("store.path must be absolute".into());
        }
        if !self.runtime.state_dir.is_absolute() {
            return Err("runtime.state_dir must be absolute".into());
        }
        self.store.image_size_bytes()?;
        self.cgroups.check()?;
        match parse_bytes(&self.runtime.log_size_max) {
            Some(n) if n >= 4096 => {}
            _ => return Err("runtime.log_size_max must be a size of at least 4K".into()),
        }
        if !(1..=100).contains(&self.runtime.log_files) {
            return Err("runtime.log_files must be between 1 and 100".into());
        }
        let (net, prefix) = self.network.subnet()?;
        if !(8..=30).contains(&prefix) {
            return Err("network.subnet prefix must be between /8 and /30".into());
        }
        if mask(prefix) & u32::from(self.network.gateway) != u32::from(net) {
            return Err("network.gateway must lie inside network.subnet".into());
        }
        self.registries.check()?;
        let b = &self.network.bridge;
        if b.is_empty()
            || b.len() > 15
            || !b
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        {
            return Err("network.bridge must be 1 to 15 letters, digits, '-' or '_'".into());
        }
        Ok(())
    }
}

/// Netmask of a prefix length, as a host-order integer.
pub fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix as u32)
    }
}

impl NetworkConfig {
    /// The subnet as (network address, prefix length); host bits must be zero.
    pub fn subnet(&self) -> Result<(Ipv4Addr, u8), String> {
        let (addr, prefix) = self
            .subnet
            .split_once('/')
            .ok_or_else(|| format!("network.subnet {:?} is not in CIDR form", self.subnet))?;
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| format!("network.subnet {:?}: bad address", self.subnet))?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| *p <= 32)
            .ok_or_else(|| format!("network.subnet {:?}: bad prefix length", self.subnet))?;
        if u32::from(addr) & !mask(prefix) != 0 {
            return Err(format!(
                "network.subnet {:?} has host bits set",
                self.subnet
            ));
        }
        Ok((addr, prefix))
    }
}

impl RuntimeConfig {
    /// The log size cap in bytes (checked at load).
    pub fn log_size_max_bytes(&self) -> u64 {
        parse_bytes(&self.log_size_max).unwrap_or(10 << 20)
    }
}

impl StoreConfig {
    pub fn image_size_bytes(&self) -> Result<u64, String> {
        parse_size(&self.image_size).ok_or_else(|| {
            format!(
                "store.image_size {:?}: expected bytes or a number with K, M, G or T",
                self.image_size
            )
        })
    }
}

/// `"20G"` → 20 GiB. At least 256 MiB (the smallest useful btrfs).
pub fn parse_size(s: &str) -> Option<u64> {
    parse_bytes(s).filter(|b| *b >= 256 << 20)
}

/// `"8G"` → 8 GiB: bytes, or a number with a K, M, G or T suffix (binary).
pub fn parse_bytes(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = match s.chars().last()? {
        'K' | 'k' => (&s[..s.len() - 1], 1u64 << 10),
        'M' | 'm' => (&s[..s.len() - 1], 1 << 20),
        'G' | 'g' => (&s[..s.len() - 1], 1 << 30),
        'T' | 't' => (&s[..s.len() - 1], 1 << 40),
        _ => (s, 1),
    };
    num.trim().parse::<u64>().ok()?.checked_mul(mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let c = SystemConfig::parse("").unwrap();
        assert_eq!(c, SystemConfig::default());
        assert_eq!(
            c.network.subnet().unwrap(),
            (Ipv4Addr::new(10, 88, 0, 0), 16)
        );
    }

    #[test]
    fn partial_files_and_errors() {
        let c = SystemConfig::parse("[network]\nbridge = \"tw-test0\"\n").unwrap();
        assert_eq!(c.network.bridge, "tw-test0");
        assert_eq!(c.store.path, PathBuf::from("/var/lib/tupperware"));
        assert!(SystemConfig::parse("[network]\nsubnet = \"10.88.0.1/16\"\n").is_err());
        assert!(SystemConfig::parse("[network]\ngateway = \"10.99.0.1\"\n").is_err());
        assert!(SystemConfig::parse("[store]\npath = \"rel\"\n").is_err());
        assert!(SystemConfig::parse("[store]\nbogus = 1\n").is_err());
        assert!(SystemConfig::parse("[network]\nbridge = \"waytoolongbridgename\"\n").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("20G"), Some(20 << 30));
        assert_eq!(parse_size("512M"), Some(512 << 20));
        assert_eq!(parse_size("1M"), None);
        assert_eq!(parse_size("x"), None);
        assert_eq!(parse_size("99999999999T"), None);
    }
}
