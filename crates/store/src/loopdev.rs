//! Attach a file to a free loop device (`/dev/loop-control`), autoclearing.

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{open, OFlag};
use nix::sys::stat::Mode;

use crate::error::{Error, Result};

const LOOP_SET_FD: libc::c_ulong = 0x4C00;
const LOOP_SET_STATUS64: libc::c_ulong = 0x4C04;
const LOOP_CONFIGURE: libc::c_ulong = 0x4C0A;
const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
const LO_FLAGS_AUTOCLEAR: u32 = 4;

/// `struct loop_info64`.
#[repr(C)]
#[derive(Clone, Copy)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; 64],
    lo_crypt_name: [u8; 64],
    lo_encrypt_key: [u8; 32],
    lo_init: [u64; 2],
}

/// `struct loop_config`.
#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

const _: () = assert!(std::mem::size_of::<LoopInfo64>() == 232);
const _: () = assert!(std::mem::size_of::<LoopConfig>() == 304);

fn info() -> LoopInfo64 {
    let mut name = [0u8; 64];
    let label = b"tupperware-store";
    name[..label.len()].copy_from_slice(label);
    LoopInfo64 {
        lo_device: 0,
        lo_inode: 0,
        lo_rdevice: 0,
        lo_offset: 0,
        lo_sizelimit: 0,
        lo_number: 0,
        lo_encrypt_type: 0,
        lo_encrypt_key_size: 0,
        lo_flags: LO_FLAGS_AUTOCLEAR,
        lo_file_name: name,
        lo_crypt_name: [0; 64],
        lo_encrypt_key: [0; 32],
        lo_init: [0; 2],
    }
}

/// An attached loop device; it detaches itself once unmounted and closed.
pub struct LoopDevice {
    pub path: String,
    _fd: OwnedFd,
}

/// Attach `backing` to a free loop device. Needs CAP_SYS_ADMIN (and
/// CAP_DAC_OVERRIDE to open the root-only device nodes).
pub fn attach(backing: &File) -> Result<LoopDevice> {
    let ctl = open(
        "/dev/loop-control",
        OFlag::O_RDWR | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(Error::sys("cannot open /dev/loop-control"))?;
    // Another process may take the device between GET_FREE and CONFIGURE: retry.
    let mut last = Errno::EBUSY;
    for _ in 0..8 {
        // SAFETY: LOOP_CTL_GET_FREE takes no argument and returns a number.
        let n = Errno::result(unsafe { libc::ioctl(ctl.as_raw_fd(), LOOP_CTL_GET_FREE) })
            .map_err(Error::sys("cannot find a free loop device"))?;
        let path = format!("/dev/loop{n}");
        let dev = open(
            path.as_str(),
            OFlag::O_RDWR | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(Error::sys(format!("cannot open {path}")))?;
        match configure(&dev, backing) {
            Ok(()) => return Ok(LoopDevice { path, _fd: dev }),
            Err(Errno::EBUSY) => last = Errno::EBUSY,
            Err(e) => return Err(Error::sys(format!("cannot set up {path}"))(e)),
        }
    }
    Err(Error::sys("cannot set up a loop device")(last))
}

fn configure(dev: &OwnedFd, backing: &File) -> std::result::Result<(), Errno> {
    let cfg = LoopConfig {
        fd: backing.as_raw_fd() as u32,
        block_size: 0,
        info: info(),
        reserved: [0; 8],
    };
    // SAFETY: cfg is a valid loop_config that outlives the call.
    let rc = unsafe { libc::ioctl(dev.as_raw_fd(), LOOP_CONFIGURE, &cfg as *const LoopConfig) };
    match Errno::result(rc) {
        Ok(_) => Ok(()),
        // Kernels before 5.8 lack LOOP_CONFIGURE.
        Err(Errno::EINVAL) | Err(Errno::ENOTTY) => {
            // SAFETY: LOOP_SET_FD takes the backing descriptor by value.
            Errno::result(unsafe {
                libc::ioctl(
                    dev.as_raw_fd(),
                    LOOP_SET_FD,
                    backing.as_raw_fd() as libc::c_ulong,
                )
            })?;
            let info = info();
            // SAFETY: info is a valid loop_info64 that outlives the call.
            Errno::result(unsafe {
                libc::ioctl(
                    dev.as_raw_fd(),
                    LOOP_SET_STATUS64,
                    &info as *const LoopInfo64,
                )
            })
            .map(drop)
        }
        Err(e) => Err(e),
    }
}

const LOOP_GET_STATUS64: libc::c_ulong = 0x4C05;

/// The loop device `backing` is attached to already, if any.
///
/// The store may be mounted in another mount namespace (a caller inside
/// `unshare -m` or `ip netns exec`): mounting the same device again shares its
/// filesystem, whereas a second loop device over the same image would mount
/// one btrfs twice and corrupt it.
pub fn find_attached(backing: &File) -> Result<Option<LoopDevice>> {
    let st =
        nix::sys::stat::fstat(backing).map_err(Error::sys("cannot inspect the store image"))?;
    let Ok(entries) = std::fs::read_dir("/sys/block") else {
        return Ok(None);
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str().filter(|n| n.starts_with("loop")) else {
            continue;
        };
        // Only attached devices have a backing file.
        if !entry.path().join("loop/backing_file").exists() {
            continue;
        }
        let path = format!("/dev/{name}");
        let Ok(dev) = open(
            path.as_str(),
            OFlag::O_RDWR | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) else {
            continue;
        };
        let mut info = info();
        // SAFETY: LOOP_GET_STATUS64 fills a loop_info64 that outlives the call.
        let rc = unsafe {
            libc::ioctl(
                dev.as_raw_fd(),
                LOOP_GET_STATUS64,
                &mut info as *mut LoopInfo64,
            )
        };
        if rc == 0 && info.lo_device == st.st_dev && info.lo_inode == st.st_ino {
            return Ok(Some(LoopDevice { path, _fd: dev }));
        }
    }
    Ok(None)
}
