//! Images in the ecosystem's formats (issue 10): OCI image layouts (a
//! directory or a tar of one), Docker archives (`docker save`, `podman
//! save`) and plain root filesystem tarballs, recognised by content.
//!
//! We (the unprivileged supervisor, as the user) open and read the user's
//! files, check every digest we can before the helper sees a byte, and
//! stream each missing layer to the storage helper, which hashes again what
//! it extracts and keys the layer by the chain id it computes itself.

pub mod config;
mod image;
mod load;
mod source;

pub use image::{apply_to_run, inspect, list, lookup_with, meta as image_meta, prune, tag, Stored};
pub use load::load;
