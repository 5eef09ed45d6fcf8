//! End-to-end: the installed supervisor and helpers, run by an unprivileged
//! user inside the suite's own network namespace.

use std::process::Command;
use std::time::Duration;

use tupper_integration::tarball::Tarball;
use tupper_integration::{assert_success, inet_address, read_until, Env};

fn env() -> Env {
    Env::get(env!("CARGO_BIN_EXE_tupper-drive"))
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `run --rm --network none busybox ARGS...`: a throwaway container without a network.
fn offline<'a>(args: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["run", "--rm", "--network", "none", "busybox"];
    v.extend_from_slice(args);
    v
}

/// Names in `image ls` (its first column).
fn images(e: &Env) -> Vec<String> {
    e.run_ok(&["image", "ls"])
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

fn nothing_left(e: &Env) {
    assert!(
        e.container_roots(&e.user).is_empty(),
        "container roots left: {:?}",
        e.container_roots(&e.user)
    );
    assert!(e.veths().is_empty(), "veths left: {:?}", e.veths());
    let uid = e.uid(&e.user);
    let leases = e.leases();
    assert!(
        !leases.contains(&format!("\"uid\": {uid}")) && !leases.contains(&format!("\"uid\":{uid}")),
        "lease left: {leases}"
    );
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn hostname_pid1_and_only_container_processes() {
    let e = env();
    let out = e.run_ok(&[
        "run",
        "--rm",
        "--hostname",
        "tupperware",
        "busybox",
        "sh",
        "-c",
        "hostname; echo $$; ps -o pid,comm; true",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "tupperware", "{out}");
    assert_eq!(lines[1], "1", "{out}");
    // Header + sh + ps: the host's processes are invisible.
    let procs: Vec<&str> = lines[2..].iter().skip(1).copied().collect();
    assert_eq!(procs.len(), 2, "unexpected processes: {out}");
    assert!(procs[0].trim().starts_with("1 "), "{out}");
    nothing_left(&e);
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn readme_example_runs() {
    let e = env();
    let out = e.run_ok(&[
        "run",
        "--rm",
        "--hostname",
        "tupperware",
        "busybox",
        "sh",
        "-c",
        "hostname; echo $$; ps; ip -4 addr show eth0; ip route",
    ]);
    assert!(out.starts_with("tupperware\n1\n"), "{out}");
    assert!(out.contains("inet 10.88."), "{out}");
    assert!(out.contains("default via 10.88.0.1 dev eth0"), "{out}");
    nothing_left(&e);
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn container_writes_stay_in_the_container() {
    let e = env();
    e.run_ok(&[
        "run",
        "--name",
        "writer",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "echo hi > /created-here",
    ]);
    // The writer's root is kept (no --rm) and holds the file; the image and a sibling do not.
    let roots = e.container_roots(&e.user);
    assert_eq!(roots.len(), 1, "{roots:?}");
    let root = e
        .store
        .join("containers")
        .join(e.uid(&e.user).to_string())
        .join(&roots[0]);
    assert!(root.join("created-here").exists());
    let image = e
        .store
        .join("images")
        .join(e.uid(&e.user).to_string())
        .join("busybox");
    assert!(
        image.join("bin/busybox").exists(),
        "image not where expected"
    );
    assert!(
        !image.join("created-here").exists(),
        "write reached the image"
    );
    let out = e
        .tupper(&offline(&["test", "-e", "/created-here"]))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "sibling sees the file: {}",
        stderr(&out)
    );
    let ps = e.run_ok(&["ps", "-a"]);
    assert!(ps.contains("writer") && ps.contains("Exited (0)"), "{ps}");
    e.run_ok(&["rm", "writer"]);
    assert!(!e.run_ok(&["ps", "-a"]).contains("writer"));
    nothing_left(&e);
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn no_host_mounts_are_visible() {
    let e = env();
    let out = e.run_ok(&offline(&["cat", "/proc/self/mountinfo"]));
    let points: Vec<&str> = out.lines().filter_map(|l| l.split(' ').nth(4)).collect();
    assert!(
        points.contains(&"/") && points.contains(&"/proc") && points.contains(&"/dev/pts"),
        "{out}"
    );
    for p in &points {
        // The container's own /etc files (from its state directory) are
        // mounted like volumes; /sys/firmware is masked by a tmpfs.
        let own_etc = ["/etc/hosts", "/etc/hostname", "/etc/resolv.conf"].contains(p);
        let allowed = *p == "/"
            || p.starts_with("/sys")
            || p.starts_with("/proc")
            || p.starts_with("/dev")
            || own_etc;
        assert!(allowed, "host mount visible in the container: {p}\n{out}");
    }
    let host = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(host.lines().count() > points.len());
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn container_root_is_the_caller_and_the_rest_the_subordinate_range() {
    let e = env();
    let out = e.run_ok(&offline(&["sh", "-c", "id -u; cat /proc/self/uid_map"]));
    let lines: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert_eq!(lines[0], ["0"]);
    let uid = e.uid(&e.user).to_string();
    assert_eq!(
        lines[1],
        ["0", uid.as_str(), "1"],
        "container root is the caller"
    );
    assert_eq!(lines[2][0], "1");
    let base: u32 = lines[2][1].parse().unwrap();
    assert!(base >= 100000, "{out}");
    assert_eq!(lines[2][2], "65535");
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn bridge_address_and_gateway_answers() {
    let e = env();
    let out = e.run_ok(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "ip -4 addr show eth0; ip route; ping -c1 -W3 10.88.0.1",
    ]);
    let addr = inet_address(&out).expect("an address");
    assert!(addr.starts_with("10.88."), "{out}");
    assert!(out.contains("default via 10.88.0.1"), "{out}");
    assert!(out.contains("1 packets received"), "{out}");
    nothing_left(&e);
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn network_none_has_only_loopback() {
    let e = env();
    let out = e.run_ok(&offline(&["ip", "-o", "link"]));
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.contains("lo:") && out.contains("UP"), "{out}");
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn two_containers_get_different_addresses_and_reach_each_other() {
    let e = env();
    let mut a = e.spawn(&[
        "run",
        "--rm",
        "--name",
        "peer-a",
        "busybox",
        "sh",
        "-c",
        "ip -4 addr show eth0; echo ready; sleep 60",
    ]);
    let lines = read_until(&mut a, "ready");
    let addr_a = inet_address(&lines.concat()).expect("peer-a address");
    let out = e.run_ok(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        &format!("ip -4 addr show eth0; ping -c1 -W3 {addr_a}"),
    ]);
    let addr_b = inet_address(&out).expect("peer-b address");
    assert_ne!(addr_a, addr_b);
    assert!(out.contains("1 packets received"), "{out}");
    e.run_ok(&["rm", "-f", "peer-a"]);
    let status = a.wait().unwrap();
    assert_eq!(status.code(), Some(137));
    nothing_left(&e);
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn exit_codes_come_back() {
    let e = env();
    let code = |args: &[&str]| e.tupper(args).output().unwrap();
    assert_eq!(
        code(&offline(&["sh", "-c", "exit 42"])).status.code(),
        Some(42)
    );
    assert_eq!(code(&offline(&["false"])).status.code(), Some(1));
    let nf = code(&offline(&["no-such-command"]));
    assert_eq!(nf.status.code(), Some(127), "{}", stderr(&nf));
    assert!(stderr(&nf).contains("no-such-command"), "{}", stderr(&nf));
    let nx = code(&offline(&["/etc/passwd"]));
    assert_eq!(nx.status.code(), Some(126), "{}", stderr(&nx));
    let ni = code(&["run", "--rm", "busybox-nope", "true"]);
    assert_eq!(ni.status.code(), Some(125));
    assert!(stderr(&ni).contains("not found"), "{}", stderr(&ni));
    nothing_left(&e);
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn environment_and_workdir_reach_the_command() {
    let e = env();
    let out = e.run_ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-e",
        "GREETING=hello world",
        "-w",
        "/tmp",
        "busybox",
        "sh",
        "-c",
        "echo \"$GREETING\"; pwd",
    ]);
    assert_eq!(out, "hello world\n/tmp\n");
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn stdin_is_passed_with_interactive() {
    let e = env();
    use std::io::Write;
    let mut c = e.tupper(&[
        "run",
        "--rm",
        "-i",
        "--network",
        "none",
        "busybox",
        "tr",
        "a-z",
        "A-Z",
    ]);
    c.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    child.stdin.take().unwrap().write_all(b"shout\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(stdout(&out), "SHOUT\n");
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn signals_reach_the_container() {
    let e = env();
    let mut c = e.spawn(&offline(&[
        "sh",
        "-c",
        "trap 'echo got-term; exit 7' TERM; echo ready; while true; do sleep 0.1; done",
    ]));
    read_until(&mut c, "ready");
    // `c` is `ip netns exec`, which execs setpriv, which execs the supervisor: same pid.
    let pid = c.id() as i32;
    // SAFETY: signalling a process this test started, by its pid.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = c.wait().unwrap();
    assert_eq!(status.code(), Some(7));
    nothing_left(&e);
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn a_killed_supervisor_is_reclaimed_by_the_next_invocation() {
    // Since issue 8 the container belongs to its monitor: killing the
    // foreground `run` attached to it leaves it running (as podman does);
    // it can be stopped, and `--rm` then removes everything.
    let e = env();
    let mut c = e.spawn(&[
        "run",
        "--rm",
        "--name",
        "victim",
        "busybox",
        "sh",
        "-c",
        "echo ready; sleep 60",
    ]);
    read_until(&mut c, "ready");
    assert_eq!(e.veths().len(), 1);
    // SAFETY: killing the supervisor this test started, by its pid.
    assert_eq!(unsafe { libc::kill(c.id() as i32, libc::SIGKILL) }, 0);
    let _ = c.wait();
    assert!(e.run_ok(&["ps"]).contains("victim"));
    e.run_ok(&["stop", "-t", "1", "victim"]);
    e.run_ok(&["gc"]);
    assert!(!e.run_ok(&["ps", "-a"]).contains("victim"));
    nothing_left(&e);
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn bad_names_are_refused_without_side_effects() {
    let e = env();
    for args in [
        vec!["run", "--rm", "../x", "true"],
        vec!["run", "--rm", "--name", "../x", "busybox", "true"],
        vec!["run", "--rm", "--hostname", "a/b", "busybox", "true"],
        vec!["image", "rm", "../busybox"],
    ] {
        let out = e.tupper(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(125), "{args:?}");
        assert!(
            stderr(&out).contains("../x")
                || stderr(&out).contains("a/b")
                || stderr(&out).contains("../busybox"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    let out = e.import(&e.user, "../x", b"");
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("name"), "{}", stderr(&out));
    nothing_left(&e);
}

fn assert_import_refused(e: &Env, name: &str, tar: Vec<u8>, expect: &str) {
    let before = e.subvolumes();
    let out = e.import(&e.user, name, &tar);
    assert_eq!(
        out.status.code(),
        Some(125),
        "{name}: import should fail: {}",
        stdout(&out)
    );
    assert!(
        stderr(&out).contains(expect),
        "{name}: stderr lacks {expect:?}: {}",
        stderr(&out)
    );
    assert_eq!(
        e.subvolumes(),
        before,
        "{name}: a failed import left a subvolume"
    );
    assert!(!images(e).iter().any(|n| n == name));
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn hostile_tarballs_are_refused_and_leave_nothing() {
    let e = env();
    let dotdot = Tarball::new()
        .dir("etc/")
        .file("../../etc/tupper-escape", b"x")
        .finish();
    assert_import_refused(&e, "evil-dotdot", dotdot, "leaves");
    let hard = Tarball::new()
        .dir("etc/")
        .hardlink("etc/shadow-copy", "/etc/shadow")
        .finish();
    assert_import_refused(&e, "evil-hardlink", hard, "shadow");
    let hard_up = Tarball::new()
        .dir("etc/")
        .hardlink("etc/passwd-copy", "../../../etc/passwd")
        .finish();
    assert_import_refused(&e, "evil-hardlink-up", hard_up, "passwd");
    // Device nodes are left out (a container gets its own /dev), with one
    // line saying how many: root filesystems import as their tools built them.
    let dev = Tarball::new().dir("dev/").device("dev/sda").finish();
    let out = e.import(&e.user, "with-device", &dev);
    assert_success(&out, &["image", "import", "with-device"]);
    assert!(
        stderr(&out).contains("left out 1 device node of the tarball"),
        "{}",
        stderr(&out)
    );
    let img = e
        .store
        .join("images")
        .join(e.uid(&e.user).to_string())
        .join("with-device");
    assert!(img.join("dev").is_dir());
    assert!(std::fs::symlink_metadata(img.join("dev/sda")).is_err());
    e.run_ok(&["image", "rm", "with-device"]);
    let truncated = Tarball::new()
        .dir("etc/")
        .file("etc/a", &[b'a'; 4096])
        .finish()[..1500]
        .to_vec();
    // Cut inside the data of `etc/a`: the helper cannot read the tarball
    // to its end, says so, and keeps nothing.
    assert_import_refused(&e, "truncated", truncated, "cannot read the tarball");
    assert!(!std::path::Path::new("/etc/tupper-escape").exists());
    assert!(!std::path::Path::new("/etc/tupper-pwned").exists());
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn absolute_symlinks_in_an_image_stay_inside_it() {
    let e = env();
    // The storage helper resolves every entry inside the image (openat2
    // RESOLVE_IN_ROOT): the absolute symlink is kept as it is, and a file
    // written "through" it lands in the image's own /etc. The import succeeds.
    let tar = Tarball::new()
        .dir("etc/")
        .symlink("etc/evil", "/etc")
        .file("etc/evil/tupper-pwned", b"owned")
        .finish();
    let out = e.import(&e.user, "abs-symlink", &tar);
    assert!(
        !std::path::Path::new("/etc/tupper-pwned").exists(),
        "wrote through a symlink onto the host"
    );
    assert_success(&out, &["image", "import", "abs-symlink", "-"]);
    let img = e
        .store
        .join("images")
        .join(e.uid(&e.user).to_string())
        .join("abs-symlink");
    assert_eq!(
        std::fs::read_link(img.join("etc/evil")).ok(),
        Some(std::path::PathBuf::from("/etc")),
        "the absolute symlink is kept as it is"
    );
    assert_eq!(
        std::fs::read(img.join("etc/tupper-pwned")).ok().as_deref(),
        Some(&b"owned"[..]),
        "the file lands in the image's own /etc"
    );
    e.run_ok(&["image", "rm", "abs-symlink"]);
    assert!(!images(&e).iter().any(|n| n == "abs-symlink"));
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn image_import_list_remove() {
    let e = env();
    let tar = std::fs::read(&e.image_tar).unwrap();
    let out = e.import(&e.user, "second", &tar);
    assert_success(&out, &["image", "import", "second"]);
    let dup = e.import(&e.user, "second", &tar);
    assert_eq!(dup.status.code(), Some(125));
    assert!(stderr(&dup).contains("exists"), "{}", stderr(&dup));
    assert!(images(&e).iter().any(|n| n == "second"));
    let ran = e.run_ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "second",
        "echo",
        "from-second",
    ]);
    assert_eq!(ran, "from-second\n");
    e.run_ok(&["image", "rm", "second"]);
    assert!(!images(&e).iter().any(|n| n == "second"));
    let again = e.tupper(&["image", "rm", "second"]).output().unwrap();
    assert_eq!(again.status.code(), Some(125));
    // Image files owned by container root belong to the user on the host,
    // never to host root.
    let bb = e
        .store
        .join("images")
        .join(e.uid(&e.user).to_string())
        .join("busybox/bin/busybox");
    let owner = Command::new("stat")
        .args(["-c", "%u"])
        .arg(&bb)
        .output()
        .unwrap();
    let owner: u32 = stdout(&owner).trim().parse().unwrap();
    assert_eq!(owner, e.uid(&e.user), "image file owned by {owner}");
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn a_user_without_subordinate_ids_is_told_what_to_add() {
    let e = env();
    let tar = std::fs::read(&e.image_tar).unwrap();
    let out = e.import(&e.norange_user, "busybox", &tar);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).contains("usermod --add-subuids"),
        "{}",
        stderr(&out)
    );
    let mut c = e.as_user(&e.norange_user, &e.supervisor().to_string_lossy());
    let out = c.args(["run", "--rm", "busybox", "true"]).output().unwrap();
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("subordinate"), "{}", stderr(&out));
    assert!(e.container_roots(&e.norange_user).is_empty());
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn net_helper_refuses_foreign_pids() {
    let e = env();
    let id = "0123456789abcdef0123456789abcdef";
    // The host's init, and the caller's own process in the host namespace.
    let own = std::process::id().to_string();
    let mut root_sleep = Command::new("ip")
        .args(["netns", "exec", &e.netns, "unshare", "--net", "sleep", "30"])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let root_pid = root_sleep.id().to_string();
    let mut user_sleep = e.as_user(&e.user, "/bin/sleep");
    let mut user_sleep = user_sleep.arg("30").spawn().unwrap();
    let user_pid = user_sleep.id().to_string();
    for pid in [
        "1",
        own.as_str(),
        root_pid.as_str(),
        user_pid.as_str(),
        "999999999",
    ] {
        // The container id is valid: each pid is refused as not the
        // caller's container, with the one uniform answer.
        let out = e.drive(&e.user, &["net-attach", pid, id]);
        let text = stdout(&out);
        assert!(!out.status.success(), "pid {pid} accepted: {text}");
        assert_eq!(
            text.trim_end(),
            format!("error: PermissionDenied: pid {pid} is not a container of yours"),
            "pid {pid}: {}",
            stderr(&out)
        );
    }
    // SAFETY: ending processes this test started, by pid.
    unsafe {
        libc::kill(root_sleep.id() as i32, libc::SIGKILL);
        libc::kill(user_sleep.id() as i32, libc::SIGKILL);
    }
    let _ = root_sleep.wait();
    let _ = user_sleep.wait();
    assert!(
        e.veths().is_empty(),
        "a refused attach left {:?}",
        e.veths()
    );
    let rel = e.drive(&e.user, &["net-release", id]);
    assert!(!rel.status.success(), "{}", stdout(&rel));
    assert!(
        stdout(&rel).starts_with("error: NotFound: "),
        "{}",
        stdout(&rel)
    );
    // Only an invalid container id is an invalid request.
    let bad = e.drive(&e.user, &["net-attach", "2", "../../x"]);
    assert!(!bad.status.success(), "{}", stdout(&bad));
    assert!(
        stdout(&bad).starts_with("error: InvalidRequest: "),
        "{}",
        stdout(&bad)
    );
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn malformed_frames_are_refused_by_every_helper() {
    let e = env();
    for helper in ["storage", "ns", "net"] {
        for (kind, why) in [
            (
                "absurd-frame",
                "frame of 4294967295 bytes exceeds the limit",
            ),
            ("garbage-frame", "malformed message"),
        ] {
            // The driver decodes the reply as this helper's own reply type
            // and reports how the helper exited; it exits 0 once it has.
            let out = e.drive(&e.user, &[kind, helper]);
            let text = stdout(&out);
            assert!(
                out.status.success(),
                "{helper} {kind}: the driver failed: {text}{}",
                stderr(&out)
            );
            let line = |key: &str| {
                text.lines()
                    .find_map(|l| l.strip_prefix(key))
                    .unwrap_or_else(|| panic!("{helper} {kind}: no {key:?} in {text:?}"))
                    .to_string()
            };
            // The helper answers with a protocol error naming the fault...
            let reply = line("reply: ");
            assert!(
                reply.starts_with(&format!("error: Protocol: {why}")),
                "{helper} {kind}: {reply}"
            );
            // ...and then exits with failure.
            assert_eq!(line("helper-exit: "), "code 1", "{helper} {kind}");
        }
    }
    nothing_left(&e);
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn tty_gives_the_container_a_controlling_terminal() {
    let e = env();
    let out = e.run_ok(&[
        "run",
        "--rm",
        "-t",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "test -t 0 && test -t 1 && echo is-a-tty; ps -o pid,tty | sed -n 2p; tty",
    ]);
    assert!(out.contains("is-a-tty\r\n"), "{out:?}");
    // The terminal is the controlling terminal of the container's PID 1.
    let ctty = out.lines().nth(1).unwrap_or("");
    assert!(!ctty.trim().ends_with('?'), "{out:?}");
    // It is a terminal of the container's own devpts, named inside.
    assert_eq!(
        out.lines().nth(2).map(str::trim),
        Some("/dev/pts/0"),
        "{out:?}"
    );
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn ps_shows_a_running_container_with_its_address() {
    let e = env();
    let mut c = e.spawn(&[
        "run",
        "--rm",
        "--name",
        "listed",
        "busybox",
        "sh",
        "-c",
        "echo ready; sleep 60",
    ]);
    read_until(&mut c, "ready");
    let ps = e.run_ok(&["ps"]);
    let row = ps
        .lines()
        .find(|l| l.contains("listed"))
        .unwrap_or_else(|| panic!("{ps}"));
    assert!(
        row.contains("busybox") && row.contains("Up") && row.contains("10.88."),
        "{row}"
    );
    let busy = e.tupper(&["rm", "listed"]).output().unwrap();
    assert_eq!(busy.status.code(), Some(125));
    assert!(stderr(&busy).contains("is running"), "{}", stderr(&busy));
    e.run_ok(&["rm", "-f", "listed"]);
    let _ = c.wait();
    nothing_left(&e);
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn root_gets_a_container_and_an_address_too() {
    let e = env();
    let root = |args: &[&str]| {
        e.as_root_in_netns(&e.supervisor().to_string_lossy())
            .args(args)
            .output()
            .unwrap()
    };
    let _ = root(&["image", "rm", "busybox"]);
    let imported = root(&["image", "import", "busybox", &e.image_tar.to_string_lossy()]);
    assert_success(&imported, &["image", "import"]);
    let out = root(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "id -u; ping -c1 -W3 10.88.0.1 | grep received",
    ]);
    assert_success(&out, &["run"]);
    assert!(
        stdout(&out).starts_with("0\n1 packets transmitted, 1 packets received"),
        "{}",
        stdout(&out)
    );
    assert_success(&root(&["image", "rm", "busybox"]), &["image", "rm"]);
    assert!(e.veths().is_empty());
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn gc_removes_roots_whose_records_were_lost() {
    let e = env();
    e.run_ok(&[
        "run",
        "--name",
        "forgotten",
        "--network",
        "none",
        "busybox",
        "true",
    ]);
    assert_eq!(e.container_roots(&e.user).len(), 1);
    // The runtime directory goes at reboot; the store stays.
    let state = e.state_dir_of(&e.user);
    assert!(
        state.join("containers").is_dir(),
        "state not in {}",
        state.display()
    );
    std::fs::remove_dir_all(&state).unwrap();
    let out = e.run_ok(&["gc"]);
    assert!(out.contains("orphaned root"), "{out}");
    nothing_left(&e);
    // Nothing else is touched: the image is still there and usable.
    assert_eq!(e.run_ok(&offline(&["echo", "still-here"])), "still-here\n");
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn three_interrupts_kill_a_container_that_ignores_them() {
    let e = env();
    // A PID 1 that ignores SIGINT. (Not `sh -c "echo ready; sleep 60"`:
    // busybox sh catches SIGINT until it has executed its last command, and
    // exits 130 when an interrupt lands in that window.)
    let mut c = e.spawn(&offline(&[
        "sh",
        "-c",
        "trap '' INT; echo ready; exec sleep 60",
    ]));
    read_until(&mut c, "ready");
    for _ in 0..3 {
        // SAFETY: signalling the supervisor this test started, by its pid.
        assert_eq!(unsafe { libc::kill(c.id() as i32, libc::SIGINT) }, 0);
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = c.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(137), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("killing the container"),
        "{}",
        stderr(&out)
    );
    nothing_left(&e);
}
