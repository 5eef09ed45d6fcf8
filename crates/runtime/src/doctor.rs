//! `tupper-supervisor doctor`: everything a user's first `run` needs,
//! checked one line at a time, each failure with the command that fixes it.
//!
//! It only reads: files, extended attributes, `statfs`, the helpers'
//! `--print-caps` (which prints before a helper does anything else). Exit
//! status 0 when nothing failed (warnings allowed), 1 otherwise.

use std::net::Ipv4Addr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Serialize;
use tupper_config::subid::CONTAINER_IDS;
use tupper_config::system::SystemConfig;

use crate::error::Result;
use crate::helpers::Helper;

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub check: String,
    pub status: Status,
    pub message: String,
    /// What to do about it (absent when the check passed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    fn ok(check: impl Into<String>, message: impl Into<String>) -> Check {
        Check {
            check: check.into(),
            status: Status::Ok,
            message: message.into(),
            fix: None,
        }
    }
    fn warn(check: impl Into<String>, message: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            check: check.into(),
            status: Status::Warn,
            message: message.into(),
            fix: Some(fix.into()),
        }
    }
    fn fail(check: impl Into<String>, message: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            check: check.into(),
            status: Status::Fail,
            message: message.into(),
            fix: Some(fix.into()),
        }
    }
}

/// Output format of `doctor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// Run every check, print the report, return the exit status.
pub fn doctor(format: Format) -> Result<i32> {
    let checks = all_checks();
    match format {
        Format::Text => {
            for c in &checks {
                match &c.fix {
                    Some(fix) => println!(
                        "{:<4}  {}: {} — fix: {}",
                        c.status.label(),
                        c.check,
                        c.message,
                        fix
                    ),
                    None => println!("{:<4}  {}: {}", c.status.label(), c.check, c.message),
                }
            }
        }
        Format::Json => {
            let text = serde_json::to_string_pretty(&checks)
                .map_err(|e| crate::error::Error::user(format!("cannot encode the report: {e}")))?;
            println!("{text}");
        }
    }
    Ok(i32::from(checks.iter().any(|c| c.status == Status::Fail)))
}

pub fn all_checks() -> Vec<Check> {
    let mut out = Vec::new();
    let config = match SystemConfig::load() {
        Ok(c) => {
            out.push(Check::ok(
                "configuration",
                format!(
                    "{} parses",
                    tupper_config::system::system_config_path().display()
                ),
            ));
            Some(c)
        }
        Err(e) => {
            out.push(Check::fail(
                "configuration",
                e.to_string(),
                format!(
                    "correct {} (the package's copy is the documented default)",
                    tupper_config::system::system_config_path().display()
                ),
            ));
            None
        }
    };
    out.push(policy());
    out.extend(subordinate_ids());
    for h in Helper::ALL {
        out.push(helper(h));
    }
    if let Some(cfg) = &config {
        out.push(store(cfg));
    }
    out.extend(kernel());
    if let Some(cfg) = &config {
        out.push(subnet(cfg));
    }
    out.push(cgroups());
    out
}

// --- policy -------------------------------------------------------------------

fn policy() -> Check {
    let path = tupper_config::policy::policy_path();
    match tupper_config::policy::Policy::load() {
        Ok(_) if path.exists() => Check::ok("policy", format!("{} parses", path.display())),
        Ok(_) => Check::ok(
            "policy",
            format!("no {}: built-in limits apply", path.display()),
        ),
        Err(e) => Check::fail(
            "policy",
            e.to_string(),
            format!(
                "an administrator corrects {} (or removes it: built-in limits apply)",
                path.display()
            ),
        ),
    }
}

// --- subordinate ids ---------------------------------------------------------------

/// One line of `/etc/subuid` or `/etc/subgid`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Range {
    owner: String,
    start: u64,
    count: u64,
}

fn parse_subid_file(text: &str) -> Vec<Range> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.trim().split(':');
            let (owner, start, count) = (f.next()?, f.next()?, f.next()?);
            if f.next().is_some() {
                return None;
            }
            Some(Range {
                owner: owner.to_string(),
                start: start.parse().ok()?,
                count: count.parse().ok()?,
            })
        })
        .collect()
}

/// Other owners whose ranges overlap `[start, start + CONTAINER_IDS)`.
fn overlapping(ranges: &[Range], start: u64, mine: &[&str]) -> Vec<String> {
    let end = start + u64::from(CONTAINER_IDS);
    let mut who: Vec<String> = ranges
        .iter()
        .filter(|r| !mine.contains(&r.owner.as_str()))
        .filter(|r| r.start < end && start < r.start + r.count)
        .map(|r| r.owner.clone())
        .collect();
    who.dedup();
    who
}

/// The first start above every range, aligned to the range size, at least 100000.
fn free_start(ranges: &[Range]) -> u64 {
    let size = u64::from(CONTAINER_IDS);
    let end = ranges.iter().map(|r| r.start + r.count).max().unwrap_or(0);
    end.div_ceil(size).max(100_000u64.div_ceil(size)) * size
}

fn subordinate_ids() -> Vec<Check> {
    let caller = proto::Caller::current();
    if caller.uid == 0 {
        return vec![Check::ok(
            "subordinate ids",
            "root needs none (its containers run without a user namespace)",
        )];
    }
    let name = caller.user_name();
    let who = name.clone().unwrap_or_else(|| caller.uid.to_string());
    let uid_s = caller.uid.to_string();
    let mine: Vec<&str> = [Some(uid_s.as_str()), name.as_deref()]
        .into_iter()
        .flatten()
        .collect();
    let mut out = Vec::new();
    let mut all = Vec::new();
    for (file, what) in [("/etc/subuid", "uid"), ("/etc/subgid", "gid")] {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        let ranges = parse_subid_file(&text);
        let base = tupper_config::subid::parse_ranges(&text, caller.uid, name.as_deref());
        all.push((file, what, ranges, base));
    }
    let free = free_start(
        &all.iter()
            .flat_map(|(_, _, r, _)| r.iter().cloned())
            .collect::<Vec<_>>(),
    );
    let free_range = format!("{free}-{}", free + u64::from(CONTAINER_IDS) - 1);
    for (file, what, ranges, base) in &all {
        let check = format!("subordinate {what}s");
        match base {
            None => out.push(Check::fail(
                check,
                format!("{who} has no range of at least {CONTAINER_IDS} ids in {file}"),
                format!("an administrator runs: sudo usermod --add-sub{what}s {free_range} {who}"),
            )),
            Some(start) => {
                let start = u64::from(*start);
                let others = overlapping(ranges, start, &mine);
                if others.is_empty() {
                    out.push(Check::ok(
                        check,
                        format!(
                            "{who}: {start}-{} in {file}, shared with no other user",
                            start + u64::from(CONTAINER_IDS) - 1
                        ),
                    ));
                } else {
                    out.push(Check::fail(
                        check,
                        format!(
                            "{who}'s range {start}-{} in {file} overlaps that of {}: \
                             their containers could reach each other's files",
                            start + u64::from(CONTAINER_IDS) - 1,
                            others.join(", ")
                        ),
                        format!(
                            "an administrator gives {who} a range of its own: sudo usermod \
                             --del-sub{what}s {start}-{} --add-sub{what}s {free_range} {who}",
                            start + u64::from(CONTAINER_IDS) - 1
                        ),
                    ));
                }
            }
        }
    }
    out
}

// --- helpers and their file capabilities ------------------------------------------------

/// The capability sets an extended attribute `security.capability` holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileCaps {
    pub effective: bool,
    pub permitted: u64,
    pub inheritable: u64,
    /// Version 3 only: the root of the user namespace it applies in.
    pub rootid: Option<u32>,
}

/// Decode `struct vfs_cap_data` / `vfs_ns_cap_data` (little endian).
pub fn decode_file_caps(b: &[u8]) -> Option<FileCaps> {
    let word = |i: usize| -> Option<u32> {
        Some(u32::from_le_bytes(
            b.get(i * 4..i * 4 + 4)?.try_into().ok()?,
        ))
    };
    let magic = word(0)?;
    let (words, len) = match magic & 0xff00_0000 {
        0x0100_0000 => (1, 12),
        0x0200_0000 => (2, 20),
        0x0300_0000 => (2, 24),
        _ => return None,
    };
    if b.len() != len {
        return None;
    }
    let mut permitted = 0u64;
    let mut inheritable = 0u64;
    for i in 0..words {
        permitted |= u64::from(word(1 + 2 * i)?) << (32 * i);
        inheritable |= u64::from(word(2 + 2 * i)?) << (32 * i);
    }
    Some(FileCaps {
        effective: magic & 1 != 0,
        permitted,
        inheritable,
        rootid: if len == 24 { word(5) } else { None },
    })
}

/// Parse a `--print-caps` line (`cap_a,cap_b=p`) into a set.
pub fn parse_setcap_list(s: &str) -> Option<u64> {
    let list = s.trim().strip_suffix("=p")?;
    list.split(',').try_fold(0u64, |acc, name| {
        let n = crate::security::caps::by_name(name)?;
        Some(acc | 1u64 << n)
    })
}

fn names(set: u64) -> String {
    let v: Vec<String> = crate::security::caps::CapSet(set)
        .names()
        .iter()
        .map(|n| format!("cap_{}", n.to_ascii_lowercase()))
        .collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(",")
    }
}

/// A helper holds exactly its declared set: permitted only, nothing
/// inheritable, not effective at exec (it raises each capability around the
/// call that needs it), for the initial user namespace. More is a failure as
/// much as less: a helper's power must be what its code declares.
pub fn exactly(want: u64, c: &FileCaps) -> bool {
    c.permitted == want && c.inheritable == 0 && !c.effective && c.rootid.unwrap_or(0) == 0
}

fn read_xattr(path: &Path, name: &str) -> std::io::Result<Option<Vec<u8>>> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let p = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    let n =
        CString::new(name).map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    let mut buf = vec![0u8; 64];
    // SAFETY: both strings are NUL-terminated and the buffer is as long as we say.
    let r = unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if r < 0 {
        let e = std::io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ENODATA) => Ok(None),
            _ => Err(e),
        };
    }
    buf.truncate(r as usize);
    Ok(Some(buf))
}

fn helper(h: Helper) -> Check {
    let path = h.binary();
    let check = format!("helper tupper-{}", h.name());
    let reinstall = "reinstall tupperware (sudo apt-get install --reinstall tupperware, \
                     or packaging/install.sh for a source install)";
    let meta = match std::fs::metadata(&path) {
        Ok(m) => m,
        Err(e) => return Check::fail(check, format!("{}: {e}", path.display()), reinstall),
    };
    if meta.uid() != 0 || meta.mode() & 0o022 != 0 || !meta.is_file() {
        return Check::fail(
            check,
            format!(
                "{} must be a file owned by root and writable only by root (owner {}, mode {:o})",
                path.display(),
                meta.uid(),
                meta.mode() & 0o7777
            ),
            reinstall,
        );
    }
    if let Ok(st) = nix::sys::statvfs::statvfs(&path) {
        if st.flags().contains(nix::sys::statvfs::FsFlags::ST_NOSUID) {
            return Check::fail(
                check,
                format!(
                    "{} is on a nosuid mount, where the kernel ignores file capabilities",
                    path.display()
                ),
                "install tupperware on a file system mounted without nosuid",
            );
        }
    }
    let wanted = match Command::new(&path)
        .arg("--print-caps")
        .env_clear()
        .current_dir("/")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
    {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_string(),
        Ok(o) => {
            return Check::fail(
                check,
                format!("{} --print-caps failed ({})", path.display(), o.status),
                reinstall,
            )
        }
        Err(e) => {
            return Check::fail(
                check,
                format!("cannot run {}: {e}", path.display()),
                reinstall,
            )
        }
    };
    let Some(want) = parse_setcap_list(&wanted) else {
        return Check::fail(
            check,
            format!("{} --print-caps printed {wanted:?}", path.display()),
            reinstall,
        );
    };
    let setcap = format!("sudo setcap '{wanted}' {}", path.display());
    let got = match read_xattr(&path, "security.capability") {
        Ok(Some(raw)) => decode_file_caps(&raw),
        Ok(None) => {
            return Check::fail(
                check,
                format!(
                    "{} has no file capabilities (needs {wanted})",
                    path.display()
                ),
                setcap,
            )
        }
        Err(e) => {
            return Check::fail(
                check,
                format!(
                    "cannot read the file capabilities of {}: {e}",
                    path.display()
                ),
                setcap,
            )
        }
    };
    match got {
        Some(c) if exactly(want, &c) => {
            Check::ok(check, format!("{} has exactly {wanted}", path.display()))
        }
        Some(c) => Check::fail(
            check,
            format!(
                "{} has {}{}{}{}, needs exactly {wanted}",
                path.display(),
                names(c.permitted),
                if c.effective { " (effective)" } else { "" },
                if c.inheritable != 0 {
                    format!(" and inheritable {}", names(c.inheritable))
                } else {
                    String::new()
                },
                match c.rootid {
                    Some(r) if r != 0 => format!(" for the user namespace of uid {r}"),
                    _ => String::new(),
                },
            ),
            setcap,
        ),
        None => Check::fail(
            check,
            format!("{} has a malformed security.capability", path.display()),
            setcap,
        ),
    }
}

// --- the store -----------------------------------------------------------------------

const BTRFS_SUPER_MAGIC: i64 = 0x9123_683e;
const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
const TMPFS_MAGIC: i64 = 0x0102_1994;

// The statfs type field is `__fsword_t`, whose width varies by architecture.
#[allow(clippy::unnecessary_cast)]
fn fs_magic(path: &Path) -> Option<i64> {
    nix::sys::statfs::statfs(path)
        .ok()
        .map(|s| s.filesystem_type().0 as i64)
}

fn store(cfg: &SystemConfig) -> Check {
    let path = &cfg.store.path;
    let create = "an administrator creates it: sudo tupper-supervisor image ls \
                  (root creates and mounts the store)";
    if !path.exists() {
        return Check::fail(
            "store",
            format!("{} does not exist", path.display()),
            create,
        );
    }
    if fs_magic(path) != Some(BTRFS_SUPER_MAGIC) {
        return Check::warn(
            "store",
            format!("{} is not mounted (btrfs) yet", path.display()),
            "none needed after a reboot: the first command mounts it again; \
             if it keeps failing: sudo tupper-supervisor image ls",
        );
    }
    let ro = nix::sys::statvfs::statvfs(path.as_path())
        .map(|s| s.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY))
        .unwrap_or(false);
    if ro {
        return Check::fail(
            "store",
            format!("{} is mounted read-only", path.display()),
            format!(
                "an administrator remounts it: sudo mount -o remount,rw {}",
                path.display()
            ),
        );
    }
    Check::ok(
        "store",
        format!("{} is a writable btrfs file system", path.display()),
    )
}

// --- the kernel --------------------------------------------------------------------

fn sysctl(path: &str) -> Option<i64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn kernel() -> Vec<Check> {
    let mut out = Vec::new();
    out.push(match sysctl("/proc/sys/user/max_user_namespaces") {
        Some(0) => Check::fail(
            "user namespaces",
            "user.max_user_namespaces is 0",
            "sudo sysctl -w user.max_user_namespaces=15000 (and set it in /etc/sysctl.d/)",
        ),
        Some(n) => Check::ok(
            "user namespaces",
            format!("user.max_user_namespaces is {n}"),
        ),
        None => Check::fail(
            "user namespaces",
            "this kernel has no user namespaces (no /proc/sys/user/max_user_namespaces)",
            "a kernel built with CONFIG_USER_NS",
        ),
    });
    if let Some(0) = sysctl("/proc/sys/kernel/unprivileged_userns_clone") {
        out.push(Check::fail(
            "unprivileged user namespaces",
            "kernel.unprivileged_userns_clone is 0",
            "sudo sysctl -w kernel.unprivileged_userns_clone=1 (and set it in /etc/sysctl.d/)",
        ));
    }
    match sysctl("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") {
        Some(0) | None => {}
        Some(_) => out.push(Check::fail(
            "AppArmor",
            "kernel.apparmor_restrict_unprivileged_userns is set: containers cannot have user namespaces",
            "sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0 (and set it in /etc/sysctl.d/)",
        )),
    }
    out.push(match tupper_sys::pidfd::open(std::process::id() as i32) {
        Ok(_) => Check::ok("pidfd", "pidfd_open works"),
        Err(e) => Check::fail(
            "pidfd",
            format!("pidfd_open: {e}"),
            "a kernel of version 5.3 or later",
        ),
    });
    // Issue 9: container roots are overlays named by their unique mount id.
    out.push(
        match tupper_sys::fsmount::unique_mount_id(libc::AT_FDCWD, c"/", 0) {
            Ok(Some(_)) => Check::ok("unique mount ids", "statx names mounts (Linux 6.8)"),
            _ => Check::fail(
                "unique mount ids",
                "statx gives mounts no unique id: container roots cannot be mounted",
                "a kernel of version 6.13 or later",
            ),
        },
    );
    out
}

// --- the bridge subnet -----------------------------------------------------------

/// Routes of `/proc/net/route` (interface, destination, prefix length).
fn parse_routes(text: &str) -> Vec<(String, Ipv4Addr, u32)> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let hex = |s: &str| u32::from_str_radix(s, 16).ok().map(u32::to_ne_bytes);
            let dest = Ipv4Addr::from(hex(f.get(1)?)?);
            let mask = u32::from_be_bytes(hex(f.get(7)?)?);
            Some((f.first()?.to_string(), dest, mask.count_ones()))
        })
        .collect()
}

/// Routes (other than default routes and the bridge's own) that overlap the subnet.
fn clashes(
    routes: &[(String, Ipv4Addr, u32)],
    bridge: &str,
    net: Ipv4Addr,
    prefix: u8,
) -> Vec<String> {
    routes
        .iter()
        .filter(|(dev, _, len)| dev != bridge && *len > 0)
        .filter(|(_, dest, len)| {
            let m = tupper_config::system::mask((*len).min(u32::from(prefix)) as u8);
            u32::from(*dest) & m == u32::from(net) & m
        })
        .map(|(dev, dest, len)| format!("{dest}/{len} on {dev}"))
        .collect()
}

fn subnet(cfg: &SystemConfig) -> Check {
    let (net, prefix) = match cfg.network.subnet() {
        Ok(s) => s,
        Err(e) => {
            return Check::fail(
                "bridge subnet",
                e,
                "correct [network] subnet in tupperware.toml",
            )
        }
    };
    let routes = parse_routes(&std::fs::read_to_string("/proc/net/route").unwrap_or_default());
    let found = clashes(&routes, &cfg.network.bridge, net, prefix);
    if found.is_empty() {
        Check::ok(
            "bridge subnet",
            format!("{net}/{prefix} clashes with no host route"),
        )
    } else {
        Check::fail(
            "bridge subnet",
            format!(
                "{net}/{prefix} of bridge {} overlaps host routes: {}",
                cfg.network.bridge,
                found.join(", ")
            ),
            format!(
                "an administrator sets another [network] subnet (and gateway) in {}",
                tupper_config::system::system_config_path().display()
            ),
        )
    }
}

// --- cgroups -------------------------------------------------------------------

/// `v2`, `hybrid` or `v1`: what is mounted at /sys/fs/cgroup.
pub fn cgroup_mode(root: &Path) -> Option<&'static str> {
    match fs_magic(root)? {
        CGROUP2_SUPER_MAGIC => Some("v2"),
        TMPFS_MAGIC if fs_magic(&root.join("unified")) == Some(CGROUP2_SUPER_MAGIC) => {
            Some("hybrid")
        }
        TMPFS_MAGIC => Some("v1"),
        _ => None,
    }
}

fn cgroups() -> Check {
    let root = PathBuf::from("/sys/fs/cgroup");
    match cgroup_mode(&root) {
        Some("v2") => Check::ok("cgroups", "v2 (unified hierarchy)"),
        Some(mode) => Check::ok(
            "cgroups",
            format!("{mode} (v1 controllers mounted under /sys/fs/cgroup)"),
        ),
        None => Check::warn(
            "cgroups",
            "no cgroup file system at /sys/fs/cgroup",
            "mount cgroup2 at /sys/fs/cgroup (systemd does)",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_capabilities_decode_every_revision() {
        // v2, permitted cap_sys_admin (21) and cap_bpf (39), not effective.
        let mut v2 = Vec::new();
        for w in [0x0200_0000u32, 1 << 21, 0, 1 << (39 - 32), 0] {
            v2.extend_from_slice(&w.to_le_bytes());
        }
        let c = decode_file_caps(&v2).unwrap();
        assert_eq!(c.permitted, 1 << 21 | 1 << 39);
        assert!(!c.effective && c.inheritable == 0 && c.rootid.is_none());
        // v3 with a root id, effective.
        let mut v3 = Vec::new();
        for w in [0x0300_0001u32, 1, 2, 0, 0, 1000] {
            v3.extend_from_slice(&w.to_le_bytes());
        }
        let c = decode_file_caps(&v3).unwrap();
        assert!(c.effective);
        assert_eq!((c.permitted, c.inheritable, c.rootid), (1, 2, Some(1000)));
        assert!(decode_file_caps(&v3[..20]).is_none(), "length must match");
        assert!(decode_file_caps(&[0; 20]).is_none(), "bad magic");
    }

    #[test]
    fn a_helper_must_hold_exactly_its_set() {
        let want = 1u64 << 21 | 1;
        let caps = |permitted, inheritable, effective, rootid| FileCaps {
            effective,
            permitted,
            inheritable,
            rootid,
        };
        assert!(exactly(want, &caps(want, 0, false, None)));
        assert!(exactly(want, &caps(want, 0, false, Some(0))));
        assert!(!exactly(want, &caps(1, 0, false, None)), "one missing");
        assert!(
            !exactly(want, &caps(want | 1 << 16, 0, false, None)),
            "one extra"
        );
        assert!(!exactly(want, &caps(want, 1, false, None)), "inheritable");
        assert!(!exactly(want, &caps(want, 0, true, None)), "effective");
        assert!(
            !exactly(want, &caps(want, 0, false, Some(1000))),
            "another namespace"
        );
    }

    #[test]
    fn print_caps_lists_parse() {
        assert_eq!(
            parse_setcap_list("cap_sys_admin,cap_chown=p\n"),
            Some(1 << 21 | 1)
        );
        assert_eq!(parse_setcap_list("cap_sys_admin=ep"), None);
        assert_eq!(parse_setcap_list("cap_nonsense=p"), None);
        assert_eq!(names(1 << 21 | 1), "cap_chown,cap_sys_admin");
    }

    #[test]
    fn overlapping_ranges_name_the_other_users() {
        let r = parse_subid_file("alice:100000:65536\nbob:150000:65536\n1000:300000:65536\nbad\n");
        assert_eq!(r.len(), 3);
        assert_eq!(overlapping(&r, 100000, &["alice", "1001"]), ["bob"]);
        assert!(overlapping(&r, 300000, &["carol", "1000"]).is_empty());
        assert_eq!(free_start(&r), 393216);
        assert_eq!(free_start(&[]), 131072);
    }

    #[test]
    fn routes_that_overlap_the_subnet_clash() {
        let text =
            "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT\n\
                    eth0\t00000000\t0102A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
                    eth0\t0002A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
                    tupper0\t0000580A\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n\
                    wg0\t0000000A\t00000000\t0001\t0\t0\t0\t000000FF\t0\t0\t0\n";
        let routes = parse_routes(text);
        assert_eq!(routes[1].1, Ipv4Addr::new(192, 168, 2, 0));
        assert_eq!(routes[1].2, 24);
        let net = Ipv4Addr::new(10, 88, 0, 0);
        assert_eq!(clashes(&routes, "tupper0", net, 16), ["10.0.0.0/8 on wg0"]);
        assert!(clashes(&routes[..3], "tupper0", net, 16).is_empty());
    }
}
