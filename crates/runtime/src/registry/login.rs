//! `login` and `logout`: the user's credentials in the auth file `pull`
//! reads ([`super::auth`]).
//!
//! `login` checks the credentials against the registry with the client a
//! pull uses before it stores them; wrong ones leave the file as it was.
//! The file is only ever replaced whole (a temporary file in its directory,
//! fsynced, renamed over it) under a lock on the directory, from a
//! directory opened without following a symlink and checked to be the
//! user's and writable by nobody else; a symlink at the file's path is
//! refused, not followed, and so is a file another user owns or others can
//! read, as `pull` refuses it.

use std::fs::File;
use std::io::{BufRead, IsTerminal, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::auth::{self, Credentials};
use super::client::Client;
use super::reference::api_host_of;
use crate::error::{Error, Result};

/// The file's name in its directory.
const FILE_NAME: &str = "auth.json";
/// A password read from standard input is at most this long.
const MAX_PASSWORD: u64 = 64 << 10;

/// `login [-u USER] [-p PASS | --password-stdin] [--tls-verify[=false]]
/// [--get-login] [REGISTRY]`.
#[derive(Debug, Clone, clap::Args)]
pub struct LoginOptions {
    /// The user name (asked for on a terminal when missing).
    #[arg(short, long)]
    pub username: Option<String>,
    /// The password (insecure: it shows in the process list and the shell's
    /// history; prefer --password-stdin or the prompt).
    #[arg(short, long, conflicts_with = "password_stdin")]
    pub password: Option<String>,
    /// Read the password from standard input.
    #[arg(long)]
    pub password_stdin: bool,
    /// Verify the registry's TLS certificate (`=false` for a local registry:
    /// HTTPS without checking the certificate, else plain HTTP).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub tls_verify: Option<bool>,
    /// Print the user name stored for the registry and do nothing else.
    #[arg(long, conflicts_with_all = ["username", "password", "password_stdin"])]
    pub get_login: bool,
    /// `REGISTRY[/NAMESPACE[/REPO]]` (default: the default registry).
    pub registry: Option<String>,
}

/// `logout [--all] [REGISTRY]`.
#[derive(Debug, Clone, clap::Args)]
pub struct LogoutOptions {
    /// Remove the credentials of every registry.
    #[arg(short, long, conflicts_with = "registry")]
    pub all: bool,
    /// `REGISTRY[/NAMESPACE[/REPO]]` (default: the default registry).
    pub registry: Option<String>,
}

/// The registry argument, or the configured default registry.
fn key_of(arg: Option<&str>) -> Result<(String, String)> {
    match arg {
        Some(a) => auth::login_key(a),
        None => auth::login_key(&super::registries_config()?.default),
    }
}

/// `tupper-supervisor login`.
pub fn login(opts: &LoginOptions) -> Result<()> {
    let (key, registry) = key_of(opts.registry.as_deref())?;
    let path = auth::auth_file_path().ok_or_else(|| {
        Error::user("neither XDG_CONFIG_HOME nor HOME is set: no place for the auth file")
    })?;
    if opts.get_login {
        let store = AuthStore::open(&path, false)?;
        let text = store.as_ref().map(AuthStore::read).transpose()?.flatten();
        let config = auth::AuthConfig::parse(
            text.as_deref().unwrap_or(r#"{"auths":{}}"#),
            &path.display().to_string(),
        )?;
        return match config.get(&key) {
            Some(c) => {
                println!("{}", c.username);
                Ok(())
            }
            None => Err(Error::user(format!("not logged into {key}"))),
        };
    }
    // The file is checked before the registry is asked: a file that would
    // be refused is refused at once. Nothing is created before the
    // registry accepted the credentials.
    if let Some(store) = AuthStore::open(&path, false)? {
        store.read()?;
    }
    let credentials = read_credentials(opts)?;
    let config = super::registries_config()?;
    let tls_verify = config.tls_verify(&registry, opts.tls_verify);
    Client::check_login(
        api_host_of(&registry),
        &registry,
        tls_verify,
        credentials.clone(),
    )?;
    let store = AuthStore::open(&path, true)?
        .ok_or_else(|| Error::user(format!("{} cannot be created", path.display())))?;
    store.update(|doc| {
        auth::set_entry(doc, &key, &credentials);
        Ok(())
    })?;
    println!("Login Succeeded!");
    Ok(())
}

/// `tupper-supervisor logout`.
pub fn logout(opts: &LogoutOptions) -> Result<()> {
    let path = auth::auth_file_path().ok_or_else(|| {
        Error::user("neither XDG_CONFIG_HOME nor HOME is set: no auth file to change")
    })?;
    let (key, _) = if opts.all {
        (String::new(), String::new())
    } else {
        key_of(opts.registry.as_deref())?
    };
    let Some(store) = AuthStore::open(&path, false)? else {
        if opts.all {
            println!("Removed login credentials for all registries");
            return Ok(());
        }
        return Err(Error::user(format!("not logged into {key}")));
    };
    if opts.all {
        store.update(|doc| {
            auth::remove_all(doc);
            Ok(())
        })?;
        println!("Removed login credentials for all registries");
        return Ok(());
    }
    store.update(|doc| {
        if auth::remove_entry(doc, &key) {
            Ok(())
        } else {
            Err(Error::user(format!("not logged into {key}")))
        }
    })?;
    println!("Removed login credentials for {key}");
    Ok(())
}

/// The credentials `login` was given: `-p` (with a warning), standard
/// input, or a prompt on a terminal.
fn read_credentials(opts: &LoginOptions) -> Result<Credentials> {
    let stdin = std::io::stdin();
    let terminal = stdin.is_terminal();
    let password = if let Some(p) = &opts.password {
        eprintln!(
            "WARNING! Using --password via the command line is insecure. Use --password-stdin."
        );
        p.clone()
    } else if opts.password_stdin {
        if opts.username.is_none() {
            return Err(Error::user("--password-stdin needs --username (-u)"));
        }
        let mut raw = Vec::new();
        stdin
            .lock()
            .take(MAX_PASSWORD)
            .read_to_end(&mut raw)
            .map_err(|e| Error::io("read the password from standard input", e))?;
        let text = String::from_utf8(raw)
            .map_err(|_| Error::user("the password on standard input is not UTF-8"))?;
        text.trim_end_matches(['\n', '\r']).to_string()
    } else if !terminal {
        return Err(Error::user(
            "no password: give it with --password-stdin (or -p), or run login on a terminal",
        ));
    } else {
        String::new()
    };
    let username = match &opts.username {
        Some(u) => u.clone(),
        None if terminal => prompt("Username: ", true)?,
        None => {
            return Err(Error::user(
                "no user name: give it with --username (-u), or run login on a terminal",
            ))
        }
    };
    let password = if opts.password.is_none() && !opts.password_stdin {
        prompt("Password: ", false)?
    } else {
        password
    };
    check_credentials(&username, &password)?;
    Ok(Credentials { username, password })
}

/// What the file's `auth` (base64 of `USER:PASSWORD`) can hold.
fn check_credentials(username: &str, password: &str) -> Result<()> {
    if username.is_empty() || username.len() > 1024 {
        return Err(Error::user("the user name is empty or too long"));
    }
    if username.contains(':') || username.chars().any(char::is_control) {
        return Err(Error::user(
            "the user name must not contain ':' or control characters",
        ));
    }
    if password.is_empty() {
        return Err(Error::user("the password is empty"));
    }
    if password.contains(['\n', '\r', '\0']) {
        return Err(Error::user(
            "the password must not contain line breaks or NUL",
        ));
    }
    Ok(())
}

/// Ask on the terminal (standard input, prompt on standard error); without
/// echo for a password, the terminal's settings restored after.
fn prompt(question: &str, echo: bool) -> Result<String> {
    use nix::sys::termios::{self, LocalFlags, SetArg};
    let stdin = std::io::stdin();
    // Echo goes off before the question shows: what is typed once it
    // shows is never echoed.
    let saved = if echo {
        None
    } else {
        let saved = termios::tcgetattr(stdin.as_fd())
            .map_err(|e| Error::io("read the terminal's settings", e.into()))?;
        let mut quiet = saved.clone();
        quiet.local_flags.remove(LocalFlags::ECHO);
        quiet.local_flags.insert(LocalFlags::ECHONL);
        termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &quiet)
            .map_err(|e| Error::io("turn the terminal's echo off", e.into()))?;
        Some(saved)
    };
    eprint!("{question}");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    let read = stdin.lock().take(MAX_PASSWORD).read_line(&mut line);
    if let Some(s) = saved {
        let _ = termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &s);
    }
    read.map_err(|e| Error::io("read from the terminal", e))?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

/// The auth file's directory, opened without following a symlink, checked
/// to be the user's and writable by nobody else.
struct AuthStore {
    dir: File,
    path: PathBuf,
}

impl AuthStore {
    /// `None` when the directory does not exist and `create` is false.
    fn open(path: &Path, create: bool) -> Result<Option<AuthStore>> {
        let dir_path = path
            .parent()
            .ok_or_else(|| Error::user(format!("{} has no directory", path.display())))?;
        if create {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir_path)
                .map_err(|e| Error::io(format!("create {}", dir_path.display()), e))?;
        }
        let dir = match nix::fcntl::open(
            dir_path,
            nix::fcntl::OFlag::O_RDONLY
                | nix::fcntl::OFlag::O_DIRECTORY
                | nix::fcntl::OFlag::O_NOFOLLOW
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        ) {
            Ok(fd) => File::from(fd),
            Err(nix::errno::Errno::ENOENT) if !create => return Ok(None),
            Err(nix::errno::Errno::ELOOP | nix::errno::Errno::ENOTDIR) => {
                return Err(Error::user(format!(
                    "{} is not a directory (a symbolic link?): refusing to keep credentials there",
                    dir_path.display()
                )))
            }
            Err(e) => return Err(Error::io(format!("open {}", dir_path.display()), e.into())),
        };
        let meta = dir
            .metadata()
            .map_err(|e| Error::io(format!("stat {}", dir_path.display()), e))?;
        let me = nix::unistd::geteuid().as_raw();
        if meta.uid() != me || meta.mode() & 0o022 != 0 {
            return Err(Error::user(format!(
                "{} belongs to uid {} or others may write to it (mode {:04o}): refusing to keep \
                 credentials there",
                dir_path.display(),
                meta.uid(),
                meta.mode() & 0o7777
            )));
        }
        Ok(Some(AuthStore {
            dir,
            path: path.to_path_buf(),
        }))
    }

    /// The file's text, `None` if there is none; a symlink, another user's
    /// file or one others may read is refused.
    fn read(&self) -> Result<Option<String>> {
        let shown = self.path.display();
        let fd = match nix::fcntl::openat(
            self.dir.as_fd(),
            FILE_NAME,
            nix::fcntl::OFlag::O_RDONLY
                | nix::fcntl::OFlag::O_NOFOLLOW
                | nix::fcntl::OFlag::O_NONBLOCK
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(nix::errno::Errno::ENOENT) => return Ok(None),
            Err(nix::errno::Errno::ELOOP) => {
                return Err(Error::user(format!(
                    "{shown} is a symbolic link: refusing to read or replace it"
                )))
            }
            Err(e) => return Err(Error::io(format!("open {shown}"), e.into())),
        };
        let text = auth::read_private(File::from(fd), &self.path)?;
        Ok(Some(text))
    }

    /// Under the directory's lock: read the file, let `change` edit its
    /// JSON, replace the file atomically (mode 0600).
    fn update(
        &self,
        change: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>) -> Result<()>,
    ) -> Result<()> {
        let shown = self.path.display().to_string();
        let dup = self
            .dir
            .try_clone()
            .map_err(|e| Error::io(format!("open {shown}"), e))?;
        let _lock = tupper_sys::lock::exclusive(dup)
            .map_err(|e| Error::io(format!("lock the directory of {shown}"), e))?;
        let text = self.read()?;
        let mut doc = auth::parse_document(text.as_deref().unwrap_or(""), &shown)?;
        change(&mut doc)?;
        let mut bytes = serde_json::to_vec_pretty(&serde_json::Value::Object(doc))
            .map_err(|e| Error::user(format!("{shown}: {e}")))?;
        bytes.push(b'\n');
        tupper_sys::atomic::write_at(&self.dir, FILE_NAME, &bytes, 0o600, |_| Ok(()))
            .map_err(|e| Error::io(format!("write {shown}"), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn creds(u: &str) -> Credentials {
        Credentials {
            username: u.into(),
            password: "pw".into(),
        }
    }

    #[test]
    fn the_file_and_its_directory_are_made_private() {
        let home = tempfile::tempdir().unwrap();
        let path = home.path().join("config/tupperware/auth.json");
        assert!(AuthStore::open(&path, false).unwrap().is_none());
        let store = AuthStore::open(&path, true).unwrap().unwrap();
        assert_eq!(store.read().unwrap(), None);
        store
            .update(|d| {
                auth::set_entry(d, "quay.io", &creds("a"));
                Ok(())
            })
            .unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o600);
        let dmeta = std::fs::metadata(path.parent().unwrap()).unwrap();
        assert_eq!(dmeta.mode() & 0o777, 0o700);
        let config = auth::load(&path).unwrap();
        assert_eq!(config.get("quay.io").unwrap().username, "a");
        assert!(!path.with_file_name("auth.json.tmp").exists());
        // A failing change writes nothing.
        let before = std::fs::read(&path).unwrap();
        let e = store.update(|_| Err(Error::user("no")));
        assert!(e.is_err());
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }

    #[test]
    fn a_symlink_at_the_files_path_is_refused_and_its_target_untouched() {
        let home = tempfile::tempdir().unwrap();
        let dir = home.path().join("tupperware");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        let target = home.path().join("elsewhere.json");
        std::fs::write(&target, "{}").unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600)).unwrap();
        let path = dir.join("auth.json");
        std::os::unix::fs::symlink(&target, &path).unwrap();
        let store = AuthStore::open(&path, true).unwrap().unwrap();
        let e = store.read().unwrap_err().to_string();
        assert!(e.contains("symbolic link"), "{e}");
        let e = store.update(|d| {
            auth::set_entry(d, "quay.io", &creds("a"));
            Ok(())
        });
        assert!(e.is_err());
        assert_eq!(std::fs::read(&target).unwrap(), b"{}");
        assert!(std::fs::symlink_metadata(&path)
            .unwrap()
            .file_type()
            .is_symlink());
    }

    #[test]
    fn a_readable_file_or_an_open_directory_is_refused() {
        let home = tempfile::tempdir().unwrap();
        let dir = home.path().join("tupperware");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        let path = dir.join("auth.json");
        std::fs::write(&path, r#"{"auths":{}}"#).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let store = AuthStore::open(&path, true).unwrap().unwrap();
        assert!(store.read().unwrap_err().to_string().contains("chmod 600"));
        assert!(store.update(|_| Ok(())).is_err());
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o640);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(AuthStore::open(&path, true).is_err());
        // A directory that is a symlink is refused too.
        let link = home.path().join("linked");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        assert!(AuthStore::open(&link.join("auth.json"), false).is_err());
    }

    #[test]
    fn credentials_the_file_cannot_hold_are_refused() {
        assert!(check_credentials("u", "p:w with spaces").is_ok());
        assert!(check_credentials("", "p").is_err());
        assert!(check_credentials("u:x", "p").is_err());
        assert!(check_credentials("u\n", "p").is_err());
        assert!(check_credentials("u", "").is_err());
        assert!(check_credentials("u", "a\nb").is_err());
    }
}
