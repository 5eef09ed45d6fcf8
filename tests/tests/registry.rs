//! End-to-end tests of `pull` (issue 10): Debian's `docker-registry` serves
//! images inside the suite's own network namespace (plain HTTP, with
//! htpasswd authentication, with TLS from a self-signed certificate, each
//! started by the test that needs it and stopped by pid), `skopeo` pushes a
//! small OCI layout built here from the busybox rootfs, and the
//! unprivileged test user pulls. Every pull uses a fresh cache directory so
//! that nothing one test cached hides what another checks.
//!
//! `pull` without `--layout` hands the layout to the OCI loader and the
//! pulled image runs (checked below); pulled layouts are also checked with
//! `skopeo` (`pull --layout DIR`), which verifies every digest.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tupper_integration::{assert_success, output_text, stderr, stdout, Env};

fn env() -> Env {
    Env::get(env!("CARGO_BIN_EXE_tupper-drive"))
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn run_root(cmd: &mut Command) -> String {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        output_text(&out)
    );
    stdout(&out)
}

/// Scratch space of this test run under the test prefix, removed first.
fn scratch(e: &Env, name: &str) -> PathBuf {
    let dir = e.prefix.join("registry-test").join(name);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("create scratch");
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod scratch");
    dir
}

/// An OCI image layout in `dir` with one gzip layer: the busybox rootfs
/// tarball, plus a file `/marker` holding `marker` (so that each test's
/// layer, and so its digest, is its own). Returns the manifest digest.
fn make_layout(e: &Env, dir: &Path, marker: &str) -> String {
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).expect("layout dirs");
    let base = fs::read(&e.image_tar).expect("read the busybox tarball");
    // The rootfs tar with one more entry: append before its end blocks.
    let mut builder = tar::Builder::new(Vec::new());
    let mut archive = tar::Archive::new(&base[..]);
    for entry in archive.entries().expect("busybox tar") {
        let mut entry = entry.expect("entry");
        let header = entry.header().clone();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut data).expect("entry data");
        let path = entry.path().expect("path").into_owned();
        let mut h = header.clone();
        if header.entry_type().is_symlink() || header.entry_type().is_hard_link() {
            let target = entry
                .link_name()
                .expect("link")
                .expect("target")
                .into_owned();
            builder
                .append_link(&mut h, &path, &target)
                .expect("append link");
        } else {
            builder
                .append_data(&mut h, &path, &data[..])
                .expect("append");
        }
    }
    let mut h = tar::Header::new_gnu();
    h.set_size(marker.len() as u64);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    builder
        .append_data(&mut h, "marker", marker.as_bytes())
        .expect("marker");
    let layer_tar = builder.into_inner().expect("finish tar");
    let diff_id = sha256(&layer_tar);
    let mut gz = Command::new("gzip")
        .args(["-n", "-c"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("gzip");
    let mut stdin = gz.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || stdin.write_all(&layer_tar));
    let layer = gz.wait_with_output().expect("gzip").stdout;
    writer.join().expect("writer").expect("write to gzip");
    let blob = |bytes: &[u8]| -> (String, usize) {
        let d = sha256(bytes);
        fs::write(blobs.join(&d), bytes).expect("write blob");
        (d, bytes.len())
    };
    let (ld, lsize) = blob(&layer);
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{"Cmd":["/bin/sh"],"Env":["MARKER={marker}"]}},"rootfs":{{"type":"layers","diff_ids":["sha256:{diff_id}"]}}}}"#
    );
    let (cd, csize) = blob(config.as_bytes());
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:{cd}","size":{csize}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:{ld}","size":{lsize}}}]}}"#
    );
    let (md, msize) = blob(manifest.as_bytes());
    fs::write(
        dir.join("index.json"),
        format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:{md}","size":{msize},"annotations":{{"org.opencontainers.image.ref.name":"latest"}}}}]}}"#
        ),
    )
    .expect("index.json");
    fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).expect("oci-layout");
    format!("sha256:{md}")
}

/// Digests of the layer blobs of the single manifest of a layout.
fn layer_digests(layout: &Path) -> Vec<String> {
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).expect("index")).expect("json");
    let md = index["manifests"][0]["digest"].as_str().expect("digest");
    let m: serde_json::Value = serde_json::from_slice(
        &fs::read(layout.join("blobs/sha256").join(&md[7..])).expect("manifest"),
    )
    .expect("manifest json");
    m["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| l["digest"].as_str().expect("digest").to_string())
        .collect()
}

/// A `docker-registry serve` in the suite's network namespace, stopped
/// by pid when dropped.
struct Registry {
    child: Child,
    dir: PathBuf,
    port: u16,
    creds: Option<(String, String)>,
    netns: String,
}

impl Registry {
    /// `auth`: htpasswd with user `puller`, password `s3cret`; `tls`: a
    /// self-signed certificate for 127.0.0.1.
    fn start(e: &Env, name: &str, port: u16, auth: bool, tls: bool) -> Registry {
        let dir = scratch(e, &format!("registry-{name}"));
        let mut cfg = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
             http:\n  addr: 127.0.0.1:{port}\n  secret: tupperware-test\n",
            dir.join("data").display()
        );
        if tls {
            run_root(
                Command::new("openssl")
                    .args([
                        "req",
                        "-x509",
                        "-newkey",
                        "rsa:2048",
                        "-nodes",
                        "-days",
                        "2",
                        "-subj",
                        "/CN=127.0.0.1",
                        "-addext",
                        "subjectAltName=IP:127.0.0.1",
                        "-keyout",
                    ])
                    .arg(dir.join("key.pem"))
                    .arg("-out")
                    .arg(dir.join("cert.pem")),
            );
            cfg.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                dir.join("cert.pem").display(),
                dir.join("key.pem").display()
            ));
        }
        let creds = auth.then(|| ("puller".to_string(), "s3cret".to_string()));
        if let Some((u, p)) = &creds {
            let htpasswd = run_root(Command::new("htpasswd").args(["-Bbn", u, p]));
            fs::write(dir.join("htpasswd"), htpasswd).expect("htpasswd");
            cfg.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: tupperware-test\n    path: {}\n",
                dir.join("htpasswd").display()
            ));
        }
        fs::write(dir.join("config.yml"), cfg).expect("registry config");
        let log = fs::File::create(dir.join("registry.log")).expect("log");
        let child = Command::new("ip")
            .args(["netns", "exec", &e.netns, "docker-registry", "serve"])
            .arg(dir.join("config.yml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start docker-registry (package docker-registry)");
        let r = Registry {
            child,
            dir,
            port,
            creds,
            netns: e.netns.clone(),
        };
        r.wait_listening();
        r
    }

    fn wait_listening(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ok = Command::new("ip")
                .args(["netns", "exec", &self.netns, "bash", "-c"])
                .arg(format!("echo > /dev/tcp/127.0.0.1/{}", self.port))
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry did not listen on port {}: {}",
                self.port,
                fs::read_to_string(self.dir.join("registry.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `skopeo copy oci:LAYOUT docker://HOST/REPO` as root in the netns.
    fn push(&self, layout: &Path, repo: &str) {
        let mut c = Command::new("ip");
        c.args([
            "netns",
            "exec",
            &self.netns,
            "skopeo",
            "copy",
            "--dest-tls-verify=false",
        ]);
        if let Some((u, p)) = &self.creds {
            c.arg(format!("--dest-creds={u}:{p}"));
        }
        c.arg(format!("oci:{}", layout.display()))
            .arg(format!("docker://{}/{repo}", self.host()));
        run_root(&mut c);
    }

    /// The file the registry serves for the blob `digest`.
    fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = &digest[7..];
        self.dir
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = nix_kill(self.child.id());
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn nix_kill(pid: u32) -> std::io::Result<()> {
    // SAFETY: kill(2) on the pid of our own child, not yet reaped.
    let rc = unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// A registry of this test's own (`name`, as [`Registry::start`]) serving a
/// layout made for it (see [`make_layout`]) as `tag`: the registry, the
/// layout and its manifest digest.
fn serve(
    e: &Env,
    name: &str,
    port: u16,
    auth: bool,
    tls: bool,
    tag: &str,
) -> (Registry, PathBuf, String) {
    let reg = Registry::start(e, name, port, auth, tls);
    let src = scratch(e, &format!("src-{name}"));
    let digest = make_layout(e, &src, name);
    reg.push(&src, tag);
    (reg, src, digest)
}

/// The test user's fresh cache and config directories for one test.
struct UserDirs {
    cache: PathBuf,
    config: PathBuf,
    out: PathBuf,
}

fn user_dirs(e: &Env, name: &str) -> UserDirs {
    let base = scratch(e, &format!("user-{name}"));
    let uid = e.uid(&e.user);
    std::os::unix::fs::chown(&base, Some(uid), Some(uid)).expect("chown");
    fs::set_permissions(&base, fs::Permissions::from_mode(0o700)).expect("chmod");
    let d = UserDirs {
        cache: base.join("cache"),
        config: base.join("config"),
        out: base.join("out"),
    };
    fs::create_dir_all(d.config.join("tupperware")).expect("config dir");
    fs::create_dir_all(&d.out).expect("out dir");
    for p in [d.config.clone(), d.config.join("tupperware"), d.out.clone()] {
        std::os::unix::fs::chown(&p, Some(uid), Some(uid)).expect("chown");
    }
    d
}

/// `tupper-supervisor pull ARGS` as the test user, with `dirs` as its
/// XDG cache and config directories.
fn pull(e: &Env, dirs: &UserDirs, args: &[&str]) -> Output {
    let mut c = e.as_user(&e.user, "/usr/bin/env");
    c.arg(format!("XDG_CACHE_HOME={}", dirs.cache.display()))
        .arg(format!("XDG_CONFIG_HOME={}", dirs.config.display()))
        .arg(e.supervisor())
        .arg("pull")
        .args(args);
    c.output().expect("spawn supervisor")
}

/// `pull --tls-verify=false --layout LAYOUT REFERENCE` (see [`pull`]).
fn pull_into(e: &Env, dirs: &UserDirs, layout: &Path, reference: &str) -> Output {
    let layout = layout.to_str().expect("a UTF-8 path");
    pull(
        e,
        dirs,
        &["--tls-verify=false", "--layout", layout, reference],
    )
}

/// Write the credentials file with `mode`, owned by the test user.
fn write_auth(e: &Env, dirs: &UserDirs, host: &str, user: &str, password: &str, mode: u32) {
    use std::io::Write as _;
    let path = dirs.config.join("tupperware/auth.json");
    let b64 = run_root(
        Command::new("bash")
            .arg("-c")
            .arg(format!("printf %s '{user}:{password}' | base64 -w0")),
    );
    let mut f = fs::File::create(&path).expect("auth.json");
    write!(f, r#"{{"auths":{{"{host}":{{"auth":"{b64}"}}}}}}"#).expect("write auth.json");
    let uid = e.uid(&e.user);
    std::os::unix::fs::chown(&path, Some(uid), Some(uid)).expect("chown");
    fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod");
}

/// `skopeo inspect` of a layout: its manifest digest. `skopeo copy` of it
/// into a `dir:` destination re-reads every blob and checks its digest.
fn check_layout_with_skopeo(e: &Env, layout: &Path) -> String {
    let out = run_root(
        Command::new("skopeo")
            .arg("inspect")
            .arg(format!("oci:{}", layout.display())),
    );
    let v: serde_json::Value = serde_json::from_str(&out).expect("skopeo inspect json");
    let copy = scratch(e, "skopeo-copy");
    run_root(
        Command::new("skopeo")
            .arg("copy")
            .arg(format!("oci:{}", layout.display()))
            .arg(format!("dir:{}", copy.join("x").display())),
    );
    let _ = fs::remove_dir_all(&copy);
    v["Digest"].as_str().expect("Digest").to_string()
}

/// Files under the cache's blob directory (names), temporary ones included.
fn cached(dirs: &UserDirs) -> Vec<String> {
    fs::read_dir(dirs.cache.join("tupperware/blobs/sha256"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// No pull left its layout behind in the cache.
fn assert_no_pulls_left(dirs: &UserDirs) {
    let left = pulls_left(dirs);
    assert!(left.is_empty(), "layouts left: {left:?}");
}

fn pulls_left(dirs: &UserDirs) -> Vec<String> {
    fs::read_dir(dirs.cache.join("tupperware/pulls"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn registry_pull_as_the_test_user_writes_a_verified_layout() {
    let e = env();
    let (reg, _, digest) = serve(&e, "plain", 5000, false, false, "tools/busybox:1.0");
    let dirs = user_dirs(&e, "plain");
    let reference = format!("{}/tools/busybox:1.0", reg.host());

    // Plain HTTP only with --tls-verify=false.
    let out = pull(&e, &dirs, &[&reference]);
    assert_eq!(out.status.code(), Some(125), "{}", output_text(&out));
    assert!(
        stderr(&out).contains("--tls-verify=false"),
        "{}",
        stderr(&out)
    );

    // Into a layout: the digest the registry has, every blob verified by skopeo.
    let layout = dirs.out.join("layout");
    let out = pull_into(&e, &dirs, &layout, &reference);
    assert_success(&out, &["pull", "--layout"]);
    assert_eq!(stdout(&out).trim(), digest);
    // Not a terminal: one line per blob, no bars.
    let err = stderr(&out);
    assert!(err.contains("config ") && err.contains("layer 1 "), "{err}");
    assert!(
        !err.contains('\r'),
        "progress bars without a terminal: {err:?}"
    );
    assert_eq!(check_layout_with_skopeo(&e, &layout), digest);
    let index = fs::read_to_string(layout.join("index.json")).expect("index.json");
    assert!(
        index.contains(r#""org.opencontainers.image.ref.name": "1.0""#),
        "{index}"
    );
    assert!(index.contains(&reference), "{index}");
    let uid = e.uid(&e.user);
    let meta = fs::metadata(&layout).expect("layout");
    assert_eq!((meta.uid(), meta.mode() & 0o777), (uid, 0o700));
    let cache_meta = fs::metadata(dirs.cache.join("tupperware")).expect("cache");
    assert_eq!((cache_meta.uid(), cache_meta.mode() & 0o777), (uid, 0o700));

    // Again, quietly: everything from the cache, nothing on standard error.
    let layout2 = dirs.out.join("layout2");
    let out = pull(
        &e,
        &dirs,
        &[
            "--tls-verify=false",
            "-q",
            "--layout",
            layout2.to_str().unwrap(),
            &reference,
        ],
    );
    assert_success(&out, &["pull", "-q"]);
    assert_eq!(stderr(&out), "");
    assert_eq!(check_layout_with_skopeo(&e, &layout2), digest);

    // Without --layout the layout goes to the OCI loader: the image is
    // loaded under its local name and runs, and no layout is left in the
    // cache.
    let out = pull(&e, &dirs, &["--tls-verify=false", &reference]);
    assert_success(&out, &["pull"]);
    let local = stdout(&out).trim().to_string();
    let ran = e
        .run_offline(&[&local, "sh", "-c", "echo pulled-and-ran"])
        .output()
        .expect("spawn supervisor");
    assert_success(&ran, &["run", &local]);
    assert!(
        stdout(&ran).contains("pulled-and-ran"),
        "{}",
        output_text(&ran)
    );
    let removed = e.tupper(&["image", "rm", &local]).output().expect("spawn");
    assert_success(&removed, &["image", "rm", &local]);
    assert_no_pulls_left(&dirs);
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn registry_pull_by_digest_and_a_missing_tag() {
    let e = env();
    let (reg, _, digest) = serve(&e, "digest", 5000, false, false, "busybox:latest");
    let dirs = user_dirs(&e, "digest");

    let layout = dirs.out.join("by-digest");
    let by_digest = format!("{}/busybox@{digest}", reg.host());
    let out = pull_into(&e, &dirs, &layout, &by_digest);
    assert_success(&out, &["pull", &by_digest]);
    assert_eq!(check_layout_with_skopeo(&e, &layout), digest);

    let missing = format!("{}/busybox:nope", reg.host());
    let out = pull_into(&e, &dirs, &dirs.out.join("x"), &missing);
    assert_eq!(out.status.code(), Some(125), "{}", output_text(&out));
    let err = stderr(&out);
    assert!(
        err.lines().last().unwrap_or("").starts_with("tupper: ") && err.contains("nope not found"),
        "{err}"
    );
    assert_eq!(
        err.lines().count(),
        2,
        "one Pulling line and one error line: {err}"
    );
    assert!(
        !dirs.out.join("x").exists(),
        "a failed pull left its layout directory"
    );

    let other = format!("{}/busybox@sha256:{}", reg.host(), "0".repeat(64));
    let out = pull(&e, &dirs, &["--tls-verify=false", &other]);
    assert!(stderr(&out).contains("not found"), "{}", output_text(&out));
    let out = pull(&e, &dirs, &["--tls-verify=false", "127.0.0.1:5000/UPPER/x"]);
    assert!(
        stderr(&out).contains("invalid image reference"),
        "{}",
        output_text(&out)
    );
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn registry_a_corrupted_blob_is_refused_and_nothing_is_cached() {
    let e = env();
    let (reg, src, _) = serve(&e, "corrupt", 5000, false, false, "busybox:latest");
    let layer = layer_digests(&src).remove(0);
    // Same size, other bytes: only the digest tells.
    let file = reg.blob_file(&layer);
    let mut bytes = fs::read(&file).expect("registry blob");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    fs::write(&file, &bytes).expect("corrupt the blob");

    let dirs = user_dirs(&e, "corrupt");
    let layout = dirs.out.join("layout");
    let reference = format!("{}/busybox", reg.host());
    for args in [
        vec![
            "--tls-verify=false",
            "--layout",
            layout.to_str().unwrap(),
            &reference,
        ],
        vec!["--tls-verify=false", &reference],
    ] {
        let out = pull(&e, &dirs, &args);
        assert_eq!(out.status.code(), Some(125), "{}", output_text(&out));
        let err = stderr(&out);
        assert!(
            err.contains("does not match its digest") && err.contains(&layer),
            "{err}"
        );
        let names = cached(&dirs);
        assert!(
            !names.contains(&layer[7..].to_string()),
            "the bad blob was cached: {names:?}"
        );
        assert!(
            !names.iter().any(|n| n.starts_with(".tmp")),
            "temporary files left: {names:?}"
        );
        assert!(!layout.exists(), "a failed pull left its layout");
        assert_no_pulls_left(&dirs);
    }
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn registry_credentials_come_from_a_private_auth_json() {
    let e = env();
    let (reg, _, digest) = serve(&e, "auth", 5001, true, false, "private/busybox:latest");
    let dirs = user_dirs(&e, "auth");
    let reference = format!("{}/private/busybox", reg.host());
    let layout = dirs.out.join("layout");
    let args = [
        "--tls-verify=false",
        "--layout",
        layout.to_str().unwrap(),
        &reference,
    ];

    // No credentials: refused, saying where they go.
    let out = pull(&e, &dirs, &args);
    assert_eq!(out.status.code(), Some(125), "{}", output_text(&out));
    let err = stderr(&out);
    assert!(
        err.contains("wants credentials") && err.contains("auth.json"),
        "{err}"
    );

    // Readable by others: refused before it is used.
    write_auth(&e, &dirs, &reg.host(), "puller", "s3cret", 0o644);
    let out = pull(&e, &dirs, &args);
    assert_eq!(out.status.code(), Some(125), "{}", output_text(&out));
    let err = stderr(&out);
    assert!(
        err.contains("mode 0644") && err.contains("chmod 600"),
        "{err}"
    );
    assert!(!layout.exists());

    // Wrong password: refused.
    write_auth(&e, &dirs, &reg.host(), "puller", "wrong", 0o600);
    let out = pull(&e, &dirs, &args);
    assert_eq!(out.status.code(), Some(125), "{}", output_text(&out));
    assert!(
        stderr(&out).contains("refused the credentials"),
        "{}",
        stderr(&out)
    );

    // Private and right: pulled.
    write_auth(&e, &dirs, &reg.host(), "puller", "s3cret", 0o600);
    let out = pull(&e, &dirs, &args);
    assert_success(&out, &args);
    assert_eq!(check_layout_with_skopeo(&e, &layout), digest);
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn registry_tls_is_verified_unless_told_otherwise() {
    let e = env();
    let (reg, _, digest) = serve(&e, "tls", 5002, false, true, "busybox:latest");
    let dirs = user_dirs(&e, "tls");
    let reference = format!("{}/busybox", reg.host());
    let layout = dirs.out.join("layout");

    // A self-signed certificate is not trusted by default.
    let out = pull(
        &e,
        &dirs,
        &["--layout", layout.to_str().unwrap(), &reference],
    );
    assert_eq!(out.status.code(), Some(125), "{}", output_text(&out));
    let err = stderr(&out);
    assert!(
        err.contains("over HTTPS") && err.contains("--tls-verify=false"),
        "{err}"
    );
    assert!(!layout.exists());

    // --tls-verify=false: HTTPS without verification.
    let out = pull_into(&e, &dirs, &layout, &reference);
    assert_success(&out, &["pull", "--tls-verify=false"]);
    assert_eq!(check_layout_with_skopeo(&e, &layout), digest);
}

/// `tupper-supervisor ARGS` as the test user with `dirs` as its XDG cache
/// and config directories, `input` on standard input (or none).
fn tupper_as_user(e: &Env, dirs: &UserDirs, args: &[&str], input: Option<&str>) -> Output {
    let mut c = e.as_user(&e.user, "/usr/bin/env");
    c.arg(format!("XDG_CACHE_HOME={}", dirs.cache.display()))
        .arg(format!("XDG_CONFIG_HOME={}", dirs.config.display()))
        .arg(e.supervisor())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if input.is_some() {
        c.stdin(Stdio::piped());
    }
    let mut child = c.spawn().expect("spawn supervisor");
    if let Some(text) = input {
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(text.as_bytes()).expect("write stdin");
    }
    child.wait_with_output().expect("wait supervisor")
}

/// Write `text` as the test user's file `path` with `mode`.
fn user_file(e: &Env, path: &Path, text: &str, mode: u32) {
    fs::write(path, text).expect("write");
    let uid = e.uid(&e.user);
    std::os::unix::fs::chown(path, Some(uid), Some(uid)).expect("chown");
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn registry_login_stores_checked_credentials_that_pull_uses() {
    let e = env();
    // htpasswd over TLS with a self-signed certificate.
    let (reg, _, digest) = serve(&e, "login", 5003, true, true, "private/loginbox:latest");
    let dirs = user_dirs(&e, "login");
    let host = reg.host();
    let reference = format!("{host}/private/loginbox");
    let auth = dirs.config.join("tupperware/auth.json");
    let layout = |n: &str| dirs.out.join(n).to_str().unwrap().to_string();
    let login = |args: &[&str], input: Option<&str>| {
        let mut a = vec!["login", "--tls-verify=false"];
        a.extend_from_slice(args);
        a.push(&host);
        tupper_as_user(&e, &dirs, &a, input)
    };
    // Someone else's entry and a key this runtime does not know.
    let theirs = r#"{"auths":{"other.example":{"auth":"b3RoZXI6cHc="}},"credHelpers":{"x.example":"helper"}}"#;
    user_file(&e, &auth, theirs, 0o600);

    // A wrong password: unauthorized, and the file not touched.
    let out = login(&["-u", "puller", "-p", "wrong"], None);
    assert_eq!(out.status.code(), Some(125), "{}", output_text(&out));
    assert!(stderr(&out).contains("unauthorized"), "{}", stderr(&out));
    assert_eq!(fs::read(&auth).expect("auth.json"), theirs.as_bytes());

    // No password and no terminal: a clear error, nothing asked.
    let out = login(&["-u", "puller"], None);
    assert_eq!(out.status.code(), Some(125), "{}", output_text(&out));
    assert!(stderr(&out).contains("no password"), "{}", stderr(&out));

    // Right: stored (with docker's warning about -p), private, the rest kept.
    let out = login(&["-u", "puller", "-p", "s3cret"], None);
    assert_success(&out, &["login", "-p"]);
    assert!(stderr(&out).contains("insecure"), "{}", stderr(&out));
    assert!(stdout(&out).contains("Login Succeeded"), "{}", stdout(&out));
    let meta = fs::symlink_metadata(&auth).expect("auth.json");
    assert_eq!(
        (meta.uid(), meta.mode() & 0o777, meta.is_file()),
        (e.uid(&e.user), 0o600, true)
    );
    let doc: serde_json::Value =
        serde_json::from_slice(&fs::read(&auth).expect("auth.json")).expect("json");
    assert_eq!(doc["credHelpers"]["x.example"], "helper", "{doc}");
    assert_eq!(
        doc["auths"]["other.example"]["auth"], "b3RoZXI6cHc=",
        "{doc}"
    );
    assert!(doc["auths"][&host]["auth"].is_string(), "{doc}");
    let out = tupper_as_user(&e, &dirs, &["login", "--get-login", &host], None);
    assert_success(&out, &["login", "--get-login"]);
    assert_eq!(stdout(&out).trim(), "puller");

    // pull finds them with no hand-written auth.json.
    let out = pull_into(&e, &dirs, Path::new(&layout("pulled")), &reference);
    assert_success(&out, &["pull", &reference]);
    assert_eq!(
        check_layout_with_skopeo(&e, Path::new(&layout("pulled"))),
        digest
    );

    // run --tls-verify: the implicit pull verifies unless told otherwise.
    let out = tupper_as_user(
        &e,
        &dirs,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "--pull",
            "always",
            &reference,
            "true",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(125), "{}", output_text(&out));
    assert!(
        stderr(&out).contains("--tls-verify=false"),
        "{}",
        stderr(&out)
    );
    let out = tupper_as_user(
        &e,
        &dirs,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "--pull",
            "always",
            "--tls-verify=false",
            &reference,
            "cat",
            "/marker",
        ],
        None,
    );
    assert_success(&out, &["run", "--tls-verify=false"]);
    assert!(stdout(&out).contains("login"), "{}", output_text(&out));
    let removed = e
        .tupper(&["image", "rm", "loginbox"])
        .output()
        .expect("spawn");
    assert_success(&removed, &["image", "rm", "loginbox"]);

    // logout: the entry goes, the rest stays; again: not logged in.
    let out = tupper_as_user(&e, &dirs, &["logout", &host], None);
    assert_success(&out, &["logout", &host]);
    let doc: serde_json::Value =
        serde_json::from_slice(&fs::read(&auth).expect("auth.json")).expect("json");
    assert!(doc["auths"].get(&host).is_none(), "{doc}");
    assert_eq!(
        doc["auths"]["other.example"]["auth"], "b3RoZXI6cHc=",
        "{doc}"
    );
    let out = tupper_as_user(&e, &dirs, &["logout", &host], None);
    assert_eq!(out.status.code(), Some(125), "{}", output_text(&out));
    assert!(stderr(&out).contains("not logged into"), "{}", stderr(&out));
    let out = pull_into(&e, &dirs, Path::new(&layout("after-logout")), &reference);
    assert_eq!(out.status.code(), Some(125), "{}", output_text(&out));
    assert!(
        stderr(&out).contains("wants credentials"),
        "{}",
        stderr(&out)
    );

    // --password-stdin (a trailing newline is not part of the password).
    let out = login(&["-u", "puller", "--password-stdin"], Some("s3cret\n"));
    assert_success(&out, &["login", "--password-stdin"]);
    assert!(!stderr(&out).contains("insecure"), "{}", stderr(&out));
    let out = pull_into(&e, &dirs, Path::new(&layout("stdin")), &reference);
    assert_success(&out, &["pull", "after --password-stdin"]);

    // logout --all: no entry left, the other keys kept.
    let out = tupper_as_user(&e, &dirs, &["logout", "--all"], None);
    assert_success(&out, &["logout", "--all"]);
    let doc: serde_json::Value =
        serde_json::from_slice(&fs::read(&auth).expect("auth.json")).expect("json");
    assert_eq!(doc["auths"], serde_json::json!({}), "{doc}");
    assert_eq!(doc["credHelpers"]["x.example"], "helper", "{doc}");
    assert_eq!(
        fs::metadata(&auth).expect("auth.json").mode() & 0o777,
        0o600
    );
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn registry_login_refuses_an_auth_file_that_is_a_link_or_readable() {
    let e = env();
    let reg = Registry::start(&e, "login-hostile", 5004, true, false);
    let dirs = user_dirs(&e, "login-hostile");
    let host = reg.host();
    let auth = dirs.config.join("tupperware/auth.json");
    let good = [
        "login",
        "--tls-verify=false",
        "-u",
        "puller",
        "-p",
        "s3cret",
    ];
    let login = || {
        let mut a = good.to_vec();
        a.push(&host);
        tupper_as_user(&e, &dirs, &a, None)
    };

    // A symlink at the file's path: refused; the link and its target stay.
    let target = dirs.out.join("target.json");
    let target_text = r#"{"auths":{}}"#;
    user_file(&e, &target, target_text, 0o600);
    std::os::unix::fs::symlink(&target, &auth).expect("symlink");
    let out = login();
    assert_eq!(out.status.code(), Some(125), "{}", output_text(&out));
    assert!(stderr(&out).contains("symbolic link"), "{}", stderr(&out));
    assert_eq!(fs::read(&target).expect("target"), target_text.as_bytes());
    assert!(fs::symlink_metadata(&auth)
        .expect("link")
        .file_type()
        .is_symlink());
    let out = tupper_as_user(&e, &dirs, &["logout", "--all"], None);
    assert_eq!(out.status.code(), Some(125), "{}", output_text(&out));
    assert_eq!(fs::read(&target).expect("target"), target_text.as_bytes());
    fs::remove_file(&auth).expect("remove the link");

    // Readable by the group: refused as pull refuses it, the file unchanged.
    let text = r#"{"auths":{"other.example":{"auth":"b3RoZXI6cHc="}}}"#;
    user_file(&e, &auth, text, 0o640);
    let out = login();
    assert_eq!(out.status.code(), Some(125), "{}", output_text(&out));
    assert!(stderr(&out).contains("chmod 600"), "{}", stderr(&out));
    let meta = fs::metadata(&auth).expect("auth.json");
    assert_eq!(meta.mode() & 0o777, 0o640);
    assert_eq!(fs::read(&auth).expect("auth.json"), text.as_bytes());

    // Another user's file (root's, private): refused, unchanged.
    fs::remove_file(&auth).expect("remove");
    fs::write(&auth, text).expect("write");
    fs::set_permissions(&auth, fs::Permissions::from_mode(0o600)).expect("chmod");
    let out = login();
    assert_eq!(out.status.code(), Some(125), "{}", output_text(&out));
    assert_eq!(fs::read(&auth).expect("auth.json"), text.as_bytes());
    assert_eq!(fs::metadata(&auth).expect("auth.json").uid(), 0);

    // The same credentials into a file of the user's own: accepted (the
    // refusals above were the file's, not the registry's).
    fs::remove_file(&auth).expect("remove");
    let out = login();
    assert_success(&out, &good);
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn registry_login_on_a_terminal_asks_for_the_password_without_echo() {
    use std::io::Read;
    use std::sync::{Arc, Mutex};
    let e = env();
    let reg = Registry::start(&e, "login-tty", 5005, true, false);
    let dirs = user_dirs(&e, "login-tty");
    // `script` gives the supervisor a terminal; its output is the terminal's.
    let cmd = format!(
        "exec /usr/bin/env XDG_CONFIG_HOME={} XDG_CACHE_HOME={} {} login --tls-verify=false {}",
        dirs.config.display(),
        dirs.cache.display(),
        e.supervisor().display(),
        reg.host()
    );
    let mut c = e.as_user(&e.user, "/usr/bin/env");
    c.args([
        "SHELL=/bin/sh",
        "script",
        "-q",
        "-e",
        "-c",
        &cmd,
        "/dev/null",
    ])
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = c.spawn().expect("spawn script");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut terminal = child.stdout.take().expect("stdout");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let reader = {
        let seen = seen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 256];
            while let Ok(n) = terminal.read(&mut buf) {
                if n == 0 {
                    break;
                }
                seen.lock().expect("lock").extend_from_slice(&buf[..n]);
            }
        })
    };
    let wait_for = |needle: &str| {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = String::from_utf8_lossy(&seen.lock().expect("lock")).into_owned();
            if text.contains(needle) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no {needle:?} on the terminal: {text:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait_for("Username: ");
    stdin.write_all(b"puller\n").expect("type the user name");
    wait_for("Password: ");
    stdin.write_all(b"s3cret\n").expect("type the password");
    let status = child.wait().expect("wait script");
    drop(stdin);
    let _ = reader.join();
    let text = String::from_utf8_lossy(&seen.lock().expect("lock")).into_owned();
    assert!(status.success(), "{status:?}: {text:?}");
    assert!(text.contains("Login Succeeded"), "{text:?}");
    // The user name is echoed, the password is not.
    assert!(text.contains("Username: puller"), "{text:?}");
    assert!(
        !text.contains("s3cret"),
        "the password was echoed: {text:?}"
    );
    let out = tupper_as_user(&e, &dirs, &["login", "--get-login", &reg.host()], None);
    assert_success(&out, &["login", "--get-login"]);
    assert_eq!(stdout(&out).trim(), "puller");
}
