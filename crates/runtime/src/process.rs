//! Identifying processes across pid reuse: a pid plus its start time.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use proto::process::start_time;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessId {
    pub pid: i32,
    /// Field 22 of `/proc/<pid>/stat` (clock ticks since boot).
    pub start_time: u64,
}

impl ProcessId {
    pub fn of(pid: i32) -> Option<ProcessId> {
        start_time(pid).map(|start_time| ProcessId { pid, start_time })
    }

    pub fn current() -> Option<ProcessId> {
        Self::of(std::process::id() as i32)
    }

    /// The same process still exists (it may be a zombie).
    pub fn alive(&self) -> bool {
        start_time(self.pid) == Some(self.start_time)
    }
}

/// A pidfd: signals sent through it can never hit a recycled pid.
pub struct PidFd(OwnedFd);

impl PidFd {
    pub fn open(pid: i32) -> std::io::Result<PidFd> {
        // SAFETY: pidfd_open has no memory arguments.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: the kernel returned a fresh descriptor we own.
        Ok(PidFd(unsafe { OwnedFd::from_raw_fd(fd as i32) }))
    }

    /// Open a pidfd for `id` and make sure it is still the same process.
    pub fn open_checked(id: &ProcessId) -> Option<PidFd> {
        let fd = PidFd::open(id.pid).ok()?;
        id.alive().then_some(fd)
    }

    pub fn signal(&self, sig: i32) -> std::io::Result<()> {
        // SAFETY: null siginfo is allowed; the fd is a pidfd we own.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.0.as_raw_fd(),
                sig,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_alive_and_a_changed_start_time_is_not() {
        let me = ProcessId::current().unwrap();
        assert!(me.alive());
        let other = ProcessId {
            pid: me.pid,
            start_time: me.start_time + 1,
        };
        assert!(!other.alive());
        assert!(ProcessId::of(i32::MAX).is_none());
    }
}
