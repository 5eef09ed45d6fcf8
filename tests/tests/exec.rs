//! End-to-end: `exec` and `top` into a running container (issue 8), as the
//! unprivileged test user: namespaces, environment, user, lock-down,
//! terminal, exit statuses; and the hostile cases (another user's
//! container, a forged record pointing at another user's init, descriptors
//! of the caller).

use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Output};

use tupper_integration::{inet_address, read_until, Env};

fn env() -> Env {
    Env::get(env!("CARGO_BIN_EXE_tupper-drive"))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A container `NAME` running `sleep` as `user`, with `--hostname NAME`;
/// removed (`rm -f`) when dropped. `lines` is what it printed before
/// "ready" (its address on the bridge).
struct Running<'a> {
    e: &'a Env,
    user: String,
    name: String,
    child: Child,
    lines: String,
}

impl<'a> Running<'a> {
    fn start(e: &'a Env, user: &str, name: &str, flags: &[&str]) -> Running<'a> {
        let mut args = vec!["run", "--rm", "--name", name, "--hostname", name];
        args.extend_from_slice(flags);
        args.extend_from_slice(&[
            "busybox",
            "sh",
            "-c",
            "ip -4 addr show eth0 2>/dev/null; echo ready; exec sleep 1000",
        ]);
        let mut c = e.as_user(user, &e.supervisor().to_string_lossy());
        c.args(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null());
        let mut child = c.spawn().expect("spawn supervisor");
        let lines = read_until(&mut child, "ready").concat();
        Running {
            e,
            user: user.into(),
            name: name.into(),
            child,
            lines,
        }
    }

    /// The container's id, from its record.
    fn id(&self) -> String {
        let dir = self.e.state_dir_of(&self.user).join("containers");
        for entry in std::fs::read_dir(&dir).expect("records").flatten() {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            if v["name"] == self.name.as_str() {
                return v["id"].as_str().expect("id").to_string();
            }
        }
        panic!("no record named {}", self.name)
    }

    fn exec(&self, flags: &[&str], cmd: &[&str]) -> Output {
        let mut c = self
            .e
            .as_user(&self.user, &self.e.supervisor().to_string_lossy());
        c.arg("exec").args(flags).arg(&self.name).args(cmd);
        c.output().expect("spawn supervisor")
    }

    fn exec_ok(&self, flags: &[&str], cmd: &[&str]) -> String {
        let out = self.exec(flags, cmd);
        assert!(
            out.status.success(),
            "exec {flags:?} {cmd:?}: {:?}\n{}{}",
            out.status,
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        let mut c = self
            .e
            .as_user(&self.user, &self.e.supervisor().to_string_lossy());
        let _ = c.args(["rm", "-f", &self.name]).output();
        // SAFETY: the supervisor this test started, by its pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn exec_runs_in_the_containers_namespaces_with_its_exit_codes() {
    let e = env();
    let c = Running::start(&e, &e.user, "ex-basic", &[]);
    assert_eq!(c.exec_ok(&[], &["echo", "hi"]), "hi\n");
    // Exit statuses: the command's, 127 not found, 126 not executable.
    assert_eq!(c.exec(&[], &["sh", "-c", "exit 7"]).status.code(), Some(7));
    let out = c.exec(&[], &["no-such-command"]);
    assert_eq!(out.status.code(), Some(127), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).starts_with("tupper: "),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(c.exec(&[], &["/etc/passwd"]).status.code(), Some(126));
    // -e, -w and the container's own environment.
    let out = c.exec_ok(
        &["-e", "GREETING=hello", "-w", "/tmp"],
        &[
            "sh",
            "-c",
            "echo $GREETING; pwd; echo $HOSTNAME; echo $PATH",
        ],
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[..3], ["hello", "/tmp", "ex-basic"], "{out}");
    assert!(lines[3].contains("/bin"), "{out}");
    // The container's hostname, files, address and pid namespace.
    assert_eq!(c.exec_ok(&[], &["hostname"]), "ex-basic\n");
    assert!(c.exec_ok(&[], &["cat", "/etc/passwd"]).starts_with("root:"));
    let addr = inet_address(&c.lines).expect("the container's address");
    let inside = c.exec_ok(&[], &["ip", "-4", "addr", "show", "eth0"]);
    assert_eq!(
        inet_address(&inside).as_deref(),
        Some(addr.as_str()),
        "{inside}"
    );
    let ps = c.exec_ok(&[], &["ps"]);
    assert!(
        ps.lines()
            .any(|l| l.trim().starts_with("1 ") && l.contains("sleep 1000")),
        "{ps}"
    );
    assert!(ps.contains("ps"), "{ps}");
    // -u: the uid inside, and no capabilities left.
    let out = c.exec_ok(
        &["-u", "1000"],
        &["sh", "-c", "id -u; grep ^CapEff /proc/self/status"],
    );
    assert!(out.starts_with("1000\n"), "{out}");
    assert!(out.contains("0000000000000000"), "{out}");
    // Root of the container keeps the default set, not more.
    let out = c.exec_ok(&[], &["grep", "^CapBnd", "/proc/self/status"]);
    assert!(out.contains("00000000a80425fb"), "{out}");
    // By id as well as by name; `--privileged` is refused.
    let id = c.id();
    let by_id = e.tupper(&["exec", &id[..12], "true"]).output().unwrap();
    assert!(by_id.status.success(), "{}", text(&by_id.stderr));
    let out = c.exec(&["--privileged"], &["true"]);
    assert_eq!(out.status.code(), Some(125));
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn exec_applies_the_containers_seccomp_filter_and_no_new_privs() {
    let e = env();
    let c = Running::start(
        &e,
        &e.user,
        "ex-locked",
        &["--network", "none", "--security-opt", "no-new-privileges"],
    );
    let out = c.exec(&[], &["unshare", "-U", "true"]);
    assert_ne!(out.status.code(), Some(0), "unshare -U worked under exec");
    let out = c.exec_ok(
        &[],
        &["grep", "-E", "^(NoNewPrivs|Seccomp):", "/proc/self/status"],
    );
    assert!(out.contains("NoNewPrivs:\t1"), "{out}");
    assert!(out.contains("Seccomp:\t2"), "{out}");
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn exec_with_a_terminal_and_top() {
    let e = env();
    let _c = Running::start(&e, &e.user, "ex-tty", &["--network", "none"]);
    // Under a pseudo-terminal of our own (script), as the test user.
    let cmd = format!(
        "{} exec -it ex-tty sh -c 'tty; test -t 0 && echo is-a-tty; exit 3'",
        e.supervisor().display()
    );
    let out = e
        .as_user(&e.user, "/usr/bin/script")
        .args(["-qec", &cmd, "/dev/null"])
        .output()
        .expect("script");
    let all = text(&out.stdout);
    assert!(all.contains("/dev/pts/"), "{all}{}", text(&out.stderr));
    assert!(all.contains("is-a-tty"), "{all}");
    assert_eq!(out.status.code(), Some(3), "{all}");
    // top: the container's processes as seen from inside.
    let top = e.tupper(&["top", "ex-tty"]).output().unwrap();
    let top = text(&top.stdout);
    let first = top.lines().nth(1).unwrap_or_default();
    let f: Vec<&str> = first.split_whitespace().collect();
    assert_eq!(f.first(), Some(&"0"), "{top}");
    assert_eq!(f.get(1), Some(&"1"), "{top}");
    assert!(first.contains("sleep 1000"), "{top}");
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn exec_into_another_users_container_is_refused() {
    let e = env();
    let theirs = Running::start(&e, &e.second_user, "ex-theirs", &["--network", "none"]);
    let their_id = theirs.id();
    // By name or id: not found.
    for key in ["ex-theirs", &their_id[..]] {
        let out = e.tupper(&["exec", key, "echo", "pwned"]).output().unwrap();
        assert_eq!(out.status.code(), Some(125));
        assert!(!text(&out.stdout).contains("pwned"));
        assert!(
            text(&out.stderr).contains("no such container"),
            "{}",
            text(&out.stderr)
        );
    }
    // A record of our own, forged to point at their init (pid and start
    // time are public): setns refuses, cleanly.
    let theirs_rec = std::fs::read_to_string(
        e.state_dir_of(&e.second_user)
            .join("containers")
            .join(format!("{their_id}.json")),
    )
    .unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&theirs_rec).unwrap();
    let forged_id = "f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0";
    v["id"] = forged_id.into();
    v["name"] = "forged".into();
    // Our own user's state directory exists once we ran anything.
    let _ = e.tupper(&["ps"]).output();
    let path = e
        .state_dir_of(&e.user)
        .join("containers")
        .join(format!("{forged_id}.json"));
    std::fs::write(&path, v.to_string()).unwrap();
    let uid = e.uid(&e.user);
    std::os::unix::fs::chown(&path, Some(uid), Some(uid)).unwrap();
    let out = e
        .tupper(&["exec", "forged", "echo", "pwned"])
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&path);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{err}");
    assert!(!text(&out.stdout).contains("pwned"));
    assert!(
        err.starts_with("tupper: ") && err.lines().count() == 1,
        "{err}"
    );
    assert!(err.contains("join the container's namespaces"), "{err}");
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn exec_inherits_no_descriptor_of_the_supervisor() {
    let e = env();
    let c = Running::start(&e, &e.user, "ex-fds", &["--network", "none"]);
    // The caller hands the supervisor a host directory on descriptor 7
    // (not close-on-exec), as a careless shell might (CVE-2024-21626 class).
    let dir = std::fs::File::open("/").unwrap();
    let raw = dir.as_raw_fd();
    let with_fd = |c: &mut std::process::Command| {
        // SAFETY: dup2 in the child before exec; async-signal-safe.
        unsafe {
            c.pre_exec(move || {
                if libc::dup2(raw, 7) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    };
    // It does reach the supervisor's side (baseline).
    let mut probe = e.as_user(&e.user, "/bin/ls");
    probe.arg("/proc/self/fd");
    with_fd(&mut probe);
    let fds = text(&probe.output().unwrap().stdout);
    assert!(fds.split_whitespace().any(|f| f == "7"), "{fds}");
    let mut cmd = e.as_user(&e.user, &e.supervisor().to_string_lossy());
    cmd.args(["exec", "ex-fds", "sh", "-c", "ls /proc/$$/fd; true"]);
    with_fd(&mut cmd);
    let out = cmd.output().unwrap();
    let fds: Vec<String> = text(&out.stdout)
        .split_whitespace()
        .map(String::from)
        .collect();
    assert_eq!(fds, ["0", "1", "2"], "{}", text(&out.stderr));
    drop(c);
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn exec_forwards_signals_to_the_command() {
    let e = env();
    let _c = Running::start(&e, &e.user, "ex-signals", &["--network", "none"]);
    let mut cmd = e.as_user(&e.user, &e.supervisor().to_string_lossy());
    cmd.args([
        "exec",
        "ex-signals",
        "sh",
        "-c",
        "trap 'echo got-term; exit 5' TERM; echo ready; while :; do sleep 0.1; done",
    ])
    .stdout(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    read_until(&mut child, "ready");
    // SAFETY: the supervisor this test started, by its pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    assert_eq!(child.wait().unwrap().code(), Some(5));
}

/// Host pids whose command line starts with `args` (NUL-separated).
fn pids_running(args: &[&str]) -> Vec<i32> {
    let want: Vec<u8> = args
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|d| d.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| c.windows(want.len()).any(|w| w == want.as_slice()))
                .unwrap_or(false)
        })
        .collect()
}

/// The state letter and parent of a host pid, `None` once it is gone.
fn state_of(pid: i32) -> Option<(char, i32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut f = rest.split_whitespace();
    let state = f.next()?.chars().next()?;
    let ppid = f.next()?.parse().ok()?;
    Some((state, ppid))
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn exec_detached_returns_at_once_leaves_no_zombie_and_does_not_hold_up_stop() {
    let e = env();
    let c = Running::start(&e, &e.user, "ex-detach", &["--network", "none"]);

    // Returns at once, printing nothing, while the command runs on.
    let t = std::time::Instant::now();
    let out = c.exec(&["-d"], &["sleep", "30"]);
    let took = t.elapsed();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        (text(&out.stdout), text(&out.stderr)),
        (String::new(), String::new())
    );
    assert!(
        took < std::time::Duration::from_secs(5),
        "exec -d took {took:?}"
    );
    let ps = c.exec_ok(&[], &["ps"]);
    assert!(ps.contains("sleep 30"), "{ps}");

    // A failure to start is still reported (the command's status).
    let out = c.exec(&["-d"], &["no-such-command"]);
    assert_eq!(out.status.code(), Some(127), "{}", text(&out.stderr));
    let out = c.exec(&["-d", "-t"], &["true"]);
    assert_eq!(out.status.code(), Some(125), "{}", text(&out.stderr));

    // A short detached command is reaped: no zombie in the container.
    c.exec_ok(&["-d"], &["true"]);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let states = c.exec_ok(&[], &["sh", "-c", "cat /proc/[0-9]*/stat"]);
    assert!(
        !states.lines().any(|l| l
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z'))),
        "a zombie in the container: {states}"
    );

    // The joiner that waits for `sleep 30` is not the supervisor's child
    // (which returned); `stop` is not held up by it, and it goes with the
    // container.
    let joiners = pids_running(&["exec", "-d", "ex-detach", "sleep", "30"]);
    assert_eq!(joiners.len(), 1, "one detached joiner: {joiners:?}");
    let t = std::time::Instant::now();
    let mut stop = e.as_user(&e.user, &e.supervisor().to_string_lossy());
    let out = stop
        .args(["stop", "-t", "1", "ex-detach"])
        .output()
        .expect("stop");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let took = t.elapsed();
    assert!(
        took < std::time::Duration::from_secs(6),
        "stop took {took:?}"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        match state_of(joiners[0]) {
            None => break,
            // Ended; the machine's init reaps what it inherited in its time.
            Some(('Z', 1)) => break,
            Some(s) => assert!(
                std::time::Instant::now() < deadline,
                "the detached joiner {} outlived the container: {s:?}",
                joiners[0]
            ),
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
