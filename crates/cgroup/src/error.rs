//! The one error type of `tupper-cgroup`.

use proto::{ErrorKind, RemoteError};
use tupper_helper::ToRemote;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Proto(#[from] proto::Error),
    /// Configuration and policy (a refusal names the limit and its source).
    #[error(transparent)]
    Config(#[from] tupper_config::Error),
    #[error(transparent)]
    Helper(#[from] tupper_helper::Error),

    /// The uniform refusal for any pid the caller may not place.
    #[error("pid {pid} is not a container of yours")]
    NotYourContainer { pid: i32 },

    #[error("container {container} has no cgroup")]
    NoCgroup { container: String },

    /// A request that cannot be carried out as asked (an `update` whose
    /// memory limit would exceed the memory plus swap limit).
    #[error("{0}")]
    Invalid(String),

    /// A limit this host's cgroups cannot enforce.
    #[error("{0}")]
    Unsupported(String),

    /// A limit the kernel refused (a CPU list naming CPUs that do not exist).
    #[error("{what}: {source}")]
    Rejected {
        what: String,
        #[source]
        source: std::io::Error,
    },

    #[error("{what}: {source}")]
    Sys {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub fn sys(what: impl Into<String>, source: std::io::Error) -> Self {
        Error::Sys {
            what: what.into(),
            source,
        }
    }
}

impl ToRemote for Error {
    fn to_remote(&self) -> RemoteError {
        let kind = match self {
            Error::Proto(e) => return ToRemote::to_remote(e),
            Error::Config(e) => return e.to_remote(),
            Error::Helper(e) => return e.to_remote(),
            Error::NotYourContainer { .. } => ErrorKind::PermissionDenied,
            Error::NoCgroup { .. } => ErrorKind::NotFound,
            Error::Invalid(_) | Error::Unsupported(_) | Error::Rejected { .. } => {
                ErrorKind::InvalidRequest
            }
            Error::Sys { .. } => ErrorKind::System,
        };
        RemoteError::new(kind, self.to_string())
    }
}
