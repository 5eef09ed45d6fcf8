//! Hostile end-to-end tests of the store (security issue #5, storage half):
//! an unprivileged user must not be able to create the store (and so make
//! the helper run mkfs for them), hang everyone on the store lock, fill the
//! store with a tiny tarball, or make a container root undeletable.
//!
//! Root only sets the scene (unmounting the store, holding a lock, writing
//! the policy file, creating subvolumes) and inspects results; the commands
//! under test run as the unprivileged test user.

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use tupper_integration::{assert_success, read_until, Env, PolicyFile};

fn env() -> Env {
    Env::get(env!("CARGO_BIN_EXE_tupper-drive"))
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn sh(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
    out
}

fn is_mounted(store: &Path) -> bool {
    Command::new("findmnt")
        .arg(store)
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// `tupper-supervisor ARGS` as `user` in the host's mount namespace (a mount
/// made inside `ip netns exec` would not outlive the command).
fn as_user_in_host_ns(e: &Env, user: &str, args: &[&str]) -> Output {
    Command::new("setpriv")
        .arg(format!("--reuid={user}"))
        .arg(format!("--regid={user}"))
        .args(["--init-groups", "--inh-caps=-all", "--reset-env", "--"])
        .arg(e.supervisor())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("spawn supervisor")
}

/// Wait for `child` at most `limit`; kill it (by its pid) and return `None`
/// if it is still running then.
fn wait_within(mut child: Child, limit: Duration) -> Option<Output> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if child.try_wait().expect("try_wait").is_some() {
            return Some(child.wait_with_output().expect("wait"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// Unmounts the store for a test and puts it back afterwards, whatever
/// happens: moves undone, then mounted again (as root if the test did not).
struct Unmounted<'e> {
    e: &'e Env,
    /// (from, to) renames to undo, last first.
    moved: Vec<(PathBuf, PathBuf)>,
}

impl<'e> Unmounted<'e> {
    fn new(e: &'e Env) -> Unmounted<'e> {
        sh(Command::new("umount").arg(&e.store));
        assert!(!is_mounted(&e.store));
        Unmounted {
            e,
            moved: Vec::new(),
        }
    }

    fn rename(&mut self, from: PathBuf, to: PathBuf) {
        std::fs::rename(&from, &to).expect("rename");
        self.moved.push((from, to));
    }
}

impl Drop for Unmounted<'_> {
    fn drop(&mut self) {
        for (from, to) in self.moved.drain(..).rev() {
            let _ = std::fs::rename(&to, &from);
        }
        if !is_mounted(&self.e.store) {
            let _ = Command::new(self.e.supervisor())
                .args(["image", "ls"])
                .stdout(Stdio::null())
                .status();
        }
    }
}

/// Names directly in `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn assert_not_created(out: &Output, who: &str) {
    assert_eq!(out.status.code(), Some(125), "{who}: {}", stderr(out));
    let err = stderr(out);
    assert!(
        err.contains("has not been created") && err.contains("as root"),
        "{who}: {err}"
    );
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn only_root_creates_the_store_and_users_mount_it_again() {
    let e = env();
    let mut scene = Unmounted::new(&e);
    // The image file gone (a fresh install whose administrator did not create
    // the store): neither user may make the helper create it.
    let image = e.store.join("storage.img");
    scene.rename(image.clone(), e.store.join("storage.img.aside"));
    let before = listing(&e.store);
    for user in [&e.user, &e.norange_user] {
        let out = e
            .as_user(user, &e.supervisor().to_string_lossy())
            .args(["image", "ls"])
            .output()
            .expect("spawn supervisor");
        assert_not_created(&out, user);
        let out = as_user_in_host_ns(&e, user, &["image", "ls"]);
        assert_not_created(&out, user);
    }
    assert_eq!(
        listing(&e.store),
        before,
        "something was created in the store"
    );
    assert!(!image.exists() && !is_mounted(&e.store));
    // No store directory at all: it is not created either.
    let aside = e.store.with_extension("aside");
    scene.rename(e.store.clone(), aside);
    let out = as_user_in_host_ns(&e, &e.user, &["image", "ls"]);
    assert_not_created(&out, &e.user);
    assert!(!e.store.exists(), "the store directory was created");
    // Put everything back: after a "reboot" the user's first command mounts
    // the existing store (no child process is involved).
    for (from, to) in scene.moved.drain(..).rev() {
        std::fs::rename(&to, &from).expect("rename back");
    }
    let out = as_user_in_host_ns(&e, &e.user, &["image", "ls"]);
    assert_success(&out, &["image", "ls"]);
    assert!(
        is_mounted(&e.store),
        "the user's command did not mount the store"
    );
    drop(scene);
    e.run_ok(&["image", "ls"]);
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn a_stopped_lock_holder_does_not_hang_other_users() {
    let e = env();
    let scene = Unmounted::new(&e);
    let lock = e.store.join(".lock");
    // A process holding the store lock, stopped: what a caller can do to its
    // own helper in the middle of the first mount.
    let mut holder = Command::new("flock")
        .arg("--no-fork")
        .arg(&lock)
        .args(["sleep", "120"])
        .spawn()
        .expect("spawn flock");
    let held = || {
        !Command::new("flock")
            .arg("--nonblock")
            .arg(&lock)
            .arg("true")
            .status()
            .expect("flock")
            .success()
    };
    let start = Instant::now();
    while !held() {
        assert!(start.elapsed() < Duration::from_secs(5), "flock never held");
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: stopping the process this test started, by its pid.
    assert_eq!(unsafe { libc::kill(holder.id() as i32, libc::SIGSTOP) }, 0);

    let mut c = e.tupper(&["image", "ls"]);
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    let started = Instant::now();
    let out = wait_within(
        c.spawn().expect("spawn supervisor"),
        Duration::from_secs(20),
    );
    let took = started.elapsed();
    // SAFETY: killing the process this test started, by its pid.
    unsafe { libc::kill(holder.id() as i32, libc::SIGKILL) };
    let _ = holder.wait();
    let out = out.expect("`image ls` hung on the store lock held by a stopped process");
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("the image store is busy") && stderr(&out).contains("try again"),
        "{}",
        stderr(&out)
    );
    assert!(took < Duration::from_secs(10), "took {took:?}");
    // Once the holder is gone, the user's next command mounts the store.
    let out = as_user_in_host_ns(&e, &e.user, &["image", "ls"]);
    assert_success(&out, &["image", "ls"]);
    assert!(is_mounted(&e.store));
    drop(scene);
}

/// A scratch directory for root, removed afterwards.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let p = std::env::temp_dir().join(format!("tupper-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("scratch dir");
        Scratch(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A gzipped GNU tar holding `big`: a 2 GiB file that is one hole.
fn sparse_bomb(dir: &Path) -> Vec<u8> {
    let src = dir.join("src");
    std::fs::create_dir_all(&src).unwrap();
    sh(Command::new("truncate")
        .args(["-s", "2G"])
        .arg(src.join("big")));
    let tgz = dir.join("bomb.tgz");
    sh(Command::new("tar")
        .args(["--sparse", "--format=gnu", "-czf"])
        .arg(&tgz)
        .arg("-C")
        .arg(&src)
        .arg("big"));
    let data = std::fs::read(&tgz).unwrap();
    assert!(data.len() < 1024, "the bomb is {} bytes", data.len());
    data
}

fn image_file(e: &Env, image: &str, file: &str) -> PathBuf {
    e.store
        .join("images")
        .join(e.uid(&e.user).to_string())
        .join(image)
        .join(file)
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn a_tiny_sparse_bomb_is_refused_over_the_import_size_limit() {
    let e = env();
    let scratch = Scratch::new("bomb");
    let bomb = sparse_bomb(&scratch.0);
    let _policy = PolicyFile::set(&e, "[default]\nimport_size = \"1G\"\n");
    let before = e.subvolumes();
    let started = Instant::now();
    let out = e.import(&e.user, "bomb", &bomb);
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("import size limit of 1 GiB")
            && err.contains("\"big\"")
            && err.contains("policy.toml [default]"),
        "{err}"
    );
    // Refused on the entry's header, not after writing a gigabyte.
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(
        e.subvolumes(),
        before,
        "the refused import left a subvolume"
    );
    assert!(!image_file(&e, "bomb", "").exists());
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn zeros_are_imported_as_holes() {
    let e = env();
    let scratch = Scratch::new("holes");
    let bomb = sparse_bomb(&scratch.0);
    let _policy = PolicyFile::set(&e, "[default]\nimport_size = \"3G\"\n");
    let out = e.import(&e.user, "holes", &bomb);
    assert_success(&out, &["image", "import", "holes"]);
    let md = std::fs::metadata(image_file(&e, "holes", "big")).unwrap();
    assert_eq!(md.len(), 2 << 30);
    assert!(
        md.blocks() * 512 < 1 << 20,
        "a 2 GiB hole occupies {} bytes on disk",
        md.blocks() * 512
    );
    e.run_ok(&["image", "rm", "holes"]);

    // Plain (not sparse) tar entries of zeros, with data in between: the
    // zeros cost nothing, the data is intact.
    let src = scratch.0.join("plain");
    std::fs::create_dir_all(&src).unwrap();
    let mut body = vec![0u8; 64 << 20];
    body[(32 << 20) + 5] = b'x';
    body.extend_from_slice(b"tail");
    std::fs::write(src.join("mixed"), &body).unwrap();
    let tgz = scratch.0.join("plain.tgz");
    sh(Command::new("tar")
        .args(["--format=ustar", "-czf"])
        .arg(&tgz)
        .arg("-C")
        .arg(&src)
        .arg("mixed"));
    let out = e.import(&e.user, "plain-zeros", &std::fs::read(&tgz).unwrap());
    assert_success(&out, &["image", "import", "plain-zeros"]);
    let path = image_file(&e, "plain-zeros", "mixed");
    let md = std::fs::metadata(&path).unwrap();
    assert_eq!(md.len(), body.len() as u64);
    assert!(
        md.blocks() * 512 < 1 << 20,
        "64 MiB of mostly zeros occupy {} bytes on disk",
        md.blocks() * 512
    );
    assert!(std::fs::read(&path).unwrap() == body, "content changed");
    e.run_ok(&["image", "rm", "plain-zeros"]);
}

/// The host path of the user's only container root.
fn only_root(e: &Env) -> PathBuf {
    let roots = e.container_roots(&e.user);
    assert_eq!(roots.len(), 1, "{roots:?}");
    e.store
        .join("containers")
        .join(e.uid(&e.user).to_string())
        .join(&roots[0])
}

/// What a container can do with the unprivileged btrfs ioctls: subvolumes
/// inside its root, nested, read-only (one with a subvolume inside), one in a
/// sticky directory, all owned by the container's ids.
fn plant_subvolumes(root: &Path) {
    let owner = std::fs::metadata(root).unwrap();
    let (uid, gid) = (owner.uid(), owner.gid());
    let sticky = root.join("sticky");
    std::fs::create_dir(&sticky).unwrap();
    for sub in ["n1", "n1/n2", "n1/n2/n3", "ro", "sticky/s"] {
        sh(Command::new("btrfs")
            .args(["-q", "subvolume", "create"])
            .arg(root.join(sub)));
    }
    std::fs::write(root.join("n1/n2/n3/file"), b"x").unwrap();
    for p in ["sticky", "sticky/s", "n1", "n1/n2", "n1/n2/n3", "ro"] {
        std::os::unix::fs::chown(root.join(p), Some(uid), Some(gid)).unwrap();
    }
    sh(Command::new("chmod").arg("1777").arg(&sticky));
    // Read-only: a leaf, and a subvolume with subvolumes inside.
    for ro in ["ro", "n1/n2"] {
        sh(Command::new("btrfs")
            .args(["property", "set", "-ts"])
            .arg(root.join(ro))
            .args(["ro", "true"]));
    }
}

fn assert_no_subvolume_of(e: &Env, root: &Path) {
    let id = root.file_name().unwrap().to_string_lossy().into_owned();
    let left: Vec<String> = e
        .subvolumes()
        .into_iter()
        .filter(|p| p.contains(&id))
        .collect();
    assert!(left.is_empty(), "subvolumes left: {left:?}");
    assert!(!root.exists(), "{} is still there", root.display());
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn nested_subvolumes_do_not_make_a_container_undeletable() {
    let e = env();
    assert!(e.container_roots(&e.user).is_empty());
    // `rm` of a stopped container.
    e.run_ok(&[
        "run",
        "--name",
        "nested",
        "--network",
        "none",
        "busybox",
        "true",
    ]);
    let root = only_root(&e);
    plant_subvolumes(&root);
    e.run_ok(&["rm", "nested"]);
    assert_no_subvolume_of(&e, &root);

    // `run --rm`: planted while the container runs.
    let mut c = e.tupper(&[
        "run",
        "--rm",
        "-i",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "echo ready; read x",
    ]);
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("spawn supervisor");
    read_until(&mut child, "ready");
    let root = only_root(&e);
    plant_subvolumes(&root);
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(b"go\n").unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_no_subvolume_of(&e, &root);
    assert!(e.container_roots(&e.user).is_empty());
}
