//! pidfds: a process named by a descriptor, so a signal can never hit a
//! recycled pid.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use crate::check;

/// `pidfd_open(pid, 0)`.
pub fn open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = check(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) })?;
    // SAFETY: the kernel returned a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// `pidfd_send_signal(pidfd, sig, NULL, 0)`; signal 0 only checks that the
/// process exists.
pub fn send_signal(pidfd: impl AsFd, sig: libc::c_int) -> io::Result<()> {
    // SAFETY: a null siginfo is allowed; the fd is a pidfd the caller holds.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_fd().as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    check(rc).map(drop)
}

/// Whether the process behind `pidfd` is still running: a pidfd becomes
/// readable when its process exits.
pub fn is_alive(pidfd: impl AsFd) -> bool {
    let mut p = libc::pollfd {
        fd: pidfd.as_fd().as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one pollfd we own, zero timeout.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n == 0
}

/// An owned pidfd.
#[derive(Debug)]
pub struct PidFd(OwnedFd);

impl PidFd {
    /// [`open`] as a `PidFd`.
    pub fn open(pid: i32) -> io::Result<PidFd> {
        open(pid).map(PidFd)
    }

    /// [`send_signal`] through this pidfd.
    pub fn signal(&self, sig: libc::c_int) -> io::Result<()> {
        send_signal(&self.0, sig)
    }

    /// [`is_alive`] for this pidfd.
    pub fn is_alive(&self) -> bool {
        is_alive(&self.0)
    }
}

impl From<OwnedFd> for PidFd {
    fn from(fd: OwnedFd) -> PidFd {
        PidFd(fd)
    }
}

impl AsFd for PidFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_own_process_is_alive_and_signal_zero_reaches_it() {
        let me = PidFd::open(std::process::id() as i32).unwrap();
        assert!(me.is_alive());
        me.signal(0).unwrap();
        assert!(open(-1).is_err());
    }

    #[test]
    fn an_exited_child_is_not_alive() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let fd = PidFd::open(child.id() as i32).unwrap();
        child.wait().unwrap();
        assert!(!fd.is_alive());
    }
}
