//! Writing the init's uid/gid maps, as `newuidmap`/`newgidmap` would.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::fd::OwnedFd;

use caps::Capability;
use tupper_config::subid::IdMapping;

use crate::capabilities::with_caps;
use crate::error::Error;
use tupper_sys as sys;

/// Map container ids 0..65535 onto the caller's subordinate range.
pub fn write(pid: i32, pidfd: &OwnedFd, mapping: &IdMapping) -> Result<(), Error> {
    write_one(
        pid,
        pidfd,
        "uid_map",
        &mapping.uid_map(),
        Capability::CAP_SETUID,
    )?;
    write_one(
        pid,
        pidfd,
        "gid_map",
        &mapping.gid_map(),
        Capability::CAP_SETGID,
    )
}

fn write_one(
    pid: i32,
    pidfd: &OwnedFd,
    file: &str,
    map: &str,
    cap: Capability,
) -> Result<(), Error> {
    let what = format!("write the container's {file}");
    // The kernel checks the capability both when the file is opened and when
    // it is written.
    with_caps(&[cap], || {
        let mut f = OpenOptions::new()
            .write(true)
            .open(format!("/proc/{pid}/{file}"))
            .map_err(Error::sys(what.as_str()))?;
        // The file was opened by pid: make sure that pid is still our init
        // (a pidfd never refers to a recycled pid).
        sys::pidfd::send_signal(pidfd, 0).map_err(|_| Error::InitGone)?;
        let n = f.write(map.as_bytes()).map_err(Error::sys(what.as_str()))?;
        if n != map.len() {
            return Err(Error::sys(what.as_str())(std::io::Error::other(
                "short write",
            )));
        }
        Ok(())
    })
}
