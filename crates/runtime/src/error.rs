//! The supervisor's error type and its mapping to exit statuses.

use proto::{ErrorKind, RemoteError};

/// Exit status for a failure of tupperware itself (as docker).
pub const EXIT_RUNTIME: i32 = 125;
/// The command was found but could not be executed.
pub const EXIT_NOT_EXECUTABLE: i32 = 126;
/// The command was not found.
pub const EXIT_NOT_FOUND: i32 = 127;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A helper answered with an error, or its channel failed.
    #[error("{helper}: {source}")]
    Helper {
        helper: &'static str,
        #[source]
        source: proto::Error,
    },
    /// The container command could not be executed.
    #[error("{0}")]
    Exec(RemoteError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(#[from] proto::Error),
    #[error("{0}")]
    User(String),
    /// A state file written in a format this build does not know.
    #[error(
        "{what} {path} has version {version}, which this tupper-supervisor does not know \
         (it reads version {known}); it was written by another version of tupperware"
    )]
    UnknownVersion {
        what: &'static str,
        path: String,
        version: u32,
        known: u32,
    },
}

impl Error {
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            what: what.into(),
            source,
        }
    }

    pub fn user(msg: impl Into<String>) -> Self {
        Error::User(msg.into())
    }

    /// The remote error kind, when a helper reported one.
    pub fn remote_kind(&self) -> Option<ErrorKind> {
        match self {
            Error::Helper {
                source: proto::Error::Remote(r),
                ..
            } => Some(r.kind),
            Error::Exec(r) => Some(r.kind),
            _ => None,
        }
    }

    pub fn exit_code(&self) -> i32 {
        match self.remote_kind() {
            Some(ErrorKind::CommandNotFound) => EXIT_NOT_FOUND,
            Some(ErrorKind::NotExecutable) => EXIT_NOT_EXECUTABLE,
            _ => EXIT_RUNTIME,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;
