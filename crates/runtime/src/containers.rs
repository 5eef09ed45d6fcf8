//! `ps`, `rm`, `gc`.

use proto::{StorageReply, StorageRequest};

use crate::cleanup;
use crate::error::{Error, Result};
use crate::helpers::{call_once, Helper};
use crate::lifecycle::{Command, State};
use crate::records::{Listing, Records, Status};

/// Report each record of an unknown version on stderr; the last one is the
/// command's error.
fn report_unknown(listing: &mut Listing) -> Result<()> {
    let mut last = None;
    for unknown in listing.unknown.drain(..) {
        eprintln!("tupper: {}", unknown.error);
        last = Some(unknown.error);
    }
    last.map_or(Ok(()), Err)
}

pub fn ps(all: bool) -> Result<()> {
    let state = Records::open()?;
    cleanup::collect_garbage(&state);
    println!(
        "{:<14}{:<20}{:<16}{:<24}{:<18}ADDRESS",
        "CONTAINER ID", "NAME", "IMAGE", "COMMAND", "STATUS"
    );
    let mut listing = state.load_all()?;
    for r in &listing.records {
        let lifecycle = State::of(r);
        if !lifecycle.allows(Command::Ps) || (!all && lifecycle != State::Running) {
            continue;
        }
        let status = match (lifecycle, &r.status) {
            (_, Status::Exited(c)) => format!("Exited ({c})"),
            (State::Running, _) => format!("Up {}", age(r.created).trim_end_matches(" ago")),
            (State::Created, _) => "Created".to_string(),
            _ => "Exited".to_string(),
        };
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
    report_unknown(&mut listing)
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
    if !State::of(&rec).allows(Command::Rm) {
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
    let mut listing = state.load_all()?;
    // A record of an unknown version still names its container: its root stays.
    let known: Vec<String> = listing
        .records
        .iter()
        .map(|r| r.id.clone())
        .chain(listing.unknown.iter().map(|u| u.id.clone()))
        .collect();
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
    report_unknown(&mut listing)
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
