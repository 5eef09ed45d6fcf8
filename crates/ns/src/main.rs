//! `tupper-ns`: starts a container init in new namespaces and hands it over
//! to the supervisor. All logic is in `tupper_ns` (its checklist is there).

fn main() {
    let code = match tupper_ns::serve() {
        // The request was answered: with the init's pid (0) or an error (1).
        Ok(served) => i32::from(served.failed != 0),
        // Failure before a reply can be sent: tell whoever reads stderr.
        Err(e) => {
            let _ = tupper_helper::fail(tupper_ns::CAPS.helper, &e);
            1
        }
    };
    std::process::exit(code);
}
