//! `-e KEY`, `-e KEY=VALUE` and `--env-file FILE`: the container's
//! environment as podman builds it (files first, then `-e`, a later entry
//! for a key replacing an earlier one).

use std::io::Read;

use crate::error::{Error, Result};

/// Largest env file read.
pub const MAX_ENV_FILE_BYTES: u64 = 1 << 20;

/// One `KEY=VALUE` or `KEY` (the caller's value) entry, resolved: `None`
/// when `KEY` alone names a variable the caller does not have.
pub fn resolve(entry: &str, lookup: &impl Fn(&str) -> Option<String>) -> Result<Option<String>> {
    if entry.contains('\0') {
        return Err(Error::user(format!(
            "environment entry {entry:?} contains a NUL byte"
        )));
    }
    match entry.split_once('=') {
        Some(("", _)) => Err(Error::user(format!(
            "environment entry {entry:?} has no name: expected KEY=VALUE or KEY"
        ))),
        Some(_) => Ok(Some(entry.to_string())),
        None if entry.is_empty() => Err(Error::user(
            "empty environment entry: expected KEY=VALUE or KEY",
        )),
        None => Ok(lookup(entry).map(|v| format!("{entry}={v}"))),
    }
}

/// The lines of an env file: `KEY=VALUE` (the value verbatim), `KEY`
/// alone (the caller's value, left out if unset), blank lines and lines
/// starting with `#` ignored; leading whitespace is dropped.
pub fn parse_file(text: &str, what: &str) -> Result<Vec<String>> {
    let mut out = vec![];
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let key = line.split_once('=').map_or(line, |(k, _)| k);
        if key.is_empty() || key.chars().any(char::is_whitespace) {
            return Err(Error::user(format!(
                "{what} line {}: {:?} is not KEY=VALUE or KEY (names have no spaces)",
                n + 1,
                line
            )));
        }
        out.push(line.to_string());
    }
    Ok(out)
}

fn read_file(path: &str) -> Result<String> {
    let file =
        std::fs::File::open(path).map_err(|e| Error::io(format!("open the env file {path}"), e))?;
    let mut bytes = vec![];
    file.take(MAX_ENV_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(format!("read the env file {path}"), e))?;
    if bytes.len() as u64 > MAX_ENV_FILE_BYTES {
        return Err(Error::user(format!(
            "env file {path} is larger than {MAX_ENV_FILE_BYTES} bytes"
        )));
    }
    String::from_utf8(bytes).map_err(|_| Error::user(format!("env file {path} is not UTF-8")))
}

/// Replace an earlier entry with the same key, or append.
fn set(env: &mut Vec<String>, entry: String) {
    let key = |e: &str| e.split_once('=').map_or(e, |(k, _)| k).to_string();
    let k = key(&entry);
    match env.iter_mut().find(|e| key(e) == k) {
        Some(old) => *old = entry,
        None => env.push(entry),
    }
}

/// The final `KEY=VALUE` list from `--env-file`s then `-e` flags.
pub fn build(
    files: &[String],
    flags: &[String],
    lookup: &impl Fn(&str) -> Option<String>,
) -> Result<Vec<String>> {
    let mut env = vec![];
    for path in files {
        for line in parse_file(&read_file(path)?, &format!("env file {path}"))? {
            if let Some(e) = resolve(&line, lookup)? {
                set(&mut env, e);
            }
        }
    }
    for flag in flags {
        if let Some(e) = resolve(flag, lookup)? {
            set(&mut env, e);
        }
    }
    Ok(env)
}

/// The supervisor's own environment, for `KEY` entries.
pub fn caller_env(key: &str) -> Option<String> {
    std::env::var(key).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(k: &str) -> Option<String> {
        (k == "HOSTVAR").then(|| "from host".to_string())
    }

    #[test]
    fn key_alone_passes_the_callers_value() {
        assert_eq!(
            resolve("HOSTVAR", &lookup).unwrap(),
            Some("HOSTVAR=from host".into())
        );
        assert_eq!(resolve("UNSET", &lookup).unwrap(), None);
        assert_eq!(resolve("A=b=c", &lookup).unwrap(), Some("A=b=c".into()));
        assert_eq!(resolve("A=", &lookup).unwrap(), Some("A=".into()));
        assert!(resolve("=x", &lookup).is_err());
        assert!(resolve("", &lookup).is_err());
        assert!(resolve("A=\0", &lookup).is_err());
    }

    #[test]
    fn env_file_lines() {
        let text = "# comment\n\nA=1\n  B=two words \nHOSTVAR\nUNSET\nC=x=y\n#D=no\n";
        let lines = parse_file(text, "f").unwrap();
        assert_eq!(lines, ["A=1", "B=two words ", "HOSTVAR", "UNSET", "C=x=y"]);
        let err = parse_file("A=1\nBAD KEY=2\n", "env file f")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2"), "{err}");
        assert!(parse_file("=x\n", "f").is_err());
    }

    #[test]
    fn files_then_flags_later_wins() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("env");
        std::fs::write(&f, "A=file\nB=file\nHOSTVAR\nUNSET\n").unwrap();
        let env = build(
            &[f.to_string_lossy().into_owned()],
            &["B=flag".into(), "C=flag".into(), "UNSET".into()],
            &lookup,
        )
        .unwrap();
        assert_eq!(env, ["A=file", "B=flag", "HOSTVAR=from host", "C=flag"]);
        let missing = build(&["/nonexistent/env".into()], &[], &lookup).unwrap_err();
        assert!(missing.to_string().contains("/nonexistent/env"));
        std::fs::write(&f, vec![b'A'; MAX_ENV_FILE_BYTES as usize + 1]).unwrap();
        let big = build(&[f.to_string_lossy().into_owned()], &[], &lookup).unwrap_err();
        assert!(big.to_string().contains("larger than"), "{big}");
    }
}
