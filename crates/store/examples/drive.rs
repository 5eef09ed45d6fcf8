//! Drive a `tupper-storage` binary by hand, standing in for the supervisor.
//!
//! ```text
//! drive HELPER import NAME TARBALL | snapshot IMAGE ID | images | containers
//!       | rm-image NAME | rm-container ID | init
//! ```

use std::io::Read;

use std::process::{Command, ExitCode};

use proto::{StorageReply, StorageRequest};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((helper, rest)) = args.split_first() else {
        eprintln!("usage: drive HELPER COMMAND [ARGS]");
        return ExitCode::FAILURE;
    };
    let mut cmd = Command::new(helper);
    let (mut chan, mut child) = proto::spawn::spawn_with_channel(&mut cmd).expect("spawn helper");
    chan.handshake().expect("handshake");
    let s = |i: usize| rest.get(i).cloned().unwrap_or_default();
    let reply: Result<StorageReply, proto::RemoteError> = match s(0).as_str() {
        "import" => {
            let mut data = Vec::new();
            std::fs::File::open(s(2))
                .and_then(|mut f| f.read_to_end(&mut data))
                .expect("read tarball");
            chan.send(&StorageRequest::ImportBegin { name: s(1) })
                .unwrap();
            for c in data.chunks(proto::frame::MAX_CHUNK_LEN) {
                chan.send(&StorageRequest::ImportChunk(c.to_vec())).unwrap();
            }
            chan.send(&StorageRequest::ImportEnd).unwrap();
            chan.recv().unwrap()
        }
        other => {
            let req = match other {
                "snapshot" => StorageRequest::Snapshot {
                    image: s(1),
                    container: s(2),
                },
                "images" => StorageRequest::ListImages,
                "containers" => StorageRequest::ListContainers,
                "rm-image" => StorageRequest::RemoveImage { name: s(1) },
                "rm-container" => StorageRequest::RemoveContainer { container: s(1) },
                _ => StorageRequest::Init,
            };
            chan.send(&req).unwrap();
            chan.recv().unwrap()
        }
    };
    drop(chan);
    let _ = child.wait();
    match reply {
        Ok(r) => {
            println!("{r:?}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("error ({:?}): {}", e.kind, e.message);
            ExitCode::FAILURE
        }
    }
}
