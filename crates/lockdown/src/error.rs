//! The one error type of `tupper-lockdown`.

use proto::{ErrorKind, RemoteError};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A system call failed; `what` says what we were doing.
    #[error("{what}: {source}")]
    Sys {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// A file of the container that must not be used as it is.
    #[error("{0}")]
    Unsafe(String),
    /// `-u` names a user or group the container does not have or cannot
    /// map (podman answers 126: cannot execute).
    #[error("{0}")]
    NoSuchUser(String),
}

impl Error {
    /// A closure turning an `io::Error` into [`Error::Sys`] with context.
    pub fn sys(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let what = what.into();
        move |source| Error::Sys { what, source }
    }

    /// What a supervisor shows for it, with the kind that picks the exit
    /// status.
    pub fn to_remote(&self) -> RemoteError {
        let kind = match self {
            Error::Sys { .. } => ErrorKind::System,
            Error::Unsafe(_) => ErrorKind::Unsafe,
            Error::NoSuchUser(_) => ErrorKind::NotExecutable,
        };
        RemoteError::new(kind, self.to_string())
    }
}

/// Attach context to results of `std` and `nix` calls.
pub(crate) trait Context<T> {
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
