//! `image ls|inspect|tag|prune` and the image config applied at `run`.

use proto::reference::{key_of, Reference};
use proto::{StorageReply, StorageRequest};

use super::config::ImageMeta;
use crate::error::{Error, Result};
use crate::helpers::{call_once, Helper, HelperProcess, HelperStdio};
use crate::run::RunOptions;

/// The metadata kept with an image (`None` for a root filesystem import).
pub fn meta(key: &str) -> Result<Option<ImageMeta>> {
    meta_with(
        &mut HelperProcess::spawn(Helper::Storage, HelperStdio::default())?,
        key,
    )
}

/// [`meta`], asked of a storage helper session of the caller's.
fn meta_with(storage: &mut HelperProcess, key: &str) -> Result<Option<ImageMeta>> {
    let reply: StorageReply = storage.call(&StorageRequest::GetImageMeta {
        name: key.to_string(),
    })?;
    let StorageReply::ImageMeta(bytes) = reply else {
        return Err(Error::user("storage: unexpected reply to GetImageMeta"));
    };
    bytes
        .map(|b| {
            serde_json::from_slice(&b).map_err(|e| Error::user(format!("image metadata: {e}")))
        })
        .transpose()
}

/// What the store holds under an image key, as one `GetImageMeta` answers:
/// no image, or an image and its metadata (`None` for a root filesystem
/// import).
pub enum Stored {
    Missing,
    Image(Option<Box<ImageMeta>>),
}

/// Look image `key` up: presence and metadata with one call to a storage
/// helper session of the caller's (`run` hands the same session on to the
/// container's monitor: issue 11).
pub fn lookup_with(storage: &mut HelperProcess, key: &str) -> Result<Stored> {
    match meta_with(storage, key) {
        Ok(meta) => Ok(Stored::Image(meta.map(Box::new))),
        Err(e) if e.remote_kind() == Some(proto::ErrorKind::NotFound) => Ok(Stored::Missing),
        Err(e) => Err(e),
    }
}

/// Apply the image's config (`meta`, from [`lookup_with`]) to `run`, as podman
/// does: a command given replaces `Cmd`; `--entrypoint` replaces
/// `Entrypoint` and drops `Cmd`; the image's `Env` comes first and `-e`
/// wins; `-w` and `-u` win over `WorkingDir` and `User` (a `-w /` is the
/// default and cannot be told apart from none). No metadata (a root
/// filesystem import, or a missing image, which `run` reports after its own
/// checks): nothing to apply.
pub fn apply_to_run(opts: &mut RunOptions, meta: Option<&ImageMeta>) {
    if let Some(meta) = meta {
        apply(opts, meta);
    }
}

fn apply(opts: &mut RunOptions, meta: &ImageMeta) {
    let c = &meta.config;
    if opts.sec.entrypoint.is_none() {
        let cmd = if opts.command.is_empty() {
            c.cmd.clone().unwrap_or_default()
        } else {
            std::mem::take(&mut opts.command)
        };
        let mut argv = c.entrypoint.clone().unwrap_or_default();
        argv.extend(cmd);
        opts.command = argv;
    }
    if let Some(env) = &c.env {
        let mut all = env.clone();
        all.append(&mut opts.env);
        opts.env = all;
    }
    if opts.workdir == "/" {
        if let Some(w) = c.working_dir.as_ref().filter(|w| w.starts_with('/')) {
            opts.workdir = w.clone();
        }
    }
    if opts.sec.user.is_none() {
        opts.sec.user = c.user.clone().filter(|u| !u.is_empty());
    }
}

pub fn inspect(names: &[String]) -> Result<()> {
    let mut out = Vec::new();
    for n in names {
        let key = key_of(n)?;
        let m = meta(&key)?;
        let r = Reference::from_key(&key);
        out.push(serde_json::json!({
            "Name": r.to_string(),
            "Id": m.as_ref().map(|m| m.id.clone()),
            "Digest": m.as_ref().and_then(|m| m.manifest.clone()),
            "Created": m.as_ref().and_then(|m| m.created.clone()),
            "Architecture": m.as_ref().map(|m| m.architecture.clone()),
            "Os": m.as_ref().map(|m| m.os.clone()),
            "Size": m.as_ref().map(|m| m.size),
            "RootFS": {"Type": "layers", "Layers": m.as_ref().map(|m| m.layers.clone()).unwrap_or_default()},
            "Config": m.as_ref().map(|m| serde_json::to_value(&m.config).unwrap_or_default()),
        }));
    }
    println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    Ok(())
}

pub fn list(json: bool) -> Result<()> {
    let reply: StorageReply = call_once(Helper::Storage, &StorageRequest::ListImages)?;
    let StorageReply::Images(mut images) = reply else {
        return Err(Error::user("storage: unexpected reply to ListImages"));
    };
    images.sort_by(|a, b| a.name.cmp(&b.name));
    let mut rows = Vec::new();
    for i in images {
        let r = Reference::from_key(&i.name);
        let m = meta(&i.name).ok().flatten();
        let id = m.as_ref().map(|m| {
            m.id.trim_start_matches("sha256:")
                .chars()
                .take(12)
                .collect::<String>()
        });
        rows.push((r, id, i.created, m.map(|m| m.size)));
    }
    if json {
        let v: Vec<_> = rows
            .iter()
            .map(|(r, id, created, size)| {
                serde_json::json!({"Repository": r.repository, "Tag": r.tag, "Id": id, "Created": created, "Size": size})
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return Ok(());
    }
    println!(
        "{:<40} {:<16} {:<14} {:<16} SIZE",
        "REPOSITORY", "TAG", "IMAGE ID", "CREATED"
    );
    for (r, id, created, size) in rows {
        println!(
            "{:<40} {:<16} {:<14} {:<16} {}",
            r.repository,
            r.tag,
            id.unwrap_or_else(|| "-".into()),
            crate::containers::age(created),
            size.map(human).unwrap_or_else(|| "-".into())
        );
    }
    Ok(())
}

fn human(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} kB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

pub fn tag(source: &str, new: &str) -> Result<()> {
    let _: StorageReply = call_once(
        Helper::Storage,
        &StorageRequest::TagImage {
            source: key_of(source)?,
            name: key_of(new)?,
        },
    )?;
    Ok(())
}

pub fn prune() -> Result<()> {
    let reply: StorageReply = call_once(Helper::Storage, &StorageRequest::PruneLayers)?;
    if let StorageReply::Pruned { layers } = reply {
        println!(
            "removed {layers} unused layer{}",
            if layers == 1 { "" } else { "s" }
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::config::RunConfig;
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    #[command(disable_help_flag = true)]
    struct T {
        #[command(flatten)]
        o: RunOptions,
    }

    fn opts(args: &[&str]) -> RunOptions {
        let mut a = vec!["t"];
        a.extend(args);
        T::try_parse_from(a).unwrap().o
    }

    fn meta() -> ImageMeta {
        ImageMeta {
            config: RunConfig {
                entrypoint: Some(vec!["/ep".into()]),
                cmd: Some(vec!["a".into(), "b".into()]),
                env: Some(vec!["A=1".into(), "B=2".into()]),
                working_dir: Some("/srv".into()),
                user: Some("1000".into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn image_config_with_podmans_precedence() {
        let mut o = opts(&["img"]);
        apply(&mut o, &meta());
        assert_eq!(o.command, ["/ep", "a", "b"]);
        assert_eq!(o.env, ["A=1", "B=2"]);
        assert_eq!(
            (o.workdir.as_str(), o.sec.user.as_deref()),
            ("/srv", Some("1000"))
        );

        let mut o = opts(&["-e", "A=9", "-w", "/tmp", "-u", "0", "img", "x"]);
        apply(&mut o, &meta());
        assert_eq!(o.command, ["/ep", "x"]);
        assert_eq!(o.env, ["A=1", "B=2", "A=9"]);
        assert_eq!(
            (o.workdir.as_str(), o.sec.user.as_deref()),
            ("/tmp", Some("0"))
        );

        // --entrypoint drops the image's Cmd (security::prepare adds it).
        let mut o = opts(&["--entrypoint", "/bin/echo", "img"]);
        apply(&mut o, &meta());
        assert!(o.command.is_empty());
    }
}
