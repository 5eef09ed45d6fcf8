//! The tupperware control protocol.
//!
//! Every helper (`tupper-storage`, `tupper-ns`, `tupper-net`) is spawned by the
//! unprivileged supervisor with a control channel on file descriptor
//! [`CONTROL_FD`]. Both ends first exchange a [`Hello`]; after that the
//! supervisor sends requests and the helper answers each with a
//! `Result<Reply, RemoteError>`.
//!
//! This crate is the only place that knows the wire encoding, so the encoder
//! can be replaced without touching a helper.

mod caller;
// Issue 9: the cgroup helper's messages.
pub mod cgroup;
pub mod error;
pub mod frame;
pub mod messages;
pub mod mount_spec;
// Issue 11 (engineer "net"): published ports.
pub mod ports;
// Image references and digests (issue 10, engineer "oci").
pub mod reference;
pub mod security;
pub mod spawn;
pub mod validate;

pub use caller::Caller;
pub use error::{Error, ErrorKind, RemoteError};
pub use frame::{Channel, MAX_FRAME_LEN};
pub use messages::*;
pub use mount_spec::{BindSource, MountKind, MountSpec, MAX_MOUNTS, MAX_TMPFS_SIZE};
pub use security::{BpfInstruction, SpawnSecurity};

/// Version of the protocol spoken by this build. Bump on any message change.
pub const PROTOCOL_VERSION: u32 = 9;

/// The file descriptor on which every helper finds its control channel.
pub const CONTROL_FD: i32 = 3;
