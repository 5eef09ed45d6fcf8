//! Making a detached mount with the new mount API (`fsopen`, `fsconfig`,
//! `fsmount`) and naming a mount for good (`statx`'s unique mount id).
//!
//! Issue 9: `tupper-storage` mounts each container root as an overlay made
//! here, with every layer given as a descriptor (no path is resolved again).

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use crate::check;

const FSOPEN_CLOEXEC: libc::c_uint = 1;
const FSMOUNT_CLOEXEC: libc::c_uint = 1;
const FSCONFIG_SET_FLAG: libc::c_uint = 0;
const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_SET_FD: libc::c_uint = 5;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;

/// A filesystem context being configured (`fsopen`).
pub struct FsContext(OwnedFd);

impl FsContext {
    /// `fsopen(fstype, FSOPEN_CLOEXEC)`.
    pub fn open(fstype: &CStr) -> io::Result<FsContext> {
        // SAFETY: fstype is a valid C string.
        let rc = unsafe { libc::syscall(libc::SYS_fsopen, fstype.as_ptr(), FSOPEN_CLOEXEC) };
        // SAFETY: the kernel returned a new descriptor that we own.
        check(rc).map(|fd| FsContext(unsafe { OwnedFd::from_raw_fd(fd as RawFd) }))
    }

    fn config(
        &self,
        cmd: libc::c_uint,
        key: Option<&CStr>,
        value: Option<&CStr>,
        aux: libc::c_int,
    ) -> io::Result<()> {
        let key = key.map_or(std::ptr::null(), CStr::as_ptr);
        let value = value.map_or(std::ptr::null(), CStr::as_ptr);
        // SAFETY: key and value are null or valid C strings living across the call.
        let rc =
            unsafe { libc::syscall(libc::SYS_fsconfig, self.0.as_raw_fd(), cmd, key, value, aux) };
        check(rc).map(drop)
    }

    /// `fsconfig(FSCONFIG_SET_STRING, key, value)`.
    pub fn set_string(&self, key: &CStr, value: &CStr) -> io::Result<()> {
        self.config(FSCONFIG_SET_STRING, Some(key), Some(value), 0)
    }

    /// `fsconfig(FSCONFIG_SET_FLAG, key)`: a parameter without a value.
    pub fn set_flag(&self, key: &CStr) -> io::Result<()> {
        self.config(FSCONFIG_SET_FLAG, Some(key), None, 0)
    }

    /// `fsconfig(FSCONFIG_SET_FD, key, fd)`.
    pub fn set_fd(&self, key: &CStr, fd: BorrowedFd<'_>) -> io::Result<()> {
        self.config(FSCONFIG_SET_FD, Some(key), None, fd.as_raw_fd())
    }

    /// `fsconfig(FSCONFIG_CMD_CREATE)` then `fsmount(FSMOUNT_CLOEXEC,
    /// attributes)`: the root of a new mount attached nowhere.
    pub fn mount(self, attributes: u64) -> io::Result<OwnedFd> {
        self.config(FSCONFIG_CMD_CREATE, None, None, 0)?;
        // SAFETY: plain syscall on a descriptor we own.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_fsmount,
                self.0.as_raw_fd(),
                FSMOUNT_CLOEXEC,
                attributes as libc::c_uint,
            )
        };
        // SAFETY: the kernel returned a new descriptor that we own.
        check(rc).map(|fd| unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
    }
}

/// The unique (never reused) id of the mount `fd` is on, from `statx` with
/// `AT_STATX_DONT_SYNC`: only the VFS answers, never the filesystem (a FUSE
/// filesystem cannot make the caller wait). `None` on a kernel older than
/// 6.8, which does not know the unique id.
pub fn unique_mount_id(dirfd: RawFd, path: &CStr, flags: libc::c_int) -> io::Result<Option<u64>> {
    // SAFETY: statx is plain data; zeroed is a valid value.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: the path is a valid C string, stx lives across the call.
    let rc = unsafe {
        libc::statx(
            dirfd,
            path.as_ptr(),
            flags | libc::AT_STATX_DONT_SYNC,
            libc::STATX_MNT_ID_UNIQUE,
            &mut stx,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((stx.stx_mask & libc::STATX_MNT_ID_UNIQUE != 0).then_some(stx.stx_mnt_id))
}

/// Is `fd` on an overlay filesystem (`fstatfs`)?
pub fn is_overlay(fd: BorrowedFd<'_>) -> io::Result<bool> {
    // SAFETY: statfs is plain data; zeroed is a valid value.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: fd is valid, st lives across the call.
    if unsafe { libc::fstatfs(fd.as_raw_fd(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st.f_type == libc::OVERLAYFS_SUPER_MAGIC)
}
