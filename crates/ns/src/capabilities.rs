//! Capabilities of the helper process: the declared set ([`CAPS`],
//! restricted at start by `tupper_helper::start`), one raised only around
//! the call that needs it.

use caps::Capability;
use tupper_helper::HelperCaps;

use crate::error::Error;
use crate::init::DEFAULT_CAPS;

/// Everything `tupper-ns` may ever hold (`--print-caps`, the one list
/// install and packaging read):
/// - `CAP_SETUID` / `CAP_SETGID`: write the init's uid/gid maps onto the
///   caller's subordinate range (what `newuidmap`/`newgidmap` do);
/// - `CAP_DAC_READ_SEARCH`: open the caller's container root inside the
///   root-only store.
///
/// Root may run without a user namespace (no subordinate range, or for
/// development): creating the namespaces and the init's mounts,
/// `pivot_root` and hostname need `CAP_SYS_ADMIN`; bringing `lo` up in a
/// network namespace of the initial user namespace needs `CAP_NET_ADMIN`;
/// and the init keeps the 14 default container capabilities
/// (`tupper_lockdown::DEFAULT_CAPS`), which must be permitted to be kept.
pub static CAPS: HelperCaps = HelperCaps {
    helper: "tupper-ns",
    needed: &[
        Capability::CAP_SETUID,
        Capability::CAP_SETGID,
        Capability::CAP_DAC_READ_SEARCH,
    ],
    root_extra: &ROOT_EXTRA,
};

/// Root's extras: `CAP_SYS_ADMIN`, `CAP_NET_ADMIN`, then the init's default
/// set, taken from its one definition.
static ROOT_EXTRA: [Capability; 2 + DEFAULT_CAPS.len()] = root_extra();

const fn root_extra() -> [Capability; 2 + DEFAULT_CAPS.len()] {
    let mut out = [Capability::CAP_SYS_ADMIN; 2 + DEFAULT_CAPS.len()];
    out[1] = Capability::CAP_NET_ADMIN;
    let mut i = 0;
    while i < DEFAULT_CAPS.len() {
        out[2 + i] = DEFAULT_CAPS[i];
        i += 1;
    }
    out
}

/// Run `f` with `wanted` raised in the effective set, then put the set back
/// as it was (`tupper_helper::HelperCaps::with_caps`: declared and permitted,
/// or an error naming the `setcap` fix; aborts if it cannot lower).
pub fn with_caps<T>(
    wanted: &[Capability],
    f: impl FnOnce() -> Result<T, Error>,
) -> Result<T, Error> {
    CAPS.with_caps(wanted, f)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A root caller without a user namespace: the init can keep its
    /// default capabilities only if the helper kept them.
    #[test]
    fn the_default_container_capabilities_are_root_extras() {
        for cap in crate::init::DEFAULT_CAPS {
            assert!(
                CAPS.root_extra.contains(&cap),
                "{cap} is kept by the init but not declared for root"
            );
        }
        assert!(CAPS.root_extra.contains(&Capability::CAP_SYS_ADMIN));
        assert!(CAPS.root_extra.contains(&Capability::CAP_NET_ADMIN));
    }
}
