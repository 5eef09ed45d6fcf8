//! Extended attributes of an exported file, as PAX `SCHILY.xattr.*` records.

use std::os::fd::{AsFd, AsRawFd};

use crate::error::{Error, Result};

/// `VFS_CAP_REVISION_2`: capabilities without a root id.
const CAP_REVISION_2: u32 = 0x0200_0000;
/// `VFS_CAP_REVISION_3`: capabilities with the root id of their namespace.
const CAP_REVISION_3: u32 = 0x0300_0000;
const CAP_REVISION_MASK: u32 = 0xff00_0000;
const CAP_V2_LEN: usize = 20;
const CAP_V3_LEN: usize = 24;

/// All extended attributes of an open file (name, value), names sorted, with
/// `security.capability` written as revision 2 (see [`capability_v2`]).
pub fn read_all(fd: impl AsFd) -> Result<Vec<(String, Vec<u8>)>> {
    let raw = fd.as_fd().as_raw_fd();
    let names = list(raw)?;
    let mut out = Vec::new();
    for name in names {
        let Some(value) = get(raw, &name)? else {
            continue; // removed meanwhile (a running container)
        };
        let Ok(key) = String::from_utf8(name.as_bytes().to_vec()) else {
            return Err(Error::Unsafe(format!(
                "an extended attribute name is not UTF-8 ({:?}); a tarball cannot carry it",
                String::from_utf8_lossy(name.as_bytes())
            )));
        };
        let value = if key == "security.capability" {
            capability_v2(&value)
        } else {
            value
        };
        out.push((key, value));
    }
    out.sort();
    Ok(out)
}

/// A file capability as the image formats carry it: revision 2, which the
/// importing side rewrites for its own user namespace. The kernel hands a
/// reader in the initial namespace the stored revision 3 with the root id
/// of the container's namespace (a host id); that id means nothing in the
/// tarball and is dropped.
pub fn capability_v2(value: &[u8]) -> Vec<u8> {
    if value.len() == CAP_V3_LEN {
        let magic = u32::from_le_bytes([value[0], value[1], value[2], value[3]]);
        if magic & CAP_REVISION_MASK == CAP_REVISION_3 {
            let mut v = value[..CAP_V2_LEN].to_vec();
            let m = (magic & !CAP_REVISION_MASK) | CAP_REVISION_2;
            v[..4].copy_from_slice(&m.to_le_bytes());
            return v;
        }
    }
    value.to_vec()
}

fn list(fd: i32) -> Result<Vec<std::ffi::CString>> {
    let mut buf = vec![0u8; 1024];
    loop {
        // SAFETY: buf is valid for buf.len() bytes.
        let n = unsafe { libc::flistxattr(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            buf.truncate(n as usize);
            break;
        }
        match nix::errno::Errno::last() {
            nix::errno::Errno::ERANGE if buf.len() < 1 << 20 => buf.resize(buf.len() * 4, 0),
            nix::errno::Errno::ENOTSUP => return Ok(Vec::new()),
            e => return Err(Error::sys("cannot list extended attributes")(e)),
        }
    }
    Ok(buf
        .split(|b| *b == 0)
        .filter(|n| !n.is_empty())
        .filter_map(|n| std::ffi::CString::new(n).ok())
        .collect())
}

fn get(fd: i32, name: &std::ffi::CStr) -> Result<Option<Vec<u8>>> {
    let mut buf = vec![0u8; 256];
    loop {
        // SAFETY: name is NUL-terminated, buf valid for buf.len() bytes.
        let n = unsafe { libc::fgetxattr(fd, name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            buf.truncate(n as usize);
            return Ok(Some(buf));
        }
        match nix::errno::Errno::last() {
            nix::errno::Errno::ERANGE if buf.len() < 1 << 20 => buf.resize(buf.len() * 4, 0),
            nix::errno::Errno::ENODATA => return Ok(None),
            e => return Err(Error::sys("cannot read an extended attribute")(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revision_3_becomes_2_without_the_root_id() {
        // cap_net_raw=ep, root id 1000
        let mut v3 = Vec::new();
        v3.extend((CAP_REVISION_3 | 1).to_le_bytes());
        v3.extend((1u32 << 13).to_le_bytes());
        v3.extend(0u32.to_le_bytes());
        v3.extend(0u32.to_le_bytes());
        v3.extend(0u32.to_le_bytes());
        v3.extend(1000u32.to_le_bytes());
        let v2 = capability_v2(&v3);
        assert_eq!(v2.len(), CAP_V2_LEN);
        assert_eq!(&v2[..4], &(CAP_REVISION_2 | 1).to_le_bytes());
        assert_eq!(&v2[4..], &v3[4..20]);
        // Revision 2 and anything unexpected are kept as they are.
        assert_eq!(capability_v2(&v2), v2);
        assert_eq!(capability_v2(b"junk"), b"junk");
    }

    #[test]
    fn a_plain_file_has_no_attributes_or_its_own() {
        let f = tempfile_in_tmp();
        let got = read_all(&f).unwrap();
        assert!(got.iter().all(|(k, _)| !k.is_empty()));
    }

    fn tempfile_in_tmp() -> std::fs::File {
        let path = std::env::temp_dir().join(format!("tw-xattr-{}", std::process::id()));
        let f = std::fs::File::create(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        f
    }
}
