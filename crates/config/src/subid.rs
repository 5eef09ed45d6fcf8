//! Subordinate id ranges from `/etc/subuid` and `/etc/subgid`, checked the way
//! `newuidmap` checks them: a range belongs to a user when its first field is
//! the user's login name or numeric uid.

use std::path::Path;
use std::sync::Mutex;

use proto::Caller;
use proto::{ErrorKind, RemoteError};

use crate::Error;

/// Number of ids mapped into every container: container ids 0..65535.
pub const CONTAINER_IDS: u32 = 65536;

/// How container ids land on the host: container root is the caller
/// (so a volume's files are the caller's, and the caller's files are the
/// container root's), and container ids 1..65535 are the first 65535 ids of
/// the caller's subordinate range. Podman's rootless default is the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdMapping {
    /// The caller's real uid: container uid 0.
    pub caller_uid: u32,
    /// The caller's real gid: container gid 0.
    pub caller_gid: u32,
    /// Host uid of container uid 1.
    pub uid_base: u32,
    /// Host gid of container gid 1.
    pub gid_base: u32,
}

impl IdMapping {
    /// `uid_map` content: 0 onto the caller, 1..65535 onto the subordinate range.
    pub fn uid_map(&self) -> String {
        format!(
            "0 {} 1\n1 {} {}\n",
            self.caller_uid,
            self.uid_base,
            CONTAINER_IDS - 1
        )
    }

    pub fn gid_map(&self) -> String {
        format!(
            "0 {} 1\n1 {} {}\n",
            self.caller_gid,
            self.gid_base,
            CONTAINER_IDS - 1
        )
    }

    /// Host uid of a container uid, or `None` when it is outside the mapping.
    pub fn host_uid(&self, container_uid: u64) -> Option<u32> {
        shift(container_uid, self.caller_uid, self.uid_base)
    }

    pub fn host_gid(&self, container_gid: u64) -> Option<u32> {
        shift(container_gid, self.caller_gid, self.gid_base)
    }

    /// Container uid of a host uid, or `None` when the container cannot see it.
    pub fn container_uid(&self, host_uid: u32) -> Option<u32> {
        unshift(host_uid, self.caller_uid, self.uid_base)
    }

    pub fn container_gid(&self, host_gid: u32) -> Option<u32> {
        unshift(host_gid, self.caller_gid, self.gid_base)
    }
}

fn shift(id: u64, caller: u32, base: u32) -> Option<u32> {
    match id {
        0 => Some(caller),
        _ if id < CONTAINER_IDS as u64 => Some(base + (id as u32 - 1)),
        _ => None,
    }
}

fn unshift(host: u32, caller: u32, base: u32) -> Option<u32> {
    if host == caller {
        return Some(0);
    }
    let off = host.checked_sub(base)?;
    (off < CONTAINER_IDS - 1).then_some(off + 1)
}

/// The mapping for `caller` from the system files.
///
/// Root without ranges gets `Ok(None)`: it runs without a user namespace and
/// its images keep their ids unshifted. Anyone else without a range gets an
/// error of kind `NoSubordinateIds` that says what to add.
///
/// The files are read once per process: later calls for the same caller
/// return the first answer (a failure is not kept, the next call reads again).
pub fn mapping_for(caller: Caller) -> Result<Option<IdMapping>, Error> {
    static CACHE: Mutex<Option<(u32, u32, Option<IdMapping>)>> = Mutex::new(None);
    let mut cache = CACHE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((uid, gid, mapping)) = *cache {
        if (uid, gid) == (caller.uid, caller.gid) {
            return Ok(mapping);
        }
    }
    let mapping = mapping_from(caller, Path::new("/etc/subuid"), Path::new("/etc/subgid"))?;
    *cache = Some((caller.uid, caller.gid, mapping));
    Ok(mapping)
}

pub fn mapping_from(
    caller: Caller,
    subuid: &Path,
    subgid: &Path,
) -> Result<Option<IdMapping>, Error> {
    let name = caller.user_name();
    let uid_base = find_range(subuid, caller.uid, name.as_deref())?;
    let gid_base = find_range(subgid, caller.uid, name.as_deref())?;
    match (uid_base, gid_base) {
        (Some(uid_base), Some(gid_base)) => Ok(Some(IdMapping {
            caller_uid: caller.uid,
            caller_gid: caller.gid,
            uid_base,
            gid_base,
        })),
        _ if caller.uid == 0 => Ok(None),
        (u, _) => {
            let who = name.unwrap_or_else(|| caller.uid.to_string());
            let file = if u.is_none() {
                "/etc/subuid"
            } else {
                "/etc/subgid"
            };
            Err(Error::Remote(RemoteError::new(
                ErrorKind::NoSubordinateIds,
                format!(
                    "user {who} has no subordinate id range of at least {CONTAINER_IDS} ids in {file}; \
                     ask an administrator to run: usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {who}"
                ),
            )))
        }
    }
}

/// Start of the first range of at least [`CONTAINER_IDS`] ids owned by the user.
fn find_range(path: &Path, uid: u32, name: Option<&str>) -> Result<Option<u32>, Error> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(Error::Read {
                path: path.display().to_string(),
                source,
            })
        }
    };
    Ok(parse_ranges(&text, uid, name))
}

pub fn parse_ranges(text: &str, uid: u32, name: Option<&str>) -> Option<u32> {
    let uid_s = uid.to_string();
    text.lines().find_map(|line| {
        let mut f = line.trim().split(':');
        let (owner, start, count) = (f.next()?, f.next()?, f.next()?);
        if f.next().is_some() || !(owner == uid_s || Some(owner) == name) {
            return None;
        }
        let start: u32 = start.parse().ok()?;
        let count: u32 = count.parse().ok()?;
        // Never map host root, never wrap around.
        let usable =
            start > 0 && count >= CONTAINER_IDS && start.checked_add(CONTAINER_IDS).is_some();
        usable.then_some(start)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_by_name_and_uid() {
        let t = "alice:100000:65536\nbob:200000:1000\n1002:300000:65536\n# x\nbad line\n";
        assert_eq!(parse_ranges(t, 1000, Some("alice")), Some(100000));
        assert_eq!(parse_ranges(t, 1001, Some("bob")), None, "too small");
        assert_eq!(parse_ranges(t, 1002, Some("carol")), Some(300000));
        assert_eq!(parse_ranges(t, 1003, Some("dave")), None);
        assert_eq!(
            parse_ranges("eve:0:65536\n", 5, Some("eve")),
            None,
            "maps host root"
        );
        assert_eq!(
            parse_ranges("eve:4294967000:65536\n", 5, Some("eve")),
            None,
            "wraps"
        );
    }

    #[test]
    fn missing_range_names_the_fix() {
        let dir = std::env::temp_dir().join(format!("tw-subid-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("subuid");
        std::fs::write(&f, "someone:100000:65536\n").unwrap();
        let caller = Caller {
            uid: 54321,
            gid: 54321,
        };
        let err = mapping_from(caller, &f, &f).unwrap_err();
        assert!(err.to_string().contains("usermod --add-subuids"), "{err}");
        assert_eq!(err.to_remote().kind, ErrorKind::NoSubordinateIds);
        let root = Caller { uid: 0, gid: 0 };
        assert_eq!(mapping_from(root, &f, &f).unwrap(), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn maps() {
        let m = IdMapping {
            caller_uid: 1000,
            caller_gid: 1001,
            uid_base: 100000,
            gid_base: 200000,
        };
        assert_eq!(m.uid_map(), "0 1000 1\n1 100000 65535\n");
        assert_eq!(m.gid_map(), "0 1001 1\n1 200000 65535\n");
        assert_eq!(m.host_uid(0), Some(1000));
        assert_eq!(m.host_gid(0), Some(1001));
        assert_eq!(m.host_uid(1), Some(100000));
        assert_eq!(m.host_gid(65535), Some(265534));
        assert_eq!(m.host_uid(65536), None);
        assert_eq!(m.container_uid(1000), Some(0));
        assert_eq!(m.container_uid(100000), Some(1));
        assert_eq!(m.container_uid(165534), Some(65535));
        assert_eq!(m.container_uid(165535), None);
        assert_eq!(m.container_uid(99999), None);
        assert_eq!(m.container_gid(1001), Some(0));
    }
}
