//! Harness for the end-to-end tests.
//!
//! `tests/run.sh` installs the binaries into a test prefix with their file
//! capabilities, creates an unprivileged user and a network namespace, and
//! runs these tests as root with `TUPPER_IT=1`. Every product command runs as
//! the unprivileged user inside that namespace; root only inspects results.
//! Every such test is `#[ignore]`d, so a plain `cargo test` reports it as
//! ignored; run with `--ignored` but without `TUPPER_IT=1`, it fails.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

pub mod tarball;

/// Settings exported by `tests/run.sh`.
#[derive(Debug, Clone)]
pub struct Env {
    pub prefix: PathBuf,
    pub netns: String,
    pub user: String,
    pub norange_user: String,
    /// A second user with subordinate ids (the other party of the hostile network tests).
    pub second_user: String,
    pub store: PathBuf,
    pub state_dir: PathBuf,
    pub image_tar: PathBuf,
    pub bridge: String,
    /// The test driver, copied where the unprivileged user can execute it.
    pub driver: PathBuf,
    /// The Debian root filesystem tarball `tests/run.sh` built with
    /// mmdebstrap and imported as [`DEBIAN_IMAGE`] (`TUPPER_DEBIAN_TAR`);
    /// `None` when the suite could not build it (see [`Env::debian_tar`]).
    pub debian_tar: Option<PathBuf>,
    // Issue 12: the suite also runs against the installed .deb (prefix /usr).
    /// The configuration directory compiled in (`TUPPER_SYSCONFDIR`, else PREFIX/etc).
    pub sysconfdir: PathBuf,
}

/// The name the suite imports the Debian tarball under, as the test user.
pub const DEBIAN_IMAGE: &str = "debian";

fn var(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("TUPPER_IT=1 but {name} is not set (run tests/run.sh)"))
}

/// `sh -c` script: mount the cgroup hierarchies of process `$0` (the test,
/// in the host's mount namespace) again, then `exec "$@"`.
const CGROUP_MOUNTS: &str = r#"mount -t tmpfs -o mode=755 tmpfs /sys/fs/cgroup &&
awk '/ - cgroup2? / { split($0, a, " - "); split(a[1], l, " "); split(a[2], r, " "); if (l[4] == "/" && index(l[5], "/sys/fs/cgroup/") == 1) print r[1], l[5], r[3] }' "/proc/$0/mountinfo" |
while read -r fs mp opts; do mkdir -p "$mp" && mount -t "$fs" -o "$opts" "$fs" "$mp" || exit 1; done && exec "$@""#;

impl Env {
    /// The environment `tests/run.sh` set up; panics without it (the tests
    /// that call this are `#[ignore]`d, so this only happens when one is run
    /// on purpose outside the suite). Never a silent skip.
    /// `driver_build` is the cargo-built `tupper-drive` (the build tree may
    /// not be reachable by the test user, so it is copied into the prefix).
    pub fn get(driver_build: &str) -> Env {
        assert_eq!(
            std::env::var("TUPPER_IT").ok().as_deref(),
            Some("1"),
            "end-to-end tests need root and an installed build: run tests/run.sh"
        );
        let prefix: PathBuf = var("TUPPER_PREFIX").into();
        // Where the test user can execute the driver: PREFIX/test-bin, or
        // TUPPER_TEST_BIN when the prefix is the system's (/usr).
        let test_bin: PathBuf = std::env::var_os("TUPPER_TEST_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| prefix.join("test-bin"));
        let driver = test_bin.join("tupper-drive");
        let tmp = driver.with_extension(format!("{}", std::process::id()));
        std::fs::create_dir_all(&test_bin).expect("create test-bin");
        std::fs::copy(driver_build, &tmp).expect("copy the driver");
        std::fs::rename(&tmp, &driver).expect("install the driver");
        Env {
            driver,
            prefix: prefix.clone(),
            netns: var("TUPPER_NETNS"),
            user: var("TUPPER_USER"),
            norange_user: var("TUPPER_NORANGE_USER"),
            second_user: var("TUPPER_SECOND_USER"),
            store: var("TUPPER_STORE").into(),
            state_dir: var("TUPPER_STATE_DIR").into(),
            image_tar: var("TUPPER_IMAGE_TAR").into(),
            bridge: var("TUPPER_BRIDGE"),
            debian_tar: std::env::var_os("TUPPER_DEBIAN_TAR")
                .filter(|p| !p.is_empty())
                .map(PathBuf::from),
            sysconfdir: std::env::var_os("TUPPER_SYSCONFDIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| prefix.join("etc")),
        }
    }

    /// The Debian tarball; panics when the suite did not build it (tests
    /// that need it fail rather than pass: `tests/run.sh` skips them by name
    /// only outside CI, saying so).
    pub fn debian_tar(&self) -> &std::path::Path {
        self.debian_tar.as_deref().expect(
            "TUPPER_DEBIAN_TAR is not set: tests/run.sh builds the Debian image with mmdebstrap",
        )
    }

    pub fn libexec(&self) -> PathBuf {
        self.prefix.join("libexec/tupperware")
    }

    pub fn supervisor(&self) -> PathBuf {
        self.prefix.join("bin/tupper-supervisor")
    }

    pub fn uid(&self, user: &str) -> u32 {
        let out = Command::new("id")
            .arg("-u")
            .arg(user)
            .output()
            .expect("id -u");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("uid")
    }

    /// The supervisor's state directory of `user` (the test users have no
    /// runtime directory, so it is in their home).
    pub fn state_dir_of(&self, user: &str) -> PathBuf {
        let out = Command::new("getent")
            .args(["passwd", user])
            .output()
            .expect("getent passwd");
        let line = String::from_utf8_lossy(&out.stdout).into_owned();
        let home = line.trim().split(':').nth(5).expect("home directory");
        PathBuf::from(home).join(".local/state/tupperware")
    }

    /// A command run as `user` with no capabilities, inside the test netns.
    /// `ip netns exec` mounts a sysfs of the namespace over `/sys`, hiding
    /// the cgroup hierarchies: they are mounted again in its private mount
    /// namespace as the host has them (issue 9: `tupper-cgroup` and `stats`).
    pub fn as_user(&self, user: &str, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.netns, "sh", "-c", CGROUP_MOUNTS])
            .arg(std::process::id().to_string())
            .arg("setpriv")
            .arg(format!("--reuid={user}"))
            .arg(format!("--regid={user}"))
            .args(["--init-groups", "--inh-caps=-all", "--reset-env", "--"])
            .arg(program);
        c.stdin(Stdio::null());
        c
    }

    /// `program` as root inside the test netns, with the cgroup hierarchies
    /// mounted again as in [`Env::as_user`].
    pub fn as_root_in_netns(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.netns, "sh", "-c", CGROUP_MOUNTS])
            .arg(std::process::id().to_string())
            .arg(program);
        c.stdin(Stdio::null());
        c
    }

    /// `tupper-supervisor ARGS` as the test user.
    pub fn tupper(&self, args: &[&str]) -> Command {
        let mut c = self.as_user(&self.user, &self.supervisor().to_string_lossy());
        c.args(args);
        c
    }

    pub fn run_ok(&self, args: &[&str]) -> String {
        let out = self.tupper(args).output().expect("spawn supervisor");
        assert_success(&out, args);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `run --rm --network none ARGS` as the test user (`ARGS`: the image,
    /// then the command): a container that leaves nothing behind.
    pub fn run_offline(&self, args: &[&str]) -> Command {
        let mut c = self.tupper(&["run", "--rm", "--network", "none"]);
        c.args(args);
        c
    }

    /// The test driver talking to a helper directly, as `user`.
    pub fn drive(&self, user: &str, args: &[&str]) -> Output {
        let mut c = self.as_user(user, &self.driver.to_string_lossy());
        c.arg(self.libexec()).args(args);
        c.output().expect("spawn driver")
    }

    /// `tupper-drive` started in the background (stdout piped), as [`Env::drive`].
    pub fn drive_spawn(&self, user: &str, args: &[&str]) -> Child {
        let mut c = self.as_user(user, &self.driver.to_string_lossy());
        c.arg(self.libexec())
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c.spawn().expect("spawn driver")
    }

    /// Host interfaces in the test netns whose names start with `tw`, once
    /// the kernel has removed the released ones: a released container's host
    /// end goes with its network namespace, asynchronously (issue 11), so
    /// this waits (at most 3 s) until every `tw` interface is one a lease
    /// names, then lists them; after the wait, whatever is left.
    pub fn veths(&self) -> Vec<String> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
        loop {
            let now = self.veths_now();
            let leased = self.leased_interfaces();
            if now.iter().all(|n| leased.contains(n)) || std::time::Instant::now() >= deadline {
                return now;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// The host interfaces the lease records name.
    pub fn leased_interfaces(&self) -> Vec<String> {
        self.lease_records()
            .iter()
            .filter_map(|(_, text)| {
                let rest = text.split("\"host_interface\"").nth(1)?;
                let value = rest.split('"').nth(1)?;
                Some(value.to_string())
            })
            .collect()
    }

    /// Host interfaces in the test netns whose names start with `tw`, as
    /// they are now (released ones the kernel is still removing included).
    pub fn veths_now(&self) -> Vec<String> {
        let out = Command::new("ip")
            .args(["-n", &self.netns, "-o", "link", "show"])
            .output()
            .expect("ip link");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|n| n.split('@').next().unwrap_or(n).to_string())
            .filter(|n| n.starts_with("tw"))
            .collect()
    }

    /// Container subvolumes of `user` in the store.
    pub fn container_roots(&self, user: &str) -> Vec<String> {
        let dir = self
            .store
            .join("containers")
            .join(self.uid(user).to_string());
        match std::fs::read_dir(dir) {
            Ok(d) => d
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Subvolumes of the store, as `btrfs subvolume list` prints their paths.
    pub fn subvolumes(&self) -> Vec<String> {
        let all = Command::new("btrfs")
            .args(["subvolume", "list"])
            .arg(&self.store)
            .output()
            .expect("btrfs subvolume list");
        String::from_utf8_lossy(&all.stdout)
            .lines()
            .filter_map(|l| l.split(" path ").nth(1))
            .map(str::to_string)
            .collect()
    }

    /// Text of the lease state (every record in `leases/<address>`, and a
    /// legacy `leases.json` if one is left), or empty when none.
    pub fn leases(&self) -> String {
        let mut text =
            std::fs::read_to_string(self.state_dir.join("leases.json")).unwrap_or_default();
        for (_, record) in self.lease_records() {
            text.push_str(&record);
        }
        text
    }

    /// The lease records: (address, JSON text), lowest address first.
    pub fn lease_records(&self) -> Vec<(std::net::Ipv4Addr, String)> {
        let mut records: Vec<_> = std::fs::read_dir(self.state_dir.join("leases"))
            .map(|d| {
                d.flatten()
                    .filter_map(|e| e.file_name().to_str()?.parse().ok())
                    .filter_map(|a: std::net::Ipv4Addr| {
                        let path = self.state_dir.join("leases").join(a.to_string());
                        Some((a, std::fs::read_to_string(path).ok()?))
                    })
                    .collect()
            })
            .unwrap_or_default();
        records.sort();
        records
    }

    /// `image import NAME -` as `user`, feeding `data` on standard input.
    pub fn import(&self, user: &str, name: &str, data: &[u8]) -> Output {
        use std::io::Write;
        let mut c = self.as_user(user, &self.supervisor().to_string_lossy());
        c.args(["image", "import", name, "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().expect("spawn supervisor");
        let mut stdin = child.stdin.take().expect("piped stdin");
        // A refusing helper may stop reading early: a write error is not the test's failure.
        let _ = stdin.write_all(data);
        drop(stdin);
        child.wait_with_output().expect("wait supervisor")
    }

    /// Start a supervisor in the background with stdout piped.
    pub fn spawn(&self, args: &[&str]) -> Child {
        let mut c = self.tupper(args);
        c.stdout(Stdio::piped()).stderr(Stdio::piped());
        c.spawn().expect("spawn supervisor")
    }
}

// Setup the test files share: the policy file of one test, the clean-up of
// containers a failing test leaves, the outputs of a finished command.

/// The suite's `policy.toml` (in [`Env::sysconfdir`]) replaced for one test;
/// dropped, what was there is written back (or the file removed, when there
/// was none). Written mode 0644: the helpers read it as the test user.
pub struct PolicyFile {
    path: PathBuf,
    before: Option<Vec<u8>>,
}

impl PolicyFile {
    pub fn set(e: &Env, text: &str) -> PolicyFile {
        let path = e.sysconfdir.join("policy.toml");
        let before = std::fs::read(&path).ok();
        write_readable(&path, text.as_bytes()).expect("write the policy");
        PolicyFile { path, before }
    }
}

fn write_readable(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, bytes)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))
}

impl Drop for PolicyFile {
    fn drop(&mut self) {
        let restored = match &self.before {
            Some(b) => write_readable(&self.path, b),
            None => match std::fs::remove_file(&self.path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            },
        };
        // A test that already fails says why; a second panic would abort.
        if let Err(e) = restored {
            if std::thread::panicking() {
                eprintln!("could not restore {}: {e}", self.path.display());
            } else {
                panic!("could not restore {}: {e}", self.path.display());
            }
        }
    }
}

/// Removes the named containers of the test user (and collects what they
/// leave) if the test fails half-way, so that the next test starts clean.
pub struct Tidy<'a>(pub &'a Env, pub Vec<String>);

impl Drop for Tidy<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let mut args = vec!["rm", "-f"];
            args.extend(self.1.iter().map(String::as_str));
            let _ = self.0.tupper(&args).output();
            let _ = self.0.tupper(&["gc"]).output();
        }
    }
}

/// [`Tidy`] of the containers `names`.
pub fn tidy<'a>(e: &'a Env, names: &[&str]) -> Tidy<'a> {
    Tidy(e, names.iter().map(|s| s.to_string()).collect())
}

/// Standard output of a finished command.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Standard error of a finished command.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Standard output and standard error of a finished command, together.
pub fn output_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub fn assert_success(out: &Output, what: &[&str]) {
    assert!(
        out.status.success(),
        "{what:?} failed with {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Read lines from a child's stdout until one contains `needle`.
pub fn read_until(child: &mut Child, needle: &str) -> Vec<String> {
    let stdout = child.stdout.take().expect("piped stdout");
    let mut reader = BufReader::new(stdout);
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => panic!("output ended before {needle:?}: {lines:?}"),
            Ok(_) => {
                let found = line.contains(needle);
                lines.push(line);
                if found {
                    // Keep draining in the background so the container never blocks on a full pipe.
                    std::thread::spawn(move || {
                        let mut sink = String::new();
                        while reader.read_line(&mut sink).map(|n| n > 0).unwrap_or(false) {
                            sink.clear();
                        }
                    });
                    return lines;
                }
            }
        }
    }
}

/// The IPv4 address from `ip -4 addr` output.
pub fn inet_address(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.trim().strip_prefix("inet "))
        .and_then(|r| r.split('/').next())
        .map(str::to_string)
}
