//! Mounts the request adds to the container's tree: volumes (host files and
//! directories), tmpfs, the files the runtime provides (`/etc/hosts`, ...),
//! and a read-only root. All of it happens before `pivot_root`, while the
//! init still sees the caller's mounts (in its own copy of them).
//!
//! A volume's source is reopened here by the path the supervisor resolved,
//! as the init: its host uid is the caller's and it holds capabilities only
//! in its own user namespace, so it reaches exactly what the caller can (the
//! kernel honours its `CAP_DAC_OVERRIDE` only on files of ids mapped into the
//! namespace: the caller's own and the caller's subordinate ids). It must be
//! the very file the supervisor saw (`st_dev`, `st_ino`), else nothing is
//! mounted. The supervisor's descriptor itself cannot be used: a mount of the
//! host's mount namespace cannot be cloned from another one.
//!
//! Targets resolve inside the container root (`RESOLVE_IN_ROOT`): a symbolic
//! link in the image, absolute or full of `..`, lands inside the root, never
//! on the host. Missing directories and files are created.

use std::os::fd::{AsRawFd, OwnedFd};

use nix::mount::MsFlags;
use proto::{BindSource, MountKind, MountSpec};

use crate::error::{Context, Error};
use tupper_sys::{cstring, RESOLVE_STRICT};

use super::mount_sys::MountSys;
use super::mounts::mount_on;

/// Resolution of a target: symlinks resolve with the container root as `/`.
pub(super) const RESOLVE_TARGET: u64 = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
/// Resolution of a source: the supervisor sent a real path, with no symbolic
/// link in it; one appearing since means the path changed.
pub(super) const RESOLVE_SOURCE: u64 = libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS;

/// Open, check and clone every bind source, then make every mount, in the
/// order given (parents before children: the supervisor sorts them).
pub(super) fn attach(s: &impl MountSys, root: &OwnedFd, mounts: &[MountSpec]) -> Result<(), Error> {
    // Sources first: a source that changed is refused before anything in
    // the container's tree changes.
    let mut trees = Vec::with_capacity(mounts.len());
    for m in mounts {
        trees.push(match m.source() {
            Some(src) => Some(clone_source(s, src, m.read_only)?),
            None => None,
        });
    }
    for (m, tree) in mounts.iter().zip(trees) {
        match (&m.kind, tree) {
            (MountKind::Bind(src), Some(tree)) => {
                let target = target(s, root, &m.target, src.dir)?;
                move_onto(s, &tree, &target, &m.target)?;
            }
            (MountKind::Provided(_), Some(tree)) => {
                let target = provided_target(s, root, &m.target)?;
                move_onto(s, &tree, &target, &m.target)?;
            }
            (MountKind::Tmpfs { size, mode, exec }, _) => {
                let target = target(s, root, &m.target, true)?;
                let mut flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
                if !exec {
                    flags |= MsFlags::MS_NOEXEC;
                }
                if m.read_only {
                    flags |= MsFlags::MS_RDONLY;
                }
                let mut data = format!("mode={:o}", mode.unwrap_or(0o1777));
                if let Some(size) = size {
                    data.push_str(&format!(",size={size}"));
                }
                mount_on(s, &target, Some("tmpfs"), Some("tmpfs"), flags, Some(&data))
                    .ctx(format!("mount a tmpfs on {}", m.target))?;
            }
            _ => return Err(Error::Unsafe(format!("mount on {}: no source", m.target))),
        }
    }
    Ok(())
}

/// The container root's own mount becomes read-only (the mounts on it,
/// `/proc`, `/dev`, volumes, tmpfs, keep their own flags).
pub(super) fn read_only_root(s: &impl MountSys, root: &OwnedFd) -> Result<(), Error> {
    s.mount_setattr(
        root.as_raw_fd(),
        c"",
        libc::AT_EMPTY_PATH as u32,
        libc::MOUNT_ATTR_RDONLY,
        0,
    )
    .ctx("make the container root read-only")
}

fn changed(src: &BindSource) -> Error {
    Error::Unsafe(format!(
        "volume source {} changed after tupper-supervisor opened it (it was moved or replaced); \
         nothing was mounted, run again",
        src.path
    ))
}

/// Reopen the source by its path, check it is the file the supervisor saw,
/// and clone it (with the mounts beneath it) into a detached tree.
fn clone_source(s: &impl MountSys, src: &BindSource, read_only: bool) -> Result<OwnedFd, Error> {
    let path = cstring(&src.path).ctx("volume source")?;
    let fd = s
        .openat2(libc::AT_FDCWD, &path, libc::O_PATH, RESOLVE_SOURCE)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ENOENT | libc::ELOOP | libc::ENOTDIR | libc::EXDEV) => changed(src),
            Some(libc::EACCES) => Error::Unsafe(format!(
                "volume source {}: permission denied to the container (it runs as you, \
                 without your supplementary groups)",
                src.path
            )),
            _ => Error::sys(format!("open volume source {}", src.path))(e),
        })?;
    let id = s
        .stat(&fd)
        .ctx(format!("inspect volume source {}", src.path))?;
    let is_dir = id.mode & libc::S_IFMT == libc::S_IFDIR;
    let is_file = id.mode & libc::S_IFMT == libc::S_IFREG;
    if (id.dev, id.ino) != (src.dev, src.ino) || is_dir != src.dir || !(is_dir || is_file) {
        return Err(changed(src));
    }
    let tree = s
        .open_tree(
            fd.as_raw_fd(),
            c"",
            libc::OPEN_TREE_CLONE | libc::AT_RECURSIVE as u32 | libc::AT_EMPTY_PATH as u32,
        )
        .ctx(format!("clone volume source {}", src.path))?;
    let mut set = libc::MOUNT_ATTR_NOSUID | libc::MOUNT_ATTR_NODEV;
    if read_only {
        set |= libc::MOUNT_ATTR_RDONLY;
    }
    s.mount_setattr(
        tree.as_raw_fd(),
        c"",
        (libc::AT_EMPTY_PATH | libc::AT_RECURSIVE) as u32,
        set,
        0,
    )
    .ctx(format!("set the flags of volume {}", src.path))?;
    Ok(tree)
}

fn move_onto(s: &impl MountSys, tree: &OwnedFd, target: &OwnedFd, name: &str) -> Result<(), Error> {
    s.move_mount(
        tree.as_raw_fd(),
        c"",
        target.as_raw_fd(),
        c"",
        libc::MOVE_MOUNT_F_EMPTY_PATH | libc::MOVE_MOUNT_T_EMPTY_PATH,
    )
    .ctx(format!("mount on {name} in the container"))
}

fn refuse(target: &str, why: &str) -> Error {
    Error::Unsafe(format!("cannot mount on {target} in the container: {why}"))
}

/// `target` relative to the root, and its components.
fn components(target: &str) -> Result<Vec<&str>, Error> {
    let parts: Vec<&str> = target.split('/').filter(|p| !p.is_empty()).collect();
    if parts.is_empty() || parts.iter().any(|p| *p == "." || *p == "..") {
        return Err(refuse(target, "not a normalized path below /"));
    }
    Ok(parts)
}

fn open_in_root(s: &impl MountSys, root: &OwnedFd, rel: &str) -> std::io::Result<OwnedFd> {
    let rel = if rel.is_empty() { "." } else { rel };
    s.openat2(
        root.as_raw_fd(),
        &cstring(rel)?,
        libc::O_PATH,
        RESOLVE_TARGET,
    )
}

fn is_dir(s: &impl MountSys, fd: &OwnedFd) -> nix::Result<bool> {
    s.file_mode(fd).map(|m| m & libc::S_IFMT == libc::S_IFDIR)
}

/// The directory `parts` (created when missing, parents first).
fn directory(
    s: &impl MountSys,
    root: &OwnedFd,
    target: &str,
    parts: &[&str],
) -> Result<OwnedFd, Error> {
    let mut fd = open_in_root(s, root, "").ctx("open the container root")?;
    for i in 0..parts.len() {
        let rel = parts[..=i].join("/");
        let next = match open_in_root(s, root, &rel) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                let name = cstring(parts[i]).ctx("mount target")?;
                match s.mkdirat(fd.as_raw_fd(), &name) {
                    Ok(()) => {}
                    Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                    Err(e) => return Err(Error::sys(format!("create /{rel} in the container"))(e)),
                }
                open_in_root(s, root, &rel).ctx(format!("open /{rel} in the container"))?
            }
            Err(e) => return Err(Error::sys(format!("open /{rel} in the container"))(e)),
        };
        if !is_dir(s, &next).ctx(format!("inspect /{rel} in the container"))? {
            return Err(refuse(target, &format!("/{rel} is not a directory")));
        }
        fd = next;
    }
    Ok(fd)
}

/// The mount point for a volume or tmpfs: a directory, or (for a file
/// volume) anything but a directory; created when missing.
fn target(s: &impl MountSys, root: &OwnedFd, target: &str, dir: bool) -> Result<OwnedFd, Error> {
    let parts = components(target)?;
    let rel = parts.join("/");
    let fd = if dir {
        directory(s, root, target, &parts)?
    } else {
        let (last, parents) = parts.split_last().ok_or_else(|| refuse(target, "empty"))?;
        let parent = directory(s, root, target, parents)?;
        match open_in_root(s, root, &rel) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                let name = cstring(last).ctx("mount target")?;
                match s.create_file(parent.as_raw_fd(), &name) {
                    Ok(()) => {}
                    Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                    Err(e) => {
                        return Err(Error::sys(format!("create {target} in the container"))(e))
                    }
                }
                open_in_root(s, root, &rel).ctx(format!("open {target} in the container"))?
            }
            Err(e) => return Err(Error::sys(format!("open {target} in the container"))(e)),
        }
    };
    let found_dir = is_dir(s, &fd).ctx(format!("inspect {target} in the container"))?;
    if found_dir != dir {
        let why = if dir {
            "it is not a directory and the source is one"
        } else {
            "it is a directory and the source is a file"
        };
        return Err(refuse(target, why));
    }
    Ok(fd)
}

/// The mount point of a provided file: a regular file in its directory; a
/// symbolic link there is removed and replaced, never followed.
fn provided_target(s: &impl MountSys, root: &OwnedFd, target: &str) -> Result<OwnedFd, Error> {
    let parts = components(target)?;
    let (last, parents) = parts.split_last().ok_or_else(|| refuse(target, "empty"))?;
    let parent = directory(s, root, target, parents)?;
    let name = cstring(last).ctx("mount target")?;
    let open = || {
        s.openat2(
            parent.as_raw_fd(),
            &name,
            libc::O_PATH | libc::O_NOFOLLOW,
            RESOLVE_STRICT,
        )
    };
    match open() {
        Ok(fd) => {
            let mode = s
                .file_mode(&fd)
                .ctx(format!("inspect {target} in the container"))?;
            match mode & libc::S_IFMT {
                libc::S_IFLNK => {
                    drop(fd);
                    s.unlinkat(parent.as_raw_fd(), &name).ctx(format!(
                        "replace the symbolic link {target} in the container"
                    ))?;
                }
                libc::S_IFREG => return Ok(fd),
                _ => return Err(refuse(target, "it is not a regular file")),
            }
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
        Err(e) => return Err(Error::sys(format!("open {target} in the container"))(e)),
    }
    s.create_file(parent.as_raw_fd(), &name)
        .ctx(format!("create {target} in the container"))?;
    let fd = open().ctx(format!("open {target} in the container"))?;
    let mode = s
        .file_mode(&fd)
        .ctx(format!("inspect {target} in the container"))?;
    if mode & libc::S_IFMT != libc::S_IFREG {
        return Err(refuse(target, "it is not a regular file"));
    }
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::mount_sys::fake::{Call, Fake, Node, Target};
    use crate::init::mounts::set_up_root_with;
    use crate::init::mounts::tests::req;
    use proto::SpawnRequest;

    fn fd(path: &str) -> Target {
        Target::Fd(path.to_string())
    }

    fn image() -> Fake {
        let fake = Fake::with(&[
            ("proc", Node::Dir),
            ("sys", Node::Dir),
            ("dev", Node::Dir),
            ("etc", Node::Dir),
            ("mnt", Node::Dir),
            ("mnt/to-etc", Node::Link("/etc".into())),
            ("mnt/up", Node::Link("../../..".into())),
        ]);
        fake.host
            .borrow_mut()
            .insert("/home/u/vol".into(), (7, 42, Node::Dir));
        fake.host
            .borrow_mut()
            .insert("/home/u/file".into(), (7, 43, Node::File));
        fake
    }

    fn bind(path: &str, ino: u64, dir: bool, target: &str, read_only: bool) -> MountSpec {
        MountSpec {
            target: target.into(),
            kind: MountKind::Bind(BindSource {
                path: path.into(),
                dev: 7,
                ino,
                dir,
            }),
            read_only,
        }
    }

    fn with(mounts: Vec<MountSpec>, read_only_root: bool) -> SpawnRequest {
        SpawnRequest {
            mounts,
            read_only_root,
            ..req()
        }
    }

    fn position(calls: &[Call], pred: impl Fn(&Call) -> bool) -> Option<usize> {
        calls.iter().position(pred)
    }

    fn moved_to(calls: &[Call]) -> Vec<Target> {
        calls
            .iter()
            .filter_map(|c| match c {
                Call::MoveMount { to, from_path, .. }
                    if from_path.is_empty()
                        && *to != Target::Path(format!("fd {}", libc::AT_FDCWD)) =>
                {
                    Some(to.clone())
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_volume_is_reopened_checked_cloned_then_mounted_on_a_created_target() {
        let fake = image();
        let r = with(
            vec![bind("/home/u/vol", 42, true, "/data/sub", true)],
            false,
        );
        set_up_root_with(&fake, &r).unwrap();
        let calls = fake.calls();
        let open = position(&calls, |c| {
            matches!(c, Call::Open { dir, path, resolve } if *dir == Target::Path(format!("fd {}", libc::AT_FDCWD)) && path == "/home/u/vol" && *resolve == RESOLVE_SOURCE)
        })
        .expect("source opened by its path");
        let clone = position(&calls, |c| {
            matches!(c, Call::OpenTree { path, flags, .. } if path.is_empty()
                && *flags == libc::OPEN_TREE_CLONE | libc::AT_RECURSIVE as u32 | libc::AT_EMPTY_PATH as u32)
        })
        .expect("cloned");
        let attr = position(&calls, |c| {
            matches!(c, Call::MountSetattr { set, flags, .. } if *set & libc::MOUNT_ATTR_RDONLY != 0
                && *flags & libc::AT_RECURSIVE as u32 != 0)
        })
        .expect("read-only, recursively");
        let mkdir = position(&calls, |c| *c == Call::Mkdir("data".into())).expect("mkdir");
        assert!(position(&calls, |c| *c == Call::Mkdir("data/sub".into())).is_some());
        assert!(open < clone && clone < attr && attr < mkdir, "{calls:#?}");
        assert_eq!(moved_to(&calls), [fd("data/sub")]);
        let pivot = position(&calls, |c| matches!(c, Call::PivotRoot { .. })).unwrap();
        let mv = position(
            &calls,
            |c| matches!(c, Call::MoveMount { to, .. } if *to == fd("data/sub")),
        )
        .unwrap();
        assert!(mv < pivot);
    }

    #[test]
    fn a_source_swapped_since_the_supervisor_saw_it_is_refused_before_anything_changes() {
        for (ino, dir) in [(99, true), (42, false)] {
            let fake = image();
            let r = with(
                vec![
                    MountSpec {
                        target: "/t".into(),
                        kind: MountKind::Tmpfs {
                            size: None,
                            mode: None,
                            exec: false,
                        },
                        read_only: false,
                    },
                    bind("/home/u/vol", ino, dir, "/data", false),
                ],
                false,
            );
            let err = set_up_root_with(&fake, &r).unwrap_err();
            match &err {
                Error::Unsafe(m) => assert!(m.contains("/home/u/vol changed"), "{m}"),
                other => panic!("expected Unsafe, got {other:?}"),
            }
            let calls = fake.calls();
            assert!(!calls
                .iter()
                .any(|c| matches!(c, Call::OpenTree { path, .. } if path.is_empty())));
            assert!(
                !calls
                    .iter()
                    .any(|c| *c == Call::Mkdir("t".into()) || *c == Call::Mkdir("data".into())),
                "{calls:#?}"
            );
            assert!(!calls
                .iter()
                .any(|c| matches!(c, Call::Mount { fstype: Some(t), target, .. } if t == "tmpfs" && *target == fd("t"))));
            assert!(moved_to(&calls).is_empty());
            assert!(!calls.iter().any(|c| matches!(c, Call::PivotRoot { .. })));
        }
        // Gone, or a symbolic link now on the way: the same refusal.
        let fake = image();
        let r = with(vec![bind("/home/u/gone", 1, true, "/data", false)], false);
        assert!(matches!(set_up_root_with(&fake, &r), Err(Error::Unsafe(_))));
    }

    #[test]
    fn symlinked_targets_resolve_inside_the_root() {
        let fake = image();
        let r = with(
            vec![
                bind("/home/u/vol", 42, true, "/mnt/to-etc", false),
                bind("/home/u/vol", 42, true, "/mnt/up/escape", false),
            ],
            false,
        );
        set_up_root_with(&fake, &r).unwrap();
        let calls = fake.calls();
        assert_eq!(moved_to(&calls), [fd("etc"), fd("escape")], "{calls:#?}");
        assert!(calls.contains(&Call::Mkdir("escape".into())));
        for c in &calls {
            if let Call::Open { dir, resolve, .. } = c {
                if *dir != Target::Path(format!("fd {}", libc::AT_FDCWD)) {
                    assert_ne!(
                        resolve & (libc::RESOLVE_IN_ROOT | libc::RESOLVE_BENEATH),
                        0,
                        "{c:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_file_volume_on_a_directory_is_refused() {
        let fake = image();
        let r = with(vec![bind("/home/u/file", 43, false, "/etc", false)], false);
        let err = set_up_root_with(&fake, &r).unwrap_err();
        assert!(err.to_string().contains("/etc"), "{err}");
        assert!(moved_to(&fake.calls()).is_empty());
    }

    #[test]
    fn a_provided_file_replaces_a_symlink_in_the_image_without_following_it() {
        let fake = image();
        fake.tree.borrow_mut().insert(
            "etc/resolv.conf".into(),
            Node::Link("/run/systemd/resolve/stub".into()),
        );
        fake.host
            .borrow_mut()
            .insert("/state/x.d/resolv.conf".into(), (7, 50, Node::File));
        let r = with(
            vec![MountSpec {
                target: "/etc/resolv.conf".into(),
                kind: MountKind::Provided(BindSource {
                    path: "/state/x.d/resolv.conf".into(),
                    dev: 7,
                    ino: 50,
                    dir: false,
                }),
                read_only: false,
            }],
            false,
        );
        set_up_root_with(&fake, &r).unwrap();
        let calls = fake.calls();
        let unlink =
            position(&calls, |c| *c == Call::Unlink("etc/resolv.conf".into())).expect("unlink");
        let create =
            position(&calls, |c| *c == Call::CreateFile("etc/resolv.conf".into())).expect("create");
        assert!(unlink < create);
        assert_eq!(moved_to(&calls), [fd("etc/resolv.conf")]);
        assert_eq!(fake.tree.borrow().get("etc/resolv.conf"), Some(&Node::File));
        // Never resolved through the link.
        assert!(!calls
            .iter()
            .any(|c| matches!(c, Call::Open { path, .. } if path.contains("run/systemd"))));
    }

    #[test]
    fn tmpfs_and_a_read_only_root_come_before_pivot_root() {
        let fake = image();
        let r = with(
            vec![MountSpec {
                target: "/scratch".into(),
                kind: MountKind::Tmpfs {
                    size: Some(1024),
                    mode: Some(0o700),
                    exec: false,
                },
                read_only: false,
            }],
            true,
        );
        set_up_root_with(&fake, &r).unwrap();
        let calls = fake.calls();
        let tmpfs = position(&calls, |c| {
            matches!(c, Call::Mount { target, fstype: Some(t), flags, data: Some(d), .. }
                if *target == fd("scratch") && t == "tmpfs" && d == "mode=700,size=1024"
                && flags.contains(MsFlags::MS_NOEXEC | MsFlags::MS_NOSUID | MsFlags::MS_NODEV))
        })
        .expect("tmpfs on /scratch");
        let ro = position(&calls, |c| {
            *c == Call::MountSetattr {
                at: fd(""),
                flags: libc::AT_EMPTY_PATH as u32,
                set: libc::MOUNT_ATTR_RDONLY,
                clear: 0,
            }
        })
        .expect("read-only root");
        let pivot = position(&calls, |c| matches!(c, Call::PivotRoot { .. })).unwrap();
        assert!(tmpfs < ro && ro < pivot, "{calls:#?}");
    }
}
