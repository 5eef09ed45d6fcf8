//! Who asked a helper.

use std::ffi::CStr;

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
