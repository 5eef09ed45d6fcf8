//! `tupper_net`: the logic of the network helper `tupper-net`, spawned by
//! `tupper-supervisor` with its control channel on fd 3; answers `Attach` and
//! `Release` requests.
//!
//! Installed with the file capabilities `tupper-net --print-caps` prints ([`CAPS`]).

mod allocation;
mod attach;
mod capabilities;
mod container_root;
mod container_side;
mod error;
mod filter;
mod host_side;
mod ipam;
mod lease_store;
mod leases;
mod names;
// Issue 11: outbound NAT and published ports.
mod nat;
mod netlink;
mod ownership;
mod publish;
mod release;
mod settings;
mod state_dir;
// Issue 11: released host ends left to the kernel, and orphans.
mod sweep;
mod sysctl;
mod uplinks;

use proto::{Caller, NetReply, NetRequest, RemoteError};
use tupper_helper::{CoreLimit, Served, ToRemote};

pub use crate::capabilities::CAPS;
pub use crate::error::Error;
use crate::settings::Settings;

/// Serves requests until the supervisor closes the channel: `--print-caps`
/// (prints [`CAPS`] and exits), sanitize, capabilities down to [`CAPS`], the
/// channel on fd 3, then for each request: validate → act → report.
pub fn serve() -> Result<Served, tupper_helper::Error> {
    let mut started = tupper_helper::start(&CAPS, CoreLimit::Zero)?;
    let caller = started.caller;
    // A broken configuration is reported to every request.
    let settings = Settings::load().map_err(|e| e.to_remote());
    tupper_helper::serve(&mut started.channel, |channel, request: NetRequest| {
        handle(&settings, caller, channel, &request)
    })
}

fn handle(
    settings: &Result<Settings, RemoteError>,
    caller: Caller,
    channel: &mut proto::Channel,
    request: &NetRequest,
) -> Result<NetReply, RemoteError> {
    let settings = settings.as_ref().map_err(Clone::clone)?;
    let outcome = match request {
        NetRequest::Attach { pid, container } => attach::attach(settings, caller, *pid, container),
        NetRequest::Release { container } => release::release(settings, caller, container),
        NetRequest::Publish { container, ports } => {
            publish::publish(settings, caller, channel, container, ports)
        }
    };
    outcome.map_err(|e| e.to_remote())
}
