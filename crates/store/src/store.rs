//! The store: `<store>` on btrfs (loop-mounting an embedded image file when
//! it is not), with `images/<uid>/` and `containers/<uid>/` inside.
//!
//! Who may do what:
//! - creating the store (its directory, and formatting its image with
//!   `mkfs.btrfs`, the one program this helper ever runs) is the
//!   administrator's job: only a caller whose real uid is 0 does it, at
//!   install time. No capability is ever passed on to that program; root has
//!   its own.
//! - mounting an existing image (after a reboot) is done by whoever comes
//!   first, root or not: it runs no other program.
//! - the lock that serialises the first mount is waited for only briefly
//!   (see [`crate::lock`]): the caller can stop its helper while it holds it.

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::process::{Command, Stdio};

use nix::errno::Errno;
use nix::fcntl::{openat, renameat, OFlag};
use nix::mount::MsFlags;
use nix::sys::stat::{fstat, Mode, SFlag};
use nix::sys::statfs::{fstatfs, BTRFS_SUPER_MAGIC};
use nix::unistd::{fchown, ftruncate, unlinkat, Gid, Uid, UnlinkatFlags};
use proto::Caller;
use tupper_config::system::StoreConfig;

use crate::capabilities::{with_caps, ADMIN, STORE, STORE_CREATE};
use crate::error::{Error, Result};
use crate::fsutil::{ensure_root_dir_at, make_root_owned, open_dir_path};
use crate::loopdev;

const IMAGE_FILE: &str = "storage.img";
const IMAGE_TMP: &str = ".storage.img.new";
const LOCK_FILE: &str = ".lock";
const MKFS: [&str; 2] = ["/usr/sbin/mkfs.btrfs", "/sbin/mkfs.btrfs"];

/// The mounted store with its two top-level directories open.
pub struct Store {
    top: OwnedFd,
    images: OwnedFd,
    containers: OwnedFd,
}

impl Store {
    /// `images/<uid>/`, created on demand (0700 root:root).
    pub fn user_images(&self, uid: u32) -> Result<OwnedFd> {
        ensure_root_dir_at(&self.images, &uid.to_string(), "the image directory")
    }

    /// Issue 9: `work/<uid>/`, the overlay work directories of a user's
    /// container roots, created on demand (0700 root:root).
    pub fn user_work(&self, uid: u32) -> Result<OwnedFd> {
        let work = ensure_root_dir_at(&self.top, "work", "the work directory")?;
        ensure_root_dir_at(&work, &uid.to_string(), "the work directory")
    }

    /// Issue 9: `lower/`, the empty lower layer of every container root's
    /// overlay (0700 root:root; nothing is ever put there).
    pub fn lower(&self) -> Result<OwnedFd> {
        ensure_root_dir_at(&self.top, "lower", "the empty lower layer")
    }

    /// `containers/<uid>/`, created on demand (0700 root:root).
    pub fn user_containers(&self, uid: u32) -> Result<OwnedFd> {
        ensure_root_dir_at(
            &self.containers,
            &uid.to_string(),
            "the container directory",
        )
    }
}

fn is_admin(caller: Caller) -> bool {
    caller.uid == 0
}

/// What a user is told when the administrator has not created the store.
fn not_created(path: &Path) -> Error {
    Error::NotCreated(format!(
        "the image store {} has not been created yet; an administrator creates it by \
         running `tupper-supervisor image ls` once as root (packaging/install.sh does)",
        path.display()
    ))
}

/// Make sure the store exists, is on btrfs and has its top-level layout.
pub fn ensure(cfg: &StoreConfig, caller: Caller) -> Result<Store> {
    let path = cfg.path.as_path();
    let mut root = open_or_create(path, caller)?;
    if !is_btrfs(&root)? {
        // Only the administrator creates the image: decide before touching
        // anything (not even the lock file).
        if !is_admin(caller) && !exists(&root, IMAGE_FILE)? {
            return Err(not_created(path));
        }
        // Two first uses at once must not both mount: serialise on a lock file
        // in the (not yet covered) store directory, then look again.
        let _lock = lock(&root)?;
        let underlying = open_store(path)?;
        if !is_btrfs(&underlying)? {
            mount_embedded_image(&underlying, path, cfg, caller)?;
        }
        root = open_store(path)?;
        if !is_btrfs(&root)? {
            return Err(Error::Other {
                what: "the image store".into(),
                why: "is not on btrfs even after mounting its image".into(),
            });
        }
        make_root_owned(&root, 0o700)?;
    }
    // Disk quota (issue 9): on in simple mode from the first use on.
    crate::quota::ensure_enabled(&root)?;
    let images = ensure_root_dir_at(&root, "images", "the image directory")?;
    let containers = ensure_root_dir_at(&root, "containers", "the container directory")?;
    Ok(Store {
        top: root,
        images,
        containers,
    })
}

fn open_store(path: &Path) -> Result<OwnedFd> {
    with_caps(STORE, || {
        open_dir_path(path).map_err(Error::sys("cannot open the image store"))
    })
}

fn open_or_create(path: &Path, caller: Caller) -> Result<OwnedFd> {
    match open_store(path) {
        Err(Error::Sys {
            errno: Errno::ENOENT,
            ..
        }) if !is_admin(caller) => Err(not_created(path)),
        Err(Error::Sys {
            errno: Errno::ENOENT,
            ..
        }) => {
            with_caps(STORE_CREATE, || {
                match nix::unistd::mkdir(path, Mode::from_bits_truncate(0o700)) {
                    Ok(()) | Err(Errno::EEXIST) => Ok(()),
                    Err(e) => Err(Error::sys("cannot create the image store")(e)),
                }
            })?;
            let fd = open_store(path)?;
            make_root_owned(&fd, 0o700)?;
            Ok(fd)
        }
        other => other,
    }
}

fn is_btrfs(fd: impl AsFd) -> Result<bool> {
    let st = fstatfs(fd).map_err(Error::sys("cannot inspect the image store"))?;
    Ok(st.filesystem_type() == BTRFS_SUPER_MAGIC)
}

fn exists(dir: &OwnedFd, name: &str) -> Result<bool> {
    crate::fsutil::exists_at(dir, name)
}

/// How long a command waits for a lock held by another command.
pub const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

fn lock(dir: &OwnedFd) -> Result<tupper_sys::lock::Locked<File>> {
    let fd = with_caps(STORE_CREATE, || {
        let fd = openat(
            dir,
            LOCK_FILE,
            OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        )
        .map_err(Error::sys("cannot open the store lock"))?;
        let st = fstat(&fd).map_err(Error::sys("cannot open the store lock"))?;
        if st.st_uid != 0 || st.st_gid != 0 {
            fchown(&fd, Some(Uid::from_raw(0)), Some(Gid::from_raw(0)))
                .map_err(Error::sys("cannot give the store lock to root"))?;
        }
        Ok(fd)
    })?;
    tupper_sys::lock::exclusive_within(File::from(fd), LOCK_WAIT)
        .map_err(Error::io("cannot take a lock"))?
        .ok_or_else(|| {
            Error::Busy(
                "the image store is busy (being set up by another command); try again".into(),
            )
        })
}

/// The embedded default: a sparse btrfs image file attached to a loop device
/// and mounted over the store directory.
fn mount_embedded_image(
    dir: &OwnedFd,
    path: &Path,
    cfg: &StoreConfig,
    caller: Caller,
) -> Result<()> {
    let image = open_or_create_image(dir, path, cfg, caller)?;
    with_caps(ADMIN, || {
        let dev = match loopdev::find_attached(&image)? {
            Some(dev) => dev,
            None => loopdev::attach(&image)?,
        };
        // nodev: device nodes in the store (images refuse them, but a
        // container could mknod one in its root) are never usable.
        // noatime: reads do not write. suid stays allowed on purpose:
        // container roots are in this mount and inherit its flags, and
        // containers need their setuid binaries (sudo, su, ping); files
        // there are owned by subordinate ids, never by host root.
        // Every container's `/proc`, `/dev` etc. are mounted by tupper-ns.
        nix::mount::mount(
            Some(dev.path.as_str()),
            path,
            Some("btrfs"),
            MsFlags::MS_NODEV | MsFlags::MS_NOATIME,
            None::<&str>,
        )
        .map_err(Error::sys("cannot mount the image store"))
        // `dev` closes here; with LO_FLAGS_AUTOCLEAR the device now lives
        // exactly as long as the mount (or is released at once on failure).
    })
}

fn open_or_create_image(
    dir: &OwnedFd,
    path: &Path,
    cfg: &StoreConfig,
    caller: Caller,
) -> Result<File> {
    let open = || {
        with_caps(STORE, || {
            openat(
                dir,
                IMAGE_FILE,
                OFlag::O_RDWR | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(Error::sys("cannot open the store image"))
        })
    };
    let fd = match open() {
        Err(Error::Sys {
            errno: Errno::ENOENT,
            ..
        }) => {
            if !is_admin(caller) {
                return Err(not_created(path));
            }
            create_image(dir, path, cfg, caller)?;
            open()?
        }
        other => other?,
    };
    let st = fstat(&fd).map_err(Error::sys("cannot inspect the store image"))?;
    if SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) != SFlag::S_IFREG
        || st.st_uid != 0
    {
        return Err(Error::Other {
            what: "the store image".into(),
            why: "is not a regular file owned by root".into(),
        });
    }
    Ok(File::from(fd))
}

/// Create, size and format the image under a temporary name, then rename it
/// into place: a helper killed half-way never leaves an unformatted
/// `storage.img` behind (we hold the store lock, so the temporary name is ours).
fn create_image(dir: &OwnedFd, path: &Path, cfg: &StoreConfig, caller: Caller) -> Result<()> {
    let size = cfg.image_size_bytes().map_err(|why| Error::Other {
        what: "store configuration".into(),
        why,
    })?;
    let remove_tmp = || {
        let _ = with_caps(STORE, || {
            unlinkat(dir, IMAGE_TMP, UnlinkatFlags::NoRemoveDir).map_err(Error::sys(""))
        });
    };
    remove_tmp();
    let made = with_caps(STORE_CREATE, || {
        let fd = openat(
            dir,
            IMAGE_TMP,
            OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        )
        .map_err(Error::sys("cannot create the store image"))?;
        fchown(&fd, Some(Uid::from_raw(0)), Some(Gid::from_raw(0)))
            .map_err(Error::sys("cannot give the store image to root"))?;
        ftruncate(&fd, size as i64).map_err(Error::sys("cannot size the store image"))
    })
    .and_then(|()| mkfs(&path.join(IMAGE_TMP), caller))
    .and_then(|()| {
        with_caps(STORE, || {
            renameat(dir, IMAGE_TMP, dir, IMAGE_FILE)
                .map_err(Error::sys("cannot put the store image in place"))
        })
    });
    if made.is_err() {
        remove_tmp();
    }
    made
}

/// Format the freshly created image (the one external tool the helper runs,
/// and only for the administrator: it runs as root with root's own
/// privileges, never with anything this helper holds, from `/`, with an
/// empty environment and no input).
fn mkfs(image: &Path, caller: Caller) -> Result<()> {
    if !is_admin(caller) {
        return Err(not_created(image.parent().unwrap_or(image)));
    }
    let tool = MKFS
        .iter()
        .find(|p| Path::new(p).is_file())
        .ok_or_else(|| Error::Other {
            what: "cannot format the store image".into(),
            why: "mkfs.btrfs is not installed (Debian package btrfs-progs)".into(),
        })?;
    let mut cmd = Command::new(tool);
    cmd.arg("-q")
        .arg(image)
        .current_dir("/")
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let out = cmd.output().map_err(Error::io("cannot run mkfs.btrfs"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(Error::Other {
            what: "cannot format the store image".into(),
            why: format!(
                "mkfs.btrfs failed ({}): {}",
                out.status,
                err.lines().last().unwrap_or("").trim()
            ),
        });
    }
    Ok(())
}
