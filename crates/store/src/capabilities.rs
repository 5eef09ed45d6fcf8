//! Capabilities: the helper's declared set ([`CAPS`], restricted at start by
//! `tupper_helper::start`) and the groups its calls raise.

use caps::Capability;
use tupper_helper::HelperCaps;

use crate::error::Result;

/// Everything `tupper-storage` may ever hold (`--print-caps`, the one list
/// install and packaging read): mount + loop device + subvolume destroy; the
/// 0700 root store; shifting ids; chmod/utimes on files of container ids;
/// setgid bits of foreign groups; file capabilities of image files. Root's only extra path is `mkfs.btrfs`,
/// which runs with root's own capabilities (bounded by this set), so no
/// extras.
pub static CAPS: HelperCaps = HelperCaps {
    helper: "tupper-storage",
    needed: &[
        Capability::CAP_SYS_ADMIN,
        Capability::CAP_DAC_OVERRIDE,
        Capability::CAP_CHOWN,
        Capability::CAP_FOWNER,
        Capability::CAP_FSETID,
        Capability::CAP_SETFCAP,
        Capability::CAP_SYS_CHROOT,
    ],
    root_extra: &[],
};

/// Working in the store: creating, opening and removing things in root-owned
/// 0700 directories and in trees owned by container ids.
pub const STORE: &[Capability] = &[Capability::CAP_DAC_OVERRIDE, Capability::CAP_FOWNER];

/// Writing image entries: create, chown to the shifted ids, chmod with
/// setuid/setgid bits, set times.
pub const EXTRACT: &[Capability] = &[
    Capability::CAP_DAC_OVERRIDE,
    Capability::CAP_CHOWN,
    Capability::CAP_FOWNER,
    Capability::CAP_FSETID,
];

/// Writing an image file's `security.capability` (rewritten as a v3
/// capability owned by the importing user), around that one call only.
pub const SETFCAP: &[Capability] = &[Capability::CAP_SETFCAP];

/// Creating store-level directories and files owned by root.
pub const STORE_CREATE: &[Capability] = &[
    Capability::CAP_DAC_OVERRIDE,
    Capability::CAP_CHOWN,
    Capability::CAP_FOWNER,
];

/// Issue 9: entering a running container's mount namespace (`setns` needs
/// both), to write through its own root mount (`cp` in).
pub const JOIN: &[Capability] = &[Capability::CAP_SYS_ADMIN, Capability::CAP_SYS_CHROOT];

/// Issue 9: making a container root's overlay. The overlay keeps these as
/// the credentials it acts on the upper layer with (after the container's
/// own checks): mounting, plus what an import needs to set owners, modes,
/// times, setuid bits and file capabilities.
pub const OVERLAY: &[Capability] = &[
    Capability::CAP_SYS_ADMIN,
    Capability::CAP_DAC_OVERRIDE,
    Capability::CAP_CHOWN,
    Capability::CAP_FOWNER,
    Capability::CAP_FSETID,
    Capability::CAP_SETFCAP,
];

/// mount(2), loop device setup, subvolume destruction.
pub const ADMIN: &[Capability] = &[Capability::CAP_SYS_ADMIN, Capability::CAP_DAC_OVERRIDE];

/// Run `f` with `wanted` raised in the effective set, then put the set back
/// as it was (`tupper_helper::HelperCaps::with_caps`: declared and permitted,
/// or an error naming the `setcap` fix; aborts if it cannot lower).
pub fn with_caps<T>(wanted: &[Capability], f: impl FnOnce() -> Result<T>) -> Result<T> {
    CAPS.with_caps(wanted, f)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every call group asks only for what the spec declares.
    #[test]
    fn call_groups_are_declared() {
        for group in [STORE, EXTRACT, SETFCAP, STORE_CREATE, ADMIN] {
            for cap in group {
                assert!(CAPS.needed.contains(cap), "{cap} is not declared");
            }
        }
    }
}
