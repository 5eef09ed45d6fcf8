//! Per-interface IPv6 sysctls: the bridge and the host ends of the veth pairs
//! never accept Router Advertisements, never autoconfigure, carry no IPv6 at
//! all (`disable_ipv6=1`): tupperware networks are IPv4 only.
//!
//! `/proc/sys/net` belongs to the opener's network namespace; the kernel
//! lets a holder of CAP_NET_ADMIN in it write there as if root.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use caps::Capability::CAP_NET_ADMIN;

use crate::capabilities::with_caps;
use crate::error::{Error, Result};

const CONF: &str = "/proc/sys/net/ipv6/conf";

/// A kernel interface name: 1–15 bytes, no `/`, whitespace or NUL, not `.`/`..`.
fn check_interface(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidConfig(format!(
            "invalid interface name {name:?}"
        )))
    }
}

fn conf_path(interface: &str, key: &str) -> PathBuf {
    PathBuf::from(CONF).join(interface).join(key)
}

/// Write `value` to the IPv6 sysctl `key` of `interface` (O_NOFOLLOW, no create).
fn write(interface: &str, key: &str, value: &str) -> Result<()> {
    let path = conf_path(interface, key);
    with_caps(&[CAP_NET_ADMIN], || {
        let mut f = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
            .map_err(|e| Error::sys(format!("open {}", path.display()), e))?;
        f.write_all(value.as_bytes())
            .map_err(|e| Error::sys(format!("write {value} to {}", path.display()), e))
    })
}

/// No IPv6 on `interface`: no RA, no autoconfiguration, no address, no route.
/// Nothing to do where the kernel has no IPv6 at all.
pub fn disable_ipv6(interface: &str) -> Result<()> {
    check_interface(interface)?;
    if !std::path::Path::new(CONF).is_dir() {
        return Ok(());
    }
    write(interface, "accept_ra", "0")?;
    write(interface, "autoconf", "0")?;
    write(interface, "disable_ipv6", "1")
}

// Issue 11: IPv4 per-interface switches (forwarding, route_localnet).
const CONF4: &str = "/proc/sys/net/ipv4/conf";

/// Write the IPv4 sysctl `key` of `interface`.
pub fn set_ipv4(interface: &str, key: &str, value: &str) -> Result<()> {
    check_interface(interface)?;
    let path = PathBuf::from(CONF4).join(interface).join(key);
    with_caps(&[CAP_NET_ADMIN], || {
        let mut f = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
            .map_err(|e| Error::sys(format!("open {}", path.display()), e))?;
        f.write_all(value.as_bytes())
            .map_err(|e| Error::sys(format!("write {value} to {}", path.display()), e))
    })
}

/// Read the IPv4 sysctl `key` of `interface`.
pub fn get_ipv4(interface: &str, key: &str) -> Result<String> {
    check_interface(interface)?;
    let path = PathBuf::from(CONF4).join(interface).join(key);
    std::fs::read_to_string(&path).map_err(|e| Error::sys(format!("read {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_before_paths_are_built() {
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "../all",
            "x y",
            "sixteen-chars-xx",
            "tw\0",
        ] {
            assert!(check_interface(bad).is_err(), "{bad:?}");
        }
        for good in ["tupper0", "tw0123456789ab", "br-x.1"] {
            assert!(check_interface(good).is_ok(), "{good:?}");
        }
        assert_eq!(
            conf_path("tupper0", "accept_ra"),
            PathBuf::from("/proc/sys/net/ipv6/conf/tupper0/accept_ra")
        );
    }
}
