//! Issue 11: `-p`/`-P`. The monitor binds each host port itself (as the
//! caller, in the caller's network namespace) and keeps the sockets for the
//! container's life: no host service can take a published port, and
//! `tupper-net`, which is sent a copy of each socket, publishes only ports
//! held that way.

use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, UdpSocket};
use std::os::fd::{AsFd, OwnedFd};

use proto::ports::{PortSpec, Protocol};
use proto::{NetReply, NetRequest, PortReservation};

use crate::error::{Error, Result};
use crate::helpers::{Helper, HelperProcess, HelperStdio};
use crate::run::{NetworkMode, RunOptions};

/// The ports an image exposes. The OCI image work fills this in from the
/// image configuration's `ExposedPorts`; images without one expose none.
pub fn exposed_ports(image_key: &str) -> Result<Vec<PortSpec>> {
    let Some(meta) = crate::oci::image_meta(image_key)? else {
        return Ok(Vec::new());
    };
    let mut v = Vec::new();
    for key in meta.config.exposed_ports.iter().flat_map(|m| m.keys()) {
        // `80/tcp`, `53/udp`: one container port, published on an ephemeral host port.
        v.push(PortSpec::parse(key).map_err(|e| {
            Error::user(format!(
                "the image exposes {key:?}, which is not a port: {e}"
            ))
        })?);
    }
    Ok(v)
}

/// The ports to publish: `-p` as given, then with `-P` each exposed port on
/// an ephemeral host port.
pub fn specs(opts: &RunOptions) -> Result<Vec<PortSpec>> {
    let mut v = Vec::new();
    for p in &opts.publish {
        v.push(PortSpec::parse(p).map_err(|e| Error::user(e.to_string()))?);
    }
    if opts.publish_all {
        v.extend(exposed_ports(&opts.image)?.into_iter().map(|mut p| {
            p.host_port = 0;
            p
        }));
    }
    if !v.is_empty() && opts.network != NetworkMode::Bridge {
        return Err(Error::user(
            "published ports need --network bridge (with --network host, the container's ports are the host's)",
        ));
    }
    proto::ports::validate_list(&v).map_err(|e| Error::user(e.to_string()))?;
    Ok(v)
}

/// Bind `p`'s host port (0: an ephemeral one) as the caller.
fn reserve(p: &PortSpec) -> Result<OwnedFd> {
    let addr = SocketAddrV4::new(p.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED), p.host_port);
    let taken = |e: std::io::Error| {
        Error::user(format!(
            "cannot publish {p}: the host port cannot be reserved ({e})"
        ))
    };
    Ok(match p.protocol {
        Protocol::Tcp => OwnedFd::from(TcpListener::bind(addr).map_err(taken)?),
        Protocol::Udp => OwnedFd::from(UdpSocket::bind(addr).map_err(taken)?),
    })
}

/// Reserve every port, have `tupper-net` publish them to `container`, and
/// keep the reservations open until this process (the monitor) exits.
pub fn publish(container: &str, specs: &[PortSpec]) -> Result<Vec<PortSpec>> {
    let sockets = specs.iter().map(reserve).collect::<Result<Vec<_>>>()?;
    let mut net = HelperProcess::spawn(Helper::Net, HelperStdio::default())?;
    net.send(&NetRequest::Publish {
        container: container.to_string(),
        ports: specs.to_vec(),
    })?;
    for (i, s) in sockets.iter().enumerate() {
        net.send_with_fd(&PortReservation { index: i as u32 }, s.as_fd())?;
    }
    let NetReply::Published { ports } = net.recv_reply::<NetReply>()? else {
        return Err(Error::user("net: unexpected reply to Publish"));
    };
    // Held until the monitor exits, after the release removed the rules.
    std::mem::forget(sockets);
    Ok(ports)
}
