//! Issue 11: outbound access (masquerade), published ports that keep the
//! client's address, hairpin, and the hostile cases of publishing: a port
//! someone else published, a port a host service holds, ports below the
//! policy's minimum, more ports than the policy allows, bad port specs.
//!
//! `tests/run.sh` joins the suite's namespace (the "host") to an "outside"
//! namespace (`TUPPER_OUTSIDE_NETNS`, the "internet") by an uplink veth:
//! host 192.0.2.1, outside 192.0.2.254, the host's default route via it.

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use tupper_integration::{assert_success, Env, PolicyFile};

const HOST: &str = "192.0.2.1";
const OUTSIDE: &str = "192.0.2.254";

fn env() -> Env {
    Env::get(env!("CARGO_BIN_EXE_tupper-drive"))
}

fn outside() -> String {
    std::env::var("TUPPER_OUTSIDE_NETNS")
        .expect("TUPPER_OUTSIDE_NETNS is not set (run tests/run.sh)")
}

fn text(out: &Output) -> String {
    tupper_integration::output_text(out)
}

/// `CMD` as root in namespace `ns`.
fn in_ns(ns: &str, cmd: &[&str]) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns]).args(cmd);
    c.stdin(Stdio::null());
    c
}

/// A busybox httpd as root in `ns` serving "hello from NS", logging clients to stderr.
struct Httpd {
    child: Child,
    dir: PathBuf,
}

impl Httpd {
    fn start(ns: &str, listen: &str, tag: &str) -> Httpd {
        let dir = std::env::temp_dir().join(format!("tw-net-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("index.html"), format!("hello from {tag}\n")).unwrap();
        let child = in_ns(
            ns,
            &[
                "busybox",
                "httpd",
                "-f",
                "-vv",
                "-p",
                listen,
                "-h",
                dir.to_str().unwrap(),
            ],
        )
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("start httpd");
        std::thread::sleep(Duration::from_millis(300));
        Httpd { child, dir }
    }

    /// Stop it (our own child, by pid) and return what it logged.
    fn stop(mut self) -> String {
        let _ = self.child.kill();
        let out = std::mem::replace(&mut self.child, Command::new("true").spawn().unwrap())
            .wait_with_output()
            .unwrap();
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

impl Drop for Httpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn nft_table(e: &Env) -> String {
    let out = in_ns(&e.netns, &["nft", "list", "table", "ip", "tupperware"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn port_records(e: &Env) -> Vec<String> {
    std::fs::read_dir(e.state_dir.join("ports"))
        .map(|d| {
            d.flatten()
                .filter_map(|f| f.file_name().into_string().ok())
                .filter(|n| !n.ends_with(".lock"))
                .collect()
        })
        .unwrap_or_default()
}

fn nothing_left(e: &Env) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let table = nft_table(e);
        let done = !table.contains("pub-") && port_records(e).is_empty() && e.veths().is_empty();
        if done {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "left behind: rules {table}\nrecords {:?}\nveths {:?}",
            port_records(e),
            e.veths()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(e.lease_records().is_empty(), "{:?}", e.lease_records());
}

/// A detached web server in a container publishing `publish`; logs clients.
fn web(e: &Env, user: &str, name: &str, publish: &[&str]) -> Output {
    let mut args = vec!["run", "-d", "--name", name];
    for p in publish {
        args.extend(["-p", p]);
    }
    args.extend([
        "busybox",
        "sh",
        "-c",
        "mkdir -p /www; echo hello from web > /www/index.html; exec httpd -f -vv -p 80 -h /www",
    ]);
    let mut c = e.as_user(user, &e.supervisor().to_string_lossy());
    c.args(&args);
    c.output().unwrap()
}

fn rm(e: &Env, user: &str, name: &str) {
    let mut c = e.as_user(user, &e.supervisor().to_string_lossy());
    let _ = c.args(["rm", "-f", name]).output();
}

struct Tidy<'a>(&'a Env, Vec<(String, String)>);

impl Drop for Tidy<'_> {
    fn drop(&mut self) {
        for (user, name) in &self.1 {
            rm(self.0, user, name);
        }
    }
}

/// `wget URL` in a container of the test user on the bridge.
fn wget_in_container(e: &Env, url: &str) -> Output {
    e.tupper(&["run", "--rm", "busybox", "wget", "-q", "-O", "-", url])
        .output()
        .unwrap()
}

fn wget(ns: &str, url: &str) -> Output {
    // (busybox's `wget -T` crashes on this Debian build: `timeout` instead)
    in_ns(
        ns,
        &["timeout", "10", "busybox", "wget", "-q", "-O", "-", url],
    )
    .output()
    .unwrap()
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn ports_outbound_connections_are_masqueraded_to_the_uplink() {
    let e = env();
    let out_ns = outside();
    let server = Httpd::start(&out_ns, &format!("{OUTSIDE}:9000"), "outside");
    let out = wget_in_container(&e, &format!("http://{OUTSIDE}:9000/"));
    let log = server.stop();
    assert_success(&out, &["run", "wget outside"]);
    assert!(text(&out).contains("hello from outside"), "{}", text(&out));
    // The outside saw the host's uplink address, not the container's.
    assert!(log.contains(&format!("{HOST}:")), "{log}");
    assert!(!log.contains("10.88."), "{log}");
    let table = nft_table(&e);
    assert!(table.contains("masquerade"), "{table}");
    nothing_left(&e);
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn ports_published_port_keeps_the_client_address_and_hairpins() {
    let e = env();
    let out_ns = outside();
    let _tidy = Tidy(
        &e,
        vec![
            (e.user.clone(), "web".into()),
            (e.second_user.clone(), "web2".into()),
            (e.second_user.clone(), "web3".into()),
        ],
    );
    let out = web(&e, &e.user, "web", &["8080:80", "127.0.0.1:8081:80"]);
    assert_success(&out, &["run -d -p 8080:80"]);
    std::thread::sleep(Duration::from_millis(300));
    let inspect = e.run_ok(&["inspect", "web"]);
    assert!(inspect.contains("0.0.0.0:8080->80/tcp"), "{inspect}");
    assert!(inspect.contains("127.0.0.1:8081->80/tcp"), "{inspect}");

    // From the outside, through the uplink: the server logs the real client.
    let r = wget(&out_ns, &format!("http://{HOST}:8080/"));
    assert!(text(&r).contains("hello from web"), "{}", text(&r));
    // Hairpin from the host itself, by its address and by loopback.
    let r = wget(&e.netns, &format!("http://{HOST}:8080/"));
    assert!(text(&r).contains("hello from web"), "{}", text(&r));
    let r = wget(&e.netns, "http://127.0.0.1:8081/");
    assert!(text(&r).contains("hello from web"), "{}", text(&r));
    // 8081 is published on 127.0.0.1 only.
    let r = wget(&out_ns, &format!("http://{HOST}:8081/"));
    assert!(!text(&r).contains("hello from web"), "{}", text(&r));
    // From another container on the bridge, through the host's address.
    let out = wget_in_container(&e, &format!("http://{HOST}:8080/"));
    assert!(text(&out).contains("hello from web"), "{}", text(&out));
    let logs = text(&e.tupper(&["logs", "web"]).output().unwrap());
    // busybox httpd logs `[::ffff:ADDRESS]:PORT`.
    assert!(logs.contains(&format!("{OUTSIDE}]:")), "{logs}");
    // A second user cannot take the port (nor learn who has it).
    let out = web(&e, &e.second_user, "web2", &["8080:80"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(125), "{t}");
    assert!(t.contains("8080"), "{t}");
    assert!(
        !t.contains(&e.user) && !t.contains(&e.uid(&e.user).to_string()),
        "{t}"
    );
    rm(&e, &e.second_user, "web2");
    // Bound to another address, the reservation succeeds: tupper-net's own
    // record of 8081 (published on 127.0.0.1) refuses it, naming no one.
    let out = web(&e, &e.second_user, "web3", &[&format!("{HOST}:8081:80")]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(125), "{t}");
    assert!(t.contains("host port 8081/tcp is already published"), "{t}");
    assert!(
        !t.contains(&e.user) && !t.contains(&e.uid(&e.user).to_string()),
        "{t}"
    );
    rm(&e, &e.second_user, "web3");
    let r = wget(&e.netns, "http://127.0.0.1:8081/");
    assert!(text(&r).contains("hello from web"), "{}", text(&r));
    // The first user's rule is still there and still answers.
    let r = wget(&out_ns, &format!("http://{HOST}:8080/"));
    assert!(text(&r).contains("hello from web"), "{}", text(&r));

    rm(&e, &e.user, "web");
    nothing_left(&e);
    let r = wget(&out_ns, &format!("http://{HOST}:8080/"));
    assert!(!r.status.success(), "{}", text(&r));
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn ports_hostile_publishing_is_refused_cleanly() {
    let e = env();
    let _tidy = Tidy(
        &e,
        ["p1", "p2", "p3", "p4"]
            .iter()
            .map(|n| (e.user.clone(), n.to_string()))
            .collect(),
    );
    let _policy = PolicyFile::set(
        &e,
        &format!(
            "[default]\ninterfaces = 32\n\n[users.{}]\nmin_host_port = 2000\npublished_ports = 2\n",
            e.user
        ),
    );
    // Bad specs: refused before anything is created.
    for bad in [
        "0:80",
        "65536:80",
        "../80",
        "80:0",
        "8000:80/sctp",
        "1.2.3:80:80",
    ] {
        let out = web(&e, &e.user, "p1", &[bad]);
        assert_eq!(out.status.code(), Some(125), "{bad}: {}", text(&out));
        assert!(text(&out).contains("invalid port"), "{bad}: {}", text(&out));
    }
    let many: Vec<String> = (0..100).map(|i| format!("{}:80", 10000 + i)).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let out = web(&e, &e.user, "p1", &many);
    assert_eq!(out.status.code(), Some(125), "{}", text(&out));
    // Below the policy's minimum.
    let out = web(&e, &e.user, "p1", &["1500:80"]);
    assert_eq!(out.status.code(), Some(125), "{}", text(&out));
    assert!(text(&out).contains("min_host_port"), "{}", text(&out));
    rm(&e, &e.user, "p1");
    // More than the per-user maximum, over two containers.
    assert_success(&web(&e, &e.user, "p2", &["8090:80", "8091:80"]), &["p2"]);
    let out = web(&e, &e.user, "p3", &["8092:80"]);
    assert_eq!(out.status.code(), Some(125), "{}", text(&out));
    assert!(text(&out).contains("limit 2 set by"), "{}", text(&out));
    rm(&e, &e.user, "p3");
    rm(&e, &e.user, "p2");
    // A port a host service holds is never taken from it.
    let host_service = Httpd::start(&e.netns, "0.0.0.0:8093", "service");
    let out = web(&e, &e.user, "p4", &["8093:80"]);
    assert_eq!(out.status.code(), Some(125), "{}", text(&out));
    let r = wget(&outside(), &format!("http://{HOST}:8093/"));
    assert!(text(&r).contains("hello from service"), "{}", text(&r));
    drop(host_service);
    rm(&e, &e.user, "p4");
    nothing_left(&e);
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn ports_a_killed_monitor_leaves_rules_that_gc_reclaims() {
    let e = env();
    let _tidy = Tidy(&e, vec![(e.user.clone(), "crashy".into())]);
    assert_success(&web(&e, &e.user, "crashy", &["8095:80"]), &["crashy"]);
    let rec = e.run_ok(&["inspect", "crashy"]);
    let v: serde_json::Value = serde_json::from_str(&rec).unwrap();
    let init = v[0]["state"]["pid"].as_u64().expect("init pid") as i32;
    // The monitor is the init's parent.
    let stat = std::fs::read_to_string(format!("/proc/{init}/stat")).unwrap();
    let after = stat.rsplit_once(')').unwrap().1;
    let ppid: i32 = after.split_whitespace().nth(1).unwrap().parse().unwrap();
    // SAFETY: a pid of a process this test started (through the supervisor).
    assert_eq!(unsafe { libc::kill(ppid, libc::SIGKILL) }, 0);
    std::thread::sleep(Duration::from_millis(500));
    assert!(nft_table(&e).contains("pub-tcp-8095"));
    let out = e.tupper(&["gc"]).output().unwrap();
    assert_success(&out, &["gc"]);
    rm(&e, &e.user, "crashy");
    nothing_left(&e);
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn ports_names_between_a_users_containers() {
    let e = env();
    let _tidy = Tidy(
        &e,
        vec![
            (e.user.clone(), "alpha".into()),
            (e.second_user.clone(), "theirs".into()),
        ],
    );
    let sleeper = |user: &str, name: &str| {
        let mut c = e.as_user(user, &e.supervisor().to_string_lossy());
        c.args(["run", "-d", "--name", name, "busybox", "sleep", "60"]);
        assert_success(&c.output().unwrap(), &["run -d", name]);
    };
    sleeper(&e.user, "alpha");
    sleeper(&e.second_user, "theirs");
    // A new container resolves its neighbour and itself by name.
    let out = e
        .tupper(&[
            "run",
            "--rm",
            "--name",
            "beta",
            "busybox",
            "sh",
            "-c",
            "ping -c1 -W2 alpha && ping -c1 -W2 beta && cat /etc/hosts",
        ])
        .output()
        .unwrap();
    let t = text(&out);
    assert_success(&out, &["run beta ping alpha"]);
    assert!(
        !t.contains("theirs"),
        "another user's container appears: {t}"
    );
    // The running one learnt the new name while beta ran, and forgot it after.
    let hosts = e.run_ok(&["exec", "alpha", "cat", "/etc/hosts"]);
    assert!(!hosts.contains("beta"), "{hosts}");
    let mut c = e.spawn(&[
        "run",
        "--rm",
        "--name",
        "gamma",
        "busybox",
        "sh",
        "-c",
        "echo up; sleep 5",
    ]);
    tupper_integration::read_until(&mut c, "up");
    let hosts = e.run_ok(&["exec", "alpha", "cat", "/etc/hosts"]);
    assert!(hosts.contains("\tgamma"), "{hosts}");
    let out = e.run_ok(&["exec", "alpha", "ping", "-c1", "-W2", "gamma"]);
    assert!(out.contains("1 packets received"), "{out}");
    let _ = c.kill();
    let _ = c.wait();
    rm(&e, &e.user, "gamma");
    rm(&e, &e.user, "alpha");
    rm(&e, &e.second_user, "theirs");
    nothing_left(&e);
}
