//! The lease records in `<state_dir>/leases.json` and the decisions made on
//! them: which records are stale, which addresses are taken, what conflicts.
//! Pure logic; reading and writing the file is in `state_dir`.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::error::{NetError, Result};

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
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Leases {
    pub leases: Vec<Lease>,
}

/// Leases are small; anything bigger than this is not ours.
pub const MAX_FILE_LEN: u64 = 16 << 20;

impl Leases {
    pub fn parse(text: &str) -> Result<Leases> {
        serde_json::from_str(text).map_err(|e| NetError::State(format!("leases.json: {e}")))
    }

    pub fn to_json(&self) -> Result<Vec<u8>> {
        let mut v = serde_json::to_vec_pretty(self)
            .map_err(|e| NetError::State(format!("cannot encode leases: {e}")))?;
        v.push(b'\n');
        Ok(v)
    }

    /// Remove and return the records whose container is gone: another boot,
    /// or the pid no longer runs the process that was attached.
    /// `start_time(pid)` is the current start time of `pid`, `None` if none runs.
    pub fn take_stale(
        &mut self,
        boot_id: &str,
        start_time: impl Fn(i32) -> Option<u64>,
    ) -> Vec<Lease> {
        let (stale, live): (Vec<_>, Vec<_>) = std::mem::take(&mut self.leases)
            .into_iter()
            .partition(|l| l.boot_id != boot_id || start_time(l.pid) != Some(l.pid_start_time));
        self.leases = live;
        stale
    }

    /// A live record already holds this container id, this network namespace
    /// or this host interface name.
    pub fn conflicts(&self, container: &str, netns: NsId, host_interface: &str) -> bool {
        self.leases.iter().any(|l| {
            l.container == container || l.netns == netns || l.host_interface == host_interface
        })
    }

    pub fn used_addresses(&self) -> HashSet<Ipv4Addr> {
        self.leases.iter().map(|l| l.address).collect()
    }

    /// Position of the caller's own lease for `container`.
    pub fn position_of(&self, container: &str, uid: u32) -> Option<usize> {
        self.leases
            .iter()
            .position(|l| l.container == container && l.uid == uid)
    }

    /// Remove the record of `container` owned by `uid`.
    pub fn remove(&mut self, container: &str, uid: u32) -> Option<Lease> {
        self.position_of(container, uid)
            .map(|i| self.leases.remove(i))
    }
}

/// This boot's id.
pub fn boot_id() -> Result<String> {
    let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map_err(|e| NetError::sys("read the boot id", e))?;
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
        }
    }

    #[test]
    fn round_trip_and_strict_parse() {
        let l = Leases {
            leases: vec![lease(2, "a", 10, 100), lease(3, "b", 11, 110)],
        };
        let bytes = l.to_json().unwrap();
        assert_eq!(
            Leases::parse(std::str::from_utf8(&bytes).unwrap()).unwrap(),
            l
        );
        assert!(Leases::parse("{\"leases\": [], \"extra\": 1}").is_err());
        assert!(Leases::parse("not json").is_err());
        assert_eq!(
            Leases::parse("{\"leases\": []}").unwrap(),
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
    fn remove_only_the_callers_lease() {
        let mut l = Leases {
            leases: vec![lease(2, "a", 10, 100)],
        };
        assert!(l.remove("a", 4242).is_none());
        assert_eq!(l.leases.len(), 1);
        assert_eq!(l.remove("a", 1001).unwrap().container, "a");
        assert!(l.leases.is_empty());
    }
}
