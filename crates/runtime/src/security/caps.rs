//! Capability names for `--cap-add` / `--cap-drop`.

use crate::error::{Error, Result};

/// Names by number (`CAP_` left out), as in `<linux/capability.h>`.
const NAMES: [&str; proto::security::LAST_CAPABILITY as usize + 1] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

pub const SYS_ADMIN: u32 = 21;

/// The number of a capability named with or without `CAP_`, in any case.
pub fn by_name(name: &str) -> Option<u32> {
    let upper = name.to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    NAMES.iter().position(|n| *n == bare).map(|i| i as u32)
}

/// A set of capabilities (bit n = capability n).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapSet(pub u64);

impl CapSet {
    pub fn default_set() -> CapSet {
        CapSet(
            proto::security::DEFAULT_CAPABILITIES
                .iter()
                .fold(0, |m, c| m | 1 << c),
        )
    }

    fn all() -> CapSet {
        CapSet((1 << (proto::security::LAST_CAPABILITY + 1)) - 1)
    }

    pub fn has(self, cap: u32) -> bool {
        self.0 & (1 << cap) != 0
    }

    pub fn add(&mut self, cap: u32) {
        self.0 |= 1 << cap;
    }

    /// The default set with `--cap-drop` applied, then `--cap-add` (as
    /// podman: `--cap-drop ALL --cap-add X` leaves only X).
    pub fn from_flags(add: &[String], drop: &[String]) -> Result<CapSet> {
        let mut set = CapSet::default_set();
        for d in drop {
            match parse(d)? {
                None => set = CapSet(0),
                Some(c) => set.0 &= !(1 << c),
            }
        }
        for a in add {
            match parse(a)? {
                None => set = CapSet::all(),
                Some(c) => set.add(c),
            }
        }
        Ok(set)
    }

    /// Names, for messages and tests.
    pub fn names(self) -> Vec<&'static str> {
        (0..NAMES.len() as u32)
            .filter(|c| self.has(*c))
            .map(|c| NAMES[c as usize])
            .collect()
    }
}

/// `ALL` is `None`; a name is its number; anything else is an error.
fn parse(name: &str) -> Result<Option<u32>> {
    if name.eq_ignore_ascii_case("ALL") {
        return Ok(None);
    }
    by_name(name).map(Some).ok_or_else(|| {
        Error::user(format!(
            "unknown capability {name:?}: expected a name such as NET_ADMIN or CAP_NET_ADMIN, or ALL"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn names_with_or_without_prefix_in_any_case() {
        assert_eq!(by_name("net_raw"), Some(13));
        assert_eq!(by_name("CAP_NET_RAW"), Some(13));
        assert_eq!(by_name("Cap_Sys_Admin"), Some(SYS_ADMIN));
        assert_eq!(by_name("CHECKPOINT_RESTORE"), Some(40));
        assert_eq!(by_name("NOPE"), None);
        assert_eq!(by_name("CAP_"), None);
    }

    #[test]
    fn default_set_is_the_documented_one() {
        assert_eq!(
            CapSet::default_set().names(),
            [
                "CHOWN",
                "DAC_OVERRIDE",
                "FOWNER",
                "FSETID",
                "KILL",
                "SETGID",
                "SETUID",
                "SETPCAP",
                "NET_BIND_SERVICE",
                "NET_RAW",
                "SYS_CHROOT",
                "MKNOD",
                "AUDIT_WRITE",
                "SETFCAP"
            ]
        );
    }

    #[test]
    fn add_and_drop() {
        let set = CapSet::from_flags(&s(&["sys_admin"]), &s(&["NET_RAW", "cap_mknod"])).unwrap();
        assert!(set.has(SYS_ADMIN) && !set.has(13) && !set.has(27) && set.has(0));
        let only = CapSet::from_flags(&s(&["NET_ADMIN"]), &s(&["all"])).unwrap();
        assert_eq!(only.names(), ["NET_ADMIN"]);
        assert_eq!(CapSet::from_flags(&[], &s(&["ALL"])).unwrap().0, 0);
        assert_eq!(
            CapSet::from_flags(&s(&["ALL"]), &[]).unwrap().0,
            (1 << 41) - 1
        );
        let err = CapSet::from_flags(&s(&["NET_FOO"]), &[]).unwrap_err();
        assert!(err.to_string().contains("\"NET_FOO\""), "{err}");
    }
}
