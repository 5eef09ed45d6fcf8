//! End-to-end tests of `tupper-ns` across the real privilege boundary.
//!
//! Needs root (to build container roots in the store and install the helper
//! with file capabilities) and `TUPPER_NS_TESTS=1`: each test is `#[ignore]`d
//! and fails when run without them. Run with
//! `TUPPER_NS_TESTS=1 cargo test -p tupper-ns -- --ignored` (that also builds
//! `examples/drive`, the stand-in supervisor these tests run as `tupdev`).
//!
//! Store layout used (default config, `/var/lib/tupperware`):
//! - `containers/<tupdev>/OK`      busybox root owned by container root (tupdev's range)
//! - `containers/<tupdev>/EVIL`    same, but `proc` is a symlink to a host dir
//! - `containers/<tupdev>/LINK`    a symlink to root's container
//! - `containers/0/ROOTS`          root's busybox root (no user namespace)

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const OK: &str = "0123456789abcdef0123456789abcdef";
const EVIL: &str = "22222222222222222222222222222222";
const LINK: &str = "11111111111111111111111111111111";
const ROOTS: &str = "abcdef0123456789abcdef0123456789";
const MISSING: &str = "ffffffffffffffffffffffffffffffff";
const STORE: &str = "/var/lib/tupperware";
const BIN: &str = "/tmp/tupper-ns-bin";
const EVIL_TARGET: &str = "/tmp/tupper-ns-evil";
const USER: &str = "tupdev";
const NO_RANGE_USER: &str = "tupnorange";

fn enabled() -> bool {
    // The tests are #[ignore]d; run on purpose without their environment
    // they fail rather than pass having done nothing.
    assert_eq!(
        std::env::var("TUPPER_NS_TESTS").as_deref(),
        Ok("1"),
        "set TUPPER_NS_TESTS=1 to run the tupper-ns end-to-end tests (tests/run.sh does)"
    );
    // SAFETY: geteuid cannot fail.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "the tupper-ns end-to-end tests must run as root"
    );
    true
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run command");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn uid_of(user: &str) -> u32 {
    run(Command::new("id").arg("-u").arg(user))
        .trim()
        .parse()
        .unwrap()
}

fn mkdir_private(p: &Path) {
    std::fs::create_dir_all(p).unwrap();
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o700)).unwrap();
}

/// A busybox root at `root`, owned by `owner` (container root on the host).
fn busybox_root(root: &Path, owner: u32) {
    let _ = std::fs::remove_dir_all(root);
    for d in ["bin", "etc", "root", "tmp"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    for applet in run(Command::new("/bin/busybox").arg("--list")).lines() {
        if applet != "busybox" {
            symlink("busybox", root.join("bin").join(applet)).unwrap();
        }
    }
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    std::fs::write(root.join("etc/group"), "root:x:0:\ntty:x:5:\n").unwrap();
    run(Command::new("chown")
        .args(["-R", "-h", &format!("{owner}:{owner}")])
        .arg(root));
}

struct Fixture {
    helper: PathBuf,
    drive: PathBuf,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let built = PathBuf::from(env!("CARGO_BIN_EXE_tupper-ns"));
        let drive_built = built.parent().unwrap().join("examples/drive");
        assert!(
            drive_built.exists(),
            "{} missing: run `cargo test -p tupper-ns` (builds examples) or `cargo build -p tupper-ns --examples`",
            drive_built.display()
        );
        // Installed copy with file capabilities, like the package does.
        std::fs::create_dir_all(BIN).unwrap();
        std::fs::set_permissions(BIN, std::fs::Permissions::from_mode(0o755)).unwrap();
        let (helper, drive) = (Path::new(BIN).join("tupper-ns"), Path::new(BIN).join("drive"));
        let _ = std::fs::remove_file(&helper);
        let _ = std::fs::remove_file(&drive);
        std::fs::copy(&built, &helper).unwrap();
        std::fs::copy(&drive_built, &drive).unwrap();
        run(Command::new("setcap")
            .arg("cap_setuid,cap_setgid,cap_dac_read_search=p")
            .arg(&helper));

        let store = Path::new(STORE);
        let uid = uid_of(USER);
        for d in [store.to_path_buf(), store.join("containers")] {
            mkdir_private(&d);
        }
        let mine = store.join("containers").join(uid.to_string());
        let roots = store.join("containers/0");
        mkdir_private(&mine);
        mkdir_private(&roots);
        let base = subid_base(USER, uid);
        busybox_root(&mine.join(OK), base);
        busybox_root(&roots.join(ROOTS), 0);

        // A root whose /proc is a symlink to a host directory.
        busybox_root(&mine.join(EVIL), base);
        std::fs::create_dir_all(EVIL_TARGET).unwrap();
        symlink(EVIL_TARGET, mine.join(EVIL).join("proc")).unwrap();
        run(Command::new("chown")
            .args(["-h", &format!("{base}:{base}")])
            .arg(mine.join(EVIL).join("proc")));

        // tupdev's "container" that is a symlink to root's.
        let link = mine.join(LINK);
        let _ = std::fs::remove_file(&link);
        symlink(format!("../0/{ROOTS}"), &link).unwrap();

        // A user without subordinate ids (system users get none from useradd).
        if Command::new("id").arg(NO_RANGE_USER).output().map_or(true, |o| !o.status.success()) {
            run(Command::new("useradd").args(["-r", "-M", "-s", "/usr/sbin/nologin", NO_RANGE_USER]));
        }
        Fixture { helper, drive }
    })
}

#[derive(Debug)]
struct Outcome {
    stdout: String,
    /// `DRIVE ...` lines from the driver, without the prefix.
    events: Vec<String>,
    stderr: String,
}

impl Outcome {
    fn event(&self, prefix: &str) -> Option<&str> {
        self.events.iter().find_map(|e| e.strip_prefix(prefix))
    }
    fn exit(&self) -> Option<i32> {
        self.event("exit ").map(|c| c.parse().unwrap())
    }
    fn error(&self) -> &str {
        self.event("error ")
            .unwrap_or_else(|| panic!("no error reported: {self:#?}"))
    }
}

/// Spawn and start `cmd` in container `id` as `user` (None: as root).
fn drive(user: Option<&str>, id: &str, workdir: &str, cmd: &[&str]) -> Outcome {
    drive_with(user, id, workdir, cmd, &[])
}

fn drive_with(
    user: Option<&str>,
    id: &str,
    workdir: &str,
    cmd: &[&str],
    env: &[(&str, &str)],
) -> Outcome {
    let f = fixture();
    // A leading `--tty --` in `cmd` asks for a terminal.
    let (tty, cmd): (&[&str], &[&str]) = match cmd {
        ["--tty", "--", rest @ ..] => (&["--tty"], rest),
        _ => (&[], cmd),
    };
    let mut c = match user {
        Some(u) => {
            let mut c = Command::new("setpriv");
            c.arg(format!("--reuid={u}"))
                .arg(format!("--regid={u}"))
                .args(["--init-groups", "--inh-caps=-all"])
                .arg(&f.drive);
            c
        }
        None => Command::new(&f.drive),
    };
    c.arg(&f.helper)
        .args([id, "tupperbox", workdir])
        .args(tty)
        .arg("--")
        .args(cmd);
    c.current_dir("/").envs(env.iter().copied());
    let out = c.output().expect("run driver");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    Outcome {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        events: stderr
            .lines()
            .filter_map(|l| l.strip_prefix("DRIVE ").map(str::to_string))
            .collect(),
        stderr,
    }
}

fn user_run(cmd: &str) -> Outcome {
    let o = drive(Some(USER), OK, "/", &["sh", "-c", cmd]);
    assert_eq!(
        o.event("netns-open "),
        Some("ok"),
        "init must stay dumpable: {o:#?}"
    );
    assert!(o.event("spawned ").is_some(), "{o:#?}");
    assert!(o.event("started").is_some(), "{o:#?}");
    o
}

#[test]
#[ignore = "needs root and TUPPER_NS_TESTS=1: run by tests/run.sh"]
fn container_sees_its_own_world() {
    if !enabled() {
        return;
    }
    let o = user_run("hostname; echo $$; id; cat /proc/self/uid_map /proc/self/gid_map; cat /sys/class/net/lo/flags; pwd");
    let lines: Vec<_> = o
        .stdout
        .lines()
        .map(str::split_whitespace)
        .map(|w| w.collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(lines[0], "tupperbox", "{o:#?}");
    assert_eq!(lines[1], "1", "init is pid 1");
    assert_eq!(lines[2], "uid=0(root) gid=0(root)");
    let base = subid_base(USER, uid_of(USER));
    assert_eq!(lines[3], format!("0 {base} 65536"));
    assert_eq!(lines[4], format!("0 {base} 65536"));
    let lo = u32::from_str_radix(lines[5].trim_start_matches("0x"), 16).unwrap();
    assert_eq!(lo & 1, 1, "lo is up");
    assert_eq!(lines[6], "/");
    assert_eq!(o.exit(), Some(0));
}

#[test]
#[ignore = "needs root and TUPPER_NS_TESTS=1: run by tests/run.sh"]
fn only_container_processes_and_mounts_are_visible() {
    if !enabled() {
        return;
    }
    let o = user_run("ps -o pid,comm; true");
    let pids: Vec<_> = o.stdout.lines().skip(1).collect();
    assert_eq!(pids.len(), 2, "sh and ps only: {o:#?}");

    let o = user_run("cat /proc/self/mountinfo");
    for line in o.stdout.lines() {
        let mountpoint = line.split(' ').nth(4).unwrap();
        assert!(
            mountpoint == "/"
                || ["/proc", "/sys", "/dev"]
                    .iter()
                    .any(|p| mountpoint.starts_with(p)),
            "host mount visible: {line}"
        );
    }
    assert!(o.stdout.lines().count() >= 10, "{o:#?}");
}

#[test]
#[ignore = "needs root and TUPPER_NS_TESTS=1: run by tests/run.sh"]
fn capabilities_are_the_default_set() {
    if !enabled() {
        return;
    }
    // grep directly, not through sh (which ignores some signals itself).
    let o = drive(
        Some(USER),
        OK,
        "/",
        &[
            "grep",
            "-E",
            "^Cap(Prm|Eff|Bnd|Amb)|NoNewPrivs|SigIgn|SigBlk",
            "/proc/self/status",
        ],
    );
    let field = |name: &str| {
        o.stdout
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| panic!("{name} missing: {o:#?}"))
    };
    // CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP
    // NET_BIND_SERVICE NET_RAW SYS_CHROOT MKNOD AUDIT_WRITE SETFCAP
    assert_eq!(field("CapBnd:"), "00000000a80425fb");
    assert_eq!(field("CapPrm:"), "00000000a80425fb");
    assert_eq!(field("CapEff:"), "00000000a80425fb");
    assert_eq!(field("CapAmb:"), "0000000000000000");
    assert_eq!(field("NoNewPrivs:"), "1");
    assert_eq!(
        field("SigIgn:"),
        "0000000000000000",
        "no signal stays ignored"
    );
    assert_eq!(field("SigBlk:"), "0000000000000000");
}

#[test]
#[ignore = "needs root and TUPPER_NS_TESTS=1: run by tests/run.sh"]
fn exit_code_propagates() {
    if !enabled() {
        return;
    }
    let o = user_run("echo to-stdout; echo to-stderr >&2; exit 42");
    assert_eq!(o.exit(), Some(42));
    assert_eq!(o.stdout, "to-stdout\n");
    assert!(o.stderr.contains("to-stderr"), "{o:#?}");
}

#[test]
#[ignore = "needs root and TUPPER_NS_TESTS=1: run by tests/run.sh"]
fn command_not_found_is_127() {
    if !enabled() {
        return;
    }
    let o = drive(Some(USER), OK, "/", &["no-such-command"]);
    assert_eq!(
        o.event("exec-error "),
        Some(r#"CommandNotFound tupper: "no-such-command": executable file not found in $PATH"#),
        "{o:#?}"
    );
    assert_eq!(o.exit(), Some(127));
}

#[test]
#[ignore = "needs root and TUPPER_NS_TESTS=1: run by tests/run.sh"]
fn not_executable_is_126() {
    if !enabled() {
        return;
    }
    let o = drive(Some(USER), OK, "/", &["/etc/passwd"]);
    assert_eq!(
        o.event("exec-error "),
        Some(r#"NotExecutable tupper: "/etc/passwd": permission denied"#),
        "{o:#?}"
    );
    assert_eq!(o.exit(), Some(126));
}

#[test]
#[ignore = "needs root and TUPPER_NS_TESTS=1: run by tests/run.sh"]
fn missing_workdir_is_refused() {
    if !enabled() {
        return;
    }
    let o = drive(Some(USER), OK, "/nonexistent", &["true"]);
    assert!(
        o.error()
            .starts_with("System working directory \"/nonexistent\""),
        "{o:#?}"
    );
    assert_eq!(
        o.event("children "),
        Some("some"),
        "the killed init is left for the supervisor to reap"
    );
}

#[test]
#[ignore = "needs root and TUPPER_NS_TESTS=1: run by tests/run.sh"]
fn user_without_subordinate_ids_gets_nothing() {
    if !enabled() {
        return;
    }
    let o = drive(Some(NO_RANGE_USER), OK, "/", &["true"]);
    assert!(
        o.error()
            .starts_with("NoSubordinateIds user tupnorange has no subordinate id range"),
        "{o:#?}"
    );
    assert!(o.error().contains("usermod --add-subuids"), "{o:#?}");
    assert_eq!(o.event("children "), Some("none"));
}

#[test]
#[ignore = "needs root and TUPPER_NS_TESTS=1: run by tests/run.sh"]
fn hostile_container_ids_are_refused() {
    if !enabled() {
        return;
    }
    let o = drive(Some(USER), "../x", "/", &["true"]);
    assert!(
        o.error()
            .starts_with("InvalidRequest container id \"../x\""),
        "{o:#?}"
    );
    assert_eq!(o.event("children "), Some("none"));

    // Missing, another user's, and a symlink to another user's: one answer shape.
    for id in [MISSING, ROOTS, LINK] {
        let o = drive(Some(USER), id, "/", &["true"]);
        assert_eq!(
            o.error(),
            format!("NotFound container {id} has no root filesystem"),
            "{o:#?}"
        );
        assert_eq!(o.event("children "), Some("none"));
    }
}

#[test]
#[ignore = "needs root and TUPPER_NS_TESTS=1: run by tests/run.sh"]
fn symlinked_mount_target_is_refused() {
    if !enabled() {
        return;
    }
    let o = drive(Some(USER), EVIL, "/", &["true"]);
    assert!(
        o.error()
            .starts_with("Unsafe refusing to mount on /proc in the container"),
        "{o:#?}"
    );
    // Nothing was mounted on the host directory the symlink points to.
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(EVIL_TARGET));
    assert_eq!(std::fs::read_dir(EVIL_TARGET).unwrap().count(), 0);
}

#[test]
#[ignore = "needs root and TUPPER_NS_TESTS=1: run by tests/run.sh"]
fn root_without_range_runs_without_user_namespace() {
    if !enabled() {
        return;
    }
    let o = drive(
        None,
        ROOTS,
        "/",
        &[
            "sh",
            "-c",
            "hostname; echo $$; id -u; wc -l < /proc/self/mountinfo",
        ],
    );
    let lines: Vec<_> = o.stdout.lines().map(str::trim).collect();
    assert_eq!(lines[..3], ["tupperbox", "1", "0"], "{o:#?}");
    assert_eq!(o.exit(), Some(0));
}

#[test]
#[ignore = "needs root and TUPPER_NS_TESTS=1: run by tests/run.sh"]
fn helper_without_channel_fails_cleanly() {
    if !enabled() {
        return;
    }
    let out = Command::new(&fixture().helper).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("file descriptor 3 is not a socket"));
}

#[test]
#[ignore = "needs root and TUPPER_NS_TESTS=1: run by tests/run.sh"]
fn init_exits_quietly_when_the_supervisor_goes_away() {
    if !enabled() {
        return;
    }
    let o = drive_with(
        Some(USER),
        OK,
        "/",
        &["sh", "-c", "echo ran"],
        &[("DRIVE_NO_START", "1")],
    );
    assert!(o.event("spawned ").is_some(), "{o:#?}");
    assert_eq!(o.exit(), Some(125), "{o:#?}");
    assert_eq!(o.stdout, "", "the command never ran");
}

#[test]
#[ignore = "needs root and TUPPER_NS_TESTS=1: run by tests/run.sh"]
fn request_environment_is_passed() {
    if !enabled() {
        return;
    }
    let o = drive_with(
        Some(USER),
        OK,
        "/tmp",
        &["sh", "-c", "echo $FOO $HOME $HOSTNAME; pwd; echo $PATH"],
        &[("DRIVE_ENV", "FOO=bar,HOME=/home/x")],
    );
    assert_eq!(
        o.stdout,
        "bar /home/x tupperbox\n/tmp\n/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n",
        "{o:#?}"
    );
}

#[test]
#[ignore = "needs root and TUPPER_NS_TESTS=1: run by tests/run.sh"]
fn tty_becomes_the_controlling_terminal() {
    if !enabled() {
        return;
    }
    let o = drive(
        Some(USER),
        OK,
        "/",
        &[
            "--tty",
            "--",
            "sh",
            "-c",
            "echo $TERM; tty; ps -o pid,tty,comm",
        ],
    );
    assert_eq!(o.exit(), Some(0), "{o:#?}");
    let lines: Vec<_> = o.stdout.lines().map(str::trim).collect();
    assert_eq!(lines[0], "xterm", "{o:#?}");
    // The terminal belongs to the container's own devpts instance.
    assert_eq!(lines[1], "/dev/pts/0", "{o:#?}");
    let init = lines
        .iter()
        .find(|l| l.starts_with("1 "))
        .expect("pid 1 listed");
    assert!(
        !init.contains(" ? "),
        "pid 1 has no controlling terminal: {o:#?}"
    );
}

/// Start of the test user's subordinate range (uids and gids must match).
fn subid_base(user: &str, uid: u32) -> u32 {
    let read = |f: &str| {
        let text = std::fs::read_to_string(f).unwrap_or_default();
        tupper_config::subid::parse_ranges(&text, uid, Some(user))
    };
    let (u, g) = (read("/etc/subuid"), read("/etc/subgid"));
    assert!(
        u.is_some() && u == g,
        "{user} needs equal subuid and subgid ranges"
    );
    u.unwrap_or_default()
}
