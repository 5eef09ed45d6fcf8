//! `run` flags about privileges and the command's environment (issue 7):
//! `--security-opt`, `--cap-add`/`--cap-drop`, `-u/--user`, `--env-file`,
//! `-e KEY`, `--entrypoint`, `--init`, `--privileged`; and the
//! [`proto::SpawnSecurity`] they become. Seccomp profiles are parsed and
//! compiled here, in the unprivileged supervisor; the helper only installs
//! the finished program.

pub mod caps;
pub mod env;
pub mod profile;
pub mod seccomp;
pub mod syscalls;

use proto::SpawnSecurity;

use crate::error::{Error, Result};
use caps::CapSet;

#[derive(Debug, Clone, Default, clap::Args, serde::Serialize, serde::Deserialize)]
pub struct SecurityFlags {
    /// `no-new-privileges[=true|false]`, `seccomp=unconfined` or `seccomp=FILE` (a Docker/OCI JSON profile).
    #[arg(long = "security-opt", value_name = "OPT")]
    pub security_opt: Vec<String>,
    /// Run the command as USER[:GROUP] (names from the image's /etc/passwd and /etc/group, or numbers).
    #[arg(short = 'u', long = "user", value_name = "USER[:GROUP]")]
    pub user: Option<String>,
    /// Add a capability (in the container's user namespace), or ALL.
    #[arg(long = "cap-add", value_name = "CAP")]
    pub cap_add: Vec<String>,
    /// Drop a capability from the default set, or ALL.
    #[arg(long = "cap-drop", value_name = "CAP")]
    pub cap_drop: Vec<String>,
    /// Read environment variables from FILE (KEY=VALUE lines; KEY alone passes the caller's value).
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_file: Vec<String>,
    /// Run CMD with the command as its arguments ('' for none; a JSON array for several words).
    #[arg(long, value_name = "CMD")]
    pub entrypoint: Option<String>,
    /// Run a small init as pid 1 that forwards signals and reaps zombies.
    #[arg(long)]
    pub init: bool,
    /// Refused: tupperware has no privileged mode.
    #[arg(long)]
    pub privileged: bool,
    /// What the flags became (filled in by [`prepare`]).
    #[arg(skip)]
    pub spawn: SpawnSecurity,
}

/// Where the seccomp filter comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seccomp {
    Default,
    Unconfined,
    File(String),
}

fn bool_value(opt: &str, v: Option<&str>) -> Result<bool> {
    match v {
        None | Some("true") => Ok(true),
        Some("false") => Ok(false),
        Some(other) => Err(Error::user(format!(
            "--security-opt {opt}={other}: expected true or false"
        ))),
    }
}

/// `--security-opt` values: (no_new_privs, seccomp).
fn security_opts(opts: &[String]) -> Result<(bool, Seccomp)> {
    let mut nnp = false;
    let mut seccomp = Seccomp::Default;
    for o in opts {
        let (key, value) = match o.split_once(['=', ':']) {
            Some((k, v)) => (k, Some(v)),
            None => (o.as_str(), None),
        };
        match (key, value) {
            ("no-new-privileges", v) => nnp = bool_value(key, v)?,
            ("seccomp", Some("unconfined")) => seccomp = Seccomp::Unconfined,
            ("seccomp", Some(path)) if !path.is_empty() => seccomp = Seccomp::File(path.into()),
            ("seccomp", _) => {
                return Err(Error::user(
                    "--security-opt seccomp needs a value: seccomp=unconfined or seccomp=FILE",
                ))
            }
            ("label" | "apparmor" | "mask" | "unmask" | "proc-opts", _) => {
                return Err(Error::user(format!(
                    "--security-opt {o}: not supported by tupperware (it supports no-new-privileges and seccomp)"
                )))
            }
            _ => {
                return Err(Error::user(format!(
                    "--security-opt {o}: unknown option (expected no-new-privileges or seccomp=unconfined|FILE)"
                )))
            }
        }
    }
    Ok((nnp, seccomp))
}

/// `--entrypoint`: `''` is none, `["a","b"]` several words, anything else one.
fn entrypoint(value: &str) -> Result<Vec<String>> {
    if value.is_empty() {
        return Ok(vec![]);
    }
    if value.trim_start().starts_with('[') {
        return serde_json::from_str::<Vec<String>>(value).map_err(|e| {
            Error::user(format!(
                "--entrypoint {value:?}: not a JSON array of strings ({e})"
            ))
        });
    }
    Ok(vec![value.to_string()])
}

/// Turn the flags into the request's privilege block, and the environment
/// and command into their final form. Called before anything is created.
pub fn prepare(
    flags: &mut SecurityFlags,
    env: &mut Vec<String>,
    command: &mut Vec<String>,
    host_network: bool,
) -> Result<()> {
    if flags.privileged {
        return Err(Error::user(
            "--privileged is not supported: a container's root is the calling user, so it can never get the host's devices or capabilities; add what the container needs with --cap-add, --security-opt seccomp=unconfined or -v",
        ));
    }
    *env = env::build(&flags.env_file, env, &env::caller_env)?;
    if let Some(ep) = &flags.entrypoint {
        let mut argv = entrypoint(ep)?;
        argv.append(command);
        *command = argv;
    }
    let (no_new_privs, seccomp) = security_opts(&flags.security_opt)?;
    let caps = CapSet::from_flags(&flags.cap_add, &flags.cap_drop)?;
    let program = match seccomp {
        Seccomp::Unconfined => None,
        Seccomp::Default => Some(seccomp::compile(&seccomp::default_profile(caps))?),
        Seccomp::File(path) => Some(seccomp::compile(&profile::load(&path, caps)?)?),
    };
    let explicit_caps = !flags.cap_add.is_empty() || !flags.cap_drop.is_empty();
    flags.spawn = SpawnSecurity {
        no_new_privs,
        seccomp: program,
        capabilities: explicit_caps.then_some(caps.0),
        user: flags.user.clone(),
        init: flags.init,
        host_network,
    };
    proto::validate::spawn_security(&flags.spawn)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn security_options() {
        assert_eq!(security_opts(&[]).unwrap(), (false, Seccomp::Default));
        assert_eq!(
            security_opts(&s(&["no-new-privileges"])).unwrap(),
            (true, Seccomp::Default)
        );
        assert_eq!(
            security_opts(&s(&["no-new-privileges=true", "no-new-privileges:false"])).unwrap(),
            (false, Seccomp::Default)
        );
        assert_eq!(
            security_opts(&s(&["seccomp=unconfined"])).unwrap().1,
            Seccomp::Unconfined
        );
        assert_eq!(
            security_opts(&s(&["seccomp=/p.json"])).unwrap().1,
            Seccomp::File("/p.json".into())
        );
        for bad in [
            "seccomp",
            "seccomp=",
            "no-new-privileges=yes",
            "label=disable",
            "x",
        ] {
            let e = security_opts(&s(&[bad])).unwrap_err().to_string();
            assert!(e.contains("--security-opt"), "{e}");
        }
    }

    #[test]
    fn entrypoints() {
        assert_eq!(entrypoint("").unwrap(), Vec::<String>::new());
        assert_eq!(entrypoint("/bin/echo").unwrap(), ["/bin/echo"]);
        assert_eq!(entrypoint(r#"["sh","-c"]"#).unwrap(), ["sh", "-c"]);
        assert!(entrypoint("[nope").is_err());
    }

    #[test]
    fn prepare_builds_the_request_block() {
        let mut flags = SecurityFlags {
            entrypoint: Some("echo".into()),
            cap_drop: s(&["ALL"]),
            ..Default::default()
        };
        let (mut env, mut cmd) = (s(&["A=1"]), s(&["hi"]));
        prepare(&mut flags, &mut env, &mut cmd, false).unwrap();
        assert_eq!(cmd, ["echo", "hi"]);
        assert_eq!(flags.spawn.capabilities, Some(0));
        assert!(!flags.spawn.no_new_privs);
        assert!(flags.spawn.seccomp.as_ref().is_some_and(|p| p.len() > 10));
        let mut flags = SecurityFlags {
            security_opt: s(&["seccomp=unconfined", "no-new-privileges"]),
            ..Default::default()
        };
        prepare(&mut flags, &mut env, &mut cmd, true).unwrap();
        assert_eq!(flags.spawn.seccomp, None);
        assert_eq!(flags.spawn.capabilities, None);
        assert!(flags.spawn.no_new_privs && flags.spawn.host_network);
        let mut flags = SecurityFlags {
            privileged: true,
            ..Default::default()
        };
        let e = prepare(&mut flags, &mut env, &mut cmd, false)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("--privileged is not supported") && !e.contains('\n'));
    }
}
