//! `-u USER[:GROUP]`: resolved by the init after `pivot_root`, from the
//! container's own `/etc/passwd` and `/etc/group` (the container's files, so
//! a link in them can only lead to another file of the container).

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;

use crate::error::Error;

/// Largest `/etc/passwd` or `/etc/group` read.
const MAX_DB_BYTES: u64 = 4 << 20;
/// Ids the container's user namespace maps.
const MAX_ID: u32 = 65535;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (from `/etc/group`).
    pub groups: Vec<u32>,
    /// From `/etc/passwd`, when the user has an entry.
    pub home: Option<String>,
}

fn not_found(msg: String) -> Error {
    // podman answers an unknown user with 126 (cannot execute).
    Error::NoSuchUser(msg)
}

fn id(s: &str, what: &str) -> Result<Option<u32>, Error> {
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(None);
    }
    match s.parse::<u32>() {
        Ok(n) if n <= MAX_ID => Ok(Some(n)),
        _ => Err(not_found(format!(
            "{what} {s} is not mapped in the container (ids are 0 to {MAX_ID})"
        ))),
    }
}

/// `name:x:uid:gid:gecos:home:shell` lines (malformed lines are skipped).
fn passwd_entries(text: &str) -> impl Iterator<Item = (&str, u32, u32, &str)> {
    text.lines().filter_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 7 {
            return None;
        }
        Some((f[0], f[2].parse().ok()?, f[3].parse().ok()?, f[5]))
    })
}

/// `name:x:gid:member,member` lines.
fn group_entries(text: &str) -> impl Iterator<Item = (&str, u32, Vec<&str>)> {
    text.lines().filter_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 4 {
            return None;
        }
        let members = f[3].split(',').filter(|m| !m.is_empty()).collect();
        Some((f[0], f[2].parse().ok()?, members))
    })
}

/// Resolve `spec` against the text of `/etc/passwd` and `/etc/group`.
pub fn resolve(spec: &str, passwd: &str, group: &str) -> Result<User, Error> {
    let (user, grp) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let entry = match id(user, "uid")? {
        Some(uid) => passwd_entries(passwd).find(|e| e.1 == uid),
        None => Some(
            passwd_entries(passwd)
                .find(|e| e.0 == user)
                .ok_or_else(|| {
                    not_found(format!(
                        "unable to find user {user}: no matching entries in passwd file"
                    ))
                })?,
        ),
    };
    let uid = match (id(user, "uid")?, &entry) {
        (Some(uid), _) => uid,
        (None, Some(e)) if e.1 <= MAX_ID => e.1,
        (None, _) => {
            return Err(not_found(format!(
                "user {user} has a uid that is not mapped in the container (ids are 0 to {MAX_ID})"
            )))
        }
    };
    let gid = match grp {
        Some(g) => match id(g, "gid")? {
            Some(gid) => gid,
            None => group_entries(group)
                .find(|e| e.0 == g)
                .map(|e| e.1)
                .ok_or_else(|| {
                    not_found(format!(
                        "unable to find group {g}: no matching entries in group file"
                    ))
                })?,
        },
        // podman: the passwd entry's group, or 0 without one.
        None => entry.as_ref().map_or(0, |e| e.2),
    };
    if gid > MAX_ID {
        return Err(not_found(format!(
            "gid {gid} is not mapped in the container (ids are 0 to {MAX_ID})"
        )));
    }
    let mut groups = vec![];
    if let Some(e) = &entry {
        for (_, g, members) in group_entries(group) {
            if g <= MAX_ID && members.contains(&e.0) && !groups.contains(&g) {
                groups.push(g);
            }
        }
    }
    Ok(User {
        uid,
        gid,
        groups,
        home: entry.map(|e| e.3.to_string()).filter(|h| !h.is_empty()),
    })
}

/// A file of the container, bounded; missing is empty. Opened without
/// blocking so a FIFO in its place cannot hang the init.
fn read_db(path: &str) -> Result<String, Error> {
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(String::new()),
        Err(e) => return Err(Error::sys(format!("open {path} in the container"))(e)),
    };
    let meta = file
        .metadata()
        .map_err(Error::sys(format!("stat {path} in the container")))?;
    if !meta.is_file() {
        return Err(Error::Unsafe(format!(
            "{path} in the container is not a regular file"
        )));
    }
    let mut bytes = vec![];
    file.take(MAX_DB_BYTES)
        .read_to_end(&mut bytes)
        .map_err(Error::sys(format!("read {path} in the container")))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Resolve `spec` from the container's files (after `pivot_root`).
pub fn lookup(spec: &str) -> Result<User, Error> {
    resolve(spec, &read_db("/etc/passwd")?, &read_db("/etc/group")?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::ErrorKind;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\nalice:x:1000:1000::/home/alice:/bin/sh\nbroken line\nbig:x:70000:1::/:/bin/sh\n";
    const GROUP: &str =
        "root:x:0:\nwheel:x:10:alice,bob\nnogroup:x:65534:\nalice:x:1000:\naudio:x:29:bob,alice\n";

    #[test]
    fn names_and_numbers() {
        let u = resolve("nobody", PASSWD, GROUP).unwrap();
        assert_eq!(
            (u.uid, u.gid, u.home.as_deref()),
            (65534, 65534, Some("/nonexistent"))
        );
        let u = resolve("alice", PASSWD, GROUP).unwrap();
        assert_eq!((u.uid, u.gid, u.groups.clone()), (1000, 1000, vec![10, 29]));
        assert_eq!(u.home.as_deref(), Some("/home/alice"));
        let u = resolve("1000:1000", PASSWD, GROUP).unwrap();
        assert_eq!((u.uid, u.gid), (1000, 1000));
        assert_eq!(u.groups, vec![10, 29]);
        let u = resolve("4242", PASSWD, GROUP).unwrap();
        assert_eq!(
            (u.uid, u.gid, u.home.clone(), u.groups),
            (4242, 0, None, vec![])
        );
        let u = resolve("alice:wheel", PASSWD, GROUP).unwrap();
        assert_eq!((u.uid, u.gid), (1000, 10));
        let u = resolve("0:nogroup", "", GROUP).unwrap();
        assert_eq!((u.uid, u.gid), (0, 65534));
    }

    #[test]
    fn unknown_or_unmapped_is_126() {
        for (spec, want) in [
            (
                "nosuch",
                "unable to find user nosuch: no matching entries in passwd file",
            ),
            (
                "alice:nosuch",
                "unable to find group nosuch: no matching entries in group file",
            ),
            ("65536", "uid 65536 is not mapped"),
            ("99999999999", "uid 99999999999 is not mapped"),
            ("0:70000", "gid 70000 is not mapped"),
            ("big", "user big has a uid that is not mapped"),
        ] {
            let e = resolve(spec, PASSWD, GROUP).unwrap_err().to_remote();
            assert_eq!(e.kind, ErrorKind::NotExecutable, "{spec}");
            assert!(e.message.contains(want), "{spec}: {}", e.message);
        }
    }

    /// A FIFO in place of /etc/passwd must not hang the init (the
    /// supervisor would wait for it forever).
    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let dir = std::env::temp_dir().join(format!("tupper-user-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("passwd");
        let _ = std::fs::remove_file(&fifo);
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
        let path = fifo.to_string_lossy().into_owned();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(read_db(&path).map_err(|e| e.to_string()));
        });
        let result = rx
            .recv_timeout(std::time::Duration::from_secs(5))
            .expect("reading a FIFO blocked");
        let _ = std::fs::remove_dir_all(&dir);
        let err = result.expect_err("a FIFO was read");
        assert!(err.contains("not a regular file"), "{err}");
        assert_eq!(read_db("/nonexistent/passwd").unwrap(), "");
    }
}
