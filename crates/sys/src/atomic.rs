//! Replacing a file atomically and durably.

use std::ffi::CString;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use crate::cstring;

fn last_os_error_unless(ignored: libc::c_int) -> io::Result<()> {
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(ignored) {
        Ok(())
    } else {
        Err(e)
    }
}

/// Replace `name` in the directory `dir` with `bytes`: remove a `name.tmp`
/// left by a crash, create `name.tmp` (`O_EXCL`, no symlink followed, mode
/// `mode`), let `prepare` adjust it (e.g. its owner), write and fsync it,
/// rename it over `name`, fsync the directory. Readers see the old or the
/// new contents, never a mix, and the new ones survive a crash once this
/// returns. The caller makes sure it is the only writer of `name`.
pub fn write_at(
    dir: impl AsFd,
    name: &str,
    bytes: &[u8],
    mode: libc::mode_t,
    prepare: impl FnOnce(BorrowedFd<'_>) -> io::Result<()>,
) -> io::Result<()> {
    let dir = dir.as_fd().as_raw_fd();
    let temp: CString = cstring(&format!("{name}.tmp"))?;
    let target = cstring(name)?;
    // SAFETY: unlinkat on the caller's directory with a NUL-terminated name.
    if unsafe { libc::unlinkat(dir, temp.as_ptr(), 0) } != 0 {
        last_os_error_unless(libc::ENOENT)?;
    }
    let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: openat on the caller's directory with a NUL-terminated name.
    let fd = unsafe { libc::openat(dir, temp.as_ptr(), flags, mode as libc::c_uint) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new descriptor that we own.
    let mut file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    prepare(file.as_fd())?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    // SAFETY: renameat within the caller's directory.
    if unsafe { libc::renameat(dir, temp.as_ptr(), dir, target.as_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    sync_dir(dir)
}

/// Remove `name` from `dir` (a missing one is fine) and make the removal durable.
pub fn remove_at(dir: impl AsFd, name: &str) -> io::Result<()> {
    let dir = dir.as_fd().as_raw_fd();
    let cname = cstring(name)?;
    // SAFETY: unlinkat on the caller's directory with a NUL-terminated name.
    if unsafe { libc::unlinkat(dir, cname.as_ptr(), 0) } != 0 {
        last_os_error_unless(libc::ENOENT)?;
    }
    sync_dir(dir)
}

fn sync_dir(dir: libc::c_int) -> io::Result<()> {
    // SAFETY: fsync on the caller's directory descriptor.
    if unsafe { libc::fsync(dir) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn replaces_the_file_and_leaves_no_temporary() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = std::fs::File::open(tmp.path()).unwrap();
        std::fs::write(tmp.path().join("r.tmp"), b"left by a crash").unwrap();
        write_at(&dir, "r", b"one", 0o600, |_| Ok(())).unwrap();
        write_at(&dir, "r", b"two", 0o600, |_| Ok(())).unwrap();
        assert_eq!(std::fs::read(tmp.path().join("r")).unwrap(), b"two");
        assert!(!tmp.path().join("r.tmp").exists());
        let mode = std::fs::metadata(tmp.path().join("r"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        remove_at(&dir, "r").unwrap();
        remove_at(&dir, "r").unwrap();
        assert!(!tmp.path().join("r").exists());
    }

    #[test]
    fn a_failing_prepare_writes_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = std::fs::File::open(tmp.path()).unwrap();
        let e = write_at(&dir, "r", b"x", 0o600, |_| Err(io::Error::other("no"))).unwrap_err();
        assert_eq!(e.to_string(), "no");
        assert!(!tmp.path().join("r").exists());
    }
}
