//! Layer 2/3 isolation of the bridge ports: each port may send only frames
//! from its own MAC and IPv4 address (ARP and IPv4 only, no router traffic).
//!
//! The rules live in an nf_tables table of tupper-net's own, `bridge
//! tupperware` (see [`ruleset`] for its shape), spoken to over
//! `NETLINK_NETFILTER` with CAP_NET_ADMIN raised around the socket: no
//! `nft` subprocess, so no capability ever reaches another program.

pub mod expr;
pub mod nfnl;
pub mod ruleset;
pub mod socket;

use std::net::Ipv4Addr;

use caps::Capability::CAP_NET_ADMIN;

use crate::capabilities::with_caps;
use crate::error::{Error, Result};
use ruleset::PortIdentity;
use socket::{transact, Outcome};

#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    #[error("{what}: {source}")]
    Socket {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("nf_tables: {0}")]
    Protocol(String),
    #[error("nf_tables refused to {what}: {}", std::io::Error::from_raw_os_error(*errno))]
    Refused { what: String, errno: i32 },
    #[error(
        "bridge port filtering is unavailable: the kernel has no nf_tables bridge support \
         ({what}: {}); refusing to attach a container without it",
        std::io::Error::from_raw_os_error(*errno)
    )]
    Unsupported { what: String, errno: i32 },
    #[error("not a tupperware host interface name: {0:?}")]
    BadInterface(String),
}

impl From<FilterError> for Error {
    fn from(e: FilterError) -> Error {
        Error::State(format!("port filter: {e}"))
    }
}

/// The MAC address of the container end for `ip`: locally administered,
/// unicast, `02:42:` + the four address bytes.
pub fn container_mac(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x42, o[0], o[1], o[2], o[3]]
}

/// A host interface name we build chains for: `tw` + lowercase hex, at most 15 bytes.
fn check_name(host_if: &str) -> Result<(), FilterError> {
    let ok = host_if.len() <= 15
        && host_if.strip_prefix(ruleset::PORT_PREFIX).is_some_and(|r| {
            !r.is_empty()
                && r.bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        });
    if ok {
        Ok(())
    } else {
        Err(FilterError::BadInterface(host_if.to_string()))
    }
}

fn is_missing_support(errno: i32) -> bool {
    [
        libc::EOPNOTSUPP,
        libc::ENOENT,
        libc::EAFNOSUPPORT,
        libc::EPROTONOSUPPORT,
    ]
    .contains(&errno)
}

/// Install (or replace) the filter of port `host_if`, with the table, map and
/// base chain around it, in one atomic batch. Call before the port is up.
pub fn install_port(host_if: &str, ip: Ipv4Addr) -> Result<()> {
    check_name(host_if)?;
    let id = PortIdentity {
        mac: container_mac(ip),
        ip,
    };
    // Issue 11: the shared base chain is rewritten (a flush, so a wait for
    // the kernel's grace period) only when it is not exactly ours; what
    // cannot be read is rewritten, never trusted.
    let msgs = with_caps(&[CAP_NET_ADMIN], || {
        let seen = crate::nat::observe(libc::NFPROTO_BRIDGE as u8, ruleset::TABLE).ok();
        let intact = seen.is_some_and(|s| ruleset::base_shape().holds_in(&s));
        Ok(ruleset::install_port_with(host_if, &id, !intact))
    })?;
    let error = match with_caps(&[CAP_NET_ADMIN], || Ok(transact(&msgs)))? {
        Ok(Outcome::Applied) => return Ok(()),
        Ok(Outcome::Refused { what, errno }) => {
            // Table, map and base chain come first: a refusal there means no bridge support.
            let setup = ["create table", "create base chain", "create map"]
                .iter()
                .any(|p| what.starts_with(p));
            if setup && is_missing_support(errno) {
                FilterError::Unsupported { what, errno }
            } else {
                FilterError::Refused { what, errno }
            }
        }
        Err(FilterError::Socket { what, source })
            if source.raw_os_error() == Some(libc::EPROTONOSUPPORT) =>
        {
            FilterError::Unsupported {
                what: what.to_string(),
                errno: libc::EPROTONOSUPPORT,
            }
        }
        Err(e) => e,
    };
    Err(error.into())
}

/// Remove the filter of port `host_if`: flush its chain, delete its map
/// element, delete the chain. Whatever is already gone is fine.
pub fn remove_port(host_if: &str) -> Result<()> {
    check_name(host_if)?;
    let msgs = ruleset::remove_port(host_if);
    with_caps(&[CAP_NET_ADMIN], || {
        match transact(&msgs)? {
            Outcome::Applied => return Ok(()),
            Outcome::Refused { errno, .. } if errno == libc::ENOENT => {}
            Outcome::Refused { what, errno } => {
                return Err(FilterError::Refused { what, errno }.into())
            }
        }
        // Something was missing: the batch was not applied. One step at a time, skipping what is gone.
        for m in &msgs {
            match transact(std::slice::from_ref(m))? {
                Outcome::Applied => {}
                Outcome::Refused { errno, .. } if errno == libc::ENOENT => {}
                Outcome::Refused { what, errno } => {
                    return Err(FilterError::Refused { what, errno }.into())
                }
            }
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_is_local_unicast_and_carries_the_address() {
        let m = container_mac(Ipv4Addr::new(10, 88, 1, 7));
        assert_eq!(m, [0x02, 0x42, 10, 88, 1, 7]);
        assert_eq!(m[0] & 0x01, 0, "unicast");
        assert_eq!(m[0] & 0x02, 0x02, "locally administered");
    }

    #[test]
    fn only_tupperware_names() {
        assert!(check_name("tw0123456789ab").is_ok());
        for bad in [
            "",
            "tw",
            "eth0",
            "tw0123456789abcd",
            "tw01/..",
            "tw\"x",
            "twABC",
            "tupper0",
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}

/// Against the running kernel, as root, in a network namespace of the test's
/// own: `cargo test -p tupper-net -- --ignored` (reported ignored otherwise).
#[cfg(test)]
mod kernel_tests {
    use super::*;
    use std::process::Command;

    const NETNS: &str = "tw-nft-unit";

    fn nft_list() -> String {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                NETNS,
                "nft",
                "list",
                "table",
                "bridge",
                "tupperware",
            ])
            .output()
            .expect("run nft");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    #[test]
    #[ignore = "needs root and nf_tables; run with --ignored"]
    fn install_replace_remove_in_a_scratch_netns() {
        let _ = Command::new("ip").args(["netns", "del", NETNS]).status();
        assert!(Command::new("ip")
            .args(["netns", "add", NETNS])
            .status()
            .unwrap()
            .success());
        let worker = std::thread::spawn(|| -> Result<()> {
            let ns = std::fs::File::open(format!("/run/netns/{NETNS}")).unwrap();
            // SAFETY: setns on this thread only, with a namespace fd we own.
            assert_eq!(
                unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&ns), libc::CLONE_NEWNET) },
                0
            );
            let ip = Ipv4Addr::new(10, 88, 0, 2);
            install_port("tw0123456789ab", ip)?;
            install_port("tw0123456789ab", ip)?; // idempotent
            install_port("twfedcba987654", Ipv4Addr::new(10, 88, 0, 3))?;
            Ok(())
        });
        worker.join().unwrap().unwrap();
        let listed = nft_list();
        eprintln!("{listed}");
        assert_eq!(listed.matches("iifname vmap @ports").count(), 1, "{listed}");
        assert_eq!(
            listed
                .matches("ether saddr != 02:42:0a:58:00:02 drop")
                .count(),
            1,
            "{listed}"
        );
        assert!(listed.contains("chain port-twfedcba987654"), "{listed}");
        let worker = std::thread::spawn(|| -> Result<()> {
            let ns = std::fs::File::open(format!("/run/netns/{NETNS}")).unwrap();
            // SAFETY: as above.
            assert_eq!(
                unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&ns), libc::CLONE_NEWNET) },
                0
            );
            remove_port("tw0123456789ab")?;
            remove_port("tw0123456789ab")?; // already gone: fine
            remove_port("tw111111111111")?; // never there: fine
            Ok(())
        });
        let removed = worker.join().unwrap();
        let listed = nft_list();
        let _ = Command::new("ip").args(["netns", "del", NETNS]).status();
        removed.unwrap();
        assert!(!listed.contains("tw0123456789ab"), "{listed}");
        assert!(listed.contains("chain port-twfedcba987654"), "{listed}");
    }

    fn nft(args: &[&str]) -> String {
        let out = Command::new("ip")
            .args(["netns", "exec", NETNS_BASE, "nft"])
            .args(args)
            .output()
            .expect("run nft");
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    const NETNS_BASE: &str = "tw-nft-base-unit";

    fn install_in_netns(host_if: &'static str, last: u8) -> Result<()> {
        std::thread::spawn(move || {
            let ns = std::fs::File::open(format!("/run/netns/{NETNS_BASE}")).unwrap();
            // SAFETY: setns on this thread only, with a namespace fd we own.
            assert_eq!(
                unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&ns), libc::CLONE_NEWNET) },
                0
            );
            install_port(host_if, Ipv4Addr::new(10, 88, 0, last))
        })
        .join()
        .unwrap()
    }

    #[test]
    #[ignore = "needs root and nf_tables; run with --ignored"]
    fn the_base_chain_is_kept_when_intact_and_rewritten_when_altered() {
        let _ = Command::new("ip")
            .args(["netns", "del", NETNS_BASE])
            .status();
        assert!(Command::new("ip")
            .args(["netns", "add", NETNS_BASE])
            .status()
            .unwrap()
            .success());
        let result = std::panic::catch_unwind(|| {
            let base = || nft(&["-a", "list", "chain", "bridge", "tupperware", "prerouting"]);
            install_in_netns("tw0123456789ab", 2).unwrap();
            let first = base();
            assert!(first.contains("comment \"tupperware:"), "{first}");
            // Intact: left as it is (same handles), the port added all the same.
            install_in_netns("twfedcba987654", 3).unwrap();
            assert_eq!(base(), first);
            let table = nft(&["list", "table", "bridge", "tupperware"]);
            assert!(table.contains("chain port-twfedcba987654"), "{table}");
            // Hostile: an administrator's rule before ours goes at the next attach.
            nft(&[
                "insert",
                "rule",
                "bridge",
                "tupperware",
                "prerouting",
                "accept",
            ]);
            install_in_netns("tw111111111111", 4).unwrap();
            let again = base();
            assert!(!again.contains("\t\taccept"), "{again}");
            assert_ne!(again, first, "rewritten");
        });
        let _ = Command::new("ip")
            .args(["netns", "del", NETNS_BASE])
            .status();
        result.unwrap();
    }
}
