//! `Attach { pid, container }`: verify the pid, lease an address, create the
//! veth pair, configure the container side; undo everything on failure.

use std::os::fd::AsFd;

use proto::helper::Caller;
use proto::NetReply;

use crate::container_side::{self, Inside};
use crate::error::{NetError, Result};
use crate::host_side::{create_veth, ensure_bridge};
use proto::process::start_time as process_start_time;

use crate::leases::{boot_id, Lease, Leases};
use crate::names;
use crate::netlink::{delete_if_exists, session};
use crate::ownership::{self, Container};
use crate::settings::Settings;
use crate::state_dir::{Lock, StateDir};

pub fn attach(settings: &Settings, caller: Caller, pid: i32, container: &str) -> Result<NetReply> {
    // 1. Validate.
    proto::validate::container_id(container)?;
    // 2. The pid must be a container of the caller (uniform refusal otherwise).
    let target = ownership::verify(pid, caller.uid)?;
    let host_if = names::host_interface(container);
    let peer = names::peer_temp(container);

    // 3–4. Under the lock: reclaim stale leases, refuse duplicates, make sure
    // the bridge exists, take the lowest free address.
    let state = StateDir::open(&settings.state_dir)?;
    let lock = state.lock()?;
    let mut leases = state.load(&lock)?;
    let stale = leases.take_stale(&boot_id()?, process_start_time);
    if !stale.is_empty() {
        // Best effort: a leftover interface must not block every later attach.
        let cleanup = session(|h| async move {
            for s in &stale {
                if let Err(e) = delete_if_exists(&h, &s.host_interface).await {
                    eprintln!("tupper-net: reclaiming a stale lease: {e}");
                }
                // Layer-2 isolation hook: the stale port's filter goes too.
                if let Err(e) = crate::filter::remove_port(&s.host_interface) {
                    eprintln!("tupper-net: reclaiming a stale lease: {e}");
                }
            }
            Ok(())
        });
        if let Err(e) = cleanup {
            eprintln!("tupper-net: reclaiming stale leases: {e}");
        }
        state.save(&lock, &leases)?;
    }
    if leases.conflicts(container, target.netns_id, &host_if) {
        return Err(NetError::NotYourContainer { pid });
    }
    let bridge =
        session(|h| async move { ensure_bridge(&h, &settings.bridge, &settings.subnet).await })?;
    let address = settings
        .subnet
        .first_free(&leases.used_addresses())
        .ok_or_else(|| NetError::Exhausted {
            subnet: settings.subnet.cidr(),
        })?;
    leases.leases.push(Lease {
        address,
        uid: caller.uid,
        container: container.to_string(),
        pid,
        pid_start_time: target.start_time,
        netns: target.netns_id,
        host_interface: host_if.clone(),
        boot_id: boot_id()?,
    });
    state.save(&lock, &leases)?;

    // 5–6. The veth pair and the container side; roll back on any failure.
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
        rollback(
            &state,
            &lock,
            &mut leases,
            container,
            caller.uid,
            &host_if,
            created,
        );
        return Err(e);
    }
    drop(lock);

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
        .map_err(|e| NetError::sys("duplicate the netns descriptor", e))?;
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
        return Err(NetError::NotYourContainer { pid: target.pid });
    }
    Ok(())
}

/// Best effort: remove what this attach created and give the address back.
fn rollback(
    state: &StateDir,
    lock: &Lock,
    leases: &mut Leases,
    container: &str,
    uid: u32,
    host_if: &str,
    created: bool,
) {
    if created {
        if let Err(e) = session(|h| async move { delete_if_exists(&h, host_if).await }) {
            eprintln!("tupper-net: rollback: {e}");
        }
    }
    // Layer-2 isolation hook (an already missing filter is fine).
    if let Err(e) = crate::filter::remove_port(host_if) {
        eprintln!("tupper-net: rollback: {e}");
    }
    leases.remove(container, uid);
    if let Err(e) = state.save(lock, leases) {
        eprintln!("tupper-net: rollback: {e}");
    }
}
