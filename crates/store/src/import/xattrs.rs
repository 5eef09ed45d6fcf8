//! Extended attributes of tarball entries: PAX `SCHILY.xattr.<name>` records
//! (GNU `tar --xattrs`, `mmdebstrap`, `podman export`/`docker export`).
//!
//! What is kept, per entry:
//! - `security.capability` on regular files, rewritten for the importing
//!   user: a v3 capability whose root id is the host uid of container root
//!   (the caller), so it applies in the caller's containers and nowhere
//!   else; a root id from the tarball is never kept. Root importing without
//!   a mapping gets the v2 value (it applies to host root, as in the image).
//! - `user.*` on regular files and directories (the kernel allows them on
//!   nothing else), as they are.
//! - `system.posix_acl_access` (files, directories, fifos) and
//!   `system.posix_acl_default` (directories), with their user and group
//!   entries shifted like ownership (an id outside 0..65535 refuses the
//!   entry).
//!
//! Everything else (`trusted.*`, `security.selinux`, `security.ima`, other
//! namespaces, attributes on symlinks, the `LIBARCHIVE.xattr.*` and
//! `SCHILY.acl.*` spellings) is left out and counted. A hardlink entry
//! shares its target's inode, which got its attributes from its own entry:
//! the hardlink's are checked but never applied (nor counted).
//!
//! Bounds, checked before anything is applied: at most [`MAX_PER_ENTRY`]
//! attributes and [`MAX_BYTES_PER_ENTRY`] bytes of names and values per entry,
//! names of 1..=255 bytes without NUL.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd};

use nix::errno::Errno;

use super::ids::Shift;
use super::policy::Kind;
use crate::capabilities::{with_caps, SETFCAP};
use crate::error::{Error, Result};

/// Extended attributes one entry may carry (kept or not).
pub const MAX_PER_ENTRY: usize = 128;
/// Bytes of names and values one entry may carry (the kernel's limit for one
/// value is 64 KiB; btrfs keeps all of an inode's in one 16 KiB leaf).
pub const MAX_BYTES_PER_ENTRY: usize = 64 * 1024;
/// The kernel's limit on a name (`XATTR_NAME_MAX`).
const NAME_MAX: usize = 255;

pub const SCHILY_XATTR: &[u8] = b"SCHILY.xattr.";
/// Other spellings of attributes in PAX records, counted and left out.
const OTHER_SPELLINGS: &[&[u8]] = &[b"LIBARCHIVE.xattr.", b"SCHILY.acl."];

const CAPABILITY: &[u8] = b"security.capability";
const ACL_ACCESS: &[u8] = b"system.posix_acl_access";
const ACL_DEFAULT: &[u8] = b"system.posix_acl_default";
const USER_PREFIX: &[u8] = b"user.";

/// The raw attribute records of one entry, as the PAX header spells them.
#[derive(Debug, Default)]
pub struct Raw {
    /// `SCHILY.xattr.` records: (name, value).
    pub records: Vec<(Vec<u8>, Vec<u8>)>,
    /// Records in another spelling, with their sizes (bounded like the rest).
    pub other: Vec<usize>,
}

impl Raw {
    /// Take one PAX record if it describes an extended attribute; false if not.
    /// Bounds are checked as records come, so a million of them stop early.
    pub fn take(&mut self, entry: &str, key: &[u8], value: &[u8]) -> Result<bool> {
        if let Some(name) = key.strip_prefix(SCHILY_XATTR) {
            self.records.push((name.to_vec(), value.to_vec()));
        } else if OTHER_SPELLINGS.iter().any(|p| key.starts_with(p)) {
            self.other.push(key.len() + value.len());
        } else {
            return Ok(false);
        }
        self.check_bounds(entry)?;
        Ok(true)
    }

    fn check_bounds(&self, entry: &str) -> Result<()> {
        let count = self.records.len() + self.other.len();
        if count > MAX_PER_ENTRY {
            return Err(Error::Unsafe(format!(
                "tarball entry {entry:?} has more than {MAX_PER_ENTRY} extended attributes"
            )));
        }
        let bytes: usize = self
            .records
            .iter()
            .map(|(n, v)| n.len() + v.len())
            .chain(self.other.iter().copied())
            .sum();
        if bytes > MAX_BYTES_PER_ENTRY {
            return Err(Error::Unsafe(format!(
                "tarball entry {entry:?} has more than {} KiB of extended attributes",
                MAX_BYTES_PER_ENTRY / 1024
            )));
        }
        Ok(())
    }
}

/// One attribute to set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Xattr {
    pub name: CString,
    pub value: Vec<u8>,
}

/// What to do with one entry's attributes.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub set: Vec<Xattr>,
    pub left_out: u64,
}

/// Validate and sort one entry's attributes for an entry of `kind`.
pub fn plan(entry: &str, raw: Raw, kind: Kind, shift: &Shift) -> Result<Plan> {
    raw.check_bounds(entry)?;
    let mut plan = Plan {
        set: Vec::new(),
        left_out: raw.other.len() as u64,
    };
    for (name, value) in raw.records {
        let shown = String::from_utf8_lossy(&name).into_owned();
        let c_name = valid_name(entry, &name)?;
        let keep = match name.as_slice() {
            CAPABILITY => {
                // Checked whatever the entry is: a malformed value is refused.
                let caps = FileCaps::parse(&value).map_err(|why| {
                    Error::Unsafe(format!(
                        "tarball entry {entry:?} has a malformed security.capability ({why})"
                    ))
                })?;
                (kind == Kind::File).then(|| caps.encode(shift.root_uid()))
            }
            ACL_ACCESS | ACL_DEFAULT => {
                let shifted = shift_acl(entry, &shown, &value, shift)?;
                let fits = match name.as_slice() {
                    ACL_ACCESS => matches!(kind, Kind::File | Kind::Directory | Kind::Fifo),
                    _ => kind == Kind::Directory,
                };
                fits.then_some(shifted)
            }
            n if n.starts_with(USER_PREFIX) => {
                matches!(kind, Kind::File | Kind::Directory).then_some(value)
            }
            _ => None,
        };
        match keep {
            Some(value) => plan.set.push(Xattr {
                name: c_name,
                value,
            }),
            None => plan.left_out += 1,
        }
    }
    if kind == Kind::Hardlink {
        // The inode is the target's; its own entry said what it carries.
        return Ok(Plan::default());
    }
    Ok(plan)
}

fn valid_name(entry: &str, name: &[u8]) -> Result<CString> {
    let bad = || {
        Error::Unsafe(format!(
            "tarball entry {entry:?} has an extended attribute with an invalid name {:?}",
            String::from_utf8_lossy(name)
        ))
    };
    if name.is_empty() || name.len() > NAME_MAX {
        return Err(bad());
    }
    // A namespace prefix alone names nothing.
    if name.ends_with(b".") && !name[..name.len() - 1].contains(&b'.') {
        return Err(bad());
    }
    CString::new(name).map_err(|_| bad())
}

/// Set the planned attributes on an open file or directory. Runs inside the
/// caller's `with_caps(EXTRACT)`; `CAP_SETFCAP` is raised only around the
/// capability itself.
pub fn apply(fd: impl AsFd, plan: &Plan, entry: &str) -> Result<()> {
    for x in &plan.set {
        let set = || {
            // SAFETY: the name is a NUL-terminated string and the value a
            // live buffer of the given length; the descriptor is open.
            Errno::result(unsafe {
                libc::fsetxattr(
                    fd.as_fd().as_raw_fd(),
                    x.name.as_ptr(),
                    x.value.as_ptr().cast(),
                    x.value.len(),
                    0,
                )
            })
            .map(drop)
            .map_err(Error::sys(format!(
                "cannot set the extended attribute {} of {entry:?}",
                x.name.to_string_lossy()
            )))
        };
        if x.name.as_bytes() == CAPABILITY {
            with_caps(SETFCAP, set)?;
        } else {
            set()?;
        }
    }
    Ok(())
}

// ---- file capabilities ---------------------------------------------------

const REVISION_MASK: u32 = 0xFF00_0000;
const FLAGS_EFFECTIVE: u32 = 0x0000_0001;
const REVISION_2: u32 = 0x0200_0000;
const REVISION_3: u32 = 0x0300_0000;
const SIZE_2: usize = 20;
const SIZE_3: usize = 24;

/// A `security.capability` value without its root id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileCaps {
    pub effective: bool,
    pub permitted: [u32; 2],
    pub inheritable: [u32; 2],
}

fn le32(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(w)
}

impl FileCaps {
    /// A v2 or v3 value (the two the kernel accepts); a v3 root id is dropped.
    pub fn parse(v: &[u8]) -> std::result::Result<FileCaps, String> {
        if v.len() < 4 {
            return Err(format!("{} bytes", v.len()));
        }
        let magic = le32(v, 0);
        let size = match magic & REVISION_MASK {
            REVISION_2 => SIZE_2,
            REVISION_3 => SIZE_3,
            other => return Err(format!("revision {:#x}", other >> 24)),
        };
        if v.len() != size {
            return Err(format!(
                "{} bytes for revision {}",
                v.len(),
                (magic & REVISION_MASK) >> 24
            ));
        }
        if magic & !(REVISION_MASK | FLAGS_EFFECTIVE) != 0 {
            return Err(format!("unknown flags {magic:#010x}"));
        }
        Ok(FileCaps {
            effective: magic & FLAGS_EFFECTIVE != 0,
            permitted: [le32(v, 4), le32(v, 12)],
            inheritable: [le32(v, 8), le32(v, 16)],
        })
    }

    /// The value to write: v3 with `root_uid` as root id, or v2 when the
    /// root id is host root (an unmapped root import).
    pub fn encode(&self, root_uid: u32) -> Vec<u8> {
        let rev = if root_uid == 0 {
            REVISION_2
        } else {
            REVISION_3
        };
        let magic = rev | if self.effective { FLAGS_EFFECTIVE } else { 0 };
        let mut out = Vec::with_capacity(SIZE_3);
        out.extend_from_slice(&magic.to_le_bytes());
        for i in 0..2 {
            out.extend_from_slice(&self.permitted[i].to_le_bytes());
            out.extend_from_slice(&self.inheritable[i].to_le_bytes());
        }
        if root_uid != 0 {
            out.extend_from_slice(&root_uid.to_le_bytes());
        }
        out
    }
}

// ---- POSIX ACLs --------------------------------------------------------

const ACL_VERSION: u32 = 2;
const ACL_USER_OBJ: u16 = 0x01;
const ACL_USER: u16 = 0x02;
const ACL_GROUP_OBJ: u16 = 0x04;
const ACL_GROUP: u16 = 0x08;
const ACL_MASK: u16 = 0x10;
const ACL_OTHER: u16 = 0x20;

/// A `system.posix_acl_*` value with its named user and group entries moved
/// onto the caller's host ids.
pub fn shift_acl(entry: &str, attr: &str, v: &[u8], shift: &Shift) -> Result<Vec<u8>> {
    let malformed = |why: &str| {
        Error::Unsafe(format!(
            "tarball entry {entry:?} has a malformed {attr} ({why})"
        ))
    };
    if v.len() < 4 || (v.len() - 4) % 8 != 0 {
        return Err(malformed(&format!("{} bytes", v.len())));
    }
    if le32(v, 0) != ACL_VERSION {
        return Err(malformed(&format!("version {}", le32(v, 0))));
    }
    let mut entries = Vec::with_capacity((v.len() - 4) / 8);
    for at in (4..v.len()).step_by(8) {
        let tag = u16::from_le_bytes([v[at], v[at + 1]]);
        let perm = u16::from_le_bytes([v[at + 2], v[at + 3]]);
        let id = le32(v, at + 4);
        let id = match tag {
            ACL_USER => shift.host_uid(entry, id as u64, "an ACL entry for uid")?,
            ACL_GROUP => shift.host_gid(entry, id as u64, "an ACL entry for gid")?,
            ACL_USER_OBJ | ACL_GROUP_OBJ | ACL_MASK | ACL_OTHER => id,
            other => return Err(malformed(&format!("tag {other:#x}"))),
        };
        entries.push((tag, id, perm));
    }
    // The kernel wants entries by tag, and named ones by id: shifting moves
    // container root (the caller) relative to the subordinate range.
    entries.sort_by_key(|&(tag, id, _)| (tag, id));
    let mut out = v[..4].to_vec();
    for (tag, id, perm) in entries {
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(&perm.to_le_bytes());
        out.extend_from_slice(&id.to_le_bytes());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tupper_config::subid::IdMapping;

    fn shift() -> Shift {
        Shift {
            mapping: Some(IdMapping {
                caller_uid: 1000,
                caller_gid: 1001,
                uid_base: 100000,
                gid_base: 200000,
            }),
        }
    }

    /// `cap_net_raw=ep` as `setcap` writes it (v2).
    fn net_raw_v2() -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&(REVISION_2 | FLAGS_EFFECTIVE).to_le_bytes());
        v.extend_from_slice(&(1u32 << 13).to_le_bytes()); // permitted lo
        v.extend_from_slice(&0u32.to_le_bytes()); // inheritable lo
        v.extend_from_slice(&0u32.to_le_bytes()); // permitted hi
        v.extend_from_slice(&0u32.to_le_bytes()); // inheritable hi
        v
    }

    fn v3(caps: &[u8], rootid: u32) -> Vec<u8> {
        let mut v = caps.to_vec();
        v[3] = 0x03;
        v.extend_from_slice(&rootid.to_le_bytes());
        v
    }

    fn raw(records: &[(&str, &[u8])]) -> Raw {
        Raw {
            records: records
                .iter()
                .map(|(n, v)| (n.as_bytes().to_vec(), v.to_vec()))
                .collect(),
            other: Vec::new(),
        }
    }

    #[test]
    fn v2_capability_becomes_v3_owned_by_the_caller() {
        let p = plan(
            "usr/bin/ping",
            raw(&[("security.capability", &net_raw_v2())]),
            Kind::File,
            &shift(),
        )
        .unwrap();
        assert_eq!(p.left_out, 0);
        assert_eq!(p.set.len(), 1);
        assert_eq!(p.set[0].value, v3(&net_raw_v2(), 1000));
        let caps = FileCaps::parse(&p.set[0].value).unwrap();
        assert!(caps.effective);
        assert_eq!(caps.permitted, [1 << 13, 0]);
    }

    #[test]
    fn a_v3_root_id_from_the_tarball_is_never_kept() {
        for hostile in [0u32, 1001, 65534, 4_000_000_000] {
            let p = plan(
                "bin/x",
                raw(&[("security.capability", &v3(&net_raw_v2(), hostile))]),
                Kind::File,
                &shift(),
            )
            .unwrap();
            assert_eq!(p.set[0].value, v3(&net_raw_v2(), 1000), "root id {hostile}");
        }
    }

    #[test]
    fn root_without_a_mapping_writes_v2() {
        let s = Shift { mapping: None };
        let p = plan(
            "bin/x",
            raw(&[("security.capability", &v3(&net_raw_v2(), 1234))]),
            Kind::File,
            &s,
        )
        .unwrap();
        assert_eq!(p.set[0].value, net_raw_v2());
    }

    #[test]
    fn malformed_capabilities_are_refused_naming_the_entry() {
        let mut bad_flags = net_raw_v2();
        bad_flags[1] = 0x10;
        let mut v1 = net_raw_v2();
        v1[3] = 0x01;
        let cases: Vec<Vec<u8>> = vec![
            vec![],
            vec![1, 2, 3],
            net_raw_v2()[..19].to_vec(),
            v3(&net_raw_v2(), 1)[..23].to_vec(),
            [net_raw_v2(), vec![0, 0, 0, 0]].concat(), // v2 magic, v3 size
            bad_flags,
            v1,
        ];
        for v in cases {
            let e = plan(
                "usr/bin/ping",
                raw(&[("security.capability", &v)]),
                Kind::File,
                &shift(),
            )
            .unwrap_err();
            assert!(matches!(e, Error::Unsafe(_)), "{v:?}");
            assert!(
                e.to_string().starts_with(
                    "tarball entry \"usr/bin/ping\" has a malformed security.capability"
                ),
                "{e}"
            );
        }
    }

    #[test]
    fn what_is_left_out() {
        let r = raw(&[
            ("trusted.overlay.opaque", b"y"),
            ("security.selinux", b"system_u:object_r:bin_t:s0\0"),
            ("security.ima", b"\x03\x02"),
            ("user.mime", b"text/plain"),
            ("weird.thing", b"x"),
        ]);
        let p = plan("a", r, Kind::File, &shift()).unwrap();
        assert_eq!(p.left_out, 4);
        assert_eq!(
            p.set,
            vec![Xattr {
                name: CString::new("user.mime").unwrap(),
                value: b"text/plain".to_vec()
            }]
        );
    }

    #[test]
    fn symlinks_keep_nothing_and_hardlinks_apply_nothing() {
        let recs: &[(&str, &[u8])] = &[
            ("user.a", b"1"),
            ("security.capability", &net_raw_v2()),
            ("trusted.overlay.redirect", b"/x"),
        ];
        let p = plan("l", raw(recs), Kind::Symlink, &shift()).unwrap();
        assert_eq!((p.set.len(), p.left_out), (0, 3));
        let p = plan("h", raw(recs), Kind::Hardlink, &shift()).unwrap();
        assert_eq!(p, Plan::default());
        // Still checked: a malformed capability on a hardlink is refused.
        let bad: &[(&str, &[u8])] = &[("security.capability", b"xx")];
        assert!(plan("h", raw(bad), Kind::Hardlink, &shift()).is_err());
    }

    #[test]
    fn capabilities_only_on_files_user_attributes_not_on_fifos() {
        let recs: &[(&str, &[u8])] = &[("security.capability", &net_raw_v2()), ("user.a", b"1")];
        let p = plan("d", raw(recs), Kind::Directory, &shift()).unwrap();
        assert_eq!((p.set.len(), p.left_out), (1, 1));
        let p = plan("f", raw(recs), Kind::Fifo, &shift()).unwrap();
        assert_eq!((p.set.len(), p.left_out), (0, 2));
    }

    #[test]
    fn other_spellings_are_counted() {
        let mut r = Raw::default();
        assert!(r.take("a", b"LIBARCHIVE.xattr.user.x", b"eA==").unwrap());
        assert!(r.take("a", b"SCHILY.acl.access", b"user::rw-").unwrap());
        assert!(!r.take("a", b"uid", b"5").unwrap());
        assert!(r.take("a", b"SCHILY.xattr.user.y", b"1").unwrap());
        let p = plan("a", r, Kind::File, &shift()).unwrap();
        assert_eq!((p.set.len(), p.left_out), (1, 2));
    }

    #[test]
    fn bounds_stop_a_storm_early() {
        let mut r = Raw::default();
        let mut n = 0;
        let e = loop {
            match r.take("x", format!("SCHILY.xattr.user.{n}").as_bytes(), b"v") {
                Ok(_) => n += 1,
                Err(e) => break e,
            }
        };
        assert_eq!(n, MAX_PER_ENTRY);
        assert_eq!(
            e.to_string(),
            format!("tarball entry \"x\" has more than {MAX_PER_ENTRY} extended attributes")
        );
        let mut r = Raw::default();
        let big = vec![b'a'; 60 * 1024];
        r.take("y", b"SCHILY.xattr.user.a", &big).unwrap();
        let e = r.take("y", b"SCHILY.xattr.user.b", &big).unwrap_err();
        assert_eq!(
            e.to_string(),
            "tarball entry \"y\" has more than 64 KiB of extended attributes"
        );
    }

    #[test]
    fn names_are_checked() {
        for bad in [&b""[..], b"user.", b"user.a\0b", &[b'u'; 256]] {
            let r = Raw {
                records: vec![(bad.to_vec(), b"1".to_vec())],
                other: Vec::new(),
            };
            let e = plan("n", r, Kind::File, &shift()).unwrap_err();
            assert!(
                e.to_string()
                    .contains("an extended attribute with an invalid name"),
                "{e}"
            );
        }
    }

    fn acl(entries: &[(u16, u16, u32)]) -> Vec<u8> {
        let mut v = ACL_VERSION.to_le_bytes().to_vec();
        for (tag, perm, id) in entries {
            v.extend_from_slice(&tag.to_le_bytes());
            v.extend_from_slice(&perm.to_le_bytes());
            v.extend_from_slice(&id.to_le_bytes());
        }
        v
    }

    #[test]
    fn acl_ids_are_shifted_like_ownership() {
        let u = u32::MAX;
        let before = acl(&[
            (ACL_USER_OBJ, 6, u),
            (ACL_USER, 4, 33),
            (ACL_USER, 4, 0),
            (ACL_GROUP_OBJ, 4, u),
            (ACL_GROUP, 5, 100),
            (ACL_MASK, 7, u),
            (ACL_OTHER, 0, u),
        ]);
        let after = acl(&[
            (ACL_USER_OBJ, 6, u),
            (ACL_USER, 4, 1000),
            (ACL_USER, 4, 100032),
            (ACL_GROUP_OBJ, 4, u),
            (ACL_GROUP, 5, 200099),
            (ACL_MASK, 7, u),
            (ACL_OTHER, 0, u),
        ]);
        let p = plan(
            "srv",
            raw(&[
                ("system.posix_acl_access", &before),
                ("system.posix_acl_default", &before),
            ]),
            Kind::Directory,
            &shift(),
        )
        .unwrap();
        assert_eq!(p.set.len(), 2);
        assert!(p.set.iter().all(|x| x.value == after));
        // A default ACL means nothing on a file.
        let p = plan(
            "f",
            raw(&[("system.posix_acl_default", &before)]),
            Kind::File,
            &shift(),
        )
        .unwrap();
        assert_eq!((p.set.len(), p.left_out), (0, 1));
    }

    #[test]
    fn acl_ids_outside_the_container_and_malformed_acls_are_refused() {
        let e = plan(
            "srv",
            raw(&[("system.posix_acl_access", &acl(&[(ACL_USER, 4, 70000)]))]),
            Kind::File,
            &shift(),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "tarball entry \"srv\" has an ACL entry for uid 70000, outside the container's 0..65535"
        );
        let e = plan(
            "srv",
            raw(&[("system.posix_acl_access", &acl(&[(ACL_GROUP, 4, 65536)]))]),
            Kind::File,
            &shift(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("gid 65536"), "{e}");
        for bad in [
            vec![2, 0, 0],
            [acl(&[(ACL_OTHER, 0, 0)]), vec![1]].concat(),
            [3u32.to_le_bytes().to_vec(), vec![0; 8]].concat(),
            acl(&[(0x40, 0, 0)]),
        ] {
            let e = plan(
                "srv",
                raw(&[("system.posix_acl_access", &bad)]),
                Kind::File,
                &shift(),
            )
            .unwrap_err();
            assert!(
                e.to_string()
                    .starts_with("tarball entry \"srv\" has a malformed system.posix_acl_access"),
                "{e}"
            );
        }
    }
}
