//! `image import|ls|rm`.

use std::fs::File;
use std::io::{IsTerminal, Read};
use std::path::Path;

use proto::frame::MAX_CHUNK_LEN;
use proto::{StorageReply, StorageRequest};

use crate::error::{Error, Result};
use crate::helpers::{call_once, Helper, HelperProcess, HelperStdio};

/// Stream a rootfs tarball (`-` = standard input) to the storage helper.
/// The helper never opens a path we name: we read the file, it gets bytes.
pub fn import(name: &str, source: &str) -> Result<()> {
    proto::reference::key(name)?;
    let mut input: Box<dyn Read> = if source == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(
            File::open(Path::new(source))
                .map_err(|e| Error::io(format!("cannot read {source}"), e))?,
        )
    };
    let progress = std::io::stderr().is_terminal();
    let mut helper = HelperProcess::spawn(Helper::Storage, HelperStdio::default())?;
    helper.send(&StorageRequest::ImportBegin {
        name: name.to_string(),
    })?;
    let mut buf = vec![0u8; MAX_CHUNK_LEN];
    let mut total: u64 = 0;
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            // Dropping the helper without ImportEnd makes it discard the partial image.
            Err(e) => return Err(Error::io(format!("reading {source}"), e)),
        };
        helper.send(&StorageRequest::ImportChunk(buf[..n].to_vec()))?;
        total += n as u64;
        if progress {
            eprint!("\rimporting {name}: {} MiB", total >> 20);
        }
    }
    if progress {
        eprintln!();
    }
    helper.send(&StorageRequest::ImportEnd)?;
    let reply: StorageReply = helper.recv_reply()?;
    if let StorageReply::Imported {
        name,
        entries,
        bytes,
        devices_skipped,
        xattrs_skipped,
    } = reply
    {
        if devices_skipped > 0 {
            eprintln!(
                "tupper: left out {devices_skipped} device node{} of the tarball \
                 (each container gets its own /dev)",
                if devices_skipped == 1 { "" } else { "s" }
            );
        }
        if xattrs_skipped > 0 {
            eprintln!(
                "tupper: left out {xattrs_skipped} extended attribute{} of the tarball \
                 (trusted.*, security.selinux and others that mean nothing in a container)",
                if xattrs_skipped == 1 { "" } else { "s" }
            );
        }
        println!("imported {name}: {entries} entries, {bytes} bytes");
    }
    Ok(())
}

pub fn list() -> Result<()> {
    let reply: StorageReply = call_once(Helper::Storage, &StorageRequest::ListImages)?;
    let StorageReply::Images(mut images) = reply else {
        return Err(Error::user("storage: unexpected reply to ListImages"));
    };
    images.sort_by(|a, b| a.name.cmp(&b.name));
    println!("{:<32} CREATED", "NAME");
    for i in images {
        println!("{:<32} {}", i.name, crate::containers::age(i.created));
    }
    Ok(())
}

pub fn remove(names: &[String]) -> Result<()> {
    for name in names {
        let key = proto::reference::key_of(name)?;
        let _: StorageReply =
            call_once(Helper::Storage, &StorageRequest::RemoveImage { name: key })?;
        println!("{name}");
    }
    Ok(())
}
