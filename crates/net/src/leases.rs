//! The lease records (one JSON file per address, see `lease_store`) and the
//! decisions made on them: which records are stale, which addresses are
//! taken, what conflicts, how many a user holds. Pure logic.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Identity of a namespace: device and inode of its nsfs file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NsId {
    pub dev: u64,
    pub ino: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lease {
    pub address: Ipv4Addr,
    pub uid: u32,
    pub container: String,
    /// Host pid of the container init and its start time (field 22 of
    /// `/proc/<pid>/stat`), which together name one process for one boot.
    pub pid: i32,
    pub pid_start_time: u64,
    /// The container's network namespace.
    pub netns: NsId,
    pub host_interface: String,
    pub boot_id: String,
    // Issue 11: the host ports published to this container (a lease file
    // without them is a lease without ports, so the version stays 1).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<proto::ports::PortSpec>,
}

/// The version of the lease file format this build writes and reads. Files
/// written before lease files had a version are version 1.
pub const LEASE_VERSION: u32 = 1;

/// A lease as written to its file: its fields plus the format's version.
#[derive(Serialize)]
struct Versioned<'a> {
    version: u32,
    #[serde(flatten)]
    lease: &'a Lease,
}

impl Lease {
    /// A lease file's contents; `file` names it in errors. A version other
    /// than [`LEASE_VERSION`] is an error, whatever else the file holds.
    pub fn parse(bytes: &[u8], file: &str) -> Result<Lease> {
        let corrupt = |e: serde_json::Error| Error::State(format!("lease record {file}: {e}"));
        let mut value: serde_json::Value = serde_json::from_slice(bytes).map_err(corrupt)?;
        let version = match value.as_object_mut().and_then(|o| o.remove("version")) {
            None => 1,
            Some(v) => v.as_u64().ok_or_else(|| {
                Error::State(format!(
                    "lease record {file}: the version {v} is not a number"
                ))
            })?,
        };
        if version != u64::from(LEASE_VERSION) {
            return Err(Error::State(format!(
                "lease record {file} has version {version}, which this tupper-net does not \
                 know (it reads version {LEASE_VERSION})"
            )));
        }
        serde_json::from_value(value).map_err(corrupt)
    }

    pub fn to_json(&self) -> Result<Vec<u8>> {
        let versioned = Versioned {
            version: LEASE_VERSION,
            lease: self,
        };
        let mut v = serde_json::to_vec_pretty(&versioned)
            .map_err(|e| Error::State(format!("cannot encode a lease: {e}")))?;
        v.push(b'\n');
        Ok(v)
    }

    /// The container is gone: another boot, or the pid no longer runs the
    /// process that was attached. `start_time(pid)` is the current start time
    /// of `pid`, `None` if none runs.
    pub fn is_stale(&self, boot_id: &str, start_time: impl Fn(i32) -> Option<u64>) -> bool {
        self.boot_id != boot_id || start_time(self.pid) != Some(self.pid_start_time)
    }

    /// The record holds this container id, this network namespace or this
    /// host interface name.
    pub fn conflicts(&self, container: &str, netns: NsId, host_interface: &str) -> bool {
        self.container == container || self.netns == netns || self.host_interface == host_interface
    }

    pub fn is(&self, container: &str, uid: u32) -> bool {
        self.container == container && self.uid == uid
    }
}

/// A set of records: a snapshot of the store, and the format of the single
/// `leases.json` of earlier versions (migrated by `lease_store`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Leases {
    pub leases: Vec<Lease>,
}

/// One lease record is a few hundred bytes (a few KiB with published ports); anything bigger is not ours.
pub const MAX_LEASE_LEN: u64 = 64 << 10;
/// The legacy `leases.json`.
pub const MAX_LEGACY_LEN: u64 = 16 << 20;

impl Leases {
    pub fn parse(text: &[u8]) -> Result<Leases> {
        serde_json::from_slice(text).map_err(|e| Error::State(format!("leases.json: {e}")))
    }

    #[cfg(test)]
    pub fn to_json(&self) -> Result<Vec<u8>> {
        serde_json::to_vec_pretty(self)
            .map_err(|e| Error::State(format!("cannot encode leases: {e}")))
    }

    /// Split off the stale records (see [`Lease::is_stale`]).
    pub fn take_stale(
        &mut self,
        boot_id: &str,
        start_time: impl Fn(i32) -> Option<u64>,
    ) -> Vec<Lease> {
        let (stale, live): (Vec<_>, Vec<_>) = std::mem::take(&mut self.leases)
            .into_iter()
            .partition(|l| l.is_stale(boot_id, &start_time));
        self.leases = live;
        stale
    }

    /// A record already holds this container id, this network namespace or
    /// this host interface name.
    pub fn conflicts(&self, container: &str, netns: NsId, host_interface: &str) -> bool {
        self.leases
            .iter()
            .any(|l| l.conflicts(container, netns, host_interface))
    }

    pub fn used_addresses(&self) -> HashSet<Ipv4Addr> {
        self.leases.iter().map(|l| l.address).collect()
    }

    /// How many records `uid` holds.
    pub fn count_of(&self, uid: u32) -> usize {
        self.leases.iter().filter(|l| l.uid == uid).count()
    }

    /// The caller's own record for `container`.
    pub fn find(&self, container: &str, uid: u32) -> Option<&Lease> {
        self.leases.iter().find(|l| l.is(container, uid))
    }
}

/// This boot's id.
pub fn boot_id() -> Result<String> {
    let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map_err(|e| Error::sys("read the boot id", e))?;
    Ok(id.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(n: u8, container: &str, pid: i32, start: u64) -> Lease {
        Lease {
            address: Ipv4Addr::new(10, 88, 0, n),
            uid: 1001,
            container: container.into(),
            pid,
            pid_start_time: start,
            netns: NsId {
                dev: 4,
                ino: 4000 + n as u64,
            },
            host_interface: format!("tw{container}"),
            boot_id: "boot-a".into(),
            ports: Vec::new(),
        }
    }

    #[test]
    fn lease_files_carry_a_version_and_an_unknown_one_is_an_error() {
        let one = lease(2, "c1", 10, 100);
        let json = one.to_json().unwrap();
        let mut value: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(value["version"], LEASE_VERSION);
        // Files written before versions existed are version 1.
        value.as_object_mut().unwrap().remove("version");
        let unversioned = serde_json::to_vec(&value).unwrap();
        assert_eq!(Lease::parse(&unversioned, "leases/10.88.0.2").unwrap(), one);
        // Any other version is refused by name, even if the rest would parse.
        value["version"] = 2.into();
        let future = serde_json::to_vec(&value).unwrap();
        let e = Lease::parse(&future, "leases/10.88.0.2")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("leases/10.88.0.2") && e.contains("version 2"),
            "{e}"
        );
        value["version"] = "one".into();
        let bad = serde_json::to_vec(&value).unwrap();
        assert!(Lease::parse(&bad, "leases/10.88.0.2").is_err());
    }

    #[test]
    fn round_trip_and_strict_parse() {
        let one = lease(2, "a", 10, 100);
        assert_eq!(Lease::parse(&one.to_json().unwrap(), "x").unwrap(), one);
        assert!(Lease::parse(b"{}", "x").is_err());
        let l = Leases {
            leases: vec![lease(2, "a", 10, 100), lease(3, "b", 11, 110)],
        };
        assert_eq!(Leases::parse(&l.to_json().unwrap()).unwrap(), l);
        assert!(Leases::parse(b"{\"leases\": [], \"extra\": 1}").is_err());
        assert!(Leases::parse(b"not json").is_err());
        assert_eq!(
            Leases::parse(b"{\"leases\": []}").unwrap(),
            Leases::default()
        );
    }

    #[test]
    fn stale_by_boot_pid_and_start_time() {
        let mut l = Leases {
            leases: vec![
                lease(2, "alive", 10, 100),
                lease(3, "gone", 11, 110),
                lease(4, "reused", 12, 120),
                Lease {
                    boot_id: "boot-old".into(),
                    ports: Vec::new(),
                    ..lease(5, "oldboot", 10, 100)
                },
            ],
        };
        let procs = |pid| match pid {
            10 => Some(100),
            12 => Some(999),
            _ => None,
        };
        let stale = l.take_stale("boot-a", procs);
        let names: Vec<_> = stale.iter().map(|s| s.container.as_str()).collect();
        assert_eq!(names, ["gone", "reused", "oldboot"]);
        assert_eq!(l.leases.len(), 1);
        assert_eq!(l.leases[0].container, "alive");
        // Their addresses are free again.
        assert_eq!(
            l.used_addresses(),
            [Ipv4Addr::new(10, 88, 0, 2)].into_iter().collect()
        );
    }

    #[test]
    fn conflicts_on_id_netns_or_interface() {
        let l = Leases {
            leases: vec![lease(2, "a", 10, 100)],
        };
        let other_ns = NsId { dev: 4, ino: 1 };
        assert!(l.conflicts("a", other_ns, "twz"));
        assert!(l.conflicts("z", l.leases[0].netns, "twz"));
        assert!(l.conflicts("z", other_ns, "twa"));
        assert!(!l.conflicts("z", other_ns, "twz"));
    }

    #[test]
    fn count_and_find_only_the_callers_leases() {
        let l = Leases {
            leases: vec![
                lease(2, "a", 10, 100),
                lease(3, "b", 11, 100),
                Lease {
                    uid: 4242,
                    ..lease(4, "c", 12, 100)
                },
            ],
        };
        assert_eq!(l.count_of(1001), 2);
        assert_eq!(l.count_of(4242), 1);
        assert_eq!(l.count_of(7), 0);
        assert!(l.find("a", 4242).is_none());
        assert_eq!(
            l.find("a", 1001).unwrap().address,
            Ipv4Addr::new(10, 88, 0, 2)
        );
    }
}
