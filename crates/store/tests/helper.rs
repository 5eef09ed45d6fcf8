//! Drives the real `tupper-storage` binary over a socketpair on fd 3.
//!
//! Needs root and a store: `tests/run.sh` runs these against the build it
//! installed into its test prefix (with its file capabilities), whose
//! compiled-in configuration points at the test store — never at the
//! production store `/var/lib/tupperware` — and passes both in environment
//! variables (`TUPPER_PREFIX`, `TUPPER_STORE`). Each test removes the images
//! and containers it creates; `tests/run.sh` removes root's (now empty)
//! directories of the store afterwards. Each test is `#[ignore]`d (a plain
//! `cargo test` reports it as ignored); run with `--ignored` outside
//! `tests/run.sh`, it fails instead of passing having done nothing.

use std::io::Read;

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Mutex, OnceLock};

use proto::{Channel, ErrorKind, RemoteError, StorageReply, StorageRequest};

/// The tests share one store and check it for leftovers: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// What `tests/run.sh` passes in.
struct Setup {
    /// The installed helper, with its file capabilities.
    helper: PathBuf,
    /// The store its configuration names.
    store: PathBuf,
}

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: the tupper-storage tests are run by tests/run.sh (root, test prefix and store)")
    })
}

fn setup() -> &'static Setup {
    static S: OnceLock<Setup> = OnceLock::new();
    S.get_or_init(|| {
        // SAFETY: geteuid cannot fail.
        assert_eq!(
            unsafe { libc::geteuid() },
            0,
            "the tupper-storage tests must run as root (tests/run.sh)"
        );
        let s = Setup {
            helper: Path::new(&var("TUPPER_PREFIX")).join("libexec/tupperware/tupper-storage"),
            store: var("TUPPER_STORE").into(),
        };
        assert_ne!(
            s.store,
            Path::new("/var/lib/tupperware"),
            "never the production store"
        );
        assert!(s.helper.is_file(), "{} is missing", s.helper.display());
        s
    })
}

fn store() -> &'static Path {
    &setup().store
}

struct Helper {
    chan: Channel,
    child: Child,
}

impl Helper {
    fn spawn() -> Helper {
        let mut cmd = Command::new(&setup().helper);
        let (chan, child) = proto::spawn::spawn_with_channel(&mut cmd).unwrap();
        let mut h = Helper { chan, child };
        h.chan.handshake().unwrap();
        h
    }

    fn call(&mut self, req: StorageRequest) -> Result<StorageReply, RemoteError> {
        self.chan.send(&req).unwrap();
        self.chan.recv().unwrap()
    }

    fn send_tar(&mut self, name: &str, data: &[u8]) {
        self.chan
            .send(&StorageRequest::ImportBegin { name: name.into() })
            .unwrap();
        for c in data.chunks(7000) {
            self.chan
                .send(&StorageRequest::ImportChunk(c.to_vec()))
                .unwrap();
        }
        self.chan.send(&StorageRequest::ImportEnd).unwrap();
    }

    fn import(&mut self, name: &str, data: &[u8]) -> Result<StorageReply, RemoteError> {
        self.send_tar(name, data);
        self.chan.recv().unwrap()
    }

    fn images(&mut self) -> Vec<String> {
        match self.call(StorageRequest::ListImages).unwrap() {
            StorageReply::Images(v) => v.into_iter().map(|i| i.name).collect(),
            other => panic!("{other:?}"),
        }
    }

    fn containers(&mut self) -> Vec<String> {
        match self.call(StorageRequest::ListContainers).unwrap() {
            StorageReply::Containers(v) => v,
            other => panic!("{other:?}"),
        }
    }

    fn finish(self) {
        let Helper { chan, mut child } = self;
        drop(chan);
        assert!(child.wait().unwrap().success());
    }

    /// After a reply of kind `Protocol`: the helper serves nothing more and
    /// exits with failure.
    fn ended_by_protocol_error(self) {
        let Helper {
            mut chan,
            mut child,
        } = self;
        // The helper may be gone already: then sending is a broken pipe.
        let _ = chan.send(&StorageRequest::ListImages);
        match chan.recv_opt::<Result<StorageReply, RemoteError>>() {
            Ok(None) | Err(_) => {}
            Ok(Some(reply)) => panic!("served after a protocol error: {reply:?}"),
        }
        drop(chan);
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(1), "{status}");
    }
}

fn uid() -> u32 {
    unsafe { libc::getuid() }
}

fn images_dir() -> PathBuf {
    store().join("images").join(uid().to_string())
}

fn containers_dir() -> PathBuf {
    store().join("containers").join(uid().to_string())
}

fn unique(tag: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "t{}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst),
        tag
    )
}

fn container_id() -> String {
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut b)
        .unwrap();
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// After a failed import: no image of that name and no partial subvolume.
fn assert_nothing_left(name: &str) {
    for e in std::fs::read_dir(images_dir()).unwrap() {
        let n = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(!n.starts_with(".import-"), "partial import {n} left behind");
        assert_ne!(n, name, "failed image {name} left behind");
    }
}

fn expect_err(r: Result<StorageReply, RemoteError>, kind: ErrorKind, text: &str) {
    match r {
        Err(e) => {
            assert_eq!(e.kind, kind, "{e:?}");
            assert!(e.message.contains(text), "{:?} lacks {text:?}", e.message);
        }
        Ok(r) => panic!("expected {kind:?} error, got {r:?}"),
    }
}

// ---- tarball building -------------------------------------------------

struct Tar(tar::Builder<Vec<u8>>);

impl Tar {
    fn new() -> Tar {
        Tar(tar::Builder::new(Vec::new()))
    }

    /// A raw header: the path (or link target) is written verbatim, which
    /// the Builder's checked helpers would refuse for `..`.
    fn raw(&mut self, t: tar::EntryType, path: &str, link: &str, mode: u32, uid: u64, data: &[u8]) {
        let mut h = tar::Header::new_gnu();
        {
            let old = h.as_old_mut();
            old.name[..path.len()].copy_from_slice(path.as_bytes());
            old.linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        h.set_entry_type(t);
        h.set_mode(mode);
        h.set_uid(uid);
        h.set_gid(uid);
        h.set_mtime(1_700_000_000);
        h.set_size(data.len() as u64);
        h.set_cksum();
        self.0.append(&h, data).unwrap();
    }

    fn dir(mut self, path: &str) -> Self {
        self.raw(tar::EntryType::Directory, path, "", 0o755, 0, b"");
        self
    }
    fn file(mut self, path: &str, mode: u32, uid: u64, data: &[u8]) -> Self {
        self.raw(tar::EntryType::Regular, path, "", mode, uid, data);
        self
    }
    fn symlink(mut self, path: &str, target: &str) -> Self {
        self.raw(tar::EntryType::Symlink, path, target, 0o777, 0, b"");
        self
    }
    fn hardlink(mut self, path: &str, target: &str) -> Self {
        self.raw(tar::EntryType::Link, path, target, 0o644, 0, b"");
        self
    }
    /// PAX `SCHILY.xattr.<name>` records for the next entry.
    fn xattrs(mut self, attrs: &[(&str, &[u8])]) -> Self {
        let keys: Vec<String> = attrs
            .iter()
            .map(|(n, _)| format!("SCHILY.xattr.{n}"))
            .collect();
        self.0
            .append_pax_extensions(
                keys.iter()
                    .map(String::as_str)
                    .zip(attrs.iter().map(|a| a.1)),
            )
            .unwrap();
        self
    }
    fn done(self) -> Vec<u8> {
        self.0.into_inner().unwrap()
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(data).unwrap();
    gz.finish().unwrap()
}

fn sample() -> Tar {
    Tar::new()
        .dir("./")
        .dir("./etc/")
        .dir("./bin/")
        .dir("./tmp/")
        .file("./etc/hostname", 0o644, 0, b"tupperware\n")
        .file("./bin/busybox", 0o4755, 0, &vec![0x7f; 300_000])
        .file("./home-file", 0o2750, 1000, b"owned by 1000")
        .symlink("./bin/sh", "/bin/busybox")
        .hardlink("./bin/ls", "./bin/busybox")
}

// ---- tests ------------------------------------------------------------

#[test]
#[ignore = "needs root, the test prefix and store: run by tests/run.sh"]
fn init_mounts_a_btrfs_store() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut h = Helper::spawn();
    assert_eq!(h.call(StorageRequest::Init).unwrap(), StorageReply::Done);
    assert_eq!(h.call(StorageRequest::Init).unwrap(), StorageReply::Done);
    h.finish();
    let st = nix::sys::statfs::statfs(store()).unwrap();
    assert_eq!(st.filesystem_type(), nix::sys::statfs::BTRFS_SUPER_MAGIC);
    for d in ["images", "containers"] {
        let m = std::fs::metadata(store().join(d)).unwrap();
        assert_eq!((m.uid(), m.mode() & 0o7777), (0, 0o700), "{d}");
    }
}

#[test]
#[ignore = "needs root, the test prefix and store: run by tests/run.sh"]
fn import_list_snapshot_remove() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut h = Helper::spawn();
    let name = unique("good");
    let tarball = gzip(&sample().done());
    match h.import(&name, &tarball).unwrap() {
        StorageReply::Imported {
            name: n,
            entries,
            bytes,
            devices_skipped,
            xattrs_skipped,
        } => {
            assert_eq!(n, name);
            assert_eq!(devices_skipped, 0);
            assert_eq!(xattrs_skipped, 0);
            assert_eq!(entries, 9);
            assert_eq!(bytes, 300_000 + 11 + 13);
        }
        other => panic!("{other:?}"),
    }
    assert!(h.images().contains(&name));

    let img = images_dir().join(&name);
    let bb = std::fs::symlink_metadata(img.join("bin/busybox")).unwrap();
    assert_eq!(bb.mode() & 0o7777, 0o4755, "setuid kept");
    assert_eq!(bb.nlink(), 2, "hardlink to busybox");
    let hf = std::fs::symlink_metadata(img.join("home-file")).unwrap();
    assert_eq!(
        (hf.uid(), hf.gid(), hf.mode() & 0o7777),
        (1000, 1000, 0o2750)
    );
    assert_eq!(hf.mtime(), 1_700_000_000);
    assert_eq!(
        std::fs::read_link(img.join("bin/sh")).unwrap(),
        Path::new("/bin/busybox")
    );
    assert_eq!(
        std::fs::symlink_metadata(img.join("etc")).unwrap().mtime(),
        1_700_000_000
    );
    // Read-only image.
    let e = std::fs::write(img.join("new"), b"x").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EROFS));

    // Under an existing name.
    expect_err(
        h.import(&name, &tarball),
        ErrorKind::AlreadyExists,
        "already exists",
    );

    let id = container_id();
    assert_eq!(
        h.call(StorageRequest::Snapshot {
            image: name.clone(),
            container: id.clone()
        })
        .unwrap(),
        StorageReply::Done
    );
    assert!(h.containers().contains(&id));
    expect_err(
        h.call(StorageRequest::Snapshot {
            image: name.clone(),
            container: id.clone(),
        }),
        ErrorKind::AlreadyExists,
        "already exists",
    );
    let root = containers_dir().join(&id);
    std::fs::write(root.join("tmp/written-in-container"), b"x").unwrap();
    assert!(!img.join("tmp/written-in-container").exists());
    assert_eq!(
        std::fs::read(root.join("etc/hostname")).unwrap(),
        b"tupperware\n"
    );

    // Typo gets a suggestion.
    let typo = &name[..name.len() - 1];
    expect_err(
        h.call(StorageRequest::Snapshot {
            image: typo.to_string(),
            container: container_id(),
        }),
        ErrorKind::NotFound,
        &format!("image {typo:?} not found (did you mean {name:?}?)"),
    );

    assert_eq!(
        h.call(StorageRequest::RemoveContainer {
            container: id.clone()
        })
        .unwrap(),
        StorageReply::Done
    );
    assert!(!h.containers().contains(&id));
    expect_err(
        h.call(StorageRequest::RemoveContainer { container: id }),
        ErrorKind::NotFound,
        "not found",
    );
    assert_eq!(
        h.call(StorageRequest::RemoveImage { name: name.clone() })
            .unwrap(),
        StorageReply::Done
    );
    assert!(!h.images().contains(&name));
    expect_err(
        h.call(StorageRequest::RemoveImage { name: name.clone() }),
        ErrorKind::NotFound,
        &format!("image {name:?} not found"),
    );
    h.finish();
}

#[test]
#[ignore = "needs root, the test prefix and store: run by tests/run.sh"]
fn zstd_and_plain_tarballs() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut h = Helper::spawn();
    let plain = sample().done();
    let zst = zstd::encode_all(&plain[..], 3).unwrap();
    for data in [plain, zst] {
        let name = unique("fmt");
        assert!(matches!(
            h.import(&name, &data).unwrap(),
            StorageReply::Imported { .. }
        ));
        h.call(StorageRequest::RemoveImage { name }).unwrap();
    }
    h.finish();
}

#[test]
#[ignore = "needs root, the test prefix and store: run by tests/run.sh"]
fn hostile_names_and_ids() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut h = Helper::spawn();
    let tarball = sample().done();
    expect_err(
        h.import("../x", &tarball),
        ErrorKind::InvalidRequest,
        "name",
    );
    expect_err(
        h.call(StorageRequest::Snapshot {
            image: "../../etc".into(),
            container: container_id(),
        }),
        ErrorKind::InvalidRequest,
        "name",
    );
    expect_err(
        h.call(StorageRequest::Snapshot {
            image: "x".into(),
            container: "../../../../etc".into(),
        }),
        ErrorKind::InvalidRequest,
        "container id",
    );
    expect_err(
        h.call(StorageRequest::RemoveContainer {
            container: "../images".into(),
        }),
        ErrorKind::InvalidRequest,
        "container id",
    );
    expect_err(
        h.call(StorageRequest::RemoveImage {
            name: ".import-x".into(),
        }),
        ErrorKind::InvalidRequest,
        "name",
    );
    // A protocol violation is answered, then ends the session (the serve
    // loop of every helper): nothing more is read, and the helper exits
    // with failure.
    expect_err(
        h.call(StorageRequest::ImportChunk(vec![1, 2, 3])),
        ErrorKind::Protocol,
        "outside of an import",
    );
    h.ended_by_protocol_error();
}

#[test]
#[ignore = "needs root, the test prefix and store: run by tests/run.sh"]
fn hostile_entries_leave_nothing() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let passwd_before = std::fs::read("/etc/passwd").unwrap();
    let mut h = Helper::spawn();
    let mut chr = Tar::new();
    chr.raw(tar::EntryType::Char, "../null", "", 0o666, 0, b"");
    let cases: Vec<(&str, Vec<u8>, ErrorKind, &str)> = vec![
        (
            "dotdot",
            Tar::new()
                .file("etc/ok", 0o644, 0, b"ok")
                .file("../../etc/x", 0o644, 0, b"evil")
                .done(),
            ErrorKind::Unsafe,
            "tarball entry \"../../etc/x\": path leaves the image",
        ),
        (
            "dotdot-mid",
            Tar::new().file("a/../../b", 0o644, 0, b"evil").done(),
            ErrorKind::Unsafe,
            "path leaves the image",
        ),
        (
            "hardlink-abs",
            Tar::new().hardlink("passwd", "/etc/passwd").done(),
            ErrorKind::Unsafe,
            "hardlink target \"/etc/passwd\"",
        ),
        (
            "hardlink-up",
            Tar::new().hardlink("passwd", "../../etc/passwd").done(),
            ErrorKind::Unsafe,
            "hardlink target \"../../etc/passwd\" leaves the image",
        ),
        (
            "hardlink-through-symlink",
            Tar::new()
                .symlink("hostetc", "/etc")
                .hardlink("passwd", "hostetc/passwd")
                .done(),
            ErrorKind::Unsafe,
            "is not a file earlier in this image",
        ),
        (
            "hardlink-dir",
            Tar::new().dir("d/").hardlink("l", "d").done(),
            ErrorKind::Unsafe,
            "is not a file earlier in this image",
        ),
        (
            // A device node's name is checked like any other entry's.
            "device-dotdot",
            chr.done(),
            ErrorKind::Unsafe,
            "tarball entry \"../null\": path leaves the image",
        ),
        (
            "uid",
            Tar::new().file("f", 0o644, 70000, b"x").done(),
            ErrorKind::Unsafe,
            "owned by uid 70000, outside the container's 0..65535",
        ),
        (
            "truncated",
            {
                let t = sample().done();
                t[..t.len() / 2].to_vec()
            },
            ErrorKind::InvalidRequest,
            "cannot read the tarball",
        ),
        (
            "truncated-gz",
            {
                let t = gzip(&sample().done());
                t[..t.len() - 20].to_vec()
            },
            ErrorKind::InvalidRequest,
            "cannot read the tarball",
        ),
        (
            "garbage",
            vec![0x55; 5000],
            ErrorKind::InvalidRequest,
            "cannot read the tarball",
        ),
        ("empty", vec![], ErrorKind::InvalidRequest, "no entries"),
    ];
    for (tag, data, kind, text) in cases {
        let name = unique(tag);
        expect_err(h.import(&name, &data), kind, text);
        assert_nothing_left(&name);
    }
    // The helper keeps serving after failed imports.
    assert!(h.call(StorageRequest::ListImages).is_ok());
    h.finish();
    assert_eq!(std::fs::read("/etc/passwd").unwrap(), passwd_before);
    assert!(!Path::new("/etc/x").exists());
}

#[test]
#[ignore = "needs root, the test prefix and store: run by tests/run.sh"]
fn absolute_symlink_is_followed_inside_the_image() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let passwd_before = std::fs::read("/etc/passwd").unwrap();
    let mut h = Helper::spawn();
    let name = unique("abslink");
    let t = Tar::new()
        .dir("etc/")
        .symlink("etc/evil", "/etc")
        .file("etc/evil/passwd", 0o644, 0, b"root:x:0:0::/root:/bin/sh\n")
        .symlink("up", "../../../../..")
        .file("up/tmp/escaped", 0o644, 0, b"x")
        .done();
    assert!(matches!(
        h.import(&name, &t).unwrap(),
        StorageReply::Imported { .. }
    ));
    let img = images_dir().join(&name);
    assert_eq!(
        std::fs::read(img.join("etc/passwd")).unwrap(),
        b"root:x:0:0::/root:/bin/sh\n"
    );
    assert_eq!(
        std::fs::read_link(img.join("etc/evil")).unwrap(),
        Path::new("/etc")
    );
    assert!(img.join("tmp/escaped").exists());
    assert!(!Path::new("/tmp/escaped").exists());
    assert_eq!(std::fs::read("/etc/passwd").unwrap(), passwd_before);
    h.call(StorageRequest::RemoveImage { name }).unwrap();
    h.finish();
}

#[test]
#[ignore = "needs root, the test prefix and store: run by tests/run.sh"]
fn later_entries_replace_earlier_ones() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut h = Helper::spawn();
    let name = unique("replace");
    let mut t = Tar::new()
        .file("a", 0o644, 0, b"first")
        .file("a", 0o600, 0, b"second")
        .symlink("b", "a")
        .file("b", 0o644, 0, b"not through the link")
        .dir("c/")
        .dir("c/");
    t.raw(tar::EntryType::Fifo, "fifo", "", 0o620, 0, b"");
    assert!(matches!(
        h.import(&name, &t.done()).unwrap(),
        StorageReply::Imported { .. }
    ));
    let img = images_dir().join(&name);
    assert_eq!(std::fs::read(img.join("a")).unwrap(), b"second");
    assert_eq!(
        std::fs::read(img.join("b")).unwrap(),
        b"not through the link"
    );
    let f = std::fs::symlink_metadata(img.join("fifo")).unwrap();
    assert!(std::os::unix::fs::FileTypeExt::is_fifo(&f.file_type()));
    assert_eq!(f.permissions().mode() & 0o7777, 0o620);
    h.call(StorageRequest::RemoveImage { name }).unwrap();
    h.finish();
}

#[test]
#[ignore = "needs root, the test prefix and store: run by tests/run.sh"]
fn closing_mid_import_leaves_nothing() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut h = Helper::spawn();
    let name = unique("closed");
    let t = sample().done();
    h.chan
        .send(&StorageRequest::ImportBegin { name: name.clone() })
        .unwrap();
    h.chan
        .send(&StorageRequest::ImportChunk(t[..t.len() / 2].to_vec()))
        .unwrap();
    let Helper { chan, mut child } = h;
    drop(chan);
    child.wait().unwrap();
    assert_nothing_left(&name);
}

#[test]
#[ignore = "needs root, the test prefix and store: run by tests/run.sh"]
fn partial_import_of_a_killed_helper_is_reaped() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut h = Helper::spawn();
    let t = sample().done();
    h.chan
        .send(&StorageRequest::ImportBegin {
            name: unique("killed"),
        })
        .unwrap();
    h.chan
        .send(&StorageRequest::ImportChunk(t[..t.len() / 2].to_vec()))
        .unwrap();
    // Wait until the partial subvolume is there, then kill the helper.
    let partials = || {
        std::fs::read_dir(images_dir())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with(".import-")
            })
            .count()
    };
    for _ in 0..200 {
        if partials() > 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(partials(), 1);
    h.child.kill().unwrap();
    h.child.wait().unwrap();
    assert_eq!(partials(), 1, "a SIGKILLed helper cannot clean up");
    // The next import of the same user reaps it.
    let mut h = Helper::spawn();
    let name = unique("after-kill");
    assert!(matches!(
        h.import(&name, &t).unwrap(),
        StorageReply::Imported { .. }
    ));
    assert_eq!(partials(), 0);
    h.call(StorageRequest::RemoveImage { name }).unwrap();
    h.finish();
}

#[test]
#[ignore = "needs root, the test prefix and store: run by tests/run.sh"]
fn device_nodes_are_left_out_and_counted() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut h = Helper::spawn();
    let name = unique("devices");
    // As mmdebstrap and `docker export` make them: /dev with its nodes.
    let mut t = Tar::new()
        .dir("dev/")
        .dir("etc/")
        .file("etc/hostname", 0o644, 0, b"box\n");
    t.raw(tar::EntryType::Block, "dev/sda", "", 0o660, 0, b"");
    t.raw(tar::EntryType::Char, "./dev/console", "", 0o600, 0, b"");
    match h.import(&name, &t.done()).unwrap() {
        StorageReply::Imported {
            entries,
            devices_skipped,
            ..
        } => {
            assert_eq!(devices_skipped, 2);
            assert_eq!(entries, 3, "dev/, etc/ and etc/hostname");
        }
        other => panic!("{other:?}"),
    }
    let img = images_dir().join(&name);
    assert!(img.join("dev").is_dir());
    assert!(std::fs::symlink_metadata(img.join("dev/sda")).is_err());
    assert!(std::fs::symlink_metadata(img.join("dev/console")).is_err());
    assert_eq!(std::fs::read(img.join("etc/hostname")).unwrap(), b"box\n");
    h.call(StorageRequest::RemoveImage { name }).unwrap();
}

// ---- files in and out of containers (commit, export, cp) --------------

/// Send `ExportBegin` and collect the tar; every chunk is bounded.
fn export(h: &mut Helper, container: &str, path: Option<&str>) -> Result<Vec<u8>, RemoteError> {
    h.chan
        .send(&StorageRequest::ExportBegin {
            container: container.into(),
            path: path.map(str::to_string),
        })
        .unwrap();
    let mut tar = Vec::new();
    loop {
        match h
            .chan
            .recv::<Result<StorageReply, RemoteError>>()
            .unwrap()?
        {
            StorageReply::ExportChunk(c) => {
                assert!(!c.is_empty() && c.len() <= proto::frame::MAX_CHUNK_LEN);
                tar.extend(c);
            }
            StorageReply::Exported { .. } => return Ok(tar),
            other => panic!("{other:?}"),
        }
    }
}

fn copy_in(h: &mut Helper, container: &str, data: &[u8]) -> Result<StorageReply, RemoteError> {
    h.chan
        .send(&StorageRequest::CopyInBegin {
            running: None,
            container: container.into(),
        })
        .unwrap();
    for c in data.chunks(7000) {
        h.chan
            .send(&StorageRequest::ImportChunk(c.to_vec()))
            .unwrap();
    }
    h.chan.send(&StorageRequest::ImportEnd).unwrap();
    h.chan.recv().unwrap()
}

#[test]
#[ignore = "needs root, the test prefix and store: run by tests/run.sh"]
fn export_stat_copy_in_and_commit_a_container_root() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut h = Helper::spawn();
    let name = unique("files");
    let id = container_id();
    h.import(&name, &sample().done()).unwrap();
    h.call(StorageRequest::Snapshot {
        image: name.clone(),
        container: id.clone(),
    })
    .unwrap();

    // A subvolume the container made inside its root, and an extended
    // attribute: both are exported.
    let root = containers_dir().join(&id);
    let made = Command::new("btrfs")
        .args(["subvolume", "create"])
        .arg(root.join("nested"))
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    std::fs::write(root.join("nested/inner"), b"in a nested subvolume").unwrap();
    let attr = std::ffi::CString::new(root.join("home-file").into_os_string().into_encoded_bytes())
        .unwrap();
    // SAFETY: valid NUL-terminated strings and buffer.
    let rc = unsafe {
        libc::setxattr(
            attr.as_ptr(),
            c"user.tupper".as_ptr(),
            b"kept".as_ptr().cast(),
            4,
            0,
        )
    };
    assert_eq!(rc, 0, "setxattr: {}", std::io::Error::last_os_error());

    // export: the whole root, modes, owners and hardlinks kept
    let tar = export(&mut h, &id, None).unwrap();
    let mut seen = std::collections::HashMap::new();
    let mut xattr = None;
    for e in tar::Archive::new(tar.as_slice()).entries().unwrap() {
        let mut e = e.unwrap();
        let n = String::from_utf8(e.path_bytes().into_owned()).unwrap();
        if n == "home-file" {
            for x in e.pax_extensions().unwrap().unwrap() {
                let x = x.unwrap();
                if x.key().unwrap() == "SCHILY.xattr.user.tupper" {
                    xattr = Some(x.value_bytes().to_vec());
                }
            }
        }
        let hd = e.header();
        seen.insert(
            n,
            (
                hd.entry_type(),
                hd.mode().unwrap() & 0o7777,
                hd.uid().unwrap(),
            ),
        );
    }
    assert_eq!(seen["./"].0, tar::EntryType::Directory);
    assert_eq!(seen["home-file"], (tar::EntryType::Regular, 0o2750, 1000));
    assert_eq!(seen["bin/sh"].0, tar::EntryType::Symlink);
    let kinds = [seen["bin/busybox"].0, seen["bin/ls"].0];
    assert!(kinds.contains(&tar::EntryType::Link), "{kinds:?}");
    assert_eq!(seen["nested/inner"].0, tar::EntryType::Regular);
    assert_eq!(xattr.as_deref(), Some(&b"kept"[..]));

    // cp out: `..` and absolute symlinks stay inside the root
    let one = export(&mut h, &id, Some("/../../../../etc/hostname")).unwrap();
    let mut a = tar::Archive::new(one.as_slice());
    let mut e = a.entries().unwrap().next().unwrap().unwrap();
    assert_eq!(e.path_bytes().as_ref(), b"hostname");
    let mut body = String::new();
    e.read_to_string(&mut body).unwrap();
    assert_eq!(body, "tupperware\n");
    expect_err(
        export(&mut h, &id, Some("/nope")).map(|_| StorageReply::Done),
        ErrorKind::NotFound,
        "not found",
    );

    // stat
    for (p, k) in [
        ("/etc", proto::PathKind::Directory),
        ("/etc/hostname", proto::PathKind::Other),
        ("/nope", proto::PathKind::Missing),
        ("/../..", proto::PathKind::Directory),
    ] {
        let r = h
            .call(StorageRequest::StatPath {
                container: id.clone(),
                path: p.into(),
            })
            .unwrap();
        assert_eq!(r, StorageReply::PathKind(k), "{p}");
    }

    // cp in: through the import's extractor; the root keeps its mode
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o711)).unwrap();
    let t = Tar::new().file("tmp/new", 0o640, 0, b"copied").done();
    assert_eq!(
        copy_in(&mut h, &id, &t).unwrap(),
        StorageReply::CopiedIn { entries: 1 }
    );
    assert_eq!(std::fs::read(root.join("tmp/new")).unwrap(), b"copied");
    assert_eq!(
        std::fs::metadata(&root).unwrap().permissions().mode() & 0o7777,
        0o711
    );
    let t = Tar::new().file("../../escaped", 0o644, 0, b"x").done();
    expect_err(copy_in(&mut h, &id, &t), ErrorKind::Unsafe, "leaves");
    assert!(!containers_dir().join("escaped").exists());
    assert!(!store().join("escaped").exists());

    // commit: a read-only image, names refused when taken or invalid
    let committed = unique("commit");
    h.call(StorageRequest::Commit {
        container: id.clone(),
        image: committed.clone(),
    })
    .unwrap();
    assert!(h.images().contains(&committed));
    assert_eq!(
        std::fs::read(images_dir().join(&committed).join("tmp/new")).unwrap(),
        b"copied"
    );
    assert!(std::fs::write(images_dir().join(&committed).join("x"), b"").is_err());
    expect_err(
        h.call(StorageRequest::Commit {
            container: id.clone(),
            image: committed.clone(),
        }),
        ErrorKind::AlreadyExists,
        "already exists",
    );
    expect_err(
        h.call(StorageRequest::Commit {
            container: container_id(),
            image: unique("ghost"),
        }),
        ErrorKind::NotFound,
        "not found",
    );

    h.call(StorageRequest::RemoveImage { name: committed })
        .unwrap();
    h.call(StorageRequest::RemoveContainer { container: id })
        .unwrap();
    h.call(StorageRequest::RemoveImage { name }).unwrap();
    h.finish();
}

#[test]
#[ignore = "needs root, the test prefix and store: run by tests/run.sh"]
fn a_supervisor_gone_mid_export_ends_the_session() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut h = Helper::spawn();
    let name = unique("export-gone");
    let id = container_id();
    let big: Vec<u8> = (0..8 << 20).map(|i: u32| (i % 251) as u8).collect();
    let t = Tar::new().file("big", 0o644, 0, &big).done();
    h.import(&name, &t).unwrap();
    h.call(StorageRequest::Snapshot {
        image: name.clone(),
        container: id.clone(),
    })
    .unwrap();
    h.chan
        .send(&StorageRequest::ExportBegin {
            container: id.clone(),
            path: None,
        })
        .unwrap();
    let first: Result<StorageReply, RemoteError> = h.chan.recv().unwrap();
    assert!(matches!(first, Ok(StorageReply::ExportChunk(_))));
    let Helper { chan, mut child } = h;
    drop(chan);
    let started = std::time::Instant::now();
    let status = child.wait().unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert!(status.code().is_some(), "killed by a signal: {status}");
    let mut h = Helper::spawn();
    h.call(StorageRequest::RemoveContainer { container: id })
        .unwrap();
    h.call(StorageRequest::RemoveImage { name }).unwrap();
    h.finish();
}

/// An extended attribute of `path` itself, never following a symlink.
fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    let p = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    let mut buf = vec![0u8; 65536];
    // SAFETY: valid C strings and a buffer of the given length.
    let r = unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if r < 0 {
        assert_eq!(
            std::io::Error::last_os_error().raw_os_error(),
            Some(libc::ENODATA)
        );
        return None;
    }
    buf.truncate(r as usize);
    Some(buf)
}

/// `cap_net_raw=ep`, v2.
fn net_raw_v2() -> Vec<u8> {
    let mut v = 0x0200_0001u32.to_le_bytes().to_vec();
    v.extend_from_slice(&(1u32 << 13).to_le_bytes());
    v.extend_from_slice(&[0u8; 12]);
    v
}

#[test]
#[ignore = "needs root, the test prefix and store: run by tests/run.sh"]
fn extended_attributes_are_kept_after_ownership_and_the_rest_counted() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut h = Helper::spawn();
    let name = unique("xattrs");
    let mut v3_other = net_raw_v2();
    v3_other[3] = 0x03;
    v3_other.extend_from_slice(&4242u32.to_le_bytes());
    // Owned by uid 7 (chown after the attributes would clear the
    // capability), setuid, with a v3 capability whose root id is someone
    // else; a symlink and a hardlink carrying attributes.
    let t = Tar::new()
        .dir("etc/")
        .file("etc/plain", 0o755, 0, b"plain")
        .xattrs(&[
            ("security.capability", &v3_other),
            ("user.note", b"kept"),
            ("trusted.overlay.opaque", b"y"),
            ("security.selinux", b"system_u:object_r:bin_t:s0\0"),
        ])
        .file("etc/ping", 0o4755, 7, b"\x7fELF")
        .xattrs(&[("user.on-link", b"x")])
        .symlink("etc/link", "ping")
        .xattrs(&[("security.capability", &net_raw_v2())])
        .hardlink("etc/plain-link", "etc/plain")
        .done();
    match h.import(&name, &t).unwrap() {
        StorageReply::Imported { xattrs_skipped, .. } => {
            assert_eq!(xattrs_skipped, 3, "trusted, selinux, the symlink's");
        }
        other => panic!("{other:?}"),
    }
    let img = images_dir().join(&name);
    let ping = img.join("etc/ping");
    // Root imports without a mapping (or with root as container root): the
    // capability is written as v2, and applies to host root as in the image.
    assert_eq!(xattr(&ping, "security.capability"), Some(net_raw_v2()));
    assert_eq!(xattr(&ping, "user.note").as_deref(), Some(&b"kept"[..]));
    assert_eq!(xattr(&ping, "trusted.overlay.opaque"), None);
    assert_eq!(xattr(&ping, "security.selinux"), None);
    let md = std::fs::metadata(&ping).unwrap();
    assert_eq!(
        md.mode() & 0o7777,
        0o4755,
        "setuid kept next to the capability"
    );
    assert_eq!(xattr(&img.join("etc/plain"), "security.capability"), None);
    h.call(StorageRequest::RemoveImage { name }).unwrap();
    h.finish();
}

#[test]
#[ignore = "needs root, the test prefix and store: run by tests/run.sh"]
fn hostile_extended_attributes_and_image_archives_are_refused() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut h = Helper::spawn();
    let bad_cap = Tar::new()
        .dir("etc/")
        .xattrs(&[("security.capability", b"\x00\x00\x00\x02")])
        .file("etc/x", 0o755, 0, b"x")
        .done();
    let name = unique("badcap");
    expect_err(
        h.import(&name, &bad_cap),
        ErrorKind::Unsafe,
        "tarball entry \"etc/x\" has a malformed security.capability",
    );
    assert_nothing_left(&name);
    let keys: Vec<String> = (0..200).map(|i| format!("user.{i}")).collect();
    let many: Vec<(&str, &[u8])> = keys.iter().map(|k| (k.as_str(), &b"v"[..])).collect();
    let t = Tar::new()
        .xattrs(&many)
        .file("etc/x", 0o644, 0, b"x")
        .done();
    let name = unique("many");
    expect_err(
        h.import(&name, &t),
        ErrorKind::Unsafe,
        "has more than 128 extended attributes",
    );
    assert_nothing_left(&name);
    let id = "5b0a3f9e3c1d2e4f60718293a4b5c6d7e8f90123456789abcdef0123456789ab";
    let archive = Tar::new()
        .dir(&format!("{id}/"))
        .file(&format!("{id}/layer.tar"), 0o644, 0, &[0u8; 1024])
        .file("manifest.json", 0o644, 0, b"[]")
        .file("repositories", 0o644, 0, b"{}")
        .done();
    let name = unique("archive");
    expect_err(
        h.import(&name, &archive),
        ErrorKind::InvalidRequest,
        "made by `docker save` or `podman save`",
    );
    assert_nothing_left(&name);
    let oci = Tar::new()
        .file("oci-layout", 0o644, 0, b"{}")
        .file("index.json", 0o644, 0, b"{}")
        .done();
    let name = unique("oci");
    expect_err(
        h.import(&name, &oci),
        ErrorKind::InvalidRequest,
        "OCI image layout",
    );
    assert_nothing_left(&name);
    h.finish();
}
