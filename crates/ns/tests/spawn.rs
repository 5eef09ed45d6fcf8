//! End-to-end tests of `tupper-ns` across the real privilege boundary.
//!
//! They drive the build `tests/run.sh` installed into its test prefix (whose
//! compiled-in configuration points at the test store, never at
//! `/var/lib/tupperware`), with the file capabilities the installer gave it,
//! through the one test driver `tupper-drive` (its `ns-spawn` command stands
//! in for the supervisor), as the helper test user. `tests/run.sh` passes
//! where everything is in environment variables (see [`Setup`]) and removes
//! what these tests create afterwards. Each test is `#[ignore]`d; run with
//! `--ignored` outside `tests/run.sh`, it fails instead of passing having
//! done nothing.
//!
//! Store layout used (in the test store):
//! - `containers/<user>/OK`      busybox root owned by container root (the user's range)
//! - `containers/<user>/EVIL`    same, but `proc` is a symlink to a host dir
//! - `containers/<user>/LINK`    a symlink to root's container
//! - `containers/0/ROOTS`        root's busybox root (no user namespace)

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const OK: &str = "0123456789abcdef0123456789abcdef";
const EVIL: &str = "22222222222222222222222222222222";
const LINK: &str = "11111111111111111111111111111111";
const ROOTS: &str = "abcdef0123456789abcdef0123456789";
const MISSING: &str = "ffffffffffffffffffffffffffffffff";

/// What `tests/run.sh` passes in.
struct Setup {
    /// `$PREFIX/libexec/tupperware`: the installed helpers, with file capabilities.
    libexec: PathBuf,
    /// The test store the installed build's configuration names.
    store: PathBuf,
    /// `tupper-drive`, installed where the test users can execute it.
    drive: PathBuf,
    /// A directory of the test prefix for files outside the store; run.sh removes it.
    scratch: PathBuf,
    /// A user with subordinate ids, allowed by the installed policy.
    user: String,
    /// A user without subordinate ids.
    no_range_user: String,
}

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: the tupper-ns end-to-end tests are run by tests/run.sh")
    })
}

fn setup() -> &'static Setup {
    static S: OnceLock<Setup> = OnceLock::new();
    S.get_or_init(|| {
        // SAFETY: geteuid cannot fail.
        assert_eq!(
            unsafe { libc::geteuid() },
            0,
            "the tupper-ns end-to-end tests must run as root (tests/run.sh)"
        );
        let s = Setup {
            libexec: Path::new(&var("TUPPER_PREFIX")).join("libexec/tupperware"),
            store: var("TUPPER_STORE").into(),
            drive: var("TUPPER_DRIVE").into(),
            scratch: var("TUPPER_SCRATCH").into(),
            user: var("TUPPER_HELPER_USER"),
            no_range_user: var("TUPPER_NORANGE_USER"),
        };
        assert_ne!(
            s.store,
            Path::new("/var/lib/tupperware"),
            "never the production store"
        );
        for p in [s.libexec.join("tupper-ns"), s.drive.clone()] {
            assert!(p.is_file(), "{} is missing", p.display());
        }
        s
    })
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

fn gid_of(user: &str) -> u32 {
    run(Command::new("id").arg("-g").arg(user))
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
    /// The directory `/proc` of EVIL points to.
    evil_target: PathBuf,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let s = setup();
        let helper = s.libexec.join("tupper-ns");
        // install.sh created the store and its top directories.
        let containers = s.store.join("containers");
        assert!(containers.is_dir(), "{} missing", containers.display());
        let uid = uid_of(&s.user);
        let mine = containers.join(uid.to_string());
        let roots = containers.join("0");
        mkdir_private(&mine);
        mkdir_private(&roots);
        // Container root is the caller on the host.
        let base = uid;
        busybox_root(&mine.join(OK), base);
        busybox_root(&roots.join(ROOTS), 0);

        // A root whose /proc is a symlink to a host directory.
        busybox_root(&mine.join(EVIL), base);
        let evil_target = s.scratch.join("ns-evil");
        let _ = std::fs::remove_dir_all(&evil_target);
        std::fs::create_dir_all(&evil_target).unwrap();
        symlink(&evil_target, mine.join(EVIL).join("proc")).unwrap();
        run(Command::new("chown")
            .args(["-h", &format!("{base}:{base}")])
            .arg(mine.join(EVIL).join("proc")));

        // The user's "container" that is a symlink to root's.
        let link = mine.join(LINK);
        let _ = std::fs::remove_file(&link);
        symlink(format!("../0/{ROOTS}"), &link).unwrap();
        Fixture {
            helper,
            evil_target,
        }
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
    flags: &[&str],
) -> Outcome {
    let (s, f) = (setup(), fixture());
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
                .arg(&s.drive);
            c
        }
        None => Command::new(&s.drive),
    };
    assert_eq!(f.helper, s.libexec.join("tupper-ns"));
    c.arg(&s.libexec)
        .args(["ns-spawn", id, "tupperbox", workdir])
        .args(tty)
        .args(flags)
        .arg("--")
        .args(cmd);
    c.current_dir("/");
    let out = c.output().expect("run driver");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "the driver failed ({:?}): {stderr}",
        out.status
    );
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
    let o = drive(Some(&setup().user), OK, "/", &["sh", "-c", cmd]);
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
#[ignore = "needs root, the test prefix and store: run by tests/run.sh"]
fn container_sees_its_own_world() {
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
    let user = &setup().user;
    let uid = uid_of(user);
    let gid = gid_of(user);
    let base = subid_base(user, uid);
    assert_eq!(lines[3], format!("0 {uid} 1"));
    assert_eq!(lines[4], format!("1 {base} 65535"));
    assert_eq!(lines[5], format!("0 {gid} 1"));
    assert_eq!(lines[6], format!("1 {base} 65535"));
    let lo = u32::from_str_radix(lines[7].trim_start_matches("0x"), 16).unwrap();
    assert_eq!(lo & 1, 1, "lo is up");
    assert_eq!(lines[8], "/");
    assert_eq!(o.exit(), Some(0));
}

#[test]
#[ignore = "needs root, the test prefix and store: run by tests/run.sh"]
fn only_container_processes_and_mounts_are_visible() {
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
#[ignore = "needs root, the test prefix and store: run by tests/run.sh"]
fn capabilities_are_the_default_set() {
    // grep directly, not through sh (which ignores some signals itself).
    let o = drive(
        Some(&setup().user),
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
    // Off unless asked for (`--security-opt no-new-privileges`), as in podman.
    assert_eq!(field("NoNewPrivs:"), "0");
    assert_eq!(
        field("SigIgn:"),
        "0000000000000000",
        "no signal stays ignored"
    );
    assert_eq!(field("SigBlk:"), "0000000000000000");
}

#[test]
#[ignore = "needs root, the test prefix and store: run by tests/run.sh"]
fn exit_code_propagates() {
    let o = user_run("echo to-stdout; echo to-stderr >&2; exit 42");
    assert_eq!(o.exit(), Some(42));
    assert_eq!(o.stdout, "to-stdout\n");
    assert!(o.stderr.contains("to-stderr"), "{o:#?}");
}

#[test]
#[ignore = "needs root, the test prefix and store: run by tests/run.sh"]
fn command_not_found_is_127() {
    let o = drive(Some(&setup().user), OK, "/", &["no-such-command"]);
    assert_eq!(
        o.event("exec-error "),
        Some(r#"CommandNotFound tupper: "no-such-command": executable file not found in $PATH"#),
        "{o:#?}"
    );
    assert_eq!(o.exit(), Some(127));
}

#[test]
#[ignore = "needs root, the test prefix and store: run by tests/run.sh"]
fn not_executable_is_126() {
    let o = drive(Some(&setup().user), OK, "/", &["/etc/passwd"]);
    assert_eq!(
        o.event("exec-error "),
        Some(r#"NotExecutable tupper: "/etc/passwd": permission denied"#),
        "{o:#?}"
    );
    assert_eq!(o.exit(), Some(126));
}

#[test]
#[ignore = "needs root, the test prefix and store: run by tests/run.sh"]
fn missing_workdir_is_refused() {
    let o = drive(Some(&setup().user), OK, "/nonexistent", &["true"]);
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
    // That init can still be ending (its mounts going) when the next start
    // of the same container comes: the start waits for the root to be free
    // rather than being refused as "still mounted".
    for _ in 0..5 {
        let o = drive(Some(&setup().user), OK, "/nonexistent", &["true"]);
        assert!(o.error().starts_with("System working directory"), "{o:#?}");
        let o = user_run("true");
        assert_eq!(o.exit(), Some(0), "{o:#?}");
    }
}

#[test]
#[ignore = "needs root, the test prefix and store: run by tests/run.sh"]
fn user_without_subordinate_ids_gets_nothing() {
    let user = &setup().no_range_user;
    let o = drive(Some(user), OK, "/", &["true"]);
    assert!(
        o.error().starts_with(&format!(
            "NoSubordinateIds user {user} has no subordinate id range"
        )),
        "{o:#?}"
    );
    assert!(o.error().contains("usermod --add-subuids"), "{o:#?}");
    assert_eq!(o.event("children "), Some("none"));
}

#[test]
#[ignore = "needs root, the test prefix and store: run by tests/run.sh"]
fn hostile_container_ids_are_refused() {
    let o = drive(Some(&setup().user), "../x", "/", &["true"]);
    assert!(
        o.error()
            .starts_with("InvalidRequest container id \"../x\""),
        "{o:#?}"
    );
    assert_eq!(o.event("children "), Some("none"));

    // Missing, another user's, and a symlink to another user's: one answer shape.
    for id in [MISSING, ROOTS, LINK] {
        let o = drive(Some(&setup().user), id, "/", &["true"]);
        assert_eq!(
            o.error(),
            format!("NotFound container {id} has no root filesystem"),
            "{o:#?}"
        );
        assert_eq!(o.event("children "), Some("none"));
    }
}

/// Issue 9: the root must be the overlay `tupper-storage` mounts; a plain
/// directory (a btrfs directory of the store would be one: its subvolume
/// ioctls let the caller choose quota groups) is refused before anything
/// is created.
#[test]
#[ignore = "needs root, the test prefix and store: run by tests/run.sh"]
fn a_root_that_is_not_the_storage_overlay_is_refused() {
    let scratch = setup().scratch.to_string_lossy().into_owned();
    let o = drive_with(
        Some(&setup().user),
        OK,
        "/",
        &["true"],
        &["--root-dir", &scratch],
    );
    assert!(
        o.error()
            .starts_with("Unsafe the container root must be the overlay tupper-storage mounted"),
        "{o:#?}"
    );
    assert_eq!(o.event("children "), Some("none"));
    // And the real one is an overlay, as the container sees it.
    // (busybox prints the filesystem's magic: overlayfs)
    let o = user_run("stat -f -c %t /");
    assert_eq!(o.stdout.trim(), "794c7630", "{o:#?}");
}

#[test]
#[ignore = "needs root, the test prefix and store: run by tests/run.sh"]
fn symlinked_mount_target_is_refused() {
    let o = drive(Some(&setup().user), EVIL, "/", &["true"]);
    assert!(
        o.error()
            .starts_with("Unsafe refusing to mount on /proc in the container"),
        "{o:#?}"
    );
    // Nothing was mounted on the host directory the symlink points to.
    let target = &fixture().evil_target;
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&*target.to_string_lossy()));
    assert_eq!(std::fs::read_dir(target).unwrap().count(), 0);
}

#[test]
#[ignore = "needs root, the test prefix and store: run by tests/run.sh"]
fn root_without_range_runs_without_user_namespace() {
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
#[ignore = "needs root, the test prefix and store: run by tests/run.sh"]
fn helper_without_channel_fails_cleanly() {
    let out = Command::new(&fixture().helper).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("file descriptor 3 is not a socket"));
}

#[test]
#[ignore = "needs root, the test prefix and store: run by tests/run.sh"]
fn init_exits_quietly_when_the_supervisor_goes_away() {
    let o = drive_with(
        Some(&setup().user),
        OK,
        "/",
        &["sh", "-c", "echo ran"],
        &["--no-start"],
    );
    assert!(o.event("spawned ").is_some(), "{o:#?}");
    assert_eq!(o.exit(), Some(125), "{o:#?}");
    assert_eq!(o.stdout, "", "the command never ran");
}

#[test]
#[ignore = "needs root, the test prefix and store: run by tests/run.sh"]
fn request_environment_is_passed() {
    let o = drive_with(
        Some(&setup().user),
        OK,
        "/tmp",
        &["sh", "-c", "echo $FOO $HOME $HOSTNAME; pwd; echo $PATH"],
        &["--env", "FOO=bar", "--env", "HOME=/home/x"],
    );
    assert_eq!(
        o.stdout,
        "bar /home/x tupperbox\n/tmp\n/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n",
        "{o:#?}"
    );
}

#[test]
#[ignore = "needs root, the test prefix and store: run by tests/run.sh"]
fn tty_becomes_the_controlling_terminal() {
    let o = drive(
        Some(&setup().user),
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
