//! The container's mount tree: its root bound onto itself, `/proc`, `/sys`,
//! a minimal `/dev`, then `pivot_root` so no host mount stays visible.
//!
//! Every mount target is opened beneath the container root without following
//! any symlink (`openat2` with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`) and the
//! mount is made on that very descriptor (`/proc/self/fd/N`), so the image
//! cannot redirect a mount onto a host path, not even by racing us.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::error::{Context, Error};
use tupper_sys::{self as sys, cstring, fd_path, RESOLVE_STRICT};

pub fn set_up_root() -> Result<(), Error> {
    make_mounts_private()?;
    let root = bind_root_onto_itself()?;
    mount_proc(&root)?;
    mount_sys(&root)?;
    mount_dev(&root)?;
    protect_proc(&root)?;
    drop(root);
    pivot()
}

/// Nothing we mount propagates to the host, nothing of the host's to us.
fn make_mounts_private() -> Result<(), Error> {
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .ctx("make mounts private")
}

/// Bind the container root (our cwd) onto itself so it is a mount point
/// `pivot_root` accepts; returns the new mount, which is also the new cwd.
fn bind_root_onto_itself() -> Result<OwnedFd, Error> {
    let tree = sys::open_tree(
        libc::AT_FDCWD,
        c".",
        libc::OPEN_TREE_CLONE | libc::AT_RECURSIVE as u32,
    )
    .ctx("bind the container root")?;
    sys::move_mount(
        tree.as_raw_fd(),
        c"",
        libc::AT_FDCWD,
        c".",
        libc::MOVE_MOUNT_F_EMPTY_PATH,
    )
    .ctx("bind the container root")?;
    nix::unistd::fchdir(&tree).ctx("enter the container root")?;
    Ok(tree)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Dir,
    File,
}

/// Open `rel` beneath `root` without following symlinks.
fn open_beneath(root: &OwnedFd, rel: &str, flags: i32) -> std::io::Result<OwnedFd> {
    sys::openat2(
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
fn mountpoint(root: &OwnedFd, rel: &str, kind: Kind) -> Result<OwnedFd, Error> {
    let (parent_rel, name) = rel.rsplit_once('/').unwrap_or((".", rel));
    let parent =
        open_beneath(root, parent_rel, libc::O_DIRECTORY).map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP | libc::ENOTDIR | libc::EXDEV) => refuse(parent_rel),
            _ => Error::sys(format!("open /{parent_rel} in the container"))(e),
        })?;
    let name_c = cstring(name).ctx("mount point name")?;
    // SAFETY: valid descriptor and C string; a created file is closed at once.
    let rc = unsafe {
        match kind {
            Kind::Dir => libc::mkdirat(parent.as_raw_fd(), name_c.as_ptr(), 0o755),
            Kind::File => {
                let fd = libc::openat(
                    parent.as_raw_fd(),
                    name_c.as_ptr(),
                    libc::O_CREAT
                        | libc::O_EXCL
                        | libc::O_WRONLY
                        | libc::O_NOFOLLOW
                        | libc::O_CLOEXEC,
                    0o644,
                );
                if fd >= 0 {
                    libc::close(fd);
                }
                fd
            }
        }
    };
    if rc < 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EEXIST) {
            return Err(Error::sys(format!("create /{rel} in the container"))(e));
        }
    }
    let fd = open_beneath(root, rel, 0).map_err(|e| match e.raw_os_error() {
        Some(libc::ELOOP | libc::ENOTDIR | libc::EXDEV) => refuse(rel),
        _ => Error::sys(format!("open /{rel} in the container"))(e),
    })?;
    let st = nix::sys::stat::fstat(&fd).ctx(format!("inspect /{rel} in the container"))?;
    let is_dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
    let is_link = st.st_mode & libc::S_IFMT == libc::S_IFLNK;
    if is_link || is_dir != (kind == Kind::Dir) {
        return Err(refuse(rel));
    }
    Ok(fd)
}

/// Whatever exists at `rel` beneath `root`, or `None` (for optional targets).
fn existing(root: &OwnedFd, rel: &str) -> Result<Option<OwnedFd>, Error> {
    match open_beneath(root, rel, 0) {
        Ok(fd) => Ok(Some(fd)),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(Error::sys(format!("open /{rel} in the container"))(e)),
    }
}

fn mount_on(
    target: &OwnedFd,
    source: Option<&str>,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> nix::Result<()> {
    let target: CString = fd_path(target);
    mount(source, target.as_c_str(), fstype, flags, data)
}

fn bind_on(target: &OwnedFd, source: &str, flags: MsFlags) -> nix::Result<()> {
    mount_on(
        target,
        Some(source),
        None,
        MsFlags::MS_BIND | flags,
        None::<&str>,
    )
}

/// Make the mount at `rel` read-only; `rel` is re-opened so that the
/// descriptor names the mount's root, not the directory beneath it.
fn remount_read_only(root: &OwnedFd, rel: &str) -> Result<(), Error> {
    let fd = existing(root, rel)?.ok_or_else(|| refuse(rel))?;
    mount_on(
        &fd,
        None,
        None,
        MsFlags::MS_REMOUNT
            | MsFlags::MS_BIND
            | MsFlags::MS_RDONLY
            | MsFlags::MS_NOSUID
            | MsFlags::MS_NODEV
            | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .ctx(format!("make /{rel} read-only"))
}

const NOSUID_NODEV_NOEXEC: MsFlags = MsFlags::MS_NOSUID
    .union(MsFlags::MS_NODEV)
    .union(MsFlags::MS_NOEXEC);

fn mount_proc(root: &OwnedFd) -> Result<(), Error> {
    let target = mountpoint(root, "proc", Kind::Dir)?;
    mount_on(
        &target,
        Some("proc"),
        Some("proc"),
        NOSUID_NODEV_NOEXEC,
        None::<&str>,
    )
    .ctx("mount /proc")
}

fn mount_sys(root: &OwnedFd) -> Result<(), Error> {
    let target = mountpoint(root, "sys", Kind::Dir)?;
    match mount_on(
        &target,
        Some("sysfs"),
        Some("sysfs"),
        NOSUID_NODEV_NOEXEC | MsFlags::MS_RDONLY,
        None::<&str>,
    ) {
        Ok(()) => Ok(()),
        Err(nix::Error::EPERM) => {
            // A fresh sysfs is refused: show the host's, read-only.
            let host_sys = "/sys";
            bind_on(&target, host_sys, MsFlags::MS_REC).ctx("mount /sys")?;
            remount_read_only(root, "sys")
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

fn mount_dev(root: &OwnedFd) -> Result<(), Error> {
    let target = mountpoint(root, "dev", Kind::Dir)?;
    mount_on(
        &target,
        Some("tmpfs"),
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME,
        Some("mode=755,size=65536k"),
    )
    .ctx("mount /dev")?;

    for name in DEVICES {
        let rel = format!("dev/{name}");
        let node = mountpoint(root, &rel, Kind::File)?;
        bind_on(&node, &format!("/dev/{name}"), MsFlags::empty()).ctx(format!("bind /{rel}"))?;
    }

    let dev = existing(root, "dev")?.ok_or_else(|| refuse("dev"))?;
    for (name, to) in DEV_LINKS {
        let (name_c, to_c) = (cstring(name).ctx("link")?, cstring(to).ctx("link")?);
        // SAFETY: valid descriptor and C strings.
        if unsafe { libc::symlinkat(to_c.as_ptr(), dev.as_raw_fd(), name_c.as_ptr()) } != 0 {
            return Err(std::io::Error::last_os_error()).ctx(format!("create /dev/{name}"));
        }
    }

    let pts = mountpoint(root, "dev/pts", Kind::Dir)?;
    // Container gid 5 (tty) is always mapped: the map covers 0..65535, and
    // without a user namespace host gid 5 is used.
    let pts_flags = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC;
    mount_on(
        &pts,
        Some("devpts"),
        Some("devpts"),
        pts_flags,
        Some("newinstance,ptmxmode=0666,mode=0620,gid=5"),
    )
    .or_else(|_| {
        mount_on(
            &pts,
            Some("devpts"),
            Some("devpts"),
            pts_flags,
            Some("newinstance,ptmxmode=0666,mode=0620"),
        )
    })
    .ctx("mount /dev/pts")?;

    let shm = mountpoint(root, "dev/shm", Kind::Dir)?;
    mount_on(
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

fn protect_proc(root: &OwnedFd) -> Result<(), Error> {
    for name in PROC_READ_ONLY {
        let rel = format!("proc/{name}");
        if let Some(fd) = existing(root, &rel)? {
            let path = fd_path(&fd);
            let path = path.to_str().unwrap_or_default();
            bind_on(&fd, path, MsFlags::MS_REC).ctx(format!("protect /{rel}"))?;
            remount_read_only(root, &rel)?;
        }
    }
    for name in PROC_MASKED_FILES {
        let rel = format!("proc/{name}");
        if let Some(fd) = existing(root, &rel)? {
            bind_on(&fd, "/dev/null", MsFlags::empty()).ctx(format!("mask /{rel}"))?;
        }
    }
    for name in PROC_MASKED_DIRS {
        let rel = format!("proc/{name}");
        if let Some(fd) = existing(root, &rel)? {
            mount_on(
                &fd,
                Some("tmpfs"),
                Some("tmpfs"),
                NOSUID_NODEV_NOEXEC | MsFlags::MS_RDONLY,
                None::<&str>,
            )
            .ctx(format!("mask /{rel}"))?;
        }
    }
    Ok(())
}

/// Make the container root `/` and detach the host's tree.
fn pivot() -> Result<(), Error> {
    nix::unistd::pivot_root(".", ".").ctx("pivot_root into the container root")?;
    umount2(".", MntFlags::MNT_DETACH).ctx("detach the host's mounts")?;
    nix::unistd::chdir("/").ctx("enter /")
}
