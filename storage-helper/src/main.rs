//! `tupper-storage`: the btrfs store helper.
//!
//! Spawned by `tupper-supervisor` with its control channel on fd 3. Reads as a
//! checklist: sanitize → capabilities → handshake → for each request:
//! validate → act → report.

mod btrfs;
mod containers;
mod error;
mod fsutil;
mod images;
mod import;
mod lock;
mod loopdev;
mod nested;
mod privileges;
mod requests;
mod store;
mod subvol;
mod suggest;

use std::process::ExitCode;

use proto::config::SystemConfig;
use proto::{Channel, StorageReply, StorageRequest};

use error::StorageError;
use requests::Context;

fn fail(what: &str, e: impl std::fmt::Display) -> ExitCode {
    eprintln!("tupper-storage: {what}: {e}");
    ExitCode::FAILURE
}

fn main() -> ExitCode {
    // 1. Process hygiene; the caller is our real uid/gid.
    let caller = match proto::helper::sanitize_process() {
        Ok(c) => c,
        Err(e) => return fail("start-up", e),
    };
    // 2. Only our capabilities stay permitted; none effective.
    if let Err(e) = privileges::restrict() {
        return fail("capabilities", e);
    }
    // 3. The control channel.
    let mut chan = match Channel::from_inherited() {
        Ok(c) => c,
        Err(e) => return fail("cannot start", e),
    };
    if let Err(e) = chan.handshake() {
        return fail("handshake", e);
    }
    let ctx = Context {
        caller,
        config: SystemConfig::load().map_err(|e| e.to_string()),
    };
    // 4. Requests until the supervisor closes the channel.
    loop {
        let req = match chan.recv_opt::<StorageRequest>() {
            Ok(Some(req)) => req,
            Ok(None) => return ExitCode::SUCCESS,
            Err(e) => {
                let _ = chan.reply::<StorageReply>(&Err(e.to_remote()));
                return fail("control channel", e);
            }
        };
        let reply = match requests::handle(&mut chan, &ctx, req) {
            // Mid-import close: the partial image is gone; nobody to answer.
            Err(StorageError::ChannelClosed) => return ExitCode::FAILURE,
            r => r.map_err(|e| e.to_remote()),
        };
        if let Err(e) = chan.reply(&reply) {
            return fail("control channel", e);
        }
    }
}
