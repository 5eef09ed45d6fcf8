//! Issue 11: which uplinks tupper-net turned forwarding on for, kept so that
//! they go back into the set `uplinks` of `ip tupperware` whenever the set
//! lost them (`nft flush ruleset`, an uninstall and reinstall of the table,
//! an administrator's `nft flush set`).
//!
//! ```text
//! <state_dir>/uplinks.json   {"boot_id": "...", "uplinks": [{"name": "eth0", "index": 2}]}
//! <state_dir>/uplinks.lock   flock of whoever rewrites the record
//! ```
//!
//! Without the record, an uplink's forwarding flag cannot tell who turned it
//! on: after a flush the set would come back empty and the host would forward
//! whatever arrives on the uplink. With it, every attach ([`ensure`]):
//! - puts every recorded interface whose forwarding is still on back into the
//!   set when it is missing there (an add batch only, never a deleting one);
//! - drops from the record an interface whose forwarding is off (the
//!   administrator turned it off) or that is gone: from then on it is the
//!   administrator's if they turn it on themselves. An uplink found off is
//!   turned on again by tupper-net as before (outbound needs it), and then it
//!   is recorded again, into the set first;
//! - leaves out an uplink whose forwarding was on before tupper-net ever
//!   turned it on (the administrator's, unchanged behaviour).
//!
//! Entries are matched by interface index, not name: a renamed interface
//! keeps its forwarding flag, so it stays restricted under its new name; a
//! new interface under an old name is not one tupper-net turned on.
//!
//! The record is tied to the boot: forwarding flags do not survive a reboot,
//! so a record of another boot names nothing of ours (an uplink turned on by
//! the administrator's `sysctl.d` at boot is theirs).
//!
//! A record that cannot be parsed is rebuilt failing closed: every uplink
//! whose forwarding is on, and every interface the kernel's set still holds,
//! counts as turned on by tupper-net (into the set, into the new record). An
//! administrator's uplink may be restricted to the bridge by that, never one
//! of ours left unrestricted. A record missing altogether (first use, or a
//! build that kept none) adopts what the set still holds.
//!
//! Cost on the attach path: one read of the record, and when it names an
//! interface, one dump of the set on the invocation's netfilter socket; the
//! lock, the rewrite and its fsyncs only when the record changes (once per
//! boot and uplink).

use std::ffi::{CStr, CString};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::state_dir::{Lock, StateDir};

const FILE: &str = "uplinks.json";
const LOCK: &str = "uplinks.lock";
const MAX_RECORD_LEN: u64 = 16 * 1024;
/// More uplinks than this is not a record we wrote.
const MAX_ENTRIES: usize = 64;
/// The longest an attach waits for another one rewriting the record.
const BUSY_WAIT: Duration = Duration::from_secs(3);

/// An interface tupper-net turned forwarding on for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub name: String,
    pub index: u32,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordFile {
    boot_id: String,
    uplinks: Vec<Entry>,
}

/// The record as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// No record: first use, or a build that kept none.
    Missing,
    /// A record of another boot: nothing it names is ours any more.
    Stale,
    /// A record that does not parse or names impossible interfaces.
    Corrupt,
    /// This boot's record, sorted by index.
    Entries(Vec<Entry>),
}

/// An interface as it is now (interfaces that are gone are not seen).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub name: String,
    pub index: u32,
    pub forwarding: bool,
    /// The interface of an IPv4 default route.
    pub uplink: bool,
    /// In the kernel's set `uplinks` now.
    pub in_set: bool,
}

/// What one [`ensure`] does, in this order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// Interfaces to add to the set (those of the new record not there yet).
    pub add_to_set: Vec<String>,
    /// The record after this ensure, sorted by index.
    pub record: Vec<Entry>,
    /// Whether the record must be rewritten.
    pub rewrite: bool,
    /// Uplinks whose forwarding tupper-net turns on (recorded first).
    pub enable: Vec<String>,
}

/// What to do, from the record and the interfaces as they are. Pure.
pub fn plan(recorded: &Recorded, seen: &[Seen]) -> Plan {
    let ours = |s: &Seen| {
        s.forwarding
            && match recorded {
                Recorded::Entries(e) => e.iter().any(|e| e.index == s.index),
                Recorded::Missing => s.in_set,
                Recorded::Stale => false,
                // Failing closed: whatever might be ours is.
                Recorded::Corrupt => s.uplink || s.in_set,
            }
    };
    let mut out = Plan::default();
    for s in seen {
        let enable = s.uplink && !s.forwarding;
        if !(enable || ours(s)) {
            continue;
        }
        if enable {
            out.enable.push(s.name.clone());
        }
        if !s.in_set {
            out.add_to_set.push(s.name.clone());
        }
        out.record.push(Entry {
            name: s.name.clone(),
            index: s.index,
        });
    }
    out.record.sort();
    out.record.dedup_by_key(|e| e.index);
    out.add_to_set.sort();
    out.add_to_set.dedup();
    out.rewrite = *recorded != Recorded::Entries(out.record.clone());
    out
}

/// A kernel interface name as the sysctls take it.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@'))
}

/// Parse a record's bytes for boot `boot`.
pub fn parse(bytes: &[u8], boot: &str) -> Recorded {
    let Ok(file) = serde_json::from_slice::<RecordFile>(bytes) else {
        return Recorded::Corrupt;
    };
    let sane = file.uplinks.len() <= MAX_ENTRIES
        && file
            .uplinks
            .iter()
            .all(|e| valid_name(&e.name) && e.index != 0);
    if !sane {
        return Recorded::Corrupt;
    }
    if file.boot_id != boot {
        return Recorded::Stale;
    }
    let mut entries = file.uplinks;
    entries.sort();
    Recorded::Entries(entries)
}

fn encode(entries: &[Entry], boot: &str) -> Result<Vec<u8>> {
    serde_json::to_vec(&RecordFile {
        boot_id: boot.to_string(),
        uplinks: entries.to_vec(),
    })
    .map_err(|e| Error::State(format!("cannot encode the uplinks record: {e}")))
}

/// The record in the state directory.
pub struct Record(StateDir);

impl Record {
    pub fn new(dir: StateDir) -> Record {
        Record(dir)
    }

    /// The record for boot `boot`. A record that cannot be read (other than
    /// missing) fails the attach; one that reads but does not parse is
    /// [`Recorded::Corrupt`] and gets rebuilt.
    pub fn read(&self, boot: &str) -> Result<Recorded> {
        match self.0.read(FILE, MAX_RECORD_LEN) {
            Ok(None) => Ok(Recorded::Missing),
            Ok(Some(bytes)) => Ok(parse(&bytes, boot)),
            // Too large: not ours, rebuilt.
            Err(Error::State(_)) => Ok(Recorded::Corrupt),
            Err(e) => Err(e),
        }
    }

    fn lock(&self) -> Result<Lock> {
        self.0.lock_within(LOCK, BUSY_WAIT)?.ok_or(Error::Busy {
            what: "the uplinks record".into(),
            waited: BUSY_WAIT,
        })
    }

    /// Replace the record atomically and durably (temporary file, fsync,
    /// rename, fsync of the directory): a torn record after a crash would
    /// fail closed at the next boot and restrict an administrator's uplink.
    fn write(&self, entries: &[Entry], boot: &str) -> Result<()> {
        self.0.write_atomic(FILE, &encode(entries, boot)?)
    }
}

/// What [`ensure`] needs from the system; the kernel's in production, a
/// scratch one in tests.
pub trait System {
    /// The interfaces of the IPv4 default routes (the bridge left out).
    fn uplinks(&mut self) -> Result<Vec<String>>;
    /// The members of the set `uplinks`; `None` if they cannot be read.
    fn set_members(&mut self) -> Option<Vec<String>>;
    fn add_to_set(&mut self, names: &[String]) -> Result<()>;
    fn enable_forwarding(&mut self, name: &str) -> Result<()>;
    /// The index of interface `name`, `None` if there is none.
    fn index_of(&mut self, name: &str) -> Option<u32>;
    /// The name of interface `index`, `None` if there is none.
    fn name_of(&mut self, index: u32) -> Option<String>;
    /// Whether `name`'s IPv4 forwarding is on, `None` if it cannot be read.
    fn forwarding(&mut self, name: &str) -> Option<bool>;
}

/// The interfaces that matter now: the uplinks, what the record names, and
/// (when asked) what the set holds. `fresh_set`: the set was just made, empty.
fn look(
    sys: &mut dyn System,
    bridge: &str,
    recorded: &Recorded,
    fresh_set: bool,
) -> Result<Vec<Seen>> {
    let uplinks = sys.uplinks()?;
    let recorded_entries: &[Entry] = match recorded {
        Recorded::Entries(e) => e,
        _ => &[],
    };
    // The set only matters for what may be ours: read it when something is.
    let wants_set =
        !recorded_entries.is_empty() || matches!(recorded, Recorded::Missing | Recorded::Corrupt);
    let members = if fresh_set || !wants_set {
        Some(Vec::new())
    } else {
        sys.set_members()
    };
    let mut seen: Vec<Seen> = Vec::new();
    let mut add = |sys: &mut dyn System, name: String, index: u32, uplink: bool| {
        if name == bridge || !valid_name(&name) {
            return;
        }
        if let Some(s) = seen.iter_mut().find(|s| s.index == index) {
            s.uplink |= uplink;
            return;
        }
        // Failing closed: a flag that cannot be read counts as on (a
        // recorded interface stays recorded and in the set; an uplink is
        // not turned on, nor claimed, on a guess).
        let forwarding = sys.forwarding(&name).unwrap_or(true);
        // Unknown members: assume missing (an add is idempotent).
        let in_set = members.as_ref().is_some_and(|m| m.contains(&name));
        seen.push(Seen {
            name,
            index,
            forwarding,
            uplink,
            in_set,
        });
    };
    for name in uplinks {
        if let Some(index) = sys.index_of(&name) {
            add(sys, name, index, true);
        }
    }
    for e in recorded_entries {
        if let Some(name) = sys.name_of(e.index) {
            add(sys, name, e.index, false);
        }
    }
    for name in members.iter().flatten() {
        if let Some(index) = sys.index_of(name) {
            add(sys, name.clone(), index, false);
        }
    }
    Ok(seen)
}

/// Make the set hold every uplink tupper-net turned on, and turn forwarding
/// on for the uplinks that have it off (into the set and the record first).
/// Called on every attach, after the table is in place; `fresh_set`: the
/// table was just written from nothing, so its set is empty.
pub fn ensure(
    sys: &mut dyn System,
    record: &Record,
    boot: &str,
    bridge: &str,
    fresh_set: bool,
) -> Result<()> {
    let recorded = record.read(boot)?;
    let mut plan = plan(&recorded, &look(sys, bridge, &recorded, fresh_set)?);
    let _lock = if plan.rewrite || !plan.enable.is_empty() {
        // Rare (once per boot and uplink): decided again under the lock, a
        // concurrent attach may just have done it.
        let lock = record.lock()?;
        let recorded = record.read(boot)?;
        plan = self::plan(&recorded, &look(sys, bridge, &recorded, fresh_set)?);
        Some(lock)
    } else {
        None
    };
    // Into the set first: forwarding never runs unrestricted.
    if !plan.add_to_set.is_empty() {
        sys.add_to_set(&plan.add_to_set)?;
    }
    if plan.rewrite {
        record.write(&plan.record, boot)?;
    }
    for name in &plan.enable {
        sys.enable_forwarding(name)?;
    }
    Ok(())
}

/// `if_nametoindex` in the calling thread's network namespace.
pub fn index_of(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    // SAFETY: a NUL-terminated name; the call only reads it.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (i != 0).then_some(i)
}

/// `if_indextoname` in the calling thread's network namespace.
pub fn name_of(index: u32) -> Option<String> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: `buf` holds IF_NAMESIZE bytes, as the call requires.
    let p = unsafe { libc::if_indextoname(index, buf.as_mut_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: on success the kernel's name is NUL-terminated within `buf`.
    let name = unsafe { CStr::from_ptr(buf.as_ptr()) };
    name.to_str().ok().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(name: &str, index: u32, forwarding: bool, uplink: bool, in_set: bool) -> Seen {
        Seen {
            name: name.into(),
            index,
            forwarding,
            uplink,
            in_set,
        }
    }

    fn entry(name: &str, index: u32) -> Entry {
        Entry {
            name: name.into(),
            index,
        }
    }

    #[test]
    fn an_uplink_turned_on_goes_into_the_set_and_the_record_first() {
        let p = plan(
            &Recorded::Entries(vec![]),
            &[seen("eth0", 2, false, true, false)],
        );
        assert_eq!(p.enable, ["eth0"]);
        assert_eq!(p.add_to_set, ["eth0"]);
        assert_eq!(p.record, [entry("eth0", 2)]);
        assert!(p.rewrite);
    }

    #[test]
    fn hostile_after_a_flush_a_recorded_uplink_goes_back_into_the_set() {
        // Forwarding is on (tupper-net turned it on), the set came back empty.
        let p = plan(
            &Recorded::Entries(vec![entry("eth0", 2)]),
            &[seen("eth0", 2, true, true, false)],
        );
        assert_eq!(p.add_to_set, ["eth0"]);
        assert!(p.enable.is_empty());
        assert!(!p.rewrite, "the record is unchanged: no write, no fsync");
        // Nothing to do when the set holds it: the attach path stays cheap.
        let p = plan(
            &Recorded::Entries(vec![entry("eth0", 2)]),
            &[seen("eth0", 2, true, true, true)],
        );
        assert_eq!(
            p,
            Plan {
                record: vec![entry("eth0", 2)],
                ..Plan::default()
            }
        );
        // No longer an uplink (the default route moved), forwarding still on:
        // still restricted.
        let p = plan(
            &Recorded::Entries(vec![entry("eth0", 2)]),
            &[seen("eth0", 2, true, false, false)],
        );
        assert_eq!(p.add_to_set, ["eth0"]);
        // Renamed: the same interface under its new name.
        let p = plan(
            &Recorded::Entries(vec![entry("eth0", 2)]),
            &[seen("wan0", 2, true, true, false)],
        );
        assert_eq!(p.add_to_set, ["wan0"]);
        assert_eq!(p.record, [entry("wan0", 2)]);
        assert!(p.rewrite);
    }

    #[test]
    fn the_administrators_uplinks_stay_out() {
        // On before tupper-net touched it.
        let p = plan(
            &Recorded::Entries(vec![]),
            &[seen("eth1", 3, true, true, false)],
        );
        assert_eq!(p, Plan::default());
        // A new interface under a recorded name is not ours.
        let p = plan(
            &Recorded::Entries(vec![entry("eth1", 3)]),
            &[seen("eth1", 9, true, true, false)],
        );
        assert!(p.add_to_set.is_empty() && p.record.is_empty() && p.rewrite);
        // A record of another boot names nothing of ours.
        let p = plan(&Recorded::Stale, &[seen("eth1", 3, true, true, true)]);
        assert!(p.add_to_set.is_empty() && p.record.is_empty() && p.rewrite);
    }

    #[test]
    fn turned_off_by_the_administrator_leaves_the_record() {
        // No longer an uplink and off: out of the record; turned on later by
        // the administrator, it is theirs.
        let p = plan(
            &Recorded::Entries(vec![entry("eth0", 2)]),
            &[seen("eth0", 2, false, false, true)],
        );
        assert!(p.record.is_empty() && p.enable.is_empty() && p.rewrite);
        let p = plan(
            &Recorded::Entries(vec![]),
            &[seen("eth0", 2, true, false, true)],
        );
        assert_eq!(p, Plan::default());
        // Still an uplink and off: tupper-net turns it on again itself, and
        // records it again.
        let p = plan(
            &Recorded::Entries(vec![entry("eth0", 2)]),
            &[seen("eth0", 2, false, true, true)],
        );
        assert_eq!(p.enable, ["eth0"]);
        assert_eq!(p.record, [entry("eth0", 2)]);
        assert!(!p.rewrite);
        // Gone: out of the record.
        let p = plan(&Recorded::Entries(vec![entry("eth0", 2)]), &[]);
        assert!(p.record.is_empty() && p.rewrite);
    }

    #[test]
    fn hostile_a_corrupt_record_is_rebuilt_failing_closed() {
        for bad in [
            &b""[..],
            b"{",
            b"[]",
            b"{\"boot_id\":\"b\",\"uplinks\":[{\"name\":\"../all\",\"index\":2}]}",
            b"{\"boot_id\":\"b\",\"uplinks\":[{\"name\":\"eth0\",\"index\":0}]}",
            b"{\"boot_id\":\"b\",\"uplinks\":[],\"extra\":1}",
        ] {
            assert_eq!(parse(bad, "b"), Recorded::Corrupt, "{bad:?}");
        }
        let p = plan(
            &Recorded::Corrupt,
            &[
                seen("eth0", 2, true, true, false),
                seen("old0", 5, true, false, true),
                seen("lan0", 6, true, false, false),
            ],
        );
        // Every uplink with forwarding on and whatever the set held: ours.
        assert_eq!(p.add_to_set, ["eth0"]);
        assert_eq!(p.record, [entry("eth0", 2), entry("old0", 5)]);
        assert!(p.rewrite);
    }

    #[test]
    fn a_missing_record_adopts_what_the_set_holds() {
        let p = plan(
            &Recorded::Missing,
            &[
                seen("eth0", 2, true, true, true),
                seen("eth1", 3, true, true, false),
            ],
        );
        assert_eq!(p.record, [entry("eth0", 2)]);
        assert!(p.add_to_set.is_empty());
        // Written once even when empty: later attaches read no set.
        let p = plan(&Recorded::Missing, &[]);
        assert!(p.rewrite);
    }

    #[test]
    fn records_round_trip() {
        let e = vec![entry("eth0", 2), entry("wlan0", 3)];
        let bytes = encode(&e, "b").unwrap();
        assert_eq!(parse(&bytes, "b"), Recorded::Entries(e));
        assert_eq!(parse(&bytes, "other"), Recorded::Stale);
    }

    /// A scripted system: interfaces `(name, index, forwarding)`, uplinks, a set.
    #[derive(Default)]
    struct Fake {
        links: Vec<(String, u32, bool)>,
        uplinks: Vec<String>,
        set: Vec<String>,
        set_reads: usize,
        batches: usize,
    }

    impl System for Fake {
        fn uplinks(&mut self) -> Result<Vec<String>> {
            Ok(self.uplinks.clone())
        }
        fn set_members(&mut self) -> Option<Vec<String>> {
            self.set_reads += 1;
            Some(self.set.clone())
        }
        fn add_to_set(&mut self, names: &[String]) -> Result<()> {
            self.batches += 1;
            for n in names {
                if !self.set.contains(n) {
                    self.set.push(n.clone());
                }
            }
            Ok(())
        }
        fn enable_forwarding(&mut self, name: &str) -> Result<()> {
            // Forwarding never runs unrestricted.
            assert!(self.set.iter().any(|n| n == name), "{name} not in the set");
            for l in &mut self.links {
                if l.0 == name {
                    l.2 = true;
                }
            }
            Ok(())
        }
        fn index_of(&mut self, name: &str) -> Option<u32> {
            self.links.iter().find(|l| l.0 == name).map(|l| l.1)
        }
        fn name_of(&mut self, index: u32) -> Option<String> {
            self.links
                .iter()
                .find(|l| l.1 == index)
                .map(|l| l.0.clone())
        }
        fn forwarding(&mut self, name: &str) -> Option<bool> {
            self.links.iter().find(|l| l.0 == name).map(|l| l.2)
        }
    }

    #[test]
    fn hostile_ensure_after_a_flush_restores_the_set() {
        let dir = tempfile::tempdir().unwrap();
        let record = Record::new(StateDir::open_unprivileged(dir.path()).unwrap());
        let mut sys = Fake {
            links: vec![
                ("tupper0".into(), 4, true),
                ("eth0".into(), 2, false),
                ("eth1".into(), 3, true),
            ],
            uplinks: vec!["eth0".into(), "eth1".into()],
            ..Fake::default()
        };
        ensure(&mut sys, &record, "b", "tupper0", true).unwrap();
        assert_eq!(sys.set, ["eth0"], "the administrator's eth1 stays out");
        assert!(sys.links[1].2);
        // Unchanged: no batch, one read of the set.
        let (reads, batches) = (sys.set_reads, sys.batches);
        ensure(&mut sys, &record, "b", "tupper0", false).unwrap();
        assert_eq!((sys.set_reads, sys.batches), (reads + 1, batches));
        // `nft flush ruleset`: the table is written anew, its set empty.
        sys.set.clear();
        ensure(&mut sys, &record, "b", "tupper0", true).unwrap();
        assert_eq!(sys.set, ["eth0"]);
        // An administrator's `nft flush set`: the table stays, the set is read.
        sys.set.clear();
        ensure(&mut sys, &record, "b", "tupper0", false).unwrap();
        assert_eq!(sys.set, ["eth0"]);
        // A corrupt record: rebuilt, failing closed (eth1 restricted too).
        std::fs::write(dir.path().join(FILE), b"garbage").unwrap();
        sys.set.clear();
        ensure(&mut sys, &record, "b", "tupper0", true).unwrap();
        sys.set.sort();
        assert_eq!(sys.set, ["eth0", "eth1"]);
        assert!(matches!(record.read("b").unwrap(), Recorded::Entries(e) if e.len() == 2));
    }

    #[test]
    fn hostile_an_unreadable_flag_keeps_a_recorded_uplink_restricted() {
        let dir = tempfile::tempdir().unwrap();
        let record = Record::new(StateDir::open_unprivileged(dir.path()).unwrap());
        record.write(&[entry("eth0", 2)], "b").unwrap();
        struct Unreadable(Fake);
        impl System for Unreadable {
            fn uplinks(&mut self) -> Result<Vec<String>> {
                self.0.uplinks()
            }
            fn set_members(&mut self) -> Option<Vec<String>> {
                self.0.set_members()
            }
            fn add_to_set(&mut self, names: &[String]) -> Result<()> {
                self.0.add_to_set(names)
            }
            fn enable_forwarding(&mut self, name: &str) -> Result<()> {
                self.0.enable_forwarding(name)
            }
            fn index_of(&mut self, name: &str) -> Option<u32> {
                self.0.index_of(name)
            }
            fn name_of(&mut self, index: u32) -> Option<String> {
                self.0.name_of(index)
            }
            fn forwarding(&mut self, _: &str) -> Option<bool> {
                None
            }
        }
        let mut sys = Unreadable(Fake {
            links: vec![("eth0".into(), 2, true)],
            ..Fake::default()
        });
        ensure(&mut sys, &record, "b", "tupper0", true).unwrap();
        assert_eq!(sys.0.set, ["eth0"]);
        assert_eq!(
            record.read("b").unwrap(),
            Recorded::Entries(vec![entry("eth0", 2)])
        );
    }

    #[test]
    fn interface_lookups_in_this_namespace() {
        let lo = index_of("lo").expect("lo has an index");
        assert_eq!(name_of(lo).as_deref(), Some("lo"));
        assert_eq!(index_of("tw-no-such-if"), None);
        assert_eq!(index_of("a\0b"), None);
    }
}
