//! `run`: start the container's monitor (which does snapshot → spawn →
//! attach → start → wait → clean up), then attach to it or, with `-d`, not.

use std::os::fd::AsRawFd;

use crate::cleanup;
use crate::error::{Error, Result};
use crate::helpers::{Helper, HelperProcess, HelperStdio};
use crate::process::ProcessId;
use crate::records::{Record, Records, Status, RECORD_VERSION};
use crate::signals::Signals;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
pub enum NetworkMode {
    /// An eth0 on the host bridge with an address and a default route.
    Bridge,
    /// Only a loopback interface.
    None,
    /// The caller's own network namespace (no namespace of its own).
    Host,
}

#[derive(Debug, Clone, clap::Args, serde::Serialize, serde::Deserialize)]
pub struct RunOptions {
    /// Remove the container's root filesystem when it exits.
    #[arg(long = "rm")]
    pub remove: bool,
    /// Keep standard input open.
    #[arg(short, long)]
    pub interactive: bool,
    /// Allocate a pseudo-terminal.
    #[arg(short, long)]
    pub tty: bool,
    /// Container name (default: the first 12 digits of its id).
    #[arg(long)]
    pub name: Option<String>,
    /// Hostname inside the container.
    #[arg(long, short = 'h')]
    pub hostname: Option<String>,
    /// Network: an address on the bridge, loopback only, or the host's.
    #[arg(long, value_enum, default_value = "bridge")]
    pub network: NetworkMode,
    /// Set an environment variable (KEY=VALUE).
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Working directory inside the container.
    #[arg(short, long, default_value = "/")]
    pub workdir: String,
    /// Image to start from (see `image ls`).
    pub image: String,
    // Volumes, tmpfs, --read-only, --dns, --add-host (engineer "vol").
    #[command(flatten)]
    pub mounts: Box<crate::volumes::MountOptions>,
    /// Command and arguments (default: /bin/sh).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
    /// Print help.
    #[arg(long, action = clap::ArgAction::Help)]
    help: Option<bool>,
    #[command(flatten)]
    pub sec: crate::security::SecurityFlags,
    // Issue 8 (engineer "mon"): containers that outlive the command.
    /// Run in the background: print the container id once its command runs.
    #[arg(short = 'd', long)]
    pub detach: bool,
    // Issue 10 (engineer "pull"): pull a missing image first
    // (`registry::plan_run_image` decides; integration wires it).
    /// Pull the image: when missing (default), always, or never.
    #[arg(long, value_enum, default_value = "missing")]
    #[serde(default)]
    pub pull: crate::registry::PullPolicy,
    /// Verify the registry's TLS certificate when the image is pulled
    /// (`=false` for a local registry: HTTPS without checking the
    /// certificate, else plain HTTP; default: `[registries] insecure`).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    #[serde(default)]
    pub tls_verify: Option<bool>,
    // Issue 9 (engineer "cg"): resource limits.
    #[command(flatten)]
    #[serde(default)]
    pub limits: crate::limits::LimitFlags,
    // Issue 9, disk quota (engineer "quota").
    /// Storage option: `size=SIZE` caps what the container may write to its
    /// root (bytes, or with K, M, G, T); at most the policy's `disk`.
    #[arg(long = "storage-opt", value_name = "size=SIZE", value_parser = parse_storage_opt)]
    pub storage_size: Option<u64>,
    // Issue 11 (engineer "net"): published ports.
    /// Publish a container port on the host: [HOSTIP:]HOSTPORT:CONTAINERPORT[/tcp|udp],
    /// or CONTAINERPORT for an ephemeral host port.
    #[arg(
        short = 'p',
        long = "publish",
        value_name = "[HOSTIP:]HOSTPORT:CONTAINERPORT"
    )]
    #[serde(default)]
    pub publish: Vec<String>,
    /// Publish every port the image exposes, each on an ephemeral host port.
    #[arg(short = 'P', long = "publish-all")]
    #[serde(default)]
    pub publish_all: bool,
}

/// `--storage-opt size=SIZE` (podman's name; `size` is the only option).
fn parse_storage_opt(s: &str) -> std::result::Result<u64, String> {
    let size = s
        .strip_prefix("size=")
        .ok_or_else(|| format!("unknown storage option {s:?} (only size=SIZE)"))?;
    match tupper_config::system::parse_bytes(size) {
        Some(n) if n > 0 => Ok(n),
        _ => Err(format!(
            "size={size:?}: expected bytes or a number with K, M, G or T"
        )),
    }
}

/// Default command when none is given: the image's shell.
const DEFAULT_COMMAND: &str = "/bin/sh";

impl RunOptions {
    pub fn validate(&mut self) -> Result<()> {
        // Privileges, `-e KEY`, `--env-file`, `--entrypoint` (issue 7).
        let host = self.network == NetworkMode::Host;
        crate::security::prepare(&mut self.sec, &mut self.env, &mut self.command, host)?;
        // An image reference, stored under its key (issue 10).
        self.image = proto::reference::key_of(&self.image)?;
        if let Some(n) = &self.name {
            proto::validate::name(n)?;
        }
        if let Some(h) = &self.hostname {
            proto::validate::hostname(h)?;
        }
        for e in &self.env {
            proto::validate::env_entry(e)?;
        }
        proto::validate::container_path(&self.workdir)?;
        if self.command.is_empty() {
            self.command = vec![DEFAULT_COMMAND.into()];
        }
        proto::validate::command(&self.command)?;
        // Issue 11: published ports need the bridge.
        crate::ports::specs(self)?;
        Ok(())
    }
}

/// The image `run` starts from, and its metadata (for
/// [`crate::oci::apply_to_run`]). An image present under the reference as
/// given runs as it is; else a default image the package ships is imported
/// (issue 12); otherwise, with `--pull missing` (the default) an image not
/// present, or with `--pull always` any, is pulled from its registry first
/// (issue 10). A present image costs one helper call (`GetImageMeta`
/// answers presence and metadata both), asked of `storage`, the session the
/// container's monitor goes on with.
fn resolve_image(
    opts: &mut RunOptions,
    storage: &mut HelperProcess,
) -> Result<Option<Box<crate::oci::config::ImageMeta>>> {
    use crate::oci::{lookup_with, Stored};
    // The helpers enforce this; said first, before anything is looked up or
    // created, it is the clearest message.
    tupper_config::subid::mapping_for(proto::Caller::current())
        .map_err(|e| crate::helpers::wrap(Helper::Ns, proto::Error::Remote(e.to_remote())))?;
    // A name that is no valid reference is refused here, as `validate` would.
    let key = proto::reference::key_of(&opts.image)?;
    let meta_of = |storage: &mut HelperProcess,
                   key: &str|
     -> Result<Option<Box<crate::oci::config::ImageMeta>>> {
        Ok(match lookup_with(storage, key)? {
            Stored::Image(meta) => meta,
            Stored::Missing => None,
        })
    };
    if opts.pull != crate::registry::PullPolicy::Always {
        if let Stored::Image(meta) = lookup_with(storage, &key)? {
            return Ok(meta);
        }
        // A default image's name is its key (`validate::name` ⊂ keys).
        if crate::default_image::import_missing(&opts.image)? {
            return meta_of(storage, &key);
        }
    }
    let registries = tupper_config::SystemConfig::load()
        .map(|c| c.registries)
        .map_err(|e| crate::error::Error::user(e.to_string()))?;
    let present = |n: &str| match proto::reference::key_of(n) {
        Ok(key) => crate::default_image::has_image(&key),
        Err(_) => Ok(false),
    };
    let plan =
        crate::registry::plan_run_image(&opts.image, opts.pull, &registries.default, present)?;
    if let Some(reference) = &plan.pull {
        crate::registry::pull_for_run(reference, &plan.local, opts.tls_verify, false).map_err(
            |e| {
                crate::error::Error::user(format!(
                    "image {:?} not found here, and pulling {reference} failed: {e}",
                    opts.image
                ))
            },
        )?;
        opts.image = plan.local;
    }
    // A missing image is reported where `run` always reported it, after its
    // own checks.
    meta_of(storage, &proto::reference::key_of(&opts.image)?)
}

/// Run a container: its monitor does the work (see `monitor.rs`); in the
/// foreground we attach to it and return the container's exit status, with
/// `-d` we print its id once the command runs.
pub fn run(mut opts: RunOptions, signals: &Signals) -> Result<i32> {
    // Issue 11: one storage helper session from the image's lookup to the
    // container root's mount, which the monitor asks for.
    let mut storage = HelperProcess::spawn(Helper::Storage, HelperStdio::default())?;
    // The image's Cmd, Entrypoint, Env, WorkingDir, User (issue 10).
    let meta = resolve_image(&mut opts, &mut storage)?;
    crate::oci::apply_to_run(&mut opts, meta.as_deref());
    opts.validate()?;
    // Volume sources are opened (as the caller) before anything is created.
    let user_mounts = crate::volumes::resolve(&opts.mounts)?;
    crate::etc_files::validate(&opts.mounts)?;
    // Limits above the policy are refused before anything is created.
    crate::limits::check_early(&opts.limits)?;
    let state = Records::open()?;
    cleanup::collect_garbage(&state);

    let id = random_id()?;
    let name = opts.name.clone().unwrap_or_else(|| id[..12].to_string());
    let rec = Record {
        version: RECORD_VERSION,
        id: id.clone(),
        name,
        image: opts.image.clone(),
        command: opts.command.clone(),
        created: now(),
        remove_on_exit: opts.remove,
        status: Status::Creating,
        supervisor: ProcessId::current()
            .ok_or_else(|| Error::user("cannot read /proc/self/stat"))?,
        init: None,
        network_attached: false,
        address: None,
        exec: Some(crate::exec::ExecProfile::of(&opts, &id)),
        started_at: None,
        finished_at: None,
        hostname: opts.hostname.clone(),
        limits: None,
        oom_killed: None,
        cgroups: false,
        ports: Vec::new(),
    };
    {
        let _lock = state.lock()?;
        if let Some(other) = state
            .load_all()?
            .records
            .into_iter()
            .find(|r| r.name == rec.name)
        {
            return Err(Error::user(format!(
                "the name {:?} is already in use by container {}; remove it with `tupper-supervisor rm {}`",
                rec.name,
                &other.id[..12],
                rec.name
            )));
        }
        state.save(&rec)?;
    }
    let lock = match state.lock_container(&id) {
        Ok(l) => l,
        Err(e) => {
            let _ = state.remove(&id);
            return Err(e);
        }
    };
    if let Err(e) = state.save_config(&id, &opts) {
        let _ = state.remove(&id);
        return Err(e);
    }
    let detach = opts.detach;
    let (stdin, tty) = (opts.interactive, opts.tty);
    let launch = crate::monitor::Launch {
        opts,
        user_mounts,
        fresh: true,
        attach_first: !detach,
        storage: Some(storage),
    };
    let started = crate::monitor::start(&state, rec, launch, &[lock.as_raw_fd()])?;
    drop(lock);
    // The storage session the monitor went on with ended before it started
    // the container: reap it.
    crate::helpers::reap_finished(true);
    if detach {
        println!("{id}");
        return Ok(0);
    }
    attach_started(started, stdin, tty, signals)
}

/// Relay a started container's streams until it exits (foreground `run`,
/// `start -a`); signals we receive go to its init.
pub fn attach_started(
    started: crate::monitor::Started,
    stdin: bool,
    tty: bool,
    signals: &Signals,
) -> Result<i32> {
    let Some(stream) = started.stream else {
        return Err(Error::user("the container's monitor did not accept us"));
    };
    if let Some(pidfd) = started.init.pidfd() {
        if let Some(sig) = signals.pending() {
            let _ = pidfd.signal(sig);
        }
        signals.forward_to(pidfd);
    }
    let code = crate::attach::relay(stream, stdin, tty, Some(signals));
    signals.stop_forwarding();
    code
}

/// Wait for a child (the container init is ours through CLONE_PARENT).
pub fn wait_exit(pid: i32) -> Result<i32> {
    use nix::sys::wait::{waitpid, WaitStatus};
    loop {
        match waitpid(nix::unistd::Pid::from_raw(pid), None) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(code),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(128 + sig as i32),
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(Error::io("wait for the container", e.into())),
        }
    }
}

fn random_id() -> Result<String> {
    tupper_sys::random::hex(proto::validate::CONTAINER_ID_LEN / 2)
        .map_err(|e| Error::io("getrandom", e))
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
