//! `tupper-ns`: starts a container init in new namespaces and hands it over
//! to the supervisor. All logic is in `tupper_ns` (its checklist is there).

fn main() {
    let code = match tupper_ns::serve() {
        Ok(tupper_ns::Outcome::Spawned) => 0,
        Ok(tupper_ns::Outcome::Refused) => 1,
        // Failure before a reply can be sent: tell whoever reads stderr.
        Err(e) => {
            eprintln!("tupper-ns: {e}");
            1
        }
    };
    std::process::exit(code);
}
