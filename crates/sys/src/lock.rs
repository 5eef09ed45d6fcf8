//! Locks that nobody can hold us up with for ever.
//!
//! Every helper runs as its caller's uid, so its caller can stop it
//! (SIGSTOP) while it holds a lock. A lock shared with other callers is
//! therefore only ever waited for up to a deadline: `flock(LOCK_NB)` retried,
//! then "busy" instead of an unbounded wait.

use std::io;
use std::ops::Deref;
use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, Instant};

/// How often a bounded wait tries again.
const POLL: Duration = Duration::from_millis(20);

/// An exclusive `flock` on `F`, released when dropped.
#[derive(Debug)]
pub struct Locked<F: AsFd> {
    file: F,
}

impl<F: AsFd> Deref for Locked<F> {
    type Target = F;

    fn deref(&self) -> &F {
        &self.file
    }
}

impl<F: AsFd> Drop for Locked<F> {
    fn drop(&mut self) {
        // SAFETY: flock on a descriptor we hold. Closing it would release the
        // lock too, unless a copy of the descriptor lives on elsewhere.
        unsafe { libc::flock(self.file.as_fd().as_raw_fd(), libc::LOCK_UN) };
    }
}

fn try_exclusive(file: &impl AsFd) -> io::Result<bool> {
    loop {
        // SAFETY: flock on a descriptor the caller holds.
        if unsafe { libc::flock(file.as_fd().as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(true);
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EWOULDBLOCK) => return Ok(false),
            _ => return Err(e),
        }
    }
}

/// Take an exclusive `flock` on `file`, trying again until `wait` has passed
/// (`Duration::ZERO`: once). `Ok(None)` when another holder still has it then.
pub fn exclusive_within<F: AsFd>(file: F, wait: Duration) -> io::Result<Option<Locked<F>>> {
    let deadline = Instant::now() + wait;
    loop {
        if try_exclusive(&file)? {
            return Ok(Some(Locked { file }));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(POLL);
    }
}

/// Take an exclusive `flock` on `file`, waiting as long as it takes: only
/// for locks nobody else can hold (a user's own state).
pub fn exclusive<F: AsFd>(file: F) -> io::Result<Locked<F>> {
    loop {
        // SAFETY: flock on a descriptor we hold.
        if unsafe { libc::flock(file.as_fd().as_raw_fd(), libc::LOCK_EX) } == 0 {
            return Ok(Locked { file });
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;

    #[test]
    fn a_held_lock_gives_busy_within_the_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let holder = exclusive_within(File::create(&path).unwrap(), Duration::ZERO)
            .unwrap()
            .unwrap();
        let start = Instant::now();
        let r = exclusive_within(File::open(&path).unwrap(), Duration::from_millis(200)).unwrap();
        assert!(r.is_none());
        assert!(start.elapsed() >= Duration::from_millis(200));
        assert!(start.elapsed() < Duration::from_secs(2));
        drop(holder);
        assert!(exclusive_within(File::open(&path).unwrap(), Duration::ZERO)
            .unwrap()
            .is_some());
    }

    #[test]
    fn dropping_the_guard_unlocks_even_with_a_copy_of_the_descriptor() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let file = File::create(&path).unwrap();
        let copy = file.try_clone().unwrap();
        let held = exclusive(file).unwrap();
        drop(held);
        assert!(exclusive_within(File::open(&path).unwrap(), Duration::ZERO)
            .unwrap()
            .is_some());
        drop(copy);
    }
}
