//! Small rtnetlink building blocks shared by the host and the container side.
//!
//! Each session gets its own current-thread tokio runtime and its own netlink
//! socket, created with CAP_NET_ADMIN raised (the kernel checks the
//! capability of the socket's opener as well as of the sender), in whatever
//! network namespace the calling thread is in.

use std::future::Future;

use caps::Capability::CAP_NET_ADMIN;
use futures::TryStreamExt;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::{Handle, LinkUnspec};

use crate::capabilities::with_caps;
use crate::error::{netlink_errno, Error, Result};

/// Run `f` against a fresh rtnetlink connection in this thread's netns.
pub fn session<T, F, Fut>(f: F) -> Result<T>
where
    F: FnOnce(Handle) -> Fut,
    Fut: Future<Output = Result<T>>,
{
    with_caps(&[CAP_NET_ADMIN], || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .map_err(|e| Error::sys("start the netlink runtime", e))?;
        rt.block_on(async {
            let (conn, handle, _) =
                rtnetlink::new_connection().map_err(|e| Error::sys("open a netlink socket", e))?;
            let task = tokio::spawn(conn);
            let out = f(handle).await;
            task.abort();
            out
        })
    })
}

/// Index of the interface called `name`, `None` if there is none.
pub async fn link_index(handle: &Handle, name: &str) -> Result<Option<u32>> {
    let mut links = handle.link().get().match_name(name).execute();
    match links.try_next().await {
        Ok(Some(msg)) => Ok(Some(msg.header.index)),
        Ok(None) => Ok(None),
        Err(e) if netlink_errno(&e) == Some(libc::ENODEV) => Ok(None),
        Err(e) => Err(Error::netlink(format!("look up interface {name}"), e)),
    }
}

pub async fn set_up(handle: &Handle, index: u32, what: &str) -> Result<()> {
    handle
        .link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .map_err(|e| Error::netlink(format!("set {what} up"), e))
}

/// Delete interface `name` if it exists (for a veth, both ends go).
pub async fn delete_if_exists(handle: &Handle, name: &str) -> Result<()> {
    let Some(index) = link_index(handle, name).await? else {
        return Ok(());
    };
    match handle.link().del(index).execute().await {
        Ok(()) => Ok(()),
        Err(e) if netlink_errno(&e) == Some(libc::ENODEV) => Ok(()),
        Err(e) => Err(Error::netlink(format!("delete interface {name}"), e)),
    }
}

/// Whether interface `index` carries `address/prefix`.
pub async fn has_address(
    handle: &Handle,
    index: u32,
    address: std::net::Ipv4Addr,
    prefix: u8,
) -> Result<bool> {
    let mut addrs = handle
        .address()
        .get()
        .set_link_index_filter(index)
        .execute();
    while let Some(msg) = addrs
        .try_next()
        .await
        .map_err(|e| Error::netlink("list addresses", e))?
    {
        let matches = msg.header.prefix_len == prefix
            && msg.attributes.iter().any(|a| {
                matches!(a, AddressAttribute::Local(ip) | AddressAttribute::Address(ip)
                    if *ip == std::net::IpAddr::V4(address))
            });
        if msg.header.index == index && matches {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Add `address/prefix` to `index`; already present is fine.
pub async fn add_address(
    handle: &Handle,
    index: u32,
    address: std::net::Ipv4Addr,
    prefix: u8,
    what: &str,
) -> Result<()> {
    match handle
        .address()
        .add(index, address.into(), prefix)
        .execute()
        .await
    {
        Ok(()) => Ok(()),
        Err(e) if netlink_errno(&e) == Some(libc::EEXIST) => Ok(()),
        Err(e) => Err(Error::netlink(
            format!("add {address}/{prefix} to {what}"),
            e,
        )),
    }
}
