//! Seccomp profiles compiled to classic BPF in the unprivileged supervisor.
//!
//! A [`Profile`] is a default action and a list of rules (system calls,
//! optional argument conditions, an action). It is compiled with
//! `seccompiler` (pure Rust, maintained by the Firecracker project, no C
//! library needed at build or run time): one `seccompiler` filter per action
//! of the profile, in the order the actions first appear, chained so that a
//! call no group matches falls through to the next group and finally to the
//! default action. A hand-written prologue refuses other architectures and
//! the x32 ABI before any group looks at a system call number.
//!
//! The helper receives only the finished program (a bounded list of
//! instructions) and installs it; it never parses a profile.

use std::collections::BTreeMap;

use proto::BpfInstruction;
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

use super::caps::{self, CapSet};
use super::syscalls;
use crate::error::{Error, Result};

/// What the kernel does with a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Allow,
    Errno(u32),
    KillThread,
    KillProcess,
    Trap,
    Log,
}

impl Action {
    fn to_seccompiler(self) -> SeccompAction {
        match self {
            Action::Allow => SeccompAction::Allow,
            Action::Errno(e) => SeccompAction::Errno(e),
            Action::KillThread => SeccompAction::KillThread,
            Action::KillProcess => SeccompAction::KillProcess,
            Action::Trap => SeccompAction::Trap,
            Action::Log => SeccompAction::Log,
        }
    }
}

/// A comparison of one (64-bit) argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Ne,
    Lt,
    Le,
    Eq,
    Ge,
    Gt,
    /// `(arg & mask) == value`.
    MaskedEq {
        mask: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArgCondition {
    /// 0..=5.
    pub index: u8,
    pub op: Op,
    pub value: u64,
}

/// System calls (by number) that take `action` when every condition holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub syscalls: Vec<i64>,
    pub conditions: Vec<ArgCondition>,
    pub action: Action,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub default: Action,
    pub rules: Vec<Rule>,
}

const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JMP_JEQ_K: u16 = 0x15;
const BPF_JMP_JGE_K: u16 = 0x35;
const BPF_JMP_JA: u16 = 0x05;
const BPF_RET_K: u16 = 0x06;
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;
const SECCOMP_DATA_NR: u32 = 0;
const SECCOMP_DATA_ARCH: u32 = 4;
const RET_KILL_PROCESS: u32 = 0x8000_0000;
const RET_ERRNO: u32 = 0x0005_0000;
const RET_TRACE: u32 = 0x7ff0_0000;
/// A return value no profile can produce (TRACE is refused): marks "no
/// match in this group, go on with the next one" while groups are chained.
const CONTINUE: u32 = RET_TRACE | 0xc0de;

fn ins(code: u16, jt: u8, jf: u8, k: u32) -> BpfInstruction {
    BpfInstruction { code, jt, jf, k }
}

/// Other architectures (a 32-bit `int 0x80`) end the process; x32 system
/// calls fail with ENOSYS.
fn prologue() -> Vec<BpfInstruction> {
    vec![
        ins(BPF_LD_W_ABS, 0, 0, SECCOMP_DATA_ARCH),
        ins(BPF_JMP_JEQ_K, 1, 0, AUDIT_ARCH_X86_64),
        ins(BPF_RET_K, 0, 0, RET_KILL_PROCESS),
        ins(BPF_LD_W_ABS, 0, 0, SECCOMP_DATA_NR),
        ins(BPF_JMP_JGE_K, 0, 1, X32_SYSCALL_BIT),
        ins(BPF_RET_K, 0, 0, RET_ERRNO | libc::ENOSYS as u32),
    ]
}

fn condition(c: &ArgCondition) -> Result<SeccompCondition> {
    let (op, value) = match c.op {
        Op::Ne => (SeccompCmpOp::Ne, c.value),
        Op::Lt => (SeccompCmpOp::Lt, c.value),
        Op::Le => (SeccompCmpOp::Le, c.value),
        Op::Eq => (SeccompCmpOp::Eq, c.value),
        Op::Ge => (SeccompCmpOp::Ge, c.value),
        Op::Gt => (SeccompCmpOp::Gt, c.value),
        Op::MaskedEq { mask } => (SeccompCmpOp::MaskedEq(mask), c.value),
    };
    SeccompCondition::new(c.index, SeccompCmpArgLen::Qword, op, value)
        .map_err(|e| Error::user(format!("seccomp profile: argument {}: {e}", c.index)))
}

/// Compile `profile` into one program of at most
/// [`proto::security::MAX_BPF_INSTRUCTIONS`] instructions.
pub fn compile(profile: &Profile) -> Result<Vec<BpfInstruction>> {
    // Actions in order of first appearance; rules with the default action add nothing.
    let mut actions: Vec<Action> = vec![];
    for r in &profile.rules {
        if r.action != profile.default && !actions.contains(&r.action) {
            actions.push(r.action);
        }
    }
    let mut program = prologue();
    for (i, action) in actions.iter().enumerate() {
        let last = i + 1 == actions.len();
        let mut rules: BTreeMap<i64, Option<Vec<SeccompRule>>> = BTreeMap::new();
        for r in profile.rules.iter().filter(|r| r.action == *action) {
            let rule = if r.conditions.is_empty() {
                None
            } else {
                let conds = r.conditions.iter().map(condition).collect::<Result<_>>()?;
                Some(
                    SeccompRule::new(conds)
                        .map_err(|e| Error::user(format!("seccomp profile: {e}")))?,
                )
            };
            for nr in &r.syscalls {
                let entry = rules.entry(*nr).or_insert_with(|| Some(vec![]));
                match (&rule, entry.as_mut()) {
                    // An unconditional rule matches whatever the others say.
                    (None, _) => *entry = None,
                    (Some(rule), Some(list)) => list.push(rule.clone()),
                    (Some(_), None) => {}
                }
            }
        }
        let rules = rules
            .into_iter()
            .map(|(nr, r)| (nr, r.unwrap_or_default()))
            .collect();
        let mismatch = if last {
            profile.default.to_seccompiler()
        } else {
            SeccompAction::Trace(CONTINUE & 0xffff)
        };
        let filter =
            SeccompFilter::new(rules, mismatch, action.to_seccompiler(), TargetArch::x86_64)
                .map_err(|e| Error::user(format!("seccomp profile: {e}")))?;
        let group: BpfProgram = filter
            .try_into()
            .map_err(|e: seccompiler::BackendError| Error::user(format!("seccomp profile: {e}")))?;
        let len = group.len();
        for (at, f) in group.into_iter().enumerate() {
            if !last && f.code == BPF_RET_K && f.k == CONTINUE {
                // Jump to the first instruction of the next group.
                let skip = u32::try_from(len - at - 1)
                    .map_err(|_| Error::user("seccomp profile: program too large"))?;
                program.push(ins(BPF_JMP_JA, 0, 0, skip));
            } else {
                program.push(ins(f.code, f.jt, f.jf, f.k));
            }
        }
    }
    if actions.is_empty() {
        program.push(ins(
            BPF_RET_K,
            0,
            0,
            u32::from(profile.default.to_seccompiler()),
        ));
    }
    if program.len() > proto::security::MAX_BPF_INSTRUCTIONS {
        return Err(Error::user(format!(
            "seccomp profile: the compiled filter has {} instructions, more than the kernel's {}",
            program.len(),
            proto::security::MAX_BPF_INSTRUCTIONS
        )));
    }
    Ok(program)
}

fn nrs(names: &[&str]) -> Vec<i64> {
    names.iter().filter_map(|n| syscalls::number(n)).collect()
}

/// System calls refused to every container (no capability enables them):
/// the kernel keyring is not namespaced, the rest are obsolete interfaces.
const ALWAYS_DENIED: &[&str] = &[
    "keyctl",
    "add_key",
    "request_key",
    "uselib",
    "ustat",
    "sysfs",
    "_sysctl",
    "nfsservctl",
    "vm86",
    "vm86old",
];

/// System calls a container may make only when it holds one of the
/// capabilities listed with them (in its user namespace), as Docker does.
const NEED_CAPABILITY: &[(&[&str], &[&str])] = &[
    (
        &["SYS_ADMIN"],
        &[
            "mount",
            "umount2",
            "pivot_root",
            "unshare",
            "setns",
            "swapon",
            "swapoff",
            "quotactl",
            "quotactl_fd",
            "lookup_dcookie",
            "fsopen",
            "fsmount",
            "fsconfig",
            "fspick",
            "open_tree",
            "move_mount",
            "mount_setattr",
            "fanotify_init",
            "sethostname",
            "setdomainname",
        ],
    ),
    (&["SYS_ADMIN", "DAC_READ_SEARCH"], &["name_to_handle_at"]),
    (&["DAC_READ_SEARCH"], &["open_by_handle_at"]),
    (&["SYS_ADMIN", "BPF"], &["bpf"]),
    (&["SYS_ADMIN", "PERFMON"], &["perf_event_open"]),
    (&["SYS_ADMIN", "SYSLOG"], &["syslog"]),
    (&["SYS_BOOT"], &["reboot", "kexec_load", "kexec_file_load"]),
    (
        &["SYS_MODULE"],
        &["init_module", "finit_module", "delete_module"],
    ),
    (&["SYS_PACCT"], &["acct"]),
    (
        &["SYS_PTRACE"],
        &[
            "process_vm_readv",
            "process_vm_writev",
            "kcmp",
            "userfaultfd",
        ],
    ),
    (&["SYS_RAWIO"], &["iopl", "ioperm"]),
    (
        &["SYS_TIME"],
        &["settimeofday", "clock_settime", "clock_adjtime"],
    ),
    (&["SYS_TTY_CONFIG"], &["vhangup"]),
    (
        &["SYS_NICE"],
        &["mbind", "set_mempolicy", "move_pages", "migrate_pages"],
    ),
];

/// `clone` flags that create namespaces (`CLONE_NEWNS`, `NEWCGROUP`,
/// `NEWUTS`, `NEWIPC`, `NEWUSER`, `NEWPID`, `NEWNET`).
const NAMESPACE_FLAGS: [u64; 7] = [
    0x0002_0000,
    0x0200_0000,
    0x0400_0000,
    0x0800_0000,
    0x1000_0000,
    0x2000_0000,
    0x4000_0000,
];

/// `personality` values that change nothing dangerous: `PER_LINUX`,
/// `UNAME26`, `ADDR_NO_RANDOMIZE` alone and with `UNAME26`, and the query.
const HARMLESS_PERSONALITIES: [u64; 5] = [0, 0x0008, 0x2_0000, 0x2_0008, 0xffff_ffff];

/// The default profile for a container holding `caps`: everything is
/// allowed except what a container without the matching capability has no
/// business calling (see the README's security model for the list).
pub fn default_profile(caps: CapSet) -> Profile {
    let eperm = Action::Errno(libc::EPERM as u32);
    let mut rules = vec![Rule {
        syscalls: nrs(ALWAYS_DENIED),
        conditions: vec![],
        action: eperm,
    }];
    for (needed, calls) in NEED_CAPABILITY {
        if !needed
            .iter()
            .any(|c| caps::by_name(c).is_some_and(|n| caps.has(n)))
        {
            rules.push(Rule {
                syscalls: nrs(calls),
                conditions: vec![],
                action: eperm,
            });
        }
    }
    if !caps.has(caps::SYS_ADMIN) {
        for flag in NAMESPACE_FLAGS {
            rules.push(Rule {
                syscalls: nrs(&["clone"]),
                conditions: vec![ArgCondition {
                    index: 0,
                    op: Op::MaskedEq { mask: flag },
                    value: flag,
                }],
                action: eperm,
            });
        }
    }
    rules.push(Rule {
        syscalls: nrs(&["personality"]),
        conditions: HARMLESS_PERSONALITIES
            .iter()
            .map(|v| ArgCondition {
                index: 0,
                op: Op::Ne,
                value: *v,
            })
            .collect(),
        action: eperm,
    });
    if !caps.has(caps::SYS_ADMIN) {
        // clone3's flags sit in memory the filter cannot read: ENOSYS makes
        // the C library fall back to clone, whose flags are checked above.
        rules.push(Rule {
            syscalls: nrs(&["clone3"]),
            conditions: vec![],
            action: Action::Errno(libc::ENOSYS as u32),
        });
    }
    Profile {
        default: Action::Allow,
        rules,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A classic BPF interpreter for seccomp programs (the subset compilers
    /// emit), to check what a program answers for a call.
    pub fn eval(prog: &[BpfInstruction], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
        let mut data = vec![];
        data.extend_from_slice(&nr.to_ne_bytes());
        data.extend_from_slice(&arch.to_ne_bytes());
        data.extend_from_slice(&0u64.to_ne_bytes());
        for a in args {
            data.extend_from_slice(&a.to_ne_bytes());
        }
        let (mut a, mut x, mut pc) = (0u32, 0u32, 0usize);
        let mut mem = [0u32; 16];
        for _ in 0..100_000 {
            let i = prog[pc];
            let class = i.code & 0x07;
            pc += 1;
            match class {
                0x00 => {
                    // ld
                    match i.code & 0xe0 {
                        0x20 => {
                            let k = i.k as usize;
                            a = u32::from_ne_bytes(data[k..k + 4].try_into().unwrap());
                        }
                        0x00 => a = i.k,
                        0x60 => a = mem[i.k as usize],
                        m => panic!("ld mode {m:#x}"),
                    }
                }
                0x01 => match i.code & 0xe0 {
                    0x00 => x = i.k,
                    0x60 => x = mem[i.k as usize],
                    m => panic!("ldx mode {m:#x}"),
                },
                0x02 => mem[i.k as usize] = a,
                0x03 => mem[i.k as usize] = x,
                0x04 => {
                    let src = if i.code & 0x08 != 0 { x } else { i.k };
                    a = match i.code & 0xf0 {
                        0x50 => a & src,
                        0x40 => a | src,
                        0x00 => a.wrapping_add(src),
                        0x10 => a.wrapping_sub(src),
                        op => panic!("alu {op:#x}"),
                    }
                }
                0x05 => {
                    let src = if i.code & 0x08 != 0 { x } else { i.k };
                    let op = i.code & 0xf0;
                    if op == 0x00 {
                        pc += i.k as usize;
                        continue;
                    }
                    let t = match op {
                        0x10 => a == src,
                        0x20 => a > src,
                        0x30 => a >= src,
                        0x40 => a & src != 0,
                        _ => panic!("jmp {op:#x}"),
                    };
                    pc += if t { i.jt } else { i.jf } as usize;
                }
                0x06 => return i.k,
                0x07 => {
                    if i.code & 0xf8 == 0x00 {
                        x = a
                    } else {
                        a = x
                    }
                }
                _ => unreachable!(),
            }
        }
        panic!("program does not end")
    }

    pub fn answer(prog: &[BpfInstruction], name: &str, args: [u64; 6]) -> u32 {
        let nr = syscalls::number(name).unwrap_or_else(|| panic!("{name}"));
        eval(prog, AUDIT_ARCH_X86_64, nr as u32, args)
    }

    const ALLOW: u32 = 0x7fff_0000;
    const EPERM: u32 = RET_ERRNO | libc::EPERM as u32;
    const ENOSYS: u32 = RET_ERRNO | libc::ENOSYS as u32;

    #[test]
    fn default_profile_denies_what_it_should() {
        let prog = compile(&default_profile(CapSet::default_set())).unwrap();
        // Short, so every system call pays little for it.
        eprintln!("default profile: {} instructions", prog.len());
        assert!(prog.len() < 512, "{}", prog.len());
        for name in [
            "mount",
            "umount2",
            "pivot_root",
            "unshare",
            "setns",
            "keyctl",
            "add_key",
            "bpf",
            "perf_event_open",
            "kexec_load",
            "init_module",
            "reboot",
            "process_vm_readv",
            "open_by_handle_at",
            "clock_settime",
            "settimeofday",
            "iopl",
            "acct",
            "fsopen",
            "move_mount",
            "userfaultfd",
            "syslog",
            "swapon",
        ] {
            assert_eq!(answer(&prog, name, [0; 6]), EPERM, "{name}");
        }
        for name in [
            "read",
            "write",
            "openat",
            "execve",
            "mkdir",
            "ptrace",
            "chroot",
            "setuid",
            "capset",
            "wait4",
            "exit_group",
            "socket",
            "adjtimex",
        ] {
            assert_eq!(answer(&prog, name, [0; 6]), ALLOW, "{name}");
        }
        assert_eq!(answer(&prog, "clone3", [0; 6]), ENOSYS);
        // fork-like clone is fine, namespace flags are not.
        assert_eq!(answer(&prog, "clone", [0x01200011, 0, 0, 0, 0, 0]), ALLOW);
        assert_eq!(
            answer(&prog, "clone", [0x10000000 | 17, 0, 0, 0, 0, 0]),
            EPERM
        );
        assert_eq!(answer(&prog, "clone", [0x40000000, 0, 0, 0, 0, 0]), EPERM);
        assert_eq!(answer(&prog, "personality", [0; 6]), ALLOW);
        assert_eq!(
            answer(&prog, "personality", [0xffff_ffff, 0, 0, 0, 0, 0]),
            ALLOW
        );
        assert_eq!(
            answer(&prog, "personality", [0x0040_0000, 0, 0, 0, 0, 0]),
            EPERM
        );
        // x32 and other architectures.
        assert_eq!(eval(&prog, AUDIT_ARCH_X86_64, 0x4000_0000, [0; 6]), ENOSYS);
        assert_eq!(eval(&prog, 0x4000_0003, 1, [0; 6]), RET_KILL_PROCESS);
    }

    #[test]
    fn added_capabilities_enable_their_calls() {
        let mut caps = CapSet::default_set();
        caps.add(caps::SYS_ADMIN);
        caps.add(caps::by_name("SYS_PTRACE").unwrap());
        let prog = compile(&default_profile(caps)).unwrap();
        for name in ["mount", "unshare", "setns", "process_vm_readv", "kcmp"] {
            assert_eq!(answer(&prog, name, [0; 6]), ALLOW, "{name}");
        }
        assert_eq!(answer(&prog, "clone", [0x10000000, 0, 0, 0, 0, 0]), ALLOW);
        assert_eq!(answer(&prog, "clone3", [0; 6]), ALLOW);
        assert_eq!(answer(&prog, "keyctl", [0; 6]), EPERM);
        assert_eq!(answer(&prog, "reboot", [0; 6]), EPERM);
    }

    #[test]
    fn groups_chain_to_the_default() {
        let p = Profile {
            default: Action::Errno(1),
            rules: vec![
                Rule {
                    syscalls: nrs(&["mkdir"]),
                    conditions: vec![],
                    action: Action::Errno(13),
                },
                Rule {
                    syscalls: nrs(&["read", "write"]),
                    conditions: vec![],
                    action: Action::Allow,
                },
                Rule {
                    syscalls: nrs(&["kill"]),
                    conditions: vec![ArgCondition {
                        index: 1,
                        op: Op::Eq,
                        value: 0,
                    }],
                    action: Action::Allow,
                },
            ],
        };
        let prog = compile(&p).unwrap();
        assert_eq!(answer(&prog, "mkdir", [0; 6]), RET_ERRNO | 13);
        assert_eq!(answer(&prog, "read", [0; 6]), ALLOW);
        assert_eq!(answer(&prog, "kill", [1, 0, 0, 0, 0, 0]), ALLOW);
        assert_eq!(answer(&prog, "kill", [1, 9, 0, 0, 0, 0]), RET_ERRNO | 1);
        assert_eq!(answer(&prog, "openat", [0; 6]), RET_ERRNO | 1);
        let none = compile(&Profile {
            default: Action::Allow,
            rules: vec![],
        })
        .unwrap();
        assert_eq!(answer(&none, "mount", [0; 6]), ALLOW);
    }
}
