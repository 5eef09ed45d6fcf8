//! Issue 9: the cgroup keys of `policy.toml` — per-container maxima and
//! defaults, per-user totals — and the check of a request against them.
//!
//! ```toml
//! [default]
//! memory = "2G"             # most one container may ask for (--memory)
//! memory_default = "512M"   # what it gets without --memory (else: the maximum)
//! memory_swap = "4G"        # memory + swap (--memory-swap), maximum
//! memory_swap_default = "1G"
//! pids = 1024               # --pids-limit maximum
//! pids_default = 512
//! cpus = 2                  # --cpus maximum (fractions allowed: 1.5)
//! cpus_default = 1
//! total_memory = "8G"       # all of a user's containers together
//! total_pids = 4096
//! total_cpus = 4
//! containers = 20           # containers a user may have running at once
//! ```
//!
//! A key that no section sets is unlimited, except `pids`
//! ([`BUILTIN_PIDS`]), `total_pids` ([`BUILTIN_TOTAL_PIDS`]) and
//! `containers` ([`BUILTIN_CONTAINERS`]): a fork bomb is contained even on a
//! host whose administrator wrote no policy. Resolution is the same as for
//! every policy key: `[users.NAME]`, else the largest of the user's
//! `[groups.NAME]`, else `[default]`, else built in.

use proto::cgroup::CgroupLimits;
use proto::{Caller, ErrorKind, RemoteError};
use serde::{Deserialize, Deserializer};

use crate::policy::{Policy, Section};
use crate::system::parse_bytes;
use crate::Error;

pub const BUILTIN_PIDS: u64 = 4096;
pub const BUILTIN_TOTAL_PIDS: u64 = 16384;
pub const BUILTIN_CONTAINERS: u64 = 64;

/// A size in the policy file: bytes, or a number with K, M, G or T.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bytes(pub u64);

/// CPUs in the policy file (`2`, `1.5`, `"0.25"`), held in thousandths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cpus(pub u64);

#[derive(Deserialize)]
#[serde(untagged)]
enum Raw {
    Int(u64),
    Float(f64),
    Text(String),
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bad = || serde::de::Error::custom("expected bytes or a number with K, M, G or T");
        match Raw::deserialize(d)? {
            Raw::Int(n) => Ok(Bytes(n)),
            Raw::Text(t) => parse_bytes(&t).map(Bytes).ok_or_else(bad),
            Raw::Float(_) => Err(bad()),
        }
    }
}

impl<'de> Deserialize<'de> for Cpus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bad = || serde::de::Error::custom("expected a number of CPUs such as 2 or 1.5");
        match Raw::deserialize(d)? {
            Raw::Int(n) => n.checked_mul(1000).map(Cpus).ok_or_else(bad),
            Raw::Float(f) => millicpus(&f.to_string()).map(Cpus).ok_or_else(bad),
            Raw::Text(t) => millicpus(&t).map(Cpus).ok_or_else(bad),
        }
    }
}

/// `"1.5"` → 1500; at most three decimals, more than zero.
pub fn millicpus(s: &str) -> Option<u64> {
    let s = s.trim();
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if int.is_empty() && frac.is_empty() || frac.len() > 3 {
        return None;
    }
    let digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    if !digits(int) || !digits(frac) {
        return None;
    }
    let int: u64 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let frac: u64 = format!("{frac:0<3}").parse().ok()?;
    let m = int.checked_mul(1000)?.checked_add(frac)?;
    (m > 0).then_some(m)
}

/// One limit: `None` is unlimited; `source` says where it was set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bound {
    pub value: Option<u64>,
    pub source: String,
}

/// How a limit's values read in messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Bytes,
    Count,
    MilliCpus,
}

pub fn show(unit: Unit, v: u64) -> String {
    match unit {
        Unit::Count => v.to_string(),
        Unit::MilliCpus if v % 1000 == 0 => (v / 1000).to_string(),
        Unit::MilliCpus => format!("{}", v as f64 / 1000.0),
        Unit::Bytes => {
            for (suffix, shift) in [("T", 40), ("G", 30), ("M", 20), ("K", 10)] {
                if v >= 1 << shift && v % (1 << shift) == 0 {
                    return format!("{}{suffix}", v >> shift);
                }
            }
            v.to_string()
        }
    }
}

impl Bound {
    /// A refusal naming the limit, its value and where it is set.
    pub fn exceeded(&self, what: &str, unit: Unit) -> Error {
        let v = self.value.map_or("unlimited".into(), |v| show(unit, v));
        Error::Remote(RemoteError::new(
            ErrorKind::Exhausted,
            format!(
                "{what} (limit {v} set by {}; ask an administrator to raise it)",
                self.source
            ),
        ))
    }
}

/// The cgroup limits that apply to one caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupPolicy {
    pub memory: Bound,
    pub memory_default: Bound,
    pub memory_swap: Bound,
    pub memory_swap_default: Bound,
    pub pids: Bound,
    pub pids_default: Bound,
    pub cpus: Bound,
    pub cpus_default: Bound,
    pub total_memory: Bound,
    pub total_pids: Bound,
    pub total_cpus: Bound,
    pub containers: Bound,
}

impl Policy {
    /// The cgroup limits of `caller`, whose groups are `groups` (gids).
    pub fn cgroup_limits_for(
        &self,
        caller: Caller,
        user_name: Option<&str>,
        groups: &[u32],
    ) -> CgroupPolicy {
        let user = user_name
            .and_then(|n| self.file.users.get(n).map(|s| (n.to_string(), s)))
            .or_else(|| {
                let uid = caller.uid.to_string();
                self.file.users.get(&uid).map(|s| (uid, s))
            });
        let member_of: Vec<(&String, &Section)> = self
            .file
            .groups
            .iter()
            .filter(|(name, _)| {
                crate::policy::group_id(name).is_some_and(|gid| groups.contains(&gid))
            })
            .collect();
        let path = self.path.display();
        let pick = |get: &dyn Fn(&Section) -> Option<u64>, builtin: Option<u64>| -> Bound {
            if let Some((name, v)) = user.as_ref().and_then(|(n, s)| get(s).map(|v| (n, v))) {
                return Bound {
                    value: Some(v),
                    source: format!("{path} [users.{name}]"),
                };
            }
            let best = member_of
                .iter()
                .filter_map(|(n, s)| get(s).map(|v| (*n, v)))
                .max_by_key(|(_, v)| *v);
            if let Some((name, v)) = best {
                return Bound {
                    value: Some(v),
                    source: format!("{path} [groups.{name}]"),
                };
            }
            match get(&self.file.default) {
                Some(v) => Bound {
                    value: Some(v),
                    source: format!("{path} [default]"),
                },
                None => Bound {
                    value: builtin,
                    source: "the built-in default".into(),
                },
            }
        };
        CgroupPolicy {
            memory: pick(&|s| s.memory.map(|b| b.0), None),
            memory_default: pick(&|s| s.memory_default.map(|b| b.0), None),
            memory_swap: pick(&|s| s.memory_swap.map(|b| b.0), None),
            memory_swap_default: pick(&|s| s.memory_swap_default.map(|b| b.0), None),
            pids: pick(&|s| s.pids, Some(BUILTIN_PIDS)),
            pids_default: pick(&|s| s.pids_default, None),
            cpus: pick(&|s| s.cpus.map(|c| c.0), None),
            cpus_default: pick(&|s| s.cpus_default.map(|c| c.0), None),
            total_memory: pick(&|s| s.total_memory.map(|b| b.0), None),
            total_pids: pick(&|s| s.total_pids, Some(BUILTIN_TOTAL_PIDS)),
            total_cpus: pick(&|s| s.total_cpus.map(|c| c.0), None),
            containers: pick(&|s| s.containers, Some(BUILTIN_CONTAINERS)),
        }
    }

    /// The cgroup limits of the process's own caller.
    pub fn cgroup_limits_for_current(&self, caller: Caller) -> CgroupPolicy {
        let name = caller.user_name();
        self.cgroup_limits_for(
            caller,
            name.as_deref(),
            &crate::policy::current_groups(caller),
        )
    }
}

/// One limit: the request (`flag` names it), completed by the default and
/// bounded by the maximum and the user's total.
fn resolve_one(
    asked: Option<u64>,
    flag: &str,
    unit: Unit,
    max: &Bound,
    default: &Bound,
    total: Option<&Bound>,
) -> Result<Option<u64>, Error> {
    bound_one(asked, flag, unit, max, total)?;
    // Without a flag: the default, bounded by the maximum; else the maximum.
    Ok(asked.or(match (default.value, max.value) {
        (Some(d), Some(m)) => Some(d.min(m)),
        (d, m) => d.or(m),
    }))
}

/// One asked limit against the per-container maximum and the user's total.
fn bound_one(
    asked: Option<u64>,
    flag: &str,
    unit: Unit,
    max: &Bound,
    total: Option<&Bound>,
) -> Result<(), Error> {
    if let (Some(a), Some(m)) = (asked, max.value) {
        if a > m {
            return Err(max.exceeded(
                &format!(
                    "{flag} {} is above the most one container may have",
                    show(unit, a)
                ),
                unit,
            ));
        }
    }
    if let (Some(a), Some(t)) = (asked, total.and_then(|t| t.value)) {
        if a > t {
            let total = total.expect("checked above");
            return Err(total.exceeded(
                &format!(
                    "{flag} {} is above the total of all your containers",
                    show(unit, a)
                ),
                unit,
            ));
        }
    }
    Ok(())
}

impl CgroupPolicy {
    /// `update`: the limits asked (`None`: not changed) against the same
    /// maxima and totals as [`CgroupPolicy::resolve`], without defaults
    /// (what is not asked keeps its value). Unlimited swap (`-1`) is
    /// allowed only where no swap maximum is set.
    pub fn check_update(&self, asked: &CgroupLimits) -> Result<(), Error> {
        bound_one(
            asked.memory,
            "--memory",
            Unit::Bytes,
            &self.memory,
            Some(&self.total_memory),
        )?;
        bound_one(
            asked.memory_swap,
            "--memory-swap",
            Unit::Bytes,
            &self.memory_swap,
            None,
        )?;
        bound_one(
            asked.pids,
            "--pids-limit",
            Unit::Count,
            &self.pids,
            Some(&self.total_pids),
        )?;
        bound_one(
            asked.millicpus,
            "--cpus",
            Unit::MilliCpus,
            &self.cpus,
            Some(&self.total_cpus),
        )
    }

    /// The limits a container gets: `asked` completed by the defaults, each
    /// checked against the per-container maximum and the user's total.
    /// Supervisor and helper both call it (the helper's answer counts).
    pub fn resolve(&self, asked: &CgroupLimits) -> Result<CgroupLimits, Error> {
        let memory = resolve_one(
            asked.memory,
            "--memory",
            Unit::Bytes,
            &self.memory,
            &self.memory_default,
            Some(&self.total_memory),
        )?;
        let unlimited_swap = asked.memory_swap == Some(u64::MAX);
        let memory_swap = if unlimited_swap && self.memory_swap.value.is_none() {
            Some(u64::MAX)
        } else {
            resolve_one(
                asked.memory_swap,
                "--memory-swap",
                Unit::Bytes,
                &self.memory_swap,
                &self.memory_swap_default,
                None,
            )?
        };
        if let (Some(m), Some(s)) = (memory, memory_swap) {
            if s < m {
                return Err(Error::Remote(RemoteError::new(
                    ErrorKind::InvalidRequest,
                    format!(
                        "--memory-swap {} is less than --memory {}: it counts memory and swap together",
                        show(Unit::Bytes, s),
                        show(Unit::Bytes, m)
                    ),
                )));
            }
        }
        let pids = resolve_one(
            asked.pids,
            "--pids-limit",
            Unit::Count,
            &self.pids,
            &self.pids_default,
            Some(&self.total_pids),
        )?;
        let millicpus = resolve_one(
            asked.millicpus,
            "--cpus",
            Unit::MilliCpus,
            &self.cpus,
            &self.cpus_default,
            Some(&self.total_cpus),
        )?;
        Ok(CgroupLimits {
            memory,
            memory_swap,
            pids,
            millicpus,
            ..asked.clone()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const ME: Caller = Caller {
        uid: 1001,
        gid: 1001,
    };

    fn policy(text: &str) -> CgroupPolicy {
        Policy::parse(Path::new("/etc/tupperware/policy.toml"), text)
            .unwrap()
            .cgroup_limits_for(ME, Some("alice"), &[1001])
    }

    #[test]
    fn values_parse() {
        assert_eq!(millicpus("0.5"), Some(500));
        assert_eq!(millicpus("1.25"), Some(1250));
        assert_eq!(millicpus("2"), Some(2000));
        assert_eq!(millicpus(".5"), Some(500));
        for bad in ["0", "0.0001", "-1", "x", "", ".", "1e3"] {
            assert_eq!(millicpus(bad), None, "{bad}");
        }
        let p = policy(
            "[default]\nmemory = \"1G\"\ncpus = 1.5\ntotal_cpus = \"3\"\npids = 10\n\
             total_memory = 1048576\n",
        );
        assert_eq!(p.memory.value, Some(1 << 30));
        assert_eq!(p.cpus.value, Some(1500));
        assert_eq!(p.total_cpus.value, Some(3000));
        assert_eq!(p.total_memory.value, Some(1 << 20));
        assert_eq!(p.pids.value, Some(10));
        let bad = Path::new("/p");
        assert!(Policy::parse(bad, "[default]\nmemory = \"lots\"\n").is_err());
        assert!(Policy::parse(bad, "[default]\ncpus = \"0\"\n").is_err());
        assert!(Policy::parse(bad, "[default]\nmemory = 1.5\n").is_err());
        assert!(Policy::parse(bad, "[default]\npids = -1\n").is_err());
    }

    #[test]
    fn built_in_defaults_contain_fork_bombs() {
        let p = policy("");
        assert_eq!(p.memory.value, None);
        assert_eq!(p.pids.value, Some(BUILTIN_PIDS));
        assert_eq!(p.containers.value, Some(BUILTIN_CONTAINERS));
        let r = p.resolve(&CgroupLimits::default()).unwrap();
        assert_eq!(r.pids, Some(BUILTIN_PIDS));
        assert_eq!(r.memory, None);
    }

    #[test]
    fn defaults_maxima_and_totals() {
        let p = policy(
            "[default]\nmemory = \"1G\"\nmemory_default = \"256M\"\npids = 100\n\
             cpus = 2\ntotal_cpus = 1\n[users.alice]\nmemory = \"2G\"\n",
        );
        // The user's own maximum wins; the default stays [default]'s.
        let r = p.resolve(&CgroupLimits::default()).unwrap();
        assert_eq!(r.memory, Some(256 << 20));
        assert_eq!(r.pids, Some(100));
        // No cpus_default: the maximum applies.
        assert_eq!(r.millicpus, Some(2000));
        let ok = p
            .resolve(&CgroupLimits {
                memory: Some(2 << 30),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(ok.memory, Some(2 << 30));
        let e = p
            .resolve(&CgroupLimits {
                memory: Some(3 << 30),
                ..Default::default()
            })
            .unwrap_err()
            .to_remote();
        assert_eq!(e.kind, ErrorKind::Exhausted);
        assert_eq!(
            e.message,
            "--memory 3G is above the most one container may have (limit 2G set by \
             /etc/tupperware/policy.toml [users.alice]; ask an administrator to raise it)"
        );
        let e = p
            .resolve(&CgroupLimits {
                millicpus: Some(1500),
                ..Default::default()
            })
            .unwrap_err()
            .to_remote();
        assert_eq!(
            e.message,
            "--cpus 1.5 is above the total of all your containers (limit 1 set by \
             /etc/tupperware/policy.toml [default]; ask an administrator to raise it)"
        );
    }

    #[test]
    fn an_update_is_bounded_without_defaults() {
        let p = policy(
            "[default]\nmemory = \"1G\"\nmemory_default = \"256M\"\npids = 100\n\
             memory_swap = \"2G\"\n",
        );
        // Nothing asked: nothing to check (no defaults are filled in).
        p.check_update(&CgroupLimits::default()).unwrap();
        p.check_update(&CgroupLimits {
            memory: Some(1 << 30),
            pids: Some(100),
            ..Default::default()
        })
        .unwrap();
        let e = p
            .check_update(&CgroupLimits {
                pids: Some(101),
                ..Default::default()
            })
            .unwrap_err()
            .to_remote();
        assert_eq!(e.kind, ErrorKind::Exhausted);
        assert_eq!(
            e.message,
            "--pids-limit 101 is above the most one container may have (limit 100 set by \
             /etc/tupperware/policy.toml [default]; ask an administrator to raise it)"
        );
        // Unlimited swap where a swap maximum is set is refused, as for run.
        assert!(p
            .check_update(&CgroupLimits {
                memory_swap: Some(u64::MAX),
                ..Default::default()
            })
            .is_err());
    }

    #[test]
    fn swap_counts_memory_too() {
        let p = policy("");
        let e = p
            .resolve(&CgroupLimits {
                memory: Some(2 << 20),
                memory_swap: Some(1 << 20),
                ..Default::default()
            })
            .unwrap_err()
            .to_remote();
        assert_eq!(e.kind, ErrorKind::InvalidRequest);
        let r = p
            .resolve(&CgroupLimits {
                memory: Some(2 << 20),
                memory_swap: Some(u64::MAX),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(r.memory_swap, Some(u64::MAX));
        // A policy maximum on swap makes "unlimited" a request above it.
        let p = policy("[default]\nmemory_swap = \"1G\"\n");
        assert!(p
            .resolve(&CgroupLimits {
                memory_swap: Some(u64::MAX),
                ..Default::default()
            })
            .is_err());
    }

    #[test]
    fn groups_take_the_largest() {
        let p = Policy::parse(
            Path::new("/p"),
            "[default]\npids = 5\n[groups.1001]\npids = 50\n[groups.0]\npids = 500\n",
        )
        .unwrap()
        .cgroup_limits_for(ME, None, &[1001, 0]);
        assert_eq!(p.pids.value, Some(500));
        assert_eq!(p.pids.source, "/p [groups.0]");
    }

    #[test]
    fn sizes_read_back() {
        assert_eq!(show(Unit::Bytes, 3 << 30), "3G");
        assert_eq!(show(Unit::Bytes, 1536 << 20), "1536M");
        assert_eq!(show(Unit::Bytes, 1000), "1000");
        assert_eq!(show(Unit::MilliCpus, 500), "0.5");
    }
}
