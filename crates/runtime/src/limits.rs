//! Issue 9: resource limit flags of `run` (podman's names and units), the
//! early policy check, the container's cgroups through `tupper-cgroup`, and
//! `stats`.

use proto::cgroup::{CgroupLimits, CgroupReply, CgroupRequest};
use tupper_config::cgroup_policy::{millicpus, show, Unit};

use crate::error::{Error, Result};
use crate::helpers::{call_once, Helper, HelperProcess, HelperStdio};

#[derive(Debug, Clone, Default, clap::Args, serde::Serialize, serde::Deserialize)]
pub struct LimitFlags {
    /// Memory limit (bytes, or with b, k, m, g: 512m).
    #[arg(short = 'm', long, value_name = "SIZE", value_parser = parse_memory)]
    pub memory: Option<u64>,
    /// Memory plus swap (like --memory; -1 for unlimited swap).
    #[arg(long = "memory-swap", value_name = "SIZE", value_parser = parse_swap, allow_hyphen_values = true)]
    pub memory_swap: Option<u64>,
    /// Most processes and threads the container may have.
    #[arg(long = "pids-limit", value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub pids_limit: Option<u64>,
    /// CPUs the container may use, fractions allowed (1.5).
    #[arg(long, value_name = "CPUS", value_parser = parse_cpus)]
    pub cpus: Option<u64>,
    /// Relative CPU weight (cgroup v1 shares, 2-262144).
    #[arg(long = "cpu-shares", value_name = "N", value_parser = clap::value_parser!(u64).range(2..=262_144))]
    pub cpu_shares: Option<u64>,
    /// Relative CPU weight (cgroup v2, 1-10000).
    #[arg(long = "cpu-weight", value_name = "N", value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub cpu_weight: Option<u64>,
    /// CPUs the container may run on (0-3,5).
    #[arg(long = "cpuset-cpus", value_name = "LIST")]
    pub cpuset_cpus: Option<String>,
}

/// podman's sizes: a number with an optional b, k, m or g (either case).
pub fn parse_memory(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim().to_ascii_lowercase();
    let t = t
        .strip_suffix('b')
        .filter(|r| !r.is_empty() && r.ends_with(|c: char| "kmg".contains(c)))
        .unwrap_or(&t);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1u64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('b') => (&t[..t.len() - 1], 1),
        _ => (t, 1),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size such as 512m or 1g"))?;
    let bytes = n
        .checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))?;
    if bytes < 6 << 20 {
        return Err(format!("{s:?} is below the minimum of 6m"));
    }
    Ok(bytes)
}

fn parse_swap(s: &str) -> std::result::Result<u64, String> {
    if s.trim() == "-1" {
        return Ok(u64::MAX);
    }
    parse_memory(s)
}

fn parse_cpus(s: &str) -> std::result::Result<u64, String> {
    millicpus(s).ok_or_else(|| format!("{s:?} is not a number of CPUs such as 0.5 or 2"))
}

impl LimitFlags {
    pub fn request(&self) -> CgroupLimits {
        CgroupLimits {
            memory: self.memory,
            memory_swap: self.memory_swap,
            pids: self.pids_limit,
            millicpus: self.cpus,
            cpu_shares: self.cpu_shares,
            cpu_weight: self.cpu_weight,
            cpuset_cpus: self.cpuset_cpus.clone(),
        }
    }

    fn any(&self) -> bool {
        self.request() != CgroupLimits::default()
    }

    /// The flags with the limits `new` asks laid over them (`update`).
    pub fn overlaid(&self, new: &CgroupLimits) -> LimitFlags {
        let l = overlay(&self.request(), new);
        LimitFlags {
            memory: l.memory,
            memory_swap: l.memory_swap,
            pids_limit: l.pids,
            cpus: l.millicpus,
            cpu_shares: l.cpu_shares,
            cpu_weight: l.cpu_weight,
            cpuset_cpus: l.cpuset_cpus,
        }
    }
}

/// `base` with every limit `new` asks replacing its own; `--cpu-shares`
/// and `--cpu-weight` are two spellings of one weight, so either replaces
/// both.
pub fn overlay(base: &CgroupLimits, new: &CgroupLimits) -> CgroupLimits {
    let weight_asked = new.cpu_shares.is_some() || new.cpu_weight.is_some();
    CgroupLimits {
        memory: new.memory.or(base.memory),
        memory_swap: new.memory_swap.or(base.memory_swap),
        pids: new.pids.or(base.pids),
        millicpus: new.millicpus.or(base.millicpus),
        cpu_shares: if weight_asked {
            new.cpu_shares
        } else {
            base.cpu_shares
        },
        cpu_weight: if weight_asked {
            new.cpu_weight
        } else {
            base.cpu_weight
        },
        cpuset_cpus: new.cpuset_cpus.clone().or(base.cpuset_cpus.clone()),
    }
}

/// `update`: new limits for each container. A running one gets them in its
/// cgroups at once (`tupper-cgroup` checks them against the policy and
/// writes only those asked); a created or exited one keeps them in its
/// configuration for its next start. Either way the record's limits (what
/// `inspect` shows) and the configuration are updated after success, so a
/// later `start` keeps them. Prints each container updated; an error per
/// container goes to stderr, and the exit status is the first one's.
pub fn update(keys: &[String], flags: &LimitFlags) -> Result<i32> {
    if !flags.any() {
        return Err(Error::user(
            "update: give at least one limit (--memory, --memory-swap, --pids-limit, --cpus, \
             --cpu-shares, --cpu-weight, --cpuset-cpus)",
        ));
    }
    if !enabled() {
        return Err(Error::user(
            "resource limits need cgroups, which this host's tupperware.toml disables ([cgroups] enabled = false)",
        ));
    }
    let asked = flags.request();
    let state = crate::records::Records::open()?;
    crate::cleanup::collect_garbage(&state);
    let mut status = 0;
    for key in keys {
        match update_one(&state, key, &asked) {
            Ok(()) => println!("{key}"),
            Err(e) => {
                eprintln!("tupper: {key}: {e}");
                if status == 0 {
                    status = e.exit_code();
                }
            }
        }
    }
    Ok(status)
}

fn update_one(state: &crate::records::Records, key: &str, asked: &CgroupLimits) -> Result<()> {
    use crate::lifecycle::State;
    let rec = state.find(key)?;
    let _lock = state.lock_container(&rec.id)?;
    let mut opts = state.load_config(&rec.id)?;
    let written = match State::of(&rec) {
        State::Running if rec.cgroups => {
            match call_once::<_, CgroupReply>(
                Helper::Cgroup,
                &CgroupRequest::Update {
                    container: rec.id.clone(),
                    limits: asked.clone(),
                },
            )? {
                CgroupReply::Updated { limits } => limits,
                _ => return Err(Error::user("cgroup: unexpected reply to Update")),
            }
        }
        State::Running => {
            return Err(Error::user(format!(
            "container {} runs without cgroups: its limits cannot change until it is started again",
            rec.name
        )))
        }
        State::Created => {
            return Err(Error::user(format!(
                "container {} is starting; try again in a moment",
                rec.name
            )))
        }
        // Its next start asks for the new limits: checked now as it will be.
        State::Stopped => {
            check_early(&opts.limits.overlaid(asked))?;
            asked.clone()
        }
        State::Removed => return Err(Error::user(format!("no such container: {key}"))),
    };
    opts.limits = opts.limits.overlaid(&written);
    state.save_config(&rec.id, &opts)?;
    // The monitor may have saved the record meanwhile: read it again.
    let _l = state.lock()?;
    let mut rec = state.find(&rec.id)?;
    let base = rec.limits.as_deref().cloned().unwrap_or_default();
    rec.limits = Some(Box::new(overlay(&base, &written)));
    state.save(&rec)
}

/// Whether containers get cgroups on this host (`[cgroups] enabled`).
pub fn enabled() -> bool {
    tupper_config::SystemConfig::load()
        .map(|c| c.cgroups.enabled)
        .unwrap_or(true)
}

/// Before anything is created: limits asked where cgroups are off, or above
/// the policy, are refused with the limit and where it is set. The helper
/// checks again; its answer counts.
pub fn check_early(flags: &LimitFlags) -> Result<()> {
    if !enabled() {
        if flags.any() {
            return Err(Error::user(
                "resource limits need cgroups, which this host's tupperware.toml disables ([cgroups] enabled = false)",
            ));
        }
        return Ok(());
    }
    let policy = tupper_config::policy::Policy::load()
        .map_err(|e| wrap(proto::Error::Remote(e.to_remote())))?
        .cgroup_limits_for_current(proto::Caller::current());
    policy
        .resolve(&flags.request())
        .map(|_| ())
        .map_err(|e| wrap(proto::Error::Remote(e.to_remote())))
}

fn wrap(e: proto::Error) -> Error {
    crate::helpers::wrap(Helper::Cgroup, e)
}

/// Issue 11: the cgroup helper, started before the container init exists
/// (its start-up overlaps the snapshot and the spawn).
pub fn start() -> Result<HelperProcess> {
    HelperProcess::start(Helper::Cgroup, HelperStdio::default())
}

/// Ask `helper` to make container `id`'s cgroups with their limits, before
/// its init exists; the answer is read by [`prepared`].
pub fn ask_prepare(helper: &mut HelperProcess, id: &str, flags: &LimitFlags) -> Result<()> {
    helper.send(&CgroupRequest::Prepare {
        container: id.to_string(),
        limits: flags.request(),
    })
}

/// The answer to [`ask_prepare`]: the limits in force.
pub fn prepared(helper: &mut HelperProcess) -> Result<CgroupLimits> {
    match helper.recv_reply::<CgroupReply>()? {
        CgroupReply::Created { limits } => Ok(limits),
        _ => Err(Error::user("cgroup: unexpected reply to Prepare")),
    }
}

/// Ask `helper` to move the container init `pid` into the cgroups
/// [`ask_prepare`] made; the answer is read by [`placed`], so the kernel's
/// work (a move between cgroups waits for an RCU grace period) overlaps the
/// init's own setup.
pub fn ask_place(helper: &mut HelperProcess, id: &str, pid: i32) -> Result<()> {
    helper.send(&CgroupRequest::Place {
        container: id.to_string(),
        pid,
    })
}

/// The answer to [`ask_place`].
pub fn placed(helper: &mut HelperProcess) -> Result<()> {
    match helper.recv_reply::<CgroupReply>()? {
        CgroupReply::Joined => Ok(()),
        _ => Err(Error::user("cgroup: unexpected reply to Place")),
    }
}

/// Move an `exec`'d process into the container's cgroups.
pub fn join(id: &str, pid: i32) -> Result<()> {
    call_once::<_, CgroupReply>(
        Helper::Cgroup,
        &CgroupRequest::Join {
            container: id.to_string(),
            pid,
        },
    )
    .map(|_| ())
}

/// The one line `run` prints for a container the OOM killer ended.
pub fn oom_message(limits: Option<&CgroupLimits>) -> String {
    match limits.and_then(|l| l.memory) {
        Some(m) => format!(
            "tupper: the container ran out of memory and was killed (memory limit {})",
            show(Unit::Bytes, m)
        ),
        None => "tupper: the container ran out of memory and was killed".to_string(),
    }
}

/// The limits as `inspect` shows them.
pub fn inspect_value(limits: Option<&CgroupLimits>) -> serde_json::Value {
    match limits {
        None => serde_json::json!({}),
        Some(l) => serde_json::json!({
            "memory": l.memory,
            "memory_swap": l.memory_swap.map(|s| if s == u64::MAX { -1i128 } else { s as i128 }),
            "pids": l.pids,
            "cpus": l.millicpus.map(|m| m as f64 / 1000.0),
            "cpu_shares": l.cpu_shares,
            "cpu_weight": l.cpu_weight,
            "cpuset_cpus": l.cpuset_cpus,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn podman_units() {
        assert_eq!(parse_memory("512m").unwrap(), 512 << 20);
        assert_eq!(parse_memory("1g").unwrap(), 1 << 30);
        assert_eq!(parse_memory("1G").unwrap(), 1 << 30);
        assert_eq!(parse_memory("1gb").unwrap(), 1 << 30);
        assert_eq!(parse_memory("10485760").unwrap(), 10 << 20);
        assert_eq!(parse_memory("10485760b").unwrap(), 10 << 20);
        assert_eq!(parse_memory("8192k").unwrap(), 8 << 20);
        assert!(parse_memory("1m").unwrap_err().contains("minimum"));
        assert!(parse_memory("lots").is_err());
        assert!(parse_memory("-5m").is_err());
        assert_eq!(parse_swap("-1").unwrap(), u64::MAX);
        assert_eq!(parse_cpus("0.5").unwrap(), 500);
        assert!(parse_cpus("0").is_err());
    }

    #[test]
    fn flags_parse_like_podman() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct T {
            #[command(flatten)]
            l: LimitFlags,
        }
        let t = T::try_parse_from([
            "t",
            "--memory",
            "64m",
            "--memory-swap",
            "-1",
            "--pids-limit",
            "50",
            "--cpus",
            "1.5",
            "--cpu-shares",
            "512",
            "--cpuset-cpus",
            "0",
        ])
        .unwrap();
        let r = t.l.request();
        assert_eq!(r.memory, Some(64 << 20));
        assert_eq!(r.memory_swap, Some(u64::MAX));
        assert_eq!(r.pids, Some(50));
        assert_eq!(r.millicpus, Some(1500));
        assert_eq!(r.cpu_shares, Some(512));
        assert!(T::try_parse_from(["t", "--pids-limit", "0"]).is_err());
        assert!(T::try_parse_from(["t", "--cpu-weight", "0"]).is_err());
        assert!(T::try_parse_from(["t", "--cpu-shares", "1"]).is_err());
    }

    #[test]
    fn an_update_overlays_the_limits_asked() {
        let base = CgroupLimits {
            memory: Some(64 << 20),
            pids: Some(100),
            cpu_weight: Some(300),
            cpuset_cpus: Some("0".into()),
            ..Default::default()
        };
        let new = CgroupLimits {
            memory: Some(32 << 20),
            cpu_shares: Some(512),
            ..Default::default()
        };
        let l = overlay(&base, &new);
        assert_eq!(l.memory, Some(32 << 20));
        assert_eq!(l.pids, Some(100));
        // One weight, two spellings: the new one replaces both.
        assert_eq!((l.cpu_shares, l.cpu_weight), (Some(512), None));
        assert_eq!(l.cpuset_cpus.as_deref(), Some("0"));
        let flags = LimitFlags {
            pids_limit: Some(100),
            ..Default::default()
        };
        let f = flags.overlaid(&new);
        assert_eq!(
            (f.memory, f.pids_limit, f.cpu_shares),
            (Some(32 << 20), Some(100), Some(512))
        );
    }

    #[test]
    fn oom_line() {
        let l = CgroupLimits {
            memory: Some(32 << 20),
            ..Default::default()
        };
        assert_eq!(
            oom_message(Some(&l)),
            "tupper: the container ran out of memory and was killed (memory limit 32M)"
        );
    }
}
