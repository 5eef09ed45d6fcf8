//! Where leases live, and the locks that guard them.
//!
//! ```text
//! <state_dir>/leases/<address>        one lease record (JSON), replaced atomically
//! <state_dir>/leases/<address>.lock   flock guarding that address and its record
//! <state_dir>/users/<uid>.lock        flock serialising one user's attaches (their limit)
//! ```
//!
//! There is no global lock. The helpers run as their caller, who can stop
//! them at any moment: a stopped helper keeps only the address it holds (and
//! its own user's lock), so allocation skips a busy address (`LOCK_NB`) and
//! everything that must have one particular lock waits for it a bounded time
//! ([`BUSY_WAIT`]) and then says "busy, try again".
//!
//! Crash safety: a record is written (temporary file, fsync, rename, fsync of
//! the directory) before anything is plumbed for it, and removed only after
//! its interface is gone; a record whose container has died is reclaimed by
//! the next allocation that meets it. Lock files are never removed (removing
//! a lock file races with its next user).

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::leases::{Lease, Leases, MAX_LEASE_LEN, MAX_LEGACY_LEN};
use crate::state_dir::{Lock, StateDir};

/// The longest anyone waits for a lock that a (possibly stopped) helper holds.
pub const BUSY_WAIT: Duration = Duration::from_secs(3);

/// Lease records, lock and temporary files: never more than a few per address.
const MAX_ENTRIES: usize = 1 << 20;

/// The single lease file of earlier versions, migrated on first use.
const LEGACY_FILE: &str = "leases.json";
const LEGACY_TEMP: &str = "leases.json.tmp";

#[derive(Debug)]
pub struct LeaseStore {
    leases: StateDir,
    users: StateDir,
}

/// An address whose lock we hold: its record may be read, written, removed.
#[derive(Debug)]
pub struct Held {
    pub address: Ipv4Addr,
    _lock: Lock,
}

fn lock_name(address: Ipv4Addr) -> String {
    format!("{address}.lock")
}

impl LeaseStore {
    /// Open (creating if needed) the store in the configured state directory.
    pub fn open(state_dir: &Path) -> Result<LeaseStore> {
        Self::in_dir(StateDir::open(state_dir)?)
    }

    #[cfg(test)]
    pub fn open_unprivileged(state_dir: &Path) -> Result<LeaseStore> {
        Self::in_dir(StateDir::open_unprivileged(state_dir)?)
    }

    fn in_dir(root: StateDir) -> Result<LeaseStore> {
        let store = LeaseStore {
            leases: root.subdir("leases")?,
            users: root.subdir("users")?,
        };
        store.migrate_legacy(&root)?;
        Ok(store)
    }

    /// Move the records of an old `leases.json` into their own files (those
    /// not there already), then remove it. Idempotent: a crash midway is
    /// finished by the next helper.
    fn migrate_legacy(&self, root: &StateDir) -> Result<()> {
        let Some(bytes) = root.read(LEGACY_FILE, MAX_LEGACY_LEN)? else {
            return Ok(());
        };
        for lease in Leases::parse(&bytes)?.leases {
            let held = self
                .hold_within(lease.address, BUSY_WAIT)?
                .ok_or(Error::Busy {
                    what: format!("address {}", lease.address),
                    waited: BUSY_WAIT,
                })?;
            if self.read(&held)?.is_none() {
                self.write(&held, &lease)?;
            }
        }
        root.remove(LEGACY_TEMP)?;
        root.remove(LEGACY_FILE)
    }

    /// The caller's own lock, which only their own helpers contend for.
    pub fn lock_user(&self, uid: u32) -> Result<Lock> {
        self.users
            .lock_within(&format!("{uid}.lock"), BUSY_WAIT)?
            .ok_or(Error::Busy {
                what: "another attach of yours".into(),
                waited: BUSY_WAIT,
            })
    }

    /// `address`, if no one else holds it. Never waits.
    pub fn try_hold(&self, address: Ipv4Addr) -> Result<Option<Held>> {
        Ok(self.leases.try_lock(&lock_name(address))?.map(|lock| Held {
            address,
            _lock: lock,
        }))
    }

    /// `address`, waiting at most `wait` for whoever holds it.
    pub fn hold_within(&self, address: Ipv4Addr, wait: Duration) -> Result<Option<Held>> {
        Ok(self
            .leases
            .lock_within(&lock_name(address), wait)?
            .map(|lock| Held {
                address,
                _lock: lock,
            }))
    }

    /// Every record, without taking any lock: each file is replaced
    /// atomically, so each read is a whole record, but one may change right
    /// after. Decisions about one address are made again under its lock.
    pub fn snapshot(&self) -> Result<Leases> {
        let mut leases = Vec::new();
        for name in self.leases.names(MAX_ENTRIES)? {
            // Lock and temporary files are not records.
            let Ok(address) = name.parse::<Ipv4Addr>() else {
                continue;
            };
            if let Some(lease) = self.read_address(address)? {
                leases.push(lease);
            }
        }
        leases.sort_by_key(|l| l.address);
        Ok(Leases { leases })
    }

    /// The record of a held address.
    pub fn read(&self, held: &Held) -> Result<Option<Lease>> {
        self.read_address(held.address)
    }

    fn read_address(&self, address: Ipv4Addr) -> Result<Option<Lease>> {
        let name = address.to_string();
        let Some(bytes) = self.leases.read(&name, MAX_LEASE_LEN)? else {
            return Ok(None);
        };
        let lease = Lease::parse(&bytes, &format!("leases/{name}"))?;
        if lease.address != address {
            return Err(Error::State(format!(
                "the lease record of {address} names {}",
                lease.address
            )));
        }
        Ok(Some(lease))
    }

    /// Record `lease` for the held address.
    pub fn write(&self, held: &Held, lease: &Lease) -> Result<()> {
        if lease.address != held.address {
            return Err(Error::State(format!(
                "a lease of {} written for {}",
                lease.address, held.address
            )));
        }
        self.leases
            .write_atomic(&held.address.to_string(), &lease.to_json()?)
    }

    /// Forget the record of the held address.
    pub fn remove(&self, held: &Held) -> Result<()> {
        self.leases.remove(&held.address.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::leases::NsId;

    fn lease(n: u8, uid: u32) -> Lease {
        Lease {
            address: Ipv4Addr::new(10, 88, 0, n),
            uid,
            container: format!("{n:032x}"),
            pid: 77,
            pid_start_time: 5,
            netns: NsId { dev: 4, ino: 99 },
            host_interface: format!("tw{n:012x}"),
            boot_id: "b".into(),
            ports: Vec::new(),
        }
    }

    #[test]
    fn write_snapshot_remove() {
        let tmp = tempfile::tempdir().unwrap();
        let store = LeaseStore::open_unprivileged(tmp.path()).unwrap();
        assert_eq!(store.snapshot().unwrap(), Leases::default());
        let a = store
            .try_hold(Ipv4Addr::new(10, 88, 0, 3))
            .unwrap()
            .unwrap();
        let b = store
            .try_hold(Ipv4Addr::new(10, 88, 0, 2))
            .unwrap()
            .unwrap();
        store.write(&a, &lease(3, 1)).unwrap();
        store.write(&b, &lease(2, 2)).unwrap();
        assert!(store.write(&a, &lease(2, 1)).is_err());
        let snap = store.snapshot().unwrap();
        assert_eq!(snap.leases, [lease(2, 2), lease(3, 1)]);
        assert_eq!(store.read(&a).unwrap(), Some(lease(3, 1)));
        store.remove(&a).unwrap();
        assert_eq!(store.read(&a).unwrap(), None);
        assert_eq!(store.snapshot().unwrap().leases, [lease(2, 2)]);
        // One record per file, root-only permissions.
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(tmp.path().join("leases/10.88.0.2")).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn held_addresses_and_users_exclude_others() {
        let tmp = tempfile::tempdir().unwrap();
        let store = LeaseStore::open_unprivileged(tmp.path()).unwrap();
        let a = Ipv4Addr::new(10, 88, 0, 2);
        let held = store.try_hold(a).unwrap().unwrap();
        assert!(store.try_hold(a).unwrap().is_none());
        assert!(store
            .hold_within(a, Duration::from_millis(50))
            .unwrap()
            .is_none());
        assert!(store
            .try_hold(Ipv4Addr::new(10, 88, 0, 3))
            .unwrap()
            .is_some());
        drop(held);
        assert!(store.try_hold(a).unwrap().is_some());
        let mine = store.lock_user(1001).unwrap();
        // Another user is not affected by my lock.
        drop(store.lock_user(1002).unwrap());
        drop(mine);
    }

    #[test]
    fn a_record_under_the_wrong_name_or_corrupt_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let store = LeaseStore::open_unprivileged(tmp.path()).unwrap();
        std::fs::write(
            tmp.path().join("leases/10.88.0.9"),
            lease(2, 1).to_json().unwrap(),
        )
        .unwrap();
        assert!(store.snapshot().is_err());
        std::fs::write(tmp.path().join("leases/10.88.0.9"), b"{ nope").unwrap();
        assert!(store.snapshot().is_err());
        std::fs::remove_file(tmp.path().join("leases/10.88.0.9")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", tmp.path().join("leases/10.88.0.9")).unwrap();
        assert!(store.snapshot().is_err());
    }

    #[test]
    fn the_legacy_file_is_migrated_once() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("state")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            tmp.path().join("state"),
            std::fs::Permissions::from_mode(0o700),
        )
        .unwrap();
        let legacy = Leases {
            leases: vec![lease(2, 1), lease(5, 2)],
        };
        std::fs::write(
            tmp.path().join("state/leases.json"),
            legacy.to_json().unwrap(),
        )
        .unwrap();
        // A record already in the new layout wins over the legacy one.
        std::fs::create_dir(tmp.path().join("state/leases")).unwrap();
        std::fs::set_permissions(
            tmp.path().join("state/leases"),
            std::fs::Permissions::from_mode(0o700),
        )
        .unwrap();
        std::fs::write(
            tmp.path().join("state/leases/10.88.0.5"),
            lease(5, 3).to_json().unwrap(),
        )
        .unwrap();
        let store = LeaseStore::open_unprivileged(&tmp.path().join("state")).unwrap();
        assert_eq!(store.snapshot().unwrap().leases, [lease(2, 1), lease(5, 3)]);
        assert!(!tmp.path().join("state/leases.json").exists());
        // Reopening finds nothing more to do.
        let store = LeaseStore::open_unprivileged(&tmp.path().join("state")).unwrap();
        assert_eq!(store.snapshot().unwrap().leases.len(), 2);
    }
}
