//! `tupper-net`: the network helper. All logic is in `tupper_net`.

use std::process::ExitCode;

fn main() -> ExitCode {
    match tupper_net::serve() {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => tupper_helper::fail(tupper_net::CAPS.helper, &e),
    }
}
