//! End-to-end: files in and out of containers (`commit`, `export`, `cp`),
//! run by the unprivileged test user with the busybox image, and their
//! hostile twins.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use tupper_integration::tarball::Tarball;
use tupper_integration::{assert_success, output_text, read_until, Env};

fn env() -> Env {
    Env::get(env!("CARGO_BIN_EXE_tupper-drive"))
}

fn out(e: &Env, args: &[&str]) -> Output {
    e.tupper(args).output().expect("spawn supervisor")
}

/// A scratch directory on the host that belongs to the test user.
struct HostDir(PathBuf);

impl HostDir {
    fn new(e: &Env, tag: &str) -> HostDir {
        let p = PathBuf::from(format!("/tmp/tw-files-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir(&p).unwrap();
        let uid = e.uid(&e.user);
        std::os::unix::fs::chown(&p, Some(uid), Some(gid(&e.user))).unwrap();
        HostDir(p)
    }

    fn join(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }

    fn s(&self, p: &str) -> String {
        self.join(p).to_string_lossy().into_owned()
    }
}

impl Drop for HostDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn gid(user: &str) -> u32 {
    let out = Command::new("id").arg("-g").arg(user).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// An exited container `name` left by `sh -c script` (no `--rm`).
fn exited(e: &Env, name: &str, script: &str) {
    let _ = out(e, &["rm", "-f", name]);
    e.run_ok(&[
        "run",
        "--name",
        name,
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        script,
    ]);
}

fn cleanup(e: &Env, containers: &[&str], images: &[&str]) {
    for c in containers {
        let _ = out(e, &["rm", "-f", c]);
    }
    let _ = out(e, &["gc"]);
    for c in containers {
        let _ = out(e, &["rm", c]);
    }
    for i in images {
        let _ = out(e, &["image", "rm", i]);
    }
}

fn write_as_user(e: &Env, path: &Path, data: &[u8]) {
    std::fs::write(path, data).unwrap();
    std::os::unix::fs::chown(path, Some(e.uid(&e.user)), Some(gid(&e.user))).unwrap();
}

fn time_commit(e: &Env, container: &str, image: &str) -> Duration {
    let t = Instant::now();
    e.run_ok(&["commit", container, image]);
    t.elapsed()
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn commit_makes_an_image_from_a_container_in_constant_time() {
    let e = env();
    cleanup(&e, &["fc-small", "fc-big"], &["fc-small-img", "fc-big-img"]);
    exited(&e, "fc-small", "echo committed > /committed");
    exited(
        &e,
        "fc-big",
        "dd if=/dev/urandom of=/big bs=1M count=200 2>/dev/null; sync; echo big > /committed",
    );
    let small = time_commit(&e, "fc-small", "fc-small-img");
    let big = time_commit(&e, "fc-big", "fc-big-img");
    eprintln!("commit of an empty container: {small:?}; with a 200 MiB file: {big:?}");
    let ls = e.run_ok(&["image", "ls"]);
    assert!(
        ls.contains("fc-small-img") && ls.contains("fc-big-img"),
        "{ls}"
    );
    // Run from the committed image: the file is there.
    let got = e.run_ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "fc-small-img",
        "cat",
        "/committed",
    ]);
    assert_eq!(got, "committed\n");
    let got = e.run_ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "fc-big-img",
        "sh",
        "-c",
        "cat /committed; wc -c < /big",
    ]);
    assert_eq!(got, "big\n209715200\n");
    // The image is read-only in the store: a snapshot, not a copy.
    let uid = e.uid(&e.user);
    let img = e.store.join(format!("images/{uid}/fc-big-img"));
    let prop = Command::new("btrfs")
        .args(["property", "get", "-ts"])
        .arg(&img)
        .arg("ro")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&prop.stdout).trim(), "ro=true");
    // An existing name is refused, not replaced; a bad name too.
    let again = out(&e, &["commit", "fc-small", "fc-big-img"]);
    assert!(!again.status.success());
    assert!(
        output_text(&again).contains("already exists"),
        "{}",
        output_text(&again)
    );
    let bad = out(&e, &["commit", "fc-small", "../x"]);
    assert!(!bad.status.success());
    let got = e.run_ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "fc-big-img",
        "cat",
        "/committed",
    ]);
    assert_eq!(got, "big\n");
    cleanup(&e, &["fc-small", "fc-big"], &["fc-small-img", "fc-big-img"]);
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn commit_works_on_a_running_container() {
    let e = env();
    cleanup(&e, &["fc-run"], &["fc-run-img"]);
    let mut child = e.spawn(&[
        "run",
        "--name",
        "fc-run",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "echo live > /live; sync; echo ready; sleep 60",
    ]);
    read_until(&mut child, "ready");
    let r = out(&e, &["commit", "fc-run", "fc-run-img"]);
    let _ = child.kill();
    let _ = child.wait();
    assert_success(&r, &["commit"]);
    let got = e.run_ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "fc-run-img",
        "cat",
        "/live",
    ]);
    assert_eq!(got, "live\n");
    cleanup(&e, &["fc-run"], &["fc-run-img"]);
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn export_then_import_round_trips_owners_modes_and_links() {
    let e = env();
    cleanup(&e, &["fe-src"], &["fe-copy"]);
    exited(
        &e,
        "fe-src",
        "mkdir /d && echo data > /d/f && chown 1000:1000 /d/f && chmod 640 /d/f && \
         ln /d/f /d/hard && ln -s /etc/passwd /d/link && mkfifo /d/fifo && \
         chown 1000:1001 /d && chmod 4755 /bin/busybox && \
         dd if=/dev/zero of=/d/sparse bs=1 count=1 seek=104857599 2>/dev/null",
    );
    let exp = out(&e, &["export", "fe-src"]);
    assert_success(&exp, &["export"]);
    let tar = exp.stdout;
    // Sparse: 100 MiB apparent, not inflated.
    assert!(tar.len() < 20 << 20, "export is {} bytes", tar.len());
    // Ids in the tarball are container ids, not host ids.
    let mut a = tar::Archive::new(tar.as_slice());
    let mut saw = false;
    for entry in a.entries().unwrap() {
        let entry = entry.unwrap();
        if entry.path_bytes().as_ref() == b"d/f" {
            assert_eq!(entry.header().uid().unwrap(), 1000);
            assert_eq!(entry.header().gid().unwrap(), 1000);
            assert_eq!(entry.header().mode().unwrap() & 0o7777, 0o640);
            saw = true;
        }
    }
    assert!(saw, "d/f is not in the export");
    let imp = e.import(&e.user, "fe-copy", &tar);
    assert_success(&imp, &["image", "import", "fe-copy"]);
    let got = e.run_ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "fe-copy",
        "sh",
        "-c",
        "stat -c '%u:%g %a %h' /d/f; stat -c '%u:%g' /d; cat /d/hard; readlink /d/link; \
         stat -c %F /d/fifo; stat -c %a /bin/busybox; stat -c %s /d/sparse",
    ]);
    assert_eq!(
        got,
        "1000:1000 640 2\n1000:1001\ndata\n/etc/passwd\nfifo\n4755\n104857600\n"
    );
    // -o FILE, and the same content.
    let dir = HostDir::new(&e, "export");
    let file = dir.s("root.tar");
    e.run_ok(&["export", "-o", &file, "fe-src"]);
    assert_eq!(std::fs::metadata(&file).unwrap().uid(), e.uid(&e.user));
    assert_eq!(std::fs::read(&file).unwrap().len(), tar.len());
    cleanup(&e, &["fe-src"], &["fe-copy"]);
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn cp_in_and_out_of_an_exited_container() {
    let e = env();
    cleanup(&e, &["fcp-x"], &[]);
    exited(
        &e,
        "fcp-x",
        "mkdir -p /data/sub && echo inside > /data/sub/f && echo top > /data/t && chmod 4755 /data/t",
    );
    let h = HostDir::new(&e, "cpx");
    let uid = e.uid(&e.user);
    // A file out, under a new name: owned by the caller, no setuid bit.
    e.run_ok(&["cp", "fcp-x:/data/t", &h.s("t.out")]);
    assert_eq!(std::fs::read(h.join("t.out")).unwrap(), b"top\n");
    let md = std::fs::metadata(h.join("t.out")).unwrap();
    assert_eq!(md.uid(), uid);
    assert_eq!(md.mode() & 0o7777, 0o755);
    // A directory out, to a new name and into an existing directory.
    e.run_ok(&["cp", "fcp-x:/data", &h.s("copy")]);
    assert_eq!(std::fs::read(h.join("copy/sub/f")).unwrap(), b"inside\n");
    e.run_ok(&["cp", "fcp-x:/data", &h.s("")]);
    assert_eq!(std::fs::read(h.join("data/sub/f")).unwrap(), b"inside\n");
    // DIR/. copies the contents.
    std::fs::create_dir(h.join("contents")).unwrap();
    std::os::unix::fs::chown(h.join("contents"), Some(uid), None).unwrap();
    e.run_ok(&["cp", "fcp-x:/data/.", &h.s("contents")]);
    assert_eq!(std::fs::read(h.join("contents/t")).unwrap(), b"top\n");
    // In: a file and a directory, then back out.
    write_as_user(&e, &h.join("in.txt"), b"from the host\n");
    e.run_ok(&["cp", &h.s("in.txt"), "fcp-x:/data/"]);
    e.run_ok(&["cp", &h.s("copy"), "fcp-x:/newdir"]);
    e.run_ok(&["cp", "fcp-x:/data/in.txt", &h.s("back.txt")]);
    assert_eq!(
        std::fs::read(h.join("back.txt")).unwrap(),
        b"from the host\n"
    );
    e.run_ok(&["cp", "fcp-x:/newdir/sub/f", &h.s("back2")]);
    assert_eq!(std::fs::read(h.join("back2")).unwrap(), b"inside\n");
    // Owned by container root (the caller) inside.
    cleanup(&e, &[], &["fcp-img"]);
    e.run_ok(&["commit", "fcp-x", "fcp-img"]);
    let got = e.run_ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "fcp-img",
        "stat",
        "-c",
        "%u:%g %n",
        "/data/in.txt",
        "/newdir/sub/f",
    ]);
    assert_eq!(got, "0:0 /data/in.txt\n0:0 /newdir/sub/f\n");
    // The whole root out, and a directory's contents into the root.
    e.run_ok(&["cp", "fcp-x:/", &h.s("rootcopy")]);
    assert_eq!(std::fs::read(h.join("rootcopy/data/t")).unwrap(), b"top\n");
    assert!(h.join("rootcopy/bin/busybox").is_file());
    e.run_ok(&["cp", &format!("{}/.", h.s("contents")), "fcp-x:/"]);
    e.run_ok(&["cp", "fcp-x:/sub/f", &h.s("contents-back")]);
    assert_eq!(std::fs::read(h.join("contents-back")).unwrap(), b"inside\n");
    // A tar on standard output.
    let tar = out(&e, &["cp", "fcp-x:/data/sub", "-"]);
    assert_success(&tar, &["cp", "-"]);
    let names: Vec<String> = tar::Archive::new(tar.stdout.as_slice())
        .entries()
        .unwrap()
        .map(|x| String::from_utf8_lossy(&x.unwrap().path_bytes()).into_owned())
        .collect();
    assert_eq!(names, ["sub/", "sub/f"]);
    cleanup(&e, &["fcp-x"], &["fcp-img"]);
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn cp_in_and_out_of_a_running_container() {
    let e = env();
    cleanup(&e, &["fcp-run"], &[]);
    let h = HostDir::new(&e, "cprun");
    write_as_user(&e, &h.join("in.txt"), b"hello running\n");
    let mut child = e.spawn(&[
        "run",
        "--name",
        "fcp-run",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "mkdir /box; echo ready; while [ ! -e /box/in.txt ]; do sleep 0.1; done; \
         cp /box/in.txt /box/seen; sleep 60",
    ]);
    read_until(&mut child, "ready");
    let r = out(&e, &["cp", &h.s("in.txt"), "fcp-run:/box/"]);
    // The container sees the file and answers with one of its own.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = None;
    while r.status.success() && Instant::now() < deadline {
        let o = out(&e, &["cp", "fcp-run:/box/seen", &h.s("seen")]);
        if o.status.success() {
            seen = std::fs::read(h.join("seen")).ok();
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_success(&r, &["cp", "in"]);
    assert_eq!(seen.as_deref(), Some(&b"hello running\n"[..]));
    cleanup(&e, &["fcp-run"], &[]);
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn cp_out_resolves_paths_inside_the_container_never_on_the_host() {
    let e = env();
    cleanup(&e, &["fh-out"], &[]);
    exited(
        &e,
        "fh-out",
        "echo container-shadow > /etc/shadow && ln -s /etc/shadow /lnk && \
         ln -s ../../../../../../../../etc/shadow /rel",
    );
    let h = HostDir::new(&e, "hout");
    let host_shadow = std::fs::read(Path::new("/etc/shadow")).unwrap();
    for (i, src) in [
        "fh-out:/../../../etc/shadow",
        "fh-out:/../../../../../../../../../etc/shadow",
        "fh-out:/lnk",
        "fh-out:/rel",
    ]
    .iter()
    .enumerate()
    {
        let dest = h.s(&format!("got{i}"));
        let o = out(&e, &["cp", src, &dest]);
        if o.status.success() {
            let got = std::fs::read(&dest).unwrap();
            // Never print the host's file in a failure message.
            assert!(got != host_shadow, "{src} gave the host's /etc/shadow");
            assert_eq!(got, b"container-shadow\n", "{src}");
        }
    }
    // The helper alone, sent the same path by the caller directly.
    let id = container_id(&e, "fh-out");
    let d = e.drive(
        &e.user,
        &["storage-export", &id, "/../../../../../../etc/shadow"],
    );
    let text = output_text(&d);
    assert!(text.starts_with("ok: "), "{text}");
    cleanup(&e, &["fh-out"], &[]);
}

/// The full id of one of the test user's containers (from `ps -a`'s short id
/// and the store).
fn container_id(e: &Env, name: &str) -> String {
    let ps = e.run_ok(&["ps", "-a"]);
    let short = ps
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some(name))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("{name} not in ps -a: {ps}"))
        .to_string();
    e.container_roots(&e.user)
        .into_iter()
        .find(|id| id.starts_with(&short))
        .expect("container root")
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn cp_in_through_a_container_symlink_stays_inside() {
    let e = env();
    cleanup(&e, &["fh-in"], &[]);
    // A host directory only root may write: a helper that followed the
    // container's symlink on the host would write there.
    let target = PathBuf::from(format!("/tmp/tw-files-target-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&target);
    std::fs::create_dir(&target).unwrap();
    let t = target.to_string_lossy().into_owned();
    exited(
        &e,
        "fh-in",
        &format!("mkdir -p {t} && ln -s {t} /abs && ln -s ../../../../../../../..{t} /rel"),
    );
    let h = HostDir::new(&e, "hin");
    write_as_user(&e, &h.join("payload"), b"payload\n");
    for dest in [
        "fh-in:/abs/",
        "fh-in:/rel/",
        "fh-in:/abs/x",
        "fh-in:/rel/../../../../../../..//tmp/",
    ] {
        let _ = out(&e, &["cp", &h.s("payload"), dest]);
    }
    let left: Vec<_> = std::fs::read_dir(&target).unwrap().flatten().collect();
    assert!(left.is_empty(), "written on the host: {left:?}");
    // It landed in the container's own directory instead.
    let o = out(&e, &["cp", &format!("fh-in:{t}/payload"), &h.s("back")]);
    assert_success(&o, &["cp", "back"]);
    assert_eq!(std::fs::read(h.join("back")).unwrap(), b"payload\n");
    std::fs::remove_dir_all(&target).unwrap();
    cleanup(&e, &["fh-in"], &[]);
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn another_users_container_is_not_found() {
    let e = env();
    cleanup(&e, &["fh-mine"], &["fh-stolen"]);
    exited(&e, "fh-mine", "echo secret > /secret");
    let id = container_id(&e, "fh-mine");
    // Through the supervisor: not in the other user's records.
    let mut c = e.as_user(&e.second_user, &e.supervisor().to_string_lossy());
    let o = c
        .args(["cp", &format!("{id}:/secret"), "-"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        output_text(&o).contains("no such container"),
        "{}",
        output_text(&o)
    );
    // Straight to the helper with the id: not found in the caller's store.
    for args in [
        vec!["storage-export", id.as_str(), "/secret"],
        vec!["storage-export", id.as_str(), "-"],
        vec!["storage-commit", id.as_str(), "fh-stolen"],
    ] {
        let d = e.drive(&e.second_user, &args);
        let text = output_text(&d);
        assert!(text.starts_with("error: NotFound"), "{args:?}: {text}");
    }
    let uid2 = e.uid(&e.second_user);
    assert!(!e.store.join(format!("images/{uid2}/fh-stolen")).exists());
    cleanup(&e, &["fh-mine"], &[]);
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn a_tar_from_stdin_with_dot_dot_is_refused_with_nothing_written() {
    let e = env();
    cleanup(&e, &["fh-stdin"], &[]);
    exited(&e, "fh-stdin", "mkdir /in");
    let tar = Tarball::new()
        .file("ok", b"first\n")
        .file("../../evil", b"evil\n")
        .finish();
    let mut c = e.tupper(&["cp", "-", "fh-stdin:/in"]);
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    {
        use std::io::Write;
        let _ = child.stdin.take().unwrap().write_all(&tar);
    }
    let o = child.wait_with_output().unwrap();
    assert!(!o.status.success(), "{}", output_text(&o));
    assert!(output_text(&o).contains("leaves"), "{}", output_text(&o));
    let id = container_id(&e, "fh-stdin");
    let root = e.store.join(format!("containers/{}/{id}", e.uid(&e.user)));
    assert!(!root.join("in/ok").exists(), "an entry was written");
    assert!(!root.join("evil").exists() && !root.join("in/evil").exists());
    // A good tar from stdin works.
    let good = Tarball::new().dir("d").file("d/x", b"x\n").finish();
    let mut c = e.tupper(&["cp", "-", "fh-stdin:/in"]);
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(&good).unwrap();
    }
    let o = child.wait_with_output().unwrap();
    assert_success(&o, &["cp", "-", "good"]);
    assert_eq!(std::fs::read(root.join("in/d/x")).unwrap(), b"x\n");
    cleanup(&e, &["fh-stdin"], &[]);
}

/// Issue 9: a running container sees its root through an overlay; `cp`
/// writes through that very mount, so the container sees at once a path it
/// had just looked up as missing and a file `cp` replaced. The storage
/// helper writes into a running container only through a process whose
/// mount namespace's root is the mount recorded on the caller's root.
#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn cp_into_a_running_container_is_seen_at_once() {
    let e = env();
    cleanup(&e, &["fcp-run"], &[]);
    let mut c = e.spawn(&[
        "run",
        "--rm",
        "--name",
        "fcp-run",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "echo old > /f; cat /f; cat /new 2>/dev/null; echo ready; sleep 60",
    ]);
    read_until(&mut c, "ready");
    let h = HostDir::new(&e, "cprun");
    write_as_user(&e, &h.join("new"), b"new path\n");
    write_as_user(&e, &h.join("f"), b"replaced\n");
    e.run_ok(&["cp", &h.s("new"), "fcp-run:/new"]);
    e.run_ok(&["cp", &h.s("f"), "fcp-run:/f"]);
    let seen = e.run_ok(&["exec", "fcp-run", "cat", "/new", "/f"]);
    assert_eq!(seen, "new path\nreplaced\n");

    // The helper alone, told to write into this container through a
    // process that is not in it: the host's init, the user's own process on
    // the host, no process at all.
    let id = container_id(&e, "fcp-run");
    let mut sleeper = e
        .as_user(&e.user, "/bin/sleep")
        .arg("30")
        .spawn()
        .expect("sleep");
    let sleeper_pid = sleeper.id().to_string();
    for pid in ["1", sleeper_pid.as_str(), "999999999"] {
        let d = e.drive(&e.user, &["storage-copy-in", &id, pid]);
        let t = output_text(&d);
        assert!(
            t.starts_with(&format!(
                "error: NotFound: process {pid} is not running in this container of yours"
            )),
            "pid {pid}: {t}"
        );
    }
    // SAFETY: ending a process this test started, by pid.
    unsafe { libc::kill(sleeper.id() as i32, libc::SIGKILL) };
    let _ = sleeper.wait();
    assert!(
        e.run_ok(&["exec", "fcp-run", "ls", "/"])
            .lines()
            .all(|l| l != "drive-was-here"),
        "a refused copy wrote into the container"
    );
    // Through the container's init it is accepted.
    let inspect = e.run_ok(&["inspect", "fcp-run"]);
    let v: serde_json::Value = serde_json::from_str(&inspect).expect("inspect JSON");
    let pid = v[0]["state"]["pid"].as_u64().expect("init pid").to_string();
    let d = e.drive(&e.user, &["storage-copy-in", &id, &pid]);
    assert!(output_text(&d).starts_with("ok: "), "{}", output_text(&d));
    assert_eq!(
        e.run_ok(&["exec", "fcp-run", "cat", "/drive-was-here"]),
        "hi\n"
    );
    e.run_ok(&["rm", "-f", "fcp-run"]);
    let _ = c.wait();
}
