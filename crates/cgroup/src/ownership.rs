//! Is `pid` a process in a container of the caller? Decided through a
//! pidfd: the process's user namespace (from the pidfd, or from
//! `/proc/<pid>/ns/user` followed by a check that the pidfd still refers to
//! a live process, so a recycled pid cannot slip in) must not be ours and
//! must be owned by the caller. Every refusal is the same
//! `NotYourContainer` error.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use tupper_sys::pidfd;

use crate::error::{Error, Result};

/// `_IO(PIDFS_IOCTL_MAGIC = 0xFF, 9)`: the user namespace of a pidfd.
const PIDFD_GET_USER_NAMESPACE: libc::c_ulong = 0xFF09;
/// `_IO(NSIO = 0xb7, 4)`.
const NS_GET_OWNER_UID: libc::c_ulong = 0xb704;

fn own(fd: libc::c_int) -> Option<OwnedFd> {
    // SAFETY: a non-negative fd just returned by the kernel belongs to nobody else.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
}

fn ino(fd: &OwnedFd) -> Option<(u64, u64)> {
    // SAFETY: fstat into a zeroed struct we own.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    (unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } == 0).then_some((st.st_dev, st.st_ino))
}

fn user_ns(pidfd: &OwnedFd, pid: i32) -> Option<OwnedFd> {
    // SAFETY: the ioctl takes no argument and returns a new fd.
    if let Some(fd) =
        own(unsafe { libc::ioctl(pidfd.as_raw_fd(), PIDFD_GET_USER_NAMESPACE as _, 0) })
    {
        return Some(fd);
    }
    let f = std::fs::File::open(format!("/proc/{pid}/ns/user")).ok()?;
    pidfd::is_alive(pidfd).then(|| OwnedFd::from(f))
}

/// The verified process: its pidfd holds it while the helper works.
#[derive(Debug)]
pub struct Process {
    pub pid: i32,
    pub pidfd: OwnedFd,
}

impl Process {
    pub fn is_alive(&self) -> bool {
        pidfd::is_alive(&self.pidfd)
    }
}

/// Check that `pid` runs in a user namespace owned by `uid` other than ours.
/// Root's containers may share our user namespace: for root, any live
/// process other than init qualifies (root can move processes anyway).
///
/// Issue 11: a container init is placed while it sets itself up. Changing
/// its credentials there makes it briefly not dumpable (the kernel resets
/// that on every change; the init sets it again at once), and then its
/// namespaces cannot be read: a live process whose namespace cannot be read
/// is asked again for at most [`UNREADABLE_WAIT`]. Any other answer is final.
pub fn verify(pid: i32, uid: u32) -> Result<Process> {
    let deadline = std::time::Instant::now() + UNREADABLE_WAIT;
    loop {
        match look(pid, uid) {
            Look::Ours(p) => return Ok(p),
            Look::Unreadable if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_micros(500));
            }
            Look::Unreadable | Look::NotOurs => return Err(Error::NotYourContainer { pid }),
        }
    }
}

/// How long [`verify`] asks again about a live process whose namespace it
/// may not read.
const UNREADABLE_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// For `Join` (`exec`): a container process of the caller as [`verify`]
/// says, or a process all of whose uids are the caller's — the `exec`
/// joiner, which is not dumpable (so its namespaces cannot be read) and
/// still has the caller's ids. Moving one's own process into one's own
/// container's cgroups only limits it more.
pub fn verify_joiner(pid: i32, uid: u32) -> Result<Process> {
    check(pid, uid)
        .or_else(|| own_process(pid, uid))
        .ok_or(Error::NotYourContainer { pid })
}

fn own_process(pid: i32, uid: u32) -> Option<Process> {
    if pid <= 1 {
        return None;
    }
    let pidfd = pidfd::open(pid).ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let uids: Vec<u32> = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    // The status read belongs to the process the pidfd holds if it still lives.
    (uids.len() == 4 && uids.iter().all(|u| *u == uid) && pidfd::is_alive(&pidfd))
        .then_some(Process { pid, pidfd })
}

fn check(pid: i32, uid: u32) -> Option<Process> {
    match look(pid, uid) {
        Look::Ours(p) => Some(p),
        _ => None,
    }
}

/// What [`look`] found.
enum Look {
    Ours(Process),
    NotOurs,
    /// Alive, but its user namespace cannot be read (not dumpable).
    Unreadable,
}

fn look(pid: i32, uid: u32) -> Look {
    if pid <= 1 {
        return Look::NotOurs;
    }
    let Ok(pidfd) = pidfd::open(pid) else {
        return Look::NotOurs;
    };
    if uid != 0 {
        let Some(userns) = user_ns(&pidfd, pid) else {
            return if pidfd::is_alive(&pidfd) {
                Look::Unreadable
            } else {
                Look::NotOurs
            };
        };
        let Some(mine) = std::fs::File::open("/proc/self/ns/user")
            .ok()
            .map(OwnedFd::from)
        else {
            return Look::NotOurs;
        };
        match (ino(&userns), ino(&mine)) {
            (Some(theirs), Some(ours)) if theirs != ours => {}
            _ => return Look::NotOurs,
        }
        let mut owner: libc::uid_t = u32::MAX;
        // SAFETY: NS_GET_OWNER_UID writes one uid_t.
        if unsafe { libc::ioctl(userns.as_raw_fd(), NS_GET_OWNER_UID as _, &mut owner) } != 0
            || owner != uid
        {
            return Look::NotOurs;
        }
    }
    if pidfd::is_alive(&pidfd) {
        Look::Ours(Process { pid, pidfd })
    } else {
        Look::NotOurs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_uniform() {
        let me = std::process::id() as i32;
        // SAFETY: getuid cannot fail.
        let uid = unsafe { libc::getuid() };
        if uid == 0 {
            return; // root may place its own processes
        }
        for pid in [-1, 0, 1, me, i32::MAX] {
            let e = verify(pid, uid).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!("pid {pid} is not a container of yours")
            );
        }
    }
}
