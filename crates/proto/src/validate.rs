//! Validation shared by the supervisor and every helper.

use crate::Error;

/// Image and container names: `[a-z0-9][a-z0-9_.-]{0,62}`.
pub fn name(s: &str) -> Result<(), Error> {
    let bytes = s.as_bytes();
    let ok = !bytes.is_empty()
        && bytes.len() <= 63
        && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(b));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            format!("name {s:?}"),
            "names are 1 to 63 characters of a-z, 0-9, '_', '.', '-' and start with a letter or digit",
        ))
    }
}

/// Length of a container id in hex digits.
pub const CONTAINER_ID_LEN: usize = 32;

/// Container ids: exactly 32 lowercase hex digits.
pub fn container_id(s: &str) -> Result<(), Error> {
    if s.len() == CONTAINER_ID_LEN
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(())
    } else {
        Err(Error::invalid(
            format!("container id {s:?}"),
            "container ids are 32 lowercase hexadecimal digits",
        ))
    }
}

/// Hostnames: 1..=63 characters of letters, digits and '-', not starting or ending with '-'.
pub fn hostname(s: &str) -> Result<(), Error> {
    let b = s.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'.')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-';
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            format!("hostname {s:?}"),
            "hostnames are 1 to 63 letters, digits, '-' or '.', not starting or ending with '-'",
        ))
    }
}

/// Environment entries: `KEY=VALUE` with a non-empty key without `=` or NUL.
pub fn env_entry(s: &str) -> Result<(), Error> {
    match s.split_once('=') {
        Some((k, _)) if !k.is_empty() && !s.contains('\0') => Ok(()),
        _ => Err(Error::invalid(
            format!("environment entry {s:?}"),
            "expected KEY=VALUE",
        )),
    }
}

/// A command: at least one argument, no NUL bytes.
pub fn command(argv: &[String]) -> Result<(), Error> {
    if argv.is_empty() || argv[0].is_empty() {
        return Err(Error::invalid("command", "no command given"));
    }
    if argv.iter().any(|a| a.contains('\0')) {
        return Err(Error::invalid(
            "command",
            "arguments may not contain NUL bytes",
        ));
    }
    Ok(())
}

/// An absolute path inside the container without `..` components or NUL.
pub fn container_path(s: &str) -> Result<(), Error> {
    if !s.starts_with('/') || s.contains('\0') || s.split('/').any(|c| c == "..") {
        return Err(Error::invalid(
            format!("path {s:?}"),
            "expected an absolute path without '..'",
        ));
    }
    Ok(())
}

/// The privilege block of a spawn request: a seccomp program of 1 to
/// [`crate::security::MAX_BPF_INSTRUCTIONS`] instructions, capabilities the
/// kernel knows, a bounded `USER[:GROUP]` without NUL or extra colons.
pub fn spawn_security(s: &crate::security::SpawnSecurity) -> Result<(), Error> {
    use crate::security::{LAST_CAPABILITY, MAX_BPF_INSTRUCTIONS, MAX_USER_SPEC_LEN};
    if let Some(prog) = &s.seccomp {
        if prog.is_empty() || prog.len() > MAX_BPF_INSTRUCTIONS {
            return Err(Error::invalid(
                format!("seccomp program of {} instructions", prog.len()),
                format!("a seccomp program has 1 to {MAX_BPF_INSTRUCTIONS} instructions"),
            ));
        }
    }
    if let Some(caps) = s.capabilities {
        if caps >> (LAST_CAPABILITY + 1) != 0 {
            return Err(Error::invalid(
                format!("capability mask {caps:#x}"),
                format!("capabilities are numbered 0 to {LAST_CAPABILITY}"),
            ));
        }
    }
    if let Some(user) = &s.user {
        let mut parts = user.split(':');
        let ok = user.len() <= MAX_USER_SPEC_LEN
            && !user.contains('\0')
            && !user.contains('\n')
            && parts.next().is_some_and(|u| !u.is_empty())
            && parts.next().is_none_or(|g| !g.is_empty())
            && parts.next().is_none();
        if !ok {
            return Err(Error::invalid(
                format!("user {user:?}"),
                format!("expected USER[:GROUP], names or numbers, at most {MAX_USER_SPEC_LEN} characters"),
            ));
        }
    }
    Ok(())
}

/// An absolute normalized path: `/` then components that are not empty,
/// `.` or `..`, without NUL, at most [`crate::mount_spec::MAX_PATH_LEN`] bytes.
fn normalized_path(what: &str, s: &str) -> Result<(), Error> {
    let ok = s.len() <= crate::mount_spec::MAX_PATH_LEN
        && s.starts_with('/')
        && !s.contains('\0')
        && (s == "/"
            || s[1..]
                .split('/')
                .all(|c| !c.is_empty() && c != "." && c != ".." && c.len() <= 255));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            format!("{what} {s:?}"),
            "expected an absolute path without '.', '..', empty components or a trailing '/'",
        ))
    }
}

/// A mount of a `Spawn` request: normalized absolute paths (a target is
/// never `/`), bounded sizes.
pub fn mount_spec(m: &crate::MountSpec) -> Result<(), Error> {
    normalized_path("mount target", &m.target)?;
    if m.target == "/" {
        return Err(Error::invalid(
            "mount target \"/\"",
            "cannot mount over the container's /",
        ));
    }
    match &m.kind {
        crate::MountKind::Bind(src) | crate::MountKind::Provided(src) => {
            normalized_path("mount source", &src.path)?;
            if matches!(m.kind, crate::MountKind::Provided(_)) && src.dir {
                return Err(Error::invalid("provided file", "must be a regular file"));
            }
        }
        crate::MountKind::Tmpfs { size, mode, .. } => {
            if size.is_some_and(|n| n == 0 || n > crate::MAX_TMPFS_SIZE) {
                return Err(Error::invalid("tmpfs size", "1 byte to 1 TiB"));
            }
            if mode.is_some_and(|m| m > 0o7777) {
                return Err(Error::invalid("tmpfs mode", "at most 07777"));
            }
        }
    }
    Ok(())
}

/// The mounts of a `Spawn` request: each valid, at most
/// [`crate::MAX_MOUNTS`], no target twice.
pub fn mounts(ms: &[crate::MountSpec]) -> Result<(), Error> {
    if ms.len() > crate::MAX_MOUNTS {
        return Err(Error::invalid("mounts", "too many mounts"));
    }
    for (i, m) in ms.iter().enumerate() {
        mount_spec(m)?;
        if ms[..i].iter().any(|o| o.target == m.target) {
            return Err(Error::invalid(
                format!("mount target {:?}", m.target),
                "given twice",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_specs() {
        use crate::{BindSource, MountKind, MountSpec};
        let bind = |src: &str, target: &str| MountSpec {
            target: target.into(),
            kind: MountKind::Bind(BindSource {
                path: src.into(),
                dev: 1,
                ino: 2,
                dir: true,
            }),
            read_only: false,
        };
        assert!(mount_spec(&bind("/home/u/x", "/data")).is_ok());
        for (src, target) in [
            ("/x", "/"),
            ("/x", "data"),
            ("/x", "/a/../b"),
            ("/x", "/a/./b"),
            ("/x", "/a//b"),
            ("/x", "/a/"),
            ("/x", "/a\0"),
            ("x", "/a"),
            ("/x/../y", "/a"),
            ("/x", &"/a".repeat(3000)),
        ] {
            assert!(mount_spec(&bind(src, target)).is_err(), "{src} {target}");
        }
        assert!(mounts(&[bind("/x", "/a"), bind("/y", "/a")]).is_err());
        let many: Vec<_> = (0..=crate::MAX_MOUNTS)
            .map(|i| bind("/x", &format!("/m{i}")))
            .collect();
        assert!(mounts(&many).is_err());
        let tmpfs = |size, mode| MountSpec {
            target: "/t".into(),
            kind: MountKind::Tmpfs {
                size,
                mode,
                exec: false,
            },
            read_only: false,
        };
        assert!(mount_spec(&tmpfs(Some(1), Some(0o1777))).is_ok());
        assert!(mount_spec(&tmpfs(Some(0), None)).is_err());
        assert!(mount_spec(&tmpfs(None, Some(0o17777))).is_err());
    }

    #[test]
    fn names() {
        for good in ["busybox", "a", "alpine-3.19", "my_img.v2", "0abc"] {
            assert!(name(good).is_ok(), "{good}");
        }
        let long = "a".repeat(64);
        for bad in [
            "",
            "../x",
            "..",
            ".",
            "-x",
            "_x",
            "A",
            "a/b",
            "a b",
            "x\0",
            long.as_str(),
            "é",
        ] {
            assert!(name(bad).is_err(), "{bad:?}");
        }
        assert!(name(&"a".repeat(63)).is_ok());
    }

    #[test]
    fn ids() {
        assert!(container_id(&"0123456789abcdef".repeat(2)).is_ok());
        assert!(container_id("../../etc").is_err());
        assert!(container_id(&"A".repeat(32)).is_err());
        assert!(container_id(&"a".repeat(31)).is_err());
    }

    #[test]
    fn hostnames_envs_commands_paths() {
        assert!(hostname("tupperware").is_ok());
        assert!(hostname("-x").is_err());
        assert!(hostname("a/b").is_err());
        assert!(env_entry("A=b=c").is_ok());
        assert!(env_entry("=x").is_err());
        assert!(env_entry("novalue").is_err());
        assert!(command(&[]).is_err());
        assert!(command(&["sh".into()]).is_ok());
        assert!(container_path("/").is_ok());
        assert!(container_path("/a/../b").is_err());
        assert!(container_path("rel").is_err());
    }

    #[test]
    fn spawn_security_is_bounded() {
        use crate::security::{BpfInstruction, SpawnSecurity};
        let ins = BpfInstruction {
            code: 6,
            jt: 0,
            jf: 0,
            k: 0x7fff_0000,
        };
        let ok = SpawnSecurity {
            seccomp: Some(vec![ins; 4096]),
            capabilities: Some((1 << 41) - 1),
            user: Some("1000:1000".into()),
            ..Default::default()
        };
        assert!(spawn_security(&ok).is_ok());
        assert!(spawn_security(&SpawnSecurity::default()).is_ok());
        let bad: Vec<fn(&mut SpawnSecurity)> = vec![
            |s| s.seccomp = Some(vec![]),
            |s| {
                s.seccomp = Some(vec![
                    BpfInstruction {
                        code: 6,
                        jt: 0,
                        jf: 0,
                        k: 0
                    };
                    4097
                ])
            },
            |s| s.capabilities = Some(1 << 41),
            |s| s.capabilities = Some(u64::MAX),
            |s| s.user = Some(String::new()),
            |s| s.user = Some(":0".into()),
            |s| s.user = Some("0:".into()),
            |s| s.user = Some("a:b:c".into()),
            |s| s.user = Some("a\0".into()),
            |s| s.user = Some("x".repeat(257)),
        ];
        for (i, f) in bad.iter().enumerate() {
            let mut s = ok.clone();
            f(&mut s);
            assert!(spawn_security(&s).is_err(), "case {i}");
        }
    }
}
