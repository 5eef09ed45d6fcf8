//! Where things live in the store, computed here only: `tupper-ns` and
//! `tupper-net` ask this module for a container's root. Always from the
//! system configuration and the caller's real uid, never from a request.

use std::path::{Path, PathBuf};

/// Directory holding a user's images: `<store>/images/<uid>`.
pub fn user_images(store: &Path, uid: u32) -> PathBuf {
    store.join("images").join(uid.to_string())
}

/// Subvolume of one image: `<store>/images/<uid>/<name>`.
pub fn image(store: &Path, uid: u32, name: &str) -> PathBuf {
    user_images(store, uid).join(name)
}

/// Directory holding a user's container roots: `<store>/containers/<uid>`.
pub fn user_containers(store: &Path, uid: u32) -> PathBuf {
    store.join("containers").join(uid.to_string())
}

/// Snapshot serving as one container's root: `<store>/containers/<uid>/<id>`.
pub fn container(store: &Path, uid: u32, id: &str) -> PathBuf {
    user_containers(store, uid).join(id)
}
