//! Test driver: talks to one installed helper directly, bypassing the
//! supervisor, the way a hostile caller would.
//!
//! ```text
//! tupper-drive LIBEXECDIR net-attach PID CONTAINER_ID
//! tupper-drive LIBEXECDIR net-release CONTAINER_ID
//! tupper-drive LIBEXECDIR absurd-frame (storage|ns|net)
//! tupper-drive LIBEXECDIR garbage-frame (storage|ns|net)
//! tupper-drive LIBEXECDIR hold-hostile (storage|ns|net)
//! ```
//! Prints `ok: <reply>` or `error: <kind>: <message>`; exits 0 only on `ok`.

use std::io::Write;
use std::process::{Command, ExitCode, Stdio};

use proto::{Channel, NetReply, NetRequest};

#[path = "drive/hostile.rs"]
mod hostile;

fn spawn(libexec: &str, helper: &str) -> (Channel, std::process::Child) {
    let mut cmd = Command::new(format!("{libexec}/tupper-{helper}"));
    cmd.stdin(Stdio::null());
    proto::spawn::spawn_with_channel(&mut cmd).expect("spawn helper")
}

fn report<T: std::fmt::Debug>(r: Result<T, proto::Error>) -> ExitCode {
    match r {
        Ok(v) => {
            println!("ok: {v:?}");
            ExitCode::SUCCESS
        }
        Err(proto::Error::Remote(e)) => {
            println!("error: {:?}: {}", e.kind, e.message);
            ExitCode::FAILURE
        }
        Err(e) => {
            println!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let Some(libexec) = args.get(1) else {
        eprintln!("usage: tupper-drive LIBEXECDIR COMMAND ARGS...");
        return ExitCode::from(2);
    };
    let rest: Vec<&str> = args[2..].iter().map(String::as_str).collect();
    match rest.as_slice() {
        ["net-attach", pid, id] => {
            let (mut ch, mut child) = spawn(libexec, "net");
            let pid: i32 = pid.parse().unwrap_or(-1);
            let r = ch.handshake().and_then(|_| {
                ch.call::<_, NetReply>(&NetRequest::Attach {
                    pid,
                    container: id.to_string(),
                })
            });
            drop(ch);
            let _ = child.wait();
            report(r)
        }
        ["net-release", id] => {
            let (mut ch, mut child) = spawn(libexec, "net");
            let r = ch.handshake().and_then(|_| {
                ch.call::<_, NetReply>(&NetRequest::Release {
                    container: id.to_string(),
                })
            });
            drop(ch);
            let _ = child.wait();
            report(r)
        }
        [what @ ("absurd-frame" | "garbage-frame"), helper] => {
            let (mut ch, mut child) = spawn(libexec, helper);
            if let Err(e) = ch.handshake() {
                println!("error: handshake: {e}");
                return ExitCode::FAILURE;
            }
            let mut stream = ch.into_stream();
            let bytes: Vec<u8> = if *what == "absurd-frame" {
                // Claims 4 GiB.
                vec![0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]
            } else {
                // A valid length followed by a payload no message decodes from.
                vec![6, 0, 0, 0, 0xfe, 0xfe, 0xfe, 0xfe, 0xfe, 0xfe]
            };
            let _ = stream.write_all(&bytes);
            let _ = stream.shutdown(std::net::Shutdown::Write);
            let mut ch = Channel::new(stream);
            let reply = ch.recv_opt::<Result<NetReply, proto::RemoteError>>();
            let status = child.wait().ok().and_then(|s| s.code());
            // The helper must survive long enough to refuse, then exit with failure.
            println!("reply: {reply:?}; helper exit: {status:?}");
            ExitCode::SUCCESS
        }
        ["hold-hostile", helper] => hostile::hold(libexec, helper),
        _ => {
            eprintln!("tupper-drive: unknown command {rest:?}");
            ExitCode::from(2)
        }
    }
}
