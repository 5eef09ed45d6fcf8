//! `exec` and `top`: into a running container, without privilege.
//!
//! The supervisor checks the container's init by pidfd (pid and start time
//! from its record) and forks a child that is not dumpable, keeps only its
//! standard streams and the report channel, and joins every namespace of the
//! init that differs from its own with one `setns(pidfd, ...)`: owning the
//! container's user namespace is all it takes. That child forks the command's
//! process, which (now inside the container's pid namespace) takes the
//! working directory, environment and the terminal of the container, and the
//! same lock-down as the init (`tupper-lockdown`) before `execve`. See
//! `join.rs` for the child's side.

mod join;
mod top;

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::process::PidFd;
use crate::records::{Records, Status};
use crate::signals::Signals;
use crate::tty;

pub use top::top;

/// What `exec` needs of a container and `run` saves in its record when the
/// container starts: its lock-down, environment and defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecProfile {
    /// Capabilities, `no_new_privs`, the compiled seccomp program and the
    /// default user, exactly as the init got them.
    pub security: proto::SpawnSecurity,
    /// The container's environment (after `-e KEY` and `--env-file`).
    pub env: Vec<String>,
    /// The default working directory.
    pub workdir: String,
    pub hostname: String,
}

impl ExecProfile {
    /// The profile of a container `run` starts with `opts` (validated) as `id`.
    pub fn of(opts: &crate::run::RunOptions, id: &str) -> Box<ExecProfile> {
        Box::new(ExecProfile {
            security: opts.sec.spawn.clone(),
            env: opts.env.clone(),
            workdir: opts.workdir.clone(),
            hostname: opts
                .hostname
                .clone()
                .unwrap_or_else(|| id.chars().take(12).collect()),
        })
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct ExecOptions {
    /// Keep standard input open.
    #[arg(short, long)]
    pub interactive: bool,
    /// Allocate a pseudo-terminal (in the container's own devpts).
    #[arg(short, long)]
    pub tty: bool,
    /// Set an environment variable (KEY=VALUE; KEY alone passes yours).
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Working directory inside the container (default: the container's).
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// USER[:GROUP], names from the container's /etc/passwd and /etc/group,
    /// or numbers (default: the container's user).
    #[arg(short, long, value_name = "USER[:GROUP]")]
    pub user: Option<String>,
    /// Detached: start the command and return at once, printing nothing
    /// (its output goes nowhere; it ends with the container).
    #[arg(short, long)]
    pub detach: bool,
    /// Refused: there is nothing privileged to give.
    #[arg(long)]
    pub privileged: bool,
    /// Container name or id.
    pub container: String,
    /// Command and arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

impl ExecOptions {
    fn validate(&mut self) -> Result<()> {
        if self.privileged {
            return Err(Error::user(
                "--privileged is not supported: a container's root holds no privilege over \
                 the host to give (use --cap-add at run)",
            ));
        }
        if self.detach && (self.tty || self.interactive) {
            return Err(Error::user(
                "exec -d runs the command without a terminal or input: drop -t and -i",
            ));
        }
        let mut env = Vec::with_capacity(self.env.len());
        for e in &self.env {
            if e.contains('=') {
                env.push(e.clone());
            } else if let Ok(v) = std::env::var(e) {
                env.push(format!("{e}={v}"));
            }
        }
        for e in &env {
            proto::validate::env_entry(e)?;
        }
        self.env = env;
        if let Some(w) = &self.workdir {
            proto::validate::container_path(w)?;
        }
        if let Some(u) = &self.user {
            if u.is_empty() || u.len() > 256 || u.contains('\0') {
                return Err(Error::user(format!("invalid user {u:?}")));
            }
        }
        proto::validate::command(&self.command)?;
        Ok(())
    }
}

fn key(entry: &str) -> &str {
    entry.split_once('=').map_or(entry, |(k, _)| k)
}

/// The container's environment with `extra` set over it.
fn merge_env(base: &[String], extra: &[String]) -> Vec<String> {
    let mut env: Vec<String> = base
        .iter()
        .filter(|b| !extra.iter().any(|e| key(e) == key(b)))
        .cloned()
        .collect();
    env.extend(extra.iter().cloned());
    env
}

/// `exec`: run a command in a running container; returns its exit status.
pub fn exec(mut opts: ExecOptions, signals: &Signals) -> Result<i32> {
    opts.validate()?;
    let records = Records::open()?;
    let rec = records.find(&opts.container)?;
    let not_running = || {
        Error::user(format!(
            "container {} is not running; start a new one with `tupper-supervisor run`",
            opts.container
        ))
    };
    if rec.status != Status::Running {
        return Err(not_running());
    }
    let (Some(init), Some(profile)) = (rec.init, rec.exec.clone()) else {
        return Err(not_running());
    };
    // The same process as recorded (pid and start time), held by a pidfd so
    // the pid cannot be reused under us.
    let pidfd = init.pidfd().ok_or_else(not_running)?;
    let mut security = profile.security.clone();
    if opts.user.is_some() {
        security.user = opts.user.clone();
    }
    let plan = join::Plan {
        namespaces: join::namespaces_to_join(init.pid),
        command: opts.command.clone(),
        env: merge_env(&profile.env, &opts.env),
        hostname: profile.hostname.clone(),
        workdir: opts.workdir.clone().unwrap_or(profile.workdir.clone()),
        security,
        tty: opts.tty,
        interactive: opts.interactive,
        cgroups: rec.cgroups,
        detach: opts.detach,
    };
    run_plan(&plan, pidfd, signals, &rec.id)
}

/// Fork the joining child and relay until the command ends.
fn run_plan(plan: &join::Plan, pidfd: PidFd, signals: &Signals, id: &str) -> Result<i32> {
    let (mut channel, child_end) =
        proto::Channel::pair().map_err(|e| Error::user(format!("exec: {e}")))?;
    let child = join::spawn(plan, pidfd.as_fd(), OwnedFd::from(child_end))?;
    let mut failure: Option<(proto::RemoteError, i32)> = None;
    let mut _raw = None;
    let mut output = None;
    loop {
        let report = match channel.recv_with_fd::<join::Report>() {
            Ok(r) => r,
            // End of the channel: the command was executed (close-on-exec),
            // or the children are gone.
            Err(_) => break,
        };
        match report {
            (join::Report::Started { pid }, _) => {
                if plan.detach {
                    continue;
                }
                if let Ok(fd) = PidFd::open(pid) {
                    signals.forward_to(fd);
                }
            }
            (join::Report::Terminal, Some(master)) => {
                tty::copy_window_size(master.as_raw_fd());
                if tty::stdin_is_tty() {
                    _raw = tty::RawMode::enter();
                }
                let fd = master.as_raw_fd();
                signals.on_window_change(Box::new(move || tty::copy_window_size(fd)));
                output = Some(tty::relay(master)?);
            }
            (join::Report::Terminal, None) => {}
            // Issue 9: the joiner waits in the container's namespaces.
            // `pid`: the joiner's own, our child or (detached) the one its
            // first process forked before it went.
            (join::Report::Joined { pid }, _) => {
                let placed = crate::limits::join(id, pid);
                let _ = channel.send(&placed.is_ok());
                if let Err(e) = placed {
                    let _ = crate::run::wait_exit(child);
                    return Err(e);
                }
            }
            (join::Report::Failed { error, code }, _) => failure = Some((error, code)),
        }
    }
    // Detached, this is the joiner's first process, which went as soon as
    // the joiner was forked.
    let code = crate::run::wait_exit(child)?;
    signals.stop_forwarding();
    if let Some(out) = output {
        let _ = out.join();
    }
    match failure {
        Some((error, _)) => Err(Error::Exec(error)),
        None if plan.detach => Ok(0),
        None => Ok(code),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_variables_replace_the_containers() {
        let base = vec!["A=1".to_string(), "B=2".into(), "PATH=/bin".into()];
        let env = merge_env(&base, &["B=3".into(), "C=4".into()]);
        assert_eq!(env, vec!["A=1", "PATH=/bin", "B=3", "C=4"]);
    }

    #[test]
    fn privileged_is_refused_and_key_alone_takes_ours() {
        let mut o = ExecOptions {
            interactive: false,
            tty: false,
            env: vec![],
            workdir: None,
            user: None,
            privileged: true,
            detach: false,
            container: "x".into(),
            command: vec!["true".into()],
        };
        let e = o.clone().validate().unwrap_err().to_string();
        assert!(e.contains("--privileged"), "{e}");
        o.privileged = false;
        o.env = vec!["TUPPER_SURELY_UNSET_1234".into(), "PATH".into()];
        let mut detached = o.clone();
        detached.detach = true;
        detached.clone().validate().unwrap();
        detached.tty = true;
        let e = detached.validate().unwrap_err().to_string();
        assert!(e.contains("-d"), "{e}");
        o.validate().unwrap();
        assert_eq!(o.env.len(), 1);
        assert!(o.env[0].starts_with("PATH="), "{:?}", o.env);
    }
}
