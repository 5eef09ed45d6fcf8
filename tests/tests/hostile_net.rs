//! Hostile callers of `tupper-net` (security issue #5, findings 3 and 4):
//! namespaces that are not tupperware containers, more interfaces than the
//! policy allows, and a stopped helper holding lease locks.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use tupper_integration::{assert_success, inet_address, read_until, tidy, Env, PolicyFile};

fn env() -> Env {
    Env::get(env!("CARGO_BIN_EXE_tupper-drive"))
}

fn text(out: &Output) -> String {
    tupper_integration::output_text(out)
}

/// Lease records of `user` (address, JSON).
fn records_of(e: &Env, user: &str) -> Vec<(std::net::Ipv4Addr, String)> {
    let uid = e.uid(user);
    e.lease_records()
        .into_iter()
        .filter(|(_, r)| r.contains(&format!("\"uid\": {uid},")))
        .collect()
}

fn nothing_left(e: &Env) {
    assert!(e.veths().is_empty(), "veths left: {:?}", e.veths());
    assert!(
        records_of(e, &e.user).is_empty() && records_of(e, &e.norange_user).is_empty(),
        "leases left: {:?}",
        e.lease_records()
    );
    assert!(
        e.container_roots(&e.user).is_empty(),
        "container roots left: {:?}",
        e.container_roots(&e.user)
    );
}

/// A supervisor this test started: waited for with [`Supervisor::finish`]
/// once the test ended its container; if the test fails first, killed by pid,
/// its container (which its monitor keeps running) removed with `rm -f`, and
/// the user's leftovers collected.
struct Supervisor<'a> {
    e: &'a Env,
    child: Option<Child>,
    name: String,
}

impl<'a> Supervisor<'a> {
    fn new(e: &'a Env, child: Child, name: &str) -> Self {
        Supervisor {
            e,
            child: Some(child),
            name: name.to_string(),
        }
    }

    fn finish(mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
    }
}

impl Drop for Supervisor<'_> {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: ending the process this test started (not yet reaped), by its pid.
            unsafe { libc::kill(c.id() as i32, libc::SIGKILL) };
            let _ = c.wait();
            let _ = self.e.tupper(&["rm", "-f", &self.name]).output();
            let _ = self.e.tupper(&["gc"]).output();
        }
    }
}

/// A process of `user`, in the test netns, running `unshare ARGS sleep 60`;
/// ended by pid when dropped.
struct Unshared {
    child: Child,
}

impl Unshared {
    fn start(e: &Env, user: &str, flags: &str) -> Unshared {
        let mut c = e.as_user(user, "/usr/bin/unshare");
        c.args([flags, "sleep", "60"]);
        let child = c.spawn().expect("spawn unshare");
        // `ip netns exec` execs setpriv, which execs unshare, which execs
        // sleep: one pid, in its new namespaces once it is `sleep`.
        let pid = child.id();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default() != "sleep\n"
        {
            assert!(Instant::now() < deadline, "unshare {flags} never ran sleep");
            std::thread::sleep(Duration::from_millis(20));
        }
        Unshared { child }
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }
}

impl Drop for Unshared {
    fn drop(&mut self) {
        // SAFETY: ending the process this test started, by its pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

fn assert_refused(e: &Env, user: &str, pid: &str, id: &str) {
    let out = e.drive(user, &["net-attach", pid, id]);
    let t = text(&out);
    assert!(!out.status.success(), "{user}: pid {pid} accepted: {t}");
    assert!(
        t.contains(&format!(
            "error: PermissionDenied: pid {pid} is not a container of yours"
        )),
        "{user}: pid {pid}: {t}"
    );
    assert!(
        e.veths().is_empty(),
        "a refused attach left {:?}",
        e.veths()
    );
    assert!(
        records_of(e, user).is_empty(),
        "a refused attach left a lease: {:?}",
        e.lease_records()
    );
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn a_bare_user_namespace_without_subordinate_ids_is_refused() {
    let e = env();
    // What filled the bridge: no subordinate ids, no store, no container.
    // With a mount namespace of its own too, only its root gives it away.
    for flags in ["-Urn", "-Urnm"] {
        let sleeper = Unshared::start(&e, &e.norange_user, flags);
        assert_refused(
            &e,
            &e.norange_user,
            &sleeper.pid(),
            "0123456789abcdef0123456789abcdef",
        );
    }
    nothing_left(&e);
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn a_namespace_that_is_not_a_tupperware_container_is_refused() {
    let e = env();
    // A real container root of the caller exists in the store: the id is
    // right, the process is not that container.
    let _tidy = tidy(&e, &["stopped-one"]);
    e.run_ok(&[
        "run",
        "--name",
        "stopped-one",
        "--network",
        "none",
        "busybox",
        "true",
    ]);
    let roots = e.container_roots(&e.user);
    assert_eq!(roots.len(), 1, "{roots:?}");
    let id = roots[0].clone();
    for flags in ["-Urn", "-Urnm", "-Urnmp"] {
        let sleeper = Unshared::start(&e, &e.user, flags);
        assert_refused(&e, &e.user, &sleeper.pid(), &id);
        // A valid id of no container at all.
        assert_refused(
            &e,
            &e.user,
            &sleeper.pid(),
            "0123456789abcdef0123456789abcdef",
        );
    }
    // A running container of the caller, named with another of their ids
    // (here: the stopped container's), is refused too.
    let running = start_running(&e, "other-one", "none");
    let init = container_init_of(&e, "other-one").expect("the container's init");
    assert_refused(&e, &e.user, &init.to_string(), &id);
    e.run_ok(&["rm", "-f", "other-one", "stopped-one"]);
    running.finish();
    nothing_left(&e);
}

/// The process that runs the container (the init, its monitor's child), as
/// `inspect` reports it.
fn container_init_of(e: &Env, name: &str) -> Option<u32> {
    let text = e.run_ok(&["inspect", name]);
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v[0]["state"]["pid"].as_u64().map(|p| p as u32)
}

/// A container running until ended (`network`: bridge or none).
fn start_running<'a>(e: &'a Env, name: &str, network: &str) -> Supervisor<'a> {
    let mut c = e.spawn(&[
        "run",
        "--rm",
        "--name",
        name,
        "--network",
        network,
        "busybox",
        "sh",
        "-c",
        "ip -4 addr show eth0; echo ready; sleep 60",
    ]);
    read_until(&mut c, "ready");
    Supervisor::new(e, c, name)
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn the_policy_limits_interfaces_per_user() {
    let e = env();
    let _policy = PolicyFile::set(
        &e,
        &format!(
            "[default]\ninterfaces = 32\n\n[users.{}]\ninterfaces = 2\n",
            e.user
        ),
    );
    let first = start_running(&e, "limit-one", "bridge");
    let second = start_running(&e, "limit-two", "bridge");
    assert_eq!(records_of(&e, &e.user).len(), 2);
    let out = e
        .tupper(&["run", "--rm", "busybox", "echo", "third"])
        .output()
        .unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(125), "{t}");
    assert!(
        t.contains("you have 2 interfaces on the bridge already (limit 2 set by ")
            && t.contains("policy.toml [users.")
            && t.contains("ask an administrator to raise it"),
        "{t}"
    );
    assert!(!t.contains("third"), "{t}");
    // Nothing of the refused one is left; the first two keep working.
    assert_eq!(e.veths().len(), 2, "{:?}", e.veths());
    assert_eq!(records_of(&e, &e.user).len(), 2);
    assert_eq!(e.container_roots(&e.user).len(), 2);
    let ps = e.run_ok(&["ps"]);
    for name in ["limit-one", "limit-two"] {
        let row = ps.lines().find(|l| l.contains(name)).unwrap_or("");
        assert!(row.contains("Up") && row.contains("10.88."), "{ps}");
    }
    // With one gone, there is room for another.
    e.run_ok(&["rm", "-f", "limit-two"]);
    second.finish();
    assert_eq!(
        e.run_ok(&["run", "--rm", "busybox", "echo", "fits"]),
        "fits\n"
    );
    e.run_ok(&["rm", "-f", "limit-one"]);
    first.finish();
    nothing_left(&e);
}

/// A process (started by the test, as root) that holds `flock`s on lock
/// files of the state directory and is stopped: what a caller who SIGSTOPs
/// their own `tupper-net` leaves behind. Ended by pid when dropped.
struct StoppedHolder {
    child: Child,
}

impl StoppedHolder {
    fn hold(files: &[PathBuf]) -> StoppedHolder {
        let mut script = String::new();
        for (i, f) in files.iter().enumerate() {
            let fd = 10 + i;
            script.push_str(&format!(
                "exec {fd}>>'{}' && flock -x {fd} && ",
                f.display()
            ));
        }
        script.push_str("echo locked && kill -STOP $$");
        let mut child = Command::new("bash")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn the lock holder");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped"))
            .read_line(&mut line)
            .expect("read the lock holder");
        assert_eq!(line, "locked\n");
        let pid = child.id();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            if stat.rsplit(") ").next().is_some_and(|s| s.starts_with('T')) {
                break;
            }
            assert!(Instant::now() < deadline, "the lock holder did not stop");
            std::thread::sleep(Duration::from_millis(10));
        }
        StoppedHolder { child }
    }
}

impl Drop for StoppedHolder {
    fn drop(&mut self) {
        // SAFETY: ending the process this test started, by its pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// The lock files a stopped helper holds: the address it works on, and the
/// single global lock of the previous lease store (`net.lock`), so the test
/// means the same against either design.
fn locks_of(e: &Env, address: std::net::Ipv4Addr) -> Vec<PathBuf> {
    let leases = e.state_dir.join("leases");
    if !leases.exists() {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&leases)
            .expect("create the lease directory");
    }
    vec![
        e.state_dir.join("net.lock"),
        leases.join(format!("{address}.lock")),
    ]
}

/// Wait at most `limit` for `child`; kill it (by pid) if it takes longer.
fn wait_within(mut child: Child, limit: Duration) -> Option<Output> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if child.try_wait().expect("try_wait").is_some() {
            return Some(child.wait_with_output().expect("output"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: ending the process this test started, by its pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    let _ = child.wait();
    None
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn a_stopped_helper_does_not_hang_another_users_run() {
    let e = env();
    assert!(e.lease_records().is_empty(), "{:?}", e.lease_records());
    let lowest: std::net::Ipv4Addr = "10.88.0.2".parse().unwrap();
    let holder = StoppedHolder::hold(&locks_of(&e, lowest));
    let start = Instant::now();
    let run = e.spawn(&["run", "--rm", "busybox", "ip", "-4", "addr", "show", "eth0"]);
    let out = wait_within(run, Duration::from_secs(20))
        .expect("a bridged run hung behind a stopped helper's lock");
    assert_success(&out, &["run"]);
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "took {:?}",
        start.elapsed()
    );
    // The held address was skipped, not taken.
    let got = inet_address(&String::from_utf8_lossy(&out.stdout));
    assert!(got.as_deref().is_some_and(|a| a != "10.88.0.2"), "{got:?}");
    drop(holder);
    nothing_left(&e);
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn a_release_blocked_by_a_stopped_helper_fails_cleanly_in_time() {
    let e = env();
    let c = start_running(&e, "held-lease", "bridge");
    let records = records_of(&e, &e.user);
    assert_eq!(records.len(), 1, "{records:?}");
    let (address, record) = records[0].clone();
    let id = record
        .split("\"container\": \"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("container id in the record")
        .to_string();
    let holder = StoppedHolder::hold(&locks_of(&e, address));
    let start = Instant::now();
    let mut release = e.as_user(&e.user, &e.driver.to_string_lossy());
    release
        .arg(e.libexec())
        .args(["net-release", &id])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = wait_within(
        release.spawn().expect("spawn driver"),
        Duration::from_secs(20),
    )
    .expect("a release hung behind a stopped helper's lock");
    let elapsed = start.elapsed();
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(
        t.contains(&format!(
            "error: Exhausted: the lease of container {id} is busy: another tupper-net \
             has held its lock for 3s; try again later"
        )),
        "{t}"
    );
    assert!(
        elapsed >= Duration::from_secs(2) && elapsed < Duration::from_secs(10),
        "{elapsed:?}"
    );
    // Nothing was lost: the lease and the interface are still there.
    assert_eq!(records_of(&e, &e.user), records);
    assert_eq!(e.veths().len(), 1);
    // Once the holder is gone, the container ends and releases normally.
    drop(holder);
    e.run_ok(&["rm", "-f", "held-lease"]);
    c.finish();
    nothing_left(&e);
}
