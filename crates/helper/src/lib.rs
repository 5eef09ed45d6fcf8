//! The helper runtime: what every privileged tupperware helper
//! (`tupper-storage`, `tupper-ns`, `tupper-net`) does the same way.
//!
//! - [`hygiene`]: the start-up that resets the process state a hostile
//!   caller hands over ([`sanitize_process`]);
//! - [`capabilities`]: a declared [`HelperCaps`] per helper, restricted at
//!   start, raised around each call, failing closed;
//! - [`serve()`]: handshake and the request loop, with one error mapping
//!   ([`ToRemote`]).
//!
//! A helper's `main` is:
//!
//! ```no_run
//! # use proto::{StorageReply, StorageRequest, RemoteError};
//! # use tupper_helper::{CoreLimit, HelperCaps};
//! # static CAPS: HelperCaps = HelperCaps { helper: "tupper-x", needed: &[], root_extra: &[] };
//! fn main() -> std::process::ExitCode {
//!     // --print-caps, sanitize, restrict, the inherited channel.
//!     let mut started = match tupper_helper::start(&CAPS, CoreLimit::Zero) {
//!         Ok(s) => s,
//!         Err(e) => return tupper_helper::fail(CAPS.helper, &e),
//!     };
//!     let caller = started.caller;
//!     let served = tupper_helper::serve(&mut started.channel, |_chan, req: StorageRequest| {
//!         // validate → act, with CAPS.with_caps(&[…], || …) around each privileged call
//!         Err::<StorageReply, _>(RemoteError::new(proto::ErrorKind::InvalidRequest, "todo"))
//!     });
//!     match served {
//!         Ok(_) => std::process::ExitCode::SUCCESS,
//!         Err(e) => tupper_helper::fail(CAPS.helper, &e),
//!     }
//! }
//! ```
//!
//! The unprivileged supervisor never links this crate.

pub mod capabilities;
pub mod error;
pub mod hygiene;
pub mod serve;

use std::io::Write;

pub use capabilities::{cap_name, wants_print_caps, CapSys, HelperCaps, Kernel, Set};
pub use error::{Error, ToRemote};
pub use hygiene::{
    close_fds_from, limit_too_low, reset_signals_except, sanitize_process, sanitize_process_with,
    Caller, CallerLimits, CoreLimit, REQUIRED_LIMITS,
};
pub use serve::{serve, serve_one, Served};

/// A helper after its start-up, ready to [`serve()`].
#[derive(Debug)]
pub struct Started {
    /// The real uid/gid: who asked.
    pub caller: Caller,
    /// The caller's soft limits (for a container init to restore).
    pub limits: CallerLimits,
    /// The control channel on fd 3, not yet handshaken.
    pub channel: proto::Channel,
}

/// Every helper's start, in this order: `--print-caps` (prints and exits),
/// [`sanitize_process_with`]`(core)`, [`HelperCaps::restrict`] for the
/// caller, then the inherited control channel. Call it first in `main`,
/// before any thread starts.
pub fn start(spec: &HelperCaps, core: CoreLimit) -> Result<Started, Error> {
    spec.print_caps_if_asked();
    let (caller, limits) = sanitize_process_with(core)?;
    spec.restrict(caller)?;
    let channel = proto::Channel::from_inherited().map_err(|source| Error::Channel {
        what: "cannot start",
        source,
    })?;
    Ok(Started {
        caller,
        limits,
        channel,
    })
}

/// Report a failure nobody can be answered about on stderr
/// (`tupper-net: …`) and return the failure exit code.
pub fn fail(helper: &str, e: &dyn std::fmt::Display) -> std::process::ExitCode {
    let _ = writeln!(std::io::stderr(), "{helper}: {e}");
    std::process::ExitCode::FAILURE
}

/// The README's code blocks (the three helpers' specs) are compiled and run
/// as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
