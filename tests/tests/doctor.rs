//! Issue 12: `doctor` passes on the installed suite and, with each
//! prerequisite broken in turn (a helper's capabilities, the user's
//! subordinate ids, the policy file, the bridge subnet), names it with its
//! fix and exits 1; `version`; the default image a user gets on first run.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tupper_integration::{output_text, Env};

fn env() -> Env {
    Env::get(env!("CARGO_BIN_EXE_tupper-drive"))
}

/// `doctor --format json` as `user`: exit status and the checks.
fn doctor(e: &Env, user: &str) -> (i32, Vec<serde_json::Value>, Output) {
    let out = e
        .as_user(user, &e.supervisor().to_string_lossy())
        .args(["doctor", "--format", "json"])
        .output()
        .expect("spawn doctor");
    let checks: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|err| panic!("doctor printed no JSON ({err}): {}", output_text(&out)));
    (out.status.code().unwrap_or(-1), checks, out)
}

fn check<'a>(checks: &'a [serde_json::Value], name: &str) -> &'a serde_json::Value {
    checks
        .iter()
        .find(|c| c["check"] == name)
        .unwrap_or_else(|| panic!("no check {name:?} in {checks:#?}"))
}

fn failed(checks: &[serde_json::Value]) -> Vec<String> {
    checks
        .iter()
        .filter(|c| c["status"] == "fail")
        .map(|c| c["check"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn helpers(e: &Env) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(e.libexec())
        .expect("libexec")
        .map(|d| d.expect("entry").path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("tupper-") && !n.contains('.'))
        })
        .collect();
    v.sort();
    v
}

fn getcap(path: &Path) -> String {
    let out = Command::new("getcap").arg(path).output().expect("getcap");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .last()
        .unwrap_or_default()
        .to_string()
}

fn setcap(caps: &str, path: &Path) {
    let st = Command::new("setcap")
        .arg(caps)
        .arg(path)
        .status()
        .expect("setcap");
    assert!(st.success(), "setcap {caps} {}", path.display());
}

fn print_caps(path: &Path) -> String {
    let out = Command::new(path)
        .arg("--print-caps")
        .output()
        .expect("--print-caps");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Puts a helper's capabilities back however the test ends.
struct RestoreCaps(PathBuf, String);
impl Drop for RestoreCaps {
    fn drop(&mut self) {
        setcap(&self.1, &self.0);
    }
}

/// Puts a file's contents back however the test ends.
struct RestoreFile(PathBuf, Option<Vec<u8>>);
impl Drop for RestoreFile {
    fn drop(&mut self) {
        match &self.1 {
            Some(data) => std::fs::write(&self.0, data).expect("restore file"),
            None => {
                let _ = std::fs::remove_file(&self.0);
            }
        }
    }
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn doctor_passes_on_the_installed_suite() {
    let e = env();
    let (code, checks, out) = doctor(&e, &e.user);
    assert_eq!(
        (code, failed(&checks)),
        (0, vec![]),
        "{}",
        output_text(&out)
    );
    for h in helpers(&e) {
        let name = h.file_name().unwrap().to_string_lossy().into_owned();
        let c = check(&checks, &format!("helper {name}"));
        assert_eq!(c["status"], "ok", "{c}");
    }
    for name in [
        "subordinate uids",
        "subordinate gids",
        "policy",
        "store",
        "pidfd",
    ] {
        assert_eq!(check(&checks, name)["status"], "ok", "{name}");
    }
    // The text form: one line per check, the same verdict.
    let out = e.tupper(&["doctor"]).output().expect("doctor");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", output_text(&out));
    assert_eq!(text.lines().count(), checks.len(), "{text}");
    assert!(text
        .lines()
        .all(|l| l.starts_with("ok") || l.starts_with("warn")));
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn doctor_fails_on_a_helper_without_exactly_its_capabilities() {
    let e = env();
    for h in helpers(&e) {
        let name = h.file_name().unwrap().to_string_lossy().into_owned();
        let want = print_caps(&h);
        let _restore = RestoreCaps(h.clone(), getcap(&h));
        // One missing, none at all, one extra, effective: each is a failure.
        let fewer = {
            let list: Vec<&str> = want.trim_end_matches("=p").split(',').collect();
            if list.len() > 1 {
                format!("{}=p", list[1..].join(","))
            } else {
                "cap_kill=p".into()
            }
        };
        let extra = format!("{},cap_sys_module=p", want.trim_end_matches("=p"));
        let effective = format!("{}e", want);
        for broken in [fewer.as_str(), "", extra.as_str(), effective.as_str()] {
            if broken.is_empty() {
                let st = Command::new("setcap").arg("-r").arg(&h).status().unwrap();
                assert!(st.success());
            } else {
                setcap(broken, &h);
            }
            let (code, checks, out) = doctor(&e, &e.user);
            let c = check(&checks, &format!("helper {name}"));
            assert_eq!(
                (code, &c["status"]),
                (1, &"fail".into()),
                "{broken}: {}",
                output_text(&out)
            );
            let fix = c["fix"].as_str().unwrap_or_default();
            assert!(
                fix.contains(&format!("setcap '{want}'")),
                "{broken}: the fix names the set: {fix}"
            );
        }
    }
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn doctor_fails_for_a_user_without_subordinate_ids() {
    let e = env();
    let (code, checks, out) = doctor(&e, &e.norange_user);
    assert_eq!(code, 1, "{}", output_text(&out));
    for name in ["subordinate uids", "subordinate gids"] {
        let c = check(&checks, name);
        assert_eq!(c["status"], "fail", "{c}");
        assert!(
            c["fix"]
                .as_str()
                .unwrap_or_default()
                .contains("usermod --add-sub"),
            "{c}"
        );
    }
    // Text form: the failing line says FAIL and the fix.
    let out = e
        .as_user(&e.norange_user, &e.supervisor().to_string_lossy())
        .arg("doctor")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with("FAIL  subordinate uids:") && l.contains("fix: ")),
        "{text}"
    );
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn doctor_fails_on_a_broken_policy_file() {
    let e = env();
    let path = e.sysconfdir.join("policy.toml");
    let _restore = RestoreFile(path.clone(), std::fs::read(&path).ok());
    std::fs::write(&path, "[default]\ninterfaces = \"many\"\n").unwrap();
    let (code, checks, out) = doctor(&e, &e.user);
    assert_eq!(code, 1, "{}", output_text(&out));
    let c = check(&checks, "policy");
    assert_eq!(c["status"], "fail", "{c}");
    assert!(
        c["message"]
            .as_str()
            .unwrap_or_default()
            .contains("policy.toml"),
        "{c}"
    );
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn doctor_fails_when_a_host_route_clashes_with_the_bridge_subnet() {
    let e = env();
    let ip = |args: &[&str]| {
        let st = Command::new("ip")
            .args(["-n", &e.netns])
            .args(args)
            .status()
            .unwrap();
        assert!(st.success(), "ip {args:?}");
    };
    // A route into the containers' subnet (10.88.0.0/16 in the suite), on an
    // interface of the suite's own network namespace.
    ip(&[
        "link",
        "add",
        "twdoctor0",
        "type",
        "veth",
        "peer",
        "name",
        "twdoctor1",
    ]);
    struct Del(String);
    impl Drop for Del {
        fn drop(&mut self) {
            let _ = Command::new("ip")
                .args(["-n", &self.0, "link", "del", "twdoctor0"])
                .status();
        }
    }
    let _del = Del(e.netns.clone());
    ip(&["addr", "add", "10.88.200.1/24", "dev", "twdoctor0"]);
    ip(&["link", "set", "twdoctor0", "up"]);
    let (code, checks, out) = doctor(&e, &e.user);
    assert_eq!(code, 1, "{}", output_text(&out));
    let c = check(&checks, "bridge subnet");
    assert_eq!(c["status"], "fail", "{c}");
    assert!(
        c["message"]
            .as_str()
            .unwrap_or_default()
            .contains("10.88.200.0/24 on twdoctor0"),
        "{c}"
    );
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn version_prints_the_release_and_the_protocol() {
    let e = env();
    let a = e.run_ok(&["version"]);
    let b = e.run_ok(&["--version"]);
    assert_eq!(a, b);
    assert!(
        a.starts_with("tupper-supervisor ") && a.contains("(protocol "),
        "{a}"
    );
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn a_users_first_run_of_busybox_imports_the_default_image_once() {
    let e = env();
    let user = &e.second_user;
    let shipped = e.prefix.join("share/tupperware/images/busybox.tar");
    assert!(shipped.is_file(), "{} is installed", shipped.display());
    let tupper = |args: &[&str]| {
        e.as_user(user, &e.supervisor().to_string_lossy())
            .args(args)
            .output()
            .expect("spawn supervisor")
    };
    // As a user who never imported anything.
    let _ = tupper(&["image", "rm", "busybox"]);
    let first = tupper(&["run", "--rm", "--network", "none", "busybox", "echo", "hi"]);
    let err = String::from_utf8_lossy(&first.stderr);
    assert!(first.status.success(), "{}", output_text(&first));
    assert_eq!(String::from_utf8_lossy(&first.stdout), "hi\n");
    assert_eq!(
        err.lines()
            .filter(|l| l.contains("importing the default image busybox"))
            .count(),
        1,
        "one line says so: {err}"
    );
    let again = tupper(&["run", "--rm", "--network", "none", "busybox", "echo", "hi"]);
    assert!(again.status.success(), "{}", output_text(&again));
    assert!(
        !String::from_utf8_lossy(&again.stderr).contains("importing"),
        "imported once: {}",
        output_text(&again)
    );
    // A name the package does not ship is not found, as before.
    let none = tupper(&["run", "--rm", "--network", "none", "nosuchimage", "true"]);
    assert_eq!(none.status.code(), Some(125), "{}", output_text(&none));
    assert!(!String::from_utf8_lossy(&none.stderr).contains("importing"));
}
