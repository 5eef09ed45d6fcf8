//! Host network namespace: the bridge and the veth pair.

use std::os::fd::{AsRawFd, BorrowedFd};

use rtnetlink::packet_route::link::{InfoData, InfoVeth};
use rtnetlink::{Handle, LinkBridge, LinkUnspec, LinkVeth};

use crate::error::{netlink_errno, Error, Result};
use crate::ipam::Subnet;
use crate::netlink::{add_address, has_address, link_index, set_up};

/// Make sure the bridge exists, carries `gateway/prefix` and is up; returns its index.
/// Another helper creating it at the same moment is fine.
pub async fn ensure_bridge(handle: &Handle, name: &str, subnet: &Subnet) -> Result<u32> {
    let index = match link_index(handle, name).await? {
        Some(i) => i,
        None => {
            match handle
                .link()
                .add(LinkBridge::new(name).build())
                .execute()
                .await
            {
                Ok(()) => {}
                Err(e) if netlink_errno(&e) == Some(libc::EEXIST) => {}
                Err(e) => return Err(Error::netlink(format!("create bridge {name}"), e)),
            }
            link_index(handle, name).await?.ok_or_else(|| {
                Error::State(format!("bridge {name} vanished right after its creation"))
            })?
        }
    };
    if !has_address(handle, index, subnet.gateway, subnet.prefix).await? {
        add_address(handle, index, subnet.gateway, subnet.prefix, name).await?;
    }
    // Layer-2 isolation hook: the bridge never takes RAs or autoconfigures IPv6.
    crate::sysctl::disable_ipv6(name)?;
    set_up(handle, index, name).await?;
    Ok(index)
}

/// How the container end reached the container's netns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerPlacement {
    /// Created there directly (`IFLA_NET_NS_FD` on the peer).
    Direct,
    /// Created on the host, then moved.
    Moved,
}

/// Errors of veth creation where the host name is taken: never delete what we did not create.
pub struct VethError {
    pub created: bool,
    pub error: Error,
}

/// Create the veth pair `host`/`peer` with `peer` (MAC `peer_mac`) in the
/// container netns, then put `host` on the bridge and set it up.
pub async fn create_veth(
    handle: &Handle,
    host: &str,
    peer: &str,
    peer_mac: [u8; 6],
    netns: BorrowedFd<'_>,
    bridge: u32,
) -> Result<PeerPlacement, VethError> {
    let fail = |created, error| VethError { created, error };
    let peer_in_ns = LinkUnspec::new_with_name(peer)
        .address(peer_mac.to_vec())
        .setns_by_fd(netns.as_raw_fd())
        .build();
    let direct = LinkVeth::new(host, peer)
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer_in_ns)))
        .build();
    let placement = match handle.link().add(direct).execute().await {
        Ok(()) => PeerPlacement::Direct,
        Err(e) if netlink_errno(&e) == Some(libc::EEXIST) => {
            return Err(fail(
                false,
                Error::Exists(format!("host interface {host} exists already")),
            ))
        }
        Err(_) => {
            // Fallback: create both ends here, then move the peer.
            handle
                .link()
                .add(
                    LinkVeth::new(host, peer)
                        .set_info_data(InfoData::Veth(InfoVeth::Peer(
                            LinkUnspec::new_with_name(peer)
                                .address(peer_mac.to_vec())
                                .build(),
                        )))
                        .build(),
                )
                .execute()
                .await
                .map_err(|e| fail(false, Error::netlink(format!("create interface {host}"), e)))?;
            let moved = async {
                let idx = link_index(handle, peer)
                    .await?
                    .ok_or_else(|| Error::State(format!("interface {peer} vanished")))?;
                handle
                    .link()
                    .set(
                        LinkUnspec::new_with_index(idx)
                            .setns_by_fd(netns.as_raw_fd())
                            .build(),
                    )
                    .execute()
                    .await
                    .map_err(|e| Error::netlink("move the container end into its netns", e))
            };
            moved.await.map_err(|e| fail(true, e))?;
            PeerPlacement::Moved
        }
    };
    // Layer-2 isolation hook: no IPv6 on the host end, before it is up.
    crate::sysctl::disable_ipv6(host).map_err(|e| fail(true, e))?;
    let enslave = async {
        let idx = link_index(handle, host)
            .await?
            .ok_or_else(|| Error::State(format!("interface {host} vanished")))?;
        handle
            .link()
            .set(
                LinkUnspec::new_with_index(idx)
                    .controller(bridge)
                    .up()
                    .build(),
            )
            .execute()
            .await
            .map_err(|e| Error::netlink(format!("attach {host} to the bridge"), e))
    };
    enslave.await.map_err(|e| fail(true, e))?;
    Ok(placement)
}
