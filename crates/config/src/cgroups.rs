//! Issue 9: the `[cgroups]` section of `tupperware.toml` — where tupperware
//! creates its cgroups.
//!
//! ```toml
//! [cgroups]
//! mount = "/sys/fs/cgroup"    # where the hierarchies are mounted
//! parent = "/tupperware"      # beneath each hierarchy's root
//! # a different parent for one hierarchy (v1 controller name, or "unified")
//! [cgroups.parents]
//! memory = "/process_api/abc/tupperware"
//! ```
//!
//! Beneath the parent the helper keeps `user-<uid>` (the user's totals) and
//! in it one cgroup per container, in every hierarchy it uses.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CgroupsConfig {
    /// Whether containers get cgroups at all (`false`: no limits, `run`
    /// refuses limit flags).
    pub enabled: bool,
    /// Where the cgroup hierarchies are mounted.
    pub mount: PathBuf,
    /// The parent cgroup, absolute within each hierarchy.
    pub parent: PathBuf,
    /// Per-hierarchy parents (`memory`, `pids`, `cpu`, `cpuacct`, `cpuset`,
    /// `freezer`, `unified`), overriding `parent`.
    pub parents: BTreeMap<String, PathBuf>,
}

impl Default for CgroupsConfig {
    fn default() -> Self {
        CgroupsConfig {
            enabled: true,
            mount: PathBuf::from("/sys/fs/cgroup"),
            parent: PathBuf::from("/tupperware"),
            parents: BTreeMap::new(),
        }
    }
}

/// Hierarchy names a `[cgroups.parents]` key may use.
pub const HIERARCHIES: &[&str] = &[
    "memory", "pids", "cpu", "cpuacct", "cpuset", "freezer", "unified",
];

impl CgroupsConfig {
    /// The parent cgroup in hierarchy `name`, relative to its root.
    pub fn parent_of(&self, name: &str) -> &Path {
        self.parents
            .get(name)
            .map(PathBuf::as_path)
            .unwrap_or(&self.parent)
    }

    pub(crate) fn check(&self) -> Result<(), String> {
        if !self.mount.is_absolute() {
            return Err("cgroups.mount must be absolute".into());
        }
        let plain = |p: &Path| {
            p.is_absolute()
                && p.components()
                    .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
        };
        if !plain(&self.parent) {
            return Err("cgroups.parent must be an absolute path without '..'".into());
        }
        for (k, v) in &self.parents {
            if !HIERARCHIES.contains(&k.as_str()) {
                return Err(format!(
                    "cgroups.parents: unknown hierarchy {k:?} (one of {})",
                    HIERARCHIES.join(", ")
                ));
            }
            if !plain(v) {
                return Err(format!(
                    "cgroups.parents.{k} must be an absolute path without '..'"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::SystemConfig;
    use std::path::Path;

    #[test]
    fn parents_per_hierarchy() {
        let c = SystemConfig::parse(
            "[cgroups]\nparent = \"/a/tw\"\n[cgroups.parents]\nmemory = \"/p/x/tw\"\n",
        )
        .unwrap();
        assert_eq!(c.cgroups.parent_of("memory"), Path::new("/p/x/tw"));
        assert_eq!(c.cgroups.parent_of("pids"), Path::new("/a/tw"));
        assert!(c.cgroups.enabled);
        assert_eq!(
            SystemConfig::parse("").unwrap().cgroups.parent_of("cpu"),
            Path::new("/tupperware")
        );
    }

    #[test]
    fn bad_parents_are_refused() {
        for bad in [
            "[cgroups]\nparent = \"rel\"\n",
            "[cgroups]\nparent = \"/a/../b\"\n",
            "[cgroups.parents]\nblkio = \"/x\"\n",
            "[cgroups.parents]\nmemory = \"/x/..\"\n",
            "[cgroups]\nmount = \"sys\"\n",
            "[cgroups]\nbogus = 1\n",
        ] {
            assert!(SystemConfig::parse(bad).is_err(), "{bad}");
        }
    }
}
