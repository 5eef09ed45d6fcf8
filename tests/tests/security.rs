//! End-to-end: privileges inside a container (issue 7): the default seccomp
//! profile and `--security-opt`, `no_new_privs`, capabilities, `-u`,
//! environment flags, `--entrypoint`, `--init`, `--network host`, refusals
//! and usage errors. Run by `tests/run.sh` as the unprivileged test user.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Output;

use tupper_integration::{assert_success, Env};

fn env() -> Env {
    Env::get(env!("CARGO_BIN_EXE_tupper-drive"))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `run --rm --network none [FLAGS...] busybox CMD...` as the test user.
fn run(e: &Env, flags: &[&str], cmd: &[&str]) -> Output {
    let mut args = vec!["run", "--rm", "--network", "none"];
    args.extend_from_slice(flags);
    args.push("busybox");
    args.extend_from_slice(cmd);
    e.tupper(&args).output().expect("spawn supervisor")
}

fn run_ok(e: &Env, flags: &[&str], cmd: &[&str]) -> String {
    let out = run(e, flags, cmd);
    assert_success(&out, cmd);
    text(&out.stdout)
}

/// A field of the command's `/proc/self/status`.
fn status_field(e: &Env, flags: &[&str], field: &str) -> String {
    let out = run_ok(
        e,
        flags,
        &["grep", &format!("^{field}:"), "/proc/self/status"],
    );
    out.split(':')
        .nth(1)
        .unwrap_or_else(|| panic!("{field} missing: {out}"))
        .trim()
        .to_string()
}

/// A file the test user can read, with `content`.
fn readable_file(name: &str, content: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tupper-sec-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    path
}

/// Remove what [`readable_file`] made.
fn remove_files(path: &std::path::Path) {
    if let Some(dir) = path.parent() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

fn one_line_error(out: &Output, want: &str) {
    let err = text(&out.stderr);
    let lines: Vec<&str> = err.lines().collect();
    assert!(
        !lines.is_empty() && lines[0].starts_with("tupper: ") && lines[0].contains(want),
        "{err}"
    );
    assert!(lines.len() <= 2, "more than a line and a hint: {err}");
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn the_default_seccomp_profile_denies_new_namespaces() {
    let e = env();
    // A user namespace needs no capability at all: only the filter stops it.
    let out = run(&e, &[], &["unshare", "-U", "true"]);
    assert_ne!(out.status.code(), Some(0), "unshare -U allowed: {out:?}");
    assert!(
        text(&out.stderr).contains("Operation not permitted"),
        "{out:?}"
    );
    assert_eq!(status_field(&e, &[], "Seccomp"), "2");
    // Unconfined: the same call works, and no filter is installed.
    let flags = ["--security-opt", "seccomp=unconfined"];
    run_ok(&e, &flags, &["unshare", "-U", "true"]);
    assert_eq!(status_field(&e, &flags, "Seccomp"), "0");
    // With CAP_SYS_ADMIN (of the container's namespace) the profile lets it through.
    run_ok(&e, &["--cap-add", "SYS_ADMIN"], &["unshare", "-U", "true"]);
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn a_seccomp_profile_file_is_compiled_and_applied() {
    let e = env();
    let profile = readable_file(
        "no-mkdir.json",
        r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86_64"],
            "syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO","errnoRet":13}]}"#,
    );
    let opt = format!("seccomp={}", profile.display());
    let out = run(&e, &["--security-opt", &opt], &["mkdir", "/made"]);
    assert_ne!(out.status.code(), Some(0), "{out:?}");
    assert!(text(&out.stderr).contains("Permission denied"), "{out:?}");
    run_ok(&e, &[], &["mkdir", "/made"]);
    // Garbage is refused in one line, before anything runs.
    let bad = readable_file("bad.json", "{\"defaultAction\": 12}");
    let opt = format!("seccomp={}", bad.display());
    let out = run(&e, &["--security-opt", &opt], &["true"]);
    assert_eq!(out.status.code(), Some(125), "{out:?}");
    one_line_error(&out, "seccomp profile");
    remove_files(&bad);
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn no_new_privs_is_off_by_default_and_on_when_asked() {
    let e = env();
    assert_eq!(status_field(&e, &[], "NoNewPrivs"), "0");
    let flags = ["--security-opt", "no-new-privileges"];
    assert_eq!(status_field(&e, &flags, "NoNewPrivs"), "1");
    // With no_new_privs the filter needs no CAP_SYS_ADMIN: still installed.
    assert_eq!(status_field(&e, &flags, "Seccomp"), "2");
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn capabilities_follow_cap_add_and_cap_drop() {
    let e = env();
    assert_eq!(status_field(&e, &[], "CapEff"), "00000000a80425fb");
    assert_eq!(status_field(&e, &[], "CapInh"), "0000000000000000");
    let drop_all = ["--cap-drop", "ALL"];
    assert_eq!(status_field(&e, &drop_all, "CapBnd"), "0000000000000000");
    assert_eq!(status_field(&e, &drop_all, "CapEff"), "0000000000000000");
    let only_raw = ["--cap-drop", "all", "--cap-add", "cap_net_raw"];
    assert_eq!(status_field(&e, &only_raw, "CapBnd"), "0000000000002000");
    assert_eq!(status_field(&e, &only_raw, "CapEff"), "0000000000002000");
    let admin = ["--cap-add", "SYS_ADMIN", "--cap-drop", "MKNOD"];
    assert_eq!(status_field(&e, &admin, "CapEff"), "00000000a02425fb");
    let out = run(&e, &["--cap-add", "NET_FLY"], &["true"]);
    assert_eq!(out.status.code(), Some(125));
    one_line_error(&out, "unknown capability \"NET_FLY\"");
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn user_flag_takes_numbers_and_names_from_the_image() {
    let e = env();
    let out = run_ok(&e, &["-u", "1000:1000"], &["id"]);
    assert!(out.starts_with("uid=1000 gid=1000"), "{out}");
    let out = run_ok(
        &e,
        &["-u", "nobody"],
        &["sh", "-c", "id -u; id -g; echo $HOME"],
    );
    assert_eq!(out, "65534\n65534\n/nonexistent\n");
    // A user other than root holds no capabilities (only the bounding set).
    assert_eq!(
        status_field(&e, &["-u", "1000"], "CapEff"),
        "0000000000000000"
    );
    assert_eq!(
        status_field(&e, &["-u", "1000"], "CapPrm"),
        "0000000000000000"
    );
    assert_eq!(
        status_field(&e, &["-u", "1000"], "CapBnd"),
        "00000000a80425fb"
    );
    // The filter is installed for a user too (KEEPCAPS carries CAP_SYS_ADMIN to it).
    assert_eq!(status_field(&e, &["-u", "1000"], "Seccomp"), "2");
    let out = run(&e, &["-u", "nosuchuser"], &["id"]);
    assert_eq!(out.status.code(), Some(126), "{out:?}");
    one_line_error(&out, "unable to find user nosuchuser");
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn environment_flags_and_entrypoint() {
    let e = env();
    let file = readable_file(
        "env",
        "# comment\nFROM_FILE=file value\nPASSED\nOVERRIDDEN=file\n",
    );
    // The caller's environment, through `env` (setpriv resets it).
    let mut c = e.as_user(&e.user, "/usr/bin/env");
    c.args(["PASSED=from caller", "OVERRIDDEN=caller"])
        .arg(e.supervisor())
        .args([
            "run",
            "--rm",
            "--network",
            "none",
            "-e",
            "PASSED",
            "-e",
            "UNSET_HERE",
        ])
        .args([
            "--env-file",
            &file.to_string_lossy(),
            "-e",
            "OVERRIDDEN=flag",
        ])
        .args([
            "busybox",
            "sh",
            "-c",
            "echo \"$PASSED|$FROM_FILE|$OVERRIDDEN|${UNSET_HERE-unset}\"",
        ]);
    let out = c.output().unwrap();
    assert_success(&out, &["env flags"]);
    assert_eq!(text(&out.stdout), "from caller|file value|flag|unset\n");
    remove_files(&file);
    let out = run_ok(&e, &["--entrypoint", "echo"], &["a", "b"]);
    assert_eq!(out, "a b\n");
    let out = run_ok(
        &e,
        &["--entrypoint", r#"["sh","-c"]"#],
        &["echo $0", "zero"],
    );
    assert_eq!(out, "zero\n");
    let out = run_ok(&e, &["--entrypoint", ""], &["echo", "none"]);
    assert_eq!(out, "none\n");
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn init_reaps_zombies_and_keeps_the_exit_status() {
    let e = env();
    // An orphan is re-parented to pid 1; pid 1 then becomes `sleep`, which
    // never waits, so without a reaper the orphan stays a zombie. A
    // background shell counts zombies after it ended.
    let script =
        "(sleep 1; ps -o stat,comm | grep -c '^ *Z') & sh -c 'sleep 0.2 & exit 0'; exec sleep 2";
    let out = run(&e, &["--init"], &["sh", "-c", script]);
    assert_eq!(
        text(&out.stdout),
        "0\n",
        "a zombie is left with --init: {out:?}"
    );
    let out = run(&e, &[], &["sh", "-c", script]);
    assert_eq!(
        text(&out.stdout),
        "1\n",
        "no zombie without --init: {out:?}"
    );
    let out = run(
        &e,
        &["--init"],
        &["sh", "-c", "echo $$; grep ^Name /proc/1/status; exit 7"],
    );
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_ne!(lines[0], "1", "the command is pid 1: {stdout}");
    assert!(
        lines[1].contains("tupper-ns"),
        "pid 1 is not the reaper: {stdout}"
    );
    // A signal sent to the container reaches the command through the reaper.
    let out = run(
        &e,
        &["--init"],
        &["sh", "-c", "kill -TERM 1; sleep 5; echo survived"],
    );
    assert_eq!(out.status.code(), Some(128 + 15), "{out:?}");
    // The reaper holds nothing and is filtered too.
    let out = run_ok(
        &e,
        &["--init"],
        &["grep", "-E", "^(Cap(Prm|Eff)|Seccomp):", "/proc/1/status"],
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    for l in lines {
        let want = if l.starts_with("Seccomp:") {
            "2"
        } else {
            "0000000000000000"
        };
        assert!(l.ends_with(want), "{out}");
    }
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn network_host_shares_the_callers_interfaces() {
    let e = env();
    let host = std::process::Command::new("ip")
        .args(["netns", "exec", &e.netns, "ip", "-o", "link", "show"])
        .output()
        .unwrap();
    let names = |s: &str| -> Vec<String> {
        let mut v: Vec<String> = s
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|n| n.split('@').next().unwrap_or(n).to_string())
            .collect();
        v.sort();
        v
    };
    let out = e
        .tupper(&[
            "run",
            "--rm",
            "--network",
            "host",
            "busybox",
            "ip",
            "-o",
            "link",
            "show",
        ])
        .output()
        .unwrap();
    assert_success(&out, &["--network host"]);
    assert_eq!(names(&text(&out.stdout)), names(&text(&host.stdout)));
    // Its own namespace otherwise: only lo.
    let out = run_ok(&e, &[], &["ip", "-o", "link", "show"]);
    assert_eq!(names(&out), ["lo"]);
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn privileged_and_usage_errors_are_one_line() {
    let e = env();
    let out = run(&e, &["--privileged"], &["true"]);
    assert_eq!(out.status.code(), Some(125));
    one_line_error(&out, "--privileged is not supported");
    assert_eq!(text(&out.stderr).lines().count(), 1);
    let out = e
        .tupper(&["run", "--bogus-flag", "busybox"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    assert_eq!(
        text(&out.stderr),
        "tupper: unexpected argument '--bogus-flag' found\nsee tupper-supervisor run --help\n"
    );
    let out = e.tupper(&["run", "--help"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("--cap-add"));
}
