//! The command itself: its environment, the `PATH` search and `execve`,
//! with the statuses of a shell for a command that cannot be executed
//! (127 not found, 126 not executable).

use std::ffi::CString;
use std::io;

use proto::{ErrorKind, RemoteError};

pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Exit statuses of a command that could not be executed (as in a shell).
pub const EXIT_NOT_FOUND: i32 = 127;
pub const EXIT_NOT_EXECUTABLE: i32 = 126;

pub fn key(entry: &str) -> &str {
    entry.split_once('=').map_or(entry, |(k, _)| k)
}

/// `env` plus defaults for what it leaves out (`HOME` from the passwd
/// entry of `-u`, else `/root`; `TERM` with a terminal).
pub fn environment(env: &[String], hostname: &str, home: Option<&str>, tty: bool) -> Vec<String> {
    let mut env = env.to_vec();
    let mut add = |k: &str, v: &str| {
        if !env.iter().any(|e| key(e) == k) {
            env.push(format!("{k}={v}"));
        }
    };
    add("PATH", DEFAULT_PATH);
    add("HOSTNAME", hostname);
    add("HOME", home.unwrap_or("/root"));
    if tty {
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

/// Execute `command` with the environment `env` (complete: see
/// [`environment`]), searching `PATH` of `env`; returns only on failure,
/// with the error to report and the exit status.
pub fn exec_command(command: &[String], env: &[String]) -> (RemoteError, i32) {
    let path = env
        .iter()
        .find(|e| key(e) == "PATH")
        .and_then(|e| e.split_once('='))
        .map_or(DEFAULT_PATH.to_string(), |(_, v)| v.to_string());
    let (Some(argv), Some(envp)) = (cstrings(command), cstrings(env)) else {
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
    let Some(cmd) = command.first() else {
        return (
            RemoteError::new(ErrorKind::InvalidRequest, "no command"),
            EXIT_NOT_EXECUTABLE,
        );
    };
    search_and_exec(cmd, &path, |candidate| {
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

    fn env_of(env: &[&str], tty: bool, home: Option<&str>) -> Vec<String> {
        let env: Vec<String> = env.iter().map(|s| s.to_string()).collect();
        environment(&env, "box", home, tty)
    }

    #[test]
    fn environment_defaults() {
        let env = env_of(&["A=1"], true, None);
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
        let env = env_of(&["PATH=/x", "HOME=/h", "HOSTNAME=h"], false, Some("/u"));
        assert_eq!(env, vec!["PATH=/x", "HOME=/h", "HOSTNAME=h"]);
        let env = env_of(&[], false, Some("/home/u"));
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
