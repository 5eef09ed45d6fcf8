//! The root-owned state directory: the lock, and atomic reads and writes of
//! `leases.json`. Every new directory and file is made owned by root with
//! mode 0700/0600, so users can neither read nor forge leases.

use std::ffi::CString;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use caps::Capability::{CAP_CHOWN, CAP_DAC_OVERRIDE};

use crate::error::{NetError, Result};
use crate::leases::{Leases, MAX_FILE_LEN};
use crate::privilege::with_caps;

const LOCK_FILE: &str = "net.lock";
const LEASE_FILE: &str = "leases.json";
const LEASE_TEMP: &str = "leases.json.tmp";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Production: raise CAP_DAC_OVERRIDE/CAP_CHOWN, chown to root, insist on root ownership.
    Root,
    /// Unit tests: plain files of whoever runs them.
    #[cfg(test)]
    Unprivileged,
}

#[derive(Debug)]
pub struct StateDir {
    dir: OwnedFd,
    mode: Mode,
}

/// Held while the lease file is read, decided on and written.
#[derive(Debug)]
pub struct Lock {
    _fd: OwnedFd,
}

fn c(s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| NetError::State("name with a NUL byte".into()))
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn fstat(fd: &OwnedFd) -> Result<libc::stat> {
    // SAFETY: fstat writes into a zeroed stat we own.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return Err(NetError::last_os("inspect the state directory"));
    }
    Ok(st)
}

impl StateDir {
    /// Open (creating if needed) the configured state directory.
    pub fn open(path: &Path) -> Result<StateDir> {
        Self::open_as(path, Mode::Root)
    }

    #[cfg(test)]
    fn open_unprivileged(path: &Path) -> Result<StateDir> {
        Self::open_as(path, Mode::Unprivileged)
    }

    fn open_as(path: &Path, mode: Mode) -> Result<StateDir> {
        let cpath = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| NetError::Config("runtime.state_dir holds a NUL byte".into()))?;
        let sd = StateDir::privileged(mode, || {
            // SAFETY: plain syscalls on a NUL-terminated path; results checked.
            let created = if unsafe { libc::mkdir(cpath.as_ptr(), 0o700) } == 0 {
                true
            } else if errno() == libc::EEXIST {
                false
            } else {
                return Err(NetError::last_os("create the state directory"));
            };
            let fd = unsafe {
                libc::open(
                    cpath.as_ptr(),
                    libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                )
            };
            if fd < 0 {
                return Err(NetError::last_os("open the state directory"));
            }
            // SAFETY: fd was just returned by open and is owned by nobody else.
            let dir = unsafe { OwnedFd::from_raw_fd(fd) };
            let sd = StateDir { dir, mode };
            if created {
                sd.make_root_owned(&sd.dir, 0o700)?;
            }
            Ok(sd)
        })?;
        sd.check_ownership()?;
        Ok(sd)
    }

    /// Run `f` with the capabilities for root-owned state raised (production only).
    fn privileged<T>(mode: Mode, f: impl FnOnce() -> Result<T>) -> Result<T> {
        match mode {
            Mode::Root => with_caps(&[CAP_DAC_OVERRIDE, CAP_CHOWN], f),
            #[cfg(test)]
            Mode::Unprivileged => f(),
        }
    }

    /// Set the mode while we still own the object, then give it to root.
    fn make_root_owned(&self, fd: &OwnedFd, perm: libc::mode_t) -> Result<()> {
        // SAFETY: fchmod/fchown on a descriptor we own.
        if unsafe { libc::fchmod(fd.as_raw_fd(), perm) } != 0 {
            return Err(NetError::last_os("set state permissions"));
        }
        if self.mode == Mode::Root && unsafe { libc::fchown(fd.as_raw_fd(), 0, 0) } != 0 {
            return Err(NetError::last_os("make state owned by root"));
        }
        Ok(())
    }

    /// A state directory someone else can write to could hold forged leases.
    fn check_ownership(&self) -> Result<()> {
        let st = fstat(&self.dir)?;
        // SAFETY: geteuid cannot fail.
        let owner = match self.mode {
            Mode::Root => 0,
            #[cfg(test)]
            Mode::Unprivileged => unsafe { libc::geteuid() },
        };
        if st.st_uid != owner || st.st_mode & 0o022 != 0 {
            return Err(NetError::State(
                "the state directory must be owned by root and writable only by root".into(),
            ));
        }
        Ok(())
    }

    /// Open `name` in the directory; create it (root-owned, 0600) with `O_EXCL` first.
    fn open_file(&self, name: &str, flags: libc::c_int, create: bool) -> Result<Option<OwnedFd>> {
        let cname = c(name)?;
        let base = flags | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        StateDir::privileged(self.mode, || {
            let dir = self.dir.as_raw_fd();
            if create {
                // SAFETY: openat on our directory descriptor with a NUL-terminated name.
                let fd = unsafe {
                    libc::openat(
                        dir,
                        cname.as_ptr(),
                        base | libc::O_CREAT | libc::O_EXCL,
                        0o600,
                    )
                };
                if fd >= 0 {
                    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
                    self.make_root_owned(&fd, 0o600)?;
                    return Ok(Some(fd));
                }
                if errno() != libc::EEXIST {
                    return Err(NetError::last_os(format!("create {name}")));
                }
            }
            let fd = unsafe { libc::openat(dir, cname.as_ptr(), base) };
            if fd < 0 {
                if errno() == libc::ENOENT {
                    return Ok(None);
                }
                return Err(NetError::last_os(format!("open {name}")));
            }
            Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }))
        })
    }

    /// Take the exclusive lock that serialises every lease change on this host.
    pub fn lock(&self) -> Result<Lock> {
        let fd = self
            .open_file(LOCK_FILE, libc::O_RDWR, true)?
            .ok_or_else(|| NetError::State("lock file vanished".into()))?;
        loop {
            // SAFETY: flock on a descriptor we own.
            if unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_EX) } == 0 {
                return Ok(Lock { _fd: fd });
            }
            if errno() != libc::EINTR {
                return Err(NetError::last_os("lock the lease file"));
            }
        }
    }

    /// Read the leases; a missing file is no leases. Call with the lock held.
    pub fn load(&self, _lock: &Lock) -> Result<Leases> {
        let Some(fd) = self.open_file(LEASE_FILE, libc::O_RDONLY, false)? else {
            return Ok(Leases::default());
        };
        let mut text = String::new();
        std::fs::File::from(fd)
            .take(MAX_FILE_LEN + 1)
            .read_to_string(&mut text)
            .map_err(|e| NetError::sys("read leases", e))?;
        if text.len() as u64 > MAX_FILE_LEN {
            return Err(NetError::State("leases.json is too large".into()));
        }
        Leases::parse(&text)
    }

    /// Replace the lease file atomically: write a temporary file, fsync it,
    /// rename it over the old one, fsync the directory. Call with the lock held.
    pub fn save(&self, _lock: &Lock, leases: &Leases) -> Result<()> {
        let bytes = leases.to_json()?;
        let temp = c(LEASE_TEMP)?;
        let target = c(LEASE_FILE)?;
        let dir = self.dir.as_raw_fd();
        // A temporary file left by a crash is ours to replace (we hold the lock).
        StateDir::privileged(self.mode, || {
            // SAFETY: unlinkat on our directory descriptor.
            if unsafe { libc::unlinkat(dir, temp.as_ptr(), 0) } != 0 && errno() != libc::ENOENT {
                return Err(NetError::last_os("remove a stale temporary lease file"));
            }
            Ok(())
        })?;
        let fd = self
            .open_file(LEASE_TEMP, libc::O_WRONLY, true)?
            .ok_or_else(|| NetError::State("temporary lease file vanished".into()))?;
        let mut file = std::fs::File::from(fd);
        file.write_all(&bytes)
            .and_then(|_| file.sync_all())
            .map_err(|e| NetError::sys("write leases", e))?;
        drop(file);
        StateDir::privileged(self.mode, || {
            // SAFETY: renameat within our directory; fsync on our directory fd.
            if unsafe { libc::renameat(dir, temp.as_ptr(), dir, target.as_ptr()) } != 0 {
                return Err(NetError::last_os("replace leases"));
            }
            if unsafe { libc::fsync(dir) } != 0 {
                return Err(NetError::last_os("sync the state directory"));
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::leases::{Lease, NsId};
    use std::net::Ipv4Addr;
    use std::os::unix::fs::PermissionsExt;

    fn sample() -> Leases {
        Leases {
            leases: vec![Lease {
                address: Ipv4Addr::new(10, 88, 0, 2),
                uid: 1001,
                container: "0123456789abcdef0123456789abcdef".into(),
                pid: 77,
                pid_start_time: 5,
                netns: NsId { dev: 4, ino: 99 },
                host_interface: "tw0123456789ab".into(),
                boot_id: "b".into(),
            }],
        }
    }

    #[test]
    fn create_lock_save_load() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("state");
        let sd = StateDir::open_unprivileged(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        let lock = sd.lock().unwrap();
        assert_eq!(sd.load(&lock).unwrap(), Leases::default());
        sd.save(&lock, &sample()).unwrap();
        assert_eq!(sd.load(&lock).unwrap(), sample());
        let fmode = std::fs::metadata(path.join(LEASE_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(fmode & 0o777, 0o600);
        // A leftover temporary file from a crash does not block the next save.
        std::fs::write(path.join(LEASE_TEMP), b"partial").unwrap();
        sd.save(&lock, &Leases::default()).unwrap();
        assert_eq!(sd.load(&lock).unwrap(), Leases::default());
        assert!(!path.join(LEASE_TEMP).exists());
        // Reopening an existing directory works.
        drop(lock);
        StateDir::open_unprivileged(&path).unwrap();
    }

    #[test]
    fn refuses_writable_or_symlinked_state() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("state");
        std::fs::create_dir(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(StateDir::open_unprivileged(&path).is_err());
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert!(StateDir::open_unprivileged(&link).is_err());
    }

    #[test]
    fn corrupt_or_symlinked_lease_file_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("state");
        let sd = StateDir::open_unprivileged(&path).unwrap();
        let lock = sd.lock().unwrap();
        std::fs::write(path.join(LEASE_FILE), b"{ nope").unwrap();
        assert!(sd.load(&lock).is_err());
        std::fs::remove_file(path.join(LEASE_FILE)).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", path.join(LEASE_FILE)).unwrap();
        assert!(sd.load(&lock).is_err());
    }
}
