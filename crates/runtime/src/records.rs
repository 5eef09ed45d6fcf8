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

/// The version of the record format this build writes and reads. Records
/// written before records had a version are version 1.
/// Version 2 added `exec` (what `exec` needs); version 1 records read as
/// records without it.
pub const RECORD_VERSION: u32 = 2;

/// The oldest record version this build still reads.
const OLDEST_READABLE_VERSION: u32 = 1;

fn first_version() -> u32 {
    1
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    #[serde(default = "first_version")]
    pub version: u32,
    pub id: String,
    pub name: String,
    pub image: String,
    pub command: Vec<String>,
    pub created: u64,
    pub remove_on_exit: bool,
    pub status: Status,
    /// The process in charge of this container while it runs: its monitor
    /// (the init's parent, see `monitor.rs`), or the supervisor that is
    /// creating it until the monitor exists.
    pub supervisor: ProcessId,
    /// The container init, once spawned.
    pub init: Option<ProcessId>,
    /// Whether a network lease was taken.
    pub network_attached: bool,
    pub address: Option<String>,

    // --- exec (record version 2) ---
    /// The container's lock-down, environment and defaults, for `exec`;
    /// `None` in records of version 1.
    #[serde(default)]
    pub exec: Option<Box<crate::exec::ExecProfile>>,
    // Issue 8 (the monitor): times of the last start and end, the hostname.
    /// When the command last started (seconds since the epoch).
    #[serde(default)]
    pub started_at: Option<u64>,
    /// When the command last ended (seconds since the epoch).
    #[serde(default)]
    pub finished_at: Option<u64>,
    #[serde(default)]
    pub hostname: Option<String>,
    // Issue 9: the limits in force while the container has cgroups
    // (`None`: it has none), and whether the OOM killer ended it.
    #[serde(default)]
    pub limits: Option<Box<proto::cgroup::CgroupLimits>>,
    #[serde(default)]
    pub oom_killed: Option<bool>,
    /// Whether cgroups may exist for it (set before they are made, cleared
    /// once they are removed: `gc` removes them after a crash).
    #[serde(default)]
    pub cgroups: bool,
    // Issue 11 (engineer "net"): the host ports published to the container.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<proto::ports::PortSpec>,
}

/// The exit code recorded when a container's monitor died before it could
/// see the end (`ps` shows `Exited (unknown)`).
pub const UNKNOWN_EXIT: i32 = -1;

pub struct Records {
    root: PathBuf,
}

/// Just the version of a record, whatever else it holds.
#[derive(Deserialize)]
struct VersionProbe {
    #[serde(default = "first_version")]
    version: u32,
}

/// What the record directory holds.
#[derive(Debug, Default)]
pub struct Listing {
    /// The records this build can use, oldest first.
    pub records: Vec<Record>,
    /// Records of a version this build does not know: their containers
    /// exist (their roots must not be reclaimed), but nothing else about
    /// them can be trusted. `ps` and `gc` report each.
    pub unknown: Vec<UnknownRecord>,
}

/// A record file of an unknown version.
#[derive(Debug)]
pub struct UnknownRecord {
    /// The container id its file is named after.
    pub id: String,
    pub error: Error,
}

/// How one record file reads.
enum Read {
    Usable(Record),
    Unknown(UnknownRecord),
    Corrupt,
}

fn read_record(path: &Path) -> Read {
    let Some(id) = path
        .file_stem()
        .and_then(|s| s.to_str())
        .filter(|id| proto::validate::container_id(id).is_ok())
    else {
        return Read::Corrupt;
    };
    let Ok(bytes) = fs::read(path) else {
        return Read::Corrupt;
    };
    let Ok(probe) = serde_json::from_slice::<VersionProbe>(&bytes) else {
        return Read::Corrupt;
    };
    if !(OLDEST_READABLE_VERSION..=RECORD_VERSION).contains(&probe.version) {
        return Read::Unknown(UnknownRecord {
            id: id.to_string(),
            error: Error::UnknownVersion {
                what: "container record",
                path: path.display().to_string(),
                version: probe.version,
                known: RECORD_VERSION,
            },
        });
    }
    match serde_json::from_slice::<Record>(&bytes) {
        Ok(r) if r.id == id => Read::Usable(r),
        _ => Read::Corrupt,
    }
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
        let f = open_lock_file(&self.root.join("lock"))?;
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

    /// The container's own files (its /etc/hosts, ...), removed with its record.
    pub fn files_dir(&self, id: &str) -> PathBuf {
        self.root.join("containers").join(format!("{id}.d"))
    }

    /// The per-container lock: two commands on one container take turns
    /// (bounded wait: a stopped holder makes the other fail, not hang).
    pub fn lock_container(&self, id: &str) -> Result<Locked<File>> {
        let dir = self.files_dir(id);
        match fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::io(format!("create {}", dir.display()), e)),
        }
        let f = open_lock_file(&dir.join("lock"))?;
        tupper_sys::lock::exclusive_within(f, std::time::Duration::from_secs(30))
            .map_err(|e| Error::io("lock the container", e))?
            .ok_or_else(|| {
                Error::user(format!(
                    "container {} is busy (another command holds it); try again",
                    &id[..id.len().min(12)]
                ))
            })
    }

    /// The run options a container was created with (for `start`, `inspect`).
    pub fn save_config(&self, id: &str, opts: &crate::run::RunOptions) -> Result<()> {
        let text = serde_json::to_vec_pretty(opts)
            .map_err(|e| Error::user(format!("encode the container's configuration: {e}")))?;
        let dir = File::open(self.files_dir(id))
            .map_err(|e| Error::io("open the container's directory", e))?;
        tupper_sys::atomic::write_at(&dir, "config.json", &text, 0o600, |_| Ok(()))
            .map_err(|e| Error::io("write the container's configuration", e))
    }

    pub fn load_config(&self, id: &str) -> Result<crate::run::RunOptions> {
        let path = self.files_dir(id).join("config.json");
        let bytes = fs::read(&path).map_err(|e| Error::io(format!("{}", path.display()), e))?;
        serde_json::from_slice(&bytes).map_err(|e| Error::user(format!("{}: {e}", path.display())))
    }

    pub fn remove(&self, id: &str) -> Result<()> {
        match fs::remove_dir_all(self.files_dir(id)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("remove the container's files", e)),
        }
        match fs::remove_file(self.record_path(id)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("remove container record", e)),
        }
    }

    /// Every record file: the usable records and those of an unknown
    /// version. A corrupt file is skipped with a warning.
    pub fn load_all(&self) -> Result<Listing> {
        let dir = self.root.join("containers");
        let mut listing = Listing::default();
        let entries = fs::read_dir(&dir).map_err(|e| Error::io(format!("{}", dir.display()), e))?;
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            match read_record(&path) {
                Read::Usable(r) => listing.records.push(r),
                Read::Unknown(u) => listing.unknown.push(u),
                Read::Corrupt => eprintln!("tupper: ignoring unreadable record {}", path.display()),
            }
        }
        listing.records.sort_by_key(|r| r.created);
        Ok(listing)
    }

    /// A record by exact name, exact id, or unique id prefix.
    pub fn find(&self, key: &str) -> Result<Record> {
        let all = self.load_all()?.records;
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

/// A lock file (created 0600 if missing, never truncated), to `flock`.
fn open_lock_file(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io(format!("{}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef";
    const OTHER: &str = "fedcba9876543210fedcba9876543210";

    fn record(id: &str) -> Record {
        Record {
            version: RECORD_VERSION,
            id: id.into(),
            name: "n".into(),
            image: "busybox".into(),
            command: vec!["true".into()],
            created: 0,
            remove_on_exit: false,
            status: Status::Exited(0),
            supervisor: ProcessId {
                pid: 1,
                start_time: 1,
            },
            init: None,
            network_attached: false,
            address: None,
            exec: None,
            started_at: None,
            finished_at: None,
            hostname: None,
            limits: None,
            oom_killed: None,
            cgroups: false,
            ports: Vec::new(),
        }
    }

    fn records() -> (tempfile::TempDir, Records) {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir(tmp.path().join("containers")).unwrap();
        let records = Records {
            root: tmp.path().to_path_buf(),
        };
        (tmp, records)
    }

    #[test]
    fn a_saved_record_carries_the_current_version_and_reads_back() {
        let (_tmp, records) = records();
        records.save(&record(ID)).unwrap();
        let text = fs::read_to_string(records.record_path(ID)).unwrap();
        assert!(text.contains("\"version\": 2"), "{text}");
        let listing = records.load_all().unwrap();
        assert_eq!(listing.records.len(), 1);
        assert!(listing.unknown.is_empty());
    }

    #[test]
    fn a_record_without_a_version_is_version_1() {
        let (_tmp, records) = records();
        let mut v = serde_json::to_value(record(ID)).unwrap();
        v.as_object_mut().unwrap().remove("version");
        fs::write(records.record_path(ID), v.to_string()).unwrap();
        let listing = records.load_all().unwrap();
        assert_eq!(listing.records.len(), 1);
        assert_eq!(listing.records[0].version, 1);
    }

    #[test]
    fn an_unknown_version_is_an_error_naming_the_file_and_the_version() {
        let (_tmp, records) = records();
        records.save(&record(ID)).unwrap();
        // A future version may change any other field: only its version is read.
        fs::write(
            records.record_path(OTHER),
            format!(r#"{{"version": 7, "id": "{OTHER}", "whatever": true}}"#),
        )
        .unwrap();
        let listing = records.load_all().unwrap();
        assert_eq!(listing.records.len(), 1);
        assert_eq!(listing.unknown.len(), 1);
        assert_eq!(listing.unknown[0].id, OTHER);
        let message = listing.unknown[0].error.to_string();
        let path = records.record_path(OTHER);
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.contains("version 7"), "{message}");
        // It is not found by name or id either: nothing about it can be trusted.
        assert!(records.find(OTHER).is_err());
    }

    #[test]
    fn a_version_1_record_reads_without_an_exec_profile() {
        let (_tmp, records) = records();
        let mut v = serde_json::to_value(record(ID)).unwrap();
        v.as_object_mut().unwrap().remove("exec");
        v["version"] = 1.into();
        fs::write(records.record_path(ID), v.to_string()).unwrap();
        let listing = records.load_all().unwrap();
        assert_eq!(listing.records.len(), 1);
        assert_eq!(listing.records[0].version, 1);
        assert!(listing.records[0].exec.is_none());
    }

    #[test]
    fn an_exec_profile_survives_a_save() {
        let (_tmp, records) = records();
        let mut rec = record(ID);
        let security = proto::SpawnSecurity {
            seccomp: Some(vec![proto::BpfInstruction {
                code: 6,
                jt: 0,
                jf: 0,
                k: 0x7fff_0000,
            }]),
            user: Some("1000:10".into()),
            ..Default::default()
        };
        rec.exec = Some(Box::new(crate::exec::ExecProfile {
            security,
            env: vec!["A=1".into()],
            workdir: "/srv".into(),
            hostname: "box".into(),
        }));
        records.save(&rec).unwrap();
        let back = records.find(ID).unwrap();
        assert_eq!(back.exec, rec.exec);
    }

    #[test]
    fn corrupt_records_are_skipped() {
        let (_tmp, records) = records();
        fs::write(records.record_path(ID), b"{ nope").unwrap();
        fs::write(records.record_path(OTHER), b"{\"version\": 1}").unwrap();
        let listing = records.load_all().unwrap();
        assert!(listing.records.is_empty());
        assert!(listing.unknown.is_empty());
    }
}
