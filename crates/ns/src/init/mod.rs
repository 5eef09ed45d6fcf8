//! The container init: everything after the clone, in the child.
//!
//! It holds no host privileges: inside its own user namespace it has every
//! capability, outside it nothing. Until "setup done" every error goes back to
//! the helper through the sync pipe; afterwards through the control channel.
//! It never panics and leaves only through `_exit`.

mod creds;
mod exec;
mod mount_sys;
mod mounts;
mod reaper;
mod system;
mod volumes;

use proto::{Channel, NsReply, NsRequest, SpawnRequest};

use tupper_helper::ToRemote;

use crate::error::Error;
use crate::sync::ChildEnd;

pub(crate) use tupper_lockdown::DEFAULT_CAPS;

/// Exit status when the init gives up before running the command.
const EXIT_SETUP_FAILED: i32 = 125;

fn exit(code: i32) -> ! {
    // SAFETY: _exit ends the process without running Rust or libc cleanup
    // that belongs to the helper's copy of the address space.
    unsafe { libc::_exit(code) }
}

pub fn run(
    chan: &mut Channel,
    mut sync: ChildEnd,
    req: SpawnRequest,
    user_namespace: bool,
    caller_limits: &tupper_helper::CallerLimits,
) -> ! {
    let setup = set_up(&mut sync, &req, user_namespace);
    // 11. report "setup done" (or why not) to the helper.
    let report = setup.as_ref().map(|_| ()).map_err(Error::to_remote);
    if sync.report(&report).is_err() {
        exit(EXIT_SETUP_FAILED);
    }
    let Ok((terminal, user)) = setup else {
        exit(EXIT_SETUP_FAILED)
    };
    drop(sync);

    // 12. Wait for Start; anything else (or the supervisor going away) ends us quietly.
    match chan.recv_opt::<NsRequest>() {
        Ok(Some(NsRequest::Start)) => {}
        _ => exit(EXIT_SETUP_FAILED),
    }
    // Issue 9: the monitor placed us in our cgroups before Start; a cgroup
    // namespace rooted there makes them `/` inside (`/proc/self/cgroup`).
    if let Err(e) = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWCGROUP) {
        let _ = chan.reply::<NsReply>(&Err(proto::RemoteError::new(
            proto::ErrorKind::System,
            format!("unshare the cgroup namespace: {e}"),
        )));
        exit(EXIT_SETUP_FAILED);
    }
    // With a terminal, its master goes to the supervisor first.
    if let Some(master) = terminal {
        let sent = chan.send_with_fd::<Result<NsReply, proto::RemoteError>>(
            &Ok(NsReply::Terminal),
            std::os::fd::AsFd::as_fd(&master),
        );
        if sent.is_err() {
            exit(EXIT_SETUP_FAILED);
        }
    }

    // 13–14. Lock down and exec (with `--init`, in a child of a reaper);
    //        only failures come back.
    let home = user.as_ref().and_then(|u| u.home.clone());
    let exec = |chan: &mut Channel| {
        let (err, code) = exec::exec_command(&req, home.as_deref());
        let _ = chan.reply::<NsReply>(&Err(err));
        code
    };
    match exec::lock_down(caller_limits, &req.security, user.as_ref()) {
        Ok(()) if req.security.init => reaper::run(chan, exec),
        Ok(()) => exit(exec(chan)),
        Err(e) => {
            let _ = chan.reply::<NsReply>(&Err(e.to_remote()));
            exit(EXIT_SETUP_FAILED)
        }
    }
}

/// What `set_up` hands on: the terminal's master (with `-t`) and the user
/// of `-u`.
type SetUp = (Option<std::os::fd::OwnedFd>, Option<tupper_lockdown::User>);

/// Steps 6–10 of the checklist in `lib.rs`; returns the terminal's
/// master when the request asked for one, and the user of `-u`.
fn set_up(sync: &mut ChildEnd, req: &SpawnRequest, user_namespace: bool) -> Result<SetUp, Error> {
    // 6. Ids: wait for the maps, then become root of the container.
    tupper_sys::set_dumpable().map_err(Error::sys("make the init dumpable"))?;
    sync.signal_ready()?;
    sync.wait_maps_written()?;
    if !user_namespace {
        creds::raise_all()?;
    }
    creds::become_container_root()?;

    // 7–8. Mounts and pivot_root.
    mounts::set_up_root(req)?;
    system::enter_workdir(&req.workdir)?;
    // `-u`: from the container's own /etc/passwd and /etc/group.
    let user = match &req.security.user {
        Some(spec) => Some(tupper_lockdown::user::lookup(spec)?),
        None => None,
    };

    // 9. Hostname and loopback.
    system::set_hostname(&req.hostname)?;
    if !req.security.host_network {
        system::loopback_up()?;
    }

    // 10. A terminal of the container's own devpts as stdio, a session with
    //     it as the controlling terminal, death of the supervisor.
    let terminal = if req.tty {
        let master = system::terminal_as_stdio()?;
        // The `-u` user owns its terminal, so that it can reopen it (as
        // `/dev/stdout`, `/dev/tty`); it is the container's own devpts.
        if let Some(u) = &user {
            nix::unistd::fchown(
                std::io::stdin(),
                Some(nix::unistd::Uid::from_raw(u.uid)),
                Some(nix::unistd::Gid::from_raw(u.gid)),
            )
            .map_err(|e| Error::sys("give the terminal to the -u user")(e.into()))?;
        }
        Some(master)
    } else {
        None
    };
    system::new_session(req.tty)?;
    Ok((terminal, user))
}
