//! OCI whiteouts while a layer is extracted onto a snapshot of its parent
//! (image-spec `layer.md`): `DIR/.wh.NAME` removes `DIR/NAME` of the lower
//! layers, `DIR/.wh..wh..opq` hides every lower entry of `DIR`. Neither is
//! created in the layer.
//!
//! A whiteout only ever deletes inside the layer being built: its directory
//! is opened from the layer's root with `openat2(RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS | RESOLVE_NO_XDEV)`, so a symlink anywhere on the way
//! (even one that would stay inside the image) refuses the layer, and the
//! deletion itself is an `unlinkat` of one name in that directory, walking
//! a directory tree by descriptors without following anything.

use std::collections::HashSet;
use std::ffi::{CString, OsStr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{fstatat, Mode, SFlag};
use nix::unistd::{unlinkat, UnlinkatFlags};

use crate::error::{Error, Result};

/// The prefix of a whiteout.
pub const PREFIX: &str = ".wh.";
/// The name of an opaque-directory marker.
pub const OPAQUE: &str = ".wh..wh..opq";

/// What this layer created so far: a whiteout or opaque marker never hides
/// an entry of its own layer.
#[derive(Debug, Default)]
pub struct LayerState {
    pub created: HashSet<PathBuf>,
}

/// Whether an entry is a whiteout or an opaque marker.
pub fn is_whiteout(rel: &Path) -> bool {
    rel.file_name()
        .is_some_and(|n| n.as_bytes().starts_with(PREFIX.as_bytes()))
}

/// Apply one whiteout entry (`rel` normalised, inside the layer). Called
/// with the extraction capabilities raised.
pub fn apply(root: BorrowedFd<'_>, rel: &Path, state: &LayerState, shown: &str) -> Result<()> {
    let leaf = rel.file_name().map(OsStr::as_bytes).unwrap_or_default();
    let parent = rel.parent().unwrap_or(Path::new(""));
    if leaf == OPAQUE.as_bytes() {
        let Some(dir) = open_beneath(root, parent, shown)? else {
            return Ok(());
        };
        let dir = reopen_dir(&dir, shown)?;
        for child in children(&dir, shown)? {
            if !state
                .created
                .contains(&parent.join(OsStr::from_bytes(&child)))
            {
                remove_tree(dir.as_fd(), OsStr::from_bytes(&child), shown)?;
            }
        }
        return Ok(());
    }
    let target = &leaf[PREFIX.len()..];
    if target.is_empty()
        || target == b"."
        || target == b".."
        || target.contains(&0)
        || target.starts_with(PREFIX.as_bytes())
    {
        return Err(Error::Unsafe(format!(
            "layer entry {shown:?} is not a valid whiteout"
        )));
    }
    let target = OsStr::from_bytes(target);
    if state.created.contains(&parent.join(target)) {
        return Ok(());
    }
    let Some(dir) = open_beneath(root, parent, shown)? else {
        return Ok(());
    };
    remove_tree(dir.as_fd(), target, shown)
}

/// The directory of a whiteout, never through a symlink; `None` when it does
/// not exist (nothing to hide).
fn open_beneath(root: BorrowedFd<'_>, parent: &Path, shown: &str) -> Result<Option<OwnedFd>> {
    let path = if parent.as_os_str().is_empty() {
        CString::from(c".")
    } else {
        CString::new(parent.as_os_str().as_bytes())
            .map_err(|_| Error::Unsafe(format!("layer entry {shown:?} has a NUL byte")))?
    };
    match tupper_sys::openat2(
        root.as_raw_fd(),
        &path,
        libc::O_PATH | libc::O_DIRECTORY,
        libc::RESOLVE_BENEATH
            | libc::RESOLVE_NO_SYMLINKS
            | libc::RESOLVE_NO_MAGICLINKS
            | libc::RESOLVE_NO_XDEV,
    ) {
        Ok(fd) => Ok(Some(fd)),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::ELOOP | libc::EXDEV | libc::ENOTDIR)
            ) =>
        {
            Err(Error::Unsafe(format!(
                "layer whiteout {shown:?} goes through a symlink or leaves the layer"
            )))
        }
        Err(e) => Err(Error::io(format!("cannot open the directory of {shown:?}"))(e)),
    }
}

fn reopen_dir(dir: &OwnedFd, shown: &str) -> Result<OwnedFd> {
    nix::fcntl::openat(
        dir,
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(Error::sys(format!(
        "cannot open the directory of {shown:?}"
    )))
}

fn children(dir: &OwnedFd, shown: &str) -> Result<Vec<Vec<u8>>> {
    let fd = reopen_dir(dir, shown)?;
    let mut d = Dir::from_fd(fd).map_err(Error::sys(format!("cannot list for {shown:?}")))?;
    let mut out = Vec::new();
    for e in d.iter() {
        let e = e.map_err(Error::sys(format!("cannot list for {shown:?}")))?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            out.push(n.to_vec());
        }
    }
    Ok(out)
}

/// Remove `leaf` of `dir` and, if it is a directory, everything in it, by
/// descriptors, following no symlink. A missing `leaf` is not an error.
pub fn remove_tree(dir: BorrowedFd<'_>, leaf: &OsStr, shown: &str) -> Result<()> {
    let st = match fstatat(dir, leaf, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(Errno::ENOENT) => return Ok(()),
        Err(e) => return Err(Error::sys(format!("cannot look up what {shown:?} removes"))(e)),
    };
    let is_dir = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) == SFlag::S_IFDIR;
    if is_dir {
        let sub = nix::fcntl::openat(
            dir,
            leaf,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(Error::sys(format!("cannot open what {shown:?} removes")))?;
        for child in children(&sub, shown)? {
            remove_tree(sub.as_fd(), OsStr::from_bytes(&child), shown)?;
        }
        unlinkat(dir, leaf, UnlinkatFlags::RemoveDir)
    } else {
        unlinkat(dir, leaf, UnlinkatFlags::NoRemoveDir)
    }
    .map_err(Error::sys(format!("cannot remove what {shown:?} hides")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whiteout_names() {
        assert!(is_whiteout(Path::new("a/.wh.b")));
        assert!(is_whiteout(Path::new(".wh..wh..opq")));
        assert!(!is_whiteout(Path::new("a/b.wh.c")));
        assert!(!is_whiteout(Path::new(".whx")));
    }

    fn tree() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("layer/etc/sub")).unwrap();
        std::fs::write(t.path().join("layer/etc/sub/f"), "x").unwrap();
        std::fs::write(t.path().join("layer/etc/passwd"), "x").unwrap();
        std::fs::write(t.path().join("layer/keep"), "x").unwrap();
        std::fs::write(t.path().join("outside"), "x").unwrap();
        std::os::unix::fs::symlink("/etc", t.path().join("layer/abs")).unwrap();
        std::os::unix::fs::symlink("..", t.path().join("layer/up")).unwrap();
        t
    }

    fn run(t: &tempfile::TempDir, rel: &str, state: &LayerState) -> Result<()> {
        let root = std::fs::File::open(t.path().join("layer")).unwrap();
        apply(root.as_fd(), Path::new(rel), state, rel)
    }

    #[test]
    fn whiteouts_delete_files_and_trees_inside_the_layer() {
        let t = tree();
        let s = LayerState::default();
        run(&t, "etc/.wh.passwd", &s).unwrap();
        assert!(!t.path().join("layer/etc/passwd").exists());
        run(&t, ".wh.etc", &s).unwrap();
        assert!(!t.path().join("layer/etc").exists());
        // Nothing there: nothing to do.
        run(&t, "nope/.wh.x", &s).unwrap();
        run(&t, ".wh.nope", &s).unwrap();
        // A whiteout of a symlink removes the link, not its target.
        run(&t, ".wh.up", &s).unwrap();
        assert!(t.path().join("outside").exists());
        assert!(t.path().join("layer/keep").exists());
    }

    #[test]
    fn opaque_keeps_this_layers_entries() {
        let t = tree();
        std::fs::write(t.path().join("layer/etc/new"), "x").unwrap();
        let mut s = LayerState::default();
        s.created.insert(PathBuf::from("etc/new"));
        run(&t, "etc/.wh..wh..opq", &s).unwrap();
        let left: Vec<_> = std::fs::read_dir(t.path().join("layer/etc"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["new"]);
        // An entry of this layer is never whited out.
        run(&t, "etc/.wh.new", &s).unwrap();
        assert!(t.path().join("layer/etc/new").exists());
    }

    #[test]
    fn hostile_whiteouts_are_refused() {
        let t = tree();
        let s = LayerState::default();
        for rel in [".wh.", ".wh..", ".wh...", "etc/.wh..wh.x", "a/.wh..wh."] {
            assert!(matches!(run(&t, rel, &s), Err(Error::Unsafe(_))), "{rel}");
        }
        // Through a symlinked parent, absolute or relative: refused, nothing removed.
        for rel in [
            "abs/.wh.passwd",
            "up/.wh.outside",
            "up/layer/.wh.keep",
            "abs/.wh..wh..opq",
        ] {
            assert!(matches!(run(&t, rel, &s), Err(Error::Unsafe(_))), "{rel}");
        }
        assert!(t.path().join("outside").exists());
        assert!(t.path().join("layer/keep").exists());
        assert!(Path::new("/etc/passwd").exists());
    }
}
