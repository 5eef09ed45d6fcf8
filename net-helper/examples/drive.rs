//! Drive `tupper-net` by hand: one request over a socketpair on fd 3.
//!
//! ```text
//! drive <helper> attach <pid> <container-id>
//! drive <helper> release <container-id>
//! ```
//! Prints the reply (`Ok(..)` or `Err(..)`) and exits 0 on `Ok`, 1 on `Err`.

use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};

use proto::{Channel, NetReply, NetRequest, RemoteError};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let request = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        [_, "attach", pid, id] => NetRequest::Attach {
            pid: pid.parse().expect("pid"),
            container: id.to_string(),
        },
        [_, "release", id] => NetRequest::Release {
            container: id.to_string(),
        },
        _ => {
            eprintln!("usage: drive <helper> attach <pid> <id> | drive <helper> release <id>");
            return ExitCode::from(2);
        }
    };
    let (ours, theirs) = UnixStream::pair().expect("socketpair");
    let fd = theirs.as_raw_fd();
    let mut cmd = Command::new(&args[0]);
    // SAFETY: dup2 is async-signal-safe; the child gets the socket on fd 3.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(fd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("spawn helper");
    drop(theirs);
    let mut ch = Channel::new(ours);
    ch.handshake().expect("handshake");
    ch.send(&request).expect("send");
    let reply: Result<NetReply, RemoteError> = ch.recv().expect("reply");
    drop(ch);
    let _ = child.wait();
    println!("{reply:?}");
    if reply.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
