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
    let mut a = Box::new(VolArgsV2 {
        fd: source.as_fd().as_raw_fd() as i64,
        transid: 0,
        flags: 0,
        unused: [0; 4],
        name: [0; SUBVOL_NAME_LEN],
    });
    fill_name(&mut a.name, name)?;
    // SAFETY: `a` is a valid, fully initialised btrfs_ioctl_vol_args_v2.
    unsafe { ioc_snap_create_v2(dir.as_fd().as_raw_fd(), &*a) }.map(drop)
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
    }
}
