//! Where an image's files come from: an OCI layout directory, or a tar
//! (OCI archive, Docker archive) read in place through an index of its
//! entries, so nothing is unpacked on the way.

use std::collections::HashMap;
use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Most entries of an image archive we index.
const MAX_ENTRIES: usize = 1 << 20;

pub enum Source {
    Dir(File),
    Tar {
        path: PathBuf,
        /// entry name → (offset of its data, size)
        files: HashMap<String, (u64, u64)>,
        /// entry name → symlink target (normalised)
        links: HashMap<String, String>,
    },
}

/// `a/./b/` → `a/b`; `None` for `..`, absolute or empty paths.
pub fn clean(p: &str) -> Option<String> {
    let mut out: Vec<&str> = Vec::new();
    for c in Path::new(p).components() {
        match c {
            Component::Normal(s) => out.push(s.to_str()?),
            Component::CurDir => {}
            _ => return None,
        }
    }
    (!out.is_empty()).then(|| out.join("/"))
}

impl Source {
    pub fn dir(path: &Path) -> Result<Source> {
        let f = File::open(path)
            .map_err(|e| Error::io(format!("cannot open {}", path.display()), e))?;
        Ok(Source::Dir(f))
    }

    /// Index a tar's entries (headers only; the data is skipped).
    pub fn tar(path: &Path) -> Result<Source> {
        let bad = |e: std::io::Error| Error::io(format!("cannot read {}", path.display()), e);
        let f = File::open(path).map_err(bad)?;
        let mut archive = tar::Archive::new(f);
        let mut files = HashMap::new();
        let mut links = HashMap::new();
        for (n, entry) in archive.entries().map_err(bad)?.enumerate() {
            if n >= MAX_ENTRIES {
                return Err(Error::user(format!("{}: too many entries", path.display())));
            }
            let entry = entry.map_err(bad)?;
            let Some(name) = entry.path().ok().and_then(|p| p.to_str().and_then(clean)) else {
                continue;
            };
            match entry.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    files.insert(name, (entry.raw_file_position(), entry.size()));
                }
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    let Some(target) = entry.link_name().ok().flatten() else {
                        continue;
                    };
                    let target = target.to_string_lossy().into_owned();
                    let resolved = if entry.header().entry_type() == tar::EntryType::Link {
                        clean(&target)
                    } else {
                        let base = Path::new(&name).parent().unwrap_or(Path::new(""));
                        resolve_relative(base, &target)
                    };
                    if let Some(t) = resolved {
                        links.insert(name, t);
                    }
                }
                _ => {}
            }
        }
        Ok(Source::Tar {
            path: path.to_path_buf(),
            files,
            links,
        })
    }

    pub fn has(&self, rel: &str) -> bool {
        self.open(rel).is_ok()
    }

    /// Open a file of the image by its relative path: its reader and size.
    pub fn open(&self, rel: &str) -> Result<(Box<dyn Read>, u64)> {
        let missing = || Error::user(format!("the image has no {rel:?}"));
        let rel = clean(rel).ok_or_else(missing)?;
        match self {
            Source::Dir(dir) => {
                use std::os::fd::AsRawFd;
                let c = CString::new(rel.as_bytes()).map_err(|_| missing())?;
                let fd = tupper_sys::openat2(
                    dir.as_raw_fd(),
                    &c,
                    libc::O_RDONLY,
                    libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS,
                )
                .map_err(|_| missing())?;
                let f = File::from(fd);
                let meta = f
                    .metadata()
                    .map_err(|e| Error::io(format!("cannot read {rel}"), e))?;
                if !meta.is_file() {
                    return Err(missing());
                }
                Ok((Box::new(f), meta.len()))
            }
            Source::Tar { path, files, links } => {
                let mut name = rel.clone();
                for _ in 0..8 {
                    match links.get(&name) {
                        Some(t) => name = t.clone(),
                        None => break,
                    }
                }
                let (off, size) = *files.get(&name).ok_or_else(missing)?;
                let mut f = File::open(path)
                    .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
                f.seek(SeekFrom::Start(off))
                    .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
                Ok((Box::new(f.take(size)), size))
            }
        }
    }

    /// A whole small file, at most `max` bytes.
    pub fn read_small(&self, rel: &str, max: u64) -> Result<Vec<u8>> {
        let (r, size) = self.open(rel)?;
        if size > max {
            return Err(Error::user(format!(
                "{rel:?} in the image is {size} bytes, more than the {max} allowed"
            )));
        }
        let mut out = Vec::with_capacity(size as usize);
        r.take(max)
            .read_to_end(&mut out)
            .map_err(|e| Error::io(format!("cannot read {rel:?} of the image"), e))?;
        Ok(out)
    }

    /// A blob by digest, verified, at most `max` bytes.
    pub fn blob(&self, digest: &str, max: u64) -> Result<Vec<u8>> {
        let bytes = self.read_small(&blob_path(digest)?, max)?;
        verify(&bytes, digest)?;
        Ok(bytes)
    }
}

fn resolve_relative(base: &Path, target: &str) -> Option<String> {
    if target.starts_with('/') {
        return clean(target);
    }
    let mut parts: Vec<String> = base
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect();
    for c in Path::new(target).components() {
        match c {
            Component::Normal(s) => parts.push(s.to_string_lossy().into_owned()),
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::CurDir => {}
            _ => return None,
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

pub fn blob_path(digest: &str) -> Result<String> {
    proto::reference::digest(digest)?;
    Ok(format!("blobs/sha256/{}", &digest["sha256:".len()..]))
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Refuse bytes that do not hash to `digest`.
pub fn verify(bytes: &[u8], digest: &str) -> Result<()> {
    let got = format!("sha256:{}", sha256_hex(bytes));
    if got != digest {
        return Err(Error::user(format!(
            "a blob of the image does not match its digest {digest} (it is {got}): the image is corrupt; nothing was imported"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleaning_and_links() {
        assert_eq!(clean("./a/b/").as_deref(), Some("a/b"));
        assert_eq!(clean("../a"), None);
        assert_eq!(clean("/a"), None);
        assert_eq!(
            resolve_relative(Path::new("abc"), "../def/layer.tar").as_deref(),
            Some("def/layer.tar")
        );
        assert_eq!(resolve_relative(Path::new(""), "../x"), None);
    }
}
