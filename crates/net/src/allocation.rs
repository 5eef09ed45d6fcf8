//! Taking an address: reclaim the records of dead containers, then claim the
//! lowest address no one holds. Addresses another helper holds are skipped,
//! never waited for, so a stopped helper blocks only the address it holds.

use std::net::Ipv4Addr;

use tupper_sys::process::start_time as process_start_time;

use crate::error::{Error, Result};
use crate::ipam::Subnet;
use crate::lease_store::{Held, LeaseStore};
use crate::leases::{boot_id, Lease, Leases};
use crate::netlink::{delete_if_exists, session};
use crate::settings::Settings;

/// Reclaim every stale record that no one holds, and return the records that
/// remain: live ones, and stale ones another helper is busy with (they still
/// count, for the caller's limit too).
pub fn reclaim_stale(settings: &Settings, store: &LeaseStore) -> Result<Leases> {
    let boot = boot_id()?;
    let mut leases = store.snapshot()?;
    let stale = leases.take_stale(&boot, process_start_time);
    let mut reclaim: Vec<(Held, Lease)> = Vec::new();
    for seen in stale {
        let Some(held) = store.try_hold(seen.address)? else {
            leases.leases.push(seen);
            continue;
        };
        // Decide again under the lock: the record may have changed since.
        match store.read(&held)? {
            Some(now) if now.is_stale(&boot, process_start_time) => reclaim.push((held, now)),
            Some(now) => leases.leases.push(now),
            None => {}
        }
    }
    if !reclaim.is_empty() {
        delete_interfaces(reclaim.iter().map(|(_, l)| l.host_interface.as_str()));
        // Issue 11: their published ports too.
        for (_, lease) in &reclaim {
            crate::publish::withdraw(settings, lease);
        }
        // The interface first, then the record: a crash in between leaves a
        // stale record, reclaimed again next time.
        for (held, _) in &reclaim {
            store.remove(held)?;
        }
    }
    Ok(leases)
}

/// Claim the lowest free address of `subnet` and record `lease_for(address)`
/// there; returns the held address (its lock keeps it ours until dropped).
/// `taken` are the records known to be live.
pub fn claim(
    settings: &Settings,
    store: &LeaseStore,
    subnet: &Subnet,
    taken: &Leases,
    lease_for: impl Fn(Ipv4Addr) -> Lease,
) -> Result<Held> {
    let boot = boot_id()?;
    let used = taken.used_addresses();
    for address in subnet.leasable().filter(|a| !used.contains(a)) {
        // Held by someone else: theirs for now, whatever it becomes.
        let Some(held) = store.try_hold(address)? else {
            continue;
        };
        match store.read(&held)? {
            None => {}
            Some(old) if old.is_stale(&boot, process_start_time) => {
                delete_interfaces([old.host_interface.as_str()]);
                crate::publish::withdraw(settings, &old);
            }
            Some(_) => continue,
        }
        store.write(&held, &lease_for(address))?;
        return Ok(held);
    }
    Err(Error::Exhausted {
        subnet: subnet.cidr(),
    })
}

/// Best effort: a leftover interface (and its bridge port filter) must not
/// block every later attach.
pub(crate) fn delete_interfaces<'a>(names: impl IntoIterator<Item = &'a str>) {
    let names: Vec<&str> = names.into_iter().collect();
    let links = names.clone();
    let cleanup = session(|h| async move {
        for name in &links {
            if let Err(e) = delete_if_exists(&h, name).await {
                eprintln!("tupper-net: reclaiming a stale lease: {e}");
            }
        }
        Ok(())
    });
    if let Err(e) = cleanup {
        eprintln!("tupper-net: reclaiming stale leases: {e}");
    }
    // Layer-2 isolation hook: the stale ports' filters go too.
    for name in &names {
        if let Err(e) = crate::filter::remove_port(name) {
            eprintln!("tupper-net: reclaiming a stale lease: {e}");
        }
    }
}
