//! `tupper_net`: the logic of the network helper `tupper-net`, spawned by
//! `tupper-supervisor` with its control channel on fd 3; answers `Attach` and
//! `Release` requests.
//!
//! Installed with `setcap cap_net_admin,cap_sys_admin,cap_sys_chroot,cap_dac_override,cap_chown=p`.

mod allocation;
mod attach;
mod container_root;
mod container_side;
mod error;
mod filter;
mod host_side;
mod ipam;
mod lease_store;
mod leases;
mod names;
mod netlink;
mod ownership;
mod privilege;
mod release;
mod settings;
mod state_dir;
mod sysctl;

use proto::helper::{sanitize_process, Caller};
use proto::{Channel, NetReply, NetRequest, RemoteError};

pub use crate::error::Error;
use crate::error::Result;
use crate::settings::Settings;

/// Serves requests until the supervisor closes the channel.
pub fn serve() -> Result<()> {
    // Sanitize: environment, umask, fds; then capabilities down to what we need.
    let caller = sanitize_process()?;
    privilege::restrict_to_needed()?;
    // Handshake.
    let mut channel = Channel::from_inherited()?;
    channel.handshake()?;
    // A broken configuration is reported to every request.
    let settings = Settings::load().map_err(|e| e.to_remote());
    // For each request: validate → act → report.
    loop {
        let request = match channel.recv_opt::<NetRequest>() {
            Ok(Some(r)) => r,
            Ok(None) => return Ok(()),
            Err(e) => {
                let _ = channel.reply::<NetReply>(&Err(e.to_remote()));
                return Err(e.into());
            }
        };
        let reply = handle(&settings, caller, &request);
        channel.reply(&reply)?;
    }
}

fn handle(
    settings: &Result<Settings, RemoteError>,
    caller: Caller,
    request: &NetRequest,
) -> Result<NetReply, RemoteError> {
    let settings = settings.as_ref().map_err(Clone::clone)?;
    let outcome = match request {
        NetRequest::Attach { pid, container } => attach::attach(settings, caller, *pid, container),
        NetRequest::Release { container } => release::release(settings, caller, container),
    };
    outcome.map_err(|e| e.to_remote())
}
