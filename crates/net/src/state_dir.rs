//! Root-owned state directories and the few operations the lease store needs
//! on them: bounded reads, atomic replacement (temporary file, fsync, rename,
//! fsync of the directory), removal, listing, and `flock` locks that never
//! wait unboundedly. Every new directory and file is made owned by root with
//! mode 0700/0600, so users can neither read nor forge leases; nothing is
//! opened through a symbolic link.

use std::ffi::{CStr, CString};
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Duration;

use caps::Capability::{CAP_CHOWN, CAP_DAC_OVERRIDE};

use crate::capabilities::with_caps;
use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Production: raise CAP_DAC_OVERRIDE/CAP_CHOWN, chown to root, insist on root ownership.
    Root,
    /// Unit tests: plain files of whoever runs them.
    #[cfg(test)]
    Unprivileged,
}

/// An open state directory (the configured one, or one below it).
#[derive(Debug)]
pub struct StateDir {
    dir: OwnedFd,
    mode: Mode,
}

/// An exclusive `flock` on a lock file; released when dropped (or when the
/// holder dies, whatever way).
pub type Lock = tupper_sys::lock::Locked<OwnedFd>;

fn c(s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::State("name with a NUL byte".into()))
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn fstat(fd: &OwnedFd) -> Result<libc::stat> {
    // SAFETY: fstat writes into a zeroed stat we own.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return Err(Error::last_os("inspect the state directory"));
    }
    Ok(st)
}

/// `mkdirat` (0700) then open the directory without following a symlink;
/// returns whether we created it.
fn make_and_open_dir(at: libc::c_int, name: &CStr, what: &str) -> Result<(OwnedFd, bool)> {
    // SAFETY: plain syscalls on a NUL-terminated name; results checked.
    let created = if unsafe { libc::mkdirat(at, name.as_ptr(), 0o700) } == 0 {
        true
    } else if errno() == libc::EEXIST {
        false
    } else {
        return Err(Error::last_os(format!("create {what}")));
    };
    let fd = unsafe {
        libc::openat(
            at,
            name.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(Error::last_os(format!("open {what}")));
    }
    // SAFETY: fd was just returned by openat and is owned by nobody else.
    Ok((unsafe { OwnedFd::from_raw_fd(fd) }, created))
}

impl StateDir {
    /// Open (creating if needed) the configured state directory.
    pub fn open(path: &Path) -> Result<StateDir> {
        Self::open_as(path, Mode::Root)
    }

    #[cfg(test)]
    pub fn open_unprivileged(path: &Path) -> Result<StateDir> {
        Self::open_as(path, Mode::Unprivileged)
    }

    fn open_as(path: &Path, mode: Mode) -> Result<StateDir> {
        let cpath = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| Error::InvalidConfig("runtime.state_dir holds a NUL byte".into()))?;
        Self::finish_open(mode, || {
            make_and_open_dir(libc::AT_FDCWD, &cpath, "the state directory")
        })
    }

    /// Open (creating if needed) the directory `name` below this one.
    pub fn subdir(&self, name: &str) -> Result<StateDir> {
        let cname = c(name)?;
        let at = self.dir.as_raw_fd();
        Self::finish_open(self.mode, || {
            make_and_open_dir(at, &cname, &format!("the state directory {name}"))
        })
    }

    fn finish_open(mode: Mode, open: impl FnOnce() -> Result<(OwnedFd, bool)>) -> Result<StateDir> {
        let sd = StateDir::privileged(mode, || {
            let (dir, created) = open()?;
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
            return Err(Error::last_os("set state permissions"));
        }
        if self.mode == Mode::Root && unsafe { libc::fchown(fd.as_raw_fd(), 0, 0) } != 0 {
            return Err(Error::last_os("make state owned by root"));
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
            return Err(Error::State(
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
                    return Err(Error::last_os(format!("create {name}")));
                }
            }
            let fd = unsafe { libc::openat(dir, cname.as_ptr(), base) };
            if fd < 0 {
                if errno() == libc::ENOENT {
                    return Ok(None);
                }
                return Err(Error::last_os(format!("open {name}")));
            }
            Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }))
        })
    }

    /// The lock file `name` (created if needed), locked exclusively if no one
    /// else holds it; `None` if someone does. Never waits.
    pub fn try_lock(&self, name: &str) -> Result<Option<Lock>> {
        self.lock_within(name, Duration::ZERO)
    }

    /// Like [`try_lock`](Self::try_lock), trying again until `wait` has passed:
    /// a holder that is stopped (or slow) costs us at most `wait`.
    pub fn lock_within(&self, name: &str, wait: Duration) -> Result<Option<Lock>> {
        let fd = self
            .open_file(name, libc::O_RDWR, true)?
            .ok_or_else(|| Error::State(format!("lock file {name} vanished")))?;
        tupper_sys::lock::exclusive_within(fd, wait)
            .map_err(|e| Error::sys(format!("lock {name}"), e))
    }

    /// The contents of `name`, `None` if it does not exist; longer than `max`
    /// bytes is an error (nothing we write is).
    pub fn read(&self, name: &str, max: u64) -> Result<Option<Vec<u8>>> {
        let Some(fd) = self.open_file(name, libc::O_RDONLY, false)? else {
            return Ok(None);
        };
        let mut bytes = Vec::new();
        std::fs::File::from(fd)
            .take(max + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| Error::sys(format!("read {name}"), e))?;
        if bytes.len() as u64 > max {
            return Err(Error::State(format!("{name} is too large")));
        }
        Ok(Some(bytes))
    }

    /// Replace `name` atomically with `bytes` (`tupper_sys::atomic`: write
    /// `name.tmp`, root-owned and 0600, fsync it, rename it over `name`, fsync
    /// the directory). The caller holds the lock that makes it the only writer
    /// of `name` (and so of `name.tmp`).
    pub fn write_atomic(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let root_owned = self.mode == Mode::Root;
        StateDir::privileged(self.mode, || {
            tupper_sys::atomic::write_at(&self.dir, name, bytes, 0o600, |file| {
                // SAFETY: fchmod/fchown on the temporary file's descriptor.
                if unsafe { libc::fchmod(file.as_raw_fd(), 0o600) } != 0
                    || (root_owned && unsafe { libc::fchown(file.as_raw_fd(), 0, 0) } != 0)
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            })
            .map_err(|e| Error::sys(format!("replace {name}"), e))
        })
    }

    /// Replace `name` with `bytes` like [`StateDir::write_atomic`] (a reader
    /// sees the old or the new content, never a part), but without the
    /// fsyncs: for records whose loss in a crash is safe (issue 11: the
    /// tombstones; a lost one makes the sweep treat its end as an orphan).
    pub fn write_unsynced(&self, name: &str, bytes: &[u8]) -> Result<()> {
        use std::io::Write;
        let temp = format!("{name}.tmp");
        let (ctemp, cname) = (c(&temp)?, c(name)?);
        // SAFETY: unlinkat on our directory with a NUL-terminated name.
        let gone = StateDir::privileged(self.mode, || {
            if unsafe { libc::unlinkat(self.dir.as_raw_fd(), ctemp.as_ptr(), 0) } != 0
                && errno() != libc::ENOENT
            {
                return Err(Error::last_os(format!("remove {temp}")));
            }
            Ok(())
        });
        gone?;
        let Some(fd) = self.open_file(&temp, libc::O_WRONLY, true)? else {
            return Err(Error::State(format!("{temp} vanished")));
        };
        let mut file = std::fs::File::from(fd);
        file.write_all(bytes)
            .map_err(|e| Error::sys(format!("write {temp}"), e))?;
        drop(file);
        StateDir::privileged(self.mode, || {
            // SAFETY: renameat within our directory, NUL-terminated names.
            let dir = self.dir.as_raw_fd();
            if unsafe { libc::renameat(dir, ctemp.as_ptr(), dir, cname.as_ptr()) } != 0 {
                return Err(Error::last_os(format!("replace {name}")));
            }
            Ok(())
        })
    }

    /// Remove `name` (a missing one is fine) without making the removal durable.
    pub fn remove_unsynced(&self, name: &str) -> Result<()> {
        let cname = c(name)?;
        StateDir::privileged(self.mode, || {
            // SAFETY: unlinkat on our directory with a NUL-terminated name.
            if unsafe { libc::unlinkat(self.dir.as_raw_fd(), cname.as_ptr(), 0) } != 0
                && errno() != libc::ENOENT
            {
                return Err(Error::last_os(format!("remove {name}")));
            }
            Ok(())
        })
    }

    /// Remove `name` (a missing one is fine) and make the removal durable.
    pub fn remove(&self, name: &str) -> Result<()> {
        StateDir::privileged(self.mode, || {
            tupper_sys::atomic::remove_at(&self.dir, name)
                .map_err(|e| Error::sys(format!("remove {name}"), e))
        })
    }

    /// Names of the entries of the directory (without `.` and `..`), at most
    /// `max` of them: more is an error.
    pub fn names(&self, max: usize) -> Result<Vec<String>> {
        // Reopen "." through our descriptor: our own offset, permission
        // already granted by the open of the directory.
        let fd = StateDir::privileged(self.mode, || {
            // SAFETY: openat of "." relative to our directory descriptor.
            let fd = unsafe {
                libc::openat(
                    self.dir.as_raw_fd(),
                    c".".as_ptr(),
                    libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
                )
            };
            if fd < 0 {
                return Err(Error::last_os("list the state directory"));
            }
            Ok(fd)
        })?;
        // SAFETY: fdopendir takes ownership of fd; closedir releases both.
        let dirp = unsafe { libc::fdopendir(fd) };
        if dirp.is_null() {
            let e = Error::last_os("list the state directory");
            // SAFETY: fdopendir failed, so fd is still ours to close.
            unsafe { libc::close(fd) };
            return Err(e);
        }
        let mut names = Vec::new();
        let outcome = loop {
            // SAFETY: readdir on the stream we opened; errno reset to tell end from error.
            unsafe { *libc::__errno_location() = 0 };
            let entry = unsafe { libc::readdir(dirp) };
            if entry.is_null() {
                break if errno() == 0 {
                    Ok(())
                } else {
                    Err(Error::last_os("list the state directory"))
                };
            }
            // SAFETY: d_name is a NUL-terminated array inside the entry.
            let name = unsafe { CStr::from_ptr((*entry).d_name.as_ptr()) };
            let name = name.to_string_lossy();
            if name == "." || name == ".." {
                continue;
            }
            if names.len() >= max {
                break Err(Error::State(
                    "the state directory holds more entries than it ever should".into(),
                ));
            }
            names.push(name.into_owned());
        };
        // SAFETY: closing the stream we opened.
        unsafe { libc::closedir(dirp) };
        outcome.map(|()| names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::time::Instant;

    #[test]
    fn create_write_read_remove() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("state");
        let sd = StateDir::open_unprivileged(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        let sub = sd.subdir("leases").unwrap();
        let mode = std::fs::metadata(path.join("leases"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
        assert_eq!(sub.read("a", 100).unwrap(), None);
        sub.write_atomic("a", b"one").unwrap();
        assert_eq!(sub.read("a", 100).unwrap().unwrap(), b"one");
        let fmode = std::fs::metadata(path.join("leases/a"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(fmode & 0o777, 0o600);
        // A leftover temporary file from a crash does not block the next write.
        std::fs::write(path.join("leases/a.tmp"), b"partial").unwrap();
        sub.write_atomic("a", b"two").unwrap();
        assert_eq!(sub.read("a", 100).unwrap().unwrap(), b"two");
        assert!(!path.join("leases/a.tmp").exists());
        assert!(sub.read("a", 2).is_err());
        assert_eq!(sub.names(10).unwrap(), ["a"]);
        assert!(sub.names(0).is_err());
        sub.remove("a").unwrap();
        sub.remove("a").unwrap();
        assert_eq!(sub.read("a", 100).unwrap(), None);
        assert!(sub.names(10).unwrap().is_empty());
        // Reopening existing directories works.
        StateDir::open_unprivileged(&path)
            .unwrap()
            .subdir("leases")
            .unwrap();
    }

    #[test]
    fn locks_are_exclusive_and_waits_are_bounded() {
        let tmp = tempfile::tempdir().unwrap();
        let sd = StateDir::open_unprivileged(&tmp.path().join("state")).unwrap();
        let held = sd.try_lock("x.lock").unwrap().unwrap();
        // flock locks belong to the open file description: a second open conflicts.
        assert!(sd.try_lock("x.lock").unwrap().is_none());
        let start = Instant::now();
        assert!(sd
            .lock_within("x.lock", Duration::from_millis(200))
            .unwrap()
            .is_none());
        assert!(start.elapsed() >= Duration::from_millis(200));
        assert!(start.elapsed() < Duration::from_secs(2));
        // Another name is independent.
        assert!(sd.try_lock("y.lock").unwrap().is_some());
        drop(held);
        assert!(sd
            .lock_within("x.lock", Duration::from_millis(200))
            .unwrap()
            .is_some());
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
        // A symlinked or writable subdirectory is refused too.
        let good = tmp.path().join("good");
        let sd = StateDir::open_unprivileged(&good).unwrap();
        std::os::unix::fs::symlink(&path, good.join("leases")).unwrap();
        assert!(sd.subdir("leases").is_err());
        std::fs::create_dir(good.join("users")).unwrap();
        std::fs::set_permissions(good.join("users"), std::fs::Permissions::from_mode(0o777))
            .unwrap();
        assert!(sd.subdir("users").is_err());
    }

    #[test]
    fn symlinked_files_are_not_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("state");
        let sd = StateDir::open_unprivileged(&path).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", path.join("a")).unwrap();
        assert!(sd.read("a", 1 << 20).is_err());
        std::os::unix::fs::symlink("/etc/passwd", path.join("b.lock")).unwrap();
        assert!(sd.try_lock("b.lock").is_err());
    }
}
