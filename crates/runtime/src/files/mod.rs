//! `commit`, `export` and `cp`: files in and out of containers.
//!
//! The supervisor resolves the container from its records and hands the
//! storage helper only the container id; the helper opens
//! `containers/<uid>/<id>` itself, so another user's container is simply not
//! found. Host paths are opened here, as the caller; the helper never sees
//! one.

mod extract;
mod host_tar;

use std::fs::File;
use std::io::{IsTerminal, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use proto::frame::MAX_CHUNK_LEN;
use proto::{PathKind, StorageReply, StorageRequest};

use crate::error::{Error, Result};
use crate::helpers::{call_once, Helper, HelperProcess, HelperStdio};
use crate::records::Records;
use extract::{top_name, HostExtractor, Target};

/// The id of one of the caller's containers, by name, id or id prefix.
fn container_id(key: &str) -> Result<String> {
    let state = Records::open()?;
    crate::cleanup::collect_garbage(&state);
    Ok(state.find(key)?.id)
}

/// The container's id and, while it runs, its init's pid (issue 9: `cp`
/// into a running container goes through the root mount it sees).
fn container_and_init(key: &str) -> Result<(String, Option<i32>)> {
    let state = Records::open()?;
    crate::cleanup::collect_garbage(&state);
    let rec = state.find(key)?;
    let running = match (&rec.status, rec.init) {
        (crate::records::Status::Running, Some(init)) if init.alive() => Some(init.pid),
        _ => None,
    };
    Ok((rec.id, running))
}

pub fn commit(container: &str, image: &str) -> Result<()> {
    proto::validate::name(image)?;
    let id = container_id(container)?;
    let _: StorageReply = call_once(
        Helper::Storage,
        &StorageRequest::Commit {
            container: id,
            image: image.to_string(),
        },
    )?;
    println!("{image}");
    Ok(())
}

/// The tar the helper streams for `ExportBegin`, written to `out`.
fn receive(container: String, path: Option<String>, out: &mut dyn Write) -> Result<()> {
    let mut helper = HelperProcess::spawn(Helper::Storage, HelperStdio::default())?;
    helper.send(&StorageRequest::ExportBegin { container, path })?;
    loop {
        match helper.recv_reply::<StorageReply>()? {
            StorageReply::ExportChunk(data) => out
                .write_all(&data)
                .map_err(|e| Error::io("cannot write the tarball", e))?,
            StorageReply::Exported {
                sockets_skipped,
                devices_skipped,
                ..
            } => {
                out.flush()
                    .map_err(|e| Error::io("cannot write the tarball", e))?;
                if sockets_skipped > 0 {
                    eprintln!(
                        "tupper: left out {sockets_skipped} socket{} (a tarball cannot hold one)",
                        plural(sockets_skipped)
                    );
                }
                if devices_skipped > 0 {
                    eprintln!(
                        "tupper: left out {devices_skipped} device node{}",
                        plural(devices_skipped)
                    );
                }
                return Ok(());
            }
            _ => return Err(Error::user("storage: unexpected reply to ExportBegin")),
        }
    }
}

fn plural(n: u64) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn stdout_for_tar() -> Result<std::io::StdoutLock<'static>> {
    let out = std::io::stdout();
    if out.is_terminal() {
        return Err(Error::user(
            "refusing to write a tarball to a terminal; redirect standard output or use -o FILE",
        ));
    }
    Ok(out.lock())
}

pub fn export(container: &str, output: Option<&Path>) -> Result<()> {
    let id = container_id(container)?;
    match output {
        None => receive(id, None, &mut stdout_for_tar()?),
        Some(path) => {
            let mut f = File::create(path)
                .map_err(|e| Error::io(format!("cannot create {}", path.display()), e))?;
            let r = receive(id, None, &mut f);
            if r.is_err() {
                // Half a tarball is worse than none.
                let _ = std::fs::remove_file(path);
            }
            r
        }
    }
}

/// One side of `cp`: `CONTAINER:PATH` or a host path (`-`: a tar on
/// standard input or output).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Side {
    Container { key: String, path: String },
    Host(String),
}

impl Side {
    /// `NAME:PATH` is a container side unless the text before the first `:`
    /// holds a `/` (or is empty), as in docker: `./a:b` is a host path.
    pub fn parse(s: &str) -> Side {
        match s.split_once(':') {
            Some((key, path)) if !key.is_empty() && !key.contains('/') => {
                let path = if path.starts_with('/') {
                    path.to_string()
                } else {
                    format!("/{path}")
                };
                Side::Container {
                    key: key.to_string(),
                    path,
                }
            }
            _ => Side::Host(s.to_string()),
        }
    }
}

pub fn cp(src: &str, dest: &str) -> Result<()> {
    match (Side::parse(src), Side::parse(dest)) {
        (Side::Container { key, path }, Side::Host(dest)) => copy_out(&key, &path, &dest),
        (Side::Host(src), Side::Container { key, path }) => copy_in(&src, &key, &path),
        (Side::Container { .. }, Side::Container { .. }) => Err(Error::user(
            "cp copies between the host and a container, not between two containers",
        )),
        (Side::Host(_), Side::Host(_)) => Err(Error::user(
            "one side of cp must be CONTAINER:PATH (e.g. cp box:/etc/hosts .)",
        )),
    }
}

fn copy_out(key: &str, path: &str, dest: &str) -> Result<()> {
    let id = container_id(key)?;
    if dest == "-" {
        return receive(id, Some(path.to_string()), &mut stdout_for_tar()?);
    }
    let kind: StorageReply = call_once(
        Helper::Storage,
        &StorageRequest::StatPath {
            container: id.clone(),
            path: path.to_string(),
        },
    )?;
    let src_is_dir = match kind {
        StorageReply::PathKind(PathKind::Directory) => true,
        StorageReply::PathKind(PathKind::Other) => false,
        StorageReply::PathKind(PathKind::Missing) => {
            return Err(Error::user(format!("{path} not found in container {key}")))
        }
        _ => return Err(Error::user("storage: unexpected reply to StatPath")),
    };
    let contents_only = path.ends_with("/.");
    let top = top_name(path);
    let dest_path = Path::new(dest);
    let open = |p: &Path| -> Result<OwnedFd> {
        let d = if p.as_os_str().is_empty() {
            Path::new(".")
        } else {
            p
        };
        File::open(d)
            .map(OwnedFd::from)
            .map_err(|e| Error::io(format!("cannot open {}", d.display()), e))
    };
    let target = match std::fs::metadata(dest_path) {
        Ok(md) if md.is_dir() => Target {
            dir: open(dest_path)?,
            // `/` and `DIR/.`: the contents, merged into DEST.
            leaf: if contents_only || top == b"." {
                None
            } else {
                Some(top.clone())
            },
        },
        Ok(_) if src_is_dir => {
            return Err(Error::user(format!(
                "cannot copy the directory {path} onto the file {dest}"
            )))
        }
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(Error::io(format!("cannot look at {dest}"), e))
        }
        _ => {
            if dest.ends_with('/') && !src_is_dir {
                return Err(Error::user(format!("directory {dest} does not exist")));
            }
            let leaf = dest_path
                .file_name()
                .ok_or_else(|| Error::user(format!("cannot copy onto {dest}")))?;
            let parent = dest_path.parent().unwrap_or(Path::new(""));
            Target {
                dir: open(parent)?,
                leaf: Some(std::os::unix::ffi::OsStrExt::as_bytes(leaf).to_vec()),
            }
        }
    };
    // The helper's tar goes through a pipe to the extractor, on a thread.
    let (reader, writer) =
        nix::unistd::pipe().map_err(|e| Error::io("cannot make a pipe", e.into()))?;
    let (reader, mut writer) = (File::from(reader), File::from(writer));
    let extractor = std::thread::spawn(move || -> Result<u64> {
        let mut ex = HostExtractor::new(target, top);
        let mut a = tar::Archive::new(reader);
        let bad = |e: std::io::Error| Error::user(format!("cannot read the container's tar: {e}"));
        for entry in a.entries().map_err(bad)? {
            ex.apply(&mut entry.map_err(bad)?)?;
        }
        let skipped = ex.skipped;
        ex.finish()?;
        Ok(skipped)
    });
    let sent = receive(id, Some(path.to_string()), &mut writer);
    drop(writer);
    let extracted = extractor
        .join()
        .map_err(|_| Error::user("the extraction thread failed"))?;
    // The extractor's refusal explains a failed send (it stopped reading).
    let skipped = extracted?;
    sent?;
    if skipped > 0 {
        eprintln!(
            "tupper: left out {skipped} special file{} (devices are never created on the host)",
            plural(skipped)
        );
    }
    Ok(())
}

fn copy_in(src: &str, key: &str, path: &str) -> Result<()> {
    let (id, running) = container_and_init(key)?;
    let kind: StorageReply = call_once(
        Helper::Storage,
        &StorageRequest::StatPath {
            container: id.clone(),
            path: path.to_string(),
        },
    )?;
    let StorageReply::PathKind(kind) = kind else {
        return Err(Error::user("storage: unexpected reply to StatPath"));
    };
    // The destination, relative to the container root, as the container
    // itself would resolve it is up to the helper; here it is only a name.
    let rel = |p: &str| -> Result<PathBuf> {
        let mut out = PathBuf::new();
        for c in extract::components(p.as_bytes())? {
            out.push(std::ffi::OsStr::from_bytes(c));
        }
        Ok(out)
    };
    use std::os::unix::ffi::OsStrExt;
    let dest = rel(path)?;

    let mut helper = HelperProcess::spawn(Helper::Storage, HelperStdio::default())?;
    helper.send(&StorageRequest::CopyInBegin {
        container: id.clone(),
        running,
    })?;
    let mut sender = ChunkSender {
        helper: &mut helper,
        buf: Vec::with_capacity(MAX_CHUNK_LEN),
    };
    let built = (|| -> Result<u64> {
        let mut b = tar::Builder::new(&mut sender);
        b.follow_symlinks(false);
        let mut skipped = 0;
        if src == "-" {
            if kind != PathKind::Directory {
                return Err(Error::user(format!(
                    "{path} is not a directory in container {key}: a tar from standard input is extracted into a directory"
                )));
            }
            let spooled = host_tar::spool_and_check(std::io::stdin().lock())?;
            host_tar::rename_under(&mut b, spooled, &dest)?;
        } else {
            let src_path = Path::new(src);
            let md = std::fs::symlink_metadata(src_path)
                .map_err(|e| Error::io(format!("cannot read {src}"), e))?;
            let name = match kind {
                PathKind::Directory if src.ends_with("/.") => dest.clone(),
                PathKind::Directory => dest.join(
                    src_path
                        .file_name()
                        .ok_or_else(|| Error::user(format!("cannot copy {src}")))?,
                ),
                PathKind::Other if md.is_dir() => {
                    return Err(Error::user(format!(
                        "cannot copy the directory {src} onto the file {path}"
                    )))
                }
                _ if path.ends_with('/') && !md.is_dir() => {
                    return Err(Error::user(format!(
                        "directory {path} does not exist in container {key}"
                    )))
                }
                _ => dest.clone(),
            };
            if name.as_os_str().is_empty() && !md.is_dir() {
                return Err(Error::user("cannot replace the container's / with a file"));
            }
            skipped = host_tar::append_host_tree(&mut b, src_path, &name)?;
        }
        b.finish()
            .map_err(|e| Error::io("cannot send the tar", e))?;
        Ok(skipped)
    })();
    // On an error, leaving without ImportEnd makes the helper stop and
    // answer nothing.
    let skipped = built?;
    sender.flush_chunk()?;
    helper.send(&StorageRequest::ImportEnd)?;
    let _: StorageReply = helper.recv_reply()?;
    if skipped > 0 {
        eprintln!(
            "tupper: left out {skipped} socket{} or device{} of {src}",
            plural(skipped),
            plural(skipped)
        );
    }
    Ok(())
}

/// A `Write` sending `ImportChunk` frames of at most [`MAX_CHUNK_LEN`].
struct ChunkSender<'h> {
    helper: &'h mut HelperProcess,
    buf: Vec<u8>,
}

impl ChunkSender<'_> {
    fn flush_chunk(&mut self) -> Result<()> {
        if !self.buf.is_empty() {
            let chunk = std::mem::take(&mut self.buf);
            self.helper.send(&StorageRequest::ImportChunk(chunk))?;
        }
        Ok(())
    }
}

impl Write for ChunkSender<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = (MAX_CHUNK_LEN - self.buf.len()).min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == MAX_CHUNK_LEN {
            self.flush_chunk()
                .map_err(|e| std::io::Error::other(e.to_string()))?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sides() {
        assert_eq!(
            Side::parse("box:/etc/hosts"),
            Side::Container {
                key: "box".into(),
                path: "/etc/hosts".into()
            }
        );
        assert_eq!(
            Side::parse("box:tmp"),
            Side::Container {
                key: "box".into(),
                path: "/tmp".into()
            }
        );
        assert_eq!(Side::parse("./a:b"), Side::Host("./a:b".into()));
        assert_eq!(Side::parse("/x/y"), Side::Host("/x/y".into()));
        assert_eq!(Side::parse("-"), Side::Host("-".into()));
        assert_eq!(Side::parse(":x"), Side::Host(":x".into()));
    }
}
