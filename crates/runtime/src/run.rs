//! `run`: snapshot → spawn → attach → start → wait → clean up.

use std::os::fd::AsRawFd;

use proto::{
    NetReply, NetRequest, NsReply, NsRequest, RemoteError, SpawnRequest, StorageReply,
    StorageRequest,
};

use crate::error::{Error, Result};
use crate::helpers::{Helper, HelperProcess};
use crate::process::{PidFd, ProcessId};
use crate::records::{Record, Records, Status, RECORD_VERSION};
use crate::signals::Signals;
use crate::{cleanup, tty};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum NetworkMode {
    /// An eth0 on the host bridge with an address and a default route.
    Bridge,
    /// Only a loopback interface.
    None,
    /// The caller's own network namespace (no namespace of its own).
    Host,
}

#[derive(Debug, Clone, clap::Args)]
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
}

/// Default command when none is given: the image's shell.
const DEFAULT_COMMAND: &str = "/bin/sh";

impl RunOptions {
    fn validate(&mut self) -> Result<()> {
        // Privileges, `-e KEY`, `--env-file`, `--entrypoint` (issue 7).
        let host = self.network == NetworkMode::Host;
        crate::security::prepare(&mut self.sec, &mut self.env, &mut self.command, host)?;
        proto::validate::name(&self.image)?;
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
        Ok(())
    }
}

/// Run a container in the foreground; returns its exit status.
pub fn run(mut opts: RunOptions, signals: &Signals) -> Result<i32> {
    opts.validate()?;
    // Volume sources are opened (as the caller) before anything is created.
    let user_mounts = crate::volumes::resolve(&opts.mounts)?;
    crate::etc_files::validate(&opts.mounts)?;
    // The helpers enforce this; checking it here first gives the clearest message
    // before anything is created.
    tupper_config::subid::mapping_for(proto::Caller::current())
        .map_err(|e| crate::helpers::wrap(Helper::Ns, proto::Error::Remote(e.to_remote())))?;
    let state = Records::open()?;
    cleanup::collect_garbage(&state);

    let id = random_id()?;
    let name = opts.name.clone().unwrap_or_else(|| id[..12].to_string());
    let mut rec = Record {
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

    let mut run = Running {
        state: &state,
        signals,
        snapshot: false,
        user_mounts,
    };
    let outcome = run.start_and_wait(&opts, &mut rec);
    let code = match &outcome {
        Ok(code) => *code,
        Err(e) => e.exit_code(),
    };
    run.tear_down(&mut rec, code);
    outcome
}

struct Running<'a> {
    state: &'a Records,
    signals: &'a Signals,
    snapshot: bool,
    /// Volumes and tmpfs from the command line, sources opened.
    user_mounts: Vec<proto::MountSpec>,
}

impl Running<'_> {
    fn check_cancelled(&self) -> Result<()> {
        match self.signals.pending() {
            Some(sig) => Err(Error::user(format!(
                "interrupted by signal {sig} before the container started"
            ))),
            None => Ok(()),
        }
    }

    fn start_and_wait(&mut self, opts: &RunOptions, rec: &mut Record) -> Result<i32> {
        // 1. A writable snapshot of the image.
        let _: StorageReply = crate::helpers::call_once(
            Helper::Storage,
            &StorageRequest::Snapshot {
                image: opts.image.clone(),
                container: rec.id.clone(),
            },
        )?;
        self.snapshot = true;
        self.check_cancelled()?;

        // 2. The container init, in its namespaces, waiting; its /etc
        //    files in the container's state directory.
        let hostname = opts
            .hostname
            .clone()
            .unwrap_or_else(|| rec.id[..12].to_string());
        let (etc, mounts) = crate::volumes::with_etc_files(
            self.state.files_dir(&rec.id),
            &hostname,
            &rec.name,
            &opts.mounts,
            std::mem::take(&mut self.user_mounts),
        )?;
        let (stdio, pending) = crate::stdio::for_container(opts.tty, opts.interactive)?;
        let mut ns = HelperProcess::spawn(Helper::Ns, stdio)?;
        let _relay = pending.map(crate::stdio::Pending::start).transpose()?;
        let reply = ns.call(&NsRequest::Spawn(Box::new(SpawnRequest {
            container: rec.id.clone(),
            command: opts.command.clone(),
            env: opts.env.clone(),
            hostname,
            workdir: opts.workdir.clone(),
            tty: opts.tty,
            security: opts.sec.spawn.clone(),
            mounts,
            read_only_root: opts.mounts.read_only,
        })))?;
        let NsReply::Spawned { pid } = reply else {
            return Err(Error::user("ns: unexpected reply to Spawn"));
        };
        rec.init = ProcessId::of(pid);
        let mut channel = ns.into_channel()?;
        let pidfd = PidFd::open(pid).map_err(|e| Error::io("open the container process", e))?;
        rec.status = Status::Running;
        self.state.save(rec)?;
        self.signals.forward_to(pidfd);

        // 3. Network.
        if opts.network == NetworkMode::Bridge {
            rec.network_attached = true;
            self.state.save(rec)?;
            let NetReply::Attached { address, .. } = crate::helpers::call_once::<_, NetReply>(
                Helper::Net,
                &NetRequest::Attach {
                    pid,
                    container: rec.id.clone(),
                },
            )?
            else {
                return Err(Error::user("net: unexpected reply to Attach"));
            };
            etc.set_address_of(&address)?;
            rec.address = Some(address);
            self.state.save(rec)?;
        }
        self.check_cancelled()?;

        // 4. Release the init; with a terminal, it first sends the master of
        //    the terminal it made in the container, which we relay.
        channel
            .send(&NsRequest::Start)
            .map_err(|e| crate::helpers::wrap(Helper::Ns, proto::Error::Remote(e.to_remote())))?;
        let mut _raw = None;
        let mut output = None;
        if opts.tty {
            let (reply, master) = channel
                .recv_with_fd::<std::result::Result<NsReply, RemoteError>>()
                .map_err(|e| {
                    crate::helpers::wrap(Helper::Ns, proto::Error::Remote(e.to_remote()))
                })?;
            let master = match (reply, master) {
                (Ok(NsReply::Terminal), Some(master)) => master,
                (Err(e), _) => {
                    let _ = wait_exit(pid);
                    return Err(Error::Exec(e));
                }
                _ => return Err(Error::user("ns: expected the container's terminal")),
            };
            tty::copy_window_size(master.as_raw_fd());
            if tty::stdin_is_tty() {
                _raw = tty::RawMode::enter();
            }
            self.signals.follow_window_size(&master);
            output = Some(tty::relay(master)?);
        }
        let started: Option<std::result::Result<NsReply, RemoteError>> = channel
            .recv_opt()
            .map_err(|e| crate::helpers::wrap(Helper::Ns, proto::Error::Remote(e.to_remote())))?;
        if let Some(reply) = started {
            let _ = wait_exit(pid);
            return match reply {
                Err(e) => Err(Error::Exec(e)),
                Ok(_) => Err(Error::user("ns: unexpected reply to Start")),
            };
        }

        // 5. Wait for the container's end.
        let code = wait_exit(pid)?;
        self.signals.stop_forwarding();
        if let Some(out) = output {
            let _ = out.join();
        }
        if let Some(relay) = _relay {
            relay.drain();
        }
        Ok(code)
    }

    /// Release everything the run took, whatever happened.
    fn tear_down(&mut self, rec: &mut Record, code: i32) {
        self.signals.stop_forwarding();
        if let Some(init) = rec.init {
            if let Some(pidfd) = init.pidfd() {
                let _ = pidfd.signal(libc::SIGKILL);
                let _ = wait_exit(init.pid);
            }
        }
        let _lock = self.state.lock();
        if let Err(e) = cleanup::settle(self.state, rec, self.snapshot, code) {
            eprintln!("tupper: {e}");
        }
    }
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
