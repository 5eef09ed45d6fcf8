//! One request: validate, act, and produce the reply.

use proto::validate;
use proto::Caller;
use proto::{Channel, StorageReply, StorageRequest};
use tupper_config::system::SystemConfig;

use crate::error::{Error, Result};
use crate::store::{self, Store};
use crate::{commit, copy_in, export, images, import, layers, quota, root_mount, roots};

pub struct Context {
    pub caller: Caller,
    pub config: std::result::Result<SystemConfig, String>,
}

impl Context {
    /// Every request first makes sure the store is there.
    fn store(&self) -> Result<Store> {
        let cfg = self.config.as_ref().map_err(|why| Error::Other {
            what: "system configuration".into(),
            why: why.clone(),
        })?;
        store::ensure(&cfg.store, self.caller)
    }
}

pub fn handle(chan: &mut Channel, ctx: &Context, req: StorageRequest) -> Result<StorageReply> {
    let uid = ctx.caller.uid;
    match req {
        StorageRequest::Init => ctx.store().map(|_| StorageReply::Done),
        StorageRequest::ImportBegin { name } => {
            import::run(chan, ctx.caller, || ctx.store(), &name)
        }
        StorageRequest::ListImages => images::list(&ctx.store()?.user_images(uid)?),
        StorageRequest::RemoveImage { name } => {
            proto::reference::key(&name)?;
            let images = ctx.store()?.user_images(uid)?;
            // Issue 9: a user at their disk total can still remove an image.
            let (_, total) = quota::limits_for(ctx.caller, None)?;
            quota::removing_within_total(&images, uid, total, || {
                images::remove(&images, &name).map(drop)
            })?;
            layers::forget(&images, &name)?;
            Ok(StorageReply::Done)
        }
        StorageRequest::Snapshot { image, container } => snapshot(ctx, &image, &container, None),
        StorageRequest::RemoveContainer { container } => {
            validate::container_id(&container)?;
            let store = ctx.store()?;
            root_mount::ensure_unused(&store, uid, &container)?;
            let reply = roots::remove(&store.user_containers(uid)?, &container, uid)?;
            root_mount::forget(&store, uid, &container);
            Ok(reply)
        }
        StorageRequest::ListContainers => {
            let containers = ctx.store()?.user_containers(uid)?;
            // `gc` and `ps` list: a chance to drop emptied quota groups.
            quota::sweep_user(&containers, uid);
            roots::list(&containers)
        }
        // files in and out of containers
        StorageRequest::Commit { container, image } => {
            commit::commit(&ctx.store()?, uid, &container, &image)
        }
        StorageRequest::ExportBegin { container, path } => {
            validate::container_id(&container)?;
            export::run(chan, ctx.caller, ctx.store()?, &container, path.as_deref())
        }
        StorageRequest::StatPath { container, path } => {
            validate::container_id(&container)?;
            copy_in::stat(&ctx.store()?, uid, &container, &path)
        }
        StorageRequest::CopyInBegin { container, running } => {
            copy_in::run(chan, ctx.caller, || ctx.store(), &container, running)
        }
        // --- disk quota (issue 9) ---
        StorageRequest::MountRoot {
            container,
            transient,
        } => {
            validate::container_id(&container)?;
            let mnt = root_mount::mount(&ctx.store()?, uid, &container, transient)?;
            // The mount travels with its own frame; the reply proper follows.
            chan.send_with_fd(
                &Ok::<_, proto::RemoteError>(StorageReply::RootMount),
                std::os::fd::AsFd::as_fd(&mnt),
            )
            .map_err(|e| Error::Other {
                what: "sending the container root".into(),
                why: e.to_string(),
            })?;
            Ok(StorageReply::Done)
        }
        StorageRequest::SnapshotSized {
            image,
            container,
            size,
        } => snapshot(ctx, &image, &container, Some(size)),
        // images made of layers (issue 10)
        StorageRequest::LayerBegin {
            parent,
            diff_id,
            blob,
        } => layers::store_layer(
            chan,
            ctx.caller,
            || ctx.store(),
            parent.as_deref(),
            &diff_id,
            blob.as_deref(),
        ),
        StorageRequest::HasLayers { chains } => layers::has_layers(&ctx.store()?, uid, &chains),
        StorageRequest::CreateImage { name, layers, meta } => {
            layers::create_image(&ctx.store()?, uid, &name, &layers, &meta)
        }
        StorageRequest::GetImageMeta { name } => layers::image_meta(&ctx.store()?, uid, &name),
        StorageRequest::TagImage { source, name } => {
            layers::tag(&ctx.store()?, uid, &source, &name)
        }
        StorageRequest::PruneLayers => layers::prune(&ctx.store()?, uid),
        other @ (StorageRequest::ImportChunk(_) | StorageRequest::ImportEnd) => {
            Err(Error::Protocol(format!(
                "{} outside of an import",
                import::request_name(&other)
            )))
        }
    }
}

/// `Snapshot` and `SnapshotSized`: validate (names, and the size against the
/// policy before anything is created), snapshot, charge.
fn snapshot(
    ctx: &Context,
    image: &str,
    container: &str,
    size: Option<u64>,
) -> Result<StorageReply> {
    proto::reference::key(image)?;
    validate::container_id(container)?;
    let (size, total) = quota::limits_for(ctx.caller, size)?;
    let store = ctx.store()?;
    let uid = ctx.caller.uid;
    roots::snapshot(
        &store.user_images(uid)?,
        &store.user_containers(uid)?,
        image,
        container,
        roots::Quota { uid, size, total },
    )
}
