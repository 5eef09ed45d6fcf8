use serde::{Deserialize, Serialize};

/// What went wrong, in a form the supervisor can map to a message and an exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorKind {
    /// The request is malformed or names something invalid.
    InvalidRequest,
    /// The named object (image, container, lease) does not exist for this caller.
    NotFound,
    /// The named object exists already.
    AlreadyExists,
    /// The caller may not do this (foreign pid, foreign container, host netns).
    PermissionDenied,
    /// The caller has no `/etc/subuid` or `/etc/subgid` range.
    NoSubordinateIds,
    /// Input that would escape its tree or is otherwise unsafe (tarball entries).
    Unsafe,
    /// A limit was reached (addresses, disk, policy counts).
    Exhausted,
    /// The container command does not exist.
    CommandNotFound,
    /// The container command exists but cannot be executed.
    NotExecutable,
    /// The peer violated the protocol.
    Protocol,
    /// The system refused an operation.
    System,
}

/// An error reported by a helper over the channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct RemoteError {
    pub kind: ErrorKind,
    /// A user-facing sentence; never contains host paths the caller did not name.
    pub message: String,
}

impl RemoteError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        RemoteError {
            kind,
            message: message.into(),
        }
    }
}

/// Errors of the protocol layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("control channel: {0}")]
    Io(#[from] std::io::Error),
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge { len: u64, max: u32 },
    #[error("malformed message: {0}")]
    Decode(String),
    #[error("cannot encode message: {0}")]
    Encode(String),
    #[error("protocol version mismatch: we speak {ours}, the peer speaks {theirs}")]
    VersionMismatch { ours: u32, theirs: u32 },
    #[error("the peer closed the control channel")]
    Closed,
    #[error("{0}")]
    Remote(#[from] RemoteError),
    #[error("{what}: {why}")]
    Invalid { what: String, why: String },
}

impl Error {
    pub fn invalid(what: impl Into<String>, why: impl Into<String>) -> Self {
        Error::Invalid {
            what: what.into(),
            why: why.into(),
        }
    }

    /// Turn any error into what a helper sends back to the supervisor.
    pub fn to_remote(&self) -> RemoteError {
        match self {
            Error::Remote(r) => r.clone(),
            Error::Invalid { .. } => RemoteError::new(ErrorKind::InvalidRequest, self.to_string()),
            Error::Decode(_) | Error::FrameTooLarge { .. } | Error::VersionMismatch { .. } => {
                RemoteError::new(ErrorKind::Protocol, self.to_string())
            }
            _ => RemoteError::new(ErrorKind::System, self.to_string()),
        }
    }
}
