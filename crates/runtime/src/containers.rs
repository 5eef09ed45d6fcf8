//! `ps`, `rm`, `gc`.

use proto::{StorageReply, StorageRequest};

use crate::cleanup;
use crate::error::{Error, Result};
use crate::helpers::{call_once, Helper};
use crate::records::{Records, Status};

pub fn ps(all: bool) -> Result<()> {
    let state = Records::open()?;
    cleanup::collect_garbage(&state);
    println!(
        "{:<14}{:<20}{:<16}{:<24}{:<18}ADDRESS",
        "CONTAINER ID", "NAME", "IMAGE", "COMMAND", "STATUS"
    );
    for r in state.load_all()? {
        let status = match r.status {
            Status::Creating => "Created".to_string(),
            Status::Running => format!("Up {}", age(r.created).trim_end_matches(" ago")),
            Status::Exited(c) => format!("Exited ({c})"),
        };
        if !all && !matches!(r.status, Status::Running) {
            continue;
        }
        let mut cmd = r.command.join(" ");
        if cmd.len() > 22 {
            cmd.truncate(19);
            cmd.push_str("...");
        }
        println!(
            "{:<14}{:<20}{:<16}{:<24}{:<18}{}",
            &r.id[..12],
            r.name,
            r.image,
            format!("{cmd:?}"),
            status,
            r.address.as_deref().unwrap_or("-")
        );
    }
    Ok(())
}

pub fn rm(keys: &[String], force: bool) -> Result<()> {
    let state = Records::open()?;
    cleanup::collect_garbage(&state);
    let mut failed = None;
    for key in keys {
        if let Err(e) = rm_one(&state, key, force) {
            eprintln!("tupper: {e}");
            failed = Some(e);
        }
    }
    match failed {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn rm_one(state: &Records, key: &str, force: bool) -> Result<()> {
    let rec = state.find(key)?;
    if !matches!(rec.status, Status::Exited(_)) && rec.supervisor.alive() {
        if !force {
            return Err(Error::user(format!(
                "container {} is running; stop it first or use rm -f",
                rec.name
            )));
        }
        // Its supervisor sees the end and releases everything itself.
        if let Some(pidfd) = rec.init.and_then(|i| i.pidfd()) {
            let _ = pidfd.signal(libc::SIGKILL);
        }
        println!("{}", rec.name);
        return Ok(());
    }
    if !cleanup::remove_root(&rec.id) {
        return Err(Error::user(format!(
            "could not remove the root filesystem of {}",
            rec.name
        )));
    }
    let _lock = state.lock()?;
    state.remove(&rec.id)?;
    println!("{}", rec.name);
    Ok(())
}

/// Reclaim what dead supervisors left, then remove container roots that no
/// record names any more (the runtime directory is lost at reboot; the store
/// is not).
pub fn gc() -> Result<()> {
    let state = Records::open()?;
    cleanup::collect_garbage(&state);
    let _lock = state.lock()?;
    let known: Vec<String> = state.load_all()?.into_iter().map(|r| r.id).collect();
    let reply: StorageReply = call_once(Helper::Storage, &StorageRequest::ListContainers)?;
    let StorageReply::Containers(roots) = reply else {
        return Err(Error::user("storage: unexpected reply to ListContainers"));
    };
    for id in roots.iter().filter(|id| !known.contains(id)) {
        if cleanup::remove_root(id) {
            println!(
                "removed the orphaned root of container {}",
                &id[..id.len().min(12)]
            );
        }
    }
    Ok(())
}

/// "5 seconds ago", "3 minutes ago", ...
pub fn age(then: u64) -> String {
    let secs = crate::run::now().saturating_sub(then);
    let (n, unit) = match secs {
        0..=59 => (secs, "second"),
        60..=3599 => (secs / 60, "minute"),
        3600..=86399 => (secs / 3600, "hour"),
        _ => (secs / 86400, "day"),
    };
    format!("{n} {unit}{} ago", if n == 1 { "" } else { "s" })
}
