//! Extract a tar that came out of a container onto the host, as the caller.
//!
//! The container's content is hostile: every entry is created relative to
//! one anchor directory, its parent directory reached with
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`, so no `..`, absolute
//! path or symlink (one the tarball planted just before, or one already
//! there) is ever followed; the entry itself is created with `O_EXCL` /
//! `O_NOFOLLOW` semantics. Files belong to the caller (who creates them);
//! setuid, setgid and sticky bits are dropped; devices and other special
//! entries are left out.

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{fchmod, fstatat, futimens, mkdirat, utimensat, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{linkat, mkfifoat, symlinkat, unlinkat, UnlinkatFlags};
use tar::EntryType;

use crate::error::{Error, Result};

/// Where the copied tree goes: `dir/leaf`, or (`leaf: None`) the contents of
/// the copied directory merged into `dir` itself (`cp CTR:/d/. DEST`).
pub struct Target {
    pub dir: OwnedFd,
    pub leaf: Option<Vec<u8>>,
}

/// Split an entry name into its normal components; `..` is refused.
pub fn components(raw: &[u8]) -> Result<Vec<&[u8]>> {
    let mut out = Vec::new();
    for c in raw.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                return Err(Error::user(format!(
                    "refusing tar entry {:?}: it leaves the destination",
                    String::from_utf8_lossy(raw)
                )))
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

fn unsafe_entry(name: &str, why: &str) -> Error {
    Error::user(format!("refusing tar entry {name:?}: {why}"))
}

/// The name the storage helper gives the copied path in the tar: its last
/// component, `.` for the root or a path ending in `.` or `..` (the same rule
/// as the helper's).
pub fn top_name(p: &str) -> Vec<u8> {
    match p.rsplit('/').find(|c| !c.is_empty()) {
        Some(".") | Some("..") | None => b".".to_vec(),
        Some(c) => c.as_bytes().to_vec(),
    }
}

/// Extracts into a [`Target`]; every entry name starts with `top`, the
/// copied path itself (named by [`top_name`]); anything else is refused.
pub struct HostExtractor {
    target: Target,
    top: Vec<u8>,
    dirs: Vec<(PathBuf, u32, i64)>,
    pub entries: u64,
    pub skipped: u64,
}

impl HostExtractor {
    pub fn new(target: Target, top: Vec<u8>) -> Self {
        HostExtractor {
            target,
            top,
            dirs: Vec::new(),
            entries: 0,
            skipped: 0,
        }
    }

    /// The path below the anchor for an entry name (`None`: the anchor itself).
    fn rel(&self, raw: &[u8]) -> Result<Option<PathBuf>> {
        let comps = components(raw)?;
        let skip = if self.top == b"." {
            0
        } else if comps.first() == Some(&self.top.as_slice()) {
            1
        } else {
            return Err(unsafe_entry(
                &String::from_utf8_lossy(raw),
                "it is not inside the copied path",
            ));
        };
        let mut p = PathBuf::new();
        if let Some(leaf) = &self.target.leaf {
            p.push(OsStr::from_bytes(leaf));
        }
        for c in comps.iter().skip(skip) {
            p.push(OsStr::from_bytes(c));
        }
        Ok(if p.as_os_str().is_empty() {
            None
        } else {
            Some(p)
        })
    }

    /// Open the parent directory of `rel` beneath the anchor, following no
    /// symlink at all.
    fn parent(&self, rel: &Path, name: &str) -> Result<OwnedFd> {
        let parent = rel.parent().unwrap_or(Path::new(""));
        let p = if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        };
        let c = CString::new(p.as_os_str().as_bytes())
            .map_err(|_| unsafe_entry(name, "its name holds a NUL byte"))?;
        tupper_sys::openat2(
            self.target.dir.as_raw_fd(),
            &c,
            libc::O_PATH | libc::O_DIRECTORY,
            libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS,
        )
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) | Some(libc::EXDEV) => {
                unsafe_entry(name, "it would be written through a symlink")
            }
            Some(libc::ENOTDIR) => unsafe_entry(name, "a part of its path is not a directory"),
            _ => Error::io(format!("cannot open the directory of {name:?}"), e),
        })
    }

    pub fn apply<R: Read>(&mut self, entry: &mut tar::Entry<R>) -> Result<()> {
        let raw = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw).into_owned();
        let t = entry.header().entry_type();
        let mode = entry.header().mode().unwrap_or(0o644) & 0o777;
        let mtime = entry.header().mtime().unwrap_or(0).min(i64::MAX as u64) as i64;
        let Some(rel) = self.rel(&raw)? else {
            // The anchor itself (contents merged into an existing directory).
            if t != EntryType::Directory {
                return Err(unsafe_entry(
                    &name,
                    "it would replace the destination directory",
                ));
            }
            self.entries += 1;
            return Ok(());
        };
        let leaf = rel
            .file_name()
            .map(|l| l.to_os_string())
            .ok_or_else(|| unsafe_entry(&name, "it has no name"))?;
        let parent = self.parent(&rel, &name)?;
        let io = |what: &str| {
            let what = format!("cannot {what} {}", rel.display());
            move |e: Errno| Error::io(what, std::io::Error::from(e))
        };
        match t {
            EntryType::Directory => {
                match fstatat(&parent, leaf.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
                    Ok(st) if is(st.st_mode, SFlag::S_IFDIR) => {}
                    Ok(_) => {
                        return Err(unsafe_entry(
                            &name,
                            "something that is not a directory is in its place",
                        ))
                    }
                    Err(Errno::ENOENT) => {
                        mkdirat(&parent, leaf.as_os_str(), Mode::from_bits_truncate(0o700))
                            .map_err(io("create"))?
                    }
                    Err(e) => return Err(io("look up")(e)),
                }
                self.dirs.push((rel.clone(), mode, mtime));
            }
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                clear(&parent, &leaf, &name)?;
                let fd = openat(
                    &parent,
                    leaf.as_os_str(),
                    OFlag::O_WRONLY
                        | OFlag::O_CREAT
                        | OFlag::O_EXCL
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )
                .map_err(io("create"))?;
                let mut file = File::from(fd);
                copy_with_holes(entry, &mut file)
                    .map_err(|e| Error::io(format!("cannot write {}", rel.display()), e))?;
                fchmod(&file, Mode::from_bits_truncate(mode)).map_err(io("set the mode of"))?;
                futimens(&file, &ts(mtime), &ts(mtime)).map_err(io("set the time of"))?;
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| unsafe_entry(&name, "a symlink without a target"))?
                    .into_owned();
                clear(&parent, &leaf, &name)?;
                symlinkat(OsStr::from_bytes(&target), &parent, leaf.as_os_str())
                    .map_err(io("create"))?;
                let _ = utimensat(
                    &parent,
                    leaf.as_os_str(),
                    &ts(mtime),
                    &ts(mtime),
                    UtimensatFlags::NoFollowSymlink,
                );
            }
            EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| unsafe_entry(&name, "a hardlink without a target"))?
                    .into_owned();
                let trel = self
                    .rel(&target)?
                    .ok_or_else(|| unsafe_entry(&name, "a hardlink to the destination itself"))?;
                let tname = String::from_utf8_lossy(&target).into_owned();
                let tparent = self.parent(&trel, &tname)?;
                let tleaf = trel
                    .file_name()
                    .ok_or_else(|| unsafe_entry(&name, "a hardlink without a target"))?;
                match fstatat(&tparent, tleaf, AtFlags::AT_SYMLINK_NOFOLLOW) {
                    Ok(st) if is(st.st_mode, SFlag::S_IFREG) => {}
                    _ => {
                        return Err(unsafe_entry(
                            &name,
                            "its hardlink target is not a file copied before it",
                        ))
                    }
                }
                clear(&parent, &leaf, &name)?;
                linkat(&tparent, tleaf, &parent, leaf.as_os_str(), AtFlags::empty())
                    .map_err(io("create"))?;
            }
            EntryType::Fifo => {
                clear(&parent, &leaf, &name)?;
                mkfifoat(&parent, leaf.as_os_str(), Mode::from_bits_truncate(mode))
                    .map_err(io("create"))?;
            }
            EntryType::XGlobalHeader | EntryType::XHeader => return Ok(()),
            _ => {
                // Devices and anything else: never created on the host.
                self.skipped += 1;
                return Ok(());
            }
        }
        self.entries += 1;
        Ok(())
    }

    /// Directory modes and times last, deepest first (a read-only directory
    /// would refuse its own contents).
    pub fn finish(self) -> Result<()> {
        for (rel, mode, mtime) in self.dirs.iter().rev() {
            let name = rel.display().to_string();
            let parent = self.parent(rel, &name)?;
            let leaf = rel.file_name().unwrap_or_default();
            let dir = openat(
                &parent,
                leaf,
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| Error::io(format!("cannot open {name}"), e.into()))?;
            fchmod(&dir, Mode::from_bits_truncate(*mode))
                .map_err(|e| Error::io(format!("cannot set the mode of {name}"), e.into()))?;
            futimens(&dir, &ts(*mtime), &ts(*mtime))
                .map_err(|e| Error::io(format!("cannot set the time of {name}"), e.into()))?;
        }
        Ok(())
    }
}

fn is(mode: u32, t: SFlag) -> bool {
    SFlag::from_bits_truncate(mode & SFlag::S_IFMT.bits()) == t
}

fn ts(secs: i64) -> TimeSpec {
    TimeSpec::new(secs, 0)
}

/// Remove what is in the way of a new non-directory entry (a file or a
/// symlink, never followed); a directory in the way is an error.
fn clear(parent: impl AsFd, leaf: &OsStr, name: &str) -> Result<()> {
    match fstatat(parent.as_fd(), leaf, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Err(Errno::ENOENT) => Ok(()),
        Ok(st) if is(st.st_mode, SFlag::S_IFDIR) => {
            Err(unsafe_entry(name, "a directory is in its place"))
        }
        Ok(_) => unlinkat(parent, leaf, UnlinkatFlags::NoRemoveDir)
            .map_err(|e| Error::io(format!("cannot replace {name}"), e.into())),
        Err(e) => Err(Error::io(format!("cannot look up {name}"), e.into())),
    }
}

/// Copy, leaving runs of zeros as holes (a sparse file stays sparse).
fn copy_with_holes(r: &mut impl Read, f: &mut File) -> std::io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut len: u64 = 0;
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf[..n].iter().all(|b| *b == 0) {
            f.seek(SeekFrom::Current(n as i64))?;
        } else {
            f.write_all(&buf[..n])?;
        }
        len += n as u64;
    }
    f.set_len(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// (name, type, data, link target, mode)
    type Spec<'a> = (&'a str, EntryType, &'a [u8], Option<&'a str>, u32);

    fn tar_of(entries: &[Spec<'_>]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, t, data, link, mode) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*t);
            h.set_mode(*mode);
            h.set_size(data.len() as u64);
            // Names as a hostile tarball spells them, unchecked.
            let n = name.as_bytes();
            h.as_gnu_mut().unwrap().name[..n.len()].copy_from_slice(n);
            if let Some(l) = link {
                h.as_gnu_mut().unwrap().linkname[..l.len()].copy_from_slice(l.as_bytes());
            }
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn extract(dir: &Path, leaf: Option<&str>, tar: &[u8]) -> Result<()> {
        let fd: OwnedFd = File::open(dir).unwrap().into();
        let top = if leaf.is_some() {
            b"src".to_vec()
        } else {
            b".".to_vec()
        };
        let mut ex = HostExtractor::new(
            Target {
                dir: fd,
                leaf: leaf.map(|l| l.as_bytes().to_vec()),
            },
            top,
        );
        let mut a = tar::Archive::new(tar);
        for e in a.entries().unwrap() {
            ex.apply(&mut e.unwrap())?;
        }
        ex.finish()
    }

    #[test]
    fn a_directory_lands_under_its_new_name_without_setuid() {
        let d = tempfile::tempdir().unwrap();
        let t = tar_of(&[
            ("src/", EntryType::Directory, b"", None, 0o755),
            ("src/a", EntryType::Regular, b"hello", None, 0o4755),
            ("src/l", EntryType::Symlink, b"", Some("/etc/shadow"), 0o777),
            ("src/h", EntryType::Link, b"", Some("src/a"), 0o644),
        ]);
        extract(d.path(), Some("dst"), &t).unwrap();
        assert_eq!(std::fs::read(d.path().join("dst/a")).unwrap(), b"hello");
        let mode = std::fs::metadata(d.path().join("dst/a"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o755);
        assert_eq!(
            std::fs::read_link(d.path().join("dst/l")).unwrap(),
            Path::new("/etc/shadow")
        );
        assert_eq!(std::fs::read(d.path().join("dst/h")).unwrap(), b"hello");
    }

    #[test]
    fn nothing_is_written_through_a_planted_symlink() {
        let d = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let t = tar_of(&[
            ("src/", EntryType::Directory, b"", None, 0o755),
            (
                "src/esc",
                EntryType::Symlink,
                b"",
                Some(outside.path().to_str().unwrap()),
                0o777,
            ),
            ("src/esc/pwned", EntryType::Regular, b"x", None, 0o644),
        ]);
        let e = extract(d.path(), Some("dst"), &t).unwrap_err();
        assert!(e.to_string().contains("through a symlink"), "{e}");
        assert!(!outside.path().join("pwned").exists());
    }

    #[test]
    fn dot_dot_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let t = tar_of(&[("src/../../x", EntryType::Regular, b"x", None, 0o644)]);
        assert!(extract(&d.path().join("."), Some("dst"), &t).is_err());
        let t = tar_of(&[
            ("src/", EntryType::Directory, b"", None, 0o755),
            ("src/h", EntryType::Link, b"", Some("/etc/passwd"), 0o644),
        ]);
        assert!(extract(d.path(), Some("dst"), &t).is_err());
        assert!(!d.path().join("dst/h").exists());
    }

    #[test]
    fn contents_merge_into_an_existing_directory() {
        let d = tempfile::tempdir().unwrap();
        let t = tar_of(&[
            ("./", EntryType::Directory, b"", None, 0o700),
            ("./f", EntryType::Regular, b"1", None, 0o600),
        ]);
        extract(d.path(), None, &t).unwrap();
        assert_eq!(std::fs::read(d.path().join("f")).unwrap(), b"1");
    }
}
