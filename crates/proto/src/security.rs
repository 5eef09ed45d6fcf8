//! The privilege part of a [`crate::SpawnRequest`]: what the container's
//! process may do (capabilities, `no_new_privs`, seccomp), as whom it runs,
//! and how pid 1 and the network are arranged. Everything here is decided by
//! the unprivileged supervisor (profiles are parsed and compiled there); the
//! helper only validates the result and applies it.

use serde::{Deserialize, Serialize};

/// One classic BPF instruction (`struct sock_filter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BpfInstruction {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

/// The kernel's limit on a classic BPF program (`BPF_MAXINSNS`).
pub const MAX_BPF_INSTRUCTIONS: usize = 4096;

/// Highest capability number a request may name (`CAP_CHECKPOINT_RESTORE`).
pub const LAST_CAPABILITY: u32 = 40;

/// Longest `USER[:GROUP]` accepted.
pub const MAX_USER_SPEC_LEN: usize = 256;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpawnSecurity {
    /// Set `no_new_privs` before the command runs (off by default, as in
    /// podman: setuid and file-capability binaries of the image work).
    pub no_new_privs: bool,
    /// Seccomp filter the init installs last before `execve`; `None` runs
    /// the command unconfined.
    pub seccomp: Option<Vec<BpfInstruction>>,
    /// Capabilities (bit n = capability n) of the container's root in its
    /// user namespace; `None` is the documented default set.
    pub capabilities: Option<u64>,
    /// `USER[:GROUP]`, names or numbers, resolved by the init from the
    /// container's own `/etc/passwd` and `/etc/group`; `None` is root.
    pub user: Option<String>,
    /// pid 1 is a small reaper that forwards signals to the command.
    pub init: bool,
    /// Share the caller's network namespace (no `CLONE_NEWNET`, no `eth0`).
    pub host_network: bool,
}

/// The capabilities a container's root holds by default, by number:
/// `CHOWN DAC_OVERRIDE FSETID FOWNER MKNOD NET_RAW SETGID SETUID SETFCAP
/// SETPCAP NET_BIND_SERVICE SYS_CHROOT KILL AUDIT_WRITE` (the ns helper's
/// `DEFAULT_CAPS`, checked by a test there).
pub const DEFAULT_CAPABILITIES: [u32; 14] = [0, 1, 4, 3, 27, 13, 6, 7, 31, 8, 10, 18, 5, 29];
