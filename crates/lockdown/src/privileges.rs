//! What the command may do, set last before `execve`: the bounding set,
//! the user it runs as, `no_new_privs` (only on request) and the seccomp
//! filter.
//!
//! Order matters:
//! 1. the bounding set is reduced to the container's capabilities, the
//!    inheritable and ambient sets emptied (`execve` then gives root exactly
//!    the bounding set, and any other user nothing but what a file
//!    capability of the image grants, within the bounding set);
//! 2. descriptors, signal dispositions and the caller's limits as before;
//! 3. groups and ids of `-u`; with a seccomp filter to install and
//!    `no_new_privs` off, `PR_SET_KEEPCAPS` keeps `CAP_SYS_ADMIN` (of the
//!    container's user namespace) across the id change, because installing a
//!    filter without `no_new_privs` needs it; the bounding set no longer has
//!    it, so `execve` drops it;
//! 4. `no_new_privs` when asked for;
//! 5. the filter, last: after it the init makes only `execve` (and, if that
//!    fails, `write`/`sendmsg` of the error and `exit_group`; with `--init`,
//!    `clone`, `capset`, `prctl`, signal calls, `wait4` and `kill`), all of
//!    which the default profile allows.

use std::collections::HashSet;
use std::io;

use caps::{CapSet, Capability};
use proto::{BpfInstruction, SpawnSecurity};

use crate::error::{Context, Error};
use crate::user::User;

/// Capabilities a container process keeps (bounding, permitted, effective, inheritable).
pub const DEFAULT_CAPS: [Capability; 14] = [
    Capability::CAP_CHOWN,
    Capability::CAP_DAC_OVERRIDE,
    Capability::CAP_FSETID,
    Capability::CAP_FOWNER,
    Capability::CAP_MKNOD,
    Capability::CAP_NET_RAW,
    Capability::CAP_SETGID,
    Capability::CAP_SETUID,
    Capability::CAP_SETFCAP,
    Capability::CAP_SETPCAP,
    Capability::CAP_NET_BIND_SERVICE,
    Capability::CAP_SYS_CHROOT,
    Capability::CAP_KILL,
    Capability::CAP_AUDIT_WRITE,
];

/// The capabilities a container keeps.
pub type Keep = HashSet<Capability>;

fn caps_err(what: &'static str) -> impl FnOnce(caps::errors::CapsError) -> Error {
    move |e| Error::sys(what)(io::Error::other(e.to_string()))
}

/// The container's capabilities: the request's mask, or [`DEFAULT_CAPS`].
pub fn container_caps(sec: &SpawnSecurity) -> HashSet<Capability> {
    match sec.capabilities {
        None => DEFAULT_CAPS.into_iter().collect(),
        Some(mask) => caps::all()
            .into_iter()
            .filter(|c| c.index() < 64 && mask & (1 << c.index()) != 0)
            .collect(),
    }
}

/// Step 1: bounding set (by number, so capabilities newer than the caps
/// crate go too), inheritable and ambient sets.
pub fn reduce_bounding_set(keep: &HashSet<Capability>) -> Result<(), Error> {
    for cap in 0..64u32 {
        if keep.iter().any(|c| u32::from(c.index()) == cap) {
            continue;
        }
        match tupper_sys::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => break,
            Err(e) => return Err(e).ctx("reduce the capability bounding set"),
        }
    }
    caps::clear(None, CapSet::Inheritable).map_err(caps_err("clear inheritable capabilities"))?;
    caps::clear(None, CapSet::Ambient).map_err(caps_err("clear ambient capabilities"))
}

/// Does installing the filter need `CAP_SYS_ADMIN`?
pub fn filter_needs_admin(sec: &SpawnSecurity) -> bool {
    sec.seccomp.is_some() && !sec.no_new_privs
}

/// Step 3: become the user of `-u` (root stays root with `keep`).
pub fn become_user(
    user: Option<&User>,
    keep: &HashSet<Capability>,
    sec: &SpawnSecurity,
) -> Result<(), Error> {
    use nix::unistd::{setgroups, setresgid, setresuid, Gid, Uid};
    let admin = filter_needs_admin(sec);
    let mut held = keep.clone();
    if admin {
        held.insert(Capability::CAP_SYS_ADMIN);
    }
    if let Some(u) = user {
        let groups: Vec<Gid> = u.groups.iter().map(|g| Gid::from_raw(*g)).collect();
        setgroups(&groups).ctx("set the supplementary groups of the user")?;
        let gid = Gid::from_raw(u.gid);
        setresgid(gid, gid, gid).ctx("become the group of the user")?;
        if u.uid != 0 {
            if admin {
                tupper_sys::prctl(libc::PR_SET_KEEPCAPS, 1).ctx("keep capabilities")?;
            }
            let uid = Uid::from_raw(u.uid);
            setresuid(uid, uid, uid).ctx("become the user")?;
            // Nothing effective now; keep only what installing the filter needs.
            held = HashSet::new();
            if admin {
                held.insert(Capability::CAP_SYS_ADMIN);
            }
        }
    }
    caps::set(None, CapSet::Effective, &held).map_err(caps_err("set capabilities"))?;
    caps::set(None, CapSet::Permitted, &held).map_err(caps_err("set capabilities"))
}

/// Step 4.
pub fn no_new_privs(sec: &SpawnSecurity) -> Result<(), Error> {
    if sec.no_new_privs {
        tupper_sys::prctl(libc::PR_SET_NO_NEW_PRIVS, 1).ctx("set no_new_privs")?;
    }
    Ok(())
}

/// Step 5: install the filter (validated: 1 to 4096 instructions).
pub fn install_filter(program: &[BpfInstruction]) -> Result<(), Error> {
    let filter: Vec<libc::sock_filter> = program
        .iter()
        .map(|i| libc::sock_filter {
            code: i.code,
            jt: i.jt,
            jf: i.jf,
            k: i.k,
        })
        .collect();
    let len = u16::try_from(filter.len())
        .map_err(|_| Error::Unsafe("the seccomp filter is too long".into()))?;
    let prog = libc::sock_fprog {
        len,
        filter: filter.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: prog points to `len` instructions that outlive the call; the
    // kernel copies the program.
    let rc = unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER as libc::c_ulong,
            &prog as *const libc::sock_fprog as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error()).ctx("install the seccomp filter");
    }
    Ok(())
}

/// No capabilities at all, and not dumpable (so the container's processes
/// cannot trace this one): the reaper of `--init`.
pub fn drop_everything() -> Result<(), Error> {
    caps::clear(None, CapSet::Effective).map_err(caps_err("drop capabilities"))?;
    caps::clear(None, CapSet::Permitted).map_err(caps_err("drop capabilities"))?;
    non_dumpable()
}

/// Not dumpable: processes of the same uid can neither trace this one nor
/// read its memory or `/proc/<pid>/environ` (only `CAP_SYS_PTRACE` of the
/// initial user namespace can). `execve` makes a process dumpable again.
pub fn non_dumpable() -> Result<(), Error> {
    tupper_sys::prctl(libc::PR_SET_DUMPABLE, 0).ctx("make the process non-dumpable")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_caps_match_the_protocols_list() {
        let ours: Vec<u32> = DEFAULT_CAPS.iter().map(|c| u32::from(c.index())).collect();
        assert_eq!(ours, proto::security::DEFAULT_CAPABILITIES);
    }

    #[test]
    fn masks_become_sets() {
        let mut sec = SpawnSecurity::default();
        assert_eq!(container_caps(&sec), DEFAULT_CAPS.into_iter().collect());
        sec.capabilities = Some(0);
        assert!(container_caps(&sec).is_empty());
        sec.capabilities = Some(1 << 21 | 1 << 13);
        assert_eq!(
            container_caps(&sec),
            [Capability::CAP_SYS_ADMIN, Capability::CAP_NET_RAW]
                .into_iter()
                .collect()
        );
    }

    #[test]
    fn admin_is_needed_only_for_a_filter_without_no_new_privs() {
        let mut sec = SpawnSecurity::default();
        assert!(!filter_needs_admin(&sec));
        sec.seccomp = Some(vec![]);
        assert!(filter_needs_admin(&sec));
        sec.no_new_privs = true;
        assert!(!filter_needs_admin(&sec));
    }
}
