//! `tupper_config`: what the administrator decides, read from the paths
//! compiled into the binaries: the system configuration ([`system`]), the
//! per-user policy ([`policy`]) and the subordinate id ranges ([`subid`]).

// Issue 9: cgroup placement and limits.
pub mod cgroup_policy;
pub mod cgroups;
pub mod policy;
pub mod registries;
pub mod subid;
pub mod system;

use proto::{ErrorKind, RemoteError};

pub use system::SystemConfig;

/// Errors reading the configuration, or a refusal it implies.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration file cannot be read or parsed.
    #[error("configuration {path}: {why}")]
    Config { path: String, why: String },
    /// A system file cannot be read.
    #[error("read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A refusal with its kind (no subordinate ids, a limit reached).
    #[error("{0}")]
    Remote(#[from] RemoteError),
}

impl Error {
    /// What a helper sends back to the supervisor.
    pub fn to_remote(&self) -> RemoteError {
        match self {
            Error::Remote(r) => r.clone(),
            _ => RemoteError::new(ErrorKind::System, self.to_string()),
        }
    }
}
