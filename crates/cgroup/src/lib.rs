//! `tupper_cgroup`: the logic of the cgroup helper `tupper-cgroup`, spawned
//! by `tupper-supervisor` (the container's monitor, and `exec`) with its
//! control channel on fd 3. Each request is validate → act → report:
//!
//! - `Create`: the id is checked, the limits are completed and bounded by
//!   `policy.toml` (the helper's check is the one that counts), the pid is
//!   verified through a pidfd to be a container of the caller; then, with
//!   effective uid 0, under the user's lock: the user's container count is
//!   checked, `<parent>/user-<uid>` (carrying the user's totals) and
//!   `<parent>/user-<uid>/<id>` are made in every hierarchy, the limits
//!   written, and the pid moved in. Anything made is removed again on failure.
//! - `Prepare` then `Place` (issue 11; what the monitor asks): `Create` in
//!   two steps, the cgroups made and limited before the container init
//!   exists, then the init (verified as for `Create`) moved in while it sets
//!   itself up: a move waits for an RCU grace period in the kernel, which
//!   then overlaps the init's own work.
//! - `Join`: the pid (a container process, or an `exec` joiner of the
//!   caller's own) is moved into the container's existing cgroups.
//! - `Update` (`update`): the id is checked, the limits asked are bounded
//!   by `policy.toml` as for `Create` (without defaults: what is not asked
//!   keeps its value); then, with effective uid 0, under the user's lock:
//!   the container's cgroups must exist under the caller's own cgroup, the
//!   writes of every hierarchy are planned (and refused) before the first,
//!   ordered so v1's memory limit never exceeds memory plus swap, and a
//!   failed write restores the ones before it. The user's cgroup (their
//!   totals) is never written.
//! - `Remove`: the OOM kill count is read, what is left in the container is
//!   killed (`cgroup.kill` where the v2 tree has one), and its cgroups (and
//!   the user's, when it was the last) are removed.
//!
//! Installed with the file capabilities `tupper-cgroup --print-caps` prints ([`CAPS`]).

mod capabilities;
mod error;
pub mod mode;
mod ownership;
pub mod tree;
pub mod writers;

use std::path::Path;
use std::time::Duration;

use proto::cgroup::{CgroupLimits, CgroupReply, CgroupRequest, MAX_CPUSET_LEN};
use proto::{Caller, ErrorKind, RemoteError};
use tupper_config::cgroup_policy::CgroupPolicy;
use tupper_config::SystemConfig;
use tupper_helper::{CoreLimit, Served, ToRemote};

pub use crate::capabilities::CAPS;
pub use crate::error::Error;
use crate::error::Result;
use crate::mode::Layout;
use crate::tree::Paths;

/// Serves requests until the supervisor closes the channel.
pub fn serve() -> std::result::Result<Served, tupper_helper::Error> {
    let mut started = tupper_helper::start(&CAPS, CoreLimit::Zero)?;
    let caller = started.caller;
    tupper_helper::serve(&mut started.channel, |_, request: CgroupRequest| {
        handle(caller, &request).map_err(|e| e.to_remote())
    })
}

fn handle(caller: Caller, request: &CgroupRequest) -> Result<CgroupReply> {
    let cfg = SystemConfig::load()?;
    if !cfg.cgroups.enabled {
        return Err(Error::Unsupported(
            "cgroups are disabled in this host's tupperware.toml ([cgroups] enabled = false)"
                .into(),
        ));
    }
    let layout = Layout::detect(&cfg.cgroups.mount)
        .map_err(|e| Error::sys("read /proc/self/mountinfo", e))?;
    let paths = tree::paths(&layout, &cfg.cgroups, caller.uid);
    match request {
        CgroupRequest::Create {
            container,
            pid,
            limits,
        } => make(caller, &cfg, &layout, &paths, container, limits, Some(*pid)),
        CgroupRequest::Prepare { container, limits } => {
            make(caller, &cfg, &layout, &paths, container, limits, None)
        }
        CgroupRequest::Join { container, pid } => {
            proto::validate::container_id(container)?;
            let process = ownership::verify_joiner(*pid, caller.uid)?;
            tree::as_root(caller.uid, || join(&paths, container, &process))
        }
        CgroupRequest::Place { container, pid } => {
            proto::validate::container_id(container)?;
            let process = ownership::verify(*pid, caller.uid)?;
            tree::as_root(caller.uid, || join(&paths, container, &process))
        }
        CgroupRequest::Update { container, limits } => {
            update(caller, &cfg, &layout, &paths, container, limits)
        }
        CgroupRequest::Remove { container } => {
            proto::validate::container_id(container)?;
            tree::as_root(caller.uid, || {
                let _lock = lock_user(&cfg, caller.uid)?;
                remove(&layout, &paths, container)
            })
        }
    }
}

/// `Create` (with `pid`) and `Prepare` (without): the container's cgroups
/// with their limits, and the process (verified first) moved in.
fn make(
    caller: Caller,
    cfg: &SystemConfig,
    layout: &Layout,
    paths: &[Paths],
    container: &str,
    limits: &CgroupLimits,
    pid: Option<i32>,
) -> Result<CgroupReply> {
    // Validate.
    proto::validate::container_id(container)?;
    check_cpuset(limits)?;
    let policy = tupper_config::policy::Policy::load()?.cgroup_limits_for_current(caller);
    let limits = policy.resolve(limits)?;
    let process = pid
        .map(|pid| ownership::verify(pid, caller.uid))
        .transpose()?;
    // Act.
    tree::as_root(caller.uid, || {
        let _lock = lock_user(cfg, caller.uid)?;
        create(layout, paths, &policy, container, &limits, process.as_ref())
    })?;
    // Report.
    Ok(CgroupReply::Created { limits })
}

/// `Update`: new limits for the caller's container whose cgroups exist.
/// Only the limits asked are written; the others keep what the kernel
/// holds. Every write is planned before the first (a refusal writes
/// nothing), and what was written is restored if a later write fails.
fn update(
    caller: Caller,
    cfg: &SystemConfig,
    layout: &Layout,
    paths: &[Paths],
    container: &str,
    limits: &CgroupLimits,
) -> Result<CgroupReply> {
    // Validate.
    proto::validate::container_id(container)?;
    if *limits == CgroupLimits::default() {
        return Err(Error::Invalid(
            "nothing to update: give at least one limit".into(),
        ));
    }
    check_cpuset(limits)?;
    let policy = tupper_config::policy::Policy::load()?.cgroup_limits_for_current(caller);
    policy.check_update(limits)?;
    // Act (the cgroups are looked for under the user's lock: a `Remove`
    // cannot take them away meanwhile).
    tree::as_root(caller.uid, || {
        let _lock = lock_user(cfg, caller.uid)?;
        let dirs = existing(paths, container)?;
        let mut plan = Vec::new();
        for (p, dir) in paths.iter().zip(&dirs) {
            let h = &p.hierarchy;
            // A hybrid host's v2 tree holds no limits (see `create`).
            if h.v2 && layout.mode != mode::Mode::Unified {
                continue;
            }
            let has = |f: &str| dir.join(f).exists();
            let current = |f: &str| tree::read_trim(&dir.join(f));
            plan.push((dir, writers::update_writes(h, limits, &has, &current)?));
        }
        let mut undo = writers::Undo::default();
        for (dir, w) in &plan {
            if let Err(e) = writers::apply_undoable(dir, w, &mut undo) {
                let failed = undo.restore();
                if !failed.is_empty() {
                    return Err(Error::Invalid(format!(
                        "{e}; restoring the old limits failed too: {}",
                        failed
                            .iter()
                            .map(|f| f.display().to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )));
                }
                return Err(e);
            }
        }
        Ok(())
    })?;
    // Report.
    Ok(CgroupReply::Updated {
        limits: limits.clone(),
    })
}

/// The container's cgroup in every hierarchy, each a real directory (not
/// followed through a symbolic link) under the caller's own cgroup; else
/// the one "no cgroup" answer `Join` and `Place` give too.
fn existing(paths: &[Paths], container: &str) -> Result<Vec<std::path::PathBuf>> {
    let dirs: Vec<_> = paths.iter().map(|p| p.container(container)).collect();
    let real_dir = |d: &Path| std::fs::symlink_metadata(d).is_ok_and(|m| m.is_dir());
    if dirs.is_empty() || !dirs.iter().all(|d| real_dir(d)) {
        return Err(Error::NoCgroup {
            container: container.to_string(),
        });
    }
    Ok(dirs)
}

/// Move `process` into the container's existing cgroups.
fn join(paths: &[Paths], container: &str, process: &ownership::Process) -> Result<CgroupReply> {
    for d in &existing(paths, container)? {
        tree::place(d, process.pid)?;
    }
    if !process.is_alive() {
        return Err(Error::NotYourContainer { pid: process.pid });
    }
    Ok(CgroupReply::Joined)
}

/// `--cpuset-cpus`: digits, commas and dashes (the kernel checks the CPUs).
fn check_cpuset(l: &CgroupLimits) -> Result<()> {
    if let Some(c) = &l.cpuset_cpus {
        if c.is_empty()
            || c.len() > MAX_CPUSET_LEN
            || !c
                .bytes()
                .all(|b| b.is_ascii_digit() || b == b',' || b == b'-')
        {
            return Err(Error::Proto(proto::Error::Remote(RemoteError::new(
                ErrorKind::InvalidRequest,
                format!("--cpuset-cpus {c:?}: expected CPU numbers and ranges such as 0-2,4"),
            ))));
        }
    }
    Ok(())
}

/// The user's lock: a root-only file in the helpers' state directory.
fn lock_user(cfg: &SystemConfig, uid: u32) -> Result<tupper_sys::lock::Locked<std::fs::File>> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let dir = cfg.runtime.state_dir.join("cgroup");
    match std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
    {
        Ok(()) => {}
        Err(e) => return Err(Error::sys(format!("create {}", dir.display()), e)),
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(dir.join(format!("user-{uid}.lock")))
        .map_err(|e| Error::sys("open the user's cgroup lock", e))?;
    match tupper_sys::lock::exclusive_within(file, Duration::from_secs(10)) {
        Ok(Some(l)) => Ok(l),
        Ok(None) => Err(Error::sys(
            "the user's cgroup lock",
            std::io::Error::from_raw_os_error(libc::EBUSY),
        )),
        Err(e) => Err(Error::sys("lock the user's cgroups", e)),
    }
}

/// The user's totals as limits of their cgroup.
fn totals(policy: &CgroupPolicy) -> CgroupLimits {
    CgroupLimits {
        memory: policy.total_memory.value,
        pids: policy.total_pids.value,
        millicpus: policy.total_cpus.value,
        ..Default::default()
    }
}

/// The container's cgroups (and the user's), their limits, and with
/// `process` that process in them; what was made goes again on failure.
fn create(
    layout: &Layout,
    paths: &[Paths],
    policy: &CgroupPolicy,
    id: &str,
    limits: &CgroupLimits,
    process: Option<&ownership::Process>,
) -> Result<()> {
    let Some(primary) = paths.first() else {
        return Err(Error::Unsupported(
            "this host has no cgroup hierarchy tupperware can use".into(),
        ));
    };
    let running = tree::children(&primary.user).len() as u64;
    if policy.containers.value.is_some_and(|max| running >= max) {
        return Err(policy
            .containers
            .exceeded(
                &format!("you have {running} containers with cgroups already"),
                tupper_config::cgroup_policy::Unit::Count,
            )
            .into());
    }
    if paths.iter().any(|p| p.container(id).exists()) {
        return Err(Error::Proto(proto::Error::Remote(RemoteError::new(
            ErrorKind::AlreadyExists,
            format!("container {id} has cgroups already"),
        ))));
    }
    let mut made: Vec<std::path::PathBuf> = Vec::new();
    let result = (|| {
        let user_totals = totals(policy);
        for p in paths {
            let h = &p.hierarchy;
            let cpuset = !h.v2 && h.has("cpuset");
            made.extend(tree::make_dirs(&h.mount, &p.user, cpuset)?);
            let dir = p.container(id);
            made.extend(tree::make_dirs(&h.mount, &dir, cpuset)?);
            if h.v2 && layout.mode == mode::Mode::Unified {
                enable_controllers(&h.mount, &p.user)?;
            }
            let has = |f: &str| dir.join(f).exists();
            let parent_cpuset = |d: &Path| {
                Some((
                    tree::read_trim(&d.join("cpuset.cpus"))?,
                    tree::read_trim(&d.join("cpuset.mems"))?,
                ))
            };
            // On a hybrid host the v2 tree has no controllers: the container
            // is placed there (for cgroup.kill and freezing), its limits are
            // all in v1.
            if h.v2 && layout.mode != mode::Mode::Unified {
                continue;
            }
            // The user's totals (policy may have changed since the last one).
            let user_has = |f: &str| p.user.join(f).exists();
            let w = writers::writes(h, &user_totals, &user_has, None)?;
            writers::apply(&p.user, &w)?;
            let w = writers::writes(
                h,
                limits,
                &has,
                if cpuset { parent_cpuset(&p.user) } else { None },
            )?;
            writers::apply(&dir, &w)?;
        }
        if let Some(process) = process {
            for p in paths {
                tree::place(&p.container(id), process.pid)?;
            }
            if !process.is_alive() {
                return Err(Error::NotYourContainer { pid: process.pid });
            }
        }
        Ok(())
    })();
    if result.is_err() {
        for d in made.iter().rev() {
            let _ = tree::remove_dir(d, Duration::from_millis(500));
        }
    }
    result
}

/// v2: enable the controllers the tree offers from its root down to `user`,
/// so the container's cgroup has their files.
fn enable_controllers(mount: &Path, user: &Path) -> Result<()> {
    let mut chain: Vec<&Path> = user
        .ancestors()
        .take_while(|p| p.starts_with(mount))
        .collect();
    chain.reverse();
    for dir in chain {
        let offered = tree::read_trim(&dir.join("cgroup.controllers")).unwrap_or_default();
        let wanted: Vec<String> = offered
            .split_whitespace()
            .filter(|c| ["memory", "pids", "cpu", "cpuset"].contains(c))
            .map(|c| format!("+{c}"))
            .collect();
        if !wanted.is_empty() {
            std::fs::write(dir.join("cgroup.subtree_control"), wanted.join(" "))
                .map_err(|e| Error::sys(format!("enable controllers in {}", dir.display()), e))?;
        }
    }
    Ok(())
}

fn remove(layout: &Layout, paths: &[Paths], id: &str) -> Result<CgroupReply> {
    let mut oom_kills = 0;
    if let Some(h) = layout.for_controller("memory") {
        if let Some(p) = paths.iter().find(|p| p.hierarchy == *h) {
            let dir = p.container(id);
            let file = if h.v2 {
                "memory.events"
            } else {
                "memory.oom_control"
            };
            if let Ok(text) = std::fs::read_to_string(dir.join(file)) {
                oom_kills = writers::keyed(&text, "oom_kill").unwrap_or(0);
            }
        }
    }
    // Whatever still runs in the container goes (the v2 tree, hybrid hosts too).
    for p in paths.iter().filter(|p| p.hierarchy.v2) {
        let kill = p.container(id).join("cgroup.kill");
        if kill.exists() {
            let _ = std::fs::write(kill, "1");
        }
    }
    let mut existed = false;
    let mut first_err = None;
    for p in paths {
        match tree::remove_dir(&p.container(id), Duration::from_secs(3)) {
            Ok(gone) => existed |= gone,
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
        // The user's cgroup goes with their last container.
        if tree::children(&p.user).is_empty() {
            let _ = tree::remove_dir(&p.user, Duration::ZERO);
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(CgroupReply::Removed { oom_kills, existed }),
    }
}
