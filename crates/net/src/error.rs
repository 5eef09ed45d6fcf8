//! The one error type of `tupper-net` and how each case is reported.

use proto::{ErrorKind, RemoteError};
use tupper_helper::ToRemote;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Validation and protocol errors from `proto`.
    #[error(transparent)]
    Proto(#[from] proto::Error),
    /// Configuration, policy and subordinate-id errors from `tupper-config`.
    #[error(transparent)]
    Config(#[from] tupper_config::Error),

    /// The uniform refusal for any pid the caller may not attach: foreign,
    /// root-owned, host netns, gone, already attached. Never says which.
    #[error("pid {pid} is not a container of yours")]
    NotYourContainer { pid: i32 },

    #[error("container {container} has no network lease")]
    NoLease { container: String },

    #[error("no free address left in {subnet}")]
    Exhausted { subnet: String },

    /// A lock another tupper-net (perhaps a stopped one) has held for `waited`.
    #[error("{what} is busy: another tupper-net has held its lock for {}s; try again later", waited.as_secs())]
    Busy {
        what: String,
        waited: std::time::Duration,
    },

    /// A system call failed; `what` says what we were doing.
    #[error("{what}: {source}")]
    Sys {
        what: String,
        #[source]
        source: std::io::Error,
    },

    /// A netlink request failed.
    #[error("{what}: {}", describe(source))]
    Netlink {
        what: String,
        #[source]
        source: rtnetlink::Error,
    },

    /// The helper runtime: a missing or undeclared capability (with the
    /// `setcap` fix), a failed capability call, the start-up.
    #[error(transparent)]
    Helper(#[from] tupper_helper::Error),

    /// State (lease files, interfaces) not in the shape we expect.
    #[error("{0}")]
    State(String),

    /// Something the container (or a concurrent user) already holds.
    #[error("{0}")]
    Exists(String),

    #[error("configuration: {0}")]
    InvalidConfig(String),
    /// Issue 11: a port the policy does not let the caller publish.
    #[error("{0}")]
    Refused(String),
}

impl Error {
    pub fn sys(what: impl Into<String>, source: std::io::Error) -> Self {
        Error::Sys {
            what: what.into(),
            source,
        }
    }

    /// The errno of a failed system call, `errno` style.
    pub fn last_os(what: impl Into<String>) -> Self {
        Error::sys(what, std::io::Error::last_os_error())
    }

    pub fn netlink(what: impl Into<String>, source: rtnetlink::Error) -> Self {
        Error::Netlink {
            what: what.into(),
            source,
        }
    }
}

impl ToRemote for Error {
    /// What goes back to the supervisor.
    fn to_remote(&self) -> RemoteError {
        let kind = match self {
            Error::Proto(e) => return ToRemote::to_remote(e),
            Error::Config(e) => return e.to_remote(),
            Error::Helper(e) => return e.to_remote(),
            Error::NotYourContainer { .. } | Error::Refused(_) => ErrorKind::PermissionDenied,
            Error::NoLease { .. } => ErrorKind::NotFound,
            Error::Exhausted { .. } | Error::Busy { .. } => ErrorKind::Exhausted,
            Error::Exists(_) => ErrorKind::AlreadyExists,
            Error::Sys { .. }
            | Error::Netlink { .. }
            | Error::State(_)
            | Error::InvalidConfig(_) => ErrorKind::System,
        };
        RemoteError::new(kind, self.to_string())
    }
}

/// The kernel's answer as an errno text; anything else as rtnetlink says it.
fn describe(e: &rtnetlink::Error) -> String {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.to_io().to_string(),
        other => other.to_string(),
    }
}

/// The errno a netlink request failed with, if it was the kernel that said no.
pub fn netlink_errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => Some(m.raw_code().abs()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_messages() {
        let r = Error::NotYourContainer { pid: 42 }.to_remote();
        assert_eq!(r.kind, ErrorKind::PermissionDenied);
        assert_eq!(r.message, "pid 42 is not a container of yours");
        let r = Error::NoLease {
            container: "ab".into(),
        }
        .to_remote();
        assert_eq!(r.kind, ErrorKind::NotFound);
        assert_eq!(r.message, "container ab has no network lease");
        let r = Error::Exhausted {
            subnet: "10.88.0.0/16".into(),
        }
        .to_remote();
        assert_eq!(r.kind, ErrorKind::Exhausted);
        assert_eq!(r.message, "no free address left in 10.88.0.0/16");
        let r = Error::Busy {
            what: "the lease of container ab".into(),
            waited: std::time::Duration::from_secs(3),
        }
        .to_remote();
        assert_eq!(r.kind, ErrorKind::Exhausted);
        assert_eq!(
            r.message,
            "the lease of container ab is busy: another tupper-net has held its lock for 3s; \
             try again later"
        );
        let r = Error::from(proto::validate::container_id("x").unwrap_err()).to_remote();
        assert_eq!(r.kind, ErrorKind::InvalidRequest);
    }
}
