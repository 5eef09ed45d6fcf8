//! Authentication: the registry's `WWW-Authenticate` challenge and the
//! user's credentials file, `$XDG_CONFIG_HOME/tupperware/auth.json` in the
//! containers-auth.json format (`{"auths": {"REGISTRY[/PATH]": {"auth":
//! base64("USER:PASSWORD")}}}`), which must be readable by its owner only.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use base64::Engine;
use serde::Deserialize;
use serde_json::Value;

use crate::error::{Error, Result};

/// The credentials file is small; anything larger is not one.
const MAX_AUTH_FILE: u64 = 1 << 20;

/// One challenge of a `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// Token authentication: fetch a token from `realm`.
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
    Basic,
}

/// Parse a `WWW-Authenticate` value (`Bearer realm="...",service="..."`);
/// `None` for a scheme this client does not speak or a malformed value.
pub fn parse_challenge(value: &str) -> Option<Challenge> {
    let value = value.trim();
    let (scheme, rest) = match value.split_once(char::is_whitespace) {
        Some((s, r)) => (s, r.trim_start()),
        None => (value, ""),
    };
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let params = parse_params(rest)?;
    let realm = params.get("realm")?.clone();
    if realm.is_empty() {
        return None;
    }
    Some(Challenge::Bearer {
        realm,
        service: params.get("service").cloned(),
        scope: params.get("scope").cloned(),
    })
}

/// `key=value` or `key="quoted \" value"`, separated by commas.
fn parse_params(mut s: &str) -> Option<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    loop {
        s = s.trim_start_matches([' ', '\t', ',']);
        if s.is_empty() {
            return Some(out);
        }
        let eq = s.find('=')?;
        let key = s[..eq].trim().to_ascii_lowercase();
        if key.is_empty() || key.contains([' ', ',', '"']) {
            return None;
        }
        s = s[eq + 1..].trim_start();
        let value;
        if let Some(q) = s.strip_prefix('"') {
            let mut v = String::new();
            let mut chars = q.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => v.push(chars.next()?.1),
                    '"' => {
                        end = Some(i + 1);
                        break;
                    }
                    c => v.push(c),
                }
            }
            s = &q[end?..];
            value = v;
        } else {
            let end = s.find(',').unwrap_or(s.len());
            value = s[..end].trim().to_string();
            s = &s[end..];
        }
        out.insert(key, value);
    }
}

/// A user name and password for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({:?}, <password>)", self.username)
    }
}

impl Credentials {
    /// The `Authorization: Basic` value.
    pub fn basic(&self) -> String {
        let raw = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

#[derive(Debug, Default, Deserialize)]
struct AuthFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
}

#[derive(Debug, Default, Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

/// The parsed credentials file: entries keyed by `REGISTRY[/PATH]`.
#[derive(Debug, Default)]
pub struct AuthConfig {
    entries: BTreeMap<String, Credentials>,
}

impl AuthConfig {
    /// Parse the file's text; `origin` names it in messages.
    pub fn parse(text: &str, origin: &str) -> Result<AuthConfig> {
        let file: AuthFile = serde_json::from_str(text)
            .map_err(|e| Error::user(format!("{origin}: not a valid auth.json file: {e}")))?;
        let mut entries = BTreeMap::new();
        for (key, entry) in file.auths {
            let creds = match (entry.auth, entry.username, entry.password) {
                (Some(a), _, _) if !a.is_empty() => decode_auth(&a).ok_or_else(|| {
                    Error::user(format!(
                        "{origin}: the \"auth\" of {key:?} is not base64 of USER:PASSWORD"
                    ))
                })?,
                (_, Some(username), Some(password)) => Credentials { username, password },
                // An entry with nothing usable (an identity token, a
                // credential helper's placeholder) gives no credentials.
                _ => continue,
            };
            entries.insert(normalise_key(&key), creds);
        }
        Ok(AuthConfig { entries })
    }

    /// The credentials stored under exactly `key` (normalised).
    pub fn get(&self, key: &str) -> Option<&Credentials> {
        self.entries.get(&normalise_key(key))
    }

    /// Credentials for `registry/repository`: the longest matching
    /// `REGISTRY/PATH` prefix first, then the registry alone.
    pub fn lookup(&self, registry: &str, repository: &str) -> Option<&Credentials> {
        let full = format!("{registry}/{repository}");
        let mut key = full.as_str();
        loop {
            if let Some(c) = self.entries.get(key) {
                return Some(c);
            }
            match key.rsplit_once('/') {
                Some((shorter, _)) => key = shorter,
                None => return None,
            }
        }
    }
}

/// `https://index.docker.io/v1/` (docker's legacy key) is `docker.io`;
/// a scheme and a trailing slash are dropped.
pub fn normalise_key(key: &str) -> String {
    let k = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let k = k.trim_end_matches('/');
    let k = k.strip_suffix("/v1").or(k.strip_suffix("/v2")).unwrap_or(k);
    match k {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".to_string(),
        _ => k.to_string(),
    }
}

/// What `login`/`logout` name: `REGISTRY[/NAMESPACE[/REPO]]`, with or
/// without a scheme (`https://index.docker.io/v1/` is `docker.io`), as the
/// key `pull` looks up, and the registry alone.
pub fn login_key(arg: &str) -> Result<(String, String)> {
    let key = normalise_key(arg.trim());
    let bad = |why: String| Error::user(format!("invalid registry {arg:?}: {why}"));
    if key.is_empty() || key.len() > 512 {
        return Err(bad("empty or too long".into()));
    }
    let (registry, path) = match key.split_once('/') {
        Some((r, p)) => (r, Some(p)),
        None => (key.as_str(), None),
    };
    super::reference::check_registry(registry).map_err(bad)?;
    if let Some(p) = path {
        super::reference::check_repository(p).map_err(bad)?;
    }
    let registry = registry.to_string();
    Ok((key, registry))
}

/// The auth file's JSON as an object (an empty file is an empty one);
/// `auths`, if there, must be an object.
pub fn parse_document(text: &str, origin: &str) -> Result<serde_json::Map<String, Value>> {
    if text.trim().is_empty() {
        return Ok(serde_json::Map::new());
    }
    let bad = |why: String| Error::user(format!("{origin}: not a valid auth.json file: {why}"));
    let doc: Value = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
    let Value::Object(map) = doc else {
        return Err(bad("not a JSON object".into()));
    };
    match map.get("auths") {
        None | Some(Value::Object(_)) => Ok(map),
        Some(_) => Err(bad("\"auths\" is not an object".into())),
    }
}

/// Apply `change` to the `auths` object of `doc` (made if missing).
fn with_auths<T>(
    doc: &mut serde_json::Map<String, Value>,
    change: impl FnOnce(&mut serde_json::Map<String, Value>) -> T,
) -> T {
    let mut auths = match doc.remove("auths") {
        Some(Value::Object(m)) => m,
        _ => serde_json::Map::new(),
    };
    let out = change(&mut auths);
    doc.insert("auths".into(), Value::Object(auths));
    out
}

/// Store `credentials` under `key` (normalised): every other entry and key
/// stays; entries that name the same registry path another way (docker's
/// `https://index.docker.io/v1/` for `docker.io`) go, so that none of them
/// shadows the new one.
pub fn set_entry(doc: &mut serde_json::Map<String, Value>, key: &str, credentials: &Credentials) {
    let raw = format!("{}:{}", credentials.username, credentials.password);
    let mut entry = serde_json::Map::new();
    entry.insert(
        "auth".into(),
        Value::String(base64::engine::general_purpose::STANDARD.encode(raw)),
    );
    with_auths(doc, |auths| {
        auths.retain(|k, _| normalise_key(k) != key);
        auths.insert(key.to_string(), Value::Object(entry));
    });
}

/// Remove every entry whose key is `key` once normalised; false if none was.
pub fn remove_entry(doc: &mut serde_json::Map<String, Value>, key: &str) -> bool {
    with_auths(doc, |auths| {
        let before = auths.len();
        auths.retain(|k, _| normalise_key(k) != key);
        auths.len() != before
    })
}

/// Remove every entry (`logout --all`); other keys stay.
pub fn remove_all(doc: &mut serde_json::Map<String, Value>) {
    with_auths(doc, |auths| auths.clear());
}

fn decode_auth(a: &str) -> Option<Credentials> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(a.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (u, p) = text.split_once(':')?;
    if u.is_empty() {
        return None;
    }
    Some(Credentials {
        username: u.to_string(),
        password: p.to_string(),
    })
}

/// `$XDG_CONFIG_HOME/tupperware/auth.json`, or `~/.config/...`.
pub fn auth_file_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| {
            std::env::var_os("HOME")
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
                .map(|h| h.join(".config"))
        })?;
    Some(base.join("tupperware/auth.json"))
}

/// Read the credentials file at `path`: absent is no credentials; one that
/// its group or others may read or write, or that another user owns, is
/// refused rather than used.
pub fn load(path: &Path) -> Result<AuthConfig> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(AuthConfig::default()),
        Err(e) => return Err(Error::io(format!("open {}", path.display()), e)),
    };
    let text = read_private(file, path)?;
    AuthConfig::parse(&text, &path.display().to_string())
}

/// The text of the credentials file `file`, opened from `path` (`pull`'s
/// read and `login`'s): refused unless its owner's alone, and a regular
/// file of at most 1 MiB.
pub fn read_private(file: File, path: &Path) -> Result<String> {
    let meta = file
        .metadata()
        .map_err(|e| Error::io(format!("stat {}", path.display()), e))?;
    check_private(
        path,
        meta.mode(),
        meta.uid(),
        nix::unistd::geteuid().as_raw(),
    )?;
    if !meta.is_file() || meta.len() > MAX_AUTH_FILE {
        return Err(Error::user(format!(
            "{} is not a credentials file (a regular file of at most 1 MiB)",
            path.display()
        )));
    }
    let mut text = String::new();
    file.take(MAX_AUTH_FILE)
        .read_to_string(&mut text)
        .map_err(|e| Error::io(format!("read {}", path.display()), e))?;
    Ok(text)
}

/// A file holding passwords must be its owner's alone.
pub fn check_private(path: &Path, mode: u32, owner: u32, me: u32) -> Result<()> {
    if owner != me {
        return Err(Error::user(format!(
            "{} belongs to uid {owner}, not to you: refusing to use its credentials",
            path.display()
        )));
    }
    if mode & 0o077 != 0 {
        return Err(Error::user(format!(
            "{} is accessible to other users (mode {:04o}): it holds passwords; \
             make it private with `chmod 600 {}`",
            path.display(),
            mode & 0o7777,
            path.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenges_are_parsed() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
        );
        assert_eq!(
            c,
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/busybox:pull".into()),
            })
        );
        // Case-insensitive scheme and keys, spaces, unquoted values, escapes.
        let c = parse_challenge(r#"bearer Realm = "http://h/t\"x" , service=reg"#);
        assert_eq!(
            c,
            Some(Challenge::Bearer {
                realm: "http://h/t\"x".into(),
                service: Some("reg".into()),
                scope: None,
            })
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
    }

    #[test]
    fn malformed_or_unknown_challenges_are_none() {
        for bad in [
            "",
            "Negotiate abc",
            "Bearer",
            r#"Bearer service="x""#,
            r#"Bearer realm="unterminated"#,
            r#"Bearer realm="""#,
            "Bearer realm",
        ] {
            assert_eq!(parse_challenge(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn auth_json_entries_are_found_most_specific_first() {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let text = format!(
            r#"{{"auths": {{
                "https://index.docker.io/v1/": {{"auth": "{}"}},
                "quay.io": {{"auth": "{}"}},
                "quay.io/team/app": {{"auth": "{}"}},
                "127.0.0.1:5000": {{"username": "u", "password": "p:w"}},
                "helper.example": {{"identitytoken": "x"}}
            }}, "credHelpers": {{}}}}"#,
            b64("hub:pw"),
            b64("q:1"),
            b64("team:2:with:colons")
        );
        let a = AuthConfig::parse(&text, "auth.json").unwrap();
        assert_eq!(
            a.lookup("docker.io", "library/busybox").unwrap().username,
            "hub"
        );
        assert_eq!(a.lookup("quay.io", "other/x").unwrap().username, "q");
        let team = a.lookup("quay.io", "team/app").unwrap();
        assert_eq!(
            (team.username.as_str(), team.password.as_str()),
            ("team", "2:with:colons")
        );
        assert_eq!(
            a.lookup("quay.io", "team/application").unwrap().username,
            "q"
        );
        assert_eq!(
            a.lookup("127.0.0.1:5000", "busybox").unwrap().password,
            "p:w"
        );
        assert!(a.lookup("helper.example", "x").is_none());
        assert!(a.lookup("ghcr.io", "x").is_none());
        assert_eq!(
            Credentials {
                username: "u".into(),
                password: "p".into()
            }
            .basic(),
            "Basic dTpw"
        );
    }

    #[test]
    fn malformed_auth_json_is_refused_with_its_name() {
        let e = AuthConfig::parse("{", "/x/auth.json")
            .unwrap_err()
            .to_string();
        assert!(e.contains("/x/auth.json"), "{e}");
        let e = AuthConfig::parse(r#"{"auths":{"r":{"auth":"!!"}}}"#, "f").unwrap_err();
        assert!(e.to_string().contains("base64"), "{e}");
        let e = AuthConfig::parse(r#"{"auths":{"r":{"auth":"bm9jb2xvbg=="}}}"#, "f");
        assert!(e.is_err(), "no colon accepted");
    }

    #[test]
    fn a_credentials_file_others_can_read_is_refused() {
        let p = Path::new("/home/u/.config/tupperware/auth.json");
        assert!(check_private(p, 0o100600, 1000, 1000).is_ok());
        assert!(check_private(p, 0o100400, 1000, 1000).is_ok());
        let e = check_private(p, 0o100644, 1000, 1000)
            .unwrap_err()
            .to_string();
        assert!(e.contains("mode 0644") && e.contains("chmod 600"), "{e}");
        assert!(check_private(p, 0o100640, 1000, 1000).is_err());
        assert!(check_private(p, 0o100602, 1000, 1000).is_err());
        assert!(check_private(p, 0o100600, 0, 1000).is_err());
    }

    #[test]
    fn load_checks_the_mode_of_the_real_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("auth.json");
        assert!(load(&p).unwrap().entries.is_empty(), "absent is empty");
        std::fs::write(&p, r#"{"auths":{}}"#).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(load(&p).is_err());
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(load(&p).is_ok());
    }

    #[test]
    fn login_keys_are_what_pull_looks_up() {
        for (arg, key, registry) in [
            ("docker.io", "docker.io", "docker.io"),
            ("https://index.docker.io/v1/", "docker.io", "docker.io"),
            ("index.docker.io", "docker.io", "docker.io"),
            ("registry-1.docker.io", "docker.io", "docker.io"),
            ("http://127.0.0.1:5000/", "127.0.0.1:5000", "127.0.0.1:5000"),
            ("quay.io/team/app", "quay.io/team/app", "quay.io"),
            ("localhost:5000", "localhost:5000", "localhost:5000"),
        ] {
            assert_eq!(
                login_key(arg).unwrap(),
                (key.to_string(), registry.to_string()),
                "{arg}"
            );
        }
        for bad in ["", "bad host", "quay.io/UPPER", "x:0", "a..b", "quay.io//x"] {
            assert!(login_key(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn set_entry_keeps_everything_else_and_pull_finds_it() {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let text = format!(
            r#"{{"auths": {{
                "https://index.docker.io/v1/": {{"auth": "{}"}},
                "quay.io": {{"auth": "{}", "email": "kept"}}
            }}, "credHelpers": {{"gcr.io": "gcloud"}}, "unknown": [1, 2]}}"#,
            b64("old:pw"),
            b64("q:1")
        );
        let mut doc = parse_document(&text, "f").unwrap();
        let creds = Credentials {
            username: "new".into(),
            password: "p:w".into(),
        };
        set_entry(&mut doc, "docker.io", &creds);
        let out = serde_json::to_string(&Value::Object(doc.clone())).unwrap();
        let again: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(again["credHelpers"]["gcr.io"], "gcloud");
        assert_eq!(again["unknown"], serde_json::json!([1, 2]));
        assert_eq!(again["auths"]["quay.io"]["email"], "kept");
        // docker's legacy key is replaced, not left to shadow the new entry.
        assert!(again["auths"].get("https://index.docker.io/v1/").is_none());
        let config = AuthConfig::parse(&out, "f").unwrap();
        let got = config.lookup("docker.io", "library/busybox").unwrap();
        assert_eq!(
            (got.username.as_str(), got.password.as_str()),
            ("new", "p:w")
        );
        assert_eq!(
            config.get("https://index.docker.io/v1/").unwrap().username,
            "new"
        );
        assert_eq!(config.lookup("quay.io", "x/y").unwrap().username, "q");

        assert!(remove_entry(&mut doc, "docker.io"));
        assert!(
            !remove_entry(&mut doc, "docker.io"),
            "nothing left to remove"
        );
        let config = AuthConfig::parse(
            &serde_json::to_string(&Value::Object(doc.clone())).unwrap(),
            "f",
        )
        .unwrap();
        assert!(config.get("docker.io").is_none());
        assert!(config.get("quay.io").is_some());
        remove_all(&mut doc);
        assert_eq!(doc["auths"], serde_json::json!({}));
        assert_eq!(doc["credHelpers"]["gcr.io"], "gcloud");
    }

    #[test]
    fn documents_that_are_not_auth_files_are_refused() {
        assert!(parse_document("", "f").unwrap().is_empty());
        assert!(parse_document("  \n", "f").unwrap().is_empty());
        for bad in ["[]", "1", "{", r#"{"auths": []}"#] {
            assert!(parse_document(bad, "f").is_err(), "{bad}");
        }
        let mut doc = parse_document("{}", "f").unwrap();
        assert!(!remove_entry(&mut doc, "quay.io"));
    }
}
