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

/// `ps --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
}

/// One `--filter KEY=VALUE`: `name=`, `id=` (prefix), `status=`
/// (`created`, `running`, `exited`).
fn matches_filter(r: &crate::records::Record, status: &str, filter: &str) -> Result<bool> {
    let (k, v) = filter
        .split_once('=')
        .ok_or_else(|| Error::user(format!("filter {filter:?}: expected KEY=VALUE")))?;
    Ok(match k {
        "name" => r.name == v,
        "id" => r.id.starts_with(v),
        "status" => status == v,
        _ => {
            return Err(Error::user(format!(
                "filter {filter:?}: only name=, id= and status= are known"
            )))
        }
    })
}

pub fn ps(all: bool, format: Format, filters: &[String]) -> Result<()> {
    let state = Records::open()?;
    cleanup::collect_garbage(&state);
    let mut listing = state.load_all()?;
    let mut rows: Vec<[String; 6]> = Vec::new();
    let mut json = Vec::new();
    for r in &listing.records {
        let lifecycle = State::of(r);
        let running = lifecycle == State::Running && !crate::control::monitor_gone(&r.supervisor);
        let word = match lifecycle {
            State::Created => "created",
            _ if running => "running",
            _ => "exited",
        };
        if !lifecycle.allows(Command::Ps) || (!all && !running && filters.is_empty()) {
            continue;
        }
        let mut keep = true;
        for f in filters {
            keep &= matches_filter(r, word, f)?;
        }
        if !keep {
            continue;
        }
        let status = match (&r.status, running) {
            (Status::Exited(c), _) => {
                let code = if *c == crate::records::UNKNOWN_EXIT {
                    "unknown".to_string()
                } else {
                    c.to_string()
                };
                format!(
                    "Exited ({code}) {}{}",
                    age(r.finished_at.unwrap_or(r.created)),
                    // Issue 9.
                    if r.oom_killed == Some(true) {
                        " (OOM killed)"
                    } else {
                        ""
                    }
                )
            }
            (_, true) => format!(
                "Up {}",
                age(r.started_at.unwrap_or(r.created)).trim_end_matches(" ago")
            ),
            (Status::Creating, _) => "Created".to_string(),
            _ => "Exited (unknown)".to_string(),
        };
        if format == Format::Json {
            json.push(crate::control::inspect_value(&state, r));
            continue;
        }
        let mut cmd = r.command.join(" ");
        if cmd.chars().count() > 30 {
            cmd = cmd.chars().take(27).collect::<String>() + "...";
        }
        rows.push([
            r.id[..12].to_string(),
            r.name.clone(),
            r.image.clone(),
            format!("{cmd:?}"),
            status,
            r.address.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    if format == Format::Json {
        let text = serde_json::to_string_pretty(&serde_json::Value::Array(json))
            .map_err(|e| Error::user(format!("encode: {e}")))?;
        println!("{text}");
        return report_unknown(&mut listing);
    }
    print!("{}", table(&rows));
    report_unknown(&mut listing)
}

/// Columns at least two spaces apart, whatever their contents.
fn table(rows: &[[String; 6]]) -> String {
    let head = [
        "CONTAINER ID",
        "NAME",
        "IMAGE",
        "COMMAND",
        "STATUS",
        "ADDRESS",
    ]
    .map(String::from);
    let mut widths = head.clone().map(|h| h.chars().count());
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in std::iter::once(&head).chain(rows) {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            line.push_str(c);
            if i + 1 < r.len() {
                line.push_str(&" ".repeat(widths[i] - c.chars().count() + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
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
        // Its monitor sees the end and releases everything itself.
        let _lock = state.lock_container(&rec.id)?;
        if let Some(pidfd) = rec.init.and_then(|i| i.pidfd()) {
            let _ = pidfd.signal(libc::SIGKILL);
        }
        let start = std::time::Instant::now();
        loop {
            match state.find(&rec.id) {
                Err(_) => {
                    // A --rm container: its monitor removed it.
                    println!("{key}");
                    return Ok(());
                }
                Ok(r) if crate::control::monitor_gone(&r.supervisor) => break,
                Ok(_) if start.elapsed() > std::time::Duration::from_secs(15) => {
                    return Err(Error::user(format!(
                        "container {} did not stop in time",
                        rec.name
                    )))
                }
                Ok(_) => std::thread::sleep(std::time::Duration::from_millis(50)),
            }
        }
        cleanup::collect_garbage(state);
        return rm_stopped(state, &state.find(&rec.id)?, key);
    }
    let _lock = state.lock_container(&rec.id)?;
    rm_stopped(state, &rec, key)
}

fn rm_stopped(state: &Records, rec: &crate::records::Record, key: &str) -> Result<()> {
    // Its monitor may still be giving things back: let it finish.
    let Some(rec) =
        crate::control::wait_settled(state, &rec.id, Some(std::time::Duration::from_secs(10)))?
    else {
        println!("{key}");
        return Ok(());
    };
    if !cleanup::remove_root(&rec.id) {
        return Err(Error::user(format!(
            "could not remove the root filesystem of {}",
            rec.name
        )));
    }
    let _lock = state.lock()?;
    state.remove(&rec.id)?;
    println!("{key}");
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
