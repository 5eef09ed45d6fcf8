//! Becoming uid/gid 0 of the container.

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
