//! The container's mount tree: its root bound onto itself, `/proc`, `/sys`,
//! a minimal `/dev`, then `pivot_root` so no host mount stays visible.
//!
//! Every mount target is opened beneath the container root without following
//! any symlink (`openat2` with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`) and the
//! mount is made on that very descriptor (`/proc/self/fd/N`), so the image
//! cannot redirect a mount onto a host path, not even by racing us.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::mount::{MntFlags, MsFlags};

use crate::error::{Context, Error};
use tupper_sys::{cstring, fd_path, RESOLVE_STRICT};

// Declared here rather than in `init/mod.rs`: the seam belongs to this file.
use super::mount_sys::{MountSys, Real};
use super::volumes;
use proto::SpawnRequest;

pub fn set_up_root(req: &SpawnRequest) -> Result<(), Error> {
    set_up_root_with(&Real, req)
}

pub(super) fn set_up_root_with(s: &impl MountSys, req: &SpawnRequest) -> Result<(), Error> {
    make_mounts_private(s)?;
    let root = move_root_into_place(s)?;
    mount_proc(s, &root)?;
    mount_sys(s, &root)?;
    mount_dev(s, &root)?;
    protect_proc(s, &root)?;
    protect_sys(s, &root)?;
    // Volumes, tmpfs and the provided /etc files, then a read-only root
    // (its mount points exist by then).
    volumes::attach(s, &root, &req.mounts)?;
    if req.read_only_root {
        volumes::read_only_root(s, &root)?;
    }
    drop(root);
    pivot(s)
}

/// Nothing we mount propagates to the host, nothing of the host's to us.
fn make_mounts_private(s: &impl MountSys) -> Result<(), Error> {
    s.mount(
        None,
        c"/",
        None,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None,
    )
    .ctx("make mounts private")
}

/// Our cwd is the root of the container root's mount, attached nowhere
/// (`tupper-storage` made it, issue 9): move that very mount (not a copy:
/// its id is `tupper-net`'s proof) onto `/` of our new mount namespace, on
/// top of the host's tree that `pivot_root` then detaches, and enter it.
/// Returns the mount's root, which is also the new cwd.
fn move_root_into_place(s: &impl MountSys) -> Result<OwnedFd, Error> {
    let tree = s
        .open_tree(libc::AT_FDCWD, c".", 0)
        .ctx("open the container root")?;
    s.move_mount(
        tree.as_raw_fd(),
        c"",
        libc::AT_FDCWD,
        c"/",
        libc::MOVE_MOUNT_F_EMPTY_PATH,
    )
    .ctx("attach the container root")?;
    s.fchdir(&tree).ctx("enter the container root")?;
    Ok(tree)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Dir,
    File,
}

/// Open `rel` beneath `root` without following symlinks.
fn open_beneath(
    s: &impl MountSys,
    root: &OwnedFd,
    rel: &str,
    flags: i32,
) -> std::io::Result<OwnedFd> {
    s.openat2(
        root.as_raw_fd(),
        &cstring(rel)?,
        flags | libc::O_PATH,
        RESOLVE_STRICT,
    )
}

fn refuse(rel: &str) -> Error {
    Error::Unsafe(format!(
        "refusing to mount on /{rel} in the container: it is a symbolic link or has the wrong type"
    ))
}

/// The mount point `rel` (created when missing), refusing symlinks and wrong types.
fn mountpoint(s: &impl MountSys, root: &OwnedFd, rel: &str, kind: Kind) -> Result<OwnedFd, Error> {
    let (parent_rel, name) = rel.rsplit_once('/').unwrap_or((".", rel));
    let parent = open_beneath(s, root, parent_rel, libc::O_DIRECTORY).map_err(|e| {
        match e.raw_os_error() {
            Some(libc::ELOOP | libc::ENOTDIR | libc::EXDEV) => refuse(parent_rel),
            _ => Error::sys(format!("open /{parent_rel} in the container"))(e),
        }
    })?;
    let name_c = cstring(name).ctx("mount point name")?;
    let created = match kind {
        Kind::Dir => s.mkdirat(parent.as_raw_fd(), &name_c),
        Kind::File => s.create_file(parent.as_raw_fd(), &name_c),
    };
    if let Err(e) = created {
        if e.raw_os_error() != Some(libc::EEXIST) {
            return Err(Error::sys(format!("create /{rel} in the container"))(e));
        }
    }
    let fd = open_beneath(s, root, rel, 0).map_err(|e| match e.raw_os_error() {
        Some(libc::ELOOP | libc::ENOTDIR | libc::EXDEV) => refuse(rel),
        _ => Error::sys(format!("open /{rel} in the container"))(e),
    })?;
    let mode = s
        .file_mode(&fd)
        .ctx(format!("inspect /{rel} in the container"))?;
    let is_dir = mode & libc::S_IFMT == libc::S_IFDIR;
    let is_link = mode & libc::S_IFMT == libc::S_IFLNK;
    if is_link || is_dir != (kind == Kind::Dir) {
        return Err(refuse(rel));
    }
    Ok(fd)
}

/// Whatever exists at `rel` beneath `root`, or `None` (for optional targets).
fn existing(s: &impl MountSys, root: &OwnedFd, rel: &str) -> Result<Option<OwnedFd>, Error> {
    match open_beneath(s, root, rel, 0) {
        Ok(fd) => Ok(Some(fd)),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(Error::sys(format!("open /{rel} in the container"))(e)),
    }
}

pub(super) fn mount_on(
    s: &impl MountSys,
    target: &OwnedFd,
    source: Option<&str>,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> nix::Result<()> {
    let target: CString = fd_path(target);
    s.mount(source, target.as_c_str(), fstype, flags, data)
}

fn bind_on(s: &impl MountSys, target: &OwnedFd, source: &str, flags: MsFlags) -> nix::Result<()> {
    mount_on(
        s,
        target,
        Some(source),
        None,
        MsFlags::MS_BIND | flags,
        None,
    )
}

/// Make the mount at `rel` read-only; `rel` is re-opened so that the
/// descriptor names the mount's root, not the directory beneath it.
fn remount_read_only(s: &impl MountSys, root: &OwnedFd, rel: &str) -> Result<(), Error> {
    let fd = existing(s, root, rel)?.ok_or_else(|| refuse(rel))?;
    mount_on(
        s,
        &fd,
        None,
        None,
        MsFlags::MS_REMOUNT
            | MsFlags::MS_BIND
            | MsFlags::MS_RDONLY
            | MsFlags::MS_NOSUID
            | MsFlags::MS_NODEV
            | MsFlags::MS_NOEXEC,
        None,
    )
    .ctx(format!("make /{rel} read-only"))
}

const NOSUID_NODEV_NOEXEC: MsFlags = MsFlags::MS_NOSUID
    .union(MsFlags::MS_NODEV)
    .union(MsFlags::MS_NOEXEC);

fn mount_proc(s: &impl MountSys, root: &OwnedFd) -> Result<(), Error> {
    let target = mountpoint(s, root, "proc", Kind::Dir)?;
    mount_on(
        s,
        &target,
        Some("proc"),
        Some("proc"),
        NOSUID_NODEV_NOEXEC,
        None,
    )
    .ctx("mount /proc")
}

fn mount_sys(s: &impl MountSys, root: &OwnedFd) -> Result<(), Error> {
    let target = mountpoint(s, root, "sys", Kind::Dir)?;
    match mount_on(
        s,
        &target,
        Some("sysfs"),
        Some("sysfs"),
        NOSUID_NODEV_NOEXEC | MsFlags::MS_RDONLY,
        None,
    ) {
        Ok(()) => Ok(()),
        Err(nix::Error::EPERM) => {
            // A fresh sysfs is refused: show the host's, read-only.
            let host_sys = "/sys";
            bind_on(s, &target, host_sys, MsFlags::MS_REC).ctx("mount /sys")?;
            remount_read_only(s, root, "sys")
        }
        Err(e) => Err(e).ctx("mount /sys"),
    }
}

/// Device nodes bound from the host into the container's `/dev`.
const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// Symlinks in the container's `/dev`.
const DEV_LINKS: [(&str, &str); 5] = [
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("ptmx", "pts/ptmx"),
];

fn mount_dev(s: &impl MountSys, root: &OwnedFd) -> Result<(), Error> {
    let target = mountpoint(s, root, "dev", Kind::Dir)?;
    mount_on(
        s,
        &target,
        Some("tmpfs"),
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME,
        Some("mode=755,size=65536k"),
    )
    .ctx("mount /dev")?;

    for name in DEVICES {
        let rel = format!("dev/{name}");
        let node = mountpoint(s, root, &rel, Kind::File)?;
        bind_on(s, &node, &format!("/dev/{name}"), MsFlags::empty()).ctx(format!("bind /{rel}"))?;
    }

    let dev = existing(s, root, "dev")?.ok_or_else(|| refuse("dev"))?;
    for (name, to) in DEV_LINKS {
        let (name_c, to_c) = (cstring(name).ctx("link")?, cstring(to).ctx("link")?);
        s.symlinkat(&to_c, dev.as_raw_fd(), &name_c)
            .ctx(format!("create /dev/{name}"))?;
    }

    let pts = mountpoint(s, root, "dev/pts", Kind::Dir)?;
    // Container gid 5 (tty) is always mapped: the map covers 0..65535, and
    // without a user namespace host gid 5 is used.
    let pts_flags = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC;
    mount_on(
        s,
        &pts,
        Some("devpts"),
        Some("devpts"),
        pts_flags,
        Some("newinstance,ptmxmode=0666,mode=0620,gid=5"),
    )
    .or_else(|_| {
        mount_on(
            s,
            &pts,
            Some("devpts"),
            Some("devpts"),
            pts_flags,
            Some("newinstance,ptmxmode=0666,mode=0620"),
        )
    })
    .ctx("mount /dev/pts")?;

    let shm = mountpoint(s, root, "dev/shm", Kind::Dir)?;
    mount_on(
        s,
        &shm,
        Some("shm"),
        Some("tmpfs"),
        NOSUID_NODEV_NOEXEC,
        Some("mode=1777,size=65536k"),
    )
    .ctx("mount /dev/shm")
}

/// `/proc` entries that could change the host kernel, made read-only.
const PROC_READ_ONLY: [&str; 5] = ["sys", "sysrq-trigger", "irq", "bus", "fs"];
/// `/proc` files that leak host information, hidden behind `/dev/null`.
const PROC_MASKED_FILES: [&str; 6] = [
    "kcore",
    "keys",
    "timer_list",
    "sched_debug",
    "latency_stats",
    "timer_stats",
];
/// `/proc` directories hidden behind an empty read-only tmpfs.
const PROC_MASKED_DIRS: [&str; 2] = ["acpi", "scsi"];

fn protect_proc(s: &impl MountSys, root: &OwnedFd) -> Result<(), Error> {
    for name in PROC_READ_ONLY {
        let rel = format!("proc/{name}");
        if let Some(fd) = existing(s, root, &rel)? {
            let path = fd_path(&fd);
            let path = path.to_str().unwrap_or_default();
            bind_on(s, &fd, path, MsFlags::MS_REC).ctx(format!("protect /{rel}"))?;
            remount_read_only(s, root, &rel)?;
        }
    }
    for name in PROC_MASKED_FILES {
        let rel = format!("proc/{name}");
        if let Some(fd) = existing(s, root, &rel)? {
            bind_on(s, &fd, "/dev/null", MsFlags::empty()).ctx(format!("mask /{rel}"))?;
        }
    }
    mask_dirs(s, root, "proc", &PROC_MASKED_DIRS)
}

/// Hide each existing `<top>/<name>` behind an empty read-only tmpfs.
fn mask_dirs(s: &impl MountSys, root: &OwnedFd, top: &str, names: &[&str]) -> Result<(), Error> {
    for name in names {
        let rel = format!("{top}/{name}");
        if let Some(fd) = existing(s, root, &rel)? {
            mount_on(
                s,
                &fd,
                Some("tmpfs"),
                Some("tmpfs"),
                NOSUID_NODEV_NOEXEC | MsFlags::MS_RDONLY,
                None,
            )
            .ctx(format!("mask /{rel}"))?;
        }
    }
    Ok(())
}

/// `/sys` entries hidden behind an empty read-only tmpfs (when they exist).
const SYS_MASKED_DIRS: [&str; 2] = ["firmware", "devices/virtual/powercap"];

fn protect_sys(s: &impl MountSys, root: &OwnedFd) -> Result<(), Error> {
    mask_dirs(s, root, "sys", &SYS_MASKED_DIRS)
}

/// Make the container root `/` and detach the host's tree.
fn pivot(s: &impl MountSys) -> Result<(), Error> {
    s.pivot_root(c".", c".")
        .ctx("pivot_root into the container root")?;
    s.umount2(c".", MntFlags::MNT_DETACH)
        .ctx("detach the host's mounts")?;
    s.chdir(c"/").ctx("enter /")
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::init::mount_sys::fake::{Call, Fake, Node, Target};

    fn fd(path: &str) -> Target {
        Target::Fd(path.to_string())
    }

    pub(in crate::init) fn req() -> SpawnRequest {
        SpawnRequest {
            container: "0123456789abcdef0123456789abcdef".into(),
            command: vec!["sh".into()],
            env: vec![],
            hostname: "h".into(),
            workdir: "/".into(),
            tty: false,
            security: Default::default(),
            mounts: vec![],
            read_only_root: false,
        }
    }

    /// A container root as an image ships it: the usual directories, and
    /// the `/proc` entries the init protects.
    fn image() -> Fake {
        let mut owned: Vec<(String, Node)> = ["proc", "sys", "dev"]
            .iter()
            .map(|d| (d.to_string(), Node::Dir))
            .collect();
        for name in PROC_READ_ONLY {
            owned.push((format!("proc/{name}"), Node::Dir));
        }
        owned.push(("proc/kcore".into(), Node::File));
        owned.push(("proc/acpi".into(), Node::Dir));
        let refs: Vec<(&str, Node)> = owned.iter().map(|(n, k)| (n.as_str(), k.clone())).collect();
        Fake::with(&refs)
    }

    /// The mounts in order: (source, target, fstype, flags, data).
    fn mounts(calls: &[Call]) -> Vec<(Option<Target>, Target, Option<String>, MsFlags)> {
        calls
            .iter()
            .filter_map(|c| match c {
                Call::Mount {
                    source,
                    target,
                    fstype,
                    flags,
                    ..
                } => Some((source.clone(), target.clone(), fstype.clone(), *flags)),
                _ => None,
            })
            .collect()
    }

    fn position(calls: &[Call], what: &str, pred: impl Fn(&Call) -> bool) -> usize {
        calls
            .iter()
            .position(pred)
            .unwrap_or_else(|| panic!("no call for {what} in {calls:#?}"))
    }

    fn is_mount_of(c: &Call, ty: &str) -> bool {
        matches!(c, Call::Mount { fstype: Some(t), .. } if t == ty)
    }

    /// Anything that changes the mount table or the tree.
    fn is_change(c: &Call) -> bool {
        matches!(
            c,
            Call::Mount { .. }
                | Call::OpenTree { .. }
                | Call::MoveMount { .. }
                | Call::Mkdir(_)
                | Call::CreateFile(_)
                | Call::Symlink { .. }
                | Call::PivotRoot { .. }
                | Call::Umount2 { .. }
        )
    }

    #[test]
    fn mounts_are_made_private_before_anything_else_changes() {
        let fake = image();
        set_up_root_with(&fake, &req()).unwrap();
        let calls = fake.calls();
        let first = calls.iter().find(|c| is_change(c)).unwrap();
        assert_eq!(
            *first,
            Call::Mount {
                source: None,
                target: Target::Path("/".into()),
                fstype: None,
                flags: MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                data: None,
            }
        );
    }

    #[test]
    fn the_root_mount_itself_is_moved_onto_slash_and_entered_before_proc() {
        let fake = image();
        set_up_root_with(&fake, &req()).unwrap();
        let calls = fake.calls();
        // No OPEN_TREE_CLONE: the mount tupper-storage made, not a copy.
        let open_tree = position(&calls, "open_tree", |c| {
            *c == Call::OpenTree {
                dirfd: libc::AT_FDCWD,
                path: ".".into(),
                flags: 0,
            }
        });
        let move_mount = position(&calls, "move_mount", |c| {
            *c == Call::MoveMount {
                from: fd(""),
                from_path: String::new(),
                to_dirfd: libc::AT_FDCWD,
                to: Target::Path(format!("fd {}", libc::AT_FDCWD)),
                to_path: "/".into(),
                flags: libc::MOVE_MOUNT_F_EMPTY_PATH,
            }
        });
        let enter = position(&calls, "fchdir", |c| *c == Call::Fchdir(fd("")));
        let first_open = position(&calls, "openat2", |c| matches!(c, Call::Open { .. }));
        let proc = position(&calls, "proc", |c| is_mount_of(c, "proc"));
        assert!(open_tree < move_mount, "{calls:#?}");
        assert!(move_mount < enter, "{calls:#?}");
        assert!(enter < first_open, "{calls:#?}");
        assert!(move_mount < proc, "{calls:#?}");
    }

    #[test]
    fn every_mount_is_made_on_a_descriptor_opened_beneath_the_root() {
        let fake = image();
        set_up_root_with(&fake, &req()).unwrap();
        let calls = fake.calls();
        // Every lookup starts at the bound root and follows no symlink.
        for c in &calls {
            if let Call::Open { dir, resolve, .. } = c {
                assert_eq!(*dir, fd(""), "{c:?}");
                assert_eq!(*resolve, RESOLVE_STRICT, "{c:?}");
                assert_ne!(resolve & libc::RESOLVE_BENEATH, 0);
                assert_ne!(resolve & libc::RESOLVE_NO_SYMLINKS, 0);
            }
        }
        let ms = mounts(&calls);
        // After the private step, no mount names a target by a path string.
        for (_, target, ty, _) in &ms[1..] {
            assert!(matches!(target, Target::Fd(_)), "{ty:?} on {target:?}");
        }
        let on = |ty: &str| -> Vec<Target> {
            ms.iter()
                .filter(|m| m.2.as_deref() == Some(ty))
                .map(|m| m.1.clone())
                .collect()
        };
        assert_eq!(on("proc"), [fd("proc")]);
        assert_eq!(on("sysfs"), [fd("sys")]);
        assert_eq!(on("tmpfs"), [fd("dev"), fd("dev/shm"), fd("proc/acpi")]);
        assert_eq!(on("devpts"), [fd("dev/pts")]);
        for name in DEVICES {
            let bind = ms
                .iter()
                .find(|m| m.0 == Some(Target::Path(format!("/dev/{name}"))))
                .unwrap();
            assert_eq!(bind.1, fd(&format!("dev/{name}")));
            assert_eq!(bind.3, MsFlags::MS_BIND);
        }
    }

    #[test]
    fn a_symlinked_mount_target_is_refused_and_nothing_is_mounted_after_it() {
        let fake = image();
        fake.tree
            .borrow_mut()
            .insert("sys".into(), Node::Link("/etc".into()));
        let err = set_up_root_with(&fake, &req()).unwrap_err();
        match &err {
            Error::Unsafe(m) => assert!(m.contains("/sys "), "{m}"),
            other => panic!("expected Unsafe, got {other:?}"),
        }
        let calls = fake.calls();
        let refused = position(
            &calls,
            "open sys",
            |c| matches!(c, Call::Open { path, .. } if path == "sys"),
        );
        let after: Vec<_> = calls[refused..].iter().filter(|c| is_change(c)).collect();
        assert!(after.is_empty(), "changed after the refusal: {after:#?}");
        // Only the private step, the root and /proc came before.
        let ms = mounts(&calls);
        assert_eq!(ms.len(), 2, "{ms:#?}");
        assert_eq!(ms[1].1, fd("proc"));
    }

    #[test]
    fn a_symlinked_parent_of_a_device_node_is_refused() {
        let fake = image();
        fake.tree
            .borrow_mut()
            .insert("dev".into(), Node::Link("/dev".into()));
        let err = set_up_root_with(&fake, &req()).unwrap_err();
        assert!(matches!(err, Error::Unsafe(_)), "{err:?}");
        assert!(
            !mounts(&fake.calls())
                .iter()
                .any(|m| m.2.as_deref() == Some("tmpfs")),
            "/dev mounted through a symlink"
        );
    }

    #[test]
    fn a_mount_target_of_the_wrong_type_is_refused() {
        let fake = image();
        fake.tree.borrow_mut().insert("dev/null".into(), Node::Dir);
        let err = set_up_root_with(&fake, &req()).unwrap_err();
        match &err {
            Error::Unsafe(m) => assert!(m.contains("/dev/null "), "{m}"),
            other => panic!("expected Unsafe, got {other:?}"),
        }
        assert!(!mounts(&fake.calls()).iter().any(|m| m.1 == fd("dev/null")));
    }

    #[test]
    fn sys_falls_back_to_the_hosts_read_only_when_sysfs_is_refused() {
        let mut fake = image();
        fake.fail_fstype = Some(("sysfs", nix::Error::EPERM));
        set_up_root_with(&fake, &req()).unwrap();
        let ms = mounts(&fake.calls());
        let i = ms
            .iter()
            .position(|m| m.2.as_deref() == Some("sysfs"))
            .unwrap();
        assert_eq!(
            ms[i + 1],
            (
                Some(Target::Path("/sys".into())),
                fd("sys"),
                None,
                MsFlags::MS_BIND | MsFlags::MS_REC
            )
        );
        assert_eq!(
            ms[i + 2],
            (
                None,
                fd("sys"),
                None,
                MsFlags::MS_REMOUNT
                    | MsFlags::MS_BIND
                    | MsFlags::MS_RDONLY
                    | MsFlags::MS_NOSUID
                    | MsFlags::MS_NODEV
                    | MsFlags::MS_NOEXEC
            )
        );
        assert_eq!(ms[i + 3].1, fd("dev"));
    }

    #[test]
    fn sys_does_not_fall_back_on_other_errors() {
        let mut fake = image();
        fake.fail_fstype = Some(("sysfs", nix::Error::EINVAL));
        let err = set_up_root_with(&fake, &req()).unwrap_err();
        assert!(err.to_string().starts_with("mount /sys: "), "{err}");
        let ms = mounts(&fake.calls());
        assert_eq!(ms.last().map(|m| m.2.as_deref()), Some(Some("sysfs")));
    }

    #[test]
    fn proc_is_protected_after_it_is_mounted() {
        let fake = image();
        set_up_root_with(&fake, &req()).unwrap();
        let ms = mounts(&fake.calls());
        let proc = ms.iter().position(|m| m.1 == fd("proc")).unwrap();
        for name in PROC_READ_ONLY {
            let t = fd(&format!("proc/{name}"));
            let binds: Vec<_> = ms.iter().enumerate().filter(|(_, m)| m.1 == t).collect();
            assert_eq!(binds.len(), 2, "{name}: {binds:#?}");
            let (b, bind) = binds[0];
            assert!(b > proc);
            assert_eq!(bind.0, Some(t.clone()), "bound onto itself");
            assert_eq!(bind.3, MsFlags::MS_BIND | MsFlags::MS_REC);
            assert!(binds[1]
                .1
                 .3
                .contains(MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY));
        }
        let kcore = ms.iter().position(|m| m.1 == fd("proc/kcore")).unwrap();
        assert!(kcore > proc);
        assert_eq!(ms[kcore].0, Some(Target::Path("/dev/null".into())));
        let acpi = ms.iter().find(|m| m.1 == fd("proc/acpi")).unwrap();
        assert!(acpi.3.contains(MsFlags::MS_RDONLY));
        // Entries the image lacks are skipped, not created.
        assert!(!ms.iter().any(|m| m.1 == fd("proc/keys")));
    }

    #[test]
    fn sys_firmware_and_powercap_are_masked_when_they_exist() {
        let fake = image();
        fake.tree
            .borrow_mut()
            .insert("sys/firmware".into(), Node::Dir);
        set_up_root_with(&fake, &req()).unwrap();
        let ms = mounts(&fake.calls());
        let sysfs = ms.iter().position(|m| m.1 == fd("sys")).unwrap();
        let fw = ms.iter().position(|m| m.1 == fd("sys/firmware")).unwrap();
        assert!(fw > sysfs);
        assert_eq!(ms[fw].2.as_deref(), Some("tmpfs"));
        assert!(ms[fw].3.contains(MsFlags::MS_RDONLY));
        assert!(!ms.iter().any(|m| m.1 == fd("sys/devices/virtual/powercap")));
    }

    #[test]
    fn pivot_root_comes_last_and_the_old_root_is_detached() {
        let fake = image();
        set_up_root_with(&fake, &req()).unwrap();
        let calls = fake.calls();
        let n = calls.len();
        assert!(n >= 3);
        assert_eq!(
            calls[n - 3..],
            [
                Call::PivotRoot {
                    new_root: ".".into(),
                    put_old: ".".into()
                },
                Call::Umount2 {
                    target: ".".into(),
                    flags: MntFlags::MNT_DETACH
                },
                Call::Chdir("/".into()),
            ]
        );
        let pivots = calls
            .iter()
            .filter(|c| matches!(c, Call::PivotRoot { .. }))
            .count();
        assert_eq!(pivots, 1);
    }
}
