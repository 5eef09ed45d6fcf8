//! `tupper-storage`: the btrfs store helper. All logic is in `tupper_store`.

use std::process::ExitCode;

fn main() -> ExitCode {
    match tupper_store::serve() {
        Ok(_) => ExitCode::SUCCESS,
        // A close in the middle of an import: the partial image is gone and
        // nobody is listening.
        Err(tupper_helper::Error::ChannelLost(_)) => ExitCode::FAILURE,
        Err(e) => tupper_helper::fail(tupper_store::CAPS.helper, &e),
    }
}
