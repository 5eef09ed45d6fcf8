//! Locks that nobody can hold us up with for ever.
//!
//! Every helper runs as its caller's uid, so its caller can stop it
//! (SIGSTOP) while it holds a lock. A lock shared with other callers is
//! therefore only ever waited for up to a deadline: `flock(LOCK_NB)` retried,
//! then a "busy, try again" error instead of an unbounded wait.

use std::fs::File;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use crate::error::{Result, StorageError};

/// How long a command waits for a lock held by another command.
pub const WAIT: Duration = Duration::from_secs(3);
const POLL: Duration = Duration::from_millis(25);

/// Take an exclusive `flock` on `file`, waiting at most `wait`; `busy` is the
/// error when another process still holds it then.
pub fn exclusive_within(
    file: File,
    wait: Duration,
    busy: impl FnOnce() -> StorageError,
) -> Result<Flock<File>> {
    let deadline = Instant::now() + wait;
    let mut file = file;
    loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(locked) => return Ok(locked),
            Err((f, Errno::EWOULDBLOCK)) | Err((f, Errno::EINTR)) => {
                if Instant::now() >= deadline {
                    return Err(busy());
                }
                file = f;
                std::thread::sleep(POLL);
            }
            Err((_, e)) => return Err(StorageError::sys("cannot take a lock")(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_lock_gives_busy_within_the_deadline() {
        let path = std::env::temp_dir().join(format!("tupper-lock-test-{}", std::process::id()));
        let holder = Flock::lock(
            File::create(&path).unwrap(),
            FlockArg::LockExclusiveNonblock,
        )
        .unwrap();
        let start = Instant::now();
        let r = exclusive_within(
            File::open(&path).unwrap(),
            Duration::from_millis(200),
            || StorageError::Busy("busy".into()),
        );
        assert!(matches!(r, Err(StorageError::Busy(_))));
        assert!(start.elapsed() < Duration::from_secs(2));
        drop(holder);
        assert!(
            exclusive_within(File::open(&path).unwrap(), Duration::ZERO, || {
                StorageError::Busy("busy".into())
            })
            .is_ok()
        );
        let _ = std::fs::remove_file(&path);
    }
}
