//! Test driver: talks to one installed helper directly, bypassing the
//! supervisor, the way a hostile caller would.
//!
//! ```text
//! tupper-drive LIBEXECDIR net-attach PID CONTAINER_ID
//! tupper-drive LIBEXECDIR net-release CONTAINER_ID
//! tupper-drive LIBEXECDIR cgroup-create PID CONTAINER_ID
//! tupper-drive LIBEXECDIR cgroup-remove CONTAINER_ID
//! tupper-drive LIBEXECDIR cgroup-update CONTAINER_ID [memory=N] [pids=N]
//! tupper-drive LIBEXECDIR absurd-frame (storage|ns|net)
//! tupper-drive LIBEXECDIR garbage-frame (storage|ns|net)
//! tupper-drive LIBEXECDIR hold-hostile (storage|ns|net)
//! tupper-drive LIBEXECDIR ns-spawn CONTAINER HOSTNAME WORKDIR [--tty] [--no-start] [--env K=V]... -- COMMAND...
//! tupper-drive LIBEXECDIR storage-export CONTAINER_ID (PATH|-)
//! tupper-drive LIBEXECDIR storage-commit CONTAINER_ID IMAGE
//! tupper-drive LIBEXECDIR storage-copy-in CONTAINER_ID PID
//! tupper-drive LIBEXECDIR storage-hold-root CONTAINER_ID SECONDS
//! ```
//! `storage-hold-root` asks for the root's mount, prints `held` and keeps
//! the descriptor for `SECONDS`.
//! `storage-copy-in` sends `CopyInBegin` for a running container naming
//! `PID`, with a tar of one file `drive-was-here`.
//! `storage-export` sends `ExportBegin` and reports the final reply (the
//! tar's bytes are counted, not printed); `storage-commit` sends `Commit`.
//! `net-attach` and `net-release` print `ok: <reply>` or
//! `error: <kind>: <message>` and exit 0 only on `ok`. The frame commands
//! print the helper's reply, decoded as that helper's own reply type
//! (`reply: ok: ..`, `reply: error: <kind>: <message>`, `reply: none` when it
//! closed the channel without one, `reply: unreadable: ..`), then
//! `helper-exit: code N` or `helper-exit: signal N`; they exit 0 once they
//! have reported, 2 when they could not. `hold-hostile` is described in
//! `drive/hostile.rs`, `ns-spawn` in `drive/ns_spawn.rs`.

use std::io::Write;
use std::process::{Command, ExitCode, Stdio};

use std::os::unix::process::ExitStatusExt;

use proto::{Channel, NetReply, NetRequest, NsReply, RemoteError, StorageReply, StorageRequest};

#[path = "drive/hostile.rs"]
mod hostile;
#[path = "drive/ns_spawn.rs"]
mod ns_spawn;

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

/// One request to a fresh helper, its answer reported; the helper reaped.
fn call_once<Req: serde::Serialize, Rep: serde::de::DeserializeOwned + std::fmt::Debug>(
    libexec: &str,
    helper: &str,
    req: &Req,
) -> ExitCode {
    let (mut ch, mut child) = spawn(libexec, helper);
    let r = ch.handshake().and_then(|_| ch.call::<_, Rep>(req));
    drop(ch);
    let _ = child.wait();
    report(r)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let Some(libexec) = args.get(1) else {
        eprintln!("usage: tupper-drive LIBEXECDIR COMMAND ARGS...");
        return ExitCode::from(2);
    };
    let rest: Vec<&str> = args[2..].iter().map(String::as_str).collect();
    match rest.as_slice() {
        ["net-attach", pid, id] => call_once::<_, NetReply>(
            libexec,
            "net",
            &NetRequest::Attach {
                pid: pid.parse().unwrap_or(-1),
                container: id.to_string(),
            },
        ),
        ["net-release", id] => call_once::<_, NetReply>(
            libexec,
            "net",
            &NetRequest::Release {
                container: id.to_string(),
            },
        ),
        // Issue 9: tupper-cgroup, as a hostile caller would use it.
        ["cgroup-create", pid, id] => call_once::<_, proto::cgroup::CgroupReply>(
            libexec,
            "cgroup",
            &proto::cgroup::CgroupRequest::Create {
                container: id.to_string(),
                pid: pid.parse().unwrap_or(-1),
                limits: Default::default(),
            },
        ),
        // Issue 11: the second step of the monitor's `Prepare`, `Place`.
        ["cgroup-place", pid, id] => call_once::<_, proto::cgroup::CgroupReply>(
            libexec,
            "cgroup",
            &proto::cgroup::CgroupRequest::Place {
                container: id.to_string(),
                pid: pid.parse().unwrap_or(-1),
            },
        ),
        // `update`'s request with the limits given as KEY=VALUE.
        ["cgroup-update", id, limits @ ..] => {
            let mut l = proto::cgroup::CgroupLimits::default();
            for kv in limits {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                let n = v.parse().ok();
                match k {
                    "memory" => l.memory = n,
                    "pids" => l.pids = n,
                    _ => {
                        eprintln!("tupper-drive: unknown limit {kv}");
                        std::process::exit(2);
                    }
                }
            }
            call_once::<_, proto::cgroup::CgroupReply>(
                libexec,
                "cgroup",
                &proto::cgroup::CgroupRequest::Update {
                    container: id.to_string(),
                    limits: l,
                },
            )
        }
        ["cgroup-remove", id] => call_once::<_, proto::cgroup::CgroupReply>(
            libexec,
            "cgroup",
            &proto::cgroup::CgroupRequest::Remove {
                container: id.to_string(),
            },
        ),
        [what @ ("absurd-frame" | "garbage-frame"), helper] => {
            let bytes: Vec<u8> = if *what == "absurd-frame" {
                // Claims 4 GiB.
                vec![0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]
            } else {
                // A valid length followed by a payload no message decodes from.
                vec![6, 0, 0, 0, 0xfe, 0xfe, 0xfe, 0xfe, 0xfe, 0xfe]
            };
            match *helper {
                "storage" => malformed(libexec, helper, &bytes, |ch| {
                    describe(ch.recv_opt::<Result<StorageReply, RemoteError>>())
                }),
                "ns" => malformed(libexec, helper, &bytes, |ch| {
                    describe(ch.recv_opt::<Result<NsReply, RemoteError>>())
                }),
                "net" => malformed(libexec, helper, &bytes, |ch| {
                    describe(ch.recv_opt::<Result<NetReply, RemoteError>>())
                }),
                _ => {
                    eprintln!("tupper-drive: unknown helper {helper:?}");
                    ExitCode::from(2)
                }
            }
        }
        ["storage-export", id, path] => {
            let (mut ch, mut child) = spawn(libexec, "storage");
            let path = (*path != "-").then(|| path.to_string());
            let r = ch.handshake().and_then(|_| {
                ch.send(&StorageRequest::ExportBegin {
                    container: id.to_string(),
                    path,
                })?;
                let mut bytes = 0usize;
                loop {
                    match ch.recv::<Result<StorageReply, RemoteError>>()? {
                        Ok(StorageReply::ExportChunk(c)) => bytes += c.len(),
                        Ok(r) => return Ok((r, bytes)),
                        Err(e) => return Err(proto::Error::Remote(e)),
                    }
                }
            });
            drop(ch);
            let _ = child.wait();
            report(r)
        }
        ["storage-commit", id, image] => {
            let (mut ch, mut child) = spawn(libexec, "storage");
            let r = ch.handshake().and_then(|_| {
                ch.call::<_, StorageReply>(&StorageRequest::Commit {
                    container: id.to_string(),
                    image: image.to_string(),
                })
            });
            drop(ch);
            let _ = child.wait();
            report(r)
        }
        // Issue 9: `cp` into a running container, naming any pid.
        ["storage-copy-in", id, pid] => {
            let Ok(pid) = pid.parse::<i32>() else {
                eprintln!("tupper-drive: bad pid {pid:?}");
                return ExitCode::from(2);
            };
            let (mut ch, mut child) = spawn(libexec, "storage");
            let r = ch.handshake().and_then(|_| {
                ch.send(&StorageRequest::CopyInBegin {
                    container: id.to_string(),
                    running: Some(pid),
                })?;
                ch.send(&StorageRequest::ImportChunk(one_file_tar()))?;
                ch.send(&StorageRequest::ImportEnd)?;
                ch.recv::<Result<StorageReply, RemoteError>>()
                    .and_then(|r| r.map_err(proto::Error::Remote))
            });
            drop(ch);
            let _ = child.wait();
            report(r)
        }
        // Issue 9: hold a container root's mount, as a caller keeping the
        // descriptor `MountRoot` gave them.
        ["storage-hold-root", id, secs] => {
            let Ok(secs) = secs.parse::<u64>() else {
                eprintln!("tupper-drive: bad seconds {secs:?}");
                return ExitCode::from(2);
            };
            let (mut ch, mut child) = spawn(libexec, "storage");
            let r = ch.handshake().and_then(|_| {
                ch.send(&StorageRequest::MountRoot {
                    container: id.to_string(),
                    transient: false,
                })?;
                let (first, fd) = ch.recv_with_fd::<Result<StorageReply, RemoteError>>()?;
                first.map_err(proto::Error::Remote)?;
                fd.ok_or(proto::Error::Closed)
            });
            drop(ch);
            let _ = child.wait();
            match r {
                Ok(fd) => {
                    println!("held");
                    std::thread::sleep(std::time::Duration::from_secs(secs));
                    drop(fd);
                    ExitCode::SUCCESS
                }
                Err(e) => report::<()>(Err(e)),
            }
        }
        ["hold-hostile", helper] => hostile::hold(libexec, helper),
        ["ns-spawn", args @ ..] => ns_spawn::run(libexec, args),
        _ => {
            eprintln!("tupper-drive: unknown command {rest:?}");
            ExitCode::from(2)
        }
    }
}

/// A tar holding one file, `drive-was-here`.
fn one_file_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(3);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_cksum();
    let _ = b.append_data(&mut h, "drive-was-here", &b"hi\n"[..]);
    b.into_inner().unwrap_or_default()
}

/// A helper's reply (read as that helper's own reply type), in one line.
fn describe<R: std::fmt::Debug>(r: Result<Option<Result<R, RemoteError>>, proto::Error>) -> String {
    match r {
        Ok(Some(Ok(r))) => format!("ok: {r:?}"),
        Ok(Some(Err(e))) => format!("error: {:?}: {}", e.kind, e.message),
        Ok(None) => "none".to_string(),
        Err(e) => format!("unreadable: {e}"),
    }
}

/// Send `bytes` after the handshake, then report the helper's reply (`read`
/// decodes it as that helper's reply type) and how the helper exited.
fn malformed(
    libexec: &str,
    helper: &str,
    bytes: &[u8],
    read: fn(&mut Channel) -> String,
) -> ExitCode {
    let (mut ch, mut child) = spawn(libexec, helper);
    if let Err(e) = ch.handshake() {
        println!("error: handshake: {e}");
        let _ = child.kill();
        let _ = child.wait();
        return ExitCode::from(2);
    }
    let mut stream = ch.into_stream();
    // A helper that refuses early may have closed its end: not our failure.
    let _ = stream.write_all(bytes);
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut ch = Channel::new(stream);
    println!("reply: {}", read(&mut ch));
    drop(ch);
    match child.wait() {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(code), _) => println!("helper-exit: code {code}"),
            (None, Some(sig)) => println!("helper-exit: signal {sig}"),
            (None, None) => println!("helper-exit: {s:?}"),
        },
        Err(e) => {
            println!("helper-exit: cannot wait: {e}");
            return ExitCode::from(2);
        }
    }
    ExitCode::SUCCESS
}
