//! The one error type of `tupper-ns`, and how each error reaches the supervisor.

use proto::{ErrorKind, RemoteError};
use tupper_helper::ToRemote;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Protocol and validation errors from `proto`.
    #[error(transparent)]
    Proto(#[from] proto::Error),
    /// Configuration, policy and subordinate-id errors from `tupper-config`.
    #[error(transparent)]
    Config(#[from] tupper_config::Error),
    /// An error that already carries its kind and user-facing message.
    #[error("{0}")]
    Remote(#[from] RemoteError),
    /// A system call failed; `what` says what we were doing, never naming a
    /// host path the caller did not choose.
    #[error("{what}: {source}")]
    Sys {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The caller has no such container. Same message whether the store
    /// entry is missing, a symlink or anything else.
    #[error("container {0} has no root filesystem")]
    NoRootfs(String),
    /// A file or directory inside the container that setup must not use.
    #[error("{0}")]
    Unsafe(String),
    /// The helper runtime: a missing or undeclared capability (with the
    /// `setcap` fix), a failed capability call, the start-up.
    #[error(transparent)]
    Helper(#[from] tupper_helper::Error),
    /// The supervisor sent something else than what this step expects.
    #[error("unexpected request: expected {0}")]
    UnexpectedRequest(&'static str),
    /// The lock-down shared with `exec`: capabilities, `-u`, seccomp.
    #[error(transparent)]
    Lockdown(#[from] tupper_lockdown::Error),
    /// The container init went away during setup.
    #[error("the container init exited during setup")]
    InitGone,
}

impl Error {
    /// A closure turning an `io::Error` into [`Error::Sys`] with context.
    pub fn sys(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let what = what.into();
        move |source| Error::Sys { what, source }
    }
}

impl ToRemote for Error {
    /// What the supervisor receives.
    fn to_remote(&self) -> RemoteError {
        let kind = match self {
            Error::Proto(e) => return ToRemote::to_remote(e),
            Error::Config(e) => return e.to_remote(),
            Error::Remote(r) => return r.clone(),
            Error::Helper(e) => return e.to_remote(),
            Error::Lockdown(e) => return e.to_remote(),
            Error::NoRootfs(_) => ErrorKind::NotFound,
            Error::Unsafe(_) => ErrorKind::Unsafe,
            Error::UnexpectedRequest(_) => ErrorKind::Protocol,
            Error::Sys { .. } | Error::InitGone => ErrorKind::System,
        };
        RemoteError::new(kind, self.to_string())
    }
}

/// Attach context to results of `std` (`io::Error`) and `nix` (`Errno`) calls.
pub trait Context<T> {
    fn ctx(self, what: impl Into<String>) -> Result<T, Error>;
}

impl<T> Context<T> for std::io::Result<T> {
    fn ctx(self, what: impl Into<String>) -> Result<T, Error> {
        self.map_err(Error::sys(what))
    }
}

impl<T> Context<T> for nix::Result<T> {
    fn ctx(self, what: impl Into<String>) -> Result<T, Error> {
        self.map_err(|e| Error::sys(what)(std::io::Error::from(e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_messages() {
        let e = Error::NoRootfs("ab".into()).to_remote();
        assert_eq!(e.kind, ErrorKind::NotFound);
        assert_eq!(e.message, "container ab has no root filesystem");
        let e = Error::sys("mount proc on /proc")(std::io::Error::from_raw_os_error(libc::EPERM));
        let r = e.to_remote();
        assert_eq!(r.kind, ErrorKind::System);
        assert!(
            r.message.starts_with("mount proc on /proc: "),
            "{}",
            r.message
        );
        let v = Error::from(proto::validate::container_id("../x").unwrap_err()).to_remote();
        assert_eq!(v.kind, ErrorKind::InvalidRequest);
    }
}
