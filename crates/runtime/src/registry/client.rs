//! A small client of the OCI distribution API over `ureq` (blocking, rustls
//! with the system's CA store): the `/v2/` ping that finds the scheme and the
//! challenge, token and basic authentication, manifests with a size bound,
//! and blobs as streams the caller hashes while it writes them.

use std::io::Read;
use std::time::Duration;

use serde::Deserialize;
use ureq::http::Response;
use ureq::tls::{RootCerts, TlsConfig};
use ureq::{Agent, Body};

use super::auth::{parse_challenge, Challenge, Credentials};
use super::manifest::{ACCEPT, MAX_MANIFEST};
use super::reference::Reference;
use crate::error::{Error, Result};

/// A token response is small JSON.
const MAX_TOKEN_RESPONSE: u64 = 1 << 20;
/// Error bodies are read this far for their message.
const MAX_ERROR_BODY: u64 = 64 << 10;

pub struct Client {
    agent: Agent,
    /// `https://host[:port]` or, with TLS verification off and no TLS
    /// spoken by the registry, `http://host[:port]`.
    base: String,
    repository: String,
    registry: String,
    /// The `Authorization` value, once authenticated.
    authorization: Option<String>,
    credentials: Option<Credentials>,
    tls_verify: bool,
    /// The challenge of the last 401, to authenticate once on demand.
    challenge: Option<Challenge>,
    /// The token server answered 401/403 to the credentials.
    credentials_refused: bool,
}

/// A fetched manifest document.
pub struct Fetched {
    pub bytes: Vec<u8>,
    pub content_type: Option<String>,
}

fn agent(tls_verify: bool) -> Agent {
    let tls = TlsConfig::builder()
        .root_certs(RootCerts::PlatformVerifier)
        .disable_verification(!tls_verify)
        .build();
    Agent::config_builder()
        .tls_config(tls)
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .max_redirects(5)
        // Credentials never follow a redirect (blobs often redirect to a CDN).
        .redirect_auth_headers(ureq::config::RedirectAuthHeaders::Never)
        .user_agent(concat!("tupperware/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

fn transport(what: &str, e: ureq::Error) -> Error {
    Error::user(format!("{what}: {e}"))
}

impl Client {
    /// Find the registry's scheme and challenge with `GET /v2/`. With TLS
    /// verification, only HTTPS; without it, HTTPS without checking the
    /// certificate, then plain HTTP if the registry speaks no TLS.
    pub fn connect(
        reference: &Reference,
        tls_verify: bool,
        credentials: Option<Credentials>,
    ) -> Result<Client> {
        Client::connect_host(
            reference.api_host(),
            &reference.registry,
            &reference.repository,
            tls_verify,
            credentials,
        )
    }

    /// [`Client::connect`] to the API at `host` of `registry`; an empty
    /// `repository` is the registry itself (`login`: tokens without scope).
    fn connect_host(
        host: &str,
        registry: &str,
        repository: &str,
        tls_verify: bool,
        credentials: Option<Credentials>,
    ) -> Result<Client> {
        let host = host.to_string();
        let mut client = Client {
            agent: agent(tls_verify),
            base: format!("https://{host}"),
            repository: repository.to_string(),
            registry: registry.to_string(),
            authorization: None,
            credentials,
            tls_verify,
            challenge: None,
            credentials_refused: false,
        };
        let ping = match client.agent.get(format!("{}/v2/", client.base)).call() {
            Ok(r) => r,
            Err(e) if !tls_verify && !matches!(e, ureq::Error::HostNotFound) => {
                client.base = format!("http://{host}");
                client
                    .agent
                    .get(format!("{}/v2/", client.base))
                    .call()
                    .map_err(|e2| {
                        transport(
                            &format!("cannot reach the registry {host} (HTTPS: {e}; HTTP)"),
                            e2,
                        )
                    })?
            }
            Err(e) => {
                return Err(Error::user(format!(
                    "cannot reach the registry {host} over HTTPS: {e}{}",
                    if tls_verify {
                        " (for a local registry without TLS or with a self-signed \
                         certificate, add --tls-verify=false)"
                    } else {
                        ""
                    }
                )))
            }
        };
        match ping.status().as_u16() {
            200..=299 => {}
            401 => client.challenge = challenge_of(&ping),
            s => {
                return Err(Error::user(format!(
                    "{host} does not look like a container registry: GET /v2/ answered {s}"
                )))
            }
        }
        Ok(client)
    }

    /// `login`: check `credentials` against the registry whose API is at
    /// `host`, as a pull would present them (a token of the challenge's
    /// realm, else basic authentication), before they are stored. A
    /// registry that needs no credentials accepts any; one that refuses
    /// them is `unauthorized`.
    pub fn check_login(
        host: &str,
        registry: &str,
        tls_verify: bool,
        credentials: Credentials,
    ) -> Result<()> {
        let mut client = Client::connect_host(host, registry, "", tls_verify, Some(credentials))?;
        let unauthorized = |status: u16| {
            Error::user(format!(
                "unauthorized: the registry {registry} refused the user name and password \
                 ({status}); nothing was stored"
            ))
        };
        let Some(challenge) = client.challenge.clone() else {
            // `/v2/` answered without a challenge: nothing to check against.
            return Ok(());
        };
        if matches!(challenge, Challenge::Basic) && client.basic_refused_over_http() {
            return Err(Error::user(format!(
                "the registry {registry} asks for a password over plain HTTP: refusing \
                 without --tls-verify=false"
            )));
        }
        let authenticated = match client.authenticate() {
            Ok(a) => a,
            Err(_) if client.credentials_refused => return Err(unauthorized(401)),
            Err(e) => return Err(e),
        };
        if !authenticated {
            return Err(unauthorized(401));
        }
        let url = format!("{}/v2/", client.base);
        let mut req = client.agent.get(&url);
        if let Some(a) = &client.authorization {
            req = req.header("Authorization", a);
        }
        let resp = req
            .call()
            .map_err(|e| transport(&format!("GET {url}"), e))?;
        match resp.status().as_u16() {
            200..=299 => Ok(()),
            s @ (401 | 403) => Err(unauthorized(s)),
            s => Err(Error::user(format!(
                "{registry}: GET /v2/ with the credentials answered {s}"
            ))),
        }
    }

    /// `http` or `https`, for messages and tests.
    pub fn scheme(&self) -> &str {
        self.base.split(':').next().unwrap_or("https")
    }

    fn url(&self, kind: &str, reference: &str) -> String {
        format!("{}/v2/{}/{kind}/{reference}", self.base, self.repository)
    }

    /// GET with the current authorization; on a 401, authenticate against
    /// its challenge once and try again.
    fn get(&mut self, url: &str, accept: Option<&str>) -> Result<Response<Body>> {
        for attempt in 0..2 {
            let mut req = self.agent.get(url);
            if let Some(a) = accept {
                req = req.header("Accept", a);
            }
            if let Some(auth) = &self.authorization {
                req = req.header("Authorization", auth);
            }
            let resp = req
                .call()
                .map_err(|e| transport(&format!("GET {url}"), e))?;
            if resp.status().as_u16() != 401 || attempt == 1 {
                return Ok(resp);
            }
            if let Some(c) = challenge_of(&resp) {
                self.challenge = Some(c);
            }
            if !self.authenticate()? {
                return Ok(resp);
            }
        }
        Err(Error::user(format!("GET {url}: authentication failed")))
    }

    /// A password is never sent in the clear (plain HTTP) unless
    /// `--tls-verify=false` allowed it.
    fn basic_refused_over_http(&self) -> bool {
        self.base.starts_with("http:") && self.tls_verify
    }

    /// Authenticate against the last challenge; false when there is
    /// nothing more to try.
    fn authenticate(&mut self) -> Result<bool> {
        match self.challenge.clone() {
            Some(Challenge::Basic) => match &self.credentials {
                Some(c) if self.authorization.is_none() => {
                    if self.basic_refused_over_http() {
                        return Ok(false);
                    }
                    self.authorization = Some(c.basic());
                    Ok(true)
                }
                _ => Ok(false),
            },
            Some(Challenge::Bearer {
                realm,
                service,
                scope,
            }) => {
                let token = self.token(&realm, service.as_deref(), scope.as_deref())?;
                let fresh = Some(format!("Bearer {token}"));
                if fresh == self.authorization {
                    return Ok(false);
                }
                self.authorization = fresh;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Fetch a pull token from the challenge's realm, with the user's
    /// credentials if there are any (anonymous otherwise).
    fn token(&mut self, realm: &str, service: Option<&str>, scope: Option<&str>) -> Result<String> {
        let plain = realm.starts_with("http://");
        if !plain && !realm.starts_with("https://") {
            return Err(Error::user(format!(
                "the registry {} names a token server that is not HTTP(S): {realm:?}",
                self.registry
            )));
        }
        if plain && self.tls_verify {
            return Err(Error::user(format!(
                "the registry {} wants tokens from {realm} over plain HTTP; \
                 refusing without --tls-verify=false",
                self.registry
            )));
        }
        let own_scope = format!("repository:{}:pull", self.repository);
        let mut req = self.agent.get(realm);
        match scope {
            Some(s) => req = req.query("scope", s),
            // `login` asks for a token of no scope: the credentials alone.
            None if !self.repository.is_empty() => req = req.query("scope", &own_scope),
            None => {}
        }
        if let Some(s) = service {
            req = req.query("service", s);
        }
        if let Some(c) = &self.credentials {
            req = req.header("Authorization", c.basic());
        }
        let mut resp = req
            .call()
            .map_err(|e| transport(&format!("token request to {realm}"), e))?;
        let status = resp.status().as_u16();
        if status == 401 || status == 403 {
            self.credentials_refused = true;
            return Err(self.denied(status));
        }
        if !(200..300).contains(&status) {
            return Err(Error::user(format!(
                "token request to {realm} answered {status}"
            )));
        }
        let body = resp
            .body_mut()
            .with_config()
            .limit(MAX_TOKEN_RESPONSE)
            .read_to_vec()
            .map_err(|e| transport(&format!("token from {realm}"), e))?;
        #[derive(Deserialize)]
        struct Token {
            token: Option<String>,
            access_token: Option<String>,
        }
        let t: Token = serde_json::from_slice(&body)
            .map_err(|e| Error::user(format!("token from {realm} is not valid JSON: {e}")))?;
        t.token
            .or(t.access_token)
            .filter(|t| !t.is_empty() && !t.contains(['\r', '\n']))
            .ok_or_else(|| Error::user(format!("token server {realm} sent no token")))
    }

    fn denied(&self, status: u16) -> Error {
        let file = super::auth::auth_file_path()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "~/.config/tupperware/auth.json".into());
        if self.credentials.is_some() {
            Error::user(format!(
                "the registry {} refused the credentials for {} in {file} ({status})",
                self.registry, self.registry
            ))
        } else {
            Error::user(format!(
                "the registry {} wants credentials for {} ({status}): add them to {file} \
                 (tupper-supervisor login {})",
                self.registry, self.repository, self.registry
            ))
        }
    }

    /// The manifest (or index) `reference` names, at most 4 MiB.
    pub fn manifest(&mut self, reference: &str) -> Result<Fetched> {
        let url = self.url("manifests", reference);
        let mut resp = self.get(&url, Some(ACCEPT))?;
        self.check_status(&mut resp, "manifest", reference)?;
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        if let Some(len) = content_length(&resp) {
            if len > MAX_MANIFEST {
                return Err(Error::user(format!(
                    "the manifest of {reference} is {len} bytes (at most {MAX_MANIFEST})"
                )));
            }
        }
        let bytes = resp
            .body_mut()
            .with_config()
            .limit(MAX_MANIFEST)
            .read_to_vec()
            .map_err(|e| match e {
                ureq::Error::BodyExceedsLimit(_) => Error::user(format!(
                    "the manifest of {reference} is larger than {MAX_MANIFEST} bytes"
                )),
                e => transport(&format!("manifest {reference}"), e),
            })?;
        Ok(Fetched {
            bytes,
            content_type,
        })
    }

    /// A reader of the blob `digest`, at most `size + 1` bytes (so that a
    /// longer blob shows as one byte too many).
    pub fn blob(&mut self, digest: &str, size: u64) -> Result<impl Read + use<>> {
        let url = self.url("blobs", digest);
        let mut resp = self.get(&url, None)?;
        self.check_status(&mut resp, "blob", digest)?;
        let body = resp.into_body();
        Ok(body
            .into_with_config()
            .limit(size.saturating_add(1))
            .reader())
    }

    /// A status other than 2xx as one clear line, with the registry's own
    /// error code and message when it sent them.
    fn check_status(&self, resp: &mut Response<Body>, what: &str, reference: &str) -> Result<()> {
        let status = resp.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(());
        }
        if status == 401 || status == 403 {
            return Err(self.denied(status));
        }
        let detail = resp
            .body_mut()
            .with_config()
            .limit(MAX_ERROR_BODY)
            .read_to_vec()
            .ok()
            .and_then(|b| registry_error(&b))
            .map(|m| format!(": {m}"))
            .unwrap_or_default();
        if status == 404 {
            return Err(Error::user(format!(
                "{}/{}: {what} {reference} not found{detail}",
                self.registry, self.repository
            )));
        }
        Err(Error::user(format!(
            "{}/{}: {what} {reference}: the registry answered {status}{detail}",
            self.registry, self.repository
        )))
    }
}

fn content_length(resp: &Response<Body>) -> Option<u64> {
    resp.headers()
        .get("content-length")?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

fn challenge_of(resp: &Response<Body>) -> Option<Challenge> {
    resp.headers()
        .get_all("www-authenticate")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(parse_challenge)
        // Prefer token authentication when both are offered.
        .min_by_key(|c| matches!(c, Challenge::Basic))
}

/// `{"errors":[{"code":"MANIFEST_UNKNOWN","message":"..."}]}` as
/// `MANIFEST_UNKNOWN (manifest unknown)`, printable characters only.
fn registry_error(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Errors {
        errors: Vec<One>,
    }
    #[derive(Deserialize)]
    struct One {
        code: Option<String>,
        message: Option<String>,
    }
    let e: Errors = serde_json::from_slice(body).ok()?;
    let first = e.errors.into_iter().next()?;
    let clean = |s: String| -> String { s.chars().filter(|c| !c.is_control()).take(200).collect() };
    Some(match (first.code, first.message) {
        (Some(c), Some(m)) => format!("{} ({})", clean(c), clean(m)),
        (Some(c), None) => clean(c),
        (None, Some(m)) => clean(m),
        (None, None) => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};

    /// A fake registry on loopback with token authentication: `/v2/`
    /// challenges, `/token` hands out `tok-anon` or, for `u:pw`, `tok-user`;
    /// `lib/open` needs any token, `lib/private` the user's.
    fn fake_registry() -> (String, std::thread::JoinHandle<Vec<String>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let realm = format!("http://{addr}/token");
        let handle = std::thread::spawn(move || {
            let mut seen = Vec::new();
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { break };
                let Some(head) = read_head(&mut s) else {
                    continue;
                };
                let line = head.lines().next().unwrap_or("").to_string();
                let auth = head
                    .lines()
                    .find_map(|l| {
                        l.strip_prefix("authorization: ")
                            .or(l.strip_prefix("Authorization: "))
                    })
                    .unwrap_or("")
                    .to_string();
                seen.push(format!("{line} [{auth}]"));
                let path = line.split(' ').nth(1).unwrap_or("").to_string();
                let challenge = |scope: &str| {
                    format!(
                        "WWW-Authenticate: Bearer realm=\"{realm}\",service=\"fake\"{scope}\r\n"
                    )
                };
                let reply = if path == "/v2/" && auth == "Bearer tok-user" {
                    respond(200, "", "{}")
                } else if path == "/v2/" {
                    respond(401, &challenge(""), "")
                } else if path.starts_with("/token?") {
                    let user = auth == "Basic dTpwdw==";
                    // A login's token request has no scope.
                    let scope_ok =
                        path.contains("scope=repository%3Alib%2F") || !path.contains("scope=");
                    if !path.contains("service=fake") || !scope_ok {
                        respond(400, "", "")
                    } else if !auth.is_empty() && !user {
                        respond(401, "", "")
                    } else {
                        let tok = if user { "tok-user" } else { "tok-anon" };
                        respond(200, "", &format!("{{\"token\":\"{tok}\"}}"))
                    }
                } else if path == "/quit" {
                    let _ = s.write_all(respond(200, "", "").as_bytes());
                    break;
                } else {
                    let private = path.starts_with("/v2/lib/private/");
                    let ok = auth == "Bearer tok-user" || (!private && auth == "Bearer tok-anon");
                    if ok {
                        respond(
                            200,
                            "Content-Type: application/vnd.oci.image.manifest.v1+json\r\n",
                            "{}",
                        )
                    } else {
                        let repo = if private { "lib/private" } else { "lib/open" };
                        respond(
                            401,
                            &challenge(&format!(",scope=\"repository:{repo}:pull\"")),
                            "",
                        )
                    }
                };
                let _ = s.write_all(reply.as_bytes());
            }
            seen
        });
        (addr, handle)
    }

    /// The request head, or None for what is not plain HTTP (a TLS hello).
    fn read_head(s: &mut TcpStream) -> Option<String> {
        let mut buf = Vec::new();
        let mut byte = [0u8; 1];
        while !buf.ends_with(b"\r\n\r\n") {
            if s.read(&mut byte).ok()? == 0 {
                return None;
            }
            buf.push(byte[0]);
            if buf.len() == 4 && &buf[..] != b"GET " {
                return None;
            }
        }
        String::from_utf8(buf).ok()
    }

    fn respond(status: u16, headers: &str, body: &str) -> String {
        format!(
            "HTTP/1.1 {status} X\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    }

    fn quit(addr: &str) {
        let mut s = TcpStream::connect(addr).unwrap();
        let _ = s.write_all(b"GET /quit HTTP/1.1\r\n\r\n");
        let _ = s.read(&mut [0u8; 64]);
    }

    fn reference(addr: &str, repo: &str) -> Reference {
        Reference::parse(&format!("{addr}/{repo}"), "docker.io").unwrap()
    }

    #[test]
    fn token_authentication_anonymous_and_with_credentials() {
        let (addr, server) = fake_registry();
        // Anonymous token for an open repository; plain HTTP after the
        // TLS attempt fails (verification off).
        let mut c = Client::connect(&reference(&addr, "lib/open"), false, None).unwrap();
        assert_eq!(c.scheme(), "http");
        let m = c.manifest("latest").unwrap();
        assert_eq!(m.bytes, b"{}");
        // A private repository: the anonymous token is not enough.
        let mut c = Client::connect(&reference(&addr, "lib/private"), false, None).unwrap();
        let e = c.manifest("latest").err().unwrap().to_string();
        assert!(e.contains("wants credentials"), "{e}");
        // With credentials, the token server gives the user's token.
        let creds = Credentials {
            username: "u".into(),
            password: "pw".into(),
        };
        let mut c = Client::connect(&reference(&addr, "lib/private"), false, Some(creds)).unwrap();
        assert_eq!(c.manifest("latest").unwrap().bytes, b"{}");
        // Wrong credentials: refused by the token server.
        let creds = Credentials {
            username: "u".into(),
            password: "no".into(),
        };
        let mut c = Client::connect(&reference(&addr, "lib/private"), false, Some(creds)).unwrap();
        let e = c.manifest("latest").err().unwrap().to_string();
        assert!(e.contains("refused the credentials"), "{e}");
        quit(&addr);
        let seen = server.join().unwrap();
        // Credentials went only to the token server, never to the registry.
        assert!(
            seen.iter()
                .filter(|l| l.contains("Basic"))
                .all(|l| l.starts_with("GET /token")),
            "{seen:#?}"
        );
        // With TLS verification on, a registry without TLS is not reached.
        let e = Client::connect(&reference(&addr, "lib/open"), true, None)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("--tls-verify=false"), "{e}");
    }

    #[test]
    fn login_checks_the_credentials_with_a_token() {
        let (addr, server) = fake_registry();
        let creds = |p: &str| Credentials {
            username: "u".into(),
            password: p.into(),
        };
        Client::check_login(&addr, &addr, false, creds("pw")).unwrap();
        let e = Client::check_login(&addr, &addr, false, creds("no"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("unauthorized"), "{e}");
        quit(&addr);
        let seen = server.join().unwrap();
        // The token was asked for without a scope, with the credentials.
        assert!(
            seen.iter()
                .any(|l| l.starts_with("GET /token?service=fake ") && l.contains("Basic dTpwdw==")),
            "{seen:#?}"
        );
    }

    #[test]
    fn registry_errors_are_one_clean_line() {
        let b = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest\n unknown","detail":{}}]}"#;
        assert_eq!(
            registry_error(b).as_deref(),
            Some("MANIFEST_UNKNOWN (manifest unknown)")
        );
        assert_eq!(registry_error(b"<html>"), None);
        assert_eq!(registry_error(br#"{"errors":[]}"#), None);
    }
}
