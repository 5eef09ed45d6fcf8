//! Giving back what a container took: its lease and (with `--rm`) its root.
//! Also run at the start of every `run` for containers whose supervisor died.

use proto::cgroup::{CgroupReply, CgroupRequest};
use proto::{ErrorKind, NetReply, NetRequest, StorageReply, StorageRequest};

use crate::error::Error;
use crate::helpers::{call_once, Helper, HelperProcess, HelperStdio};
use crate::records::{Record, Records, Status};

fn already_gone(e: &Error) -> bool {
    e.remote_kind() == Some(ErrorKind::NotFound)
}

/// Release the lease and, for `--rm` containers, the snapshot, then record
/// the end: a `--rm` container whose resources are all back loses its record,
/// any other keeps it as exited with `code` (and a lease still to release, if
/// that failed, for the next `gc`). Call with the state lock held.
pub fn settle(
    state: &Records,
    rec: &mut Record,
    snapshot_exists: bool,
    code: i32,
) -> Result<(), Error> {
    let released = release(rec, snapshot_exists);
    rec.status = Status::Exited(code);
    if rec.remove_on_exit && released {
        state.remove(&rec.id)
    } else {
        state.save(rec)
    }
}

/// Release the lease and, for `--rm` containers, the snapshot. Returns whether
/// everything was released.
///
/// Issue 11: the helpers that give things back are independent of each
/// other: they are started together and asked at once, then answered in turn,
/// so their start-up and their waits in the kernel overlap.
fn release(rec: &mut Record, snapshot_exists: bool) -> bool {
    // Issue 9: the container's cgroups, and whether the OOM killer struck.
    let cgroup = rec.cgroups.then(|| {
        ask(
            Helper::Cgroup,
            &CgroupRequest::Remove {
                container: rec.id.clone(),
            },
        )
    });
    let net = rec.network_attached.then(|| {
        ask(
            Helper::Net,
            &NetRequest::Release {
                container: rec.id.clone(),
            },
        )
    });
    let root = (rec.remove_on_exit && snapshot_exists).then(|| {
        ask(
            Helper::Storage,
            &StorageRequest::RemoveContainer {
                container: rec.id.clone(),
            },
        )
    });
    let mut ok = true;
    if let Some(asked) = cgroup {
        match answer::<CgroupReply>(asked) {
            Ok(CgroupReply::Removed { oom_kills, .. }) => {
                if oom_kills > 0 {
                    rec.oom_killed = Some(true);
                }
                rec.cgroups = false;
            }
            Ok(_) => {
                eprintln!("tupper: cgroup: unexpected reply to Remove");
                ok = false;
            }
            Err(e) => {
                eprintln!("tupper: {e}");
                ok = false;
            }
        }
    }
    if let Some(asked) = net {
        match answer::<NetReply>(asked) {
            Err(e) if !already_gone(&e) => {
                eprintln!("tupper: {e}");
                ok = false;
            }
            _ => {
                rec.network_attached = false;
                // Issue 11: the ports went with the lease.
                rec.ports.clear();
            }
        }
    }
    if let Some(asked) = root {
        ok &= removed(answer::<StorageReply>(asked));
    }
    ok
}

/// A helper started and asked, its answer still to come.
fn ask<Req: serde::Serialize>(helper: Helper, req: &Req) -> Result<HelperProcess, Error> {
    let mut p = HelperProcess::start(helper, HelperStdio::default())?;
    p.send(req)?;
    Ok(p)
}

fn answer<Rep: serde::de::DeserializeOwned>(
    asked: Result<HelperProcess, Error>,
) -> Result<Rep, Error> {
    asked?.recv_reply()
}

/// Whether a removal of a root counts as done: a missing root does.
fn removed(r: Result<StorageReply, Error>) -> bool {
    match r {
        Ok(_) => true,
        Err(e) if already_gone(&e) => true,
        Err(e) => {
            eprintln!("tupper: {e}");
            false
        }
    }
}

/// Remove a container's root filesystem; a missing one counts as removed.
pub fn remove_root(id: &str) -> bool {
    removed(call_once(
        Helper::Storage,
        &StorageRequest::RemoveContainer {
            container: id.to_string(),
        },
    ))
}

/// Reclaim containers whose monitor is gone (killed, crashed, rebooted): the
/// container died with it (parent-death signal), with a status nobody saw.
pub fn collect_garbage(state: &Records) {
    let Ok(_lock) = state.lock() else { return };
    // Records of an unknown version are left alone: `ps` and `gc` report them.
    let Ok(listing) = state.load_all() else {
        return;
    };
    for mut rec in listing.records {
        if rec.supervisor.alive() {
            continue;
        }
        // Ended, and everything given back: nothing to do.
        if matches!(rec.status, Status::Exited(_)) && !rec.network_attached && !rec.cgroups {
            continue;
        }
        if let Some(init) = rec.init {
            if let Some(pidfd) = init.pidfd() {
                let _ = pidfd.signal(libc::SIGKILL);
            }
        }
        let code = match rec.status {
            Status::Exited(code) => code,
            _ => crate::records::UNKNOWN_EXIT,
        };
        if rec.finished_at.is_none() {
            rec.finished_at = Some(crate::run::now());
        }
        if let Err(e) = settle(state, &mut rec, true, code) {
            eprintln!("tupper: {e}");
        }
    }
}
