//! The container lifecycle as an explicit state machine:
//!
//! ```text
//! created ──start──▶ running ──(exit, stop, kill)──▶ stopped ──rm──▶ removed
//!    │                  │                                ▲
//!    └──────────────────┴────────── rm -f ───────────────┘ (then removed)
//! ```
//!
//! [`State::of`] reads the state of a record; [`State::allows`] says which
//! command each state accepts. `rm` and `ps` decide with it; a per-container
//! monitor that outlives the command will drive the same transitions.

use crate::records::{Record, Status};

/// Where a container is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Its supervisor is setting it up; the command has not started yet.
    Created,
    /// Its command runs, watched by its supervisor.
    Running,
    /// Its command ended (or its supervisor is gone, so it cannot be
    /// running any more); its root filesystem may still exist.
    Stopped,
    /// Its root filesystem and record are gone.
    Removed,
}

/// The commands that act on one container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Start,
    Stop,
    Kill,
    /// `rm` without `-f`.
    Rm,
    /// `rm -f`: kills a running container first.
    RmForce,
    /// Listed by `ps`.
    Ps,
}

impl State {
    /// The state of the container a record describes. A container whose
    /// supervisor is gone is stopped whatever its record last said: the
    /// supervisor's death kills its init.
    pub fn of(record: &Record) -> State {
        match record.status {
            Status::Exited(_) => State::Stopped,
            _ if !record.supervisor.alive() => State::Stopped,
            Status::Creating => State::Created,
            Status::Running => State::Running,
        }
    }

    /// Whether `command` may act on a container in this state.
    pub fn allows(self, command: Command) -> bool {
        use Command::*;
        match self {
            State::Created => matches!(command, Start | Stop | Kill | RmForce | Ps),
            State::Running => matches!(command, Stop | Kill | RmForce | Ps),
            State::Stopped => matches!(command, Start | Rm | RmForce | Ps),
            State::Removed => false,
        }
    }

    /// The state `command` leads to from this one, `None` when not allowed.
    pub fn after(self, command: Command) -> Option<State> {
        if !self.allows(command) {
            return None;
        }
        Some(match command {
            Command::Start => State::Running,
            Command::Stop | Command::Kill => State::Stopped,
            Command::Rm | Command::RmForce => State::Removed,
            Command::Ps => self,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::ProcessId;

    const ALL: [Command; 6] = [
        Command::Start,
        Command::Stop,
        Command::Kill,
        Command::Rm,
        Command::RmForce,
        Command::Ps,
    ];

    fn record(status: Status, supervisor: ProcessId) -> Record {
        Record {
            version: crate::records::RECORD_VERSION,
            id: "0123456789abcdef0123456789abcdef".into(),
            name: "n".into(),
            image: "busybox".into(),
            command: vec!["true".into()],
            created: 0,
            remove_on_exit: false,
            status,
            supervisor,
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

    #[test]
    fn each_state_allows_exactly_its_commands() {
        let allowed = |s: State| {
            ALL.iter()
                .copied()
                .filter(|c| s.allows(*c))
                .collect::<Vec<_>>()
        };
        use Command::*;
        assert_eq!(allowed(State::Created), [Start, Stop, Kill, RmForce, Ps]);
        assert_eq!(allowed(State::Running), [Stop, Kill, RmForce, Ps]);
        assert_eq!(allowed(State::Stopped), [Start, Rm, RmForce, Ps]);
        assert_eq!(allowed(State::Removed), []);
    }

    #[test]
    fn a_running_container_needs_force_to_be_removed() {
        assert_eq!(State::Running.after(Command::Rm), None);
        assert_eq!(State::Running.after(Command::RmForce), Some(State::Removed));
        assert_eq!(State::Stopped.after(Command::Rm), Some(State::Removed));
    }

    #[test]
    fn transitions_follow_the_lifecycle() {
        assert_eq!(State::Created.after(Command::Start), Some(State::Running));
        assert_eq!(State::Running.after(Command::Stop), Some(State::Stopped));
        assert_eq!(State::Running.after(Command::Kill), Some(State::Stopped));
        assert_eq!(State::Running.after(Command::Start), None);
        assert_eq!(State::Stopped.after(Command::Stop), None);
        assert_eq!(State::Removed.after(Command::Ps), None);
        assert_eq!(State::Running.after(Command::Ps), Some(State::Running));
    }

    #[test]
    fn the_state_of_a_record() {
        let me = ProcessId::current().unwrap();
        let gone = ProcessId {
            pid: me.pid,
            start_time: me.start_time + 1,
        };
        assert_eq!(State::of(&record(Status::Creating, me)), State::Created);
        assert_eq!(State::of(&record(Status::Running, me)), State::Running);
        assert_eq!(State::of(&record(Status::Exited(0), me)), State::Stopped);
        // A supervisor that is gone took its container with it.
        assert_eq!(State::of(&record(Status::Running, gone)), State::Stopped);
        assert_eq!(State::of(&record(Status::Creating, gone)), State::Stopped);
    }
}
