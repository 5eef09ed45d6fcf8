//! End-to-end: volumes, tmpfs, `--read-only`, the per-container `/etc`
//! files and `/dev/stdout` without a terminal, as the unprivileged test user.

use std::fs;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use tupper_integration::{assert_success, output_text, Env};

fn env() -> Env {
    Env::get(env!("CARGO_BIN_EXE_tupper-drive"))
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `run --rm --network none FLAGS... busybox ARGS...`.
fn offline(e: &Env, flags: &[&str], args: &[&str]) -> Output {
    let mut v = vec!["run", "--rm", "--network", "none"];
    v.extend_from_slice(flags);
    v.push("busybox");
    v.extend_from_slice(args);
    e.tupper(&v).output().expect("spawn supervisor")
}

fn ok(e: &Env, flags: &[&str], args: &[&str]) -> String {
    let out = offline(e, flags, args);
    assert_success(&out, args);
    stdout(&out)
}

/// A directory owned by `user` (mode 0755) in a place every user can reach.
fn user_dir(e: &Env, user: &str, tag: &str) -> PathBuf {
    let dir = PathBuf::from(format!("/tmp/tw-vol-test-{tag}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir(&dir).expect("create the test directory");
    chown(&dir, e.uid(user));
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod");
    dir
}

fn chown(p: &Path, uid: u32) {
    std::os::unix::fs::chown(p, Some(uid), Some(uid)).expect("chown");
}

fn no_containers_left(e: &Env) {
    assert!(
        e.container_roots(&e.user).is_empty(),
        "container roots left: {:?}",
        e.container_roots(&e.user)
    );
    let ps = e.run_ok(&["ps", "-a"]);
    assert_eq!(ps.lines().count(), 1, "containers left: {ps}");
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn volume_round_trip_keeps_owners_and_ro_is_read_only() {
    let e = env();
    let uid = e.uid(&e.user);
    let dir = user_dir(&e, &e.user, "rt");
    let mine = dir.join("mine");
    fs::write(&mine, "from the host\n").unwrap();
    chown(&mine, uid);
    fs::set_permissions(&mine, fs::Permissions::from_mode(0o644)).unwrap();
    let vol = format!("{}:/data", dir.display());

    let out = ok(
        &e,
        &["-v", &vol],
        &[
            "sh",
            "-c",
            "echo new > /data/new && echo appended >> /data/mine && cat /data/mine && stat -c %u /data/mine",
        ],
    );
    assert_eq!(out, "from the host\nappended\n0\n", "{out}");
    // What container root wrote belongs to the user on the host.
    let new = fs::metadata(dir.join("new")).expect("the container's file on the host");
    assert_eq!((new.uid(), new.gid()), (uid, uid));
    assert_eq!(fs::read_to_string(dir.join("new")).unwrap(), "new\n");

    // :ro and --mount readonly: EROFS.
    let ro = format!("{}:/data:ro", dir.display());
    let bind_ro = format!("type=bind,source={},target=/m,readonly", dir.display());
    for flags in [vec!["-v", ro.as_str()], vec!["--mount", bind_ro.as_str()]] {
        let target = if flags[0] == "-v" { "/data" } else { "/m" };
        let out = offline(
            &e,
            &flags,
            &["sh", "-c", &format!("cat {target}/new && touch {target}/x")],
        );
        assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
        assert_eq!(stdout(&out), "new\n");
        assert!(
            stderr(&out).contains("Read-only file system"),
            "{}",
            stderr(&out)
        );
        assert!(!dir.join("x").exists());
    }
    // A file volume, to a path that does not exist in the image.
    let file_vol = format!("{}:/opt/deep/file", mine.display());
    let out = ok(&e, &["-v", &file_vol], &["cat", "/opt/deep/file"]);
    assert_eq!(out, "from the host\nappended\n");
    fs::remove_dir_all(&dir).unwrap();
    no_containers_left(&e);
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn tmpfs_and_read_only_root() {
    let e = env();
    let out = ok(
        &e,
        &["--tmpfs", "/scratch:size=1m,mode=700", "--mount", "type=tmpfs,target=/t,tmpfs-size=64k"],
        &["sh", "-c", "grep -E ' /(scratch|t) ' /proc/mounts; stat -c %a /scratch; echo x > /scratch/f && cat /scratch/f"],
    );
    assert!(
        out.contains("tmpfs /scratch tmpfs rw,nosuid,nodev,noexec"),
        "{out}"
    );
    assert!(out.contains("size=1024k"), "{out}");
    assert!(
        out.contains("tmpfs /t tmpfs") && out.contains("size=64k"),
        "{out}"
    );
    assert!(out.contains("\n700\nx\n"), "{out}");

    let out = offline(
        &e,
        &["--read-only"],
        &[
            "sh",
            "-c",
            "touch /tmp/a /var/tmp/a /run/a && echo scratch ok; touch /etc/x || touch /x",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    assert_eq!(stdout(&out), "scratch ok\n");
    assert!(
        stderr(&out).contains("Read-only file system"),
        "{}",
        stderr(&out)
    );
    no_containers_left(&e);
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn etc_hosts_hostname_and_resolv_conf_are_the_containers() {
    let e = env();
    // With an address on the bridge.
    let out = e.run_ok(&[
        "run",
        "--rm",
        "--hostname",
        "box",
        "--name",
        "web",
        "--add-host",
        "db:10.1.2.3",
        "--dns",
        "9.9.9.9",
        "--dns-search",
        "example.org",
        "busybox",
        "sh",
        "-c",
        "cat /etc/hosts; echo --; cat /etc/hostname; echo --; cat /etc/resolv.conf; echo --; ip -4 addr show eth0",
    ]);
    let parts: Vec<&str> = out.split("--\n").collect();
    assert_eq!(parts.len(), 4, "{out}");
    let hosts = parts[0];
    assert!(
        hosts.starts_with("127.0.0.1\tlocalhost\n::1\tlocalhost"),
        "{hosts}"
    );
    let ip = tupper_integration::inet_address(parts[3]).expect("an address");
    assert!(
        hosts.contains(&format!("{ip}\tbox web\n")),
        "{hosts} / {ip}"
    );
    assert!(hosts.contains("10.1.2.3\tdb\n"), "{hosts}");
    assert_eq!(parts[1], "box\n");
    assert!(parts[2].contains("nameserver 9.9.9.9\n"), "{}", parts[2]);
    assert!(parts[2].contains("search example.org\n"), "{}", parts[2]);
    assert!(!parts[2].contains("127.0.0."), "{}", parts[2]);

    // Without a network: 127.0.1.1; and the files are writable by root.
    let out = ok(
        &e,
        &["--hostname", "solo"],
        &[
            "sh",
            "-c",
            "grep solo /etc/hosts; echo '10.9.9.9 extra' >> /etc/hosts && grep -c extra /etc/hosts",
        ],
    );
    assert!(out.starts_with("127.0.1.1\tsolo"), "{out}");
    assert!(out.ends_with("1\n"), "{out}");
    no_containers_left(&e);
}

/// The busybox image with hostile symbolic links, imported as `links`.
fn import_image_with_links(e: &Env) {
    let work = PathBuf::from(format!("/tmp/tw-vol-links-{}", std::process::id()));
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(work.join("root")).unwrap();
    let root = work.join("root");
    let st = Command::new("tar")
        .arg("-xf")
        .arg(&e.image_tar)
        .arg("-C")
        .arg(&root)
        .status()
        .unwrap();
    assert!(st.success());
    fs::create_dir_all(root.join("mnt")).unwrap();
    std::os::unix::fs::symlink("/etc", root.join("mnt/to-etc")).unwrap();
    std::os::unix::fs::symlink("../../..", root.join("mnt/up")).unwrap();
    let escape = format!("/tmp/tw-vol-escape-{}", std::process::id());
    let _ = fs::remove_file(root.join("etc/resolv.conf"));
    std::os::unix::fs::symlink(&escape, root.join("etc/resolv.conf")).unwrap();
    let tar = work.join("links.tar");
    let st = Command::new("tar")
        .args(["--numeric-owner", "-C"])
        .arg(&root)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    let data = fs::read(&tar).unwrap();
    fs::remove_dir_all(&work).unwrap();
    let _ = e.tupper(&["image", "rm", "links"]).output();
    let out = e.import(&e.user, "links", &data);
    assert_success(&out, &["image", "import", "links"]);
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn symlinked_targets_in_the_image_land_inside_the_container_root() {
    let e = env();
    import_image_with_links(&e);
    let dir = user_dir(&e, &e.user, "links");
    fs::write(dir.join("marker"), "vol\n").unwrap();
    let pid = std::process::id();
    let escape_dir = format!("/tw-vol-escape-dir-{pid}");
    let escape_file = format!("/tmp/tw-vol-escape-{pid}");
    let v1 = format!("{}:/mnt/to-etc", dir.display());
    let v2 = format!("{}:/mnt/up{escape_dir}", dir.display());
    let out = e
        .tupper(&[
            "run",
            "--rm",
            "--network",
            "none",
            "-v",
            &v1,
            "-v",
            &v2,
            "links",
            "sh",
            "-c",
            &format!(
                "cat /etc/marker; cat {escape_dir}/marker; [ -L /etc/resolv.conf ] && echo link; \
                 grep -c . /etc/resolv.conf >/dev/null; echo done"
            ),
        ])
        .output()
        .unwrap();
    assert_success(&out, &["run", "links"]);
    // /mnt/to-etc -> /etc is the container's /etc; /mnt/up -> ../../.. is its /.
    assert_eq!(stdout(&out), "vol\nvol\ndone\n", "{}", output_text(&out));
    assert!(
        !Path::new(&escape_dir).exists(),
        "{escape_dir} created on the host"
    );
    assert!(
        !Path::new(&escape_file).exists(),
        "{escape_file} created on the host"
    );
    assert!(!Path::new("/etc/marker").exists());
    let _ = e.tupper(&["image", "rm", "links"]).output();
    fs::remove_dir_all(&dir).unwrap();
    no_containers_left(&e);
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn a_volume_source_the_user_cannot_read_is_refused_and_nothing_is_left() {
    let e = env();
    let private = user_dir(&e, &e.second_user, "private");
    fs::set_permissions(&private, fs::Permissions::from_mode(0o700)).unwrap();
    fs::create_dir(private.join("inner")).unwrap();
    let before = e.run_ok(&["ps", "-a"]);
    for source in [private.clone(), private.join("inner")] {
        let vol = format!("{}:/data", source.display());
        let out = offline(&e, &["-v", &vol], &["ls", "/data"]);
        assert_eq!(out.status.code(), Some(125), "{}", output_text(&out));
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("tupper: volume source "), "{err}");
        assert!(
            err.contains("cannot read") || err.contains("ermission"),
            "{err}"
        );
        assert!(stdout(&out).is_empty());
    }
    assert_eq!(e.run_ok(&["ps", "-a"]), before);
    no_containers_left(&e);
    fs::remove_dir_all(&private).unwrap();
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn garbage_mount_flags_are_one_line_and_125() {
    let e = env();
    for flags in [
        vec!["--mount", "garbage"],
        vec!["--mount", "type=volume,target=/x"],
        vec!["-v", "nope"],
        vec!["-v", "/tmp:/../etc"],
        vec!["--tmpfs", "/t:size=lots"],
        vec!["--add-host", "x"],
        vec!["--dns", "not-an-ip"],
    ] {
        let out = offline(&e, &flags, &["true"]);
        assert_eq!(
            out.status.code(),
            Some(125),
            "{flags:?}: {}",
            output_text(&out)
        );
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{flags:?}: {err}");
        assert!(err.starts_with("tupper: "), "{err}");
    }
    no_containers_left(&e);
}

const STDIO_SCRIPT: &str = "echo out > /dev/stdout && echo err > /dev/stderr && \
    su -s /bin/sh nobody -c 'id -u; echo nobody-out > /dev/stdout'";

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn dev_stdout_works_on_a_pipe_a_file_and_a_terminal() {
    let e = env();
    // A pipe (of root's: the container's users could not reopen it).
    let out = offline(&e, &[], &["sh", "-c", STDIO_SCRIPT]);
    assert_success(&out, &["stdio on a pipe"]);
    assert_eq!(stdout(&out), "out\n65534\nnobody-out\n");
    assert_eq!(stderr(&out), "err\n");

    // A file of root's, mode 0600.
    let path = PathBuf::from(format!("/tmp/tw-vol-stdout-{}", std::process::id()));
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)
        .unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    let status = e
        .tupper(&[
            "run",
            "--rm",
            "--network",
            "none",
            "busybox",
            "sh",
            "-c",
            STDIO_SCRIPT,
        ])
        .stdout(Stdio::from(file))
        .stderr(Stdio::piped())
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(
        fs::read_to_string(&path).unwrap(),
        "out\n65534\nnobody-out\n"
    );
    fs::remove_file(&path).unwrap();

    // A terminal of the host's devpts, root's.
    let (mut master, mut slave) = (-1, -1);
    // SAFETY: openpty writes two descriptors.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0);
    // SAFETY: openpty returned them; we own them.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    let status = e
        .tupper(&[
            "run",
            "--rm",
            "--network",
            "none",
            "busybox",
            "sh",
            "-c",
            STDIO_SCRIPT,
        ])
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::from(slave))
        .status()
        .unwrap();
    let mut text = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        // SAFETY: reading into our buffer; non-blocking enough: the
        // writers are gone, and a pty master reads EIO then.
        let mut p = libc::pollfd {
            fd: std::os::fd::AsRawFd::as_raw_fd(&master),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut p, 1, 200) } <= 0 {
            break;
        }
        // SAFETY: valid buffer.
        let n = unsafe { libc::read(p.fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            break;
        }
        text.extend_from_slice(&buf[..n as usize]);
    }
    assert!(status.success());
    let text = String::from_utf8_lossy(&text).replace('\r', "");
    assert!(text.contains("out\n") && text.contains("err\n"), "{text}");
    assert!(text.contains("nobody-out\n"), "{text}");
    no_containers_left(&e);
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn stdin_reaches_the_container_and_its_end_is_seen() {
    let e = env();
    let mut child = e
        .tupper(&[
            "run",
            "--rm",
            "-i",
            "--network",
            "none",
            "busybox",
            "sh",
            "-c",
            "cat /dev/stdin | wc -c",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(&[b'x'; 100_000]).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    assert_eq!(stdout(&out).trim(), "100000");
    // A reader that goes away: `run` stops writing to it and still waits for
    // the container, whose output goes on to its log (the monitor keeps
    // reading, as conmon does); nothing is left once it ends.
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "timeout 60 {} | head -c 5",
            shell_words(
                &e,
                &[
                    "run",
                    "--rm",
                    "--network",
                    "none",
                    "busybox",
                    "sh",
                    "-c",
                    "yes | head -c 1000000"
                ]
            )
        ))
        .output()
        .unwrap();
    assert_eq!(stdout(&out), "y\ny\ny", "{}", output_text(&out));
    no_containers_left(&e);
}

/// `e.tupper(args)` as one shell command line.
fn shell_words(e: &Env, args: &[&str]) -> String {
    let cmd = e.tupper(args);
    let mut words = vec![cmd.get_program().to_string_lossy().into_owned()];
    words.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    words
        .iter()
        .map(|w| format!("'{}'", w.replace('\'', "'\\''")))
        .collect::<Vec<_>>()
        .join(" ")
}
