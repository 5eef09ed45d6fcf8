//! Cloning the container init and, on the helper's side, seeing it through
//! its setup.

use std::os::fd::{FromRawFd, OwnedFd};

use caps::Capability;
use proto::NsReply;
use tupper_config::subid::IdMapping;

use crate::capabilities::with_caps;
use crate::error::Error;
use crate::idmap;
use crate::sync::ParentEnd;
use tupper_sys as sys;

/// Which side of the clone we are on.
pub enum Forked {
    /// The helper; the init's host pid and a pidfd for it.
    Parent { pid: i32, pidfd: OwnedFd },
    /// The container init.
    Child,
}

/// A fork-like `clone` into new mount/uts/ipc/net/pid (and user) namespaces.
///
/// `CLONE_PARENT` makes the init a child of the supervisor, so the helper can
/// exit once the init is set up. The helper is single-threaded, which keeps a
/// raw clone as safe as `fork`.
/// With `host_network` the init stays in the caller's network namespace.
pub fn clone_init(user_namespace: bool, host_network: bool) -> Result<Forked, Error> {
    let mut flags = libc::CLONE_NEWNS
        | libc::CLONE_NEWUTS
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWPID
        | libc::CLONE_PARENT
        | libc::CLONE_PIDFD
        | libc::SIGCHLD;
    if user_namespace {
        flags |= libc::CLONE_NEWUSER;
    }
    if !host_network {
        flags |= libc::CLONE_NEWNET;
    }
    let mut pidfd: libc::c_int = -1;
    let mut do_clone = || {
        // SAFETY: fork-like clone (no new stack, no shared memory) in a
        // single-threaded process; pidfd is a valid int pointer.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_clone,
                flags as libc::c_ulong,
                0usize,
                &mut pidfd as *mut libc::c_int,
                0usize,
                0usize,
            )
        };
        if rc < 0 {
            return Err(Error::sys("create the container namespaces")(
                std::io::Error::last_os_error(),
            ));
        }
        Ok(rc as i32)
    };
    let pid = if user_namespace {
        do_clone()?
    } else {
        // Without a user namespace, only CAP_SYS_ADMIN creates namespaces (root only).
        with_caps(&[Capability::CAP_SYS_ADMIN], do_clone)?
    };
    if pid == 0 {
        return Ok(Forked::Child);
    }
    // SAFETY: CLONE_PIDFD stored a new descriptor we own.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    Ok(Forked::Parent { pid, pidfd })
}

/// Helper side: once the init is ready (it made itself dumpable, so the
/// other helpers' checks of it work), tell the supervisor its pid (issue
/// 11: its cgroups are joined while it sets itself up); write the id maps,
/// wait for its setup, and kill it if anything fails.
pub fn see_through_setup(
    chan: &mut proto::Channel,
    pid: i32,
    pidfd: &OwnedFd,
    mut sync: ParentEnd,
    mapping: Option<IdMapping>,
) -> Result<NsReply, Error> {
    let result = (|| {
        sync.wait_ready()?;
        chan.send(&Ok::<NsReply, proto::RemoteError>(NsReply::Cloned { pid }))?;
        if let Some(mapping) = &mapping {
            idmap::write(pid, pidfd, mapping)?;
        }
        sync.maps_written()?;
        sync.wait_setup_done()
    })();
    if result.is_err() {
        // The init is a child of the supervisor, which reaps it.
        let _ = sys::pidfd::send_signal(pidfd, libc::SIGKILL);
    }
    result.map(|()| NsReply::Spawned { pid })
}
