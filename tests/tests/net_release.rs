//! Issue 11: the release without the kernel's synchronous wait. A released
//! container's host end goes with its network namespace, asynchronously;
//! `tupper-net` leaves it to the kernel (a tombstone in `<state>/dying`), and
//! the sweep of every attach and release deletes what no lease names: an end
//! someone keeps alive past the grace period, or one a crash left. Host names
//! are fresh per lease, so an address can be leased again at once.
//!
//! "Nothing left" is checked with a bounded wait (`Env::veths`): the kernel
//! removes a released end some milliseconds after the container's last
//! process is gone.

use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tupper_integration::{assert_success, inet_address, output_text, read_until, Env};

/// The tests of this file look at the whole bridge: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn env() -> Env {
    Env::get(env!("CARGO_BIN_EXE_tupper-drive"))
}

const GATEWAY: &str = "10.88.0.1";
/// `tupper-net`'s grace period for a released end (`sweep::GRACE`).
const GRACE: Duration = Duration::from_secs(5);

fn tupper_as(e: &Env, user: &str, args: &[&str]) -> Output {
    let mut c = e.as_user(user, &e.supervisor().to_string_lossy());
    c.args(args);
    c.output().expect("spawn supervisor")
}

/// The port chains of the bridge filter (`bridge tupperware`).
fn port_chains(e: &Env) -> Vec<String> {
    let out = Command::new("ip")
        .args(["netns", "exec", &e.netns, "nft", "list", "table", "bridge"])
        .arg("tupperware")
        .output()
        .expect("nft");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("chain port-"))
        .map(|l| l.trim_end_matches(" {").to_string())
        .collect()
}

fn published_rules(e: &Env) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", &e.netns, "nft", "list", "table", "ip"])
        .arg("tupperware")
        .output()
        .expect("nft");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Records of `uid` among the lease records.
fn leases_of(e: &Env, user: &str) -> Vec<String> {
    let uid = e.uid(user);
    e.lease_records()
        .into_iter()
        .map(|(_, r)| r)
        .filter(|r| r.contains(&format!("\"uid\": {uid},")))
        .collect()
}

fn host_interface_of(record: &str) -> String {
    let rest = record.split("\"host_interface\"").nth(1).expect("field");
    rest.split('"').nth(1).expect("value").to_string()
}

/// No veth (once the kernel is done), no lease, no port chain, no published rule.
fn nothing_left(e: &Env) {
    let veths = e.veths();
    assert!(veths.is_empty(), "veths left: {veths:?}");
    assert!(
        e.lease_records().is_empty(),
        "leases left: {:?}",
        e.lease_records()
    );
    assert!(port_chains(e).is_empty(), "{:?}", port_chains(e));
    assert!(
        !published_rules(e).contains("pub-"),
        "{}",
        published_rules(e)
    );
}

fn bridge_run(e: &Env, user: &str, script: &str) -> Output {
    tupper_as(
        e,
        user,
        &[
            "run",
            "--rm",
            "--network",
            "bridge",
            "busybox",
            "sh",
            "-c",
            script,
        ],
    )
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn net_release_back_to_back_runs_reuse_addresses_at_once() {
    let _one = serial();
    let e = env();
    // Two runs in a row get the same (lowest free) address, while the first
    // one's host end may still be dying.
    let first = bridge_run(&e, &e.user, "ip -4 addr show eth0");
    assert_success(&first, &["first run"]);
    let second = bridge_run(&e, &e.user, "ip -4 addr show eth0");
    assert_success(&second, &["second run"]);
    let a1 = inet_address(&output_text(&first)).expect("an address");
    let a2 = inet_address(&output_text(&second)).expect("an address");
    assert_eq!(a1, a2, "the released address is leased again at once");
    let started = Instant::now();
    for i in 0..50 {
        let out = tupper_as(
            &e,
            &e.user,
            &["run", "--rm", "--network", "bridge", "busybox", "true"],
        );
        assert_success(&out, &["run", &i.to_string()]);
    }
    eprintln!("50 runs on the bridge: {:?}", started.elapsed());
    // Right after them: same address, and the gateway answers it.
    let out = bridge_run(
        &e,
        &e.user,
        &format!("ip -4 addr show eth0; ping -c1 -W3 {GATEWAY}"),
    );
    assert_success(&out, &["run after 50"]);
    let text = output_text(&out);
    assert_eq!(inet_address(&text).as_deref(), Some(a1.as_str()), "{text}");
    assert!(text.contains("1 packets received"), "{text}");
    nothing_left(&e);
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn net_release_killed_monitor_and_gc_leave_nothing() {
    let _one = serial();
    let e = env();
    let out = tupper_as(
        &e,
        &e.user,
        &[
            "run",
            "-d",
            "--name",
            "rel-crash",
            "-p",
            "8097:80",
            "busybox",
            "sleep",
            "60",
        ],
    );
    assert_success(&out, &["run -d rel-crash"]);
    let mine = leases_of(&e, &e.user);
    assert_eq!(mine.len(), 1, "{mine:?}");
    let port = host_interface_of(&mine[0]);
    assert!(e.veths_now().contains(&port));
    assert!(port_chains(&e).contains(&port), "{:?}", port_chains(&e));
    let rec = e.run_ok(&["inspect", "rel-crash"]);
    let v: serde_json::Value = serde_json::from_str(&rec).unwrap();
    let init = v[0]["state"]["pid"].as_u64().expect("init pid") as i32;
    let stat = std::fs::read_to_string(format!("/proc/{init}/stat")).unwrap();
    let after = stat.rsplit_once(')').unwrap().1;
    let monitor: i32 = after.split_whitespace().nth(1).unwrap().parse().unwrap();
    // SAFETY: the monitor of a container this test started.
    assert_eq!(unsafe { libc::kill(monitor, libc::SIGKILL) }, 0);
    std::thread::sleep(Duration::from_millis(300));
    // Killed with it: nothing released yet.
    assert_eq!(leases_of(&e, &e.user).len(), 1);
    assert_success(&e.tupper(&["gc"]).output().unwrap(), &["gc"]);
    let _ = e.tupper(&["rm", "-f", "rel-crash"]).output();
    nothing_left(&e);
}

/// A container of `user` on the bridge that runs until killed.
struct Victim<'a> {
    e: &'a Env,
    user: String,
    name: String,
    child: Child,
}

impl<'a> Victim<'a> {
    fn start(e: &'a Env, user: &str, name: &str) -> Victim<'a> {
        let mut c = e.as_user(user, &e.supervisor().to_string_lossy());
        c.args(["run", "--rm", "--name", name, "busybox", "sh", "-c"])
            .arg("echo ready; exec sleep 120")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().expect("spawn");
        read_until(&mut child, "ready");
        Victim {
            e,
            user: user.to_string(),
            name: name.to_string(),
            child,
        }
    }
}

impl Drop for Victim<'_> {
    fn drop(&mut self) {
        let _ = tupper_as(self.e, &self.user, &["rm", "-f", &self.name]);
        let _ = self.child.wait();
    }
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn hostile_net_release_sweep_and_gc_never_take_another_users_interface() {
    let _one = serial();
    let e = env();
    let victim = Victim::start(&e, &e.second_user, "rel-victim");
    let theirs = leases_of(&e, &e.second_user);
    assert_eq!(theirs.len(), 1, "{theirs:?}");
    let port = host_interface_of(&theirs[0]);
    // The attacker: a container of the same name (attach, release), runs that
    // sweep, a released end of their own left to the kernel, and `gc`.
    let out = tupper_as(
        &e,
        &e.user,
        &[
            "run",
            "-d",
            "--name",
            "rel-victim",
            "busybox",
            "sleep",
            "60",
        ],
    );
    assert_success(&out, &["the attacker's rel-victim"]);
    assert_success(
        &tupper_as(&e, &e.user, &["rm", "-f", "rel-victim"]),
        &["rm"],
    );
    for _ in 0..3 {
        assert_success(&bridge_run(&e, &e.user, "true"), &["attacker run"]);
    }
    assert_success(&e.tupper(&["gc"]).output().unwrap(), &["gc"]);
    // Past the grace period, once more: a sweep deletes old tombstoned ends.
    std::thread::sleep(GRACE + Duration::from_millis(500));
    assert_success(&bridge_run(&e, &e.user, "true"), &["attacker run"]);
    assert_success(&e.tupper(&["gc"]).output().unwrap(), &["gc"]);
    // The victim's port, lease and filter are all there, and it still works.
    assert!(e.veths_now().contains(&port), "{:?}", e.veths_now());
    assert_eq!(leases_of(&e, &e.second_user), theirs);
    assert!(port_chains(&e).contains(&port), "{:?}", port_chains(&e));
    let ping = tupper_as(
        &e,
        &e.second_user,
        &["exec", "rel-victim", "ping", "-c1", "-W3", GATEWAY],
    );
    assert!(
        output_text(&ping).contains("1 packets received"),
        "{}",
        output_text(&ping)
    );
    drop(victim);
    nothing_left(&e);
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn hostile_net_release_a_kept_namespace_keeps_no_bridge_port() {
    let _one = serial();
    let e = env();
    // A container whose network namespace someone keeps after it ends (here
    // root's `nsenter`; its user can too, with a namespace file descriptor
    // passed out through a volume's socket).
    let victim = Victim::start(&e, &e.user, "rel-kept");
    let mine = leases_of(&e, &e.user);
    assert_eq!(mine.len(), 1, "{mine:?}");
    let port = host_interface_of(&mine[0]);
    let rec = e.run_ok(&["inspect", "rel-kept"]);
    let v: serde_json::Value = serde_json::from_str(&rec).unwrap();
    let init = v[0]["state"]["pid"].as_u64().expect("init pid").to_string();
    let mut keeper = Command::new("nsenter");
    keeper
        .args(["-t", &init, "-n", "--", "sleep", "60"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut keeper = keeper.spawn().expect("nsenter");
    std::thread::sleep(Duration::from_millis(500));
    assert!(keeper.try_wait().unwrap().is_none(), "nsenter ended early");
    drop(victim);
    // Released: no lease, no filter; the end lingers while the keeper lives.
    assert!(leases_of(&e, &e.user).is_empty());
    assert!(!port_chains(&e).contains(&port), "{:?}", port_chains(&e));
    std::thread::sleep(GRACE + Duration::from_millis(500));
    // The next attach sweeps it, though the namespace is still kept.
    assert_success(&bridge_run(&e, &e.user, "true"), &["a later run"]);
    let deadline = Instant::now() + Duration::from_secs(3);
    while e.veths_now().contains(&port) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let still = e.veths_now().contains(&port);
    // SAFETY: the nsenter this test started, by pid.
    unsafe { libc::kill(keeper.id() as i32, libc::SIGKILL) };
    let _ = keeper.wait();
    assert!(!still, "the kept end {port} is still on the bridge");
    nothing_left(&e);
}
