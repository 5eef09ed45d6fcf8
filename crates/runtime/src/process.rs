//! Identifying processes across pid reuse: a pid plus its start time.

use serde::{Deserialize, Serialize};
pub use tupper_sys::pidfd::PidFd;
use tupper_sys::process::start_time;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessId {
    pub pid: i32,
    /// Field 22 of `/proc/<pid>/stat` (clock ticks since boot).
    pub start_time: u64,
}

impl ProcessId {
    pub fn of(pid: i32) -> Option<ProcessId> {
        start_time(pid).map(|start_time| ProcessId { pid, start_time })
    }

    pub fn current() -> Option<ProcessId> {
        Self::of(std::process::id() as i32)
    }

    /// The same process still exists (it may be a zombie).
    pub fn alive(&self) -> bool {
        start_time(self.pid) == Some(self.start_time)
    }

    /// A pidfd for this process, if it is still the same one.
    pub fn pidfd(&self) -> Option<PidFd> {
        let fd = PidFd::open(self.pid).ok()?;
        self.alive().then_some(fd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_alive_and_a_changed_start_time_is_not() {
        let me = ProcessId::current().unwrap();
        assert!(me.alive());
        let other = ProcessId {
            pid: me.pid,
            start_time: me.start_time + 1,
        };
        assert!(!other.alive());
        assert!(ProcessId::of(i32::MAX).is_none());
    }
}
