//! Issue 11: the uplinks whose forwarding tupper-net turned on stay
//! restricted to the bridge after an administrator's `nft flush ruleset`.
//!
//! `tests/run.sh` joins the suite's namespace (the "host") to an "outside"
//! namespace by the uplink `tuplink0` (host 192.0.2.1, outside 192.0.2.254,
//! the host's default route via it). This test adds, in the host namespace,
//! one more interface `tuoth0` (198.51.100.1/24, a static neighbour
//! 198.51.100.2 behind it) that is not the bridge: a packet the outside sends
//! to 198.51.100.2 through the host is forwarded there only if the host
//! forwards for anything arriving on the uplink. The transmit counter of
//! `tuoth0` tells (its IPv6 is off, so nothing else leaves it).

use std::process::{Command, Stdio};
use std::time::Duration;

use tupper_integration::{assert_success, Env};

const UPLINK: &str = "tuplink0";
const OTHER: &str = "tuoth0";
const OTHER_PEER: &str = "tuoth1";
const ELSEWHERE: &str = "198.51.100.2";
const ELSEWHERE_NET: &str = "198.51.100.0/24";

fn env() -> Env {
    Env::get(env!("CARGO_BIN_EXE_tupper-drive"))
}

fn outside() -> String {
    std::env::var("TUPPER_OUTSIDE_NETNS")
        .expect("TUPPER_OUTSIDE_NETNS is not set (run tests/run.sh)")
}

/// `cmd` as root in namespace `ns`; its stdout, asserting success.
fn in_ns(ns: &str, cmd: &[&str]) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", ns])
        .args(cmd)
        .stdin(Stdio::null())
        .output()
        .expect("ip netns exec");
    assert!(out.status.success(), "{ns}: {cmd:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Write `value` to the sysctl file `path` (below /proc/sys) in namespace `ns`.
fn sysctl(ns: &str, path: &str, value: &str) {
    in_ns(
        ns,
        &["sh", "-c", &format!("echo {value} > /proc/sys/{path}")],
    );
}

fn uplinks_set(e: &Env) -> String {
    in_ns(
        &e.netns,
        &["nft", "list", "set", "ip", "tupperware", "uplinks"],
    )
}

fn tx_packets(e: &Env) -> u64 {
    let path = format!("/sys/class/net/{OTHER}/statistics/tx_packets");
    // /sys as the host namespace sees it: read through the namespace's own.
    in_ns(&e.netns, &["cat", &path])
        .trim()
        .parse()
        .expect("a packet count")
}

/// Packets the outside sends to ELSEWHERE through the host that the host
/// forwarded out of `tuoth0`.
fn forwarded_elsewhere(e: &Env) -> u64 {
    let before = tx_packets(e);
    // No reply ever comes (no one answers behind tuoth0): the status is not looked at.
    let _ = Command::new("ip")
        .args(["netns", "exec", &outside()])
        .args([
            "timeout", "5", "busybox", "ping", "-q", "-c", "3", "-W", "1", ELSEWHERE,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    std::thread::sleep(Duration::from_millis(200));
    tx_packets(e) - before
}

/// The extra interface and the outside's route to it, removed when dropped.
struct Elsewhere<'a>(&'a Env);

impl Drop for Elsewhere<'_> {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["-n", &self.0.netns, "link", "del", OTHER])
            .status();
        let _ = Command::new("ip")
            .args(["-n", &outside(), "route", "del", ELSEWHERE_NET])
            .status();
    }
}

fn elsewhere(e: &Env) -> Elsewhere<'_> {
    let ns = e.netns.as_str();
    let _ = Command::new("ip")
        .args(["-n", ns, "link", "del", OTHER])
        .stderr(Stdio::null())
        .status();
    let guard = Elsewhere(e);
    in_ns(
        ns,
        &[
            "ip", "link", "add", OTHER, "type", "veth", "peer", "name", OTHER_PEER,
        ],
    );
    for i in [OTHER, OTHER_PEER] {
        sysctl(ns, &format!("net/ipv6/conf/{i}/disable_ipv6"), "1");
    }
    in_ns(ns, &["ip", "addr", "add", "198.51.100.1/24", "dev", OTHER]);
    in_ns(
        ns,
        &[
            "ip",
            "neigh",
            "replace",
            ELSEWHERE,
            "lladdr",
            "02:00:00:00:00:02",
            "dev",
            OTHER,
            "nud",
            "permanent",
        ],
    );
    in_ns(ns, &["ip", "link", "set", OTHER_PEER, "up"]);
    in_ns(ns, &["ip", "link", "set", OTHER, "up"]);
    in_ns(
        &outside(),
        &["ip", "route", "replace", ELSEWHERE_NET, "via", "192.0.2.1"],
    );
    guard
}

fn run_on_the_bridge(e: &Env) {
    let args = ["run", "--rm", "--network", "bridge", "busybox", "true"];
    let out = e.tupper(&args).output().expect("spawn supervisor");
    assert_success(&out, &args);
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn uplinks_hostile_after_nft_flush_ruleset_the_uplink_forwards_only_for_the_bridge() {
    let e = env();
    let ns = e.netns.clone();
    let _elsewhere = elsewhere(&e);
    // The uplink as a host has it before tupperware: forwarding off.
    sysctl(&ns, &format!("net/ipv4/conf/{UPLINK}/forwarding"), "0");
    run_on_the_bridge(&e);
    let forwarding = format!("/proc/sys/net/ipv4/conf/{UPLINK}/forwarding");
    assert_eq!(in_ns(&ns, &["cat", &forwarding]).trim(), "1");
    let set = uplinks_set(&e);
    assert!(set.contains(&format!("\"{UPLINK}\"")), "{set}");
    assert_eq!(
        forwarded_elsewhere(&e),
        0,
        "forwarded with the table in place"
    );

    // The administrator flushes the ruleset: until the next attach the
    // uplink forwards for anything (the probe sees it: it can tell).
    in_ns(&ns, &["nft", "flush", "ruleset"]);
    assert!(
        forwarded_elsewhere(&e) > 0,
        "the probe saw nothing forwarded with no table at all"
    );

    // The next run on the bridge puts the uplink back into the set.
    run_on_the_bridge(&e);
    let set = uplinks_set(&e);
    assert!(
        set.contains(&format!("\"{UPLINK}\"")),
        "the uplink is missing from the set after a flush: {set}"
    );
    assert_eq!(
        forwarded_elsewhere(&e),
        0,
        "the host forwards what arrives on the uplink for something other than the bridge"
    );
    // Outbound still works for the containers (the uplink's forwarding is on).
    assert_eq!(in_ns(&ns, &["cat", &forwarding]).trim(), "1");
}
