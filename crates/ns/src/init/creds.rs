//! Becoming uid/gid 0 of the container, and (without a user namespace) the
//! init's capabilities.

use caps::CapSet;

use nix::unistd::{setgroups, setresgid, setresuid, Gid, Uid};

use crate::error::{Context, Error};

pub fn become_container_root() -> Result<(), Error> {
    let (root_uid, root_gid) = (Uid::from_raw(0), Gid::from_raw(0));
    setresgid(root_gid, root_gid, root_gid).ctx("become group 0 of the container")?;
    setgroups(&[]).ctx("clear supplementary groups")?;
    setresuid(root_uid, root_uid, root_uid).ctx("become user 0 of the container")?;
    // The credential change made us non-dumpable again; tupper-net must be
    // able to open our namespaces through a pidfd.
    tupper_sys::set_dumpable().ctx("make the init dumpable")
}

/// Make every permitted capability effective. Only for an init without a
/// user namespace (a root caller): its permitted set is what the helper
/// kept for root (`CAPS.needed` + `CAPS.root_extra`), no longer all of
/// root's. (In a user namespace the init holds every capability of that
/// namespace anyway.)
pub fn raise_all() -> Result<(), Error> {
    let caps_err = |what: &'static str| {
        move |e: caps::errors::CapsError| Error::sys(what)(std::io::Error::other(e.to_string()))
    };
    let permitted =
        caps::read(None, CapSet::Permitted).map_err(caps_err("read permitted capabilities"))?;
    caps::set(None, CapSet::Effective, &permitted).map_err(caps_err("raise capabilities"))
}
