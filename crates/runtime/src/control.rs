//! Commands on containers that outlive the command which started them:
//! `stop`, `kill`, `wait`, `start`, `restart`, `attach`, `logs`, `inspect`.
//! Each takes the container's lock (`Records::lock_container`), so two
//! commands on one container take turns.

use std::time::{Duration, Instant};

use crate::cleanup;
use crate::error::{Error, Result};
use crate::lifecycle::{Command, State};
use crate::process::ProcessId;
use crate::records::{Record, Records, Status, UNKNOWN_EXIT};
use crate::signals::Signals;

/// The monitor is gone (or a zombie nobody reaped yet): the container's end
/// was recorded and everything it held given back.
pub fn monitor_gone(p: &ProcessId) -> bool {
    if !p.alive() {
        return true;
    }
    std::fs::read_to_string(format!("/proc/{}/stat", p.pid))
        .ok()
        .and_then(|s| {
            s.rfind(')')
                .and_then(|i| s[i + 1..].split_whitespace().next().map(|st| st == "Z"))
        })
        .unwrap_or(true)
}

/// Wait until the container's monitor has finished (record settled) or the
/// record is gone (`--rm`); `None` then.
pub(crate) fn wait_settled(
    state: &Records,
    id: &str,
    limit: Option<Duration>,
) -> Result<Option<Record>> {
    let start = Instant::now();
    loop {
        let rec = match state.find(id) {
            Ok(r) => r,
            Err(_) => return Ok(None),
        };
        if matches!(rec.status, Status::Exited(_)) && monitor_gone(&rec.supervisor) {
            return Ok(Some(rec));
        }
        if !matches!(rec.status, Status::Exited(_)) && monitor_gone(&rec.supervisor) {
            // Died without recording the end: settle it now.
            cleanup::collect_garbage(state);
            continue;
        }
        if limit.is_some_and(|l| start.elapsed() > l) {
            return Err(Error::user(format!(
                "container {} did not stop in time",
                rec.name
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn running(rec: &Record) -> bool {
    State::of(rec) == State::Running && !monitor_gone(&rec.supervisor)
}

fn signal_init(rec: &Record, sig: i32) -> Result<()> {
    let pidfd = rec
        .init
        .and_then(|i| i.pidfd())
        .ok_or_else(|| Error::user(format!("container {} is not running", rec.name)))?;
    pidfd
        .signal(sig)
        .map_err(|e| Error::io(format!("signal container {}", rec.name), e))
}

fn each(keys: &[String], mut f: impl FnMut(&Records, &str) -> Result<()>) -> Result<()> {
    let state = Records::open()?;
    cleanup::collect_garbage(&state);
    let mut failed = None;
    for key in keys {
        if let Err(e) = f(&state, key) {
            eprintln!("tupper: {e}");
            failed = Some(e);
        }
    }
    failed.map_or(Ok(()), Err)
}

/// SIGTERM, then SIGKILL after `timeout` seconds.
fn stop_one(state: &Records, rec: &Record, timeout: u64) -> Result<()> {
    if !running(rec) {
        wait_settled(state, &rec.id, Some(Duration::from_secs(10)))?;
        return Ok(());
    }
    let _ = signal_init(rec, libc::SIGTERM);
    match wait_settled(state, &rec.id, Some(Duration::from_secs(timeout))) {
        Ok(_) => Ok(()),
        Err(_) => {
            let _ = signal_init(rec, libc::SIGKILL);
            wait_settled(state, &rec.id, Some(Duration::from_secs(10))).map(drop)
        }
    }
}

pub fn stop(keys: &[String], timeout: u64) -> Result<()> {
    each(keys, |state, key| {
        let rec = state.find(key)?;
        let _lock = state.lock_container(&rec.id)?;
        stop_one(state, &rec, timeout)?;
        println!("{key}");
        Ok(())
    })
}

/// `KILL`, `SIGKILL`, `kill` or `9`.
pub fn parse_signal(s: &str) -> Result<i32> {
    if let Ok(n) = s.parse::<i32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<nix::sys::signal::Signal>()
        .map(|s| s as i32)
        .map_err(|_| Error::user(format!("unknown signal {s:?}")))
}

pub fn kill(keys: &[String], signal: &str) -> Result<()> {
    let sig = parse_signal(signal)?;
    each(keys, |state, key| {
        let rec = state.find(key)?;
        if !running(&rec) {
            return Err(Error::user(format!(
                "container {} is not running",
                rec.name
            )));
        }
        signal_init(&rec, sig)?;
        println!("{key}");
        Ok(())
    })
}

pub fn wait(keys: &[String]) -> Result<()> {
    each(keys, |state, key| {
        let rec = state.find(key)?;
        let rec = wait_settled(state, &rec.id, None)?;
        match rec.map(|r| r.status) {
            Some(Status::Exited(code)) => println!("{code}"),
            // A --rm container is gone with its record: its code went with it.
            _ => println!("{UNKNOWN_EXIT}"),
        }
        Ok(())
    })
}

/// Start an exited container again on its root: a new monitor, same id.
fn start_one(
    state: &Records,
    key: &str,
    attach: bool,
) -> Result<Option<(crate::monitor::Started, bool, bool)>> {
    let mut rec = state.find(key)?;
    let lock = state.lock_container(&rec.id)?;
    if running(&rec) {
        if attach {
            return Err(Error::user(format!(
                "container {} is already running; use attach",
                rec.name
            )));
        }
        return Ok(None);
    }
    let rec_now = wait_settled(state, &rec.id, Some(Duration::from_secs(10)))?
        .ok_or_else(|| Error::user(format!("no such container: {key}")))?;
    rec = rec_now;
    if !State::of(&rec).allows(Command::Start) {
        return Err(Error::user(format!("container {} cannot start", rec.name)));
    }
    let opts = state.load_config(&rec.id)?;
    let user_mounts = crate::volumes::resolve(&opts.mounts)?;
    forget_etc_files(&state.files_dir(&rec.id));
    rec.status = Status::Creating;
    rec.supervisor =
        ProcessId::current().ok_or_else(|| Error::user("cannot read /proc/self/stat"))?;
    rec.init = None;
    rec.address = None;
    rec.started_at = None;
    {
        let _l = state.lock()?;
        state.save(&rec)?;
    }
    let (stdin, tty) = (opts.interactive, opts.tty);
    let launch = crate::monitor::Launch {
        opts,
        user_mounts,
        fresh: false,
        attach_first: attach,
        storage: None,
    };
    use std::os::fd::AsRawFd;
    let started = crate::monitor::start(state, rec, launch, &[lock.as_raw_fd()])?;
    Ok(Some((started, stdin, tty)))
}

/// The container's own /etc files are written afresh at each start; its
/// configuration, lock and logs stay.
fn forget_etc_files(dir: &std::path::Path) {
    let keep = |name: &str| {
        matches!(name, "config.json" | "lock" | crate::attach::SOCKET_NAME)
            || name.starts_with(crate::logs::LOG_NAME)
    };
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name();
        if !keep(&name.to_string_lossy()) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

pub fn start(keys: &[String], attach: bool, signals: &Signals) -> Result<i32> {
    if attach {
        let [key] = keys else {
            return Err(Error::user("start -a takes exactly one container"));
        };
        let state = Records::open()?;
        cleanup::collect_garbage(&state);
        let Some((started, stdin, tty)) = start_one(&state, key, true)? else {
            return Ok(0);
        };
        return crate::run::attach_started(started, stdin, tty, signals);
    }
    each(keys, |state, key| {
        start_one(state, key, false)?;
        println!("{key}");
        Ok(())
    })
    .map(|_| 0)
}

pub fn restart(keys: &[String], timeout: u64) -> Result<()> {
    each(keys, |state, key| {
        let rec = state.find(key)?;
        {
            let _lock = state.lock_container(&rec.id)?;
            stop_one(state, &rec, timeout)?;
        }
        start_one(state, key, false)?;
        println!("{key}");
        Ok(())
    })
}

/// Attach to a running container's output (and input, if it was run with -i).
pub fn attach(key: &str, signals: &Signals) -> Result<i32> {
    let state = Records::open()?;
    let rec = state.find(key)?;
    if !running(&rec) {
        return Err(Error::user(format!(
            "container {} is not running",
            rec.name
        )));
    }
    let opts = state.load_config(&rec.id)?;
    let stream = crate::attach::connect(&state.files_dir(&rec.id))?;
    let init = rec
        .init
        .ok_or_else(|| Error::user(format!("container {} is not running", rec.name)))?;
    let started = crate::monitor::Started {
        init,
        stream: Some(stream),
    };
    crate::run::attach_started(started, opts.interactive, opts.tty, signals)
}

pub fn logs(key: &str, opts: &crate::logs::LogOptions) -> Result<()> {
    let state = Records::open()?;
    let rec = state.find(key)?;
    let dir = state.files_dir(&rec.id);
    let id = rec.id.clone();
    let alive = move || {
        Records::open()
            .ok()
            .and_then(|s| s.find(&id).ok())
            .is_some_and(|r| !monitor_gone(&r.supervisor))
    };
    crate::logs::print(&dir, opts, &alive)
}

/// RFC 3339 of whole seconds since the epoch.
fn time(secs: Option<u64>) -> serde_json::Value {
    match secs {
        Some(s) => serde_json::Value::String(crate::logs::timestamp(
            std::time::UNIX_EPOCH + Duration::from_secs(s),
        )),
        None => serde_json::Value::Null,
    }
}

pub fn inspect_value(state: &Records, rec: &Record) -> serde_json::Value {
    let opts = state.load_config(&rec.id).ok();
    let is_running = running(rec);
    let status = match (State::of(rec), &rec.status) {
        (State::Running, _) if is_running => "running",
        (State::Created, _) => "created",
        _ => "exited",
    };
    let exit_code = match rec.status {
        Status::Exited(c) if c != UNKNOWN_EXIT => serde_json::json!(c),
        Status::Exited(_) => serde_json::Value::Null,
        _ => serde_json::json!(0),
    };
    let mounts: Vec<serde_json::Value> = opts
        .as_ref()
        .map(|o| {
            o.mounts
                .volume
                .iter()
                .map(|v| serde_json::json!({"type": "bind", "spec": v}))
                .chain(
                    o.mounts
                        .mount
                        .iter()
                        .map(|m| serde_json::json!({"type": "mount", "spec": m})),
                )
                .chain(
                    o.mounts
                        .tmpfs
                        .iter()
                        .map(|t| serde_json::json!({"type": "tmpfs", "spec": t})),
                )
                .collect()
        })
        .unwrap_or_default();
    serde_json::json!({
        "id": rec.id,
        "name": rec.name,
        "image": rec.image,
        "command": rec.command,
        "created": time(Some(rec.created)),
        "state": {
            "status": status,
            "running": is_running,
            "pid": if is_running { rec.init.map(|i| i.pid) } else { None },
            "exit_code": exit_code,
            "started_at": time(rec.started_at),
            "finished_at": time(rec.finished_at),
            "oom_killed": rec.oom_killed.unwrap_or(false),
        },
        "network": {
            "address": rec.address.as_deref().map(|a| a.split('/').next().unwrap_or(a)),
            "prefix_length": rec.address.as_deref()
                .and_then(|a| a.split_once('/'))
                .and_then(|(_, p)| p.parse::<u8>().ok()),
            // Issue 11: published ports.
            "ports": rec.ports.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
        },
        "mounts": mounts,
        "hostname": rec.hostname.clone().unwrap_or_else(|| rec.id[..12].to_string()),
        "config": {
            "env": opts.as_ref().map(|o| o.env.clone()).unwrap_or_default(),
            "workdir": opts.as_ref().map(|o| o.workdir.clone()),
            "tty": opts.as_ref().is_some_and(|o| o.tty),
            "interactive": opts.as_ref().is_some_and(|o| o.interactive),
            "remove": rec.remove_on_exit,
        },
        "limits": crate::limits::inspect_value(rec.limits.as_deref()),
    })
}

pub fn inspect(keys: &[String]) -> Result<()> {
    let state = Records::open()?;
    cleanup::collect_garbage(&state);
    let mut out = Vec::new();
    let mut failed = None;
    for key in keys {
        match state.find(key) {
            Ok(rec) => out.push(inspect_value(&state, &rec)),
            Err(e) => {
                eprintln!("tupper: {e}");
                failed = Some(e);
            }
        }
    }
    let text = serde_json::to_string_pretty(&serde_json::Value::Array(out))
        .map_err(|e| Error::user(format!("encode: {e}")))?;
    println!("{text}");
    failed.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_by_name_and_number() {
        assert_eq!(parse_signal("KILL").unwrap(), 9);
        assert_eq!(parse_signal("sigterm").unwrap(), 15);
        assert_eq!(parse_signal("1").unwrap(), 1);
        assert!(parse_signal("NOPE").is_err());
        assert!(parse_signal("0").is_err());
    }

    #[test]
    fn our_own_process_is_not_gone() {
        assert!(!monitor_gone(&ProcessId::current().unwrap()));
    }
}
