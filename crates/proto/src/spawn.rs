//! Starting a helper with the other end of a control channel on [`CONTROL_FD`].

use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};

use crate::{Channel, Error, CONTROL_FD};

/// Spawn `cmd` with a new channel's far end as its [`CONTROL_FD`] and an empty
/// signal mask; returns our end and the child. The caller's other settings
/// of `cmd` (stdio, environment) are kept.
pub fn spawn_with_channel(cmd: &mut Command) -> Result<(Channel, Child), Error> {
    let (ours, theirs) = Channel::pair()?;
    let fd = theirs.as_raw_fd();
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if fd == CONTROL_FD {
                // Already in place: only clear close-on-exec.
                if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            } else if libc::dup2(fd, CONTROL_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            libc::pthread_sigmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
            Ok(())
        });
    }
    let child = cmd.spawn()?;
    // Our copy of the far end must go, or we would never see the helper hang up.
    drop(theirs);
    Ok((ours, child))
}
