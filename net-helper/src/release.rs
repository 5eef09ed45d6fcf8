//! `Release { container }`: give back the caller's own lease and remove its
//! host interface. Another user's lease is never touched.

use proto::helper::Caller;
use proto::NetReply;

use crate::error::{NetError, Result};
use crate::netlink::{delete_if_exists, session};
use crate::settings::Settings;
use crate::state_dir::StateDir;

pub fn release(settings: &Settings, caller: Caller, container: &str) -> Result<NetReply> {
    proto::validate::container_id(container)?;
    let state = StateDir::open(&settings.state_dir)?;
    let lock = state.lock()?;
    let mut leases = state.load(&lock)?;
    let Some(i) = leases.position_of(container, caller.uid) else {
        return Err(NetError::NoLease {
            container: container.to_string(),
        });
    };
    // Normally gone with the container's netns; a container still running keeps it until now.
    let host_if = leases.leases[i].host_interface.clone();
    session(|h| async move { delete_if_exists(&h, &host_if).await })?;
    // Layer-2 isolation hook: the port's filter goes with the port.
    crate::filter::remove_port(&leases.leases[i].host_interface)?;
    leases.leases.remove(i);
    state.save(&lock, &leases)?;
    Ok(NetReply::Released)
}
