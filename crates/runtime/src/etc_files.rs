//! `/etc/hosts`, `/etc/hostname` and `/etc/resolv.conf` of a container:
//! written in its own state directory (removed with its record) and mounted
//! over the image's (which stays as it is), writable by the container's root
//! as in podman.
//!
//! `/etc/hosts` is written before the container has an address and rewritten
//! in place once it has one (a bind mount of a file pins its inode: the file
//! is truncated and rewritten, never replaced).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use proto::{BindSource, MountKind, MountSpec};

use crate::error::{Error, Result};
use crate::volumes::MountOptions;

/// The host's resolver configuration, and systemd-resolved's list of
/// upstream servers (used when the host points at its local stub).
const HOST_RESOLV_CONF: &str = "/etc/resolv.conf";
const RESOLVED_UPSTREAM: &str = "/run/systemd/resolve/resolv.conf";

/// `--add-host NAME:IP` (the address may be IPv6, whose colons stay).
pub fn parse_add_host(v: &str) -> Result<(String, IpAddr)> {
    let bad = || {
        Error::user(format!(
            "--add-host {v:?}: expected NAME:IP, e.g. db:10.88.0.5"
        ))
    };
    let (name, ip) = v.split_once(':').ok_or_else(bad)?;
    let ip: IpAddr = ip
        .trim_matches(|c| c == '[' || c == ']')
        .parse()
        .map_err(|_| bad())?;
    if name.is_empty()
        || name.len() > 253
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
    {
        return Err(bad());
    }
    Ok((name.to_string(), ip))
}

fn check_dns(opts: &MountOptions) -> Result<()> {
    for d in &opts.dns {
        d.parse::<IpAddr>()
            .map_err(|_| Error::user(format!("--dns {d:?}: expected an IP address")))?;
    }
    for d in &opts.dns_search {
        let ok = !d.is_empty()
            && d.len() <= 253
            && d.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.".contains(&b));
        if !ok {
            return Err(Error::user(format!(
                "--dns-search {d:?}: expected a domain name"
            )));
        }
    }
    for h in &opts.add_host {
        parse_add_host(h)?;
    }
    Ok(())
}

/// Check the name flags before anything is created.
pub fn validate(opts: &MountOptions) -> Result<()> {
    check_dns(opts)
}

/// The contents of `/etc/hosts`.
pub fn hosts(
    address: Option<IpAddr>,
    hostname: &str,
    name: &str,
    extra: &[(String, IpAddr)],
) -> String {
    let mut s = String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    let addr = address.map_or_else(|| "127.0.1.1".to_string(), |a| a.to_string());
    if name == hostname {
        s.push_str(&format!("{addr}\t{hostname}\n"));
    } else {
        s.push_str(&format!("{addr}\t{hostname} {name}\n"));
    }
    for (n, ip) in extra {
        s.push_str(&format!("{ip}\t{n}\n"));
    }
    s
}

fn is_loopback(ip: &str) -> bool {
    ip.parse::<IpAddr>().is_ok_and(|a| a.is_loopback())
}

/// The contents of `/etc/resolv.conf`, from the host's (`host`), with
/// systemd-resolved's upstream list (`upstream`) when the host uses its stub;
/// `--dns`/`--dns-search` replace the host's servers and search domains.
/// Returns the text and a warning when loopback servers were left out.
pub fn resolv_conf(
    host: &str,
    upstream: Option<&str>,
    dns: &[String],
    search: &[String],
) -> (String, Option<String>) {
    let servers = |text: &str| -> Vec<String> {
        text.lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                (w.next() == Some("nameserver"))
                    .then(|| w.next().map(str::to_string))
                    .flatten()
            })
            .collect()
    };
    let host_servers = servers(host);
    let mut warning = None;
    let mut out = String::new();
    // Everything but nameserver and search lines is kept (options, domain...).
    for l in host.lines() {
        let first = l.split_whitespace().next();
        match first {
            Some("nameserver") => {}
            Some("search") if !search.is_empty() => {}
            Some("domain") if !search.is_empty() => {}
            _ => {
                out.push_str(l);
                out.push('\n');
            }
        }
    }
    if !search.is_empty() {
        out.push_str(&format!("search {}\n", search.join(" ")));
    }
    let chosen: Vec<String> = if !dns.is_empty() {
        dns.to_vec()
    } else {
        let stub = host_servers.iter().any(|s| s == "127.0.0.53");
        let from_upstream = match (stub, upstream) {
            (true, Some(u)) => servers(u).into_iter().filter(|s| !is_loopback(s)).collect(),
            _ => Vec::new(),
        };
        if !from_upstream.is_empty() {
            from_upstream
        } else {
            let (loopback, usable): (Vec<String>, Vec<String>) =
                host_servers.into_iter().partition(|s| is_loopback(s));
            if !loopback.is_empty() {
                warning = Some(format!(
                    "the host's name servers {} are on its loopback, which the container cannot reach: \
                     left out of /etc/resolv.conf (use --dns)",
                    loopback.join(", ")
                ));
            }
            usable
        }
    };
    for s in chosen {
        out.push_str(&format!("nameserver {s}\n"));
    }
    (out, warning)
}

/// The container's files, in `<state>/containers/<id>.d/`.
pub struct EtcFiles {
    dir: PathBuf,
    hostname: String,
    name: String,
    extra: Vec<(String, IpAddr)>,
}

impl EtcFiles {
    /// Write the three files (hosts without the address yet) and return them
    /// with the mounts that put them in place.
    pub fn write(
        dir: PathBuf,
        hostname: &str,
        name: &str,
        opts: &MountOptions,
        user_targets: &[MountSpec],
    ) -> Result<(EtcFiles, Vec<MountSpec>)> {
        let uid = nix::unistd::getuid().as_raw();
        match fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::io(format!("create {}", dir.display()), e)),
        }
        let md =
            fs::symlink_metadata(&dir).map_err(|e| Error::io(format!("{}", dir.display()), e))?;
        if !md.is_dir() || md.uid() != uid {
            return Err(Error::user(format!(
                "{} is not a directory of yours",
                dir.display()
            )));
        }
        let mut extra = Vec::new();
        for h in &opts.add_host {
            extra.push(parse_add_host(h)?);
        }
        let files = EtcFiles {
            dir,
            hostname: hostname.to_string(),
            name: name.to_string(),
            extra,
        };
        let host = fs::read_to_string(HOST_RESOLV_CONF).unwrap_or_default();
        let upstream = fs::read_to_string(RESOLVED_UPSTREAM).ok();
        let (resolv, warning) =
            resolv_conf(&host, upstream.as_deref(), &opts.dns, &opts.dns_search);
        if let Some(w) = warning {
            eprintln!("tupper: warning: {w}");
        }
        let mut mounts = Vec::new();
        for (file, text) in [
            (
                "hosts",
                hosts(None, &files.hostname, &files.name, &files.extra),
            ),
            ("hostname", format!("{}\n", files.hostname)),
            ("resolv.conf", resolv),
        ] {
            let target = format!("/etc/{file}");
            // A volume the user put there wins.
            if user_targets.iter().any(|m| m.target == target) {
                continue;
            }
            let path = files.dir.join(file);
            let f = write_new(&path, text.as_bytes())?;
            let st = nix::sys::stat::fstat(&f)
                .map_err(|e| Error::io(format!("{}", path.display()), e.into()))?;
            // The init reopens it by a path without symbolic links.
            let real =
                fs::canonicalize(&path).map_err(|e| Error::io(format!("{}", path.display()), e))?;
            let real = real
                .to_str()
                .ok_or_else(|| Error::user(format!("{} is not UTF-8", path.display())))?;
            mounts.push(MountSpec {
                target,
                kind: MountKind::Provided(BindSource {
                    path: real.to_string(),
                    dev: st.st_dev,
                    ino: st.st_ino,
                    dir: false,
                }),
                read_only: false,
            });
        }
        Ok((files, mounts))
    }

    /// [`EtcFiles::set_address`] from `tupper-net`'s `10.88.0.2/16`.
    pub fn set_address_of(&self, with_prefix: &str) -> Result<()> {
        let ip = with_prefix.split('/').next().unwrap_or_default();
        let ip: IpAddr = ip
            .parse()
            .map_err(|_| Error::user(format!("net: unexpected address {with_prefix:?}")))?;
        self.set_address(ip)
    }

    /// Rewrite `/etc/hosts` in place with the container's address.
    pub fn set_address(&self, address: IpAddr) -> Result<()> {
        let path = self.dir.join("hosts");
        let text = hosts(Some(address), &self.hostname, &self.name, &self.extra);
        let mut f = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(|e| Error::io(format!("{}", path.display()), e))?;
        f.set_len(0)
            .and_then(|()| f.write_all(text.as_bytes()))
            .map_err(|e| Error::io(format!("write {}", path.display()), e))
    }
}

fn write_new(path: &Path, data: &[u8]) -> Result<File> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| Error::io(format!("create {}", path.display()), e))?;
    f.write_all(data)
        .map_err(|e| Error::io(format!("write {}", path.display()), e))?;
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_has_localhost_the_hostname_and_extra_entries() {
        let h = hosts(
            Some("10.88.0.2".parse().unwrap()),
            "box",
            "web",
            &[("db".into(), "10.0.0.9".parse().unwrap())],
        );
        assert_eq!(
            h,
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n10.88.0.2\tbox web\n10.0.0.9\tdb\n"
        );
        assert!(hosts(None, "a", "a", &[]).contains("127.0.1.1\ta\n"));
    }

    #[test]
    fn add_host_parses_v4_and_v6() {
        assert_eq!(parse_add_host("db:10.0.0.1").unwrap().0, "db");
        assert!(parse_add_host("db:::1").unwrap().1.is_loopback());
        for bad in ["db", "db:x", ":1.2.3.4", "a b:1.2.3.4"] {
            assert!(parse_add_host(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn resolv_conf_drops_loopback_with_a_warning() {
        let (t, w) = resolv_conf(
            "nameserver 127.0.0.1\nnameserver 9.9.9.9\noptions edns0\n",
            None,
            &[],
            &[],
        );
        assert_eq!(t, "options edns0\nnameserver 9.9.9.9\n");
        assert!(w.unwrap().contains("127.0.0.1"));
        let (t, w) = resolv_conf("nameserver 9.9.9.9\nsearch a\n", None, &[], &[]);
        assert_eq!(t, "search a\nnameserver 9.9.9.9\n");
        assert!(w.is_none());
    }

    #[test]
    fn resolv_conf_follows_systemd_resolved_upstream() {
        let (t, w) = resolv_conf(
            "nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch lan\n",
            Some("nameserver 192.168.1.1\nnameserver ::1\n"),
            &[],
            &[],
        );
        assert_eq!(
            t,
            "options edns0 trust-ad\nsearch lan\nnameserver 192.168.1.1\n"
        );
        assert!(w.is_none());
    }

    #[test]
    fn dns_flags_replace_the_hosts() {
        let (t, w) = resolv_conf(
            "nameserver 127.0.0.53\nsearch lan\n",
            None,
            &["1.1.1.1".into()],
            &["example.org".into()],
        );
        assert_eq!(t, "search example.org\nnameserver 1.1.1.1\n");
        assert!(w.is_none());
    }

    #[test]
    fn files_are_written_and_hosts_rewritten_in_place() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("x.d");
        let opts = MountOptions {
            add_host: vec!["db:10.1.1.1".into()],
            ..Default::default()
        };
        let (files, mounts) = EtcFiles::write(dir.clone(), "box", "box", &opts, &[]).unwrap();
        let targets: Vec<_> = mounts.iter().map(|m| m.target.as_str()).collect();
        assert_eq!(targets, ["/etc/hosts", "/etc/hostname", "/etc/resolv.conf"]);
        let ino = fs::metadata(dir.join("hosts")).unwrap().ino();
        files.set_address("10.88.0.7".parse().unwrap()).unwrap();
        assert_eq!(fs::metadata(dir.join("hosts")).unwrap().ino(), ino);
        let text = fs::read_to_string(dir.join("hosts")).unwrap();
        assert!(text.contains("10.88.0.7\tbox\n10.1.1.1\tdb\n"), "{text}");
        assert_eq!(fs::read_to_string(dir.join("hostname")).unwrap(), "box\n");
    }
}

// Issue 11 (engineer "net"): names between a user's containers.
//
// Each running container's `/etc/hosts` ends with a section listing the
// user's other running containers on the bridge (name, and hostname where it
// differs), rewritten in place (same inode: the bind mount pins it) whenever
// one of them starts or stops, under the user's records lock. The records
// are the user's own, so another user's containers never appear. Whatever
// the container wrote above the marker is kept.

/// The line that starts the neighbours' section.
pub const NEIGHBOURS_MARKER: &str = "# tupperware: your other containers on the bridge\n";

/// `text` with its neighbours' section replaced by `neighbours` (name, address).
pub fn with_neighbours(text: &str, neighbours: &[(String, IpAddr)]) -> String {
    let own = match text.find(NEIGHBOURS_MARKER) {
        Some(i) => &text[..i],
        None => text,
    };
    let mut s = own.to_string();
    if !s.is_empty() && !s.ends_with('\n') {
        s.push('\n');
    }
    if neighbours.is_empty() {
        return s;
    }
    s.push_str(NEIGHBOURS_MARKER);
    for (names, ip) in neighbours {
        s.push_str(&format!("{ip}\t{names}\n"));
    }
    s
}

/// Rewrite the neighbours' section of every running container of the user.
/// Best effort: a container that is going away is simply skipped.
pub fn refresh_neighbours(state: &crate::records::Records) {
    use crate::records::Status;
    let Ok(_lock) = state.lock() else { return };
    let Ok(listing) = state.load_all() else {
        return;
    };
    let running: Vec<_> = listing
        .records
        .iter()
        .filter(|r| r.status == Status::Running && r.network_attached)
        .filter_map(|r| {
            let ip: IpAddr = r.address.as_deref()?.split('/').next()?.parse().ok()?;
            let host = r.hostname.clone().unwrap_or_else(|| r.id[..12].to_string());
            let names = if host == r.name {
                r.name.clone()
            } else {
                format!("{} {host}", r.name)
            };
            Some((r.id.clone(), names, ip))
        })
        .collect();
    for (id, _, _) in &running {
        let others: Vec<(String, IpAddr)> = running
            .iter()
            .filter(|(other, _, _)| other != id)
            .map(|(_, n, ip)| (n.clone(), *ip))
            .collect();
        let path = state.files_dir(id).join("hosts");
        if let Err(e) = rewrite_neighbours(&path, &others) {
            eprintln!("tupper: warning: names of your other containers: {e}");
        }
    }
}

/// In place: bounded read, same inode, no symbolic link followed.
fn rewrite_neighbours(path: &Path, neighbours: &[(String, IpAddr)]) -> Result<()> {
    use std::io::{Read, Seek};
    let io = |e| Error::io(format!("{}", path.display()), e);
    let mut f = match OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(e)),
    };
    if !f.metadata().map_err(io)?.is_file() {
        return Ok(());
    }
    let mut text = String::new();
    (&mut f)
        .take(1 << 20)
        .read_to_string(&mut text)
        .map_err(io)?;
    let new = with_neighbours(&text, neighbours);
    if new == text {
        return Ok(());
    }
    f.seek(std::io::SeekFrom::Start(0)).map_err(io)?;
    f.write_all(new.as_bytes()).map_err(io)?;
    f.set_len(new.len() as u64).map_err(io)
}

#[cfg(test)]
mod neighbour_tests {
    use super::*;

    #[test]
    fn the_section_is_replaced_and_the_rest_kept() {
        let own = hosts(Some("10.88.0.2".parse().unwrap()), "a", "a", &[]);
        let one = with_neighbours(&own, &[("web".into(), "10.88.0.3".parse().unwrap())]);
        assert!(one.starts_with(&own));
        assert!(one.ends_with(&format!("{NEIGHBOURS_MARKER}10.88.0.3\tweb\n")));
        let two = with_neighbours(&one, &[("db x".into(), "10.88.0.4".parse().unwrap())]);
        assert!(!two.contains("web"));
        assert!(two.contains("10.88.0.4\tdb x\n"));
        assert_eq!(with_neighbours(&two, &[]), own);
    }

    #[test]
    fn rewritten_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hosts");
        fs::write(&path, "127.0.0.1\tlocalhost\n").unwrap();
        let ino = fs::metadata(&path).unwrap().ino();
        rewrite_neighbours(&path, &[("web".into(), "10.88.0.3".parse().unwrap())]).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().ino(), ino);
        assert!(fs::read_to_string(&path)
            .unwrap()
            .contains("10.88.0.3\tweb"));
        rewrite_neighbours(&path, &[]).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "127.0.0.1\tlocalhost\n");
    }
}
