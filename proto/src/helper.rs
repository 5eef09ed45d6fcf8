//! Process hygiene every helper performs before it reads a request.

use std::ffi::CStr;

use crate::Error;

/// Who asked: the real ids of the helper process, which the kernel set from
/// the caller. Nothing in a request can change this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
}

impl Caller {
    pub fn current() -> Caller {
        // SAFETY: getuid/getgid cannot fail.
        unsafe {
            Caller {
                uid: libc::getuid(),
                gid: libc::getgid(),
            }
        }
    }

    /// The caller's login name from the password database.
    pub fn user_name(&self) -> Option<String> {
        let mut buf = vec![0u8; 16384];
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut out: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: buffers are valid for the sizes given; result checked below.
        let rc = unsafe {
            libc::getpwuid_r(
                self.uid,
                &mut pwd,
                buf.as_mut_ptr() as *mut libc::c_char,
                buf.len(),
                &mut out,
            )
        };
        if rc != 0 || out.is_null() {
            return None;
        }
        // SAFETY: pw_name points into buf and is NUL-terminated.
        let name = unsafe { CStr::from_ptr(pwd.pw_name) };
        name.to_str().ok().map(str::to_owned)
    }
}

/// Clear the environment, set a safe umask, and close every descriptor above
/// the control channel. Call first thing in `main`, before parsing anything.
pub fn sanitize_process() -> Result<Caller, Error> {
    let keys: Vec<_> = std::env::vars_os().map(|(k, _)| k).collect();
    for k in keys {
        std::env::remove_var(k);
    }
    std::env::set_var("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
    // SAFETY: umask cannot fail.
    unsafe { libc::umask(0o022) };
    close_fds_from(crate::CONTROL_FD + 1)?;
    Ok(Caller::current())
}

/// Close every descriptor numbered `first` or above.
pub fn close_fds_from(first: i32) -> Result<(), Error> {
    // SAFETY: close_range only closes descriptors; none above `first` is owned
    // by Rust code at this point of a helper's start-up.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            libc::c_uint::MAX,
            0,
        )
    };
    if rc != 0 {
        return Err(Error::Io(std::io::Error::last_os_error()));
    }
    Ok(())
}
