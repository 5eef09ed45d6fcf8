//! `Release { container }`: give back the caller's own lease and its host
//! interface. Another user's lease is never touched.
//!
//! Issue 11: once the container's init is gone, its network namespace goes
//! with its last process and the kernel removes both ends of the veth pair
//! itself. Deleting the host end here would make the caller wait for the
//! kernel's RCU grace periods (tens of milliseconds) for nothing, so the end
//! is left to the kernel: its port filter goes first (the port passes
//! nothing from then on), a tombstone records the release for the sweep
//! (which deletes an end someone keeps alive), and the lease goes last. Its
//! address may be leased again at once: the new lease has a host end of
//! another name, with a filter of its own.

use proto::Caller;
use proto::NetReply;
use tupper_sys::process::start_time as process_start_time;

use crate::error::{Error, Result};
use crate::lease_store::{LeaseStore, BUSY_WAIT};
use crate::leases::boot_id;
use crate::netlink::{delete_if_exists, session};
use crate::settings::Settings;
use crate::sweep::{sweep_best_effort, Dying};

pub fn release(settings: &Settings, caller: Caller, container: &str) -> Result<NetReply> {
    proto::validate::container_id(container)?;
    let no_lease = || Error::NoLease {
        container: container.to_string(),
    };
    let store = LeaseStore::open(&settings.state_dir)?;
    let address = store
        .snapshot()?
        .find(container, caller.uid)
        .map(|l| l.address)
        .ok_or_else(no_lease)?;
    // A helper holding this address (perhaps stopped by its caller) makes us
    // wait a bounded time only; the supervisor retries later (`gc`).
    let held = store
        .hold_within(address, BUSY_WAIT)?
        .ok_or_else(|| Error::Busy {
            what: format!("the lease of container {container}"),
            waited: BUSY_WAIT,
        })?;
    // Decide again under the lock: the record may have been reclaimed since.
    let lease = store
        .read(&held)?
        .filter(|l| l.is(container, caller.uid))
        .ok_or_else(no_lease)?;
    let host_if = lease.host_interface.clone();
    // The init that was attached is gone: its namespace is going away.
    let init_gone = lease.is_stale(&boot_id()?, process_start_time);
    if !init_gone {
        // A container still running keeps its end until now: delete it.
        session(|h| async move { delete_if_exists(&h, &host_if).await })?;
    }
    // Layer-2 isolation hook: the port's filter goes with the port (before
    // the tombstone: a lingering end passes nothing).
    crate::filter::remove_port(&lease.host_interface)?;
    // Issue 11: the published ports go with the lease.
    crate::publish::withdraw(settings, &lease);
    if init_gone {
        Dying::open(&settings.state_dir)?.record(&lease.host_interface, caller.uid)?;
    }
    store.remove(&held)?;
    drop(held);
    // Ends released earlier that someone keeps alive, and orphans.
    sweep_best_effort(&settings.state_dir);
    Ok(NetReply::Released)
}
