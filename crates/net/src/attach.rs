//! `Attach { pid, container }`: verify the pid is the caller's container,
//! check the caller's limit, lease an address, create the veth pair,
//! configure the container side; undo everything on failure.

use std::os::fd::AsFd;

use proto::Caller;
use proto::NetReply;
use tupper_config::policy::Policy;

use crate::allocation;
use crate::container_side::{self, Inside};
use crate::error::{Error, Result};
use crate::host_side::{create_veth, ensure_bridge};

use crate::lease_store::{Held, LeaseStore};
use crate::leases::{boot_id, Lease};
use crate::names;
use crate::netlink::{delete_if_exists, session};
use crate::ownership::{self, Container};
use crate::settings::Settings;

pub fn attach(settings: &Settings, caller: Caller, pid: i32, container: &str) -> Result<NetReply> {
    // 1. Validate.
    proto::validate::container_id(container)?;
    // 2. The pid must be a container of the caller: its namespaces are the
    //    caller's, and its mount namespace is rooted in the caller's container
    //    root `container` in the store (uniform refusal otherwise).
    let target = ownership::verify(pid, caller.uid)?;
    crate::container_root::verify(&settings.store, caller, container, &target)?;
    let limit = Policy::load()?.limits_for_current(caller).interfaces;
    // Issue 11: fresh names per lease (a released end may still be dying),
    // and the ends no lease names any more go first.
    let names::VethNames {
        host: host_if,
        peer,
    } = names::fresh()?;
    crate::sweep::sweep_best_effort(&settings.state_dir);

    // 3–4. Under the caller's own lock (only their helpers contend for it):
    // reclaim stale leases, refuse duplicates, apply the caller's limit, make
    // sure the bridge exists, take the lowest free address no one holds.
    let store = LeaseStore::open(&settings.state_dir)?;
    let user_lock = store.lock_user(caller.uid)?;
    let leases = allocation::reclaim_stale(settings, &store)?;
    if leases.conflicts(container, target.netns_id, &host_if) {
        return Err(Error::NotYourContainer { pid });
    }
    let held_by_caller = leases.count_of(caller.uid);
    if held_by_caller >= limit.value as usize {
        return Err(limit
            .exceeded(&format!(
                "you have {held_by_caller} interfaces on the bridge already"
            ))
            .into());
    }
    let bridge =
        session(|h| async move { ensure_bridge(&h, &settings.bridge, &settings.subnet).await })?;
    // Issue 11: outbound NAT, forwarding and the published-ports table.
    crate::nat::ensure(settings)?;
    let boot = boot_id()?;
    let held = allocation::claim(settings, &store, &settings.subnet, &leases, |address| {
        Lease {
            address,
            uid: caller.uid,
            container: container.to_string(),
            pid,
            pid_start_time: target.start_time,
            netns: target.netns_id,
            host_interface: host_if.clone(),
            boot_id: boot.clone(),
            ports: Vec::new(),
        }
    })?;
    // The lease is recorded: it counts for the caller's next attach.
    drop(user_lock);
    let address = held.address;

    // 5–6. The veth pair and the container side; roll back on any failure.
    // The address stays held (its lock) until the attach is complete.
    let mut created = false;
    let outcome = plumb(
        settings,
        &target,
        &host_if,
        &peer,
        address,
        bridge,
        &mut created,
    );
    if let Err(e) = outcome {
        rollback(&store, &held, &host_if, created);
        return Err(e);
    }
    drop(held);

    // 7. Report.
    Ok(NetReply::Attached {
        address: format!("{address}/{}", settings.subnet.prefix),
        gateway: settings.subnet.gateway.to_string(),
        host_interface: host_if,
    })
}

fn plumb(
    settings: &Settings,
    target: &Container,
    host_if: &str,
    peer: &str,
    address: std::net::Ipv4Addr,
    bridge: u32,
    created: &mut bool,
) -> Result<()> {
    let netns = target.netns.as_fd();
    // Layer-2 isolation hook: the port's filter exists before the port does.
    crate::filter::install_port(host_if, address)?;
    let mac = crate::filter::container_mac(address);
    session(|h| async move {
        match create_veth(&h, host_if, peer, mac, netns, bridge).await {
            Ok(_) => {
                *created = true;
                Ok(())
            }
            Err(e) => {
                *created = e.created;
                Err(e.error)
            }
        }
    })?;
    let netns = target
        .netns
        .try_clone()
        .map_err(|e| Error::sys("duplicate the netns descriptor", e))?;
    container_side::configure(
        netns,
        Inside {
            peer: peer.to_string(),
            address,
            prefix: settings.subnet.prefix,
            gateway: settings.subnet.gateway,
        },
    )?;
    if !target.is_alive() {
        return Err(Error::NotYourContainer { pid: target.pid });
    }
    Ok(())
}

/// Best effort: remove what this attach created and give the address back.
fn rollback(store: &LeaseStore, held: &Held, host_if: &str, created: bool) {
    if created {
        if let Err(e) = session(|h| async move { delete_if_exists(&h, host_if).await }) {
            eprintln!("tupper-net: rollback: {e}");
            // The record stays: the interface it names is reclaimed with it
            // once the container is gone.
            return;
        }
    }
    // Layer-2 isolation hook (an already missing filter is fine).
    if let Err(e) = crate::filter::remove_port(host_if) {
        eprintln!("tupper-net: rollback: {e}");
    }
    if let Err(e) = store.remove(held) {
        eprintln!("tupper-net: rollback: {e}");
    }
}
