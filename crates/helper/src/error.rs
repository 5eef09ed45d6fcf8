//! The one error type of the helper runtime, and the one mapping of any
//! helper error onto what the supervisor receives.

use proto::{ErrorKind, RemoteError};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A capability a call asked for is not in the permitted set. `fix`
    /// says what to do (for a declared capability: the `setcap` line).
    #[error("{helper} lacks {caps}; {fix}")]
    MissingCapability {
        helper: &'static str,
        /// The missing capabilities, `setcap` spelling (`cap_net_admin`).
        caps: String,
        fix: String,
    },
    /// A call asked for a capability the helper's spec does not declare:
    /// a bug in the helper, refused even when the capability is held.
    #[error("{helper} asked for {cap}, which its capability spec does not declare (a bug)")]
    Undeclared { helper: &'static str, cap: String },
    /// A capability system call failed.
    #[error("{helper}: {what}: {source}")]
    Capabilities {
        helper: &'static str,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The start-up hygiene refused the process state the caller handed us.
    #[error("start-up: {0}")]
    StartUp(String),
    /// Another system call of the start-up failed.
    #[error("{what}: {source}")]
    Sys {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The control channel failed (not a socket, handshake, send, decode).
    #[error("{what}: {source}")]
    Channel {
        what: &'static str,
        #[source]
        source: proto::Error,
    },
    /// The supervisor broke the protocol; it was told so, and the session ended.
    #[error("the supervisor broke the protocol: {0}")]
    Protocol(RemoteError),
    /// The supervisor closed the channel in the middle of a request: nothing
    /// could be answered.
    #[error("the supervisor closed the control channel during a request: {0}")]
    ChannelLost(String),
}

/// How a helper's error reaches the supervisor. Every helper error type
/// implements this once; [`crate::serve`] uses it for every reply.
pub trait ToRemote {
    /// The kind and user-facing message sent back. Never a host path the
    /// caller did not name.
    fn to_remote(&self) -> RemoteError;

    /// `true` when the control channel can carry no reply any more (the
    /// supervisor closed it in the middle of a request): the serve loop ends
    /// without answering.
    fn channel_closed(&self) -> bool {
        false
    }
}

impl ToRemote for RemoteError {
    fn to_remote(&self) -> RemoteError {
        self.clone()
    }
}

impl ToRemote for proto::Error {
    fn to_remote(&self) -> RemoteError {
        proto::Error::to_remote(self)
    }

    fn channel_closed(&self) -> bool {
        matches!(self, proto::Error::Closed)
    }
}

impl ToRemote for Error {
    fn to_remote(&self) -> RemoteError {
        match self {
            Error::Channel { source, .. } => source.to_remote(),
            Error::Protocol(r) => r.clone(),
            Error::StartUp(_) => RemoteError::new(ErrorKind::InvalidRequest, self.to_string()),
            Error::ChannelLost(_) => RemoteError::new(ErrorKind::Protocol, self.to_string()),
            Error::MissingCapability { .. }
            | Error::Undeclared { .. }
            | Error::Capabilities { .. }
            | Error::Sys { .. } => RemoteError::new(ErrorKind::System, self.to_string()),
        }
    }

    fn channel_closed(&self) -> bool {
        match self {
            Error::ChannelLost(_) => true,
            Error::Channel { source, .. } => source.channel_closed(),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        let e = Error::MissingCapability {
            helper: "tupper-net",
            caps: "cap_net_admin".into(),
            fix: "install it".into(),
        };
        assert_eq!(e.to_remote().kind, ErrorKind::System);
        assert_eq!(
            e.to_remote().message,
            "tupper-net lacks cap_net_admin; install it"
        );
        let e = Error::Channel {
            what: "reading a request",
            source: proto::Error::Decode("x".into()),
        };
        assert_eq!(e.to_remote().kind, ErrorKind::Protocol);
        assert!(!e.channel_closed());
        let e = Error::Channel {
            what: "reading a request",
            source: proto::Error::Closed,
        };
        assert!(e.channel_closed());
        assert!(Error::ChannelLost("x".into()).channel_closed());
        let r = RemoteError::new(ErrorKind::NotFound, "gone");
        assert_eq!(ToRemote::to_remote(&r), r);
        assert!(!r.channel_closed());
    }
}
