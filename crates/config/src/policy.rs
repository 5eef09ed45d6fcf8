//! The administrator's per-user limits: `<sysconfdir>/policy.toml`.
//!
//! ```toml
//! [default]                 # every user, unless a section below says otherwise
//! interfaces = 32           # veths on the bridge at once, all containers together
//! import_size = "8G"        # apparent size of one image import
//!
//! min_host_port = 1024      # the lowest host port a non-root user may publish
//! published_ports = 16      # host ports published at once, all containers together
//!
//! [users.alice]             # by login name (or numeric uid as a string)
//! interfaces = 64
//!
//! [groups.builders]         # members of a group: the largest value of their groups
//! import_size = "32G"
//! ```
//!
//! For each limit a `[users.NAME]` entry wins; otherwise the largest value
//! among the caller's groups (primary and supplementary, as the kernel sees
//! them in the helper process); otherwise `[default]`; otherwise the built-in
//! default. Like the system configuration, the file is read only from the
//! directory compiled in; a missing file means the built-in defaults, and a
//! broken file refuses every request that needs it (fails closed).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use proto::Caller;
use proto::{ErrorKind, RemoteError};

use crate::system::{parse_bytes, SYSCONFDIR};
use crate::Error;

/// Built-in defaults, used where the file says nothing.
pub const DEFAULT_INTERFACES: u32 = 32;
pub const DEFAULT_IMPORT_SIZE: u64 = 8 << 30;
// Issue 11 (engineer "net"): published ports.
/// Host ports below this are for root only, unless the policy says otherwise.
pub const DEFAULT_MIN_HOST_PORT: u16 = 1024;
/// Host ports one user may publish at once.
pub const DEFAULT_PUBLISHED_PORTS: u32 = 16;

pub fn policy_path() -> PathBuf {
    Path::new(SYSCONFDIR).join("policy.toml")
}

/// One section of the file: every key optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Section {
    interfaces: Option<u32>,
    import_size: Option<String>,

    // Issue 9 (cgroups, engineer "cg"): per-container maxima and defaults,
    // per-user totals; read by `cgroup_policy.rs`.
    pub(crate) memory: Option<crate::cgroup_policy::Bytes>,
    pub(crate) memory_default: Option<crate::cgroup_policy::Bytes>,
    pub(crate) memory_swap: Option<crate::cgroup_policy::Bytes>,
    pub(crate) memory_swap_default: Option<crate::cgroup_policy::Bytes>,
    pub(crate) pids: Option<u64>,
    pub(crate) pids_default: Option<u64>,
    pub(crate) cpus: Option<crate::cgroup_policy::Cpus>,
    pub(crate) cpus_default: Option<crate::cgroup_policy::Cpus>,
    pub(crate) total_memory: Option<crate::cgroup_policy::Bytes>,
    pub(crate) total_pids: Option<u64>,
    pub(crate) total_cpus: Option<crate::cgroup_policy::Cpus>,
    pub(crate) containers: Option<u64>,
    // --- disk quota (issue 9, btrfs quota groups) ---
    /// Largest (and default) size of one container's writes.
    disk: Option<String>,
    /// All of a user's images and containers together.
    total_disk: Option<String>,
    // Issue 11 (engineer "net"): published ports.
    min_host_port: Option<u16>,
    published_ports: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct File {
    #[serde(default)]
    pub(crate) default: Section,
    #[serde(default)]
    pub(crate) users: BTreeMap<String, Section>,
    #[serde(default)]
    pub(crate) groups: BTreeMap<String, Section>,
}

/// The limits that apply to one caller, each with where it was set (for
/// messages such as "limit 32 set in /etc/tupperware/policy.toml [default]").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub interfaces: Limit<u32>,
    pub import_size: Limit<u64>,
    // --- disk quota (issue 9); `u64::MAX` is "no limit" ---
    pub disk: Limit<u64>,
    pub total_disk: Limit<u64>,
    // Issue 11 (engineer "net"): published ports.
    /// The lowest host port a non-root user may publish.
    pub min_host_port: Limit<u16>,
    /// Host ports published at once, all of a user's containers together.
    pub published_ports: Limit<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limit<T> {
    pub value: T,
    /// `built-in default`, or `<path> [section]`.
    pub source: String,
}

impl<T: std::fmt::Display> Limit<T> {
    /// An `Exhausted` error naming the limit, its value and where it is set.
    pub fn exceeded(&self, what: &str) -> Error {
        Error::Remote(RemoteError::new(
            ErrorKind::Exhausted,
            format!(
                "{what} (limit {} set by {}; ask an administrator to raise it)",
                self.value, self.source
            ),
        ))
    }
}

/// A parsed policy file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub(crate) path: PathBuf,
    pub(crate) file: File,
}

impl Policy {
    /// The compiled-in policy file; missing means built-in defaults.
    pub fn load() -> Result<Policy, Error> {
        Self::load_from(&policy_path())
    }

    pub fn load_from(path: &Path) -> Result<Policy, Error> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => {
                return Err(Error::Config {
                    path: path.display().to_string(),
                    why: e.to_string(),
                })
            }
        };
        Self::parse(path, &text).map_err(|why| Error::Config {
            path: path.display().to_string(),
            why,
        })
    }

    pub fn parse(path: &Path, text: &str) -> Result<Policy, String> {
        let file: File = toml::from_str(text).map_err(|e| e.to_string())?;
        let sections = std::iter::once(("[default]".to_string(), &file.default))
            .chain(file.users.iter().map(|(n, s)| (format!("[users.{n}]"), s)))
            .chain(
                file.groups
                    .iter()
                    .map(|(n, s)| (format!("[groups.{n}]"), s)),
            );
        for (name, s) in sections {
            let sizes = [
                ("import_size", &s.import_size),
                ("disk", &s.disk),
                ("total_disk", &s.total_disk),
            ];
            for (key, size) in sizes {
                if let Some(size) = size {
                    parse_bytes(size).ok_or_else(|| {
                        format!(
                            "{name} {key} {size:?}: expected bytes or a number with K, M, G or T"
                        )
                    })?;
                }
            }
        }
        Ok(Policy {
            path: path.to_path_buf(),
            file,
        })
    }

    /// The limits of `caller`, whose groups are `groups` (gids).
    pub fn limits_for(&self, caller: Caller, user_name: Option<&str>, groups: &[u32]) -> Limits {
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
            .filter(|(name, _)| group_id(name).is_some_and(|gid| groups.contains(&gid)))
            .collect();
        let path = self.path.display();
        let pick = |get: &dyn Fn(&Section) -> Option<u64>, builtin: u64| -> (u64, String) {
            if let Some((name, v)) = user.as_ref().and_then(|(n, s)| get(s).map(|v| (n, v))) {
                return (v, format!("{path} [users.{name}]"));
            }
            let best = member_of
                .iter()
                .filter_map(|(n, s)| get(s).map(|v| (*n, v)))
                .max_by_key(|(_, v)| *v);
            if let Some((name, v)) = best {
                return (v, format!("{path} [groups.{name}]"));
            }
            match get(&self.file.default) {
                Some(v) => (v, format!("{path} [default]")),
                None => (builtin, "the built-in default".to_string()),
            }
        };
        let (interfaces, if_src) =
            pick(&|s| s.interfaces.map(u64::from), DEFAULT_INTERFACES as u64);
        let (import_size, is_src) = pick(
            &|s| s.import_size.as_deref().and_then(parse_bytes),
            DEFAULT_IMPORT_SIZE,
        );
        // Disk quota (issue 9): no limit unless the file sets one.
        let (disk, disk_src) = pick(&|s| s.disk.as_deref().and_then(parse_bytes), u64::MAX);
        let (total_disk, total_src) =
            pick(&|s| s.total_disk.as_deref().and_then(parse_bytes), u64::MAX);
        // Issue 11 (engineer "net"): published ports.
        let (min_port, mp_src) = pick(
            &|s| s.min_host_port.map(u64::from),
            u64::from(DEFAULT_MIN_HOST_PORT),
        );
        let (ports, pp_src) = pick(
            &|s| s.published_ports.map(u64::from),
            u64::from(DEFAULT_PUBLISHED_PORTS),
        );
        Limits {
            disk: Limit {
                value: disk,
                source: disk_src,
            },
            total_disk: Limit {
                value: total_disk,
                source: total_src,
            },
            interfaces: Limit {
                value: u32::try_from(interfaces).unwrap_or(u32::MAX),
                source: if_src,
            },
            import_size: Limit {
                value: import_size,
                source: is_src,
            },
            min_host_port: Limit {
                value: u16::try_from(min_port).unwrap_or(u16::MAX),
                source: mp_src,
            },
            published_ports: Limit {
                value: u32::try_from(ports).unwrap_or(u32::MAX),
                source: pp_src,
            },
        }
    }

    /// The limits of the process's own caller: its real uid, login name and
    /// the groups the kernel gave it.
    pub fn limits_for_current(&self, caller: Caller) -> Limits {
        let name = caller.user_name();
        self.limits_for(caller, name.as_deref(), &current_groups(caller))
    }
}

/// Primary and supplementary gids of this process.
pub fn current_groups(caller: Caller) -> Vec<u32> {
    let mut groups = nix::unistd::getgroups()
        .map(|g| g.into_iter().map(|g| g.as_raw()).collect::<Vec<_>>())
        .unwrap_or_default();
    groups.push(caller.gid);
    groups
}

/// A group name (or a number) to its gid.
pub(crate) fn group_id(name: &str) -> Option<u32> {
    if let Ok(gid) = name.parse::<u32>() {
        return Some(gid);
    }
    nix::unistd::Group::from_name(name)
        .ok()
        .flatten()
        .map(|g| g.gid.as_raw())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: Caller = Caller {
        uid: 1001,
        gid: 1001,
    };

    fn policy(text: &str) -> Policy {
        Policy::parse(Path::new("/etc/tupperware/policy.toml"), text).unwrap()
    }

    #[test]
    fn empty_file_is_the_built_in_defaults() {
        let l = policy("").limits_for(ME, Some("alice"), &[1001]);
        assert_eq!(l.interfaces.value, DEFAULT_INTERFACES);
        assert_eq!(l.import_size.value, DEFAULT_IMPORT_SIZE);
        assert_eq!(l.interfaces.source, "the built-in default");
    }

    #[test]
    fn user_beats_groups_beats_default() {
        let p = policy(
            "[default]\ninterfaces = 4\nimport_size = \"1G\"\n\
             [users.alice]\ninterfaces = 10\n\
             [groups.0]\nimport_size = \"3G\"\ninterfaces = 99\n\
             [groups.1001]\nimport_size = \"2G\"\n",
        );
        let alice = p.limits_for(ME, Some("alice"), &[1001, 0]);
        assert_eq!(alice.interfaces.value, 10);
        assert_eq!(
            alice.interfaces.source,
            "/etc/tupperware/policy.toml [users.alice]"
        );
        // The largest of the member groups.
        assert_eq!(alice.import_size.value, 3 << 30);
        assert_eq!(
            alice.import_size.source,
            "/etc/tupperware/policy.toml [groups.0]"
        );
        let bob = p.limits_for(Caller { uid: 1002, gid: 50 }, Some("bob"), &[50]);
        assert_eq!(bob.interfaces.value, 4);
        assert_eq!(bob.import_size.value, 1 << 30);
        assert_eq!(
            bob.interfaces.source,
            "/etc/tupperware/policy.toml [default]"
        );
        // A numeric uid names a user too.
        let p = policy("[users.1001]\ninterfaces = 7\n");
        assert_eq!(p.limits_for(ME, None, &[]).interfaces.value, 7);
    }

    #[test]
    fn published_port_limits() {
        let d = policy("").limits_for(ME, None, &[]);
        assert_eq!(d.min_host_port.value, DEFAULT_MIN_HOST_PORT);
        assert_eq!(d.published_ports.value, DEFAULT_PUBLISHED_PORTS);
        let p = policy("[default]\nmin_host_port = 80\npublished_ports = 2\n");
        let l = p.limits_for(ME, None, &[]);
        assert_eq!(l.min_host_port.value, 80);
        assert_eq!(l.published_ports.value, 2);
        assert!(Policy::parse(Path::new("/p"), "[default]\nmin_host_port = 70000\n").is_err());
    }

    #[test]
    fn broken_files_are_errors() {
        let path = Path::new("/p");
        assert!(Policy::parse(path, "[default]\nbogus = 1\n").is_err());
        assert!(Policy::parse(path, "[default]\ninterfaces = -1\n").is_err());
        assert!(Policy::parse(path, "[default]\nimport_size = \"lots\"\n").is_err());
        assert!(Policy::parse(path, "[users.x]\nimport_size = \"1Q\"\n").is_err());
        assert!(Policy::parse(path, "not toml").is_err());
    }

    #[test]
    fn exceeded_names_the_limit_and_its_source() {
        let l = policy("[default]\ninterfaces = 2\n").limits_for(ME, None, &[]);
        let e = l
            .interfaces
            .exceeded("you have 2 interfaces on the bridge already");
        let r = e.to_remote();
        assert_eq!(r.kind, ErrorKind::Exhausted);
        assert_eq!(
            r.message,
            "you have 2 interfaces on the bridge already (limit 2 set by \
             /etc/tupperware/policy.toml [default]; ask an administrator to raise it)"
        );
    }

    #[test]
    fn disk_limits_default_to_none_and_name_their_section() {
        let l = policy("").limits_for(ME, None, &[]);
        assert_eq!((l.disk.value, l.total_disk.value), (u64::MAX, u64::MAX));
        let p = policy(
            "[default]\ndisk = \"1G\"\ntotal_disk = \"10G\"\n[users.alice]\ndisk = \"2G\"\n",
        );
        let l = p.limits_for(ME, Some("alice"), &[]);
        assert_eq!(l.disk.value, 2 << 30);
        assert_eq!(l.disk.source, "/etc/tupperware/policy.toml [users.alice]");
        assert_eq!(l.total_disk.value, 10 << 30);
        assert_eq!(l.total_disk.source, "/etc/tupperware/policy.toml [default]");
        assert!(Policy::parse(Path::new("/p"), "[default]\ndisk = \"big\"\n").is_err());
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(parse_bytes("8G"), Some(8 << 30));
        assert_eq!(parse_bytes("1000"), Some(1000));
        assert_eq!(parse_bytes("1M"), Some(1 << 20));
        assert_eq!(parse_bytes("x"), None);
        assert_eq!(parse_bytes("99999999999T"), None);
    }
}
