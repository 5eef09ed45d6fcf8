//! `ns-spawn`: stand in for the supervisor in front of `tupper-ns`: send one
//! `Spawn`, start the container (unless `--no-start`) and wait for its init,
//! which `CLONE_PARENT` made our child.
//!
//! ```text
//! tupper-drive LIBEXECDIR ns-spawn CONTAINER HOSTNAME WORKDIR [--tty] [--no-start] [--env K=V]... [--root-dir DIR] -- COMMAND...
//! ```
//! The container root is what the supervisor would send (issue 9): the
//! overlay mount `tupper-storage` makes (`MountRoot`), asked for as the same
//! user; when the storage helper refuses, `Spawn` is followed by a
//! `ContainerRoot` frame without a descriptor. `--root-dir DIR` sends an
//! open directory `DIR` instead, as a hostile caller would.
//! Container output goes to our stdout/stderr (with `--tty`, the container's
//! terminal is copied to our stdout); what happened is reported on stderr as
//! lines starting with `DRIVE `:
//! `helper-exit N`, `spawned PID` or `error KIND MESSAGE` (then `children
//! none|some`), `netns-open ok|ERROR`, `terminal`, `started` or
//! `exec-error KIND MESSAGE`, and last `exit N` or `signal N`.
//! Exits 0 once it has reported; 2 when it could not drive the helper.

use std::process::{Command, ExitCode, Stdio};

use proto::{NsReply, NsRequest, RemoteError, SpawnRequest};

struct Options {
    container: String,
    hostname: String,
    workdir: String,
    tty: bool,
    no_start: bool,
    env: Vec<String>,
    root_dir: Option<String>,
    command: Vec<String>,
}

fn parse(args: &[&str]) -> Option<Options> {
    let sep = args.iter().position(|a| *a == "--")?;
    let (opts, command) = (&args[..sep], &args[sep + 1..]);
    let [container, hostname, workdir, flags @ ..] = opts else {
        return None;
    };
    let mut o = Options {
        container: container.to_string(),
        hostname: hostname.to_string(),
        workdir: workdir.to_string(),
        tty: false,
        no_start: false,
        env: Vec::new(),
        root_dir: None,
        command: command.iter().map(|s| s.to_string()).collect(),
    };
    let mut flags = flags.iter();
    while let Some(f) = flags.next() {
        match *f {
            "--tty" => o.tty = true,
            "--no-start" => o.no_start = true,
            "--env" => o.env.push(flags.next()?.to_string()),
            "--root-dir" => o.root_dir = Some(flags.next()?.to_string()),
            _ => return None,
        }
    }
    Some(o)
}

fn fail(what: &str, e: impl std::fmt::Display) -> ExitCode {
    eprintln!("DRIVE driver-error {what}: {e}");
    ExitCode::from(2)
}

pub fn run(libexec: &str, args: &[&str]) -> ExitCode {
    let Some(o) = parse(args) else {
        eprintln!(
            "usage: tupper-drive LIBEXECDIR ns-spawn CONTAINER HOSTNAME WORKDIR \
             [--tty] [--no-start] [--env K=V]... [--root-dir DIR] -- COMMAND..."
        );
        return ExitCode::from(2);
    };
    let root = match &o.root_dir {
        Some(dir) => match std::fs::File::open(dir) {
            Ok(f) => Some(std::os::fd::OwnedFd::from(f)),
            Err(e) => return fail("open --root-dir", e),
        },
        None => mount_root(libexec, &o.container),
    };
    let mut cmd = Command::new(format!("{libexec}/tupper-ns"));
    cmd.stdin(Stdio::null());
    let (mut chan, mut child) = match proto::spawn::spawn_with_channel(&mut cmd) {
        Ok(c) => c,
        Err(e) => return fail("spawn tupper-ns", e),
    };
    drop(cmd);
    if let Err(e) = chan.handshake() {
        return fail("handshake", e);
    }
    let request = NsRequest::Spawn(Box::new(SpawnRequest {
        container: o.container,
        command: o.command,
        env: o.env,
        hostname: o.hostname,
        workdir: o.workdir,
        tty: o.tty,
        security: Default::default(),
        mounts: vec![],
        read_only_root: false,
    }));
    if let Err(e) = chan.send(&request) {
        return fail("send Spawn", e);
    }
    let sent = match &root {
        Some(fd) => chan.send_with_fd(&proto::ContainerRoot, std::os::fd::AsFd::as_fd(fd)),
        None => chan.send(&proto::ContainerRoot),
    };
    // The helper may have answered already (a refused request).
    if let Err(e) = sent {
        eprintln!("DRIVE root-not-sent {e}");
    }
    drop(root);
    let mut reply: Result<NsReply, RemoteError> = match chan.recv() {
        Ok(r) => r,
        Err(e) => return fail("reply to Spawn", e),
    };
    // Issue 11: the init's pid comes first, then the outcome of its setup.
    if let Ok(NsReply::Cloned { pid }) = reply {
        eprintln!("DRIVE cloned {pid}");
        reply = match chan.recv() {
            Ok(r) => r,
            Err(e) => return fail("reply to Spawn", e),
        };
    }
    match child.wait() {
        Ok(status) => eprintln!("DRIVE helper-exit {}", status.code().unwrap_or(-1)),
        Err(e) => return fail("wait for tupper-ns", e),
    }
    let pid = match reply {
        Ok(NsReply::Spawned { pid }) => {
            eprintln!("DRIVE spawned {pid}");
            pid
        }
        Ok(other) => {
            eprintln!("DRIVE unexpected {other:?}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("DRIVE error {:?} {}", e.kind, e.message);
            // Any init the helper created would now be our child.
            // SAFETY: a non-blocking wait for any child of ours.
            let rc = unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) };
            let none =
                rc < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ECHILD);
            eprintln!("DRIVE children {}", if none { "none" } else { "some" });
            return ExitCode::SUCCESS;
        }
    };

    // What tupper-net does while the init waits: open its network namespace.
    match std::fs::File::open(format!("/proc/{pid}/ns/net")) {
        Ok(_) => eprintln!("DRIVE netns-open ok"),
        Err(e) => eprintln!("DRIVE netns-open {e}"),
    }

    let mut copier = None;
    if o.no_start {
        // The supervisor goes away before Start: the init must exit quietly.
        drop(chan);
    } else {
        if let Err(e) = chan.send(&NsRequest::Start) {
            return fail("send Start", e);
        }
        // With --tty, the init first passes the master of the terminal it
        // made in the container; its output is copied to our stdout.
        if o.tty {
            match chan.recv_with_fd::<Result<NsReply, RemoteError>>() {
                Ok((Ok(NsReply::Terminal), Some(master))) => {
                    eprintln!("DRIVE terminal");
                    copier = Some(std::thread::spawn(move || {
                        let mut master = std::fs::File::from(master);
                        let _ = std::io::copy(&mut master, &mut std::io::stdout());
                    }));
                }
                other => eprintln!("DRIVE unexpected {other:?}"),
            }
        }
        match chan.recv_opt::<Result<NsReply, RemoteError>>() {
            Ok(None) => eprintln!("DRIVE started"),
            Ok(Some(Err(e))) => eprintln!("DRIVE exec-error {:?} {}", e.kind, e.message),
            other => eprintln!("DRIVE unexpected {other:?}"),
        }
    }
    let mut st = 0;
    // SAFETY: waiting for our own child (CLONE_PARENT made the init ours).
    if unsafe { libc::waitpid(pid, &mut st, 0) } != pid {
        eprintln!("DRIVE waitpid failed: {}", std::io::Error::last_os_error());
    } else if libc::WIFEXITED(st) {
        eprintln!("DRIVE exit {}", libc::WEXITSTATUS(st));
    } else {
        eprintln!("DRIVE signal {}", libc::WTERMSIG(st));
    }
    if let Some(c) = copier {
        let _ = c.join();
    }
    ExitCode::SUCCESS
}

/// The container root's overlay from `tupper-storage`, as the supervisor
/// gets it; `None` when the helper refuses (reported as `DRIVE root-refused`).
fn mount_root(libexec: &str, container: &str) -> Option<std::os::fd::OwnedFd> {
    let mut cmd = Command::new(format!("{libexec}/tupper-storage"));
    cmd.stdin(Stdio::null());
    let (mut chan, mut child) = proto::spawn::spawn_with_channel(&mut cmd).ok()?;
    let fd = (|| {
        chan.handshake().ok()?;
        chan.send(&proto::StorageRequest::MountRoot {
            container: container.to_string(),
            transient: false,
        })
        .ok()?;
        match chan.recv_with_fd::<Result<proto::StorageReply, RemoteError>>() {
            Ok((Ok(proto::StorageReply::RootMount), Some(fd))) => Some(fd),
            Ok((Err(e), _)) => {
                eprintln!("DRIVE root-refused {:?} {}", e.kind, e.message);
                None
            }
            other => {
                eprintln!("DRIVE root-refused {other:?}");
                None
            }
        }
    })();
    drop(chan);
    let _ = child.wait();
    fd
}
