//! Host ends that no lease names any more.
//!
//! A released container's host end is normally not deleted by `Release`:
//! the container's network namespace dies with its last process, and the
//! kernel removes both ends of the veth pair with it, asynchronously, without
//! making anyone wait for its RCU grace periods. `Release` instead leaves a
//! tombstone (`<state_dir>/dying/<host interface>`, with the time of the
//! release) and removes the lease; the port's filter is gone first, so the
//! port passes nothing from then on (`iifname "tw*" drop`).
//!
//! The sweep (run by every `Attach` and `Release`) then finds, among the
//! veths of tupperware's naming in the host namespace:
//! - a tombstoned one the kernel has not removed after [`GRACE`]: someone
//!   still holds the old namespace (its owner, with a namespace file
//!   descriptor): deleted, synchronously, so it counts against no one;
//! - one that neither a lease nor a tombstone names: left by a crash between
//!   the removal of a record and of its interface: deleted.
//!
//! Another user's live interface is never touched: a lease record is written
//! before its interface is created and removed only after its interface was
//! deleted or tombstoned, so listing the interfaces *before* reading the
//! records and the records before the tombstones sees every interface named
//! by one of them.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use futures::TryStreamExt;
use rtnetlink::packet_route::link::{InfoKind, LinkAttribute, LinkInfo};
use rtnetlink::Handle;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::lease_store::LeaseStore;
use crate::leases::boot_id;
use crate::names::is_host_interface;
use crate::netlink::session;
use crate::state_dir::StateDir;

/// How long the kernel gets to remove a released host end before the sweep
/// deletes it itself. The kernel's namespace cleanup takes milliseconds; a
/// host end still there after this is held by someone.
pub const GRACE: Duration = Duration::from_secs(5);

const DIR: &str = "dying";
const MAX_TOMBSTONE_LEN: u64 = 4096;
/// One tombstone per released container whose end the kernel has not removed yet.
const MAX_ENTRIES: usize = 1 << 16;

/// Why a host end is still on the bridge without a lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Tombstone {
    /// Whose lease it was (diagnostics only).
    uid: u32,
    boot_id: String,
    /// `CLOCK_BOOTTIME` at the release, in milliseconds.
    released_ms: u64,
}

/// The tombstone directory.
pub struct Dying(StateDir);

impl Dying {
    pub fn open(state_dir: &Path) -> Result<Dying> {
        Ok(Dying(StateDir::open(state_dir)?.subdir(DIR)?))
    }

    #[cfg(test)]
    fn open_unprivileged(state_dir: &Path) -> Result<Dying> {
        Ok(Dying(StateDir::open_unprivileged(state_dir)?.subdir(DIR)?))
    }

    /// Record that `host_if` was released now and is left to the kernel.
    pub fn record(&self, host_if: &str, uid: u32) -> Result<()> {
        if !is_host_interface(host_if) {
            return Err(Error::State(format!(
                "not a tupperware host interface: {host_if:?}"
            )));
        }
        let stone = Tombstone {
            uid,
            boot_id: boot_id()?,
            released_ms: boottime_ms()?,
        };
        let bytes = serde_json::to_vec(&stone)
            .map_err(|e| Error::State(format!("cannot encode a tombstone: {e}")))?;
        // Issue 11: no fsync. A tombstone lost in a crash is safe: the
        // sweep then sees an end no lease names, an orphan, and deletes it.
        self.0.write_unsynced(host_if, &bytes)
    }

    /// Every tombstone with its age; `None` for one of another boot or
    /// unreadable (its age is unknown: old enough).
    fn ages(&self) -> Result<Vec<(String, Option<Duration>)>> {
        let boot = boot_id()?;
        let now = boottime_ms()?;
        let mut out = Vec::new();
        for name in self.0.names(MAX_ENTRIES)? {
            // Temporary files of an interrupted write are not tombstones.
            if !is_host_interface(&name) {
                continue;
            }
            let age = self
                .0
                .read(&name, MAX_TOMBSTONE_LEN)
                .ok()
                .flatten()
                .and_then(|b| serde_json::from_slice::<Tombstone>(&b).ok())
                .filter(|t| t.boot_id == boot)
                .map(|t| Duration::from_millis(now.saturating_sub(t.released_ms)));
            out.push((name, age));
        }
        Ok(out)
    }

    fn forget(&self, host_if: &str) -> Result<()> {
        // A forgotten tombstone back after a crash names an end already gone.
        self.0.remove_unsynced(host_if)
    }
}

/// What one sweep does.
#[derive(Debug, Default, PartialEq, Eq)]
struct Plan {
    /// Host ends to delete.
    delete: Vec<String>,
    /// Tombstones to remove (after the deletions).
    forget: Vec<String>,
}

/// The decision, from what was seen in this order: the host ends `listed`,
/// the host ends of the lease records `leased`, the tombstones and their ages.
fn plan(
    listed: &[String],
    leased: &HashSet<String>,
    tombstones: &[(String, Option<Duration>)],
) -> Plan {
    let mut plan = Plan::default();
    let listed_set: HashSet<&str> = listed.iter().map(String::as_str).collect();
    for (name, age) in tombstones {
        if !listed_set.contains(name.as_str()) {
            // The kernel removed it.
            plan.forget.push(name.clone());
        } else if leased.contains(name) {
            // A live lease names it (names are never reused, so this is not
            // expected): never delete a leased interface.
            plan.forget.push(name.clone());
        } else if age.is_some_and(|a| a < GRACE) {
            // Still dying: the kernel's to remove.
        } else {
            plan.delete.push(name.clone());
            plan.forget.push(name.clone());
        }
    }
    let tombstoned: HashSet<&str> = tombstones.iter().map(|(n, _)| n.as_str()).collect();
    for name in listed {
        if is_host_interface(name) && !leased.contains(name) && !tombstoned.contains(name.as_str())
        {
            plan.delete.push(name.clone());
        }
    }
    plan
}

/// Delete the host ends no lease names (see the module documentation).
pub fn sweep(state_dir: &Path) -> Result<()> {
    let dying = Dying::open(state_dir)?;
    // Order matters: interfaces, then records, then tombstones.
    let listed = session(|h| async move { host_interfaces(&h).await })?;
    let store = LeaseStore::open(state_dir)?;
    let leased: HashSet<String> = store
        .snapshot()?
        .leases
        .into_iter()
        .map(|l| l.host_interface)
        .collect();
    let tombstones = dying.ages()?;
    let plan = plan(&listed, &leased, &tombstones);
    if !plan.delete.is_empty() {
        crate::allocation::delete_interfaces(plan.delete.iter().map(String::as_str));
    }
    for name in &plan.forget {
        dying.forget(name)?;
    }
    Ok(())
}

/// [`sweep`], reporting a failure on stderr only: it must not fail the
/// request that runs it.
pub fn sweep_best_effort(state_dir: &Path) {
    if let Err(e) = sweep(state_dir) {
        eprintln!("tupper-net: sweeping released interfaces: {e}");
    }
}

/// Names of the veths of tupperware's naming in this thread's netns.
async fn host_interfaces(handle: &Handle) -> Result<Vec<String>> {
    let mut links = handle.link().get().execute();
    let mut names = Vec::new();
    while let Some(msg) = links
        .try_next()
        .await
        .map_err(|e| Error::netlink("list interfaces", e))?
    {
        let mut name = None;
        let mut veth = false;
        for attr in &msg.attributes {
            match attr {
                LinkAttribute::IfName(n) => name = Some(n),
                LinkAttribute::LinkInfo(info) => {
                    veth = info
                        .iter()
                        .any(|i| matches!(i, LinkInfo::Kind(InfoKind::Veth)))
                }
                _ => {}
            }
        }
        if let Some(n) = name.filter(|n| veth && is_host_interface(n)) {
            names.push(n.clone());
        }
    }
    Ok(names)
}

fn boottime_ms() -> Result<u64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into `ts`.
    if unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) } != 0 {
        return Err(Error::last_os("read the boot-time clock"));
    }
    Ok(ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "tw00000000000a";
    const B: &str = "tw00000000000b";
    const C: &str = "tw00000000000c";
    const D: &str = "tw00000000000d";

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn leased_interfaces_are_never_deleted() {
        let leased: HashSet<String> = s(&[A, B]).into_iter().collect();
        // Even with an old tombstone naming one (never expected).
        let p = plan(&s(&[A, B]), &leased, &[(A.into(), None)]);
        assert!(p.delete.is_empty(), "{p:?}");
        assert_eq!(p.forget, s(&[A]));
    }

    #[test]
    fn dying_ends_get_their_grace_then_go() {
        let leased = HashSet::new();
        let young = Some(Duration::from_millis(20));
        let old = Some(GRACE + Duration::from_secs(1));
        let p = plan(
            &s(&[A, B, C]),
            &leased,
            &[
                (A.into(), young),
                (B.into(), old),
                (C.into(), None),
                (D.into(), young),
            ],
        );
        // A is the kernel's still; B and C linger; D is gone.
        assert_eq!(p.delete, s(&[B, C]));
        assert_eq!(p.forget, s(&[B, C, D]));
    }

    #[test]
    fn orphans_of_our_naming_only() {
        let leased: HashSet<String> = s(&[A]).into_iter().collect();
        let listed = s(&[A, B, "tw0", "twp0123456789a", "twdoctor0"]);
        let p = plan(&listed, &leased, &[]);
        assert_eq!(p.delete, s(&[B]));
        assert!(p.forget.is_empty());
    }

    #[test]
    fn tombstones_round_trip_with_their_age() {
        let tmp = tempfile::tempdir().unwrap();
        let d = Dying::open_unprivileged(tmp.path()).unwrap();
        d.record(A, 1001).unwrap();
        assert!(d.record("tw0", 1001).is_err());
        assert!(d.record("../x", 1001).is_err());
        let ages = d.ages().unwrap();
        assert_eq!(ages.len(), 1);
        assert_eq!(ages[0].0, A);
        assert!(ages[0].1.is_some_and(|a| a < GRACE));
        // An unreadable one is of unknown age: old enough.
        std::fs::write(tmp.path().join(DIR).join(B), b"{ nope").unwrap();
        let mut ages = d.ages().unwrap();
        ages.sort();
        assert_eq!(ages[1], (B.to_string(), None));
        d.forget(A).unwrap();
        d.forget(A).unwrap();
        assert_eq!(d.ages().unwrap().len(), 1);
    }
}
