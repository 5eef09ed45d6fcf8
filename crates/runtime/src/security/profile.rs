//! Docker/OCI-format JSON seccomp profiles (`--security-opt seccomp=FILE`),
//! read into a [`Profile`] for [`super::seccomp::compile`].
//!
//! Supported: `defaultAction`, `defaultErrnoRet`, `architectures` (x86_64
//! must be among them; other architectures are always refused by the
//! filter), `archMap` (only its x86_64 entry is read), `syscalls` entries
//! with `names` (or `name`), `action`, `errnoRet`, `args` (`index`,
//! `value`, `valueTwo`, `op`), and `includes`/`excludes` on capabilities,
//! architectures and `minKernel`. System call names x86_64 does not have are
//! skipped, as other runtimes do. Notify, trace and filter flags are refused
//! with a message, as is anything else the profile holds.

use std::io::Read;

use serde::Deserialize;

use super::caps::{self, CapSet};
use super::seccomp::{Action, ArgCondition, Op, Profile, Rule};
use super::syscalls;
use crate::error::{Error, Result};

/// Largest profile file read (Docker's default profile is about 20 KiB).
pub const MAX_PROFILE_BYTES: u64 = 1 << 20;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Json {
    default_action: String,
    default_errno_ret: Option<u32>,
    #[serde(default)]
    architectures: Vec<String>,
    #[serde(default)]
    arch_map: Vec<ArchMap>,
    #[serde(default)]
    syscalls: Vec<Entry>,
    #[serde(default)]
    flags: Vec<String>,
    listener_path: Option<String>,
    #[serde(rename = "listenerMetadata")]
    _listener_metadata: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ArchMap {
    architecture: String,
    #[serde(default)]
    sub_architectures: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Entry {
    #[serde(default)]
    names: Vec<String>,
    name: Option<String>,
    action: String,
    errno_ret: Option<u32>,
    #[serde(default)]
    args: Vec<Arg>,
    #[serde(rename = "comment")]
    _comment: Option<String>,
    #[serde(default)]
    includes: Filter,
    #[serde(default)]
    excludes: Filter,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Filter {
    #[serde(default)]
    arches: Vec<String>,
    #[serde(default)]
    caps: Vec<String>,
    min_kernel: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Arg {
    index: u32,
    value: u64,
    #[serde(default)]
    value_two: u64,
    op: String,
}

fn bad(msg: impl std::fmt::Display) -> Error {
    Error::user(format!("seccomp profile: {msg}"))
}

fn action(name: &str, errno: Option<u32>) -> Result<Action> {
    let errno = errno.unwrap_or(libc::EPERM as u32);
    if errno > 4095 {
        return Err(bad(format!("errno {errno} is out of range (0 to 4095)")));
    }
    Ok(match name {
        "SCMP_ACT_ALLOW" => Action::Allow,
        "SCMP_ACT_ERRNO" => Action::Errno(errno),
        "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD" => Action::KillThread,
        "SCMP_ACT_KILL_PROCESS" => Action::KillProcess,
        "SCMP_ACT_TRAP" => Action::Trap,
        "SCMP_ACT_LOG" => Action::Log,
        "SCMP_ACT_TRACE" | "SCMP_ACT_NOTIFY" => {
            return Err(bad(format!(
                "action {name} is not supported (no tracer or listener is attached to containers)"
            )))
        }
        other => return Err(bad(format!("unknown action {other:?}"))),
    })
}

fn is_x86_64(arch: &str) -> bool {
    matches!(arch, "SCMP_ARCH_X86_64" | "amd64" | "x86_64")
}

/// `"5.8"` → `(5, 8)`.
fn kernel_version(s: &str) -> Option<(u32, u32)> {
    let mut it = s.split(['.', '-']);
    let major = it.next()?.parse().ok()?;
    let minor = it.next().map_or(Some(0), |m| m.parse().ok())?;
    Some((major, minor))
}

/// The running kernel's version.
pub fn running_kernel() -> (u32, u32) {
    nix::sys::utsname::uname()
        .ok()
        .and_then(|u| kernel_version(&u.release().to_string_lossy()))
        .unwrap_or((0, 0))
}

/// Does an entry apply to a container with `caps` on this kernel?
fn applies(e: &Entry, caps: CapSet, kernel: (u32, u32)) -> Result<bool> {
    let cap = |n: &String| caps::by_name(n).ok_or_else(|| bad(format!("unknown capability {n:?}")));
    for c in &e.includes.caps {
        if !caps.has(cap(c)?) {
            return Ok(false);
        }
    }
    if !e.includes.arches.is_empty() && !e.includes.arches.iter().any(|a| is_x86_64(a)) {
        return Ok(false);
    }
    if let Some(min) = &e.includes.min_kernel {
        let min = kernel_version(min).ok_or_else(|| bad(format!("bad minKernel {min:?}")))?;
        if kernel < min {
            return Ok(false);
        }
    }
    for c in &e.excludes.caps {
        if caps.has(cap(c)?) {
            return Ok(false);
        }
    }
    if e.excludes.arches.iter().any(|a| is_x86_64(a)) {
        return Ok(false);
    }
    if e.excludes.min_kernel.is_some() {
        return Err(bad("excludes.minKernel is not supported"));
    }
    Ok(true)
}

fn condition(a: &Arg) -> Result<ArgCondition> {
    let index = u8::try_from(a.index)
        .ok()
        .filter(|i| *i <= 5)
        .ok_or_else(|| {
            bad(format!(
                "argument index {} (system calls have 6: 0 to 5)",
                a.index
            ))
        })?;
    let (op, value) = match a.op.as_str() {
        "SCMP_CMP_NE" => (Op::Ne, a.value),
        "SCMP_CMP_LT" => (Op::Lt, a.value),
        "SCMP_CMP_LE" => (Op::Le, a.value),
        "SCMP_CMP_EQ" => (Op::Eq, a.value),
        "SCMP_CMP_GE" => (Op::Ge, a.value),
        "SCMP_CMP_GT" => (Op::Gt, a.value),
        "SCMP_CMP_MASKED_EQ" => (Op::MaskedEq { mask: a.value }, a.value_two),
        other => return Err(bad(format!("unknown comparison {other:?}"))),
    };
    Ok(ArgCondition { index, op, value })
}

/// Parse a profile for a container holding `caps`.
pub fn parse(text: &str, caps: CapSet, kernel: (u32, u32)) -> Result<Profile> {
    let json: Json = serde_json::from_str(text).map_err(bad)?;
    if !json.flags.is_empty() {
        return Err(bad(format!("flags {:?} are not supported", json.flags)));
    }
    if json.listener_path.as_deref().is_some_and(|p| !p.is_empty()) {
        return Err(bad("listenerPath is not supported"));
    }
    let mut arches = json.architectures.clone();
    for m in &json.arch_map {
        arches.push(m.architecture.clone());
        arches.extend(m.sub_architectures.iter().cloned());
    }
    if !arches.is_empty() && !arches.iter().any(|a| is_x86_64(a)) {
        return Err(bad(format!(
            "architectures {arches:?} do not include SCMP_ARCH_X86_64, the only one containers run"
        )));
    }
    let default = action(&json.default_action, json.default_errno_ret)?;
    let mut rules = vec![];
    for e in &json.syscalls {
        let act = action(&e.action, e.errno_ret)?;
        let conditions = e.args.iter().map(condition).collect::<Result<Vec<_>>>()?;
        if !applies(e, caps, kernel)? {
            continue;
        }
        let names = e.names.iter().chain(e.name.iter());
        let nrs: Vec<i64> = names.filter_map(|n| syscalls::number(n)).collect();
        if nrs.is_empty() {
            continue;
        }
        rules.push(Rule {
            syscalls: nrs,
            conditions,
            action: act,
        });
    }
    Ok(Profile { default, rules })
}

/// Read a profile file the caller named (bounded) and parse it.
pub fn load(path: &str, caps: CapSet) -> Result<Profile> {
    let file = std::fs::File::open(path)
        .map_err(|e| Error::io(format!("open the seccomp profile {path}"), e))?;
    let mut text = String::new();
    file.take(MAX_PROFILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| Error::io(format!("read the seccomp profile {path}"), e))?;
    if text.len() as u64 > MAX_PROFILE_BYTES {
        return Err(bad(format!(
            "{path} is larger than {MAX_PROFILE_BYTES} bytes"
        )));
    }
    parse(&text, caps, running_kernel()).map_err(|e| match e {
        Error::User(m) => Error::user(format!("{path}: {m}")),
        other => other,
    })
}

#[cfg(test)]
mod tests {
    use super::super::seccomp::{compile, tests::answer};
    use super::*;

    const ALLOW: u32 = 0x7fff_0000;

    fn p(text: &str) -> Result<Profile> {
        parse(text, CapSet::default_set(), (6, 1))
    }

    #[test]
    fn docker_style_profile() {
        let text = r#"{
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 1,
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]}],
            "syscalls": [
                {"names": ["read", "write", "exit_group", "socketcall"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 8, "valueTwo": 0, "op": "SCMP_CMP_EQ"}]},
                {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}],
                 "excludes": {"caps": ["CAP_SYS_ADMIN"]}, "comment": "no namespaces"},
                {"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
                {"names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["amd64"]}},
                {"names": ["s390_pci_mmio_read"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["s390x"]}},
                {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
                {"names": ["bpf"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "99.0"}}
            ]
        }"#;
        let profile = p(text).unwrap();
        let prog = compile(&profile).unwrap();
        assert_eq!(answer(&prog, "read", [0; 6]), ALLOW);
        assert_eq!(answer(&prog, "arch_prctl", [0; 6]), ALLOW);
        assert_eq!(answer(&prog, "mount", [0; 6]), 0x0005_0001);
        assert_eq!(answer(&prog, "bpf", [0; 6]), 0x0005_0001);
        assert_eq!(answer(&prog, "clone3", [0; 6]), 0x0005_0026);
        assert_eq!(answer(&prog, "personality", [8, 0, 0, 0, 0, 0]), ALLOW);
        assert_eq!(
            answer(&prog, "personality", [9, 0, 0, 0, 0, 0]),
            0x0005_0001
        );
        assert_eq!(answer(&prog, "clone", [17, 0, 0, 0, 0, 0]), ALLOW);
        assert_eq!(
            answer(&prog, "clone", [0x1000_0011, 0, 0, 0, 0, 0]),
            0x0005_0001
        );
        assert_eq!(answer(&prog, "mkdir", [0; 6]), 0x0005_0001);
        // With SYS_ADMIN the clone rule is excluded and mount included.
        let mut caps = CapSet::default_set();
        caps.add(caps::SYS_ADMIN);
        let prog = compile(&parse(text, caps, (6, 1)).unwrap()).unwrap();
        assert_eq!(answer(&prog, "mount", [0; 6]), ALLOW);
    }

    #[test]
    fn deny_one_call() {
        let prog = compile(
            &p(r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO"}]}"#)
                .unwrap(),
        )
        .unwrap();
        assert_eq!(answer(&prog, "mkdir", [0; 6]), 0x0005_0001);
        assert_eq!(answer(&prog, "mkdirat", [0; 6]), 0x0005_0001);
        assert_eq!(answer(&prog, "openat", [0; 6]), ALLOW);
    }

    #[test]
    fn hostile_and_unsupported_profiles_are_refused_with_a_message() {
        let many: Vec<String> = (0..3000)
            .map(|i| {
                format!(r#"{{"names":["kill"],"action":"SCMP_ACT_ALLOW","args":[{{"index":1,"value":{i},"op":"SCMP_CMP_EQ"}}]}}"#)
            })
            .collect();
        let huge = format!(
            r#"{{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{}]}}"#,
            many.join(",")
        );
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let cases: Vec<(&str, String)> = vec![
            ("expected", "garbage\u{0}\u{1}".into()),
            ("EOF", r#"{"defaultAction":"#.into()),
            ("invalid type", deep),
            ("missing field `defaultAction`", "{}".into()),
            ("unknown field `whatever`", r#"{"defaultAction":"SCMP_ACT_ALLOW","whatever":1}"#.into()),
            ("unknown action", r#"{"defaultAction":"SCMP_ACT_MAYBE"}"#.into()),
            ("not supported", r#"{"defaultAction":"SCMP_ACT_NOTIFY"}"#.into()),
            ("not supported", r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["read"],"action":"SCMP_ACT_TRACE"}]}"#.into()),
            ("not supported", r#"{"defaultAction":"SCMP_ACT_ALLOW","flags":["SECCOMP_FILTER_FLAG_LOG"]}"#.into()),
            ("not supported", r#"{"defaultAction":"SCMP_ACT_ALLOW","listenerPath":"/x"}"#.into()),
            ("SCMP_ARCH_X86_64", r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_AARCH64"]}"#.into()),
            ("argument index 6", r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["read"],"action":"SCMP_ACT_ERRNO","args":[{"index":6,"value":0,"op":"SCMP_CMP_EQ"}]}]}"#.into()),
            ("unknown comparison", r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["read"],"action":"SCMP_ACT_ERRNO","args":[{"index":0,"value":0,"op":"SCMP_CMP_XX"}]}]}"#.into()),
            ("errno 70000", r#"{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":70000}"#.into()),
            ("unknown capability", r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["read"],"action":"SCMP_ACT_ERRNO","includes":{"caps":["CAP_FLY"]}}]}"#.into()),
            ("too many BPF instructions", huge),
        ];
        for (want, text) in cases {
            let err = p(&text).and_then(|prof| compile(&prof).map(|_| ()));
            let msg = err.expect_err(want).to_string();
            assert!(msg.starts_with("seccomp profile: "), "{msg}");
            assert!(msg.contains(want), "{want:?} not in {msg:?}");
            assert!(!msg.contains('\n'), "{msg}");
        }
    }

    #[test]
    fn oversized_files_are_refused_before_parsing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.json");
        std::fs::write(&path, vec![b' '; MAX_PROFILE_BYTES as usize + 1]).unwrap();
        let msg = load(path.to_str().unwrap(), CapSet::default_set())
            .unwrap_err()
            .to_string();
        assert!(msg.contains("larger than"), "{msg}");
    }
}
