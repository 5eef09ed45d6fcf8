//! Issue 11: `Publish { container, ports }` — host ports DNAT'd to a
//! container of the caller that holds a lease.
//!
//! ```text
//! <state_dir>/ports/<tcp|udp>-<port>        who published it (JSON), replaced atomically
//! <state_dir>/ports/<tcp|udp>-<port>.lock   flock guarding that port and its record
//! ```
//!
//! Validate → act → report:
//! 1. the container id and the list (`proto::ports`), then one socket per
//!    port, which must be an IPv4 socket of the port's protocol bound in the
//!    helper's own network namespace to that port (and address, if one is
//!    given): while the caller holds it no host service can bind the port,
//!    so publishing never takes traffic away from one;
//! 2. the policy: `min_host_port` for non-root callers, `published_ports`
//!    over all of the caller's leases (under the caller's own lock);
//! 3. under the container's address lock: each port's lock and record (a
//!    port whose record names a live lease of anyone is refused, without
//!    saying whose), the lease lists the ports, then the rules;
//! 4. report the ports as published.
//!
//! Release and stale-lease reclaim remove a lease's ports ([`withdraw`])
//! under the same address lock.

use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};

use proto::ports::{PortSpec, Protocol};
use proto::{Caller, Channel, NetReply, PortReservation};
use serde::{Deserialize, Serialize};
use tupper_config::policy::Policy;

use crate::error::{Error, Result};
use crate::lease_store::{LeaseStore, BUSY_WAIT};
use crate::leases::{boot_id, Lease};
use crate::settings::Settings;
use crate::state_dir::StateDir;

/// A port's record: which container of which user published it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortRecord {
    pub uid: u32,
    pub container: String,
    pub address: Ipv4Addr,
}

const MAX_RECORD_LEN: u64 = 4096;

fn record_name(protocol: Protocol, port: u16) -> String {
    format!("{}-{port}", protocol.as_str())
}

fn ports_dir(settings: &Settings) -> Result<StateDir> {
    StateDir::open(&settings.state_dir)?.subdir("ports")
}

fn read_record(dir: &StateDir, name: &str) -> Result<Option<PortRecord>> {
    match dir.read(name, MAX_RECORD_LEN)? {
        None => Ok(None),
        Some(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| Error::State(format!("port record {name}: {e}"))),
    }
}

/// The record names a lease that still exists, names it back and is live.
fn record_is_live(store: &LeaseStore, rec: &PortRecord, boot: &str) -> Result<bool> {
    let leases = store.snapshot()?;
    Ok(leases.leases.iter().any(|l| {
        l.address == rec.address
            && l.is(&rec.container, rec.uid)
            && !l.is_stale(boot, tupper_sys::process::start_time)
    }))
}

/// What one reservation socket is: (protocol, bound address, bound port).
fn inspect_socket(fd: &OwnedFd) -> Result<(Protocol, Ipv4Addr, u16)> {
    let raw = fd.as_raw_fd();
    let get = |opt: libc::c_int| -> Result<libc::c_int> {
        let mut v: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: `v` and `len` are valid for getsockopt's int options.
        let rc = unsafe {
            libc::getsockopt(
                raw,
                libc::SOL_SOCKET,
                opt,
                (&mut v as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        if rc != 0 {
            return Err(Error::Refused("a port reservation is not a socket".into()));
        }
        Ok(v)
    };
    if get(libc::SO_DOMAIN)? != libc::AF_INET {
        return Err(Error::Refused(
            "a port reservation is not an IPv4 socket".into(),
        ));
    }
    let protocol = match (get(libc::SO_TYPE)?, get(libc::SO_PROTOCOL)?) {
        (libc::SOCK_STREAM, libc::IPPROTO_TCP) => Protocol::Tcp,
        (libc::SOCK_DGRAM, libc::IPPROTO_UDP) => Protocol::Udp,
        _ => {
            return Err(Error::Refused(
                "a port reservation is not a TCP or UDP socket".into(),
            ))
        }
    };
    if netns_cookie(raw)? != own_netns_cookie()? {
        return Err(Error::Refused(
            "a port reservation is not in the host's network namespace".into(),
        ));
    }
    // SAFETY: zeroed sockaddr_in is valid; getsockname fills at most `len` bytes.
    let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: as above.
    let rc =
        unsafe { libc::getsockname(raw, (&mut sa as *mut libc::sockaddr_in).cast(), &mut len) };
    if rc != 0 {
        return Err(Error::sys(
            "read a port reservation's address",
            std::io::Error::last_os_error(),
        ));
    }
    Ok((
        protocol,
        Ipv4Addr::from(u32::from_be(sa.sin_addr.s_addr)),
        u16::from_be(sa.sin_port),
    ))
}

const SO_NETNS_COOKIE: libc::c_int = 71;

fn netns_cookie(fd: libc::c_int) -> Result<u64> {
    let mut v: u64 = 0;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: `v` and `len` are valid for SO_NETNS_COOKIE (a u64).
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            SO_NETNS_COOKIE,
            (&mut v as *mut u64).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(Error::sys(
            "read a socket's network namespace",
            std::io::Error::last_os_error(),
        ));
    }
    Ok(v)
}

fn own_netns_cookie() -> Result<u64> {
    let s = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(|e| Error::sys("open a socket", e))?;
    netns_cookie(s.as_raw_fd())
}

/// Check each reservation against its port; fill in ephemeral host ports.
pub fn check_reservations(ports: &mut [PortSpec], sockets: &[OwnedFd]) -> Result<()> {
    for (p, fd) in ports.iter_mut().zip(sockets) {
        let (protocol, ip, port) = inspect_socket(fd)?;
        let ip_ok = ip.is_unspecified() || Some(ip) == p.host_ip;
        if protocol != p.protocol
            || port == 0
            || !ip_ok
            || (p.host_port != 0 && port != p.host_port)
        {
            return Err(Error::Refused(format!(
                "the socket sent for {p} is not bound to that host port"
            )));
        }
        p.host_port = port;
    }
    Ok(())
}

/// Read one reservation socket per port from the channel.
fn receive_sockets(channel: &mut Channel, n: usize) -> Result<Vec<OwnedFd>> {
    let mut v = Vec::with_capacity(n);
    for i in 0..n {
        let (frame, fd) = channel.recv_with_fd::<PortReservation>()?;
        match fd {
            Some(fd) if frame.index as usize == i => v.push(fd),
            _ => {
                return Err(Error::Proto(proto::Error::invalid(
                    "port reservation",
                    format!("expected the socket of port {i}"),
                )))
            }
        }
    }
    Ok(v)
}

pub fn publish(
    settings: &Settings,
    caller: Caller,
    channel: &mut Channel,
    container: &str,
    ports: &[PortSpec],
) -> Result<NetReply> {
    // 1. Validate.
    proto::validate::container_id(container)?;
    proto::ports::validate_list(ports)?;
    let sockets = receive_sockets(channel, ports.len())?;
    let mut ports = ports.to_vec();
    check_reservations(&mut ports, &sockets)?;
    proto::ports::validate_list(&ports)?;
    // 2. Policy.
    let limits = Policy::load()?.limits_for_current(caller);
    if caller.uid != 0 {
        let min = &limits.min_host_port;
        if let Some(p) = ports.iter().find(|p| p.host_port < min.value) {
            return Err(Error::Refused(format!(
                "host port {} is below {} (min_host_port set by {}); publish a higher port",
                p.host_port, min.value, min.source
            )));
        }
    }
    let store = LeaseStore::open(&settings.state_dir)?;
    let _user_lock = store.lock_user(caller.uid)?;
    let snapshot = store.snapshot()?;
    let already: usize = snapshot
        .leases
        .iter()
        .filter(|l| l.uid == caller.uid)
        .map(|l| l.ports.len())
        .sum();
    let max = &limits.published_ports;
    if already + ports.len() > max.value as usize {
        return Err(max
            .exceeded(&format!(
                "you publish {already} ports already and asked for {} more",
                ports.len()
            ))
            .into());
    }
    let no_lease = || Error::NoLease {
        container: container.to_string(),
    };
    let address = snapshot
        .find(container, caller.uid)
        .map(|l| l.address)
        .ok_or_else(no_lease)?;
    // 3. Act, under the container's address lock.
    let held = store
        .hold_within(address, BUSY_WAIT)?
        .ok_or_else(|| Error::Busy {
            what: format!("the lease of container {container}"),
            waited: BUSY_WAIT,
        })?;
    let mut lease = store
        .read(&held)?
        .filter(|l| l.is(container, caller.uid))
        .ok_or_else(no_lease)?;
    let dir = ports_dir(settings)?;
    let boot = boot_id()?;
    let mut locks = Vec::new();
    for p in &ports {
        let name = record_name(p.protocol, p.host_port);
        let taken = || {
            Error::Exists(format!(
                "host port {}/{} is already published",
                p.host_port,
                p.protocol.as_str()
            ))
        };
        let lock = dir
            .lock_within(&format!("{name}.lock"), BUSY_WAIT)?
            .ok_or_else(taken)?;
        if let Some(rec) = read_record(&dir, &name)? {
            let ours =
                rec.address == address && rec.container == container && rec.uid == caller.uid;
            if ours || record_is_live(&store, &rec, &boot)? {
                return Err(taken());
            }
        }
        locks.push(lock);
    }
    // The lease lists the ports before their records and rules exist: a
    // crash from here on leaves what release and reclaim remove.
    lease.ports.extend(ports.iter().copied());
    store.write(&held, &lease)?;
    let outcome = (|| -> Result<()> {
        for p in &ports {
            let rec = PortRecord {
                uid: caller.uid,
                container: container.to_string(),
                address,
            };
            let json = serde_json::to_vec(&rec)
                .map_err(|e| Error::State(format!("cannot encode a port record: {e}")))?;
            dir.write_atomic(&record_name(p.protocol, p.host_port), &json)?;
            crate::nat::publish(p, address)?;
        }
        Ok(())
    })();
    if let Err(e) = outcome {
        drop(locks);
        let n = lease.ports.len() - ports.len();
        let added = lease.ports.split_off(n);
        withdraw_ports(settings, &lease, &added);
        if let Err(e) = store.write(&held, &lease) {
            eprintln!("tupper-net: rollback: {e}");
        }
        return Err(e);
    }
    // The reservations may go now: the records and the rules hold the ports,
    // and the caller keeps its own copies for the container's life.
    drop(sockets);
    // 4. Report.
    Ok(NetReply::Published { ports })
}

/// Best effort: remove the rules and records of `ports` of `lease` (the
/// records only where they still name this lease). Call under the lease's
/// address lock.
pub fn withdraw_ports(settings: &Settings, lease: &Lease, ports: &[PortSpec]) {
    let dir = match ports_dir(settings) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("tupper-net: published ports: {e}");
            return;
        }
    };
    for p in ports {
        let name = record_name(p.protocol, p.host_port);
        let Ok(Some(lock)) = dir.lock_within(&format!("{name}.lock"), BUSY_WAIT) else {
            eprintln!("tupper-net: port {p} is busy; left for the next reclaim");
            continue;
        };
        match read_record(&dir, &name) {
            Ok(Some(rec))
                if rec.address == lease.address
                    && rec.container == lease.container
                    && rec.uid == lease.uid =>
            {
                if let Err(e) = crate::nat::unpublish(p.protocol, p.host_port) {
                    eprintln!("tupper-net: port {p}: {e}");
                    continue;
                }
                if let Err(e) = dir.remove(&name) {
                    eprintln!("tupper-net: port {p}: {e}");
                }
            }
            Ok(_) => {}
            Err(e) => eprintln!("tupper-net: port {p}: {e}"),
        }
        drop(lock);
    }
}

/// All of a lease's ports (release, stale-lease reclaim).
pub fn withdraw(settings: &Settings, lease: &Lease) {
    if !lease.ports.is_empty() {
        withdraw_ports(settings, lease, &lease.ports);
    }
}
