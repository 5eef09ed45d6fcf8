//! End-to-end: containers that outlive the command (issue 8): the monitor,
//! `run -d`, logs, stop/kill/start/wait/rm -f, inspect, ps, crashes.

use std::time::{Duration, Instant};

use tupper_integration::{assert_success, output_text, stdout, tidy, Env, PolicyFile, Tidy};

fn env() -> Env {
    Env::get(env!("CARGO_BIN_EXE_tupper-drive"))
}

fn nothing_left(e: &Env) {
    assert!(
        e.container_roots(&e.user).is_empty(),
        "container roots left: {:?}",
        e.container_roots(&e.user)
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while !e.veths().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(e.veths().is_empty(), "veths left: {:?}", e.veths());
    let uid = e.uid(&e.user);
    let leases = e.leases();
    assert!(
        !leases.contains(&format!("\"uid\": {uid}")) && !leases.contains(&format!("\"uid\":{uid}")),
        "lease left: {leases}"
    );
}

/// `run -d ARGS`: the full id.
fn detached(e: &Env, args: &[&str]) -> String {
    let mut v = vec!["run", "-d"];
    v.extend_from_slice(args);
    let id = e.run_ok(&v).trim().to_string();
    assert_eq!(id.len(), 32, "{id}");
    id
}

fn inspect(e: &Env, name: &str) -> serde_json::Value {
    let text = e.run_ok(&["inspect", name]);
    let v: serde_json::Value = serde_json::from_str(&text).expect("inspect is JSON");
    v[0].clone()
}

/// The monitor's pid: the parent of the container's init.
fn monitor_pid(init: i64) -> i32 {
    let stat = std::fs::read_to_string(format!("/proc/{init}/stat")).expect("init stat");
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    after.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn a_detached_httpd_is_reached_from_another_container() {
    let e = env();
    let _tidy = tidy(&e, &["web"]);
    let id = detached(
        &e,
        &[
            "--name", "web", "busybox", "sh", "-c",
            "mkdir -p /www && echo hello-from-httpd > /www/index.html && exec httpd -f -p 8080 -h /www",
        ],
    );
    let info = inspect(&e, "web");
    assert_eq!(info["id"], id.as_str());
    let addr = info["network"]["address"]
        .as_str()
        .expect("address")
        .to_string();
    let url = format!("http://{addr}:8080/");
    let mut got = String::new();
    for _ in 0..50 {
        let out = e
            .tupper(&["run", "--rm", "busybox", "wget", "-q", "-O", "-", &url])
            .output()
            .unwrap();
        got = output_text(&out);
        if got.contains("hello-from-httpd") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(got.contains("hello-from-httpd"), "{got}");
    e.run_ok(&["rm", "-f", "web"]);
    assert!(!e.run_ok(&["ps", "-a"]).contains("web"));
    nothing_left(&e);
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn logs_keep_stdout_and_stderr_apart_and_follow() {
    let e = env();
    let _tidy = tidy(&e, &["talk"]);
    detached(
        &e,
        &[
            "--name",
            "talk",
            "--network",
            "none",
            "busybox",
            "sh",
            "-c",
            "echo to-out; echo to-err >&2; sleep 1; echo later; sleep 1; echo last",
        ],
    );
    wait_for("the first lines", || {
        e.run_ok(&["logs", "talk"]).contains("to-out")
    });
    let out = e.tupper(&["logs", "talk"]).output().unwrap();
    assert!(stdout(&out).contains("to-out"), "{}", output_text(&out));
    assert!(!stdout(&out).contains("to-err"), "{}", output_text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("to-err"));
    // -f follows until the container exits.
    let out = e.tupper(&["logs", "-f", "talk"]).output().unwrap();
    assert_success(&out, &["logs", "-f"]);
    let text = stdout(&out);
    assert!(text.contains("later") && text.contains("last"), "{text}");
    // -t and --tail.
    let text = e.run_ok(&["logs", "-t", "--tail", "1", "talk"]);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.contains("Z last"), "{text}");
    e.run_ok(&["rm", "talk"]);
    nothing_left(&e);
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn stop_gives_143_and_start_keeps_the_root() {
    let e = env();
    let _tidy = tidy(&e, &["svc"]);
    detached(
        &e,
        // PID 1 of a pid namespace ignores SIGTERM without a handler (and
        // then dies of the SIGKILL after the timeout: 137); with --init, the
        // command dies of the SIGTERM the init passes on.
        &[
            "--name",
            "svc",
            "--init",
            "busybox",
            "sh",
            "-c",
            "echo $(date) >> /kept; exec sleep 1000",
        ],
    );
    assert!(e.run_ok(&["ps"]).contains("svc"));
    let info = inspect(&e, "svc");
    assert_eq!(info["state"]["status"], "running");
    assert_eq!(info["state"]["running"], true);
    assert!(info["state"]["pid"].as_i64().unwrap() > 0);
    assert_eq!(info["config"]["tty"], false);
    assert_eq!(info["command"][0], "sh");
    e.run_ok(&["stop", "-t", "5", "svc"]);
    let info = inspect(&e, "svc");
    assert_eq!(info["state"]["status"], "exited");
    assert_eq!(info["state"]["exit_code"], 143);
    assert!(info["state"]["finished_at"].is_string());
    let ps = e.run_ok(&["ps", "-a", "--filter", "name=svc"]);
    assert!(ps.contains("Exited (143)"), "{ps}");
    assert_eq!(e.run_ok(&["wait", "svc"]).trim(), "143");
    // Started again on the same root: the file written before is still there.
    e.run_ok(&["start", "svc"]);
    assert_eq!(inspect(&e, "svc")["state"]["status"], "running");
    let out = e.run_ok(&["cp", "svc:/kept", "-"]);
    assert!(!out.is_empty());
    e.run_ok(&["kill", "-s", "KILL", "svc"]);
    assert_eq!(e.run_ok(&["wait", "svc"]).trim(), "137");
    e.run_ok(&["rm", "svc"]);
    nothing_left(&e);
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn ps_columns_never_touch() {
    let e = env();
    let _tidy = tidy(&e, &["a-rather-long-container-name"]);
    detached(
        &e,
        &[
            "--name",
            "a-rather-long-container-name",
            "--network",
            "none",
            "busybox",
            "sh",
            "-c",
            "exec sleep 1000 # a long command line indeed",
        ],
    );
    let ps = e.run_ok(&["ps"]);
    let header = ps.lines().next().unwrap();
    let row = ps
        .lines()
        .find(|l| l.contains("a-rather-long"))
        .expect("row");
    // Every column starts after at least two spaces, in the header and the row.
    for col in ["NAME", "IMAGE", "COMMAND", "STATUS", "ADDRESS"] {
        let at = header.find(col).unwrap();
        assert_eq!(&header[at - 2..at], "  ", "{ps}");
        assert_eq!(&row[at - 2..at], "  ", "{ps}");
    }
    assert!(row.contains("Up "), "{ps}");
    let json: serde_json::Value =
        serde_json::from_str(&e.run_ok(&["ps", "--format", "json"])).unwrap();
    assert_eq!(json[0]["name"], "a-rather-long-container-name");
    e.run_ok(&["rm", "-f", "a-rather-long-container-name"]);
    nothing_left(&e);
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn crash_of_the_monitor_the_init_and_lost_state() {
    let e = env();
    let _tidy = tidy(&e, &["c1", "c2", "c3"]);
    // kill -9 of the init: 137 recorded.
    detached(&e, &["--name", "c1", "busybox", "sleep", "1000"]);
    let init = inspect(&e, "c1")["state"]["pid"].as_i64().unwrap();
    // SAFETY: killing the container init this test started, by its pid.
    assert_eq!(unsafe { libc::kill(init as i32, libc::SIGKILL) }, 0);
    assert_eq!(e.run_ok(&["wait", "c1"]).trim(), "137");
    assert!(e.run_ok(&["ps", "-a"]).contains("Exited (137)"));
    e.run_ok(&["rm", "c1"]);
    nothing_left(&e);

    // kill -9 of the monitor: the container dies with it; ps says so; rm cleans.
    detached(&e, &["--name", "c2", "busybox", "sleep", "1000"]);
    let init = inspect(&e, "c2")["state"]["pid"].as_i64().unwrap();
    let monitor = monitor_pid(init);
    // SAFETY: killing the monitor this test started, by its pid.
    assert_eq!(unsafe { libc::kill(monitor, libc::SIGKILL) }, 0);
    wait_for("the init to die", || {
        !std::path::Path::new(&format!("/proc/{init}")).exists()
    });
    let ps = e.run_ok(&["ps", "-a"]);
    assert!(ps.contains("Exited (unknown)"), "{ps}");
    e.run_ok(&["rm", "c2"]);
    nothing_left(&e);

    // A reboot: the runtime state is lost; gc reclaims the root.
    detached(
        &e,
        &["--name", "c3", "--network", "none", "busybox", "true"],
    );
    assert_eq!(e.run_ok(&["wait", "c3"]).trim(), "0");
    let state = e.state_dir_of(&e.user);
    let _ = std::fs::remove_dir_all(state.join("containers"));
    assert_eq!(e.container_roots(&e.user).len(), 1);
    e.run_ok(&["gc"]);
    nothing_left(&e);
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn many_detached_containers_in_parallel() {
    let e = env();
    // The default policy allows 32 interfaces per user.
    let _policy = PolicyFile::set(&e, "[default]\ninterfaces = 64\n");
    let names: Vec<String> = (0..50).map(|i| format!("par{i}")).collect();
    let _tidy = Tidy(&e, names.clone());
    let n: usize = 50;
    let started = Instant::now();
    let children: Vec<_> = (0..n)
        .map(|i| {
            let name = format!("par{i}");
            e.tupper(&["run", "-d", "--name", &name, "busybox", "sleep", "1000"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert_success(&out, &["run", "-d"]);
    }
    eprintln!("{n} parallel run -d: {:?}", started.elapsed());
    let json: serde_json::Value =
        serde_json::from_str(&e.run_ok(&["ps", "--format", "json"])).unwrap();
    let mut addrs: Vec<String> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["network"]["address"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(addrs.len(), n);
    addrs.sort();
    addrs.dedup();
    assert_eq!(addrs.len(), n, "addresses are distinct");
    let mut args = vec!["rm", "-f"];
    args.extend(names.iter().map(String::as_str));
    e.run_ok(&args);
    assert_eq!(e.run_ok(&["ps", "-a"]).lines().count(), 1);
    nothing_left(&e);
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn hostile_another_user_cannot_reach_my_container() {
    let e = env();
    let _tidy = tidy(&e, &["mine"]);
    detached(
        &e,
        &[
            "--name",
            "mine",
            "--network",
            "none",
            "busybox",
            "sh",
            "-c",
            "echo secret-line; exec sleep 1000",
        ],
    );
    let state = e.state_dir_of(&e.user);
    let dir = std::fs::read_dir(state.join("containers"))
        .unwrap()
        .flatten()
        .map(|d| d.path())
        .find(|p| p.extension().is_some_and(|x| x == "d"))
        .expect("container directory");
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    wait_for("the log", || dir.join("ctr.log").exists());
    assert_eq!(mode(&dir.join("attach")), 0o600);
    assert_eq!(mode(&dir.join("ctr.log")), 0o600);
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&state.join("containers")), 0o700);
    // The other user has their own state: my container is not theirs.
    for args in [
        vec!["attach", "mine"],
        vec!["stop", "mine"],
        vec!["kill", "mine"],
        vec!["inspect", "mine"],
        vec!["logs", "mine"],
        vec!["rm", "-f", "mine"],
    ] {
        let out = e
            .as_user(&e.second_user, &e.supervisor().to_string_lossy())
            .args(&args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?}: {}", output_text(&out));
        assert!(!output_text(&out).contains("secret-line"));
    }
    // Nor can they open my socket or my log directly.
    let sock = dir.join("attach");
    let out = e
        .as_user(&e.second_user, "cat")
        .arg(dir.join("ctr.log"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let out = e
        .as_user(&e.second_user, "busybox")
        .args(["nc", "-U"])
        .arg(&sock)
        .output();
    if let Ok(out) = out {
        assert!(!stdout(&out).contains("secret-line"));
    }
    assert_eq!(inspect(&e, "mine")["state"]["status"], "running");
    e.run_ok(&["rm", "-f", "mine"]);
    nothing_left(&e);
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn hostile_endless_output_cannot_grow_the_log_past_the_cap() {
    let e = env();
    let _tidy = tidy(&e, &["chatty"]);
    detached(
        &e,
        &[
            "--name",
            "chatty",
            "--network",
            "none",
            "busybox",
            "sh",
            "-c",
            "yes 0123456789012345678901234567890123456789",
        ],
    );
    // The default cap is 10 MiB × 2 files: let it write well past that.
    let state = e.state_dir_of(&e.user);
    let dir = std::fs::read_dir(state.join("containers"))
        .unwrap()
        .flatten()
        .map(|d| d.path())
        .find(|p| p.extension().is_some_and(|x| x == "d"))
        .expect("container directory");
    wait_for("a rotation", || dir.join("ctr.log.1").exists());
    std::thread::sleep(Duration::from_secs(3));
    let total: u64 = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|d| d.file_name().to_string_lossy().starts_with("ctr.log"))
        .map(|d| d.metadata().unwrap().len())
        .sum();
    assert!(total <= 2 * 10 * 1024 * 1024, "{total}");
    assert!(!dir.join("ctr.log.2").exists());
    e.run_ok(&["rm", "-f", "chatty"]);
    nothing_left(&e);
}
