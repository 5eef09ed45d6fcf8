//! Is `pid` a container of the caller? Decided race-free through a pidfd:
//! the namespaces are taken from the pidfd (or, on kernels without the pidfd
//! namespace ioctls, from `/proc/<pid>/ns` followed by a check that the pidfd
//! still refers to a live process, so a recycled pid cannot slip in).
//!
//! Every refusal is the same `NotYourContainer` error, whatever the reason.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::error::{Error, Result};
use tupper_sys::pidfd;
use tupper_sys::process::start_time as process_start_time;

use crate::leases::NsId;

/// `_IO(PIDFS_IOCTL_MAGIC = 0xFF, n)` from `linux/pidfd.h`.
const PIDFD_GET_MNT_NAMESPACE: libc::c_ulong = 0xFF03;
const PIDFD_GET_NET_NAMESPACE: libc::c_ulong = 0xFF04;
const PIDFD_GET_USER_NAMESPACE: libc::c_ulong = 0xFF09;
/// `_IO(NSIO = 0xb7, n)` from `linux/nsfs.h`.
const NS_GET_USERNS: libc::c_ulong = 0xb701;
const NS_GET_OWNER_UID: libc::c_ulong = 0xb704;

/// A verified container of the caller. The pidfd and the namespace fds keep
/// the objects that were checked; nothing is looked up by pid again.
#[derive(Debug)]
pub struct Container {
    pub pid: i32,
    pub pidfd: OwnedFd,
    pub netns: OwnedFd,
    pub netns_id: NsId,
    /// Its mount namespace, created with the network namespace (same owner);
    /// `container_root` checks what it is rooted in.
    pub mntns: OwnedFd,
    pub start_time: u64,
}

impl Container {
    /// Whether the verified process still runs.
    pub fn is_alive(&self) -> bool {
        pidfd::is_alive(&self.pidfd)
    }
}

fn own(fd: libc::c_int) -> Option<OwnedFd> {
    // SAFETY: a non-negative fd just returned by the kernel belongs to nobody else.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
}

fn ns_id_of(fd: &OwnedFd) -> Option<NsId> {
    // SAFETY: fstat into a zeroed struct we own.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    (unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } == 0).then_some(NsId {
        dev: st.st_dev,
        ino: st.st_ino,
    })
}

/// Our own namespace of a kind (`user`, `net`): a failure here is ours, not the caller's.
fn own_ns(kind: &str) -> Result<NsId> {
    let md = std::fs::metadata(format!("/proc/self/ns/{kind}"))
        .map_err(|e| Error::sys(format!("inspect our own {kind} namespace"), e))?;
    use std::os::unix::fs::MetadataExt;
    Ok(NsId {
        dev: md.dev(),
        ino: md.ino(),
    })
}

fn ns_from_pidfd(pidfd: &OwnedFd, request: libc::c_ulong) -> Option<OwnedFd> {
    // SAFETY: the pidfd namespace ioctls take no argument and return a new fd.
    own(unsafe { libc::ioctl(pidfd.as_raw_fd(), request as _, 0) })
}

fn ns_from_proc(pid: i32, kind: &str) -> Option<OwnedFd> {
    let path = CString::new(format!("/proc/{pid}/ns/{kind}")).ok()?;
    // SAFETY: open of a NUL-terminated path.
    own(unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) })
}

/// The namespace of `kind` of the process behind `pidfd`. Kernels before
/// 6.11 lack the pidfd ioctls, and newer ones refuse them for the initial
/// namespaces (a root container without a user namespace): then `/proc`.
fn target_ns(pidfd: &OwnedFd, pid: i32, request: libc::c_ulong, kind: &str) -> Option<OwnedFd> {
    ns_from_pidfd(pidfd, request).or_else(|| ns_via_proc(pidfd, pid, kind))
}

/// Fallback for kernels before 6.11: open `/proc/<pid>/ns/<kind>`. The pid
/// might have been recycled between `pidfd_open` and this open; the pidfd
/// still being alive afterwards proves the entry was the process we hold.
fn ns_via_proc(pidfd: &OwnedFd, pid: i32, kind: &str) -> Option<OwnedFd> {
    let fd = ns_from_proc(pid, kind)?;
    pidfd::is_alive(pidfd).then_some(fd)
}

/// Owner uid of a user namespace, as seen from ours.
fn owner_uid(userns: &OwnedFd) -> Option<u32> {
    let mut uid: libc::uid_t = 0;
    // SAFETY: NS_GET_OWNER_UID writes one uid_t.
    let rc = unsafe { libc::ioctl(userns.as_raw_fd(), NS_GET_OWNER_UID as _, &mut uid) };
    (rc == 0).then_some(uid)
}

/// The user namespace owning a (network) namespace.
fn owning_userns(ns: &OwnedFd) -> Option<OwnedFd> {
    // SAFETY: NS_GET_USERNS takes no argument and returns a new fd.
    own(unsafe { libc::ioctl(ns.as_raw_fd(), NS_GET_USERNS as _, 0) })
}

/// Check that `pid` is a container of `uid` that may be attached: the
/// process runs in a user namespace that is not ours and is owned by `uid`
/// (root only: or in ours), and in network and mount namespaces that are
/// not ours and are owned by that user namespace.
pub fn verify(pid: i32, uid: u32) -> Result<Container> {
    let my_user = own_ns("user")?;
    let my_net = own_ns("net")?;
    let found = if uid == 0 {
        // A root container without a user namespace keeps capabilities we
        // dropped: opening its namespaces needs CAP_SYS_PTRACE.
        crate::capabilities::with_caps(&[caps::Capability::CAP_SYS_PTRACE], || {
            Ok(check(pid, uid, my_user, my_net))
        })?
    } else {
        check(pid, uid, my_user, my_net)
    };
    found.ok_or(Error::NotYourContainer { pid })
}

fn check(pid: i32, uid: u32, my_user: NsId, my_net: NsId) -> Option<Container> {
    if pid <= 1 {
        return None;
    }
    let pidfd = pidfd::open(pid).ok()?;
    let userns = target_ns(&pidfd, pid, PIDFD_GET_USER_NAMESPACE, "user")?;
    let netns = target_ns(&pidfd, pid, PIDFD_GET_NET_NAMESPACE, "net")?;
    let mntns = target_ns(&pidfd, pid, PIDFD_GET_MNT_NAMESPACE, "mnt")?;
    let user_id = ns_id_of(&userns)?;
    let netns_id = ns_id_of(&netns)?;
    // Root may run containers without a user namespace (it holds every
    // capability already); anyone else's container has its own, owned by them.
    let root_without_userns = uid == 0 && user_id == my_user;
    if netns_id == my_net || (user_id == my_user && !root_without_userns) {
        return None;
    }
    if !root_without_userns && owner_uid(&userns)? != uid {
        return None;
    }
    if ns_id_of(&owning_userns(&netns)?)? != user_id
        || ns_id_of(&owning_userns(&mntns)?)? != user_id
        || ns_id_of(&mntns)? == own_ns("mnt").ok()?
    {
        return None;
    }
    // Start time of the process the pidfd holds: read it, then make sure the
    // pidfd is still alive, so the value belongs to that process.
    let start_time = process_start_time(pid)?;
    if !pidfd::is_alive(&pidfd) {
        return None;
    }
    Some(Container {
        pid,
        pidfd,
        netns,
        netns_id,
        mntns,
        start_time,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tupper_helper::ToRemote;

    #[test]
    fn refusals_are_uniform() {
        let me = std::process::id() as i32;
        // SAFETY: getuid cannot fail.
        let uid = unsafe { libc::getuid() };
        for pid in [-1, 0, 1, me, i32::MAX] {
            let e = verify(pid, uid).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!("pid {pid} is not a container of yours")
            );
            assert_eq!(e.to_remote().kind, proto::ErrorKind::PermissionDenied);
        }
    }

    #[test]
    fn our_own_process_is_alive() {
        let fd = pidfd::open(std::process::id() as i32).unwrap();
        assert!(pidfd::is_alive(&fd));
    }

    #[test]
    fn pidfd_ioctls_and_proc_fallback_agree() {
        let me = std::process::id() as i32;
        let fd = pidfd::open(me).unwrap();
        let via_proc = ns_via_proc(&fd, me, "net").unwrap();
        assert_eq!(ns_id_of(&via_proc).unwrap(), own_ns("net").unwrap());
        if let Some(via_ioctl) = ns_from_pidfd(&fd, PIDFD_GET_NET_NAMESPACE) {
            assert_eq!(ns_id_of(&via_ioctl), ns_id_of(&via_proc));
        }
        let user = target_ns(&fd, me, PIDFD_GET_USER_NAMESPACE, "user").unwrap();
        assert_eq!(ns_id_of(&user).unwrap(), own_ns("user").unwrap());
        assert!(owner_uid(&user).is_some());
    }

    #[test]
    fn a_dead_process_yields_nothing() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let fd = pidfd::open(pid).unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!pidfd::is_alive(&fd));
        // Even if the pid were reused, the fallback refuses: the pidfd is dead.
        assert!(ns_via_proc(&fd, pid, "net").is_none());
        assert!(target_ns(&fd, pid, PIDFD_GET_NET_NAMESPACE, "net").is_none());
    }
}
