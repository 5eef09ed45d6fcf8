//! Inside the container's network namespace: `eth0`, its address, `lo`, the
//! default route. Done on a dedicated thread that enters the netns (a netlink
//! socket talks to the netns it was created in), so the rest of the helper
//! stays in the host netns.

use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};

use caps::Capability::CAP_SYS_ADMIN;
use rtnetlink::{LinkUnspec, RouteMessageBuilder};

use crate::capabilities::with_caps;
use crate::error::{netlink_errno, Error, Result};
use crate::names::CONTAINER_INTERFACE;
use crate::netlink::{add_address, link_index, session, set_up};

pub struct Inside {
    /// Temporary name of the container end of the veth pair.
    pub peer: String,
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
}

/// Configure the container side from a thread that joins `netns`.
pub fn configure(netns: OwnedFd, plan: Inside) -> Result<()> {
    let worker = std::thread::Builder::new()
        .name("container-netns".into())
        .spawn(move || -> Result<()> {
            with_caps(&[CAP_SYS_ADMIN], || {
                // SAFETY: setns on a namespace fd we own; affects this thread only.
                if unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    return Err(Error::last_os("enter the container network namespace"));
                }
                Ok(())
            })?;
            drop(netns);
            session(|handle| async move {
                let peer = link_index(&handle, &plan.peer).await?.ok_or_else(|| {
                    Error::State("the container end of the veth pair vanished".into())
                })?;
                handle
                    .link()
                    .set(
                        LinkUnspec::new_with_index(peer)
                            .name(CONTAINER_INTERFACE)
                            .build(),
                    )
                    .execute()
                    .await
                    .map_err(|e| match netlink_errno(&e) {
                        Some(libc::EEXIST) => Error::Exists(
                            "the container already has an interface named eth0".into(),
                        ),
                        _ => Error::netlink("rename the container end to eth0", e),
                    })?;
                add_address(
                    &handle,
                    peer,
                    plan.address,
                    plan.prefix,
                    CONTAINER_INTERFACE,
                )
                .await?;
                if let Some(lo) = link_index(&handle, "lo").await? {
                    set_up(&handle, lo, "lo").await?;
                }
                set_up(&handle, peer, CONTAINER_INTERFACE).await?;
                let route = RouteMessageBuilder::<Ipv4Addr>::new()
                    .gateway(plan.gateway)
                    .output_interface(peer)
                    .build();
                handle
                    .route()
                    .add(route)
                    .execute()
                    .await
                    .map_err(|e| Error::netlink("add the default route", e))
            })
        })
        .map_err(|e| Error::sys("start the container network thread", e))?;
    worker
        .join()
        .map_err(|_| Error::State("the container network thread failed".into()))?
}
