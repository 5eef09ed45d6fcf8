//! The declared capability set of `tupper-cgroup`.

use caps::Capability;
use tupper_helper::HelperCaps;

/// Everything the helper may ever hold (`--print-caps`):
/// - `CAP_SETUID`: become effective uid 0 around the cgroup file work
///   ([`crate::tree::as_root`]). Cgroups made with effective uid 0 are
///   owned by root from the first instant (their files take the creator's
///   fsuid), so neither the caller nor a container root (a subordinate uid)
///   ever owns a limit file, not even for a moment; and cgroup v1 lets only
///   effective uid 0 (or the process's own uid) move a process, which the
///   init, already its container's root, is not.
/// - `CAP_SYS_NICE`: the v1 cpuset controller lets a process be moved only
///   by one whose permitted capabilities include the target's (a container
///   init holds all of its namespace's) or that has `CAP_SYS_NICE` over it.
///   Like `CAP_SETUID`, only in the effective set while uid 0 is.
///
/// Root callers need nothing more.
pub static CAPS: HelperCaps = HelperCaps {
    helper: "tupper-cgroup",
    needed: &[Capability::CAP_SETUID, Capability::CAP_SYS_NICE],
    root_extra: &[],
};
