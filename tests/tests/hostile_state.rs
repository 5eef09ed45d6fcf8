//! The supervisor's per-user state directory cannot be taken by another user.

use std::os::unix::fs::MetadataExt;

use tupper_integration::{assert_success, Env};

fn env() -> Env {
    Env::get(env!("CARGO_BIN_EXE_tupper-drive"))
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn another_user_cannot_squat_the_state_directory() {
    let e = env();
    let uid = e.uid(&e.user);
    // Another user creates every fixed-name place in /tmp first.
    let squatted = [
        format!("/tmp/tupperware-{uid}"),
        format!("/tmp/tupperware-{uid}/containers"),
    ];
    let _ = std::fs::remove_dir_all(&squatted[0]);
    for dir in &squatted {
        let out = e
            .as_user(&e.norange_user, "/bin/mkdir")
            .args(["-m", "0777", dir])
            .output()
            .expect("mkdir as the other user");
        assert_success(&out, &["mkdir", dir]);
    }
    let args = [
        "run",
        "--rm",
        "--network",
        "none",
        "busybox",
        "echo",
        "mine",
    ];
    let out = e.tupper(&args).output().expect("run");
    let _ = std::fs::remove_dir_all(&squatted[0]);
    assert_success(&out, &args);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "mine\n");
    // The state is in a directory of the user's own, private.
    let state = e.state_dir_of(&e.user);
    let md = std::fs::symlink_metadata(&state).expect("state directory");
    assert_eq!(md.uid(), uid);
    assert_eq!(md.mode() & 0o777, 0o700);
}
