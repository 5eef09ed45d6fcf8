//! Disk quota: btrfs quota groups, in simple-quota mode, per container and
//! per user (issue 9).
//!
//! **Mode.** The store runs btrfs *simple quotas* (squota, Linux 6.7+):
//! every extent is charged to the subvolume that wrote it, for as long as it
//! lives, with no back-reference walking. That is exactly the charge we want
//! and costs almost nothing: a container root is a snapshot of an image, so
//! what the image holds stays charged to the image, and the container is
//! charged only for what it writes. Full qgroup accounting would give the
//! same numbers through "exclusive" bytes, but walks back-references on every
//! extent change and makes snapshot deletion expensive. Squota also puts a
//! subvolume created *inside* another into the same parent quota groups
//! (kernel "auto hierarchy"), which is what keeps a container from escaping
//! its limit with a nested subvolume. A store whose quotas are already on in
//! full mode is used as it is (the limits below are on exclusive bytes,
//! which mean the same in both modes).
//!
//! **Quota groups** (`level/id`, as `btrfs qgroup show` prints them):
//! - `0/<subvolume id>`: every subvolume's own, made by the kernel;
//! - `1/<subvolume id>` per container root: holds `0/<root>` and every
//!   subvolume the container makes inside it; its limit is the container's
//!   size (`--storage-opt size=`, policy `disk`);
//! - `2/<uid>` per user: holds the user's images (`0/<image>`, imports
//!   included while they are written) and containers (`1/<root>`); its limit
//!   is the policy's `total_disk`.
//!
//! Limits are on exclusive bytes (`max_excl`). When a write would pass a
//! limit the kernel fails it with `EDQUOT`. Removing a subvolume leaves its
//! `0/N` group until the kernel's cleaner has freed its extents, and then the
//! kernel removes it; the container's `1/N` group is removed by us once it
//! has no members (at once when possible, else by the user's next storage
//! request or `gc`).

use std::os::fd::{AsFd, AsRawFd};

use nix::errno::Errno;

use crate::btrfs;
use crate::capabilities::{with_caps, ADMIN};
use crate::error::{Error, Result};

const MAGIC: u8 = 0x94;

/// `BTRFS_QUOTA_CTL_ENABLE_SIMPLE_QUOTA` (not in older headers).
const QUOTA_CTL_ENABLE_SIMPLE: u64 = 4;
/// `BTRFS_QUOTA_TREE_OBJECTID`.
const QUOTA_TREE: u64 = 8;
/// `BTRFS_QGROUP_STATUS_KEY`, `BTRFS_QGROUP_RELATION_KEY`.
const STATUS_KEY: u32 = 240;
const RELATION_KEY: u32 = 246;
/// `BTRFS_QGROUP_LIMIT_MAX_EXCL`.
const LIMIT_MAX_EXCL: u64 = 1 << 1;

/// `struct btrfs_ioctl_quota_ctl_args`.
#[repr(C)]
pub struct QuotaCtlArgs {
    cmd: u64,
    status: u64,
}

/// `struct btrfs_ioctl_qgroup_assign_args`.
#[repr(C)]
pub struct AssignArgs {
    assign: u64,
    src: u64,
    dst: u64,
}

/// `struct btrfs_ioctl_qgroup_create_args`.
#[repr(C)]
pub struct CreateArgs {
    create: u64,
    qgroupid: u64,
}

/// `struct btrfs_qgroup_limit`.
#[repr(C)]
#[derive(Default)]
pub struct QgroupLimit {
    flags: u64,
    max_rfer: u64,
    max_excl: u64,
    rsv_rfer: u64,
    rsv_excl: u64,
}

/// `struct btrfs_ioctl_qgroup_limit_args`.
#[repr(C)]
pub struct LimitArgs {
    qgroupid: u64,
    lim: QgroupLimit,
}

const _: () = assert!(std::mem::size_of::<QuotaCtlArgs>() == 16);
const _: () = assert!(std::mem::size_of::<AssignArgs>() == 24);
const _: () = assert!(std::mem::size_of::<CreateArgs>() == 16);
const _: () = assert!(std::mem::size_of::<LimitArgs>() == 48);

nix::ioctl_readwrite!(ioc_quota_ctl, MAGIC, 40, QuotaCtlArgs);
nix::ioctl_write_ptr!(ioc_qgroup_assign, MAGIC, 41, AssignArgs);
nix::ioctl_write_ptr!(ioc_qgroup_create, MAGIC, 42, CreateArgs);
// The kernel declares QGROUP_LIMIT as _IOR although it only reads the
// argument; the number must match.
nix::ioctl_read!(ioc_qgroup_limit, MAGIC, 43, LimitArgs);

/// A quota group id: `level << 48 | id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Qgroup(pub u64);

impl Qgroup {
    const ID_MASK: u64 = (1 << 48) - 1;

    pub fn new(level: u16, id: u64) -> Qgroup {
        Qgroup((u64::from(level) << 48) | (id & Self::ID_MASK))
    }
    /// The per-user group `2/<uid>`.
    pub fn user(uid: u32) -> Qgroup {
        Qgroup::new(2, u64::from(uid))
    }
    /// The per-container group `1/<root subvolume id>`.
    pub fn container(root_subvol: u64) -> Qgroup {
        Qgroup::new(1, root_subvol)
    }
    /// A subvolume's own group `0/<id>`.
    pub fn subvol(id: u64) -> Qgroup {
        Qgroup::new(0, id)
    }
    pub fn level(self) -> u16 {
        (self.0 >> 48) as u16
    }
    pub fn id(self) -> u64 {
        self.0 & Self::ID_MASK
    }
}

impl std::fmt::Display for Qgroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.level(), self.id())
    }
}

fn qerr(what: &str) -> impl FnOnce(Errno) -> Error + '_ {
    move |e| Error::sys(format!("disk quota: {what}"))(e)
}

/// Whether the filesystem has a quota tree (its status item can be found).
fn enabled(fd: impl AsFd) -> Result<bool> {
    match btrfs::search(fd, QUOTA_TREE, (0, 0), STATUS_KEY, (0, 0), 1) {
        Ok(items) => Ok(!items.is_empty()),
        Err(Errno::ENOENT) => Ok(false),
        Err(e) => Err(qerr("cannot read the quota status")(e)),
    }
}

/// Turn quotas on (simple mode) unless they are on already. Idempotent; run
/// whenever the store is opened. Needs CAP_SYS_ADMIN.
pub fn ensure_enabled(store_root: impl AsFd) -> Result<()> {
    with_caps(ADMIN, || {
        if enabled(store_root.as_fd())? {
            return Ok(());
        }
        let mut a = QuotaCtlArgs {
            cmd: QUOTA_CTL_ENABLE_SIMPLE,
            status: 0,
        };
        // SAFETY: `a` is a valid btrfs_ioctl_quota_ctl_args.
        match unsafe { ioc_quota_ctl(store_root.as_fd().as_raw_fd(), &mut a) } {
            Ok(_) | Err(Errno::EEXIST) => Ok(()),
            Err(e) => Err(Error::Other {
                what: "cannot enable disk quotas on the image store".into(),
                why: format!("{e} (simple quotas need Linux 6.7 or later)"),
            }),
        }
    })
}

fn create(fd: impl AsFd, g: Qgroup) -> std::result::Result<(), Errno> {
    let a = CreateArgs {
        create: 1,
        qgroupid: g.0,
    };
    // SAFETY: valid btrfs_ioctl_qgroup_create_args.
    match unsafe { ioc_qgroup_create(fd.as_fd().as_raw_fd(), &a) } {
        Ok(_) | Err(Errno::EEXIST) => Ok(()),
        Err(e) => Err(e),
    }
}

fn remove(fd: impl AsFd, g: Qgroup) -> std::result::Result<(), Errno> {
    let a = CreateArgs {
        create: 0,
        qgroupid: g.0,
    };
    // SAFETY: as above.
    match unsafe { ioc_qgroup_create(fd.as_fd().as_raw_fd(), &a) } {
        Ok(_) | Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(e),
    }
}

fn assign(fd: impl AsFd, member: Qgroup, parent: Qgroup) -> std::result::Result<(), Errno> {
    let a = AssignArgs {
        assign: 1,
        src: member.0,
        dst: parent.0,
    };
    // SAFETY: valid btrfs_ioctl_qgroup_assign_args. A positive return means
    // the accounting needs a rescan (full mode only; squota never does).
    match unsafe { ioc_qgroup_assign(fd.as_fd().as_raw_fd(), &a) } {
        Ok(_) | Err(Errno::EEXIST) => Ok(()),
        Err(e) => Err(e),
    }
}

/// The limit arguments: `Some(bytes)` caps exclusive bytes, `None` lifts it.
fn limit_args(g: Qgroup, max: Option<u64>) -> LimitArgs {
    LimitArgs {
        qgroupid: g.0,
        lim: QgroupLimit {
            flags: LIMIT_MAX_EXCL,
            // The kernel's "no limit" is u64::MAX with the flag set.
            max_excl: max.unwrap_or(u64::MAX),
            ..QgroupLimit::default()
        },
    }
}

fn set_limit(fd: impl AsFd, g: Qgroup, max: Option<u64>) -> std::result::Result<(), Errno> {
    let mut a = limit_args(g, max);
    // SAFETY: valid btrfs_ioctl_qgroup_limit_args.
    unsafe { ioc_qgroup_limit(fd.as_fd().as_raw_fd(), &mut a) }.map(drop)
}

/// The user's group `2/<uid>`, created if missing, with the policy's total.
fn ensure_user(fd: impl AsFd, uid: u32, total: Option<u64>) -> Result<Qgroup> {
    let g = Qgroup::user(uid);
    create(fd.as_fd(), g).map_err(qerr("cannot create the user's quota group"))?;
    set_limit(fd.as_fd(), g, total).map_err(qerr("cannot set the user's total"))?;
    Ok(g)
}

/// What a new subvolume is, for [`charge`].
pub enum Owner {
    /// An image, a layer or an import in progress: counts toward the user's
    /// total only.
    Image,
    /// A container root, with its own limit (`None`: only the user's total).
    Container { limit: Option<u64> },
}

/// Make the freshly created subvolume `sub` count against user `uid` (whose
/// total is `total`), and for a container root give it its own group and
/// limit. Call right after the subvolume is created, before anything is
/// written into it. Needs CAP_SYS_ADMIN (raised here).
pub fn charge(sub: impl AsFd, uid: u32, total: Option<u64>, owner: Owner) -> Result<()> {
    with_caps(ADMIN, || {
        let fd = sub.as_fd();
        let id = btrfs::subvol_id(fd).map_err(qerr("cannot identify the subvolume"))?;
        let user = ensure_user(fd, uid, total)?;
        match owner {
            Owner::Image => assign(fd, Qgroup::subvol(id), user)
                .map_err(qerr("cannot count the image toward your total")),
            Owner::Container { limit } => {
                let g = Qgroup::container(id);
                create(fd, g).map_err(qerr("cannot create the container's quota group"))?;
                set_limit(fd, g, limit).map_err(qerr("cannot set the container's size"))?;
                assign(fd, Qgroup::subvol(id), g)
                    .map_err(qerr("cannot put the container in its quota group"))?;
                assign(fd, g, user).map_err(qerr("cannot count the container toward your total"))
            }
        }
    })
}

/// Run `destroy` (the removal of container root `root_id` of user `uid`)
/// so that the quota cannot stop it: a removal writes metadata in the
/// container root (its nested subvolumes' entries), which a full group would
/// refuse with EDQUOT. The container's own limit is lifted first (it is going
/// away); if the user's total still stops it, that is lifted for the removal
/// only and set back to `total` afterwards.
pub fn removing(
    fd: impl AsFd,
    root_id: u64,
    uid: u32,
    total: Option<u64>,
    destroy: impl Fn() -> Result<()>,
) -> Result<()> {
    let fd = fd.as_fd();
    with_caps(ADMIN, || {
        // Best effort: a group that is gone already has no limit.
        let _ = set_limit(fd, Qgroup::container(root_id), None);
        Ok(())
    })?;
    removing_within_total(fd, uid, total, destroy)
}

/// Run `destroy` (a removal of something of the user's: an image, a
/// container root) so that the user's total cannot stop it: making a
/// read-only subvolume writable and deleting it write metadata, which a
/// full group refuses with EDQUOT. On EDQUOT the total is lifted for the
/// removal only and set back to `total` afterwards.
pub fn removing_within_total(
    fd: impl AsFd,
    uid: u32,
    total: Option<u64>,
    destroy: impl Fn() -> Result<()>,
) -> Result<()> {
    let fd = fd.as_fd();
    match destroy() {
        Err(Error::Sys {
            errno: Errno::EDQUOT,
            ..
        }) => {
            let user = Qgroup::user(uid);
            with_caps(ADMIN, || {
                set_limit(fd, user, None).map_err(qerr("cannot lift your total to remove"))
            })?;
            let done = destroy();
            with_caps(ADMIN, || {
                set_limit(fd, user, total).map_err(qerr("cannot set your total again"))
            })?;
            done
        }
        other => other,
    }
}

/// The id of subvolume `sub` (for [`release_container`] after it is gone).
pub fn subvol_id(sub: impl AsFd) -> Result<u64> {
    btrfs::subvol_id(sub).map_err(qerr("cannot identify the subvolume"))
}

/// After a container root with subvolume id `root_id` was destroyed: remove
/// its group if it is empty already (otherwise [`sweep_user`] does later).
pub fn release_container(fd: impl AsFd, root_id: u64) -> Result<()> {
    with_caps(ADMIN, || {
        remove_if_empty(fd.as_fd(), Qgroup::container(root_id));
        Ok(())
    })
}

/// Groups that hold `g` (relations `(g, RELATION, parent)`), or the members
/// of `g` (relations `(g, RELATION, member)` with a lower level).
fn relations(fd: impl AsFd, g: Qgroup) -> std::result::Result<Vec<Qgroup>, Errno> {
    let items = btrfs::search(
        fd,
        QUOTA_TREE,
        (g.0, g.0),
        RELATION_KEY,
        (0, u64::MAX),
        usize::MAX,
    )?;
    Ok(items.into_iter().map(|i| Qgroup(i.offset)).collect())
}

fn members(fd: impl AsFd, g: Qgroup) -> std::result::Result<Vec<Qgroup>, Errno> {
    Ok(relations(fd, g)?
        .into_iter()
        .filter(|m| m.level() < g.level())
        .collect())
}

/// Remove `g` if nothing is in it any more (EBUSY while members remain).
fn remove_if_empty(fd: impl AsFd, g: Qgroup) -> bool {
    match members(fd.as_fd(), g) {
        Ok(m) if m.is_empty() => {
            // Unhook it from the user's group first, then remove it.
            if let Ok(parents) = relations(fd.as_fd(), g) {
                for p in parents.into_iter().filter(|p| p.level() > g.level()) {
                    let a = AssignArgs {
                        assign: 0,
                        src: g.0,
                        dst: p.0,
                    };
                    // SAFETY: valid btrfs_ioctl_qgroup_assign_args.
                    let _ = unsafe { ioc_qgroup_assign(fd.as_fd().as_raw_fd(), &a) };
                }
            }
            remove(fd, g).is_ok()
        }
        _ => false,
    }
}

/// Remove the user's container groups that have become empty (their
/// container was removed and the kernel has finished freeing it). Cheap: one
/// search of the quota tree per group. Errors are ignored (best effort;
/// the next call tries again).
pub fn sweep_user(fd: impl AsFd, uid: u32) -> usize {
    let swept = with_caps(ADMIN, || {
        let fd = fd.as_fd();
        let user = Qgroup::user(uid);
        let Ok(below) = members(fd, user) else {
            return Ok(0);
        };
        Ok(below
            .into_iter()
            .filter(|g| g.level() == 1)
            .filter(|g| remove_if_empty(fd, *g))
            .count())
    });
    swept.unwrap_or(0)
}

/// The caller's disk limits from the policy: (the container size for a
/// request of `requested` bytes or the policy's default, the user's total).
/// A request above the policy's `disk` is refused naming the limit and where
/// it is set, before anything is created.
pub fn limits_for(
    caller: proto::Caller,
    requested: Option<u64>,
) -> Result<(Option<u64>, Option<u64>)> {
    let limits = tupper_config::policy::Policy::load()?.limits_for_current(caller);
    Ok((
        container_size(&limits.disk, requested)?,
        none_if_max(limits.total_disk.value),
    ))
}

fn none_if_max(v: u64) -> Option<u64> {
    (v != u64::MAX).then_some(v)
}

fn container_size(
    disk: &tupper_config::policy::Limit<u64>,
    requested: Option<u64>,
) -> Result<Option<u64>> {
    match requested {
        Some(0) => Err(Error::Quota(
            "--storage-opt size= must be more than 0 bytes".into(),
        )),
        Some(n) if n > disk.value => Err(disk
            .exceeded(&format!(
                "--storage-opt size={n} is more than a container may have"
            ))
            .into()),
        Some(n) => Ok(Some(n)),
        None => Ok(none_if_max(disk.value)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qgroup_ids() {
        assert_eq!(Qgroup::user(1000).0, (2u64 << 48) | 1000);
        assert_eq!(Qgroup::container(300).0, (1u64 << 48) | 300);
        assert_eq!(Qgroup::subvol(257).0, 257);
        assert_eq!(Qgroup::user(u32::MAX).to_string(), "2/4294967295");
        assert_eq!(Qgroup::container(300).to_string(), "1/300");
        assert_eq!(Qgroup::user(5).level(), 2);
        assert_eq!(Qgroup::user(5).id(), 5);
        // An id never spills into the level bits.
        assert_eq!(Qgroup::new(1, u64::MAX).level(), 1);
    }

    #[test]
    fn ioctl_numbers_match_linux() {
        // As in linux/btrfs.h.
        assert_eq!(nix::request_code_readwrite!(0x94, 40, 16), 0xc010_9428);
        assert_eq!(nix::request_code_write!(0x94, 41, 24), 0x4018_9429);
        assert_eq!(nix::request_code_write!(0x94, 42, 16), 0x4010_942a);
        assert_eq!(nix::request_code_read!(0x94, 43, 48), 0x8030_942b);
    }

    #[test]
    fn container_size_is_bounded_by_the_policy() {
        use tupper_config::policy::Limit;
        let disk = Limit {
            value: 100u64 << 20,
            source: "/etc/tupperware/policy.toml [default]".to_string(),
        };
        assert_eq!(container_size(&disk, None).unwrap(), Some(100 << 20));
        assert_eq!(container_size(&disk, Some(1 << 20)).unwrap(), Some(1 << 20));
        let e = container_size(&disk, Some(200 << 20)).unwrap_err();
        let msg = tupper_helper::ToRemote::to_remote(&e).message;
        assert!(
            msg.contains("limit 104857600 set by /etc/tupperware/policy.toml [default]"),
            "{msg}"
        );
        assert!(container_size(&disk, Some(0)).is_err());
        let none = Limit {
            value: u64::MAX,
            source: "the built-in default".to_string(),
        };
        assert_eq!(container_size(&none, None).unwrap(), None);
        assert_eq!(container_size(&none, Some(5)).unwrap(), Some(5));
    }

    #[test]
    fn limit_arguments() {
        let a = limit_args(Qgroup::container(300), Some(64 << 20));
        assert_eq!(a.qgroupid, (1u64 << 48) | 300);
        assert_eq!(a.lim.flags, LIMIT_MAX_EXCL);
        assert_eq!(a.lim.max_excl, 64 << 20);
        assert_eq!((a.lim.max_rfer, a.lim.rsv_rfer, a.lim.rsv_excl), (0, 0, 0));
        let a = limit_args(Qgroup::user(7), None);
        assert_eq!(a.lim.max_excl, u64::MAX);
    }
}
