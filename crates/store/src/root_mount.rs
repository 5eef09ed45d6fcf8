//! Issue 9: a container root as its container sees it — an overlay whose
//! upper layer is the root's subvolume, over an empty lower directory, made
//! detached and handed to the caller as a descriptor (`MountRoot`).
//!
//! Why: a btrfs directory lets anyone who may write to it create a subvolume
//! with a quota-group inheritance list of their choosing
//! (`BTRFS_IOC_SUBVOL_CREATE_V2` needs no privilege), which would put the
//! subvolume outside the container's and the user's groups, or inside
//! another user's. Through an overlay no btrfs ioctl reaches the store
//! (overlayfs answers `ENOTTY`), and no process of the caller ever holds a
//! directory of the store: the container, its init from its first
//! instruction, `exec` and `/proc/PID/root` all see the overlay.
//!
//! Checklist: the root exists (the caller's, found from their uid) → its
//! work directory (`work/<uid>/<id>`, root-only) → the overlay, every layer
//! given as a descriptor (no path resolved again), `index=on` so a root is
//! never mounted twice at once, `nodev` → its unique mount id recorded on
//! the root (`trusted.tupperware.mount`, which only `CAP_SYS_ADMIN` of the
//! initial namespace reads or writes) for `tupper-net`'s proof that a
//! process runs in this container.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use caps::Capability;
use nix::errno::Errno;
use tupper_sys::fsmount::{unique_mount_id, FsContext};

use crate::capabilities::{with_caps, JOIN, OVERLAY};
use crate::error::{Error, Result};
use crate::fsutil::{ensure_root_dir_at, open_dir_at};
use crate::store::Store;

use crate::layout::MOUNT_XATTR;

/// Mount the caller's container root `container`; the descriptor is the
/// root of a mount attached nowhere.
pub fn mount(store: &Store, uid: u32, container: &str, transient: bool) -> Result<OwnedFd> {
    let upper = open_upper(store, uid, container)?;
    let mnt =
        overlay_when_free(store, uid, container, &upper, transient, MOUNT_WAIT)?.map_err(|e| {
            match e.raw_os_error() {
                Some(libc::EBUSY) => Error::Busy(format!(
                    "the root of container {container:?} is still mounted for an earlier start \
                 (a process of it may still be running); try again when it has ended"
                )),
                _ => Error::io("cannot mount the container root (overlay)")(e),
            }
        })?;
    let id = unique_mount_id(mnt.as_raw_fd(), c"", libc::AT_EMPTY_PATH)
        .map_err(Error::io("cannot name the container root's mount"))?
        .ok_or_else(|| Error::Other {
            what: "the container root's mount".into(),
            why: "this kernel gives mounts no unique id (Linux 6.8 or later is needed)".into(),
        })?;
    record(&upper, id)?;
    Ok(mnt)
}

/// Before a root is removed: refuse while any overlay of it lives (a
/// process of the caller holds its mount, or one of the container's
/// processes is still there). Writes through such a mount would land in a
/// deleted subvolume whose quota groups go away with it. Asked the kernel's
/// way: `index=on` refuses a second overlay over an upper layer in use.
///
/// A container's last processes (an `exec`'d one that joined its mount
/// namespace from outside its pid namespace, say) can still be exiting
/// when its monitor removes it: the answer is awaited for a bounded time
/// ([`IN_USE_WAIT`]) before the removal is refused.
pub fn ensure_unused(store: &Store, uid: u32, container: &str) -> Result<()> {
    let Ok(upper) = open_upper(store, uid, container) else {
        return Ok(());
    };
    // Volatile: this probe's end must not sync the store either.
    match overlay_when_free(store, uid, container, &upper, true, IN_USE_WAIT)? {
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => Err(Error::Busy(format!(
            "the root of container {container:?} is still in use (a process of yours holds \
             it, or one of the container's is still running); end it and remove again"
        ))),
        // Made and, with its only descriptor, gone again; or not makeable
        // for another reason, which does not keep a removal from going on.
        _ => Ok(()),
    }
}

/// How long a removal waits for a root's last overlay to go.
const IN_USE_WAIT: Duration = Duration::from_secs(3);

/// How long a start waits for the overlay of the container's previous run
/// to go. The kernel can drop a detached mount after the last process that
/// held it has been reaped (its last reference put from a work queue, as
/// for a descriptor that was in flight in a socket), so a start that
/// follows an end at once can find it still there for a moment.
const MOUNT_WAIT: Duration = Duration::from_secs(1);

/// [`overlay`], asked again while the kernel answers that the root is in
/// use (EBUSY), for at most `wait`; after that its answer is returned as
/// it is.
fn overlay_when_free(
    store: &Store,
    uid: u32,
    container: &str,
    upper: &OwnedFd,
    volatile: bool,
    wait: Duration,
) -> Result<std::io::Result<OwnedFd>> {
    let deadline = Instant::now() + wait;
    loop {
        match overlay(store, uid, container, upper, volatile)? {
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            answer => return Ok(answer),
        }
    }
}

fn open_upper(store: &Store, uid: u32, container: &str) -> Result<OwnedFd> {
    crate::copy_in::open_root(store, uid, container)
}

/// The overlay of `upper` (the outer `Result`: the store's own steps; the
/// inner one: the kernel's answer to the mount). `volatile` (issue 11): no
/// sync reaches the store through it, and its end syncs nothing.
fn overlay(
    store: &Store,
    uid: u32,
    container: &str,
    upper: &OwnedFd,
    volatile: bool,
) -> Result<std::io::Result<OwnedFd>> {
    let work = ensure_root_dir_at(
        store.user_work(uid)?,
        container,
        "the container's overlay work directory",
    )?;
    // A volatile overlay leaves a mark in its work directory that makes the
    // kernel refuse every later overlay with it (after a crash its upper
    // layer may lack what was never synced). The marks of earlier mounts go
    // first: a root mounted again is either still in use, which the
    // kernel's `index=on` check answers with EBUSY whatever the marks, or
    // consistent as btrfs keeps it (a transient root is removed at its end).
    clear_volatile_mark(&work)?;
    let lower = store.lower()?;
    // The overlay acts on the upper layer with the credentials it was made
    // with, once the container's own permission checks passed: a container
    // root changing owners, modes, times and file capabilities of its files
    // needs what an import needs.
    with_caps(OVERLAY, || {
        let make = || -> std::io::Result<OwnedFd> {
            let ctx = FsContext::open(c"overlay")?;
            ctx.set_fd(c"lowerdir+", lower.as_fd())?;
            ctx.set_fd(c"upperdir", upper.as_fd())?;
            ctx.set_fd(c"workdir", work.as_fd())?;
            ctx.set_string(c"index", c"on")?;
            if volatile {
                ctx.set_flag(c"volatile")?;
            }
            ctx.mount(libc::MOUNT_ATTR_NODEV)
        };
        Ok(make())
    })
}

/// Remove `work/incompat` of an overlay work directory: the mark a
/// volatile overlay leaves (`work/incompat/volatile`).
fn clear_volatile_mark(work: &OwnedFd) -> Result<()> {
    with_caps(crate::capabilities::STORE, || {
        match open_dir_at(work, "work", "the overlay's work directory") {
            Ok(inner) => match remove_tree_at(&inner, "incompat") {
                Err(Error::Sys {
                    errno: Errno::ENOENT,
                    ..
                }) => Ok(()),
                r => r,
            },
            Err(_) => Ok(()),
        }
    })
}

/// Write the mount id on the root (`CAP_SYS_ADMIN` for `trusted.*`).
fn record(upper: &OwnedFd, id: u64) -> Result<()> {
    with_caps(&[Capability::CAP_SYS_ADMIN], || {
        let value = id.to_le_bytes();
        // SAFETY: a valid descriptor, name and buffer living across the call.
        let rc = unsafe {
            libc::fsetxattr(
                upper.as_raw_fd(),
                MOUNT_XATTR.as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                0,
            )
        };
        if rc != 0 {
            return Err(Error::sys("cannot record the container root's mount")(
                Errno::last(),
            ));
        }
        Ok(())
    })
}

/// Remove a container's work directory (the overlay's `work` and `index`,
/// empty unless a mount is still alive): best effort, at removal.
pub fn forget(store: &Store, uid: u32, container: &str) {
    let Ok(user_work) = store.user_work(uid) else {
        return;
    };
    let _ = with_caps(crate::capabilities::STORE, || {
        if let Ok(work) = open_dir_at(&user_work, container, "the work directory") {
            for inner in ["work", "index"] {
                let _ = remove_tree_at(&work, inner);
            }
        }
        let _ = nix::unistd::unlinkat(&user_work, container, nix::unistd::UnlinkatFlags::RemoveDir);
        Ok(())
    });
}

/// Remove directory `name` of `dir` with what is in it (overlay leaves
/// empty directories and, at most, whiteouts there).
fn remove_tree_at(dir: &OwnedFd, name: &str) -> Result<()> {
    if let Ok(sub) = open_dir_at(dir, name, "a work directory") {
        for entry in crate::fsutil::all_names(&sub).unwrap_or_default() {
            if nix::unistd::unlinkat(
                &sub,
                entry.as_str(),
                nix::unistd::UnlinkatFlags::NoRemoveDir,
            )
            .is_err()
            {
                let _ = remove_tree_at(&sub, &entry);
            }
        }
    }
    nix::unistd::unlinkat(dir, name, nix::unistd::UnlinkatFlags::RemoveDir)
        .map_err(Error::sys("cannot remove a work directory"))
}

/// The mount id recorded on a container root (`None`: never mounted).
fn recorded(upper: &OwnedFd) -> Result<Option<u64>> {
    with_caps(&[Capability::CAP_SYS_ADMIN], || {
        crate::layout::read_mount_record(upper)
            .map_err(Error::io("cannot read the container root's mount record"))
    })
}

/// `cp` into a running container: a copy (attached nowhere, without the
/// mounts below it) of the root mount of `pid`'s mount namespace, accepted
/// only when that mount is the one recorded on the caller's root `upper`
/// (so it is the overlay of this very root, whichever process `pid` is).
/// Volumes and other mounts of the container are not in the copy: a path
/// under one of them is written to the root beneath it, never to the
/// volume's source. Opened as a directory for the extractor.
pub fn running_view(upper: &OwnedFd, pid: i32) -> Result<OwnedFd> {
    let not_running = || {
        Error::NotFound(format!(
            "process {pid} is not running in this container of yours"
        ))
    };
    let expected = recorded(upper)?.ok_or_else(not_running)?;
    if pid <= 0 {
        return Err(not_running());
    }
    // As the caller (our real and filesystem uid): their own processes only.
    let mntns = std::fs::File::open(format!("/proc/{pid}/ns/mnt")).map_err(|_| not_running())?;
    let worker = std::thread::Builder::new()
        .name("container-root".into())
        .spawn(move || -> Result<Option<OwnedFd>> {
            // SAFETY: gives this thread its own root and cwd (setns into a
            // mount namespace requires it); the other threads keep theirs.
            if unsafe { libc::unshare(libc::CLONE_FS) } != 0 {
                return Err(Error::sys("cannot unshare the filesystem attributes")(
                    Errno::last(),
                ));
            }
            let entered = with_caps(JOIN, || {
                // SAFETY: setns on a namespace fd we own; this thread only.
                Ok(unsafe { libc::setns(mntns.as_raw_fd(), libc::CLONE_NEWNS) } == 0)
            })?;
            if !entered {
                return Ok(None);
            }
            // The namespace's root, opened once: what is checked is what is copied.
            let Ok(root) = tupper_sys::openat2(
                libc::AT_FDCWD,
                c"/",
                libc::O_PATH | libc::O_DIRECTORY,
                libc::RESOLVE_NO_SYMLINKS,
            ) else {
                return Ok(None);
            };
            let id = unique_mount_id(root.as_raw_fd(), c"", libc::AT_EMPTY_PATH)
                .ok()
                .flatten();
            if id != Some(expected) {
                return Ok(None);
            }
            with_caps(&[Capability::CAP_SYS_ADMIN], || {
                tupper_sys::open_tree(
                    root.as_raw_fd(),
                    c"",
                    libc::OPEN_TREE_CLONE | libc::AT_EMPTY_PATH as u32,
                )
                .map(Some)
                .map_err(Error::io("cannot open the running container's root"))
            })
        })
        .map_err(Error::io("cannot start a thread"))?;
    let view = worker
        .join()
        .map_err(|_| Error::Other {
            what: "the running container's root".into(),
            why: "the thread looking for it failed".into(),
        })??
        .ok_or_else(not_running)?;
    open_dir_at(&view, ".", "the running container's root")
}
