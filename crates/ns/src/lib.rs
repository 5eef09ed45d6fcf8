//! `tupper_ns`: the logic of `tupper-ns`, which starts a container init in new user/mount/uts/ipc/net/pid
//! namespaces, pivoted into the caller's container root, and hands it over
//! to the supervisor.
//!
//! The checklist, top to bottom:
//!
//! Helper (caller's real uid; `cap_setuid,cap_setgid,cap_dac_read_search` permitted):
//! 1. sanitize the process, drop unneeded capabilities, handshake, receive
//!    `Spawn`, validate every field;
//! 2. find the caller's subordinate id range (none → `NoSubordinateIds`,
//!    nothing created; root without one runs without a user namespace);
//! 3. open the container root `containers/<uid>/<id>` of the store (never a
//!    path from the request) and make it the current directory;
//! 4. create the sync pipes and clone the init into its namespaces
//!    (`CLONE_PARENT`: it is the supervisor's child);
//! 5. write its uid/gid maps, wait for "setup done", reply `Spawned { pid }`
//!    (or the error, killing the init) and exit.
//!
//! Init (see `init/`):
//! 6. dumpable, "ready", wait for maps, become container root, dumpable again;
//! 7. private mounts, root bound onto itself, `/proc`, `/sys`, `/dev`, masks;
//! 8. `pivot_root`, detach the host's tree, enter the working directory;
//! 9. hostname, `lo` up;
//! 10. with `-t` a terminal of the container's devpts as stdio; parent-death
//!     signal, new session (the terminal as its controlling terminal);
//! 11. report "setup done" (or the error) to the helper;
//! 12. wait for `Start` on fd 3 (anything else: exit 125); with a terminal,
//!     send its master to the supervisor;
//! 13. default capabilities, no_new_privs, close fds, environment;
//! 14. exec (searching `PATH`); on failure send the error on fd 3, exit 127/126.

mod clone;
mod error;
mod idmap;
mod init;
mod privileges;
mod request;
mod rootfs;
mod sync;

use proto::{Channel, NsReply, RemoteError};
use tupper_config::system::SystemConfig;

use crate::clone::Forked;
pub use crate::error::Error;

/// What happened to the one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The init was spawned and its pid sent.
    Spawned,
    /// The request failed; the error was sent to the supervisor.
    Refused,
}

/// Serves the one `Spawn` request of this helper. In the cloned init this
/// never returns. `Err` is a failure before a reply could be sent.
pub fn serve() -> Result<Outcome, Error> {
    // 1. Sanitize (proto::helper: signals, not dumpable, no core, fds,
    //    limits, environment, umask, cwd /); the caller is our real uid.
    //    The container init gets the caller's soft limits back before it
    //    runs the command, so the core limit's hard value is kept for it.
    let (caller, caller_limits) =
        proto::helper::sanitize_process_with(proto::helper::CoreLimit::SoftZero)?;
    privileges::restrict(caller)?;
    let mut chan = Channel::from_inherited().and_then(|mut c| c.handshake().map(|()| c))?;
    let prepared = request::receive_spawn(&mut chan)
        .and_then(request::validate)
        .and_then(|req| {
            // 2. Subordinate ids: checked before anything is created.
            let mapping = tupper_config::subid::mapping_for(caller)?;
            // 3. The container root, from the store and the caller's uid only.
            let config = SystemConfig::load()?;
            let root = rootfs::open(&config, caller, &req.container)?;
            rootfs::enter(&root)?;
            drop(root);
            // 4. Sync pipes, then the clone.
            let pipes = sync::Pipes::new()?;
            let forked = clone::clone_init(mapping.is_some())?;
            Ok((req, mapping, pipes, forked))
        });
    let reply: Result<NsReply, RemoteError> = match prepared {
        Err(e) => Err(e.to_remote()),
        Ok((req, mapping, pipes, Forked::Child)) => {
            // 6–14 happen in the init and never return.
            init::run(
                chan,
                pipes.into_child(),
                req,
                mapping.is_some(),
                &caller_limits,
            )
        }
        Ok((_, mapping, pipes, Forked::Parent { pid, pidfd })) => {
            // 5. Maps, "setup done", reply.
            clone::see_through_setup(pid, &pidfd, pipes.into_parent(), mapping)
                .map_err(|e| e.to_remote())
        }
    };
    let ok = reply.is_ok();
    chan.reply(&reply)?;
    Ok(if ok {
        Outcome::Spawned
    } else {
        Outcome::Refused
    })
}
