//! `tupper_sys`: tupperware's system call wrappers, each written once and
//! shared by the helpers and the supervisor. Thin: each does one call (or
//! one well-known sequence of calls) and returns a `std::io::Result`.
//!
//! - here: `openat2`, the new mount API (`open_tree`, `move_mount`,
//!   `mount_setattr`),
//!   `prctl`, `/proc/self/fd` paths;
//! - [`pidfd`]: open a pidfd, signal through it, ask whether it still runs;
//! - [`process`]: a process's start time (a pid plus it names one process);
//! - [`lock`]: `flock` that waits at most a deadline;
//! - [`atomic`]: replace a file atomically and durably;
//! - [`random`]: random hex ids;
//! - [`fsmount`]: detached mounts (`fsopen`/`fsconfig`/`fsmount`), unique
//!   mount ids, the overlay check.

pub mod atomic;
pub mod fsmount;
pub mod lock;
pub mod pidfd;
pub mod process;
pub mod random;

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

pub(crate) fn check(rc: libc::c_long) -> io::Result<libc::c_long> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// `openat2(dirfd, path, {flags | O_CLOEXEC, resolve})`, tried again on
/// `EAGAIN` (a concurrent rename under `RESOLVE_*`).
pub fn openat2(dirfd: RawFd, path: &CStr, flags: i32, resolve: u64) -> io::Result<OwnedFd> {
    // SAFETY: open_how is plain data; zeroed is a valid value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.resolve = resolve;
    loop {
        // SAFETY: pointers are valid for the duration of the call.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dirfd,
                path.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        match check(rc) {
            // SAFETY: the kernel returned a new descriptor that we own.
            Ok(fd) => return Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) }),
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Resolution that never leaves `dirfd` and never follows any symlink.
pub const RESOLVE_STRICT: u64 =
    libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS;

/// `open_tree(dirfd, path, flags)`.
pub fn open_tree(dirfd: RawFd, path: &CStr, flags: u32) -> io::Result<OwnedFd> {
    // SAFETY: path is a valid C string.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            dirfd,
            path.as_ptr(),
            flags | libc::O_CLOEXEC as u32,
        )
    };
    // SAFETY: the kernel returned a new descriptor that we own.
    check(rc).map(|fd| unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// `move_mount(from_dirfd, from_path, to_dirfd, to_path, flags)`.
pub fn move_mount(
    from_dirfd: RawFd,
    from_path: &CStr,
    to_dirfd: RawFd,
    to_path: &CStr,
    flags: u32,
) -> io::Result<()> {
    // SAFETY: both paths are valid C strings.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            from_dirfd,
            from_path.as_ptr(),
            to_dirfd,
            to_path.as_ptr(),
            flags,
        )
    };
    check(rc).map(drop)
}

/// `mount_setattr(dirfd, path, flags, {attr_set: set, attr_clr: clear})`.
pub fn mount_setattr(
    dirfd: RawFd,
    path: &CStr,
    flags: u32,
    set: u64,
    clear: u64,
) -> io::Result<()> {
    // SAFETY: mount_attr is plain data; zeroed is a valid value.
    let mut attr: libc::mount_attr = unsafe { std::mem::zeroed() };
    attr.attr_set = set;
    attr.attr_clr = clear;
    // SAFETY: the path is a valid C string and attr lives across the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            dirfd,
            path.as_ptr(),
            flags,
            &mut attr as *mut libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    check(rc).map(drop)
}

/// `/proc/self/fd/<fd>`: lets path-based calls (mount) act on exactly the
/// file an `O_PATH` descriptor holds, with no second path resolution.
pub fn fd_path(fd: &impl AsRawFd) -> CString {
    // A decimal number never contains NUL.
    CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap_or_default()
}

/// `s` as a C string; an interior NUL is `EINVAL`.
pub fn cstring(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// `prctl` with one argument, as an `io::Result`.
pub fn prctl(option: libc::c_int, arg: libc::c_ulong) -> io::Result<()> {
    // SAFETY: the options used in this crate take integer arguments only.
    let rc = unsafe { libc::prctl(option, arg, 0 as libc::c_ulong, 0 as libc::c_ulong, 0) };
    check(rc as libc::c_long).map(drop)
}

/// Let the owner of this process open its `/proc/<pid>` files (id maps,
/// namespaces). Any credential change resets this, so call it again after one.
pub fn set_dumpable() -> io::Result<()> {
    prctl(libc::PR_SET_DUMPABLE, 1)
}
