//! Hostile containers on the bridge: one user's container forges ARP, spoofs
//! its MAC and sends IPv6 Router Advertisements; another user's container, the
//! gateway and the suite's network namespace must not notice. The forged
//! frames come from `tupper-l2`, run as root inside the attacker container's
//! network namespace: exactly what code there with CAP_NET_RAW can send.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use tupper_integration::{inet_address, read_until, Env};

const GATEWAY: &str = "10.88.0.1";

fn env() -> Env {
    Env::get(env!("CARGO_BIN_EXE_tupper-drive"))
}

fn text(out: &Output) -> String {
    tupper_integration::output_text(out)
}

/// A running container of `user`, sleeping with a marker we can find it by.
/// Removed when dropped, also when a test fails half-way.
struct Container {
    rm: Command,
    child: Child,
    pid: i32,
    address: String,
    mac: String,
}

/// The host pid whose command line is exactly `sleep MARKER`.
fn find_sleeper(marker: &str) -> Option<i32> {
    let want = format!("sleep\0{marker}\0");
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|d| {
        let pid: i32 = d.file_name().to_str()?.parse().ok()?;
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        (cmd == want.as_bytes()).then_some(pid)
    })
}

fn link_mac(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.trim().strip_prefix("link/ether "))
        .and_then(|r| r.split_whitespace().next())
        .map(str::to_string)
}

fn start(e: &Env, user: &str, name: &str, marker: &str) -> Container {
    let mut c = e.as_user(user, &e.supervisor().to_string_lossy());
    let script =
        format!("ip -4 addr show eth0; ip link show eth0; echo ready; exec sleep {marker}");
    c.args([
        "run", "--rm", "--name", name, "busybox", "sh", "-c", &script,
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = c.spawn().expect("spawn supervisor");
    let lines = read_until(&mut child, "ready").concat();
    let address = inet_address(&lines).unwrap_or_else(|| panic!("no address: {lines}"));
    let mac = link_mac(&lines).unwrap_or_else(|| panic!("no MAC: {lines}"));
    let deadline = Instant::now() + Duration::from_secs(10);
    let pid = loop {
        if let Some(p) = find_sleeper(marker) {
            break p;
        }
        assert!(Instant::now() < deadline, "container {name} not found");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut rm = e.as_user(user, &e.supervisor().to_string_lossy());
    rm.args(["rm", "-f", name]);
    Container {
        rm,
        child,
        pid,
        address,
        mac,
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = self.rm.output();
        let _ = self.child.wait();
    }
}

fn stop(_e: &Env, c: Container) {
    drop(c);
}

/// `tupper-l2 ARGS` as root (the built binary; root reads the build tree).
fn l2(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_tupper-l2"))
        .args(args)
        .output()
        .expect("run tupper-l2");
    assert!(out.status.success(), "tupper-l2 {args:?}: {}", text(&out));
    out
}

/// A command in the network namespace of `pid` (root's own binaries).
fn in_container(pid: i32, args: &[&str]) -> Output {
    Command::new("nsenter")
        .args(["-t", &pid.to_string(), "-n", "--"])
        .args(args)
        .output()
        .expect("nsenter")
}

fn in_netns(e: &Env, args: &[&str]) -> Output {
    Command::new("ip")
        .args(["netns", "exec", &e.netns])
        .args(args)
        .output()
        .expect("ip netns exec")
}

fn host_pings(e: &Env, address: &str) -> bool {
    in_netns(e, &["ping", "-c1", "-W2", address])
        .status
        .success()
}

fn neigh_mac(out: &Output) -> Option<String> {
    let t = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut words = t.split_whitespace();
    words.find(|w| *w == "lladdr")?;
    words.next().map(str::to_string)
}

fn bridge_mac(e: &Env) -> String {
    let out = Command::new("ip")
        .args(["-n", &e.netns, "link", "show", &e.bridge])
        .output()
        .expect("ip link");
    link_mac(&text(&out)).expect("bridge MAC")
}

fn nft_table(e: &Env) -> String {
    text(&in_netns(
        e,
        &["nft", "list", "table", "bridge", "tupperware"],
    ))
}

/// `02:42:` + the address bytes.
fn expected_mac(address: &str) -> String {
    let o: Vec<u8> = address.split('.').map(|x| x.parse().unwrap()).collect();
    format!("02:42:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3])
}

/// Which bridge port `mac` was learned on, from `bridge fdb`.
fn fdb_port(e: &Env, mac: &str) -> Option<String> {
    let out = Command::new("bridge")
        .args(["-n", &e.netns, "fdb", "show", "br", &e.bridge])
        .output()
        .expect("bridge fdb");
    let t = String::from_utf8_lossy(&out.stdout).into_owned();
    t.lines().find(|l| l.starts_with(mac)).and_then(|l| {
        let mut w = l.split_whitespace();
        w.find(|x| *x == "dev")?;
        w.next().map(str::to_string)
    })
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn l2_forged_arp_cannot_take_over_a_neighbour_or_the_gateway() {
    let e = env();
    let victim = start(&e, &e.user, "hb-victim", "3011");
    let attacker = start(&e, &e.second_user, "hb-attacker", "3012");
    // Deterministic MACs, which the filters know.
    assert_eq!(victim.mac, expected_mac(&victim.address));
    assert_eq!(attacker.mac, expected_mac(&attacker.address));
    // Both sides learn each other for real first.
    assert!(host_pings(&e, &victim.address));
    let gw = in_container(victim.pid, &["ping", "-c1", "-W2", GATEWAY]);
    assert!(gw.status.success(), "{}", text(&gw));
    let bridge = bridge_mac(&e);
    // Past the neighbour lock time, so that an unfiltered claim would win.
    std::thread::sleep(Duration::from_millis(1500));
    for claimed in [victim.address.as_str(), GATEWAY] {
        for op in ["reply", "request"] {
            l2(&[
                "send-arp",
                &attacker.pid.to_string(),
                "self",
                "self",
                claimed,
                claimed,
                op,
                "3",
            ]);
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    let host_view = Command::new("ip")
        .args(["-n", &e.netns, "neigh", "show", &victim.address])
        .output()
        .expect("ip neigh");
    assert_eq!(
        neigh_mac(&host_view).as_deref(),
        Some(victim.mac.as_str()),
        "the host's neighbour entry for the victim: {}",
        text(&host_view)
    );
    let victim_view = in_container(victim.pid, &["ip", "neigh", "show", GATEWAY]);
    assert_eq!(
        neigh_mac(&victim_view).as_deref(),
        Some(bridge.as_str()),
        "the victim's neighbour entry for the gateway: {}",
        text(&victim_view)
    );
    assert!(
        host_pings(&e, &victim.address),
        "the victim no longer answers"
    );
    // The attacker's own, honest traffic still flows.
    let own = in_container(attacker.pid, &["ping", "-c1", "-W2", GATEWAY]);
    assert!(own.status.success(), "{}", text(&own));
    // The port chains are in place.
    let table = nft_table(&e);
    let ports = e.veths();
    assert_eq!(ports.len(), 2, "{ports:?}");
    for p in &ports {
        assert!(
            table.contains(&format!("chain port-{p} {{")),
            "{p}: {table}"
        );
    }
    assert!(
        table.contains(&format!("ether saddr != {} drop", victim.mac)),
        "{table}"
    );
    assert!(
        table.contains(&format!("arp saddr ip != {} drop", attacker.address)),
        "{table}"
    );
    stop(&e, attacker);
    stop(&e, victim);
    let table = nft_table(&e);
    assert!(!table.contains("chain port-"), "port chains left: {table}");
    assert!(e.veths().is_empty(), "{:?}", e.veths());
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn l2_a_spoofed_source_mac_cannot_steal_a_neighbours_traffic() {
    let e = env();
    let victim = start(&e, &e.user, "hb-victim2", "3021");
    let attacker = start(&e, &e.second_user, "hb-attacker2", "3022");
    assert!(host_pings(&e, &victim.address));
    let ports = e.veths();
    let victim_port = fdb_port(&e, &victim.mac).expect("victim MAC learned");
    assert!(ports.contains(&victim_port), "{victim_port} {ports:?}");
    std::thread::sleep(Duration::from_millis(1500));
    // As if the attacker had run `ip link set eth0 address VICTIM_MAC` and announced the address.
    l2(&[
        "send-arp",
        &attacker.pid.to_string(),
        &victim.mac,
        &victim.mac,
        &victim.address,
        &victim.address,
        "reply",
        "5",
    ]);
    assert_eq!(
        fdb_port(&e, &victim.mac).as_deref(),
        Some(victim_port.as_str()),
        "the bridge learned the victim's MAC elsewhere"
    );
    assert!(
        host_pings(&e, &victim.address),
        "the victim no longer answers"
    );
    stop(&e, attacker);
    stop(&e, victim);
    assert!(!nft_table(&e).contains("chain port-"));
}

fn sysctl(e: &Env, interface: &str, key: &str) -> String {
    let path = format!("/proc/sys/net/ipv6/conf/{interface}/{key}");
    text(&in_netns(e, &["cat", &path])).trim().to_string()
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn l2_router_advertisements_from_a_container_never_reach_the_host() {
    let e = env();
    let attacker = start(&e, &e.second_user, "hb-router", "3031");
    let port = e.veths().pop().expect("the attacker's port");
    // The bridge and the host end take no IPv6 at all.
    for interface in [e.bridge.as_str(), port.as_str()] {
        assert_eq!(sysctl(&e, interface, "disable_ipv6"), "1", "{interface}");
        assert_eq!(sysctl(&e, interface, "accept_ra"), "0", "{interface}");
        assert_eq!(sysctl(&e, interface, "autoconf"), "0", "{interface}");
    }
    // Watch the bridge while the attacker advertises itself as a router.
    let mut sniffer = Command::new("ip")
        .args(["netns", "exec", &e.netns])
        .arg(env!("CARGO_BIN_EXE_tupper-l2"))
        .args(["sniff-ra", &e.bridge, "4"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the sniffer");
    let mut out = BufReader::new(sniffer.stdout.take().expect("piped"));
    let mut line = String::new();
    out.read_line(&mut line).expect("sniffer output");
    assert_eq!(line.trim(), "listening");
    l2(&["send-ra", &attacker.pid.to_string(), "5"]);
    line.clear();
    out.read_line(&mut line).expect("sniffer result");
    let _ = sniffer.wait();
    assert_eq!(
        line.trim(),
        "router advertisements: 0",
        "seen on {}",
        e.bridge
    );
    let routes = Command::new("ip")
        .args(["-n", &e.netns, "-6", "route", "show"])
        .output()
        .expect("ip -6 route");
    let routes = text(&routes);
    assert!(
        !routes.contains(&e.bridge),
        "IPv6 routes via the bridge: {routes}"
    );
    assert!(
        !routes.contains("default"),
        "an IPv6 default route: {routes}"
    );
    stop(&e, attacker);
    assert!(!nft_table(&e).contains("chain port-"));
}
