//! The per-container monitor: a small unprivileged process, the container
//! init's parent, that outlives the command which started the container.
//!
//! The supervisor forks it twice (`setsid` in between, so it has its own
//! session and process group and is nobody's child it could be killed
//! with), with its standard streams on `/dev/null`. The monitor then does
//! the whole `run` sequence itself — snapshot, spawn `tupper-ns` (the init
//! becomes the monitor's child through `CLONE_PARENT`), attach the network,
//! write the `/etc` files, `Start` — reporting to the starting supervisor
//! over a pipe (`ready`, then `started PID START_TIME` or
//! `error CODE MESSAGE`). It then holds the container's output pipes (or the
//! terminal's master), appends them to the log (`logs.rs`), serves attach
//! clients on `attach` in the container's directory (`attach.rs`), reaps the
//! init, records the exit status and time, runs the teardown
//! (`cleanup::settle`), tells attached clients the exit code, and exits.
//!
//! The init's parent-death signal follows the monitor: killing the monitor
//! kills the container; `ps` then shows it exited with an unknown status
//! and `rm`/`gc` reclaim its lease and root.

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant};

use proto::{
    ErrorKind, NetReply, NetRequest, NsReply, NsRequest, RemoteError, SpawnRequest, StorageReply,
    StorageRequest,
};

use crate::attach;
use crate::error::{Error, Result};
use crate::helpers::{Helper, HelperProcess, HelperStdio};
use crate::logs::{LogWriter, Stream};
use crate::process::{PidFd, ProcessId};
use crate::records::{Record, Records, Status};
use crate::run::{NetworkMode, RunOptions};

/// What the monitor is asked to do.
pub struct Launch {
    pub opts: RunOptions,
    /// Volumes and tmpfs from the command line, sources opened.
    pub user_mounts: Vec<proto::MountSpec>,
    /// Take a new snapshot of the image (`run`), or reuse the root (`start`).
    pub fresh: bool,
    /// Wait for the first attach client before starting the command, so
    /// that it sees all of the output (foreground `run`, `start -a`).
    pub attach_first: bool,
    /// Issue 11: a storage helper session the monitor goes on with (`run`
    /// looked the image up with it): one helper fewer per start.
    pub storage: Option<HelperProcess>,
}

/// A container whose command runs, as the starting supervisor sees it.
pub struct Started {
    pub init: ProcessId,
    /// Connected to the monitor when `attach_first` was asked.
    pub stream: Option<UnixStream>,
}

/// How long the monitor waits for the starting supervisor to attach.
const ATTACH_WAIT: Duration = Duration::from_secs(30);

/// Fork the monitor and wait for its report. `close_in_child` are
/// descriptors the monitor must not keep (the container lock).
pub fn start(
    state: &Records,
    rec: Record,
    mut launch: Launch,
    close_in_child: &[RawFd],
) -> Result<Started> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| Error::io("create the monitor's report pipe", e.into()))?;
    // SAFETY: the child only continues into `monitor_main`, which never
    // returns; the parent only waits for the intermediate child.
    match unsafe { nix::unistd::fork() } {
        Err(e) => Err(Error::io("start the container's monitor", e.into())),
        Ok(nix::unistd::ForkResult::Child) => {
            drop(r);
            for fd in close_in_child {
                // SAFETY: closing a descriptor this process image owns a copy of.
                unsafe { libc::close(*fd) };
            }
            if nix::unistd::setsid().is_err() {
                // SAFETY: _exit ends this forked child without running destructors.
                unsafe { libc::_exit(1) };
            }
            // SAFETY: as above.
            match unsafe { nix::unistd::fork() } {
                Ok(nix::unistd::ForkResult::Child) => monitor_main(state, rec, launch, w),
                // SAFETY: _exit in the intermediate child.
                _ => unsafe { libc::_exit(0) },
            }
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => {
            drop(w);
            // The storage session is the monitor's now: our end of its
            // channel closes (the helper, our child, is reaped when it ends).
            if let Some(storage) = launch.storage.as_mut() {
                storage.hand_over();
            }
            let _ = nix::sys::wait::waitpid(child, None);
            read_report(state, &rec, r, launch.attach_first)
        }
    }
}

fn read_report(state: &Records, rec: &Record, r: OwnedFd, attach: bool) -> Result<Started> {
    let mut reader = std::io::BufReader::new(std::fs::File::from(r));
    let mut stream = None;
    loop {
        let mut line = String::new();
        use std::io::BufRead;
        let n = reader
            .read_line(&mut line)
            .map_err(|e| Error::io("read the monitor's report", e))?;
        if n == 0 {
            return Err(Error::user(
                "the container's monitor died before the container started",
            ));
        }
        let line = line.trim_end();
        let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
        match word {
            "ready" if attach => stream = Some(attach::connect(&state.files_dir(&rec.id))?),
            "ready" => {}
            "started" => {
                let mut it = rest.split(' ').filter_map(|s| s.parse::<u64>().ok());
                let (Some(pid), Some(start_time)) = (it.next(), it.next()) else {
                    return Err(Error::user("the monitor's report is malformed"));
                };
                return Ok(Started {
                    init: ProcessId {
                        pid: pid as i32,
                        start_time,
                    },
                    stream,
                });
            }
            "error" => {
                let (code, msg) = rest.split_once(' ').unwrap_or((rest, ""));
                let kind = match code.parse::<i32>() {
                    Ok(crate::error::EXIT_NOT_FOUND) => ErrorKind::CommandNotFound,
                    Ok(crate::error::EXIT_NOT_EXECUTABLE) => ErrorKind::NotExecutable,
                    _ => return Err(Error::user(msg.to_string())),
                };
                return Err(Error::Exec(RemoteError::new(kind, msg)));
            }
            _ => return Err(Error::user("the monitor's report is malformed")),
        }
    }
}

/// The report pipe to the starting supervisor; gone once it was told.
struct Report(Option<std::fs::File>);

impl Report {
    fn say(&mut self, line: &str) {
        if let Some(f) = &mut self.0 {
            let text = format!("{}\n", line.replace('\n', " "));
            if f.write_all(text.as_bytes()).is_err() {
                self.0 = None;
            }
        }
    }
}

/// The monitor process. Never returns.
fn monitor_main(state: &Records, mut rec: Record, launch: Launch, report: OwnedFd) -> ! {
    detach_from_caller();
    let mut report = Report(Some(std::fs::File::from(report)));
    if let Some(me) = ProcessId::current() {
        rec.supervisor = me;
    }
    let mut m = Monitor {
        state,
        snapshot: !launch.fresh,
        container: None,
    };
    match m.set_up(&mut rec, launch, &mut report) {
        Ok(()) => {
            let code = m.serve(&mut rec);
            m.finish(&mut rec, code);
        }
        Err(e) => {
            // Everything is given back before the caller hears of the failure.
            let code = e.exit_code();
            m.kill_init(&rec);
            m.finish(&mut rec, code);
            report.say(&format!("error {code} {e}"));
        }
    }
    std::process::exit(0)
}

/// Standard streams on `/dev/null`, signals as a new process expects them,
/// `/` as working directory, private files by default.
fn detach_from_caller() {
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        for fd in 0..3 {
            // SAFETY: dup2 onto the standard descriptors.
            unsafe { libc::dup2(null.as_raw_fd(), fd) };
        }
    }
    let _ = nix::sys::signal::sigprocmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&nix::sys::signal::SigSet::empty()),
        None,
    );
    let _ = std::env::set_current_dir("/");
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    let _ = tupper_sys::prctl(
        libc::PR_SET_NAME,
        c"tupper-monitor".as_ptr() as libc::c_ulong,
    );
}

/// Give back the pages of read-only file mappings (program and library
/// code, constants) that setting up the container touched and the serve loop
/// will not: they stay in the page cache, and what the loop needs faults back
/// in. Mappings with copied-on-write pages (relocated data made read-only
/// afterwards) keep them: dropping those would bring back the file's
/// contents.
fn trim_resident_set() {
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
        return;
    };
    let mut current: Option<(usize, usize)> = None;
    for line in smaps.lines() {
        let mut words = line.split_whitespace();
        let first = words.next().unwrap_or("");
        if let Some((start, end)) = first.split_once('-').and_then(|(a, b)| {
            Some((
                usize::from_str_radix(a, 16).ok()?,
                usize::from_str_radix(b, 16).ok()?,
            ))
        }) {
            let perms = words.next().unwrap_or("");
            let path = words.nth(3).unwrap_or("");
            current = (!perms.contains('w') && path.starts_with('/')).then_some((start, end));
            continue;
        }
        if first == "Anonymous:" {
            if let Some((start, end)) = current.take() {
                if words.next() == Some("0") {
                    // SAFETY: a read-only, unmodified file mapping of ours:
                    // its pages are read again from the file when touched.
                    unsafe {
                        libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED)
                    };
                }
            }
        }
    }
}

/// The running container as the monitor holds it.
struct Container {
    pid: i32,
    pidfd: PidFd,
    /// Output pipes (stdout, stderr) or the terminal's master (as stdout).
    outputs: Vec<(OwnedFd, Stream)>,
    /// Where input goes: our end of its stdin pipe, or the master
    /// (non-blocking; what it cannot take yet waits in `pending`).
    input: Option<OwnedFd>,
    pending: Vec<u8>,
    /// End of input asked: close `input` once `pending` is written.
    input_eof: bool,
    master: bool,
    listener: UnixListener,
    clients: Vec<Client>,
}

struct Client {
    stream: UnixStream,
    buf: Vec<u8>,
}

struct Monitor<'a> {
    state: &'a Records,
    snapshot: bool,
    container: Option<Container>,
}

fn ns_err(e: proto::Error) -> Error {
    crate::helpers::wrap(Helper::Ns, e)
}

impl Monitor<'_> {
    fn set_up(&mut self, rec: &mut Record, launch: Launch, report: &mut Report) -> Result<()> {
        let opts = &launch.opts;
        // Issue 9: the init is in its cgroups before it executes anything.
        // Issue 11: the cgroup helper starts first and makes them while the
        // root is mounted; the init is moved in while it sets itself up.
        let mut cgroup = if crate::limits::enabled() {
            rec.cgroups = true;
            rec.oom_killed = None;
            self.save(rec)?;
            let mut helper = crate::limits::start()?;
            crate::limits::ask_prepare(&mut helper, &rec.id, &opts.limits)?;
            Some(helper)
        } else {
            None
        };
        // One storage helper: the snapshot (first start) and the root's
        // mount; `run` started it (issue 11).
        let mut storage = match launch.storage {
            Some(storage) => storage,
            None => HelperProcess::spawn(Helper::Storage, HelperStdio::default())?,
        };
        if launch.fresh {
            // Disk quota (issue 9): a size of its own, or the policy's.
            let request = match opts.storage_size {
                Some(size) => StorageRequest::SnapshotSized {
                    image: opts.image.clone(),
                    container: rec.id.clone(),
                    size,
                },
                None => StorageRequest::Snapshot {
                    image: opts.image.clone(),
                    container: rec.id.clone(),
                },
            };
            let _: StorageReply = storage.call(&request)?;
            self.snapshot = true;
        }
        // Issue 9: the root as an overlay, never a directory of the store.
        let root = crate::root_mount::mount(&mut storage, &rec.id, rec.remove_on_exit)?;
        drop(storage);
        let hostname = opts
            .hostname
            .clone()
            .unwrap_or_else(|| rec.id[..12].to_string());
        rec.hostname = Some(hostname.clone());
        let (etc, mounts) = crate::volumes::with_etc_files(
            self.state.files_dir(&rec.id),
            &hostname,
            &rec.name,
            &opts.mounts,
            launch.user_mounts,
        )?;
        // The attach socket, before anything runs (a stale one goes).
        let sock = self.state.files_dir(&rec.id).join(attach::SOCKET_NAME);
        let _ = std::fs::remove_file(&sock);
        let listener =
            UnixListener::bind(&sock).map_err(|e| Error::io("bind the attach socket", e))?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| Error::io("make the attach socket private", e))?;
        }
        let (stdio, pending) = crate::stdio::for_container(opts.tty, opts.interactive)?;
        let mut ns = HelperProcess::spawn(Helper::Ns, stdio)?;
        let (mut outputs, mut input) = match pending {
            Some(p) => p.into_parts(),
            None => (Vec::new(), None),
        };
        ns.send(&NsRequest::Spawn(Box::new(SpawnRequest {
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
        ns.send_with_fd(&proto::ContainerRoot, std::os::fd::AsFd::as_fd(&root))?;
        drop(root);
        let NsReply::Cloned { pid } = ns.recv_reply()? else {
            return Err(Error::user("ns: unexpected reply to Spawn"));
        };
        rec.init = ProcessId::of(pid);
        if let Some(helper) = cgroup.as_mut() {
            rec.limits = Some(Box::new(crate::limits::prepared(helper)?));
            crate::limits::ask_place(helper, &rec.id, pid)?;
        }
        match ns.recv_reply()? {
            NsReply::Spawned { pid: spawned } if spawned == pid => {}
            _ => return Err(Error::user("ns: unexpected reply to Spawn")),
        }
        let mut channel = ns.into_channel()?;
        let pidfd = PidFd::open(pid).map_err(|e| Error::io("open the container process", e))?;
        rec.status = Status::Running;
        rec.finished_at = None;
        self.save(rec)?;

        if opts.network == NetworkMode::Bridge {
            rec.network_attached = true;
            self.save(rec)?;
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
            self.save(rec)?;
            // Issue 11: published ports, tied to the lease.
            let specs = crate::ports::specs(opts)?;
            if !specs.is_empty() {
                rec.ports = crate::ports::publish(&rec.id, &specs)?;
                self.save(rec)?;
            }
            // Issue 11: this container's and the others' names.
            crate::etc_files::refresh_neighbours(self.state);
        }

        // Issue 9: in its cgroups before `Start`.
        if let Some(mut helper) = cgroup.take() {
            crate::limits::placed(&mut helper)?;
            self.save(rec)?;
        }

        report.say("ready");
        let mut clients = Vec::new();
        if launch.attach_first {
            if let Some(c) = accept_within(&listener, ATTACH_WAIT) {
                clients.push(c);
            }
        }

        channel
            .send(&NsRequest::Start)
            .map_err(|e| ns_err(proto::Error::Remote(e.to_remote())))?;
        let mut master = false;
        if opts.tty {
            let (reply, fd) = channel
                .recv_with_fd::<std::result::Result<NsReply, RemoteError>>()
                .map_err(|e| ns_err(proto::Error::Remote(e.to_remote())))?;
            match (reply, fd) {
                (Ok(NsReply::Terminal), Some(fd)) => {
                    input = Some(
                        fd.try_clone()
                            .map_err(|e| Error::io("the container's terminal", e))?,
                    );
                    outputs = vec![(fd, Stream::Stdout)];
                    master = true;
                }
                (Err(e), _) => return Err(Error::Exec(e)),
                _ => return Err(Error::user("ns: expected the container's terminal")),
            }
        }
        let started: Option<std::result::Result<NsReply, RemoteError>> = channel
            .recv_opt()
            .map_err(|e| ns_err(proto::Error::Remote(e.to_remote())))?;
        self.container = Some(Container {
            pid,
            pidfd,
            outputs,
            input,
            pending: Vec::new(),
            input_eof: false,
            master,
            listener,
            clients,
        });
        if let Some(c) = &self.container {
            for fd in c.input.iter().map(|f| f.as_raw_fd()) {
                set_nonblocking(fd);
            }
        }
        if let Some(reply) = started {
            return match reply {
                Err(e) => Err(Error::Exec(e)),
                Ok(_) => Err(Error::user("ns: unexpected reply to Start")),
            };
        }
        rec.started_at = Some(crate::run::now());
        self.save(rec)?;
        let init = rec.init.unwrap_or(ProcessId { pid, start_time: 0 });
        report.say(&format!("started {} {}", init.pid, init.start_time));
        report.0 = None;
        Ok(())
    }

    fn save(&self, rec: &Record) -> Result<()> {
        let _lock = self.state.lock()?;
        self.state.save(rec)
    }

    fn kill_init(&mut self, rec: &Record) {
        if let Some(init) = rec.init {
            if let Some(pidfd) = init.pidfd() {
                let _ = pidfd.signal(libc::SIGKILL);
                let _ = crate::run::wait_exit(init.pid);
            }
        }
    }

    /// Relay, log and serve until the init exits; returns its exit code.
    fn serve(&mut self, rec: &mut Record) -> i32 {
        let Some(c) = self.container.as_mut() else {
            return crate::error::EXIT_RUNTIME;
        };
        let sizes = tupper_config::system::SystemConfig::load()
            .map(|c| (c.runtime.log_size_max_bytes(), c.runtime.log_files))
            .unwrap_or((10 << 20, 2));
        let mut log = LogWriter::open(self.state.files_dir(&rec.id), sizes.0, sizes.1);
        let mut code = None;
        let mut deadline = None;
        let mut buf = vec![0u8; attach::MAX_FRAME];
        // Issue 11: the set-up's helpers were let go without waiting for
        // their exits; once all are reaped, the pages touched so far are
        // given back (until then the loop looks every few milliseconds).
        let mut settled = false;
        loop {
            if !settled && crate::helpers::reap_finished(false) {
                trim_resident_set();
                settled = true;
            }
            if code.is_some()
                && (c.outputs.is_empty() || deadline.is_some_and(|d| Instant::now() > d))
            {
                break;
            }
            // Poll: listener, pidfd (until exit), outputs, clients.
            let mut fds: Vec<libc::pollfd> = Vec::new();
            let p = |fd: RawFd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            fds.push(p(c.listener.as_raw_fd()));
            fds.push(p(if code.is_none() {
                c.pidfd.as_fd().as_raw_fd()
            } else {
                -1
            }));
            fds.push(libc::pollfd {
                fd: match &c.input {
                    Some(fd) if !c.pending.is_empty() => fd.as_raw_fd(),
                    _ => -1,
                },
                events: libc::POLLOUT,
                revents: 0,
            });
            for (fd, _) in &c.outputs {
                fds.push(p(fd.as_raw_fd()));
            }
            for cl in &c.clients {
                fds.push(p(cl.stream.as_raw_fd()));
            }
            let timeout = match (code, settled) {
                (Some(_), _) => 100,
                (None, false) => 5,
                (None, true) => -1,
            };
            // SAFETY: `fds` is a valid array of pollfd.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
            if n < 0 {
                continue;
            }
            let ready = |i: usize| fds[i].revents != 0;
            if ready(0) {
                if let Ok((s, _)) = c.listener.accept() {
                    if let Some(cl) = client(s) {
                        c.clients.push(cl);
                    }
                }
            }
            if ready(1) && code.is_none() {
                code = Some(crate::run::wait_exit(c.pid).unwrap_or(crate::error::EXIT_RUNTIME));
                deadline = Some(Instant::now() + Duration::from_secs(2));
                c.input = None;
            }
            if ready(2) {
                c.flush_input();
            }
            let nout = c.outputs.len();
            let mut closed = Vec::new();
            for i in 0..nout {
                if !ready(3 + i) {
                    continue;
                }
                let (fd, stream) = &c.outputs[i];
                match nix::unistd::read(fd.as_fd(), &mut buf) {
                    Ok(0) => closed.push(i),
                    Ok(n) => {
                        log.write(*stream, &buf[..n]);
                        let kind = match stream {
                            Stream::Stdout => attach::STDOUT,
                            Stream::Stderr => attach::STDERR,
                        };
                        let f = attach::frame(kind, &buf[..n]);
                        c.clients.retain(|cl| send_blocking(&cl.stream, &f));
                    }
                    Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => {}
                    Err(_) => closed.push(i),
                }
            }
            // Client frames (indexes shift once outputs close: handle clients first).
            let mut gone = Vec::new();
            for (j, cl) in c.clients.iter_mut().enumerate() {
                if !ready(3 + nout + j) {
                    continue;
                }
                match (&cl.stream).read(&mut buf) {
                    Ok(0) => gone.push(j),
                    Ok(n) => {
                        cl.buf.extend_from_slice(&buf[..n]);
                        let Some(frames) = attach::take_frames(&mut cl.buf) else {
                            gone.push(j);
                            continue;
                        };
                        for (kind, payload) in frames {
                            match kind {
                                attach::STDIN if c.input.is_some() => {
                                    c.pending.extend_from_slice(&payload)
                                }
                                attach::STDIN_EOF if !c.master => c.input_eof = true,
                                attach::RESIZE if c.master && payload.len() == 4 => {
                                    if let Some((fd, _)) = c.outputs.first() {
                                        set_window(fd.as_raw_fd(), &payload);
                                    }
                                }
                                _ => {}
                            }
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => gone.push(j),
                }
            }
            c.flush_input();
            for j in gone.into_iter().rev() {
                c.clients.remove(j);
            }
            for i in closed.into_iter().rev() {
                c.outputs.remove(i);
            }
        }
        code.unwrap_or(crate::error::EXIT_RUNTIME)
    }

    /// Record the end, give everything back, tell the clients, and go.
    fn finish(&mut self, rec: &mut Record, code: i32) {
        rec.finished_at = Some(crate::run::now());
        rec.status = Status::Exited(code);
        rec.address = None;
        if let Ok(_lock) = self.state.lock() {
            // `update` may have changed the limits in force meanwhile.
            if let Ok(on_disk) = self.state.find(&rec.id) {
                rec.limits = on_disk.limits;
            }
            let _ = self.state.save(rec);
        }
        if let Ok(_lock) = self.state.lock() {
            let _ = crate::cleanup::settle(self.state, rec, self.snapshot, code);
        }
        // Issue 11: the user's other containers forget this one's name.
        crate::etc_files::refresh_neighbours(self.state);
        if let Some(c) = self.container.take() {
            // Issue 9: one line that the OOM killer ended it, with the limit.
            if rec.oom_killed == Some(true) {
                let line = format!("{}\n", crate::limits::oom_message(rec.limits.as_deref()));
                let f = attach::frame(attach::STDERR, line.as_bytes());
                for cl in &c.clients {
                    send_blocking(&cl.stream, &f);
                }
            }
            let f = attach::frame(attach::EXIT, &code.to_le_bytes());
            for cl in &c.clients {
                send_blocking(&cl.stream, &f);
            }
        }
        // Issue 11: the helpers of the teardown are reaped once the clients
        // were told (their exits are not on the way to `run`'s return).
        crate::helpers::reap_finished(true);
    }
}

impl Container {
    /// Write what input is pending without blocking; close the container's
    /// input once it was all written after an end of input.
    fn flush_input(&mut self) {
        let Some(fd) = &self.input else {
            self.pending.clear();
            return;
        };
        while !self.pending.is_empty() {
            match nix::unistd::write(fd.as_fd(), &self.pending) {
                Ok(n) => {
                    self.pending.drain(..n);
                }
                Err(nix::errno::Errno::EINTR) => {}
                Err(nix::errno::Errno::EAGAIN) => return,
                Err(_) => {
                    self.pending.clear();
                    if !self.master {
                        self.input = None;
                    }
                    return;
                }
            }
        }
        if self.input_eof && !self.master {
            self.input = None;
        }
    }
}

fn set_nonblocking(fd: RawFd) {
    // SAFETY: fcntl on a descriptor we own.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
    }
}

fn client(s: UnixStream) -> Option<Client> {
    s.set_nonblocking(true).ok()?;
    Some(Client {
        stream: s,
        buf: Vec::new(),
    })
}

fn accept_within(l: &UnixListener, wait: Duration) -> Option<Client> {
    let mut p = [libc::pollfd {
        fd: l.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    }];
    // SAFETY: one valid pollfd.
    let n = unsafe { libc::poll(p.as_mut_ptr(), 1, wait.as_millis() as libc::c_int) };
    if n <= 0 {
        return None;
    }
    l.accept().ok().and_then(|(s, _)| client(s))
}

/// Write a whole frame to a (non-blocking) client, waiting at most a few
/// seconds for room: a client that does not read is dropped, never the
/// container held up for long.
fn send_blocking(s: &UnixStream, mut data: &[u8]) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !data.is_empty() {
        match (&*s).write(data) {
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return false;
                }
                let mut p = [libc::pollfd {
                    fd: s.as_raw_fd(),
                    events: libc::POLLOUT,
                    revents: 0,
                }];
                // SAFETY: one valid pollfd.
                unsafe { libc::poll(p.as_mut_ptr(), 1, left.as_millis() as libc::c_int) };
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    true
}

fn set_window(master: RawFd, p: &[u8]) {
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    ws.ws_row = u16::from_le_bytes([p[0], p[1]]);
    ws.ws_col = u16::from_le_bytes([p[2], p[3]]);
    // SAFETY: TIOCSWINSZ reads a winsize from the buffer we pass.
    unsafe { libc::ioctl(master, libc::TIOCSWINSZ, &ws) };
}
