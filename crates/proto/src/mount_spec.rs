//! Mounts a container asks for beyond its root: volumes (`-v`, `--mount`),
//! tmpfs (`--tmpfs`, `--read-only`'s scratch directories) and the files the
//! runtime provides (`/etc/hosts`, `/etc/hostname`, `/etc/resolv.conf`).
//!
//! A bind source is never opened by a privileged helper: the supervisor opens
//! it as the caller and sends what it found (its real path and `(dev, ino)`);
//! the container init, which holds no capability on the host, opens that path
//! again and mounts it only if it is still the same file.

use serde::{Deserialize, Serialize};

/// At most this many mounts per container.
pub const MAX_MOUNTS: usize = 64;
/// Longest path (source or target), in bytes.
pub const MAX_PATH_LEN: usize = 4096;
/// Largest tmpfs, in bytes (1 TiB: a bound on the request, not on memory;
/// the kernel charges tmpfs pages to the container's memory).
pub const MAX_TMPFS_SIZE: u64 = 1 << 40;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountSpec {
    /// Absolute normalized path inside the container (no `.`, `..`, `//`,
    /// trailing `/`; never `/` itself). Missing directories are created;
    /// symlinks on the way resolve inside the container root.
    pub target: String,
    pub kind: MountKind,
    /// Read-only (recursively, for a bind).
    pub read_only: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MountKind {
    /// A host file or directory, as the supervisor saw it.
    Bind(BindSource),
    /// A file the runtime provides in the container's state directory: like a
    /// file `Bind`, but a symbolic link the image has at the target is
    /// replaced by an empty regular file (never followed).
    Provided(BindSource),
    /// A fresh tmpfs.
    Tmpfs {
        /// `size=` in bytes (`None`: the kernel's default, half of RAM).
        size: Option<u64>,
        /// Permission bits of its root (`None`: 1777).
        mode: Option<u32>,
        /// Allow executing files from it (`--read-only`'s `/tmp`, `/run`...);
        /// `--tmpfs` and `--mount type=tmpfs` are `noexec` as in podman.
        exec: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindSource {
    /// The real path of the descriptor the supervisor opened (absolute,
    /// normalized, no symbolic link in it).
    pub path: String,
    /// `st_dev` and `st_ino` the supervisor saw.
    pub dev: u64,
    pub ino: u64,
    /// A directory (else a regular file).
    pub dir: bool,
}

impl MountSpec {
    pub fn source(&self) -> Option<&BindSource> {
        match &self.kind {
            MountKind::Bind(s) | MountKind::Provided(s) => Some(s),
            MountKind::Tmpfs { .. } => None,
        }
    }
}
