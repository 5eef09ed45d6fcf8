//! `tupper_store`: the btrfs store helper's logic, behind the thin
//! `tupper-storage` binary.
//!
//! Spawned by `tupper-supervisor` with its control channel on fd 3. [`serve`]
//! reads as a checklist: sanitize → capabilities → handshake → for each
//! request: validate → act → report.

mod btrfs;
mod error;
mod fsutil;
mod images;
mod import;
pub mod layout;
mod loopdev;
mod nested;
mod privileges;
mod request;
mod roots;
mod store;
mod subvol;
mod suggest;

use proto::{Channel, StorageReply, StorageRequest};
use tupper_config::system::SystemConfig;

use error::Error;
use request::Context;

/// Why the helper stopped before the supervisor closed its channel.
#[derive(Debug, thiserror::Error)]
pub enum Fatal {
    /// A step failed; the message is for whoever reads stderr.
    #[error("{stage}: {message}")]
    Stage {
        stage: &'static str,
        message: String,
    },
    /// The channel closed in the middle of an import: the partial image is
    /// gone and there is nobody to answer.
    #[error("control channel closed mid-request")]
    Abandoned,
}

fn fail(stage: &'static str, e: impl std::fmt::Display) -> Fatal {
    Fatal::Stage {
        stage,
        message: e.to_string(),
    }
}

/// Runs the helper until the supervisor closes the channel (`Ok`).
pub fn serve() -> Result<(), Fatal> {
    // 1. Process hygiene; the caller is our real uid/gid.
    let caller = proto::helper::sanitize_process().map_err(|e| fail("start-up", e))?;
    // 2. Only our capabilities stay permitted; none effective.
    privileges::restrict().map_err(|e| fail("capabilities", e))?;
    // 3. The control channel.
    let mut chan = Channel::from_inherited().map_err(|e| fail("cannot start", e))?;
    chan.handshake().map_err(|e| fail("handshake", e))?;
    let ctx = Context {
        caller,
        config: SystemConfig::load().map_err(|e| e.to_string()),
    };
    // 4. Requests until the supervisor closes the channel.
    loop {
        let req = match chan.recv_opt::<StorageRequest>() {
            Ok(Some(req)) => req,
            Ok(None) => return Ok(()),
            Err(e) => {
                let _ = chan.reply::<StorageReply>(&Err(e.to_remote()));
                return Err(fail("control channel", e));
            }
        };
        let reply = match request::handle(&mut chan, &ctx, req) {
            // Mid-import close: the partial image is gone; nobody to answer.
            Err(Error::ChannelClosed) => return Err(Fatal::Abandoned),
            r => r.map_err(|e| e.to_remote()),
        };
        chan.reply(&reply).map_err(|e| fail("control channel", e))?;
    }
}
