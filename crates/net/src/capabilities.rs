//! Capabilities: the declared set ([`CAPS`], restricted at start by
//! `tupper_helper::start`), one raised into the effective set only around
//! the call that needs it.
//!
//! Capabilities are per thread on Linux; a thread started while the effective
//! set is empty starts with an empty effective set too, and raises what it
//! needs itself.

use caps::Capability;
use tupper_helper::HelperCaps;

use crate::error::Result;

/// Everything the helper may ever hold (`--print-caps`, the one list
/// install and packaging read):
/// - `CAP_NET_ADMIN`: links, addresses, routes and nf_tables on the host and
///   in the container netns;
/// - `CAP_SYS_ADMIN`: `setns` into the container's network and mount namespaces;
/// - `CAP_SYS_CHROOT`: `setns` into the container's mount namespace (to see its root);
/// - `CAP_DAC_OVERRIDE`: the root-owned, mode 0700 lease directory, and the
///   caller's container root in the `0700 root` store;
/// - `CAP_CHOWN`: make each new state file and directory owned by root.
///
/// Root's containers may have no user namespace: opening their namespaces
/// needs `CAP_SYS_PTRACE` (root callers only).
pub static CAPS: HelperCaps = HelperCaps {
    helper: "tupper-net",
    needed: &[
        Capability::CAP_NET_ADMIN,
        Capability::CAP_SYS_ADMIN,
        Capability::CAP_SYS_CHROOT,
        Capability::CAP_DAC_OVERRIDE,
        Capability::CAP_CHOWN,
    ],
    root_extra: &[Capability::CAP_SYS_PTRACE],
};

/// Run `f` with `wanted` raised in this thread's effective set, then put the
/// set back as it was (`tupper_helper::HelperCaps::with_caps`: declared and
/// permitted, or an error naming the `setcap` fix; aborts if it cannot lower).
pub fn with_caps<T>(wanted: &[Capability], f: impl FnOnce() -> Result<T>) -> Result<T> {
    CAPS.with_caps(wanted, f)
}
