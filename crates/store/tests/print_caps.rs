//! `tupper-storage --print-caps` prints the one list of its capabilities, the
//! `setcap` argument install.sh installs it with, and exits 0 (before
//! anything else: no control channel, no root needed).

use std::process::Command;

#[test]
fn print_caps_is_the_specs_setcap_string() {
    let out = Command::new(env!("CARGO_BIN_EXE_tupper-storage"))
        .arg("--print-caps")
        .output()
        .expect("run the helper");
    assert!(out.status.success(), "{out:?}");
    assert!(out.stderr.is_empty(), "{out:?}");
    let printed = String::from_utf8(out.stdout).expect("utf-8");
    assert_eq!(printed, format!("{}\n", tupper_store::CAPS.setcap()));
    // The string install.sh and the README's table carry.
    assert_eq!(
        printed.trim_end(),
        "cap_sys_admin,cap_dac_override,cap_chown,cap_fowner,cap_fsetid,cap_setfcap,cap_sys_chroot=p"
    );
}

#[test]
fn any_other_arguments_do_not_print_caps() {
    // Not the one argument: the helper starts as a helper, finds no control
    // channel on fd 3 and fails without printing.
    let out = Command::new(env!("CARGO_BIN_EXE_tupper-storage"))
        .args(["--print-caps", "extra"])
        .output()
        .expect("run the helper");
    assert!(!out.status.success(), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
}
