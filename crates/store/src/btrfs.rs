//! The few btrfs ioctls the store needs, issued directly (no `btrfs` CLI).

use std::os::fd::{AsFd, AsRawFd};

use nix::errno::Errno;

const BTRFS_IOCTL_MAGIC: u8 = 0x94;
/// `BTRFS_PATH_NAME_MAX` (4087) + NUL.
const VOL_NAME_LEN: usize = 4088;
/// `BTRFS_SUBVOL_NAME_MAX` (4039) + NUL.
const SUBVOL_NAME_LEN: usize = 4040;
/// `BTRFS_SUBVOL_RDONLY`.
pub const SUBVOL_RDONLY: u64 = 1 << 1;

/// `struct btrfs_ioctl_vol_args`.
#[repr(C)]
pub struct VolArgs {
    fd: i64,
    name: [u8; VOL_NAME_LEN],
}

/// `struct btrfs_ioctl_vol_args_v2` (the `unused[4]` / qgroup-inherit union
/// is always zero here).
#[repr(C)]
pub struct VolArgsV2 {
    fd: i64,
    transid: u64,
    flags: u64,
    unused: [u64; 4],
    name: [u8; SUBVOL_NAME_LEN],
}

const _: () = assert!(std::mem::size_of::<VolArgs>() == 4096);
const _: () = assert!(std::mem::size_of::<VolArgsV2>() == 4096);

nix::ioctl_write_ptr!(ioc_subvol_create, BTRFS_IOCTL_MAGIC, 14, VolArgs);
nix::ioctl_write_ptr!(ioc_snap_destroy, BTRFS_IOCTL_MAGIC, 15, VolArgs);
nix::ioctl_write_ptr!(ioc_snap_create_v2, BTRFS_IOCTL_MAGIC, 23, VolArgsV2);
nix::ioctl_read!(ioc_subvol_getflags, BTRFS_IOCTL_MAGIC, 25, u64);
nix::ioctl_write_ptr!(ioc_subvol_setflags, BTRFS_IOCTL_MAGIC, 26, u64);
nix::ioctl_readwrite!(ioc_tree_search, BTRFS_IOCTL_MAGIC, 17, SearchArgs);
nix::ioctl_readwrite!(ioc_ino_lookup, BTRFS_IOCTL_MAGIC, 18, InoLookupArgs);
nix::ioctl_write_ptr!(ioc_snap_destroy_v2, BTRFS_IOCTL_MAGIC, 63, VolArgsV2);

/// `BTRFS_SUBVOL_SPEC_BY_ID`: `SNAP_DESTROY_V2` names the subvolume by id.
const SUBVOL_SPEC_BY_ID: u64 = 1 << 4;
/// `BTRFS_ROOT_TREE_OBJECTID`: the tree of subvolume roots and their links.
const ROOT_TREE_OBJECTID: u64 = 1;
/// `BTRFS_FIRST_FREE_OBJECTID`: the inode number of every subvolume's root.
pub const FIRST_FREE_OBJECTID: u64 = 256;
/// `BTRFS_ROOT_REF_KEY`: (parent id, ROOT_REF, child id) links a subvolume to
/// the subvolume its directory entry lives in.
const ROOT_REF_KEY: u32 = 156;
/// `BTRFS_SEARCH_ARGS_BUFSIZE`.
const SEARCH_BUF_LEN: usize = 4096 - std::mem::size_of::<SearchKey>();
/// `struct btrfs_ioctl_search_header`.
const SEARCH_HEADER_LEN: usize = 32;
/// `BTRFS_INO_LOOKUP_PATH_MAX`.
const INO_LOOKUP_PATH_LEN: usize = 4080;

/// `struct btrfs_ioctl_search_key`.
#[repr(C)]
#[derive(Default)]
pub struct SearchKey {
    tree_id: u64,
    min_objectid: u64,
    max_objectid: u64,
    min_offset: u64,
    max_offset: u64,
    min_transid: u64,
    max_transid: u64,
    min_type: u32,
    max_type: u32,
    nr_items: u32,
    unused: u32,
    unused1: u64,
    unused2: u64,
    unused3: u64,
    unused4: u64,
}

/// `struct btrfs_ioctl_search_args`.
#[repr(C)]
pub struct SearchArgs {
    key: SearchKey,
    buf: [u8; SEARCH_BUF_LEN],
}

/// `struct btrfs_ioctl_ino_lookup_args`.
#[repr(C)]
pub struct InoLookupArgs {
    treeid: u64,
    objectid: u64,
    name: [u8; INO_LOOKUP_PATH_LEN],
}

const _: () = assert!(std::mem::size_of::<SearchKey>() == 104);
const _: () = assert!(std::mem::size_of::<SearchArgs>() == 4096);
const _: () = assert!(std::mem::size_of::<InoLookupArgs>() == 4096);

/// Copy a single path component into a fixed NUL-terminated buffer.
fn fill_name(buf: &mut [u8], name: &str) -> Result<(), Errno> {
    let b = name.as_bytes();
    if b.is_empty() || b.len() >= buf.len() || b.contains(&0) || b.contains(&b'/') {
        return Err(Errno::EINVAL);
    }
    buf[..b.len()].copy_from_slice(b);
    Ok(())
}

fn vol_args(name: &str) -> Result<Box<VolArgs>, Errno> {
    let mut a = Box::new(VolArgs {
        fd: 0,
        name: [0; VOL_NAME_LEN],
    });
    fill_name(&mut a.name, name)?;
    Ok(a)
}

/// Create an empty subvolume `name` in directory `dir`.
pub fn subvol_create(dir: impl AsFd, name: &str) -> Result<(), Errno> {
    let a = vol_args(name)?;
    // SAFETY: `a` is a valid, fully initialised btrfs_ioctl_vol_args.
    unsafe { ioc_subvol_create(dir.as_fd().as_raw_fd(), &*a) }.map(drop)
}

/// Delete subvolume `name` of directory `dir` (needs CAP_SYS_ADMIN).
pub fn subvol_destroy(dir: impl AsFd, name: &str) -> Result<(), Errno> {
    let a = vol_args(name)?;
    // SAFETY: as above.
    unsafe { ioc_snap_destroy(dir.as_fd().as_raw_fd(), &*a) }.map(drop)
}

/// Writable snapshot of subvolume `source` as `name` in directory `dir`.
pub fn snapshot(source: impl AsFd, dir: impl AsFd, name: &str) -> Result<(), Errno> {
    snapshot_with(source, dir, name, 0)
}

/// Read-only snapshot of subvolume `source` as `name` in directory `dir`.
pub fn snapshot_readonly(source: impl AsFd, dir: impl AsFd, name: &str) -> Result<(), Errno> {
    snapshot_with(source, dir, name, SUBVOL_RDONLY)
}

fn snapshot_with(source: impl AsFd, dir: impl AsFd, name: &str, flags: u64) -> Result<(), Errno> {
    let mut a = Box::new(VolArgsV2 {
        fd: source.as_fd().as_raw_fd() as i64,
        transid: 0,
        flags,
        unused: [0; 4],
        name: [0; SUBVOL_NAME_LEN],
    });
    fill_name(&mut a.name, name)?;
    // SAFETY: `a` is a valid, fully initialised btrfs_ioctl_vol_args_v2.
    unsafe { ioc_snap_create_v2(dir.as_fd().as_raw_fd(), &*a) }.map(drop)
}

/// The path of directory inode `dirid` inside subvolume `tree`, relative to
/// the subvolume's root (empty for the root itself, else ending in `/`).
/// Needs CAP_SYS_ADMIN.
pub fn dir_path_in(fd: impl AsFd, tree: u64, dirid: u64) -> Result<Vec<u8>, Errno> {
    let mut a = Box::new(InoLookupArgs {
        treeid: tree,
        objectid: dirid,
        name: [0; INO_LOOKUP_PATH_LEN],
    });
    // SAFETY: `a` is a valid btrfs_ioctl_ino_lookup_args the kernel fills.
    unsafe { ioc_ino_lookup(fd.as_fd().as_raw_fd(), &mut *a) }?;
    let len = a.name.iter().position(|b| *b == 0).unwrap_or(a.name.len());
    Ok(a.name[..len].to_vec())
}

/// The id of the subvolume `fd` is in (`INO_LOOKUP` of the root inode, which
/// the kernel answers for anyone).
pub fn subvol_id(fd: impl AsFd) -> Result<u64, Errno> {
    let mut a = Box::new(InoLookupArgs {
        treeid: 0,
        objectid: FIRST_FREE_OBJECTID,
        name: [0; INO_LOOKUP_PATH_LEN],
    });
    // SAFETY: `a` is a valid btrfs_ioctl_ino_lookup_args the kernel fills.
    unsafe { ioc_ino_lookup(fd.as_fd().as_raw_fd(), &mut *a) }?;
    Ok(a.treeid)
}

/// A subvolume linked directly inside another: its id, and where its
/// directory entry is in the parent (directory inode `dirid`, entry `name`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildRef {
    pub id: u64,
    pub dirid: u64,
    pub name: Vec<u8>,
}

/// The subvolumes whose directory entry lives directly in
/// subvolume `parent`: the ROOT_REF items `(parent, ROOT_REF, child)` of the
/// root tree. Searched by id in the kernel's own records, so nothing inside
/// the subvolumes (names, symlinks, mounts) is looked at or followed. Needs
/// CAP_SYS_ADMIN; `fd` is any descriptor on the filesystem.
pub fn child_subvols(fd: impl AsFd, parent: u64) -> Result<Vec<ChildRef>, Errno> {
    let mut out = Vec::new();
    let mut a = Box::new(SearchArgs {
        key: SearchKey::default(),
        buf: [0; SEARCH_BUF_LEN],
    });
    let mut next_offset = 0u64;
    loop {
        a.key = SearchKey {
            tree_id: ROOT_TREE_OBJECTID,
            min_objectid: parent,
            max_objectid: parent,
            min_type: ROOT_REF_KEY,
            max_type: ROOT_REF_KEY,
            min_offset: next_offset,
            max_offset: u64::MAX,
            min_transid: 0,
            max_transid: u64::MAX,
            nr_items: 4096,
            ..SearchKey::default()
        };
        // SAFETY: `a` is a valid btrfs_ioctl_search_args; the kernel writes
        // at most SEARCH_BUF_LEN bytes of items into `buf`.
        unsafe { ioc_tree_search(fd.as_fd().as_raw_fd(), &mut *a) }?;
        let items = parse_search_items(&a.buf, a.key.nr_items);
        if items.is_empty() {
            return Ok(out);
        }
        let mut last = next_offset;
        for item in items {
            if item.objectid == parent && item.kind == ROOT_REF_KEY {
                // struct btrfs_root_ref (packed): dirid, sequence, name_len, name.
                let dirid = u64_at(&item.data, 0).ok_or(Errno::EIO)?;
                let name_len = item
                    .data
                    .get(16..18)
                    .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
                    .ok_or(Errno::EIO)?;
                let name = item.data.get(18..18 + name_len).ok_or(Errno::EIO)?;
                out.push(ChildRef {
                    id: item.offset,
                    dirid,
                    name: name.to_vec(),
                });
            }
            last = last.max(item.offset);
        }
        match last.checked_add(1) {
            Some(n) => next_offset = n,
            None => return Ok(out),
        }
    }
}

/// One `struct btrfs_ioctl_search_header`.
#[derive(Debug, PartialEq, Eq)]
pub struct SearchItem {
    pub objectid: u64,
    pub offset: u64,
    pub kind: u32,
    pub data: Vec<u8>,
}

/// The items of tree `tree` with key type `kind`, objectid in `objectids`
/// and offset in `offsets` (inclusive ranges), at most `max` of them, in key
/// order. Needs CAP_SYS_ADMIN; `fd` is any descriptor on the filesystem.
pub fn search(
    fd: impl AsFd,
    tree: u64,
    objectids: (u64, u64),
    kind: u32,
    offsets: (u64, u64),
    max: usize,
) -> Result<Vec<SearchItem>, Errno> {
    let mut out = Vec::new();
    let mut a = Box::new(SearchArgs {
        key: SearchKey::default(),
        buf: [0; SEARCH_BUF_LEN],
    });
    let (mut min_objectid, mut min_offset) = (objectids.0, offsets.0);
    while out.len() < max {
        a.key = SearchKey {
            tree_id: tree,
            min_objectid,
            max_objectid: objectids.1,
            min_type: kind,
            max_type: kind,
            min_offset,
            max_offset: offsets.1,
            min_transid: 0,
            max_transid: u64::MAX,
            nr_items: 4096,
            ..SearchKey::default()
        };
        // SAFETY: `a` is a valid btrfs_ioctl_search_args; the kernel writes
        // at most SEARCH_BUF_LEN bytes of items into `buf`.
        unsafe { ioc_tree_search(fd.as_fd().as_raw_fd(), &mut *a) }?;
        let items = parse_search_items(&a.buf, a.key.nr_items);
        let Some(last) = items.last().map(|i| (i.objectid, i.offset)) else {
            break;
        };
        out.extend(items.into_iter().filter(|i| {
            i.kind == kind
                && (objectids.0..=objectids.1).contains(&i.objectid)
                && (offsets.0..=offsets.1).contains(&i.offset)
        }));
        // Continue after the last key seen (the search key is a tuple, so
        // the offset wraps into the next objectid).
        match last.1.checked_add(1) {
            Some(o) if o <= offsets.1 => (min_objectid, min_offset) = (last.0, o),
            _ => match last.0.checked_add(1) {
                Some(id) if id <= objectids.1 => (min_objectid, min_offset) = (id, offsets.0),
                _ => break,
            },
        }
    }
    out.truncate(max);
    Ok(out)
}

fn u64_at(buf: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(buf.get(at..at + 8)?.try_into().ok()?))
}

fn u32_at(buf: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(buf.get(at..at + 4)?.try_into().ok()?))
}

/// The headers of the `count` items the kernel put into `buf` (each header
/// followed by `len` bytes of item data, which we skip); stops at anything
/// that would not fit.
fn parse_search_items(buf: &[u8], count: u32) -> Vec<SearchItem> {
    let mut items = Vec::new();
    let mut at = 0usize;
    for _ in 0..count {
        let (Some(objectid), Some(offset), Some(kind), Some(len)) = (
            u64_at(buf, at + 8),
            u64_at(buf, at + 16),
            u32_at(buf, at + 24),
            u32_at(buf, at + 28),
        ) else {
            break;
        };
        let start = at + SEARCH_HEADER_LEN;
        let Some(data) = buf.get(start..start + len as usize) else {
            break;
        };
        items.push(SearchItem {
            objectid,
            offset,
            kind,
            data: data.to_vec(),
        });
        at = start + len as usize;
    }
    items
}

/// Delete the subvolume with id `id` (`SNAP_DESTROY_V2` by id). Needs
/// CAP_SYS_ADMIN; `fd` is any directory on the filesystem. Fails with
/// ENOTEMPTY while the subvolume still has subvolumes inside.
pub fn subvol_destroy_by_id(fd: impl AsFd, id: u64) -> Result<(), Errno> {
    let mut a = Box::new(VolArgsV2 {
        fd: 0,
        transid: 0,
        flags: SUBVOL_SPEC_BY_ID,
        unused: [0; 4],
        name: [0; SUBVOL_NAME_LEN],
    });
    // The `subvolid` member shares its union with `name`.
    a.name[..8].copy_from_slice(&id.to_ne_bytes());
    // SAFETY: `a` is a valid, fully initialised btrfs_ioctl_vol_args_v2.
    unsafe { ioc_snap_destroy_v2(fd.as_fd().as_raw_fd(), &*a) }.map(drop)
}

pub fn get_flags(subvol: impl AsFd) -> Result<u64, Errno> {
    let mut flags = 0u64;
    // SAFETY: the kernel writes one u64.
    unsafe { ioc_subvol_getflags(subvol.as_fd().as_raw_fd(), &mut flags) }?;
    Ok(flags)
}

/// Set the subvolume flags (0 = writable, [`SUBVOL_RDONLY`] = read-only).
pub fn set_flags(subvol: impl AsFd, flags: u64) -> Result<(), Errno> {
    // SAFETY: the kernel reads one u64.
    unsafe { ioc_subvol_setflags(subvol.as_fd().as_raw_fd(), &flags) }.map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_bounded_and_single_components() {
        let mut buf = [0u8; 8];
        assert!(fill_name(&mut buf, "abc").is_ok());
        assert_eq!(&buf[..4], b"abc\0");
        assert_eq!(fill_name(&mut [0u8; 8], "a/b"), Err(Errno::EINVAL));
        assert_eq!(fill_name(&mut [0u8; 8], ""), Err(Errno::EINVAL));
        assert_eq!(fill_name(&mut [0u8; 8], "12345678"), Err(Errno::EINVAL));
    }

    #[test]
    fn ioctl_numbers_match_linux() {
        // _IOW(0x94, 14, 4096-byte struct) etc., as in linux/btrfs.h.
        assert_eq!(nix::request_code_write!(0x94, 14, 4096), 0x5000_940e);
        assert_eq!(nix::request_code_write!(0x94, 23, 4096), 0x5000_9417);
        assert_eq!(nix::request_code_read!(0x94, 25, 8), 0x8008_9419);
        assert_eq!(nix::request_code_readwrite!(0x94, 17, 4096), 0xd000_9411);
        assert_eq!(nix::request_code_readwrite!(0x94, 18, 4096), 0xd000_9412);
        assert_eq!(nix::request_code_write!(0x94, 63, 4096), 0x5000_943f);
    }

    #[test]
    fn search_items_are_parsed_and_bounded() {
        let mut buf = vec![0u8; 200];
        let put = |buf: &mut Vec<u8>, at: usize, objectid: u64, offset: u64, len: u32| {
            buf[at + 8..at + 16].copy_from_slice(&objectid.to_ne_bytes());
            buf[at + 16..at + 24].copy_from_slice(&offset.to_ne_bytes());
            buf[at + 24..at + 28].copy_from_slice(&ROOT_REF_KEY.to_ne_bytes());
            buf[at + 28..at + 32].copy_from_slice(&len.to_ne_bytes());
        };
        put(&mut buf, 0, 256, 300, 20);
        put(&mut buf, 52, 256, 301, 500);
        // The second item claims more data than the buffer holds: dropped.
        let items = parse_search_items(&buf, 3);
        assert_eq!(items.len(), 1);
        assert_eq!(
            (
                items[0].objectid,
                items[0].offset,
                items[0].kind,
                items[0].data.len()
            ),
            (256, 300, ROOT_REF_KEY, 20)
        );
    }
}
