//! `tupper_store`: the btrfs store helper's logic, behind the thin
//! `tupper-storage` binary.
//!
//! Spawned by `tupper-supervisor` with its control channel on fd 3. [`serve`]
//! reads as a checklist: sanitize → capabilities → handshake → for each
//! request: validate → act → report (the first three and the loop are
//! `tupper_helper`'s, the same for every helper).

mod btrfs;
mod capabilities;
mod commit;
mod copy_in;
mod error;
mod export;
mod fsutil;
mod images;
mod import;
// Images made of layers (issue 10, engineer "oci").
mod layers;
pub mod layout;
mod loopdev;
mod nested;
mod quota;
mod request;
mod roots;
// Issue 9: container roots mounted as overlays (the quota's boundary).
mod root_mount;
mod store;
mod subvol;
mod suggest;

use proto::StorageRequest;
use tupper_config::system::SystemConfig;
use tupper_helper::{CoreLimit, Served};

pub use capabilities::CAPS;
use request::Context;

/// Runs the helper until the supervisor closes the channel (`Ok`):
/// `--print-caps` (prints [`CAPS`] and exits), process hygiene, capabilities
/// down to [`CAPS`], the channel on fd 3, then the serve loop. `Err` is a
/// failure nobody could be answered about, or a session that ended early (a
/// protocol violation, answered; a close in the middle of an import,
/// [`tupper_helper::Error::ChannelLost`], not answered).
pub fn serve() -> Result<Served, tupper_helper::Error> {
    let mut started = tupper_helper::start(&CAPS, CoreLimit::Zero)?;
    let ctx = Context {
        caller: started.caller,
        config: SystemConfig::load().map_err(|e| e.to_string()),
    };
    tupper_helper::serve(&mut started.channel, |chan, req: StorageRequest| {
        request::handle(chan, &ctx, req)
    })
}
