//! Issue 11: outbound access and published ports in the nf_tables table `ip
//! tupperware` (see [`ruleset`]), spoken to over netlink like the bridge
//! filter: no `nft` subprocess, so no capability reaches another program.
//!
//! Forwarding: IPv4 checks the `forwarding` flag of the interface a packet
//! comes in on, so tupper-net turns it on for the bridge and for the uplinks
//! (the interfaces of the IPv4 default routes) only, never the global
//! `ip_forward`; an uplink it turned on goes into the set `uplinks`, and the
//! table's forward chain drops what comes in there for anything but the
//! bridge, so the host forwards for the containers and nothing else. An
//! uplink whose forwarding the administrator had turned on is left as it was.

pub mod ruleset;

use std::net::Ipv4Addr;

use caps::Capability::CAP_NET_ADMIN;
use futures::TryStreamExt;
use proto::ports::{PortSpec, Protocol};
use rtnetlink::packet_route::link::LinkAttribute;
use rtnetlink::packet_route::route::RouteAttribute;
use rtnetlink::RouteMessageBuilder;

use crate::capabilities::with_caps;
use crate::error::{Error, Result};
use crate::filter::nfnl::Message;
use crate::filter::socket::{transact, Outcome};
use crate::filter::FilterError;
use crate::netlink::session;
use crate::settings::Settings;

fn apply(msgs: &[Message]) -> Result<()> {
    match with_caps(&[CAP_NET_ADMIN], || Ok(transact(msgs)))? {
        Ok(Outcome::Applied) => Ok(()),
        Ok(Outcome::Refused { what, errno }) => Err(FilterError::Refused { what, errno }.into()),
        Err(e) => Err(e.into()),
    }
}

/// The interfaces of the IPv4 default routes of the main table.
fn uplinks() -> Result<Vec<String>> {
    session(|h| async move {
        let mut routes = h
            .route()
            .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
            .execute();
        let mut indexes = Vec::new();
        while let Some(r) = routes
            .try_next()
            .await
            .map_err(|e| Error::netlink("list the routes", e))?
        {
            if r.header.destination_prefix_length != 0 || r.header.table != 254 {
                continue;
            }
            for a in &r.attributes {
                if let RouteAttribute::Oif(i) = a {
                    indexes.push(*i);
                }
            }
        }
        let mut names = Vec::new();
        for i in indexes {
            let mut links = h.link().get().match_index(i).execute();
            if let Ok(Some(l)) = links.try_next().await {
                for a in l.attributes {
                    if let LinkAttribute::IfName(n) = a {
                        if !names.contains(&n) {
                            names.push(n);
                        }
                    }
                }
            }
        }
        Ok(names)
    })
}

/// Install (idempotently) the table, forwarding for the bridge and its
/// uplinks, and the masquerade if the configuration asks for it. Called on
/// every attach, after the bridge exists: uplinks may have changed since.
pub fn ensure(settings: &Settings) -> Result<()> {
    apply(&ruleset::setup(&settings.bridge, settings.outbound))?;
    crate::sysctl::set_ipv4(&settings.bridge, "forwarding", "1")?;
    // Connections to a port published on 127.0.0.1 leave through the bridge.
    crate::sysctl::set_ipv4(&settings.bridge, "route_localnet", "1")?;
    for uplink in uplinks()? {
        if uplink == settings.bridge {
            continue;
        }
        if crate::sysctl::get_ipv4(&uplink, "forwarding")?.trim() == "1" {
            continue;
        }
        // Into the set first: forwarding never runs unrestricted.
        apply(&[ruleset::add_uplink(&uplink)])?;
        crate::sysctl::set_ipv4(&uplink, "forwarding", "1")?;
    }
    Ok(())
}

/// DNAT `port` to `container`, replacing whatever the port's chain held.
pub fn publish(port: &PortSpec, container: Ipv4Addr) -> Result<()> {
    apply(&ruleset::publish(port, container))
}

/// Remove a port's rules; whatever is already gone is fine.
pub fn unpublish(protocol: Protocol, host_port: u16) -> Result<()> {
    let msgs = ruleset::unpublish(protocol, host_port);
    with_caps(&[CAP_NET_ADMIN], || {
        for m in &msgs {
            match transact(std::slice::from_ref(m))? {
                Outcome::Applied => {}
                Outcome::Refused { errno, .. } if errno == libc::ENOENT => {}
                Outcome::Refused { what, errno } => {
                    return Err(FilterError::Refused { what, errno }.into())
                }
            }
        }
        Ok(())
    })
}
