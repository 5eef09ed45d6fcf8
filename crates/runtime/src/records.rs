//! Per-user state: one JSON record per container in the runtime directory.
//!
//! `$XDG_RUNTIME_DIR/tupperware`, else `/run/user/<uid>/tupperware`, else
//! `~/.local/state/tupperware` (the home directory from the password
//! database). Never a fixed name in a shared directory such as `/tmp`, which
//! another user could create first. The directory must belong to the user
//! and be private; records are written atomically (temp file, fsync, rename, fsync of the
//! directory).

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tupper_sys::lock::Locked;

use crate::error::{Error, Result};
use crate::process::ProcessId;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    Creating,
    Running,
    Exited(i32),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub name: String,
    pub image: String,
    pub command: Vec<String>,
    pub created: u64,
    pub remove_on_exit: bool,
    pub status: Status,
    /// The supervisor process in charge of this container while it runs.
    pub supervisor: ProcessId,
    /// The container init, once spawned.
    pub init: Option<ProcessId>,
    /// Whether a network lease was taken.
    pub network_attached: bool,
    pub address: Option<String>,
}

pub struct Records {
    root: PathBuf,
}

impl Records {
    pub fn open() -> Result<Records> {
        let uid = nix::unistd::getuid().as_raw();
        let root = state_root(uid)?;
        for dir in [root.clone(), root.join("containers")] {
            match fs::DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(Error::io(format!("state directory {}", dir.display()), e)),
            }
            let md = fs::symlink_metadata(&dir)
                .map_err(|e| Error::io(format!("state directory {}", dir.display()), e))?;
            if !md.is_dir() || md.uid() != uid || md.mode() & 0o077 != 0 {
                return Err(Error::user(format!(
                    "state directory {} must be a directory owned by you with mode 0700 \
                     (remove it, or set XDG_RUNTIME_DIR to a private directory of yours)",
                    dir.display()
                )));
            }
        }
        Ok(Records { root })
    }

    /// Exclusive lock over the records, held until the returned guard is dropped.
    pub fn lock(&self) -> Result<Locked<File>> {
        let path = self.root.join("lock");
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| Error::io(format!("{}", path.display()), e))?;
        tupper_sys::lock::exclusive(f).map_err(|e| Error::io("lock the state directory", e))
    }

    fn record_path(&self, id: &str) -> PathBuf {
        self.root.join("containers").join(format!("{id}.json"))
    }

    pub fn save(&self, rec: &Record) -> Result<()> {
        let text = serde_json::to_vec_pretty(rec)
            .map_err(|e| Error::user(format!("encode record: {e}")))?;
        let dir = self.root.join("containers");
        let io = |e| Error::io(format!("write {}", self.record_path(&rec.id).display()), e);
        let dir_fd = File::open(&dir).map_err(io)?;
        tupper_sys::atomic::write_at(&dir_fd, &format!("{}.json", rec.id), &text, 0o600, |_| {
            Ok(())
        })
        .map_err(io)
    }

    pub fn remove(&self, id: &str) -> Result<()> {
        match fs::remove_file(self.record_path(id)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("remove container record", e)),
        }
    }

    pub fn load_all(&self) -> Result<Vec<Record>> {
        let dir = self.root.join("containers");
        let mut out = Vec::new();
        let entries = fs::read_dir(&dir).map_err(|e| Error::io(format!("{}", dir.display()), e))?;
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            match fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice::<Record>(&b).ok())
            {
                Some(r) if proto::validate::container_id(&r.id).is_ok() => out.push(r),
                _ => eprintln!("tupper: ignoring unreadable record {}", path.display()),
            }
        }
        out.sort_by_key(|r| r.created);
        Ok(out)
    }

    /// A record by exact name, exact id, or unique id prefix.
    pub fn find(&self, key: &str) -> Result<Record> {
        let all = self.load_all()?;
        if let Some(r) = all.iter().find(|r| r.name == key || r.id == key) {
            return Ok(r.clone());
        }
        let matches: Vec<_> = all.iter().filter(|r| r.id.starts_with(key)).collect();
        match matches.as_slice() {
            [one] if !key.is_empty() => Ok((*one).clone()),
            [] | [_] => Err(Error::user(format!("no such container: {key}"))),
            _ => Err(Error::user(format!(
                "{key} matches more than one container"
            ))),
        }
    }
}

/// A directory of the user's own to hold the state directory: one that
/// exists, is a real directory and belongs to `uid`.
fn owned_dir(path: &Path, uid: u32) -> bool {
    path.is_absolute() && fs::symlink_metadata(path).is_ok_and(|md| md.is_dir() && md.uid() == uid)
}

/// Where the state directory lives for `uid` (see the module comment).
fn state_root(uid: u32) -> Result<PathBuf> {
    if let Some(xdg) = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from) {
        if owned_dir(&xdg, uid) {
            return Ok(xdg.join("tupperware"));
        }
    }
    let run = PathBuf::from(format!("/run/user/{uid}"));
    if owned_dir(&run, uid) {
        return Ok(run.join("tupperware"));
    }
    let home = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.dir)
        .filter(|h| owned_dir(h, uid))
        .ok_or_else(|| {
            Error::user(
                "no private directory for tupperware's state: you have no runtime directory \
                 (/run/user/UID) and no home directory of your own; set XDG_RUNTIME_DIR to a \
                 directory only you can write",
            )
        })?;
    let state = home.join(".local").join("state");
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&state)
        .map_err(|e| Error::io(format!("state directory {}", state.display()), e))?;
    Ok(state.join("tupperware"))
}
