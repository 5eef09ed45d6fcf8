//! `tupper_ns`: the logic of `tupper-ns`, which starts a container init in new user/mount/uts/ipc/net/pid
//! namespaces, pivoted into the caller's container root, and hands it over
//! to the supervisor.
//!
//! The checklist, top to bottom:
//!
//! Helper (caller's real uid; `cap_setuid,cap_setgid,cap_dac_read_search` permitted):
//! 1. sanitize the process, drop unneeded capabilities, handshake
//!    (`tupper_helper`, as every helper), receive `Spawn`, validate every
//!    field;
//! 2. find the caller's subordinate id range (none → `NoSubordinateIds`,
//!    nothing created; root without one runs without a user namespace);
//! 3. receive the container root, the detached overlay mount
//!    `tupper-storage` made of `containers/<uid>/<id>` (a descriptor, never a
//!    path), refuse anything but an overlay, make it the current directory;
//! 4. create the sync pipes and clone the init into its namespaces
//!    (`CLONE_PARENT`: it is the supervisor's child);
//! 5. once it is ready (dumpable: other helpers may look at it), tell its
//!    pid (`Cloned { pid }`: issue 11, the supervisor has it join its
//!    cgroups while it sets itself up), write its uid/gid maps, wait for
//!    "setup done", reply `Spawned { pid }` (or the error, killing the init)
//!    and exit.
//!
//! Init (see `init/`):
//! 6. dumpable, "ready", wait for maps, become container root, dumpable again;
//! 7. private mounts, the root's mount moved onto `/`, `/proc`, `/sys`,
//!    `/dev`, masks;
//! 8. `pivot_root`, detach the host's tree, enter the working directory;
//! 9. hostname, `lo` up;
//! 10. with `-t` a terminal of the container's devpts as stdio; parent-death
//!     signal, new session (the terminal as its controlling terminal);
//! 11. report "setup done" (or the error) to the helper;
//! 12. wait for `Start` on fd 3 (anything else: exit 125); with a terminal,
//!     send its master to the supervisor;
//! 13. default capabilities, no_new_privs, close fds, environment;
//! 14. exec (searching `PATH`); on failure send the error on fd 3, exit 127/126.

mod capabilities;
mod clone;
mod error;
mod idmap;
mod init;
mod request;
mod rootfs;
mod sync;

use proto::NsRequest;
use tupper_helper::{CoreLimit, Served};

pub use crate::capabilities::CAPS;
use crate::clone::Forked;
pub use crate::error::Error;

/// Serves the one `Spawn` request of this helper. In the cloned init this
/// never returns. `Ok` says whether the request was answered with an
/// error ([`Served::failed`]); `Err` is a failure before a reply could be
/// sent.
pub fn serve() -> Result<Served, tupper_helper::Error> {
    // 1. `--print-caps` (prints [`CAPS`] and exits); sanitize (signals, not
    //    dumpable, no core, fds, limits, environment, umask, cwd /), the
    //    caller is our real uid; capabilities down to [`CAPS`]; the channel.
    //    The container init gets the caller's soft limits back before it
    //    runs the command, so the core limit's hard value is kept for it.
    let mut started = tupper_helper::start(&CAPS, CoreLimit::SoftZero)?;
    let caller = started.caller;
    let caller_limits = started.limits;
    tupper_helper::serve_one(&mut started.channel, |chan, req: NsRequest| {
        let req = request::spawn_request(req).and_then(request::validate)?;
        // 2. Subordinate ids: checked before anything is created.
        let mapping = tupper_config::subid::mapping_for(caller)?;
        // 3. The container root: the overlay of the caller's root that
        //    tupper-storage mounted, sent right after the request.
        //    The descriptor stays open across the clone: a detached mount is
        //    dissolved when the last descriptor of it closes, and the init
        //    moves it onto its `/` first (it closes every descriptor before
        //    it executes the command).
        let root = rootfs::receive(chan, &req.container)?;
        rootfs::enter(&root)?;
        // 4. Sync pipes, then the clone.
        let pipes = sync::Pipes::new()?;
        match clone::clone_init(mapping.is_some(), req.security.host_network)? {
            // 6–14 happen in the init and never return.
            Forked::Child => init::run(
                chan,
                pipes.into_child(),
                req,
                mapping.is_some(),
                &caller_limits,
            ),
            // 5. "Cloned" once the init is ready (the supervisor has it
            //    join its cgroups meanwhile), then maps, "setup done", reply.
            Forked::Parent { pid, pidfd } => {
                drop(root);
                clone::see_through_setup(chan, pid, &pidfd, pipes.into_parent(), mapping)
            }
        }
    })
}
