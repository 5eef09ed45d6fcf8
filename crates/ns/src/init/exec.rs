//! The last steps before the command runs: the shared lock-down
//! (`tupper-lockdown`) around what only the helper does (descriptors,
//! signals, the caller's limits), and `execve`.

use proto::{RemoteError, SpawnRequest};
use tupper_lockdown::User;

use crate::error::Error;

/// Reduce capabilities to the container's set, close every descriptor but
/// stdio and the (close-on-exec) control channel, become the user of `-u`,
/// set no_new_privs if asked to, and install the seccomp filter last (see
/// `tupper_lockdown::privileges` for the order).
pub fn lock_down(
    caller_limits: &tupper_helper::CallerLimits,
    sec: &proto::SpawnSecurity,
    user: Option<&User>,
) -> Result<(), Error> {
    let keep = tupper_lockdown::begin(sec)?;
    tupper_helper::close_fds_from(proto::CONTROL_FD + 1)?;
    // Default dispositions and an empty mask for the command: ignored
    // signals survive `execve`, and the Rust runtime ignores `SIGPIPE`.
    tupper_helper::reset_signals_except(&[]);
    // The caller's own soft limits (the helper raised them, and lowered the
    // core limit, for itself).
    caller_limits.restore_soft_limits();
    tupper_lockdown::finish(&keep, user, sec)?;
    Ok(())
}

/// Execute the command; returns only on failure.
pub fn exec_command(req: &SpawnRequest, home: Option<&str>) -> (RemoteError, i32) {
    let env = tupper_lockdown::exec::environment(&req.env, &req.hostname, home, req.tty);
    tupper_lockdown::exec::exec_command(&req.command, &env)
}
