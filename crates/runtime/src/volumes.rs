//! `run`'s mount and name flags (podman's names): `-v`, `--mount`,
//! `--tmpfs`, `--read-only`, `--dns`, `--dns-search`, `--add-host`.
//!
//! A bind source is opened here, as the caller (no helper ever resolves a
//! path the user named): it must be a file or directory the caller can
//! read. What we found (its real path, `st_dev`, `st_ino`) travels in the
//! `Spawn` request; the container init reopens that path and mounts it only
//! if it is still the same file.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use proto::{BindSource, MountKind, MountSpec};

use crate::error::{Error, Result};

#[derive(Debug, Clone, Default, clap::Args, serde::Serialize, serde::Deserialize)]
pub struct MountOptions {
    /// Bind a host file or directory: HOST:CONTAINER[:ro|:rw].
    #[arg(short = 'v', long = "volume", value_name = "HOST:CONTAINER[:ro]")]
    pub volume: Vec<String>,
    /// type=bind,source=S,target=T[,readonly] or type=tmpfs,target=T[,tmpfs-size=N].
    #[arg(long = "mount", value_name = "type=...,target=...")]
    pub mount: Vec<String>,
    /// A tmpfs at PATH[:size=N,mode=M].
    #[arg(long = "tmpfs", value_name = "PATH[:OPTIONS]")]
    pub tmpfs: Vec<String>,
    /// Make the container's root filesystem read-only (with tmpfs on /tmp,
    /// /var/tmp and /run).
    #[arg(long = "read-only")]
    pub read_only: bool,
    /// A name server for /etc/resolv.conf (repeatable; replaces the host's).
    #[arg(long = "dns", value_name = "IP")]
    pub dns: Vec<String>,
    /// A search domain for /etc/resolv.conf (repeatable; replaces the host's).
    #[arg(long = "dns-search", value_name = "DOMAIN")]
    pub dns_search: Vec<String>,
    /// An /etc/hosts entry NAME:IP (repeatable).
    #[arg(long = "add-host", value_name = "NAME:IP")]
    pub add_host: Vec<String>,
}

/// Directories `--read-only` gives a tmpfs, as podman does.
pub const READ_ONLY_TMPFS: [&str; 3] = ["/tmp", "/var/tmp", "/run"];

/// What the user asked for, before anything is opened.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Wanted {
    Bind {
        source: String,
        target: String,
        read_only: bool,
    },
    Tmpfs {
        target: String,
        size: Option<u64>,
        mode: Option<u32>,
    },
}

fn bad(flag: &str, value: &str, hint: &str) -> Error {
    Error::user(format!("{flag} {value:?}: {hint}"))
}

/// Normalize a container path: absolute, no `..`, no `.`, `//` or trailing `/`.
pub fn container_target(flag: &str, value: &str) -> Result<String> {
    if !value.starts_with('/') || value.contains('\0') {
        return Err(bad(flag, value, "the container path must be absolute"));
    }
    let parts: Vec<&str> = value
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    if parts.contains(&"..") {
        return Err(bad(flag, value, "the container path may not contain '..'"));
    }
    if parts.is_empty() {
        return Err(bad(flag, value, "cannot mount over the container's /"));
    }
    Ok(format!("/{}", parts.join("/")))
}

/// `1024`, `64k`, `64m`, `1g` (binary units, as tmpfs `size=`).
fn size(flag: &str, value: &str, s: &str) -> Result<u64> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let mult = match c.to_ascii_lowercase() {
                'k' => 1u64 << 10,
                'm' => 1 << 20,
                'g' => 1 << 30,
                _ => return Err(bad(flag, value, "sizes are a number with k, m or g")),
            };
            (&s[..i], mult)
        }
        _ => (s, 1),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .filter(|n| *n > 0 && *n <= proto::MAX_TMPFS_SIZE)
        .ok_or_else(|| bad(flag, value, "sizes are a number with k, m or g, at most 1t"))
}

fn mode(flag: &str, value: &str, s: &str) -> Result<u32> {
    u32::from_str_radix(s, 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| bad(flag, value, "mode is octal, e.g. mode=1777"))
}

/// `-v HOST:CONTAINER[:ro|:rw]`.
fn parse_volume(v: &str) -> Result<Wanted> {
    let parts: Vec<&str> = v.split(':').collect();
    let (source, target, opts) = match parts.as_slice() {
        [s, t] => (*s, *t, ""),
        [s, t, o] => (*s, *t, *o),
        _ => {
            return Err(bad(
                "-v",
                v,
                "expected HOST:CONTAINER[:ro|:rw] (named volumes are not supported)",
            ))
        }
    };
    let mut read_only = false;
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        match o {
            "ro" => read_only = true,
            "rw" => read_only = false,
            _ => return Err(bad("-v", v, "options are ro or rw")),
        }
    }
    Ok(Wanted::Bind {
        source: host_source("-v", v, source)?,
        target: container_target("-v", target)?,
        read_only,
    })
}

fn host_source(flag: &str, value: &str, s: &str) -> Result<String> {
    if s.is_empty()
        || !(s.starts_with('/')
            || s.starts_with("./")
            || s.starts_with("../")
            || s == "."
            || s == "..")
    {
        return Err(bad(
            flag,
            value,
            "the host path must be absolute or start with ./ (named volumes are not supported)",
        ));
    }
    Ok(s.to_string())
}

/// `--mount type=bind,source=S,target=T[,readonly]` or
/// `--mount type=tmpfs,target=T[,tmpfs-size=N][,tmpfs-mode=M]`.
fn parse_mount(v: &str) -> Result<Wanted> {
    let flag = "--mount";
    let (mut ty, mut source, mut target) = (None, None, None);
    let (mut read_only, mut size_v, mut mode_v) = (false, None, None);
    for kv in v.split(',') {
        let (k, val) = kv.split_once('=').unwrap_or((kv, ""));
        match (k, val) {
            ("type", t) => ty = Some(t),
            ("source" | "src", s) => source = Some(s),
            ("target" | "dst" | "destination", t) => target = Some(t),
            ("readonly" | "ro", "" | "true" | "1") => read_only = true,
            ("readonly" | "ro", "false" | "0") => read_only = false,
            ("tmpfs-size", s) => size_v = Some(size(flag, v, s)?),
            ("tmpfs-mode", m) => mode_v = Some(mode(flag, v, m)?),
            _ => {
                return Err(bad(
                    flag,
                    v,
                    "expected type=bind,source=S,target=T[,readonly] or type=tmpfs,target=T[,tmpfs-size=N]",
                ))
            }
        }
    }
    let target = target.ok_or_else(|| bad(flag, v, "target= is required"))?;
    let target = container_target(flag, target)?;
    match ty {
        Some("bind") => {
            if size_v.is_some() || mode_v.is_some() {
                return Err(bad(flag, v, "tmpfs-size and tmpfs-mode are for type=tmpfs"));
            }
            let source = source.ok_or_else(|| bad(flag, v, "source= is required"))?;
            Ok(Wanted::Bind {
                source: host_source(flag, v, source)?,
                target,
                read_only,
            })
        }
        Some("tmpfs") => {
            if source.is_some() || read_only {
                return Err(bad(flag, v, "a tmpfs has no source and is writable"));
            }
            Ok(Wanted::Tmpfs {
                target,
                size: size_v,
                mode: mode_v,
            })
        }
        _ => Err(bad(flag, v, "type is bind or tmpfs")),
    }
}

/// `--tmpfs PATH[:size=N,mode=M]`.
fn parse_tmpfs(v: &str) -> Result<Wanted> {
    let flag = "--tmpfs";
    let (path, opts) = v.split_once(':').unwrap_or((v, ""));
    let (mut size_v, mut mode_v) = (None, None);
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        match o.split_once('=') {
            Some(("size", s)) => size_v = Some(size(flag, v, s)?),
            Some(("mode", m)) => mode_v = Some(mode(flag, v, m)?),
            _ => return Err(bad(flag, v, "options are size=N and mode=M")),
        }
    }
    Ok(Wanted::Tmpfs {
        target: container_target(flag, path)?,
        size: size_v,
        mode: mode_v,
    })
}

/// The mounts the flags ask for, checked and with their sources opened,
/// sorted parents first. Nothing is created.
pub fn resolve(opts: &MountOptions) -> Result<Vec<MountSpec>> {
    let mut wanted = Vec::new();
    for v in &opts.volume {
        wanted.push(parse_volume(v)?);
    }
    for v in &opts.mount {
        wanted.push(parse_mount(v)?);
    }
    for v in &opts.tmpfs {
        wanted.push(parse_tmpfs(v)?);
    }
    let mut specs = Vec::with_capacity(wanted.len());
    for w in wanted {
        specs.push(match w {
            Wanted::Bind {
                source,
                target,
                read_only,
            } => MountSpec {
                kind: MountKind::Bind(open_source(&source)?),
                target,
                read_only,
            },
            Wanted::Tmpfs { target, size, mode } => MountSpec {
                target,
                kind: MountKind::Tmpfs {
                    size,
                    mode,
                    exec: false,
                },
                read_only: false,
            },
        });
    }
    if opts.read_only {
        for t in READ_ONLY_TMPFS {
            if !specs.iter().any(|s| s.target == t) {
                specs.push(MountSpec {
                    target: t.to_string(),
                    kind: MountKind::Tmpfs {
                        size: None,
                        mode: Some(0o1777),
                        exec: true,
                    },
                    read_only: false,
                });
            }
        }
    }
    finish(specs)
}

/// Check for duplicates and the count; sort parents first (stable).
pub fn finish(mut specs: Vec<MountSpec>) -> Result<Vec<MountSpec>> {
    for (i, a) in specs.iter().enumerate() {
        if specs[..i].iter().any(|b| b.target == a.target) {
            return Err(Error::user(format!(
                "two mounts on {} in the container: give each target once",
                a.target
            )));
        }
    }
    if specs.len() > proto::MAX_MOUNTS {
        return Err(Error::user(format!(
            "at most {} mounts per container",
            proto::MAX_MOUNTS
        )));
    }
    specs.sort_by_key(|s| s.target.split('/').count());
    for s in &specs {
        proto::validate::mount_spec(s)?;
    }
    Ok(specs)
}

/// Write the container's `/etc` files into `dir` and add their mounts to
/// the user's (a user's volume on one of them wins).
pub fn with_etc_files(
    dir: PathBuf,
    hostname: &str,
    name: &str,
    opts: &MountOptions,
    user: Vec<MountSpec>,
) -> Result<(crate::etc_files::EtcFiles, Vec<MountSpec>)> {
    let (etc, provided) = crate::etc_files::EtcFiles::write(dir, hostname, name, opts, &user)?;
    let mut all = user;
    all.extend(provided);
    Ok((etc, finish(all)?))
}

/// Open `path` as the caller and describe it: a regular file or directory
/// the caller can read, by its real path.
fn open_source(path: &str) -> Result<BindSource> {
    let what = |e: std::io::Error| {
        let hint = match e.raw_os_error() {
            Some(libc::EACCES | libc::EPERM) => {
                "you cannot read it (the container would run as you)".to_string()
            }
            Some(libc::ENOENT) => "no such file or directory".to_string(),
            _ => e.to_string(),
        };
        Error::user(format!("volume source {path}: {hint}"))
    };
    let fd: OwnedFd = nix::fcntl::open(
        Path::new(path),
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| what(e.into()))?;
    let st = nix::sys::stat::fstat(&fd).map_err(|e| what(e.into()))?;
    let dir = match st.st_mode & libc::S_IFMT {
        libc::S_IFDIR => true,
        libc::S_IFREG => false,
        _ => {
            return Err(Error::user(format!(
                "volume source {path}: only files and directories can be mounted"
            )))
        }
    };
    // Readable by the caller: opened for reading through our descriptor
    // (no second lookup of the path). A directory needs read and search.
    let reopen = tupper_sys::fd_path(&fd);
    let mut flags =
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NOCTTY;
    if dir {
        flags |= nix::fcntl::OFlag::O_DIRECTORY;
    }
    let readable = nix::fcntl::open(reopen.as_c_str(), flags, nix::sys::stat::Mode::empty())
        .map_err(|e| what(e.into()))?;
    if dir {
        nix::unistd::access(reopen.as_c_str(), nix::unistd::AccessFlags::X_OK)
            .map_err(|e| what(e.into()))?;
    }
    drop(readable);
    let real = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).map_err(what)?;
    let real = real
        .to_str()
        .filter(|s| s.starts_with('/') && !s.ends_with(" (deleted)") && normalized(Path::new(s)))
        .ok_or_else(|| {
            Error::user(format!(
                "volume source {path}: its real path {} cannot be used",
                real.display()
            ))
        })?;
    Ok(BindSource {
        path: real.to_string(),
        dev: st.st_dev,
        ino: st.st_ino,
        dir,
    })
}

fn normalized(p: &Path) -> bool {
    let rebuilt: PathBuf = p.components().collect();
    rebuilt == p
        && !p
            .components()
            .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volumes_parse() {
        assert_eq!(
            parse_volume("/a:/b:ro").unwrap(),
            Wanted::Bind {
                source: "/a".into(),
                target: "/b".into(),
                read_only: true
            }
        );
        assert_eq!(
            parse_volume("./a:/b//c/").unwrap(),
            Wanted::Bind {
                source: "./a".into(),
                target: "/b/c".into(),
                read_only: false
            }
        );
        for bad in [
            "/a",
            "name:/b",
            "/a:b",
            "/a:/b:xx",
            "/a:/../etc",
            "/a:/",
            "/a:/b:ro:x",
        ] {
            assert!(parse_volume(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn mounts_parse() {
        assert_eq!(
            parse_mount("type=bind,source=/x,target=/y,readonly").unwrap(),
            Wanted::Bind {
                source: "/x".into(),
                target: "/y".into(),
                read_only: true
            }
        );
        assert_eq!(
            parse_mount("type=tmpfs,target=/t,tmpfs-size=64m").unwrap(),
            Wanted::Tmpfs {
                target: "/t".into(),
                size: Some(64 << 20),
                mode: None
            }
        );
        for bad in [
            "garbage",
            "type=volume,target=/x",
            "type=bind,target=/x",
            "type=bind,source=/x",
            "type=tmpfs,target=/x,tmpfs-size=lots",
            "type=tmpfs,source=/a,target=/x",
            "type=bind,source=/a,target=/x,bogus=1",
            "",
        ] {
            let e = parse_mount(bad).expect_err(bad);
            assert!(!e.to_string().contains('\n'), "{e}");
        }
    }

    #[test]
    fn tmpfs_parse() {
        assert_eq!(
            parse_tmpfs("/run:size=1k,mode=755").unwrap(),
            Wanted::Tmpfs {
                target: "/run".into(),
                size: Some(1024),
                mode: Some(0o755)
            }
        );
        assert!(parse_tmpfs("/run:size=0").is_err());
        assert!(parse_tmpfs("/run:mode=9").is_err());
        assert!(parse_tmpfs("run").is_err());
    }

    #[test]
    fn sources_are_opened_and_described() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        let link = dir.path().join("l");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        let s = open_source(link.to_str().unwrap()).unwrap();
        assert_eq!(
            s.path,
            std::fs::canonicalize(&file).unwrap().to_str().unwrap()
        );
        assert!(!s.dir);
        let d = open_source(dir.path().to_str().unwrap()).unwrap();
        assert!(d.dir);
        let e = open_source("/nonexistent/x").unwrap_err();
        assert!(e.to_string().contains("no such file"), "{e}");
        assert!(open_source("/dev/null").is_err());
    }

    #[test]
    fn read_only_adds_scratch_tmpfs_unless_given() {
        let opts = MountOptions {
            read_only: true,
            tmpfs: vec!["/run:size=1m".into()],
            ..Default::default()
        };
        let specs = resolve(&opts).unwrap();
        let targets: Vec<&str> = specs.iter().map(|s| s.target.as_str()).collect();
        assert_eq!(targets, ["/run", "/tmp", "/var/tmp"]);
        assert!(matches!(
            specs[0].kind,
            MountKind::Tmpfs {
                size: Some(1048576),
                exec: false,
                ..
            }
        ));
    }

    #[test]
    fn duplicates_are_refused_and_parents_come_first() {
        let t = |p: &str| MountSpec {
            target: p.into(),
            kind: MountKind::Tmpfs {
                size: None,
                mode: None,
                exec: false,
            },
            read_only: false,
        };
        assert!(finish(vec![t("/a"), t("/a")]).is_err());
        let sorted = finish(vec![t("/a/b/c"), t("/a"), t("/a/b")]).unwrap();
        let order: Vec<_> = sorted.iter().map(|s| s.target.as_str()).collect();
        assert_eq!(order, ["/a", "/a/b", "/a/b/c"]);
    }
}
