//! Tars the supervisor sends into a container (`cp` in): a host path read
//! as the caller, or a tar from standard input renamed under the
//! destination. Entries are named relative to the container root; every
//! file belongs to container root (the caller), modes are kept.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read, Seek, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use tar::{EntryType, Header};

use super::extract::components;
use crate::error::{Error, Result};

fn header(md: &fs::Metadata, t: EntryType) -> Header {
    let mut h = Header::new_gnu();
    h.set_entry_type(t);
    h.set_mode(md.mode() & 0o7777);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(md.mtime().max(0) as u64);
    h.set_size(0);
    h
}

/// Write `src` (a host path, read as the caller, symlinks inside it copied
/// as symlinks) as `name` and below. Sockets and devices are left out and
/// counted.
pub fn append_host_tree<W: Write>(b: &mut tar::Builder<W>, src: &Path, name: &Path) -> Result<u64> {
    let mut skipped = 0;
    let mut links: HashMap<(u64, u64), PathBuf> = HashMap::new();
    let mut stack = vec![(src.to_path_buf(), name.to_path_buf())];
    let err = |p: &Path| {
        let p = p.display().to_string();
        move |e: io::Error| Error::io(format!("cannot copy {p}"), e)
    };
    while let Some((path, name)) = stack.pop() {
        let md = fs::symlink_metadata(&path).map_err(err(&path))?;
        let ft = md.file_type();
        if ft.is_dir() {
            // An empty name is the container's `/` (`cp DIR/. CTR:/`): it
            // exists; only its contents are sent.
            if !name.as_os_str().is_empty() {
                let mut h = header(&md, EntryType::Directory);
                b.append_data(&mut h, &name, io::empty())
                    .map_err(err(&path))?;
            }
            let mut children: Vec<_> = fs::read_dir(&path)
                .map_err(err(&path))?
                .map(|e| e.map(|e| e.file_name()))
                .collect::<io::Result<_>>()
                .map_err(err(&path))?;
            children.sort();
            for c in children.into_iter().rev() {
                stack.push((path.join(&c), name.join(&c)));
            }
        } else if ft.is_file() {
            if md.nlink() > 1 {
                if let Some(first) = links.get(&(md.dev(), md.ino())) {
                    let mut h = header(&md, EntryType::Link);
                    b.append_link(&mut h, &name, first).map_err(err(&path))?;
                    continue;
                }
                links.insert((md.dev(), md.ino()), name.clone());
            }
            let f = File::open(&path).map_err(err(&path))?;
            let mut h = header(&md, EntryType::Regular);
            h.set_size(md.len());
            let data = (&f).take(md.len()).chain(io::repeat(0)).take(md.len());
            b.append_data(&mut h, &name, data).map_err(err(&path))?;
        } else if ft.is_symlink() {
            let target = fs::read_link(&path).map_err(err(&path))?;
            let mut h = header(&md, EntryType::Symlink);
            b.append_link(&mut h, &name, &target).map_err(err(&path))?;
        } else if ft.is_fifo() {
            let mut h = header(&md, EntryType::Fifo);
            b.append_data(&mut h, &name, io::empty())
                .map_err(err(&path))?;
        } else {
            skipped += 1;
        }
    }
    Ok(skipped)
}

/// Read a tar (standard input) into an unnamed temporary file and check
/// every name before anything is sent: a `..` or an absolute hardlink
/// target refuses the whole tar, so nothing of it is written.
pub fn spool_and_check(mut input: impl Read) -> Result<File> {
    let dir = std::env::temp_dir();
    let mut f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags_tmpfile()
        .open(&dir)
        .map_err(|e| {
            Error::io(
                format!("cannot make a temporary file in {}", dir.display()),
                e,
            )
        })?;
    io::copy(&mut input, &mut f)
        .map_err(|e| Error::io("cannot read the tar from standard input", e))?;
    f.rewind()
        .map_err(|e| Error::io("cannot read the spooled tar", e))?;
    {
        let mut a = tar::Archive::new(&f);
        let entries = a
            .entries()
            .map_err(|e| Error::user(format!("cannot read the tar: {e}")))?;
        for e in entries {
            let e = e.map_err(|e| Error::user(format!("cannot read the tar: {e}")))?;
            components(&e.path_bytes())?;
            if e.header().entry_type() == EntryType::Link {
                if let Some(t) = e.link_name_bytes() {
                    components(&t)?;
                }
            }
        }
    }
    f.rewind()
        .map_err(|e| Error::io("cannot read the spooled tar", e))?;
    Ok(f)
}

trait TmpFile {
    fn custom_flags_tmpfile(&mut self) -> &mut Self;
}

impl TmpFile for fs::OpenOptions {
    fn custom_flags_tmpfile(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.custom_flags(libc::O_TMPFILE).mode(0o600)
    }
}

/// Copy a (checked) tar, each name put below `prefix` (a relative path in
/// the container); hardlink targets too. GNU sparse entries are written out
/// in full (the helper makes holes of the zeros again).
pub fn rename_under<W: Write>(
    b: &mut tar::Builder<W>,
    input: impl Read,
    prefix: &Path,
) -> Result<()> {
    let mut a = tar::Archive::new(input);
    let bad = |e: io::Error| Error::user(format!("cannot read the tar: {e}"));
    for e in a.entries().map_err(bad)? {
        let mut e = e.map_err(bad)?;
        let t = e.header().entry_type();
        if matches!(
            t,
            EntryType::XGlobalHeader
                | EntryType::XHeader
                | EntryType::GNULongName
                | EntryType::GNULongLink
        ) {
            continue;
        }
        let name = under(prefix, &e.path_bytes())?;
        if name.as_os_str().is_empty() {
            // The destination directory itself (`./` into `/`): it exists.
            continue;
        }
        let mut h = e.header().clone();
        let w = |e: io::Error| Error::io("cannot send the tar", e);
        match t {
            EntryType::Link => {
                let target = e
                    .link_name_bytes()
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                b.append_link(&mut h, &name, under(prefix, &target)?)
                    .map_err(w)?;
            }
            EntryType::Symlink => {
                let target = e
                    .link_name_bytes()
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                b.append_link(
                    &mut h,
                    &name,
                    Path::new(std::ffi::OsStr::from_bytes(&target)),
                )
                .map_err(w)?;
            }
            _ => {
                if t == EntryType::GNUSparse {
                    h.set_entry_type(EntryType::Regular);
                }
                h.set_size(e.size());
                b.append_data(&mut h, &name, &mut e).map_err(w)?;
            }
        }
    }
    Ok(())
}

fn under(prefix: &Path, raw: &[u8]) -> Result<PathBuf> {
    let mut p = prefix.to_path_buf();
    for c in components(raw)? {
        p.push(std::ffi::OsStr::from_bytes(c));
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_tree_is_named_under_the_destination_and_owned_by_root() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir(d.path().join("src")).unwrap();
        fs::write(d.path().join("src/f"), b"data").unwrap();
        std::os::unix::fs::symlink("/etc", d.path().join("src/l")).unwrap();
        let mut b = tar::Builder::new(Vec::new());
        append_host_tree(&mut b, &d.path().join("src"), Path::new("tmp/dst")).unwrap();
        let out = b.into_inner().unwrap();
        let mut a = tar::Archive::new(out.as_slice());
        let names: Vec<(String, u64)> = a
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    String::from_utf8(e.path_bytes().into_owned()).unwrap(),
                    e.header().uid().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            names,
            [
                ("tmp/dst".into(), 0),
                ("tmp/dst/f".into(), 0),
                ("tmp/dst/l".into(), 0)
            ]
        );
    }

    #[test]
    fn a_tar_with_dot_dot_is_refused_before_anything_is_sent() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = Header::new_gnu();
        h.set_size(1);
        h.as_gnu_mut().unwrap().name[..8].copy_from_slice(b"../evil\0");
        h.set_cksum();
        b.append(&h, &b"x"[..]).unwrap();
        let t = b.into_inner().unwrap();
        let e = spool_and_check(t.as_slice()).unwrap_err();
        assert!(e.to_string().contains("leaves the destination"), "{e}");
    }
}
