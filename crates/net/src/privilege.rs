//! Capabilities: keep only what `tupper-net` needs in the permitted set and
//! raise one into the effective set only around the call that needs it.
//!
//! Capabilities are per thread on Linux; a thread started while the effective
//! set is empty starts with an empty effective set too.

use caps::{CapSet, Capability, CapsHashSet};

use crate::error::{Error, Result};

/// Everything the helper may ever use:
/// - `CAP_NET_ADMIN`: links, addresses and routes on the host and in the container netns;
/// - `CAP_SYS_ADMIN`: `setns` into the container's network and mount namespaces;
/// - `CAP_SYS_CHROOT`: `setns` into the container's mount namespace (to see its root);
/// - `CAP_DAC_OVERRIDE`: the root-owned, mode 0700 lease directory, and the
///   caller's container root in the `0700 root` store;
/// - `CAP_CHOWN`: make each new state file and directory owned by root.
pub const NEEDED: [Capability; 5] = [
    Capability::CAP_NET_ADMIN,
    Capability::CAP_SYS_ADMIN,
    Capability::CAP_SYS_CHROOT,
    Capability::CAP_DAC_OVERRIDE,
    Capability::CAP_CHOWN,
];

/// The `setcap` string the binary is installed with.
pub const SETCAP: &str = "cap_net_admin,cap_sys_admin,cap_sys_chroot,cap_dac_override,cap_chown";

fn caps_err(what: &str, e: caps::errors::CapsError) -> Error {
    Error::sys(what, std::io::Error::other(e.to_string()))
}

/// Drop from the permitted set everything not in [`NEEDED`], empty the
/// effective, inheritable and ambient sets. Call once, before any thread starts.
pub fn restrict_to_needed() -> Result<()> {
    let permitted = caps::read(None, CapSet::Permitted)
        .map_err(|e| caps_err("read the permitted capabilities", e))?;
    // Root holds every capability anyway; it keeps CAP_SYS_PTRACE to inspect
    // the namespaces of its own containers, which run without a user namespace.
    // SAFETY: getuid cannot fail.
    let root = unsafe { libc::getuid() } == 0;
    let keep: CapsHashSet = permitted
        .into_iter()
        .filter(|c| NEEDED.contains(c) || (root && *c == Capability::CAP_SYS_PTRACE))
        .collect();
    caps::clear(None, CapSet::Effective)
        .map_err(|e| caps_err("clear effective capabilities", e))?;
    caps::set(None, CapSet::Permitted, &keep)
        .map_err(|e| caps_err("drop unneeded capabilities", e))?;
    caps::clear(None, CapSet::Inheritable)
        .map_err(|e| caps_err("clear inheritable capabilities", e))?;
    caps::clear(None, CapSet::Ambient).map_err(|e| caps_err("clear ambient capabilities", e))?;
    Ok(())
}

/// Run `f` with `wanted` raised in this thread's effective set, then restore
/// the previous effective set whatever `f` returned.
pub fn with_caps<T>(wanted: &[Capability], f: impl FnOnce() -> Result<T>) -> Result<T> {
    let before = caps::read(None, CapSet::Effective)
        .map_err(|e| caps_err("read the effective capabilities", e))?;
    let permitted = caps::read(None, CapSet::Permitted)
        .map_err(|e| caps_err("read the permitted capabilities", e))?;
    for cap in wanted {
        if !permitted.contains(cap) {
            return Err(Error::MissingCapability {
                cap: cap.to_string().to_lowercase(),
                setcap: SETCAP,
            });
        }
    }
    let mut raised = before.clone();
    raised.extend(wanted.iter().copied());
    caps::set(None, CapSet::Effective, &raised).map_err(|e| caps_err("raise capabilities", e))?;
    let out = f();
    // Lowering can only fail if the kernel refuses to shrink a set, which it
    // never does; still, never continue with raised capabilities.
    if let Err(e) = caps::set(None, CapSet::Effective, &before) {
        eprintln!("tupper-net: cannot lower capabilities ({e}); exiting");
        std::process::exit(125);
    }
    out
}
