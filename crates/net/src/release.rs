//! `Release { container }`: give back the caller's own lease and remove its
//! host interface. Another user's lease is never touched.

use proto::Caller;
use proto::NetReply;

use crate::error::{Error, Result};
use crate::lease_store::{LeaseStore, BUSY_WAIT};
use crate::netlink::{delete_if_exists, session};
use crate::settings::Settings;

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
    // Normally gone with the container's netns; a container still running keeps it until now.
    let host_if = lease.host_interface.clone();
    session(|h| async move { delete_if_exists(&h, &host_if).await })?;
    // Layer-2 isolation hook: the port's filter goes with the port.
    crate::filter::remove_port(&lease.host_interface)?;
    // Issue 11: the published ports go with the lease.
    crate::publish::withdraw(settings, &lease);
    store.remove(&held)?;
    Ok(NetReply::Released)
}
