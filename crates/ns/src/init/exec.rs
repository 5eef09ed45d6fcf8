//! The last steps before the command runs: capabilities, fds, environment,
//! `PATH` search and `execve`.

use std::ffi::CString;
use std::io;

use caps::Capability;
use proto::{ErrorKind, RemoteError, SpawnRequest};

use crate::error::Error;

/// Capabilities a container process keeps (bounding, permitted, effective, inheritable).
pub const DEFAULT_CAPS: [Capability; 14] = [
    Capability::CAP_CHOWN,
    Capability::CAP_DAC_OVERRIDE,
    Capability::CAP_FSETID,
    Capability::CAP_FOWNER,
    Capability::CAP_MKNOD,
    Capability::CAP_NET_RAW,
    Capability::CAP_SETGID,
    Capability::CAP_SETUID,
    Capability::CAP_SETFCAP,
    Capability::CAP_SETPCAP,
    Capability::CAP_NET_BIND_SERVICE,
    Capability::CAP_SYS_CHROOT,
    Capability::CAP_KILL,
    Capability::CAP_AUDIT_WRITE,
];

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Exit statuses of a command that could not be executed (as in a shell).
const EXIT_NOT_FOUND: i32 = 127;
const EXIT_NOT_EXECUTABLE: i32 = 126;

/// Reduce capabilities to the container's set, close every descriptor but
/// stdio and the (close-on-exec) control channel, become the user of `-u`,
/// set no_new_privs if asked to, and install the seccomp filter last (see
/// `privileges.rs` for the order).
pub fn lock_down(
    caller_limits: &tupper_helper::CallerLimits,
    sec: &proto::SpawnSecurity,
    user: Option<&super::user::User>,
) -> Result<(), Error> {
    use super::privileges;
    let keep = privileges::container_caps(sec);
    privileges::reduce_bounding_set(&keep)?;
    tupper_helper::close_fds_from(proto::CONTROL_FD + 1)?;
    // Default dispositions and an empty mask for the command: ignored
    // signals survive `execve`, and the Rust runtime ignores `SIGPIPE`.
    tupper_helper::reset_signals_except(&[]);
    // The caller's own soft limits (the helper raised them, and lowered the
    // core limit, for itself).
    caller_limits.restore_soft_limits();
    privileges::become_user(user, &keep, sec)?;
    privileges::no_new_privs(sec)?;
    if let Some(program) = &sec.seccomp {
        privileges::install_filter(program)?;
    }
    Ok(())
}

fn key(entry: &str) -> &str {
    entry.split_once('=').map_or(entry, |(k, _)| k)
}

/// The request's environment plus defaults for what it leaves out
/// (`HOME` from the passwd entry of `-u`, else `/root`).
pub fn environment(req: &SpawnRequest, home: Option<&str>) -> Vec<String> {
    let mut env = req.env.clone();
    let mut add = |k: &str, v: &str| {
        if !env.iter().any(|e| key(e) == k) {
            env.push(format!("{k}={v}"));
        }
    };
    add("PATH", DEFAULT_PATH);
    add("HOSTNAME", &req.hostname);
    add("HOME", home.unwrap_or("/root"));
    if req.tty {
        add("TERM", "xterm");
    }
    env
}

/// Where `execve` is tried for `cmd`, in order (like `execvp`).
pub fn candidates(cmd: &str, path: &str) -> Vec<String> {
    if cmd.contains('/') {
        return vec![cmd.to_string()];
    }
    path.split(':')
        .map(|dir| {
            let dir = if dir.is_empty() { "." } else { dir };
            format!("{}/{cmd}", dir.trim_end_matches('/'))
        })
        .collect()
}

fn describe(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::EACCES) => "permission denied".into(),
        Some(libc::ENOENT) => "no such file or directory".into(),
        Some(libc::ENOEXEC) => "exec format error".into(),
        _ => {
            let s = e.to_string();
            let s = s.split(" (os error").next().unwrap_or(&s).to_string();
            s.to_lowercase()
        }
    }
}

/// Try `exec` on each candidate; only returns on failure, with the error to
/// report and the exit status.
pub fn search_and_exec(
    cmd: &str,
    path: &str,
    mut exec: impl FnMut(&str) -> io::Error,
) -> (RemoteError, i32) {
    let mut denied = None;
    for candidate in candidates(cmd, path) {
        let e = exec(&candidate);
        match e.raw_os_error() {
            Some(libc::ENOENT | libc::ENOTDIR | libc::ESTALE | libc::ENODEV | libc::ETIMEDOUT)
                if !cmd.contains('/') =>
            {
                continue
            }
            Some(libc::EACCES) if !cmd.contains('/') => {
                denied = Some(e);
                continue;
            }
            Some(libc::ENOENT | libc::ENOTDIR) => {
                return (
                    RemoteError::new(
                        ErrorKind::CommandNotFound,
                        format!("tupper: {cmd:?}: {}", describe(&e)),
                    ),
                    EXIT_NOT_FOUND,
                )
            }
            _ => {
                return (
                    RemoteError::new(
                        ErrorKind::NotExecutable,
                        format!("tupper: {cmd:?}: {}", describe(&e)),
                    ),
                    EXIT_NOT_EXECUTABLE,
                )
            }
        }
    }
    match denied {
        Some(e) => (
            RemoteError::new(
                ErrorKind::NotExecutable,
                format!("tupper: {cmd:?}: {}", describe(&e)),
            ),
            EXIT_NOT_EXECUTABLE,
        ),
        None => (
            RemoteError::new(
                ErrorKind::CommandNotFound,
                format!("tupper: {cmd:?}: executable file not found in $PATH"),
            ),
            EXIT_NOT_FOUND,
        ),
    }
}

fn cstrings(v: &[String]) -> Option<Vec<CString>> {
    v.iter().map(|s| CString::new(s.as_str()).ok()).collect()
}

/// Execute the command; returns only on failure.
pub fn exec_command(req: &SpawnRequest, home: Option<&str>) -> (RemoteError, i32) {
    let env = environment(req, home);
    let path = env
        .iter()
        .find(|e| key(e) == "PATH")
        .and_then(|e| e.split_once('='))
        .map_or(DEFAULT_PATH.to_string(), |(_, v)| v.to_string());
    let (Some(argv), Some(envp)) = (cstrings(&req.command), cstrings(&env)) else {
        // Validation refuses NUL bytes; this is only a safety net.
        return (
            RemoteError::new(ErrorKind::InvalidRequest, "arguments contain NUL bytes"),
            EXIT_NOT_EXECUTABLE,
        );
    };
    let mut argv_p: Vec<*const libc::c_char> = argv.iter().map(|c| c.as_ptr()).collect();
    argv_p.push(std::ptr::null());
    let mut envp_p: Vec<*const libc::c_char> = envp.iter().map(|c| c.as_ptr()).collect();
    envp_p.push(std::ptr::null());
    search_and_exec(&req.command[0], &path, |candidate| {
        let Ok(file) = CString::new(candidate) else {
            return io::Error::from_raw_os_error(libc::ENOENT);
        };
        // SAFETY: all pointers are NUL-terminated C strings kept alive above,
        // and both arrays end with a null pointer.
        unsafe { libc::execve(file.as_ptr(), argv_p.as_ptr(), envp_p.as_ptr()) };
        io::Error::last_os_error()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(env: &[&str], tty: bool) -> SpawnRequest {
        SpawnRequest {
            container: "0".repeat(32),
            command: vec!["sh".into()],
            env: env.iter().map(|s| s.to_string()).collect(),
            hostname: "box".into(),
            workdir: "/".into(),
            tty,
            security: Default::default(),
            mounts: vec![],
            read_only_root: false,
        }
    }

    #[test]
    fn environment_defaults() {
        let env = environment(&req(&["A=1"], true), None);
        assert_eq!(
            env,
            vec![
                "A=1".to_string(),
                format!("PATH={DEFAULT_PATH}"),
                "HOSTNAME=box".into(),
                "HOME=/root".into(),
                "TERM=xterm".into()
            ]
        );
        let env = environment(
            &req(&["PATH=/x", "HOME=/h", "HOSTNAME=h"], false),
            Some("/u"),
        );
        assert_eq!(env, vec!["PATH=/x", "HOME=/h", "HOSTNAME=h"]);
        let env = environment(&req(&[], false), Some("/home/u"));
        assert!(env.contains(&"HOME=/home/u".to_string()), "{env:?}");
    }

    #[test]
    fn candidates_follow_execvp() {
        assert_eq!(candidates("/bin/sh", "/a:/b"), vec!["/bin/sh"]);
        assert_eq!(candidates("./x", "/a"), vec!["./x"]);
        assert_eq!(
            candidates("ls", "/a:/b/::/c"),
            vec!["/a/ls", "/b/ls", "./ls", "/c/ls"]
        );
    }

    fn errno(n: i32) -> io::Error {
        io::Error::from_raw_os_error(n)
    }

    #[test]
    fn not_found_everywhere_is_127() {
        let (e, code) = search_and_exec("foo", "/a:/b", |_| errno(libc::ENOENT));
        assert_eq!(code, 127);
        assert_eq!(e.kind, ErrorKind::CommandNotFound);
        assert_eq!(
            e.message,
            "tupper: \"foo\": executable file not found in $PATH"
        );
    }

    #[test]
    fn eacces_somewhere_is_126_even_if_later_missing() {
        let mut tried = vec![];
        let (e, code) = search_and_exec("foo", "/a:/b", |c| {
            tried.push(c.to_string());
            if c == "/a/foo" {
                errno(libc::EACCES)
            } else {
                errno(libc::ENOENT)
            }
        });
        assert_eq!(tried, vec!["/a/foo", "/b/foo"]);
        assert_eq!((e.kind, code), (ErrorKind::NotExecutable, 126));
        assert_eq!(e.message, "tupper: \"foo\": permission denied");
    }

    #[test]
    fn absolute_paths() {
        let (e, code) = search_and_exec("/etc/passwd", "/a", |_| errno(libc::EACCES));
        assert_eq!((e.kind, code), (ErrorKind::NotExecutable, 126));
        assert_eq!(e.message, "tupper: \"/etc/passwd\": permission denied");
        let (e, code) = search_and_exec("/nope", "/a", |_| errno(libc::ENOENT));
        assert_eq!((e.kind, code), (ErrorKind::CommandNotFound, 127));
        assert_eq!(e.message, "tupper: \"/nope\": no such file or directory");
        let (e, code) = search_and_exec("/bin/x", "/a", |_| errno(libc::ENOEXEC));
        assert_eq!((e.kind, code), (ErrorKind::NotExecutable, 126));
        assert_eq!(e.message, "tupper: \"/bin/x\": exec format error");
    }

    #[test]
    fn other_errors_stop_the_search() {
        let mut n = 0;
        let (e, code) = search_and_exec("foo", "/a:/b", |_| {
            n += 1;
            errno(libc::ENOEXEC)
        });
        assert_eq!(n, 1);
        assert_eq!((e.kind, code), (ErrorKind::NotExecutable, 126));
    }
}
