//! `tupper-storage`: the btrfs store helper. All logic is in `tupper_store`.

use std::process::ExitCode;

fn main() -> ExitCode {
    match tupper_store::serve() {
        Ok(()) => ExitCode::SUCCESS,
        Err(tupper_store::Fatal::Abandoned) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("tupper-storage: {e}");
            ExitCode::FAILURE
        }
    }
}
