//! Receiving and validating the `Spawn` request.

use proto::{validate, NsRequest, SpawnRequest};

use crate::error::Error;

/// The one request this helper serves is a `Spawn`.
pub fn spawn_request(req: NsRequest) -> Result<SpawnRequest, Error> {
    match req {
        NsRequest::Spawn(req) => Ok(*req),
        NsRequest::Start => Err(Error::UnexpectedRequest("Spawn")),
    }
}

/// Check every field; returns the request with its hostname defaulted.
pub fn validate(mut req: SpawnRequest) -> Result<SpawnRequest, Error> {
    validate::container_id(&req.container)?;
    validate::command(&req.command)?;
    for entry in &req.env {
        validate::env_entry(entry)?;
    }
    if req.hostname.is_empty() {
        req.hostname = default_hostname(&req.container);
    }
    validate::hostname(&req.hostname)?;
    validate::container_path(&req.workdir)?;
    validate::spawn_security(&req.security)?;
    validate::mounts(&req.mounts)?;
    Ok(req)
}

/// The first 12 characters of the container id.
pub fn default_hostname(container: &str) -> String {
    container.chars().take(12).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tupper_helper::ToRemote;

    fn req() -> SpawnRequest {
        SpawnRequest {
            container: "0123456789abcdef0123456789abcdef".into(),
            command: vec!["sh".into()],
            env: vec!["A=b".into()],
            hostname: String::new(),
            workdir: "/".into(),
            tty: false,
            security: Default::default(),
            mounts: vec![],
            read_only_root: false,
        }
    }

    #[test]
    fn defaults_hostname() {
        assert_eq!(validate(req()).unwrap().hostname, "0123456789ab");
    }

    #[test]
    fn hostile_fields_are_refused() {
        let cases: Vec<fn(&mut SpawnRequest)> = vec![
            |r| r.container = "../x".into(),
            |r| r.container = "../../../../etc/passwd".into(),
            |r| r.container = "0123456789ABCDEF0123456789ABCDEF".into(),
            |r| r.container = String::new(),
            |r| r.command = vec![],
            |r| r.command = vec![String::new()],
            |r| r.command = vec!["sh".into(), "a\0b".into()],
            |r| r.env = vec!["NOEQUALS".into()],
            |r| r.env = vec!["=x".into()],
            |r| r.env = vec!["A=b\0c".into()],
            |r| r.hostname = "a/b".into(),
            |r| r.hostname = "-x".into(),
            |r| r.hostname = "x".repeat(64),
            |r| r.workdir = "relative".into(),
            |r| r.workdir = "/a/../../b".into(),
            |r| r.workdir = "/a\0".into(),
            |r| r.security.seccomp = Some(vec![]),
            |r| {
                r.security.seccomp = Some(vec![
                    proto::BpfInstruction {
                        code: 6,
                        jt: 0,
                        jf: 0,
                        k: 0
                    };
                    4097
                ])
            },
            |r| r.security.capabilities = Some(u64::MAX),
            |r| r.security.user = Some("a:b:c".into()),
            |r| {
                r.mounts = vec![proto::MountSpec {
                    target: "/../etc".into(),
                    kind: proto::MountKind::Tmpfs {
                        size: None,
                        mode: None,
                        exec: false,
                    },
                    read_only: false,
                }]
            },
        ];
        for (i, mutate) in cases.iter().enumerate() {
            let mut r = req();
            mutate(&mut r);
            let err = validate(r).expect_err(&format!("case {i} accepted"));
            assert_eq!(
                err.to_remote().kind,
                proto::ErrorKind::InvalidRequest,
                "case {i}"
            );
        }
    }
}
