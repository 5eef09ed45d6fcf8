//! `tupper-net`: the network helper. All logic is in `tupper_net`.

use std::process::ExitCode;

fn main() -> ExitCode {
    match tupper_net::serve() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tupper-net: {e}");
            ExitCode::FAILURE
        }
    }
}
