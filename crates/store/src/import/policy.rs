//! What a tarball entry may be: its path normalised inside the image, and its
//! type checked against what images may contain.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use tar::EntryType;

use crate::error::Error;

/// How an entry is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Directory,
    File,
    Symlink,
    Hardlink,
    Fifo,
    /// Metadata-only records (PAX global headers) that create nothing.
    Skip,
    /// A character or block device: never created (a container gets its own
    /// minimal `/dev` from the runtime), only counted, so that root
    /// filesystems made by `mmdebstrap`, `debootstrap` + `tar` or
    /// `docker export` import as built.
    Device,
}

/// The entry's name as the tarball spells it, for messages.
pub fn shown(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw).into_owned()
}

/// Normalise an entry path to a relative path inside the image: leading `/`
/// and `./` and empty or `.` components are dropped; any `..` component is
/// refused. The empty path is the image root itself.
pub fn normalise(raw: &[u8]) -> Result<PathBuf, Error> {
    let mut out = PathBuf::new();
    for comp in raw.split(|b| *b == b'/') {
        match comp {
            b"" | b"." => continue,
            b".." => {
                return Err(Error::Unsafe(format!(
                    "tarball entry {:?}: path leaves the image",
                    shown(raw)
                )))
            }
            c => out.push(OsStr::from_bytes(c)),
        }
    }
    Ok(out)
}

/// The creation kind of an entry type, or why it is refused.
pub fn kind(raw_path: &[u8], t: EntryType) -> Result<Kind, Error> {
    Ok(match t {
        EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => Kind::File,
        EntryType::Directory => Kind::Directory,
        EntryType::Symlink => Kind::Symlink,
        EntryType::Link => Kind::Hardlink,
        EntryType::Fifo => Kind::Fifo,
        EntryType::XGlobalHeader => Kind::Skip,
        EntryType::Char | EntryType::Block => Kind::Device,
        other => {
            return Err(Error::Unsafe(format!(
                "tarball entry {:?} has an unsupported type ({:?})",
                shown(raw_path),
                other
            )))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn paths_are_made_relative() {
        assert_eq!(normalise(b"./etc/passwd").unwrap(), Path::new("etc/passwd"));
        assert_eq!(normalise(b"/etc//passwd").unwrap(), Path::new("etc/passwd"));
        assert_eq!(normalise(b"etc/./x/").unwrap(), Path::new("etc/x"));
        assert_eq!(normalise(b"./").unwrap(), Path::new(""));
        assert_eq!(normalise(b"").unwrap(), Path::new(""));
        assert_eq!(normalise(b"a/...b").unwrap(), Path::new("a/...b"));
    }

    #[test]
    fn dotdot_anywhere_is_unsafe() {
        for bad in [&b"../x"[..], b"../../etc/x", b"a/../../b", b"a/..", b"/.."] {
            let e = normalise(bad).unwrap_err();
            assert!(matches!(e, Error::Unsafe(_)), "{bad:?}");
        }
        let e = normalise(b"../../etc/x").unwrap_err();
        assert_eq!(
            e.to_string(),
            "tarball entry \"../../etc/x\": path leaves the image"
        );
    }

    #[test]
    fn type_policy() {
        assert_eq!(kind(b"a", EntryType::Regular).unwrap(), Kind::File);
        assert_eq!(kind(b"a", EntryType::GNUSparse).unwrap(), Kind::File);
        assert_eq!(kind(b"a", EntryType::Directory).unwrap(), Kind::Directory);
        assert_eq!(kind(b"a", EntryType::Symlink).unwrap(), Kind::Symlink);
        assert_eq!(kind(b"a", EntryType::Link).unwrap(), Kind::Hardlink);
        assert_eq!(kind(b"a", EntryType::Fifo).unwrap(), Kind::Fifo);
        assert_eq!(kind(b"dev/sda", EntryType::Block).unwrap(), Kind::Device);
        assert_eq!(kind(b"dev/null", EntryType::Char).unwrap(), Kind::Device);
        assert!(kind(b"x", EntryType::new(b'Z')).is_err());
    }
}
