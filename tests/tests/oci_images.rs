//! OCI images end to end (issue 10): layouts, archives, whiteouts, opaque
//! directories, zstd, config at run, sharing of layers, integrity.
//!
//! `tests/run.sh` builds the images with umoci and skopeo
//! (`tests/make-oci-images.sh`) and passes their directory in
//! `TUPPER_OCI_IMAGES`. Each test uses image names of its own.

use std::path::PathBuf;
use std::process::Output;
use std::time::Instant;

use tupper_integration::{assert_success, output_text, Env};

const IGNORE: &str = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)";

fn env() -> Env {
    Env::get(env!("CARGO_BIN_EXE_tupper-drive"))
}

fn images() -> PathBuf {
    std::env::var("TUPPER_OCI_IMAGES")
        .expect("TUPPER_OCI_IMAGES is not set (run tests/run.sh)")
        .into()
}

/// A fresh scratch directory under the prefix (removed when dropped).
struct Scratch(PathBuf);
impl Scratch {
    fn path(&self) -> &std::path::Path {
        &self.0
    }
}
impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
fn scratch(e: &Env, name: &str) -> Scratch {
    let p = e
        .prefix
        .join("cache")
        .join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(&p).unwrap();
    Scratch(p)
}

fn tupper(e: &Env, args: &[&str]) -> Output {
    e.tupper(args).output().expect("spawn supervisor")
}

fn ok(e: &Env, args: &[&str]) -> String {
    let out = tupper(e, args);
    assert_success(&out, args);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn load(e: &Env, what: &str, name: &str) {
    let p = images().join(what);
    ok(e, &["image", "load", p.to_str().unwrap(), name]);
}

fn rm(e: &Env, names: &[&str]) {
    for n in names {
        let _ = tupper(e, &["image", "rm", n]);
    }
    let _ = tupper(e, &["image", "prune"]);
}

/// The layered image: the whiteout removed /gone, the opaque /opq holds only
/// `new`, and the config's Cmd/Env/WorkingDir apply; flags override them.
fn check_layered(e: &Env, name: &str) {
    let out = ok(
        e,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            name,
            "sh",
            "-c",
            "ls /gone 2>&1; ls /opq; cat /etc/os-release >/dev/null 2>&1; busybox true && echo bb",
        ],
    );
    assert!(out.contains("No such file"), "{out}");
    assert_eq!(
        out.lines()
            .filter(|l| *l == "new" || *l == "old")
            .collect::<Vec<_>>(),
        ["new"],
        "{out}"
    );
    assert!(out.contains("bb"), "{out}");
    let out = ok(e, &["run", "--rm", "--network", "none", name]);
    assert_eq!(out.trim(), "cmd in /opq as hello");
    let out = ok(
        e,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "-e",
            "GREETING=flag",
            "-w",
            "/tmp",
            name,
            "sh",
            "-c",
            "echo $PWD $GREETING $OTHER",
        ],
    );
    assert_eq!(out.trim(), "/tmp flag 1");
    let out = ok(
        e,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "--entrypoint",
            "/bin/echo",
            name,
            "ep",
        ],
    );
    assert_eq!(out.trim(), "ep");
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn oci_layout_dir_archive_docker_and_zstd() {
    let _ = IGNORE;
    let e = env();
    let names = [
        "oci-dir:final",
        "oci-tar:final",
        "oci-zstd",
        "localhost/oci-docker:v1",
    ];
    rm(&e, &names);
    load(&e, "layout", "oci-dir:final");
    check_layered(&e, "oci-dir:final");
    // The archive holds four images (base, second, two, final): a name
    // that selects none of them by its tag is refused, never a guess.
    let out = tupper(
        &e,
        &[
            "image",
            "load",
            images().join("oci.tar").to_str().unwrap(),
            "oci-tar",
        ],
    );
    assert!(!out.status.success(), "{}", output_text(&out));
    assert!(
        output_text(&out).contains("base, second, two, final"),
        "{}",
        output_text(&out)
    );
    load(&e, "oci.tar", "oci-tar:final");
    check_layered(&e, "oci-tar:final");
    load(&e, "zstd", "oci-zstd");
    check_layered(&e, "oci-zstd");
    // A Docker archive names itself.
    ok(
        &e,
        &[
            "image",
            "load",
            images().join("docker.tar").to_str().unwrap(),
        ],
    );
    check_layered(&e, "localhost/oci-docker:v1");
    let ls = ok(&e, &["image", "ls"]);
    assert!(
        ls.contains("REPOSITORY") && ls.contains("localhost/oci-docker") && ls.contains("v1"),
        "{ls}"
    );
    let inspect = ok(&e, &["image", "inspect", "oci-tar:final"]);
    let v: serde_json::Value = serde_json::from_str(&inspect).unwrap();
    assert_eq!(v[0]["Config"]["WorkingDir"], "/opq", "{inspect}");
    assert_eq!(v[0]["Config"]["Labels"]["org.example"], "oci", "{inspect}");
    assert_eq!(v[0]["RootFS"]["Layers"].as_array().unwrap().len(), 3);
    rm(&e, &names);
}

/// Layer subvolumes of the test user (`images/<uid>/.layers/*`).
fn layers(e: &Env) -> usize {
    let dir = e
        .store
        .join("images")
        .join(e.uid(&e.user).to_string())
        .join(".layers");
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter(|x| {
                x.as_ref()
                    .map(|x| !x.file_name().to_string_lossy().starts_with('.'))
                    .unwrap_or(false)
            })
            .count()
        })
        .unwrap_or(0)
}

/// `btrfs filesystem du -s --raw` of images: per image (total, exclusive),
/// and the bytes they share (the last line's "set shared").
fn du(e: &Env, names: &[&str]) -> (Vec<(u64, u64)>, u64) {
    let dir = e.store.join("images").join(e.uid(&e.user).to_string());
    let out = std::process::Command::new("btrfs")
        .args(["filesystem", "du", "-s", "--raw"])
        .args(names.iter().map(|n| dir.join(n)))
        .output()
        .expect("btrfs filesystem du");
    assert!(out.status.success(), "{}", output_text(&out));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("{text}");
    let rows: Vec<Vec<u64>> = text
        .lines()
        .skip(1)
        .map(|l| {
            l.split_whitespace()
                .take(3)
                .map(|n| n.parse().unwrap_or(0))
                .collect()
        })
        .collect();
    let per = rows.iter().map(|r| (r[0], r[1])).collect();
    let shared = rows.iter().map(|r| r[2]).max().unwrap_or(0);
    (per, shared)
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn oci_second_import_is_fast_and_layers_are_shared() {
    let e = env();
    rm(
        &e,
        &[
            "oci-share1:final",
            "oci-share2:final",
            "oci-share3:second",
            "oci-share4",
        ],
    );
    // Other images of the user may hold some of these layers: counts are
    // relative to what is there now.
    let base = layers(&e);
    let t = Instant::now();
    load(&e, "layout", "oci-share1:final");
    let first = t.elapsed();
    let after_first = layers(&e);
    assert!(after_first <= base + 3, "{base} {after_first}");
    let subvols = e.subvolumes().len();
    let t = Instant::now();
    load(&e, "layout", "oci-share2:final");
    let second = t.elapsed();
    eprintln!(
        "first import {first:?} ({} new layers), second import of the same image {second:?} (goal < 100 ms)",
        after_first - base
    );
    // Structural: no new layer, one new subvolume (the image's snapshot).
    assert_eq!(layers(&e), after_first);
    assert_eq!(e.subvolumes().len(), subvols + 1);
    // A second image over the same base adds only its own layer.
    let p = images().join("layout");
    ok(
        &e,
        &["image", "load", p.to_str().unwrap(), "oci-share3:second"],
    );
    assert_eq!(layers(&e), after_first + 1);
    let out = ok(
        &e,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "oci-share3:second",
            "cat",
            "/second",
        ],
    );
    assert_eq!(out.trim(), "second");
    // Space: the two images' files are the same extents, stored once.
    let (per, shared) = du(&e, &["oci-share1:final", "oci-share3:second"]);
    let (total1, excl1) = per[0];
    let (total3, excl3) = per[1];
    eprintln!(
        "sharing: oci-share1 {total1} bytes ({excl1} exclusive), oci-share3 {total3} bytes \
         ({excl3} exclusive), shared between them {shared} bytes"
    );
    assert!(total3 > 500_000, "{total3}");
    assert!(excl3 < 64 * 1024, "the second image's own data: {excl3}");
    assert!(shared * 10 >= total3 * 9, "shared {shared} of {total3}");
    // rm keeps layers other images use; prune removes the unused ones.
    ok(&e, &["image", "rm", "oci-share3:second"]);
    ok(&e, &["image", "prune"]);
    assert_eq!(layers(&e), after_first);
    ok(&e, &["image", "tag", "oci-share1:final", "oci-share4"]);
    ok(&e, &["image", "rm", "oci-share1:final", "oci-share2:final"]);
    ok(&e, &["image", "prune"]);
    assert_eq!(layers(&e), after_first, "a tagged image keeps its layers");
    check_layered(&e, "oci-share4");
    ok(&e, &["image", "rm", "oci-share4"]);
    ok(&e, &["image", "prune"]);
    assert_eq!(layers(&e), base);
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn oci_corrupt_blob_is_refused_and_nothing_is_left() {
    let e = env();
    rm(&e, &["oci-corrupt:final"]);
    let tmp = scratch(&e, "oci-corrupt");
    let src = images().join("layout");
    let st = std::process::Command::new("cp")
        .arg("-a")
        .arg(&src)
        .arg(tmp.path().join("l"))
        .status()
        .unwrap();
    assert!(st.success());
    // Flip a byte in the biggest blob (the busybox layer) without changing its size.
    let blobs = tmp.path().join("l/blobs/sha256");
    let big = std::fs::read_dir(&blobs)
        .unwrap()
        .map(|d| d.unwrap().path())
        .max_by_key(|p| p.metadata().unwrap().len())
        .unwrap();
    let mut bytes = std::fs::read(&big).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&big, bytes).unwrap();
    std::process::Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(tmp.path())
        .status()
        .unwrap();
    let before = e.subvolumes();
    let out = tupper(
        &e,
        &[
            "image",
            "load",
            tmp.path().join("l").to_str().unwrap(),
            "oci-corrupt:final",
        ],
    );
    assert!(!out.status.success(), "{}", output_text(&out));
    assert!(
        output_text(&out).contains("digest"),
        "{}",
        output_text(&out)
    );
    assert_eq!(e.subvolumes(), before, "nothing left behind");
    assert!(!ok(&e, &["image", "ls"]).contains("oci-corrupt"));
}

#[test]
#[ignore = "privileged end-to-end test: run by tests/run.sh (root, installed helpers)"]
fn oci_hostile_whiteouts_are_refused() {
    let e = env();
    rm(&e, &["oci-hostile:bad"]);
    let src = images().join("layout");
    for (i, script) in [
        // through a symlinked parent: `link` points (absolutely) at a canary
        // directory of the host, `link/.wh.canary` would delete its file if
        // followed. Built without following the link (`x/` renamed `link/`).
        "ln -s \"$CANARY\" link && mkdir x && : > x/.wh.canary && \
         tar -cf ../l.tar --transform 's,^x/,link/,' link x/.wh.canary",
        // a whiteout of '..'
        ": > .wh.. 2>/dev/null; mkdir d && : > d/.wh... && tar -cf ../l.tar d d/.wh...",
    ]
    .iter()
    .enumerate()
    {
        let tmp = scratch(&e, &format!("oci-hostile-{i}"));
        let l = tmp.path().join("l");
        assert!(std::process::Command::new("cp")
            .arg("-a")
            .arg(&src)
            .arg(&l)
            .status()
            .unwrap()
            .success());
        std::fs::create_dir(tmp.path().join("w")).unwrap();
        // A file outside the store that anyone could delete: only the
        // helper's refusal keeps it.
        let canary = tmp.path().join("canary");
        std::fs::create_dir(&canary).unwrap();
        std::fs::write(canary.join("canary"), "x").unwrap();
        std::process::Command::new("chmod")
            .args(["0777"])
            .arg(&canary)
            .status()
            .unwrap();
        let st = std::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .env("CANARY", &canary)
            .current_dir(tmp.path().join("w"))
            .status()
            .unwrap();
        assert!(st.success(), "{script}");
        assert!(std::process::Command::new("umoci")
            .args(["raw", "add-layer", "--image"])
            .arg(format!("{}:final", l.display()))
            .args(["--tag", "bad"])
            .arg(tmp.path().join("l.tar"))
            .status()
            .unwrap()
            .success());
        std::process::Command::new("chmod")
            .args(["-R", "a+rX"])
            .arg(tmp.path())
            .status()
            .unwrap();
        let before = e.subvolumes();
        let out = tupper(
            &e,
            &["image", "load", l.to_str().unwrap(), "oci-hostile:bad"],
        );
        assert!(!out.status.success(), "case {i}: {}", output_text(&out));
        assert!(
            output_text(&out).contains("whiteout"),
            "case {i}: {}",
            output_text(&out)
        );
        assert!(
            canary.join("canary").exists(),
            "case {i}: the canary is gone"
        );
        // The lower layers stay (they are verified and shared); no image, no partial layer.
        let after = e.subvolumes();
        assert!(
            after
                .iter()
                .all(|s| before.contains(s) || s.contains("/.layers/")),
            "{after:?}"
        );
        assert!(!after.iter().any(|s| s.contains(".import-")), "{after:?}");
    }
    rm(&e, &["oci-hostile:bad"]);
}
