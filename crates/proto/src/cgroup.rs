//! Requests and replies of `tupper-cgroup` (issue 9), kept apart from the
//! other helpers' enums.
//!
//! The helper places a verified container process of the caller into
//! `<parent>/user-<uid>/<container>` in every cgroup hierarchy it uses,
//! writes the limits (checked against the policy), and removes the
//! container's cgroups again.

use serde::{Deserialize, Serialize};

/// Limits of one container, podman's meaning; `None` is "not asked" (the
/// policy's default applies).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupLimits {
    /// Memory, bytes (`--memory`).
    pub memory: Option<u64>,
    /// Memory plus swap, bytes (`--memory-swap`); `Some(u64::MAX)` is
    /// unlimited swap (`-1`).
    pub memory_swap: Option<u64>,
    /// Processes and threads (`--pids-limit`).
    pub pids: Option<u64>,
    /// CPU time in thousandths of a CPU (`--cpus 0.5` is 500).
    pub millicpus: Option<u64>,
    /// Relative CPU weight, v1 shares 2–262144 (`--cpu-shares`).
    pub cpu_shares: Option<u64>,
    /// Relative CPU weight, v2 1–10000 (`--cpu-weight`).
    pub cpu_weight: Option<u64>,
    /// CPUs the container may run on, `0-3,5` (`--cpuset-cpus`).
    pub cpuset_cpus: Option<String>,
}

/// Longest `--cpuset-cpus` list accepted.
pub const MAX_CPUSET_LEN: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CgroupRequest {
    /// Create the caller's container cgroups (the per-user one too, if
    /// missing), write the limits and move `pid` (a container init of the
    /// caller, checked through a pidfd) into them.
    Create {
        container: String,
        pid: i32,
        limits: CgroupLimits,
    },
    /// Move `pid` (a process in a container of the caller) into the
    /// container's existing cgroups (`exec`).
    Join { container: String, pid: i32 },
    /// Kill what is left in the container's cgroups and remove them; report
    /// whether the kernel's OOM killer struck there.
    Remove { container: String },
    /// Issue 11: `Create` in two steps, so that the cgroups are made before
    /// the container init exists: the caller's container cgroups (the
    /// per-user one too, if missing) with the limits written, no process
    /// in them yet. Answered with `Created`.
    Prepare {
        container: String,
        limits: CgroupLimits,
    },
    /// Issue 11: the second step: move `pid` (a container init of the
    /// caller, checked through a pidfd, as for `Create`) into the cgroups
    /// `Prepare` made. Answered with `Joined`.
    Place { container: String, pid: i32 },
    /// `update`: change the limits of the caller's container whose cgroups
    /// exist. Only the fields that are `Some` are written (the others keep
    /// what the kernel holds); each is checked against the policy as for
    /// `Create`, nothing is written when one is refused, and what was
    /// written is restored when a later write fails. Never touches the
    /// user's cgroup (their totals). Answered with `Updated`.
    Update {
        container: String,
        limits: CgroupLimits,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CgroupReply {
    /// The limits in force (the request completed by the policy's defaults).
    Created {
        limits: CgroupLimits,
    },
    Joined,
    /// `oom_kills`: processes the OOM killer ended in the container;
    /// `existed`: whether there was anything to remove.
    Removed {
        oom_kills: u64,
        existed: bool,
    },
    /// The limits `Update` wrote, now in force: the fields asked (the
    /// others kept their values).
    Updated {
        limits: CgroupLimits,
    },
}
