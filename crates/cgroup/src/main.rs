//! `tupper-cgroup`: the cgroup helper. All logic is in `tupper_cgroup`.

use std::process::ExitCode;

fn main() -> ExitCode {
    match tupper_cgroup::serve() {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => tupper_helper::fail(tupper_cgroup::CAPS.helper, &e),
    }
}
