//! Test driver standing in for the supervisor: runs `tupper-ns` with a control
//! channel on fd 3, spawns one container, starts it and waits for it.
//!
//! Usage: drive HELPER CONTAINER-ID HOSTNAME WORKDIR [--tty] -- COMMAND...
//!
//! Container output goes to our stdout/stderr; what happened is reported on
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
    // With --tty, the container's stdio is a fresh pty (as the supervisor
    // would allocate); its output is copied to our stdout.
    let copier = tty.then(|| {
        let (master, slave) = open_pty();
        cmd.stdin(slave.try_clone().unwrap())
            .stdout(slave.try_clone().unwrap())
            .stderr(slave);
        std::thread::spawn(move || {
            let mut master = master;
            let _ = std::io::copy(&mut master, &mut std::io::stdout());
        })
    });
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
    let pid = match reply {
        Ok(NsReply::Spawned { pid }) => {
            eprintln!("DRIVE spawned {pid}");
            pid
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
        match chan.recv_opt::<Result<NsReply, RemoteError>>() {
            Ok(None) => eprintln!("DRIVE started"),
            Ok(Some(Err(e))) => eprintln!("DRIVE exec-error {:?} {}", e.kind, e.message),
            other => eprintln!("DRIVE unexpected {other:?}"),
        }
    }
    let mut st = 0;
    let _ = copier;
    // SAFETY: waiting for our own child (CLONE_PARENT made the init ours).
    if unsafe { libc::waitpid(pid, &mut st, 0) } != pid {
        eprintln!("DRIVE waitpid failed: {}", std::io::Error::last_os_error());
    } else if libc::WIFEXITED(st) {
        eprintln!("DRIVE exit {}", libc::WEXITSTATUS(st));
    } else {
        eprintln!("DRIVE signal {}", libc::WTERMSIG(st));
    }
}

/// A new pty pair: (master, slave), the slave not anyone's controlling terminal.
fn open_pty() -> (std::fs::File, std::fs::File) {
    use std::os::fd::FromRawFd;
    // SAFETY: standard pty allocation; every result is checked.
    unsafe {
        let m = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        assert!(m >= 0 && libc::grantpt(m) == 0 && libc::unlockpt(m) == 0);
        let mut name = [0 as libc::c_char; 128];
        assert_eq!(libc::ptsname_r(m, name.as_mut_ptr(), name.len()), 0);
        let s = libc::open(
            name.as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        );
        assert!(s >= 0);
        (std::fs::File::from_raw_fd(m), std::fs::File::from_raw_fd(s))
    }
}
