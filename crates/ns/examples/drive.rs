//! Test driver standing in for the supervisor: runs `tupper-ns` with a control
//! channel on fd 3, spawns one container, starts it and waits for it.
//!
//! Usage: drive HELPER CONTAINER-ID HOSTNAME WORKDIR [--tty] -- COMMAND...
//!
//! Container output goes to our stdout/stderr (with --tty, the container's
//! terminal is copied to our stdout); what happened is reported on
//! stderr as lines starting with `DRIVE `.

use std::process::Command;

use proto::{NsReply, NsRequest, RemoteError, SpawnRequest};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let sep = args.iter().position(|a| a == "--").expect("missing --");
    let (opts, command) = (&args[1..sep], args[sep + 1..].to_vec());
    let [helper, container, hostname, workdir] = [&opts[0], &opts[1], &opts[2], &opts[3]];
    let tty = opts[4..].iter().any(|o| o == "--tty");
    let env = std::env::var("DRIVE_ENV")
        .map(|v| v.split(',').map(str::to_string).collect())
        .unwrap_or_default();

    let mut cmd = Command::new(helper);
    let (mut chan, mut child) = proto::spawn::spawn_with_channel(&mut cmd).expect("spawn helper");
    drop(cmd);

    chan.handshake().expect("handshake");
    chan.send(&NsRequest::Spawn(SpawnRequest {
        container: container.clone(),
        command,
        env,
        hostname: hostname.clone(),
        workdir: workdir.clone(),
        tty,
    }))
    .expect("send Spawn");
    let reply: Result<NsReply, RemoteError> = chan.recv().expect("reply");
    let status = child.wait().expect("wait helper");
    eprintln!("DRIVE helper-exit {}", status.code().unwrap_or(-1));
    let mut copier = None;
    let pid = match reply {
        Ok(NsReply::Spawned { pid }) => {
            eprintln!("DRIVE spawned {pid}");
            pid
        }
        Ok(other) => {
            eprintln!("DRIVE unexpected {other:?}");
            std::process::exit(0);
        }
        Err(e) => {
            eprintln!("DRIVE error {:?} {}", e.kind, e.message);
            // Any init the helper created would now be our child.
            let rc = unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) };
            let none =
                rc < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ECHILD);
            eprintln!("DRIVE children {}", if none { "none" } else { "some" });
            std::process::exit(0);
        }
    };

    // What tupper-net does while the init waits: open its network namespace.
    match std::fs::File::open(format!("/proc/{pid}/ns/net")) {
        Ok(_) => eprintln!("DRIVE netns-open ok"),
        Err(e) => eprintln!("DRIVE netns-open {e}"),
    }

    if std::env::var_os("DRIVE_NO_START").is_some() {
        // The supervisor goes away before Start: the init must exit quietly.
        drop(chan);
    } else {
        chan.send(&NsRequest::Start).expect("send Start");
        // With --tty, the init first passes the master of the terminal it
        // made in the container; its output is copied to our stdout.
        if tty {
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
}
