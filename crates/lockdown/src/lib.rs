//! `tupper_lockdown`: what a container process may do, applied last before
//! `execve`, shared by the container init (`tupper-ns`) and `exec` (the
//! unprivileged supervisor), so both lock a command down the same way:
//!
//! - [`privileges`]: bounding set, capabilities, the user of `-u`,
//!   `no_new_privs`, the seccomp filter, in that order;
//! - [`user`]: `-u USER[:GROUP]` from the container's own passwd and group;
//! - [`exec`]: the environment defaults, `PATH` search and the 126/127
//!   statuses of a command that cannot be executed.
//!
//! It links neither the helper runtime nor anything privileged: every step
//! acts on the calling process only.

mod error;
pub mod exec;
pub mod privileges;
pub mod user;

pub use error::Error;
pub use privileges::DEFAULT_CAPS;
pub use user::User;

/// Steps 1 of [`privileges`]: the bounding set reduced to the container's
/// capabilities, inheritable and ambient sets empty. Returns what the
/// container keeps, for [`finish`].
pub fn begin(sec: &proto::SpawnSecurity) -> Result<privileges::Keep, Error> {
    let keep = privileges::container_caps(sec);
    privileges::reduce_bounding_set(&keep)?;
    Ok(keep)
}

/// Steps 3–5 of [`privileges`]: the user of `-u`, `no_new_privs` when
/// asked for, and the seccomp filter, last. (Step 2, descriptors, signals
/// and limits, belongs to the caller: the init and `exec` differ there.)
pub fn finish(
    keep: &privileges::Keep,
    user: Option<&User>,
    sec: &proto::SpawnSecurity,
) -> Result<(), Error> {
    privileges::become_user(user, keep, sec)?;
    privileges::no_new_privs(sec)?;
    if let Some(program) = &sec.seccomp {
        privileges::install_filter(program)?;
    }
    Ok(())
}
