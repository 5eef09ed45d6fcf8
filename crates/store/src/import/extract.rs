//! Create tarball entries inside the new image subvolume.
//!
//! Every path goes through a `pathrs::Root` on the subvolume (openat2
//! `RESOLVE_IN_ROOT`), so symlinks in the image -- absolute ones included --
//! resolve inside it and nothing is ever written outside. The final component
//! is always handled relative to its parent directory descriptor, never
//! followed.

use std::ffi::OsStr;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{
    fchmod, fchmodat, fstat, fstatat, futimens, mkdirat, mknodat, utimensat, FchmodatFlags, Mode,
    SFlag, UtimensatFlags,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchown, fchownat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};
use pathrs::flags::OpenFlags;
use pathrs::{Handle, InodeType, Root};

use super::archive::Sniffer;
use super::data::{copy_sparse, Budget};
use super::ids::Shift;
use super::policy::{self, shown, Kind};
use super::xattrs::{self, Plan};
use crate::capabilities::{with_caps, EXTRACT};
use crate::error::{Error, Result};

/// Writes entries into one image tree.
pub struct Extractor {
    root: Root,
    shift: Shift,
    /// The caller's import size limit.
    budget: Budget,
    /// Directory mtimes, applied at the end (creating entries inside a
    /// directory changes its mtime).
    dir_times: Vec<(PathBuf, i64)>,
    pub entries: u64,
    /// Device nodes left out (see [`Kind::Device`]).
    pub devices_skipped: u64,
    /// Extended attributes left out (see [`xattrs`]).
    pub xattrs_skipped: u64,
    pub bytes: u64,
    /// Whether the tarball is an image archive rather than a root filesystem.
    pub sniffer: Sniffer,
    /// Set when extracting an OCI layer onto a snapshot of its parent
    /// (issue 10): whiteouts apply, later entries replace whole trees.
    layer: Option<super::whiteout::LayerState>,
}

/// Ownership, permissions and time of one entry, already shifted.
struct Meta {
    uid: u32,
    gid: u32,
    mode: u32,
    mtime: i64,
}

/// The errno behind a pathrs error, if any.
fn errno_of(e: &pathrs::error::Error) -> Option<i32> {
    match e.kind() {
        pathrs::error::ErrorKind::OsError(code) => code,
        pathrs::error::ErrorKind::SafetyViolation => Some(libc::EXDEV),
        _ => None,
    }
}

fn pathrs_err(what: String) -> impl FnOnce(pathrs::error::Error) -> Error {
    move |e| match errno_of(&e) {
        Some(libc::EXDEV) => Error::Unsafe(format!("{what}: path leaves the image")),
        Some(code) => Error::Sys {
            what,
            errno: Errno::from_raw(code),
        },
        None => Error::Other {
            what,
            why: e.to_string(),
        },
    }
}

fn tarball_err(e: std::io::Error) -> Error {
    Error::Tarball(e.to_string())
}

fn is_dir(st: &nix::sys::stat::FileStat) -> bool {
    SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) == SFlag::S_IFDIR
}

fn ts(secs: i64) -> TimeSpec {
    TimeSpec::new(secs, 0)
}

impl Extractor {
    /// Start on a fresh subvolume: its root belongs to container root, 0755,
    /// unless the tarball says otherwise.
    pub fn new(subvol: OwnedFd, shift: Shift, budget: Budget) -> Result<Extractor> {
        let (uid, gid) = shift.host_ids(".", 0, 0)?;
        with_caps(EXTRACT, || {
            fchown(&subvol, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
                .map_err(Error::sys("cannot set the owner of the image root"))?;
            fchmod(&subvol, Mode::from_bits_truncate(0o755))
                .map_err(Error::sys("cannot set the mode of the image root"))
        })?;
        Ok(Extractor {
            root: Root::from_fd(subvol),
            shift,
            budget,
            dir_times: Vec::new(),
            entries: 0,
            devices_skipped: 0,
            xattrs_skipped: 0,
            bytes: 0,
            sniffer: Sniffer::default(),
            layer: None,
        })
    }

    /// Extract an OCI layer onto `subvol`, a snapshot of its parent layer
    /// (or a fresh subvolume for the first layer, whose root is then set up
    /// like an image's).
    pub fn for_layer(
        subvol: OwnedFd,
        shift: Shift,
        budget: Budget,
        fresh: bool,
    ) -> Result<Extractor> {
        let mut ex = if fresh {
            Extractor::new(subvol, shift, budget)?
        } else {
            Extractor {
                root: Root::from_fd(subvol),
                shift,
                budget,
                dir_times: Vec::new(),
                entries: 0,
                devices_skipped: 0,
                xattrs_skipped: 0,
                bytes: 0,
                sniffer: Sniffer::default(),
                layer: None,
            }
        };
        ex.layer = Some(super::whiteout::LayerState::default());
        Ok(ex)
    }

    /// Create one entry.
    pub fn apply<R: Read>(&mut self, entry: &mut tar::Entry<R>) -> Result<()> {
        let raw = entry.path_bytes().into_owned();
        let name = shown(&raw);
        let kind = policy::kind(&raw, entry.header().entry_type())?;
        if kind == Kind::Skip {
            return Ok(());
        }
        let rel = policy::normalise(&raw)?;
        if let Some(state) = self.layer.as_mut() {
            if super::whiteout::is_whiteout(&rel) {
                return with_caps(EXTRACT, || {
                    super::whiteout::apply(self.root.as_fd(), &rel, state, &name)
                });
            }
            state.created.insert(rel.clone());
        }
        let layer = self.layer.is_some();
        if kind == Kind::Device {
            // Never created; its name was still checked like any other.
            self.devices_skipped += 1;
            return Ok(());
        }
        let (meta, raw_xattrs) = self.meta(&name, entry)?;
        let plan = xattrs::plan(&name, raw_xattrs, kind, &self.shift)?;
        self.xattrs_skipped += plan.left_out;
        self.entries += 1;
        self.sniffer.see(&rel, kind);

        let Some(file_name) = rel.file_name().map(OsStr::to_os_string) else {
            // The image root itself ("./").
            if kind != Kind::Directory {
                return Err(Error::Unsafe(format!(
                    "tarball entry {name:?} would replace the image root with a non-directory"
                )));
            }
            let root_fd = self.root.as_fd();
            with_caps(EXTRACT, || {
                set_owner_mode(root_fd, &meta, &name)?;
                xattrs::apply(root_fd, &plan, &name)
            })?;
            self.dir_times.push((PathBuf::new(), meta.mtime));
            return Ok(());
        };
        let parent = self.parent_dir(rel.parent().unwrap_or(Path::new("")), &name)?;
        let leaf = file_name.as_os_str();

        match kind {
            Kind::Directory => {
                with_caps(EXTRACT, || {
                    if !clear_for(&parent, leaf, true, layer, &name)? {
                        mkdirat(&parent, leaf, Mode::from_bits_truncate(0o700))
                            .map_err(Error::sys(format!("cannot create {name:?}")))?;
                    }
                    let dir = openat(
                        &parent,
                        leaf,
                        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                        Mode::empty(),
                    )
                    .map_err(Error::sys(format!("cannot open {name:?}")))?;
                    set_owner_mode(&dir, &meta, &name)?;
                    xattrs::apply(&dir, &plan, &name)
                })?;
                self.dir_times.push((rel, meta.mtime));
            }
            Kind::File => {
                // Apparent size (a GNU sparse entry's full size), before
                // anything is written.
                self.budget.charge(entry.size(), &name)?;
                let file = with_caps(EXTRACT, || {
                    clear_for(&parent, leaf, false, layer, &name)?;
                    let fd = openat(
                        &parent,
                        leaf,
                        OFlag::O_WRONLY
                            | OFlag::O_CREAT
                            | OFlag::O_EXCL
                            | OFlag::O_NOFOLLOW
                            | OFlag::O_CLOEXEC,
                        Mode::from_bits_truncate(0o600),
                    )
                    .map_err(Error::sys(format!("cannot create {name:?}")))?;
                    Ok(File::from(fd))
                })?;
                self.bytes += copy_sparse(entry, &file, &name)?;
                // Attributes last: chown and writing data clear a file
                // capability.
                with_caps(EXTRACT, || {
                    set_owner_mode(&file, &meta, &name)?;
                    futimens(&file, &ts(meta.mtime), &ts(meta.mtime))
                        .map_err(Error::sys(format!("cannot set the time of {name:?}")))?;
                    xattrs::apply(&file, &plan, &name)
                })?;
            }
            Kind::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| {
                        Error::Unsafe(format!(
                            "tarball entry {name:?} is a symlink without a target"
                        ))
                    })?
                    .into_owned();
                with_caps(EXTRACT, || {
                    clear_for(&parent, leaf, false, layer, &name)?;
                    symlinkat(OsStr::from_bytes(&target), &parent, leaf)
                        .map_err(Error::sys(format!("cannot create {name:?}")))?;
                    chown_leaf(&parent, leaf, &meta, &name)?;
                    set_time_leaf(&parent, leaf, &meta, &name)
                })?;
            }
            Kind::Hardlink => self.hardlink(entry, &rel, &parent, leaf, layer, &name)?,
            Kind::Fifo => {
                with_caps(EXTRACT, || {
                    clear_for(&parent, leaf, false, layer, &name)?;
                    mknodat(
                        &parent,
                        leaf,
                        SFlag::S_IFIFO,
                        Mode::from_bits_truncate(0o600),
                        0,
                    )
                    .map_err(Error::sys(format!("cannot create {name:?}")))?;
                    chown_leaf(&parent, leaf, &meta, &name)?;
                    fchmodat(
                        &parent,
                        leaf,
                        Mode::from_bits_truncate(meta.mode),
                        FchmodatFlags::NoFollowSymlink,
                    )
                    .map_err(Error::sys(format!("cannot set the mode of {name:?}")))?;
                    set_time_leaf(&parent, leaf, &meta, &name)?;
                    apply_to_fifo(&parent, leaf, &plan, &name)
                })?;
            }
            // Both returned above, before anything was created.
            Kind::Skip | Kind::Device => {}
        }
        Ok(())
    }

    /// Directory mtimes, deepest first, once everything is in place.
    pub fn finish(self) -> Result<()> {
        with_caps(EXTRACT, || {
            for (rel, mtime) in self.dir_times.iter().rev() {
                let what = format!("cannot set the time of {:?}", rel.display().to_string());
                let dir = if rel.as_os_str().is_empty() {
                    self.root
                        .as_fd()
                        .try_clone_to_owned()
                        .map_err(Error::io(what.clone()))?
                } else {
                    let f = self
                        .root
                        .open_subpath(
                            rel,
                            OpenFlags::O_RDONLY | OpenFlags::O_DIRECTORY | OpenFlags::O_NOFOLLOW,
                        )
                        .map_err(pathrs_err(what.clone()))?;
                    OwnedFd::from(f)
                };
                futimens(&dir, &ts(*mtime), &ts(*mtime)).map_err(Error::sys(what))?;
            }
            Ok(())
        })
    }

    /// Ownership, mode and time, and the extended attribute records.
    fn meta<R: Read>(&self, name: &str, entry: &mut tar::Entry<R>) -> Result<(Meta, xattrs::Raw)> {
        let mut uid = entry.header().uid().map_err(tarball_err)?;
        let mut gid = entry.header().gid().map_err(tarball_err)?;
        let mut raw = xattrs::Raw::default();
        // PAX records override the header's numeric ids.
        if let Some(pax) = entry.pax_extensions().map_err(tarball_err)? {
            for ext in pax {
                let ext = ext.map_err(tarball_err)?;
                let key = ext.key_bytes();
                if raw.take(name, key, ext.value_bytes())? {
                    continue;
                }
                if key == b"uid" || key == b"gid" {
                    let v: u64 = ext
                        .value()
                        .ok()
                        .and_then(|v| v.parse().ok())
                        .ok_or_else(|| bad_pax(name, &String::from_utf8_lossy(key)))?;
                    if key == b"uid" {
                        uid = v;
                    } else {
                        gid = v;
                    }
                }
            }
        }
        let h = entry.header();
        let (uid, gid) = self.shift.host_ids(name, uid, gid)?;
        let meta = Meta {
            uid,
            gid,
            mode: h.mode().map_err(tarball_err)? & 0o7777,
            mtime: h.mtime().map_err(tarball_err)?.min(i64::MAX as u64) as i64,
        };
        Ok((meta, raw))
    }

    /// The parent directory of an entry, resolved inside the image; missing
    /// directories are created (owned by container root, 0755).
    fn parent_dir(&self, parent: &Path, name: &str) -> Result<Handle> {
        let what = || format!("cannot create the directory of {name:?}");
        with_caps(EXTRACT, || {
            if parent.as_os_str().is_empty() {
                let fd = self
                    .root
                    .as_fd()
                    .try_clone_to_owned()
                    .map_err(Error::io(what()))?;
                return Ok(Handle::from_fd(fd));
            }
            match self.root.resolve(parent) {
                Ok(h) => return Ok(h),
                Err(e) if errno_of(&e) == Some(libc::ENOENT) => {}
                Err(e) => return Err(pathrs_err(what())(e)),
            }
            let (uid, gid) = self.shift.host_ids(name, 0, 0)?;
            let mut cur = PathBuf::new();
            for comp in parent.components() {
                cur.push(comp);
                match self.root.resolve(&cur) {
                    Ok(_) => continue,
                    Err(e) if errno_of(&e) == Some(libc::ENOENT) => {}
                    Err(e) => return Err(pathrs_err(what())(e)),
                }
                self.root
                    .create(
                        &cur,
                        &InodeType::Directory(std::fs::Permissions::from_mode(0o755)),
                    )
                    .map_err(pathrs_err(what()))?;
                let h = self
                    .root
                    .resolve_nofollow(&cur)
                    .map_err(pathrs_err(what()))?;
                fchownat(
                    &h,
                    "",
                    Some(Uid::from_raw(uid)),
                    Some(Gid::from_raw(gid)),
                    AtFlags::AT_EMPTY_PATH | AtFlags::AT_SYMLINK_NOFOLLOW,
                )
                .map_err(Error::sys(what()))?;
            }
            self.root.resolve(parent).map_err(pathrs_err(what()))
        })
    }

    fn hardlink<R: Read>(
        &mut self,
        entry: &tar::Entry<R>,
        rel: &Path,
        parent: &Handle,
        leaf: &OsStr,
        layer: bool,
        name: &str,
    ) -> Result<()> {
        let raw_target = entry
            .link_name_bytes()
            .ok_or_else(|| {
                Error::Unsafe(format!(
                    "tarball entry {name:?} is a hardlink without a target"
                ))
            })?
            .into_owned();
        let target_shown = shown(&raw_target);
        let outside = || {
            Error::Unsafe(format!(
                "tarball entry {name:?}: hardlink target {target_shown:?} is not a file earlier in this image"
            ))
        };
        let target = policy::normalise(&raw_target).map_err(|_| {
            Error::Unsafe(format!(
                "tarball entry {name:?}: hardlink target {target_shown:?} leaves the image"
            ))
        })?;
        if target.as_os_str().is_empty() {
            return Err(outside());
        }
        if target == rel {
            return Ok(());
        }
        with_caps(EXTRACT, || {
            // Resolved inside the image; must exist already and not be a directory.
            let h = self.root.resolve_nofollow(&target).map_err(|_| outside())?;
            let st = fstat(&h).map_err(|_| outside())?;
            if is_dir(&st) {
                return Err(outside());
            }
            clear_for(parent, leaf, false, layer, name)?;
            self.root
                .create(rel, &InodeType::Hardlink(target.clone()))
                .map_err(pathrs_err(format!("cannot create {name:?}")))
        })
    }
}

fn bad_pax(name: &str, key: &str) -> Error {
    Error::Tarball(format!("entry {name:?} has a malformed PAX {key} record"))
}

/// A fifo's attributes (an access ACL at most): through a descriptor of the
/// fifo itself, opened without following a link and without blocking.
fn apply_to_fifo(parent: impl AsFd, leaf: &OsStr, plan: &Plan, name: &str) -> Result<()> {
    if plan.set.is_empty() {
        return Ok(());
    }
    let fd = openat(
        parent,
        leaf,
        OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(Error::sys(format!("cannot open {name:?}")))?;
    xattrs::apply(&fd, plan, name)
}

/// Owner of `leaf` in `parent`, never following a symlink.
fn chown_leaf(parent: impl AsFd, leaf: &OsStr, meta: &Meta, name: &str) -> Result<()> {
    fchownat(
        parent,
        leaf,
        Some(Uid::from_raw(meta.uid)),
        Some(Gid::from_raw(meta.gid)),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(Error::sys(format!("cannot set the owner of {name:?}")))
}

/// Modification time of `leaf` in `parent`, never following a symlink.
fn set_time_leaf(parent: impl AsFd, leaf: &OsStr, meta: &Meta, name: &str) -> Result<()> {
    utimensat(
        parent,
        leaf,
        &ts(meta.mtime),
        &ts(meta.mtime),
        UtimensatFlags::NoFollowSymlink,
    )
    .map_err(Error::sys(format!("cannot set the time of {name:?}")))
}

/// Owner first (chown clears setuid/setgid), then the mode.
fn set_owner_mode(fd: impl AsFd, meta: &Meta, name: &str) -> Result<()> {
    fchown(
        fd.as_fd(),
        Some(Uid::from_raw(meta.uid)),
        Some(Gid::from_raw(meta.gid)),
    )
    .map_err(Error::sys(format!("cannot set the owner of {name:?}")))?;
    fchmod(fd.as_fd(), Mode::from_bits_truncate(meta.mode))
        .map_err(Error::sys(format!("cannot set the mode of {name:?}")))
}

/// Make room for a new entry named `leaf` in `parent`: a later entry replaces
/// an earlier one. An existing directory is kept when the new entry is a
/// directory too (returns true then). In a layer (`layer`), a directory of
/// a lower layer that a non-directory replaces goes with all it holds.
fn clear_for(
    parent: impl AsFd,
    leaf: &OsStr,
    new_is_dir: bool,
    layer: bool,
    name: &str,
) -> Result<bool> {
    let st = match fstatat(parent.as_fd(), leaf, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(Errno::ENOENT) => return Ok(false),
        Err(e) => return Err(Error::sys(format!("cannot look up {name:?}"))(e)),
    };
    if is_dir(&st) {
        if new_is_dir {
            return Ok(true);
        }
        if layer {
            return super::whiteout::remove_tree(parent.as_fd(), leaf, name).map(|()| false);
        }
        return unlinkat(parent, leaf, UnlinkatFlags::RemoveDir)
            .map(|()| false)
            .map_err(|e| match e {
                Errno::ENOTEMPTY | Errno::EEXIST => Error::Unsafe(format!(
                    "tarball entry {name:?} would replace a non-empty directory"
                )),
                e => Error::sys(format!("cannot replace {name:?}"))(e),
            });
    }
    unlinkat(parent, leaf, UnlinkatFlags::NoRemoveDir)
        .map(|()| false)
        .map_err(Error::sys(format!("cannot replace {name:?}")))
}
