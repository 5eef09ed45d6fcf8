//! Drive `tupper-net` by hand: one request over a socketpair on fd 3.
//!
//! ```text
//! drive <helper> attach <pid> <container-id>
//! drive <helper> release <container-id>
//! ```
//! Prints the reply (`Ok(..)` or `Err(..)`) and exits 0 on `Ok`, 1 on `Err`.

use std::process::{Command, ExitCode};

use proto::{NetReply, NetRequest, RemoteError};

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
    let mut cmd = Command::new(&args[0]);
    let (mut ch, mut child) = proto::spawn::spawn_with_channel(&mut cmd).expect("spawn helper");
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
