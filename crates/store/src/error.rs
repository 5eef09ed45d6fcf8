//! The one error type of the storage helper and its mapping onto the wire.

use proto::{ErrorKind, RemoteError};
use tupper_helper::ToRemote;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Validation and channel errors from proto.
    #[error(transparent)]
    Proto(#[from] proto::Error),
    /// Configuration, policy and subordinate-id errors from `tupper-config`.
    #[error(transparent)]
    Config(#[from] tupper_config::Error),
    /// The helper runtime: a missing or undeclared capability, a failed
    /// capability call.
    #[error(transparent)]
    Helper(#[from] tupper_helper::Error),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    /// The store has not been created by the administrator yet.
    #[error("{0}")]
    NotCreated(String),
    /// A lock another command holds was not released in time.
    #[error("{0}")]
    Busy(String),
    /// A tarball entry that would escape the image or is not allowed in one.
    #[error("{0}")]
    Unsafe(String),
    /// The tarball itself cannot be read (corrupt, truncated, unknown format).
    #[error("cannot read the tarball: {0}")]
    Tarball(String),
    /// The tarball is an image archive (`docker save`, OCI layout), not a
    /// root filesystem; the message says what imports it.
    #[error("{0}")]
    NotRootfs(String),
    /// The supervisor broke the protocol (e.g. a request in the middle of an import).
    #[error("{0}")]
    Protocol(String),
    /// The channel closed in the middle of an import; nothing can be answered.
    #[error("the supervisor closed the control channel during an import")]
    ChannelClosed,
    /// A system call failed. `what` says what we tried, never a host path the
    /// caller named (the caller names no host paths at all).
    #[error("{what}: {errno}")]
    Sys {
        what: String,
        errno: nix::errno::Errno,
    },
    #[error("{what}: {why}")]
    Other { what: String, why: String },
    /// A disk quota (policy `disk`, `total_disk`) was reached or a request
    /// was over it; the message names the limit.
    #[error("{0}")]
    Quota(String),
}

impl Error {
    pub fn sys(what: impl Into<String>) -> impl FnOnce(nix::errno::Errno) -> Error {
        let what = what.into();
        move |errno| Error::Sys { what, errno }
    }

    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let what = what.into();
        move |e| match e.raw_os_error() {
            Some(code) => Error::Sys {
                what,
                errno: nix::errno::Errno::from_raw(code),
            },
            None => Error::Other {
                what,
                why: e.to_string(),
            },
        }
    }
}

impl ToRemote for Error {
    /// What the supervisor gets.
    fn to_remote(&self) -> RemoteError {
        let kind = match self {
            Error::Proto(e) => return ToRemote::to_remote(e),
            Error::Config(e) => return e.to_remote(),
            Error::Helper(e) => return e.to_remote(),
            Error::NotFound(_) => ErrorKind::NotFound,
            Error::Quota(_) => ErrorKind::Exhausted,
            Error::AlreadyExists(_) => ErrorKind::AlreadyExists,
            Error::Unsafe(_) => ErrorKind::Unsafe,
            Error::Tarball(_) | Error::NotRootfs(_) => ErrorKind::InvalidRequest,
            Error::Protocol(_) | Error::ChannelClosed => ErrorKind::Protocol,
            Error::Sys {
                errno: nix::errno::Errno::EDQUOT,
                ..
            } => {
                return RemoteError::new(
                    ErrorKind::Exhausted,
                    format!(
                        "{self} (your disk quota: the policy's total_disk; remove images or \
                         containers, or ask an administrator to raise it)"
                    ),
                )
            }
            Error::Sys {
                errno: nix::errno::Errno::ENOSPC,
                ..
            } => {
                return RemoteError::new(
                    ErrorKind::Exhausted,
                    format!("{self} (the image store is full)"),
                )
            }
            Error::Sys { .. } | Error::Other { .. } | Error::NotCreated(_) | Error::Busy(_) => {
                ErrorKind::System
            }
        };
        RemoteError::new(kind, self.to_string())
    }

    /// A close in the middle of an import: no reply, the session ends.
    fn channel_closed(&self) -> bool {
        matches!(self, Error::ChannelClosed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        let e = Error::Unsafe("x".into());
        assert_eq!(e.to_remote().kind, ErrorKind::Unsafe);
        let e = Error::sys("cannot write file")(nix::errno::Errno::ENOSPC);
        assert_eq!(e.to_remote().kind, ErrorKind::Exhausted);
        let e: Error = proto::validate::name("../x").unwrap_err().into();
        assert_eq!(e.to_remote().kind, ErrorKind::InvalidRequest);
    }
}
