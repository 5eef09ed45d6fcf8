//! Walk a tree through descriptors and write it as a tar.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{openat, readlinkat, AtFlags, OFlag};
use nix::sys::stat::{fstat, fstatat, FileStat, Mode, SFlag};
use nix::unistd::{lseek, Whence};
use tar::{EntryType, GnuExtSparseHeader, Header};
use tupper_config::subid::IdMapping;

use super::xattr;
use crate::capabilities::{with_caps, STORE};
use crate::error::{Error, Result};

/// The id a file owned by a host id outside the container's range shows
/// inside it (the kernel's overflow id), and so in the tarball.
const OVERFLOW_ID: u32 = 65534;

/// What the walk left out, and how much it wrote.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub entries: u64,
    pub sockets_skipped: u64,
    pub devices_skipped: u64,
}

pub struct TarWriter<W: Write> {
    tar: tar::Builder<W>,
    mapping: Option<IdMapping>,
    /// First name written for each (device, inode) with more than one link.
    links: HashMap<(u64, u64), Vec<u8>>,
    counts: Counts,
    /// Raise [`STORE`] around each open (false only in unit tests, which
    /// walk trees of their own).
    privileged: bool,
}

fn kind(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits())
}

fn tar_err(e: io::Error) -> Error {
    Error::io("cannot write the tarball")(e)
}

const READ_FLAGS: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_NONBLOCK)
    .union(OFlag::O_NOCTTY)
    .union(OFlag::O_CLOEXEC);

impl<W: Write> TarWriter<W> {
    pub fn new(out: W, mapping: Option<IdMapping>) -> Self {
        let mut tar = tar::Builder::new(out);
        tar.follow_symlinks(false);
        TarWriter {
            tar,
            mapping,
            links: HashMap::new(),
            counts: Counts::default(),
            privileged: true,
        }
    }

    #[cfg(test)]
    fn unprivileged(out: W, mapping: Option<IdMapping>) -> Self {
        TarWriter {
            privileged: false,
            ..TarWriter::new(out, mapping)
        }
    }

    fn raise<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        if self.privileged {
            with_caps(STORE, f)
        } else {
            f()
        }
    }

    /// `f` as [`Self::raise`] does it, for the entry at `path`: `None` when
    /// the entry is gone (ENOENT), any other failure named "`what` `path`".
    fn raise_at<T>(
        &self,
        what: &str,
        path: &[u8],
        f: impl FnOnce() -> nix::Result<T>,
    ) -> Result<Option<T>> {
        match self.raise(|| f().map_err(Error::sys(""))) {
            Ok(v) => Ok(Some(v)),
            Err(Error::Sys {
                errno: Errno::ENOENT,
                ..
            }) => Ok(None),
            Err(Error::Sys { errno, .. }) => {
                Err(Error::sys(format!("{what} {:?}", shown(path)))(errno))
            }
            Err(e) => Err(e),
        }
    }

    fn reopen_dir(&self, fd: &OwnedFd, name: &str) -> Result<OwnedFd> {
        self.raise(|| {
            openat(fd, name, crate::fsutil::DIR_FLAGS, Mode::empty())
                .map_err(Error::sys("cannot open a directory"))
        })
    }

    /// The whole tree below directory `root`, itself named `name` (`./`).
    pub fn add_tree(&mut self, root: &OwnedFd, name: &[u8]) -> Result<()> {
        let dir = self.reopen_dir(root, ".")?;
        self.walk(dir, name.to_vec())
    }

    /// One resolved path (`O_PATH` descriptor `fd`) and, for a directory,
    /// everything below it, named `name`.
    pub fn add_top(
        &mut self,
        _root: &OwnedFd,
        fd: OwnedFd,
        name: &[u8],
        shown: &str,
    ) -> Result<()> {
        let st = fstat(&fd).map_err(Error::sys(format!("cannot inspect {shown:?}")))?;
        match kind(&st) {
            SFlag::S_IFDIR => {
                let dir = self.reopen_dir(&fd, ".")?;
                let mut n = name.to_vec();
                n.push(b'/');
                self.walk(dir, n)
            }
            SFlag::S_IFREG => {
                // Reopen for reading through the descriptor's own inode.
                let proc_path = format!("/proc/self/fd/{}", fd.as_raw_fd());
                let file = self.raise(|| {
                    nix::fcntl::open(
                        proc_path.as_str(),
                        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
                        Mode::empty(),
                    )
                    .map_err(Error::sys(format!("cannot read {shown:?}")))
                })?;
                let again =
                    fstat(&file).map_err(Error::sys(format!("cannot inspect {shown:?}")))?;
                if (again.st_dev, again.st_ino) != (st.st_dev, st.st_ino) {
                    return Err(Error::Unsafe(format!(
                        "{shown:?} changed while it was opened"
                    )));
                }
                self.file(File::from(file), &again, name)
            }
            _ => {
                let (dir, leaf) = (fd, "");
                self.special(&dir, leaf.as_ref(), &st, name, true)
            }
        }
    }

    /// Finish the archive (two zero blocks).
    pub fn finish(mut self) -> Result<Counts> {
        self.tar.finish().map_err(tar_err)?;
        Ok(self.counts)
    }

    fn ids(&self, st: &FileStat) -> (u64, u64) {
        match self.mapping {
            None => (st.st_uid as u64, st.st_gid as u64),
            Some(m) => (
                m.container_uid(st.st_uid).unwrap_or(OVERFLOW_ID) as u64,
                m.container_gid(st.st_gid).unwrap_or(OVERFLOW_ID) as u64,
            ),
        }
    }

    fn header(&self, st: &FileStat, t: EntryType) -> Header {
        let mut h = Header::new_gnu();
        h.set_entry_type(t);
        h.set_mode(st.st_mode & 0o7777);
        let (uid, gid) = self.ids(st);
        h.set_uid(uid);
        h.set_gid(gid);
        h.set_mtime(st.st_mtime.max(0) as u64);
        h.set_size(0);
        h
    }

    fn pax(&mut self, fd: impl AsFd) -> Result<()> {
        let attrs = self.raise(|| xattr::read_all(fd))?;
        if attrs.is_empty() {
            return Ok(());
        }
        let keys: Vec<(String, &[u8])> = attrs
            .iter()
            .map(|(k, v)| (format!("SCHILY.xattr.{k}"), v.as_slice()))
            .collect();
        self.tar
            .append_pax_extensions(keys.iter().map(|(k, v)| (k.as_str(), *v)))
            .map_err(tar_err)
    }

    /// Depth first, with an explicit stack of open directories (a container
    /// can nest directories deeper than any call stack).
    fn walk(&mut self, top: OwnedFd, name: Vec<u8>) -> Result<()> {
        self.dir_entry(&top, &name)?;
        // The root's entries are named without a leading `./`.
        let prefix = if name == b"./" { Vec::new() } else { name };
        let mut stack = vec![(into_iter(top)?, prefix)];
        while let Some((iter, prefix)) = stack.last_mut() {
            let Some(ent) = iter.next() else {
                stack.pop();
                continue;
            };
            let ent = ent.map_err(Error::sys("cannot read a directory"))?;
            let leaf = ent.file_name().to_bytes();
            if leaf == b"." || leaf == b".." {
                continue;
            }
            let mut path = prefix.clone();
            path.extend_from_slice(leaf);
            let leaf = std::ffi::OsStr::from_bytes(leaf).to_os_string();
            let parent = iter.as_raw_fd();
            // SAFETY: the iterator owns the descriptor and outlives this use.
            let parent = unsafe { std::os::fd::BorrowedFd::borrow_raw(parent) };
            // `None`: removed since it was listed (a running container).
            let Some(st) = self.raise_at("cannot inspect", &path, || {
                fstatat(parent, leaf.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
            })?
            else {
                continue;
            };
            match kind(&st) {
                SFlag::S_IFDIR => {
                    let Some(dir) = self.raise_at("cannot open", &path, || {
                        openat(
                            parent,
                            leaf.as_os_str(),
                            crate::fsutil::DIR_FLAGS,
                            Mode::empty(),
                        )
                    })?
                    else {
                        continue;
                    };
                    path.push(b'/');
                    self.dir_entry(&dir, &path)?;
                    stack.push((into_iter(dir)?, path));
                }
                SFlag::S_IFREG => {
                    if st.st_nlink > 1 {
                        if let Some(first) = self.links.get(&(st.st_dev, st.st_ino)).cloned() {
                            let h = self.header(&st, EntryType::Link);
                            let mut h = h;
                            self.tar
                                .append_link(
                                    &mut h,
                                    Path::new(std::ffi::OsStr::from_bytes(&path)),
                                    Path::new(std::ffi::OsStr::from_bytes(&first)),
                                )
                                .map_err(tar_err)?;
                            self.counts.entries += 1;
                            continue;
                        }
                    }
                    let Some(file) = self.raise_at("cannot open", &path, || {
                        openat(parent, leaf.as_os_str(), READ_FLAGS, Mode::empty())
                    })?
                    else {
                        continue;
                    };
                    let st = fstat(&file).map_err(Error::sys("cannot inspect a file"))?;
                    if kind(&st) != SFlag::S_IFREG {
                        return Err(Error::Other {
                            what: format!("cannot export {:?}", shown(&path)),
                            why: "it was replaced while being read".into(),
                        });
                    }
                    self.file(File::from(file), &st, &path)?;
                }
                _ => self.special(&parent, leaf.as_os_str(), &st, &path, false)?,
            }
        }
        Ok(())
    }

    fn dir_entry(&mut self, dir: &OwnedFd, name: &[u8]) -> Result<()> {
        let st = fstat(dir).map_err(Error::sys("cannot inspect a directory"))?;
        self.pax(dir)?;
        let mut h = self.header(&st, EntryType::Directory);
        self.tar
            .append_data(
                &mut h,
                Path::new(std::ffi::OsStr::from_bytes(name)),
                io::empty(),
            )
            .map_err(tar_err)?;
        self.counts.entries += 1;
        Ok(())
    }

    /// Symlinks, fifos (written), sockets and devices (counted, left out).
    /// `at_fd`: `parent` is the `O_PATH` descriptor of the entry itself.
    fn special(
        &mut self,
        parent: &impl AsFd,
        leaf: &std::ffi::OsStr,
        st: &FileStat,
        name: &[u8],
        at_fd: bool,
    ) -> Result<()> {
        let p = Path::new(std::ffi::OsStr::from_bytes(name));
        match kind(st) {
            SFlag::S_IFLNK => {
                let target = self.raise(|| {
                    if at_fd {
                        readlinkat(parent.as_fd(), "")
                    } else {
                        readlinkat(parent.as_fd(), leaf)
                    }
                    .map_err(Error::sys(format!(
                        "cannot read the link {:?}",
                        shown(name)
                    )))
                })?;
                let mut h = self.header(st, EntryType::Symlink);
                self.tar
                    .append_link(&mut h, p, Path::new(&target))
                    .map_err(tar_err)?;
            }
            SFlag::S_IFIFO => {
                let mut h = self.header(st, EntryType::Fifo);
                self.tar
                    .append_data(&mut h, p, io::empty())
                    .map_err(tar_err)?;
            }
            SFlag::S_IFSOCK => {
                self.counts.sockets_skipped += 1;
                return Ok(());
            }
            _ => {
                self.counts.devices_skipped += 1;
                return Ok(());
            }
        }
        self.counts.entries += 1;
        Ok(())
    }

    fn file(&mut self, file: File, st: &FileStat, name: &[u8]) -> Result<()> {
        self.pax(&file)?;
        if st.st_nlink > 1 {
            self.links.insert((st.st_dev, st.st_ino), name.to_vec());
        }
        let size = st.st_size.max(0) as u64;
        let segments = if (st.st_blocks.max(0) as u64) * 512 < size {
            data_segments(&file, size)?
        } else {
            None
        };
        let p = Path::new(std::ffi::OsStr::from_bytes(name));
        match segments {
            None => {
                let mut h = self.header(st, EntryType::Regular);
                h.set_size(size);
                self.tar
                    .append_data(&mut h, p, exactly(&file, size))
                    .map_err(tar_err)?;
            }
            Some(segs) => self.sparse(&file, st, name, size, &segs)?,
        }
        self.counts.entries += 1;
        Ok(())
    }

    /// A GNU sparse entry: only the data segments are stored; the holes come
    /// back as holes (the import writes zeros as holes anyway).
    fn sparse(
        &mut self,
        file: &File,
        st: &FileStat,
        name: &[u8],
        size: u64,
        segs: &[(u64, u64)],
    ) -> Result<()> {
        let mut segs = segs.to_vec();
        if segs.is_empty() {
            segs.push((size, 0));
        }
        let stored: u64 = segs.iter().map(|s| s.1).sum();
        if name.len() >= 100 {
            self.tar
                .append_pax_extensions([("path", name)])
                .map_err(tar_err)?;
        }
        let mut h = self.header(st, EntryType::GNUSparse);
        h.set_size(stored);
        {
            let short = &name[..name.len().min(99)];
            let g = h
                .as_gnu_mut()
                .ok_or_else(|| tar_err(io::Error::other("not a GNU header")))?;
            g.name = [0; 100];
            g.name[..short.len()].copy_from_slice(short);
            g.set_real_size(size);
            for (slot, seg) in g.sparse.iter_mut().zip(segs.iter()) {
                slot.set_offset(seg.0);
                slot.set_length(seg.1);
            }
            g.set_is_extended(segs.len() > g.sparse.len());
        }
        h.set_cksum();
        let out = self.tar.get_mut();
        out.write_all(h.as_bytes()).map_err(tar_err)?;
        let rest: Vec<_> = segs.iter().skip(4).collect();
        let chunks: Vec<_> = rest.chunks(21).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            // SAFETY: GnuExtSparseHeader is plain bytes; all zeros is valid.
            let mut ext: GnuExtSparseHeader = unsafe { std::mem::zeroed() };
            for (slot, seg) in ext.sparse.iter_mut().zip(chunk.iter()) {
                slot.set_offset(seg.0);
                slot.set_length(seg.1);
            }
            ext.set_is_extended(i + 1 < chunks.len());
            out.write_all(ext.as_bytes()).map_err(tar_err)?;
        }
        for &(off, len) in &segs {
            io::copy(&mut exactly_at(file, off, len), out).map_err(tar_err)?;
        }
        let pad = (512 - stored % 512) % 512;
        out.write_all(&vec![0u8; pad as usize]).map_err(tar_err)?;
        Ok(())
    }
}

/// Exactly `len` bytes of `file` from its current position: a file that
/// shrinks meanwhile (a running container) is padded with zeros, one that
/// grows is cut, so the entry always matches its header.
fn exactly(file: &File, len: u64) -> impl Read + '_ {
    file.take(len).chain(io::repeat(0)).take(len)
}

fn exactly_at(file: &File, off: u64, len: u64) -> impl Read + '_ {
    struct At<'f> {
        file: &'f File,
        off: u64,
    }
    impl Read for At<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = std::os::unix::fs::FileExt::read_at(self.file, buf, self.off)?;
            self.off += n as u64;
            Ok(n)
        }
    }
    At { file, off }.take(len).chain(io::repeat(0)).take(len)
}

/// The data segments (offset, length) of a file with holes, from
/// `SEEK_DATA`/`SEEK_HOLE`; `None` when it has no hole after all (or the
/// filesystem cannot say).
fn data_segments(file: &File, size: u64) -> Result<Option<Vec<(u64, u64)>>> {
    let mut segs = Vec::new();
    let mut pos: u64 = 0;
    while pos < size {
        let start = match lseek(file, pos as i64, Whence::SeekData) {
            Ok(s) => s as u64,
            Err(Errno::ENXIO) => break,
            Err(Errno::EINVAL) => return Ok(None),
            Err(e) => return Err(Error::sys("cannot find the data of a file")(e)),
        };
        if start >= size {
            break;
        }
        let end = match lseek(file, start as i64, Whence::SeekHole) {
            Ok(e) => (e as u64).min(size),
            Err(e) => return Err(Error::sys("cannot find the holes of a file")(e)),
        };
        segs.push((start, end - start));
        pos = end;
    }
    if segs.len() == 1 && segs[0] == (0, size) {
        return Ok(None);
    }
    // The final hole is recorded as an empty segment at the end, so the
    // reader knows the full size (GNU tar does the same).
    if segs.last().is_none_or(|s| s.0 + s.1 < size) {
        segs.push((size, 0));
    }
    Ok(Some(segs))
}

fn into_iter(dir: OwnedFd) -> Result<nix::dir::OwningIter> {
    Ok(nix::dir::Dir::from_fd(dir)
        .map_err(Error::sys("cannot read a directory"))?
        .into_iter())
}

fn shown(name: &[u8]) -> String {
    String::from_utf8_lossy(name).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, MetadataExt};

    fn walk_to_vec(dir: &Path) -> (Vec<u8>, Counts) {
        let fd: OwnedFd = File::open(dir).unwrap().into();
        let mut out = Vec::new();
        let mut w = TarWriter::unprivileged(&mut out, None);
        w.add_tree(&fd, b"./").unwrap();
        let c = w.finish().unwrap();
        (out, c)
    }

    #[test]
    fn a_tree_round_trips_through_the_tar_reader() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        std::fs::create_dir(p.join("sub")).unwrap();
        std::fs::write(p.join("sub/file"), b"hello").unwrap();
        std::fs::hard_link(p.join("sub/file"), p.join("hard")).unwrap();
        symlink("/etc/shadow", p.join("abs")).unwrap();
        nix::unistd::mkfifo(&p.join("fifo"), Mode::from_bits_truncate(0o640)).unwrap();
        let _sock = std::os::unix::net::UnixListener::bind(p.join("sock")).unwrap();
        let long = "x".repeat(150);
        std::fs::write(p.join(&long), b"long").unwrap();
        // A file with a hole of 8 MiB and one block of data at its end.
        let f = File::create(p.join("sparse")).unwrap();
        f.set_len(8 << 20).unwrap();
        std::os::unix::fs::FileExt::write_at(&f, b"end", (8 << 20) - 3).unwrap();
        drop(f);

        let (tar, counts) = walk_to_vec(p);
        assert_eq!(counts.sockets_skipped, 1);
        assert!(
            tar.len() < 1 << 20,
            "a sparse file was inflated: {}",
            tar.len()
        );
        let mut a = tar::Archive::new(tar.as_slice());
        let mut seen = HashMap::new();
        for e in a.entries().unwrap() {
            let mut e = e.unwrap();
            let name = String::from_utf8(e.path_bytes().into_owned()).unwrap();
            let t = e.header().entry_type();
            let link = e
                .link_name_bytes()
                .map(|l| String::from_utf8(l.into_owned()).unwrap());
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            seen.insert(name, (t, link, data));
        }
        assert_eq!(seen["./"].0, EntryType::Directory);
        assert_eq!(seen["sub/"].0, EntryType::Directory);
        let (t1, _, d1) = &seen["sub/file"];
        let (t2, l2, _) = &seen["hard"];
        // One of the two names carries the data, the other links to it.
        assert!(
            (*t1 == EntryType::Regular
                && d1 == b"hello"
                && *t2 == EntryType::Link
                && l2.as_deref() == Some("sub/file"))
                || (seen["hard"].2 == b"hello" && seen["sub/file"].0 == EntryType::Link)
        );
        assert_eq!(seen["abs"].1.as_deref(), Some("/etc/shadow"));
        assert_eq!(seen["fifo"].0, EntryType::Fifo);
        assert!(!seen.contains_key("sock"));
        assert_eq!(seen[&long.clone()].2, b"long");
        let (t, _, data) = &seen["sparse"];
        assert_eq!(*t, EntryType::GNUSparse);
        assert_eq!(data.len(), 8 << 20);
        assert_eq!(&data[data.len() - 3..], b"end");
        assert!(data[..data.len() - 3].iter().all(|b| *b == 0));
    }

    #[test]
    fn ids_are_shifted_back_and_modes_kept() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("f"), b"x").unwrap();
        std::fs::set_permissions(
            d.path().join("f"),
            std::os::unix::fs::PermissionsExt::from_mode(0o4751),
        )
        .unwrap();
        let md = std::fs::metadata(d.path().join("f")).unwrap();
        let mapping = IdMapping {
            caller_uid: md.uid(),
            caller_gid: md.gid(),
            uid_base: 100000,
            gid_base: 100000,
        };
        let fd: OwnedFd = File::open(d.path()).unwrap().into();
        let mut out = Vec::new();
        let mut w = TarWriter::unprivileged(&mut out, Some(mapping));
        w.add_tree(&fd, b"./").unwrap();
        w.finish().unwrap();
        let mut a = tar::Archive::new(out.as_slice());
        let e = a
            .entries()
            .unwrap()
            .map(|e| e.unwrap())
            .find(|e| e.path_bytes().as_ref() == b"f")
            .unwrap();
        assert_eq!(e.header().uid().unwrap(), 0);
        assert_eq!(e.header().gid().unwrap(), 0);
        assert_eq!(e.header().mode().unwrap() & 0o7777, 0o4751);
        assert_eq!(e.header().mtime().unwrap(), md.mtime() as u64);
    }
}
