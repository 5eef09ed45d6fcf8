//! Requests and replies, one pair of enums per helper.
//!
//! Every request is answered by one frame holding `Result<Reply, RemoteError>`.

use serde::{Deserialize, Serialize};

/// Requests to `tupper-storage`. A channel may carry several in sequence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StorageRequest {
    /// Make sure the store exists and is mounted (creates the loop image on
    /// first use). Every other request does this implicitly.
    Init,
    /// Start importing an image from a tarball (plain, gzip or zstd) that
    /// follows as `ImportChunk` frames, ended by `ImportEnd`. No reply is sent
    /// for `ImportBegin` or the chunks: the helper answers exactly once, after
    /// `ImportEnd`. When extraction fails early it discards the remaining
    /// chunks and answers with the error; nothing of the image is left.
    ImportBegin { name: String },
    /// Up to [`crate::frame::MAX_CHUNK_LEN`] bytes of the tarball.
    ImportChunk(Vec<u8>),
    /// The tarball is complete.
    ImportEnd,
    /// Snapshot the caller's image into a writable container root.
    Snapshot { image: String, container: String },
    /// Remove a container root of the caller.
    RemoveContainer { container: String },
    /// Remove an image of the caller.
    RemoveImage { name: String },
    /// List the caller's images.
    ListImages,
    /// List the caller's container roots.
    ListContainers,

    // --- files in and out of containers (commit, export, cp) ---
    /// Make image `image` of the caller a read-only snapshot of the caller's
    /// container root `container` (no data copied).
    Commit { container: String, image: String },
    /// Stream a tar of the caller's container root (`path: None`, `export`)
    /// or of one path inside it (`cp` out; resolved inside the root, the
    /// entries named from its last component). The helper answers with
    /// [`StorageReply::ExportChunk`] frames (each at most
    /// [`crate::frame::MAX_CHUNK_LEN`] bytes) and then exactly one final
    /// frame: [`StorageReply::Exported`] or an error. A supervisor that
    /// closes the channel mid-way just ends the session (nothing changes).
    ExportBegin {
        container: String,
        path: Option<String>,
    },
    /// What `path` is inside the caller's container root (resolved inside
    /// it): answered with [`StorageReply::PathKind`].
    StatPath { container: String, path: String },
    /// Extract a tar that follows as `ImportChunk` frames, ended by
    /// `ImportEnd`, into the caller's container root (`cp` in), through the
    /// same extractor and refusals as an import. Answered once, after
    /// `ImportEnd`, with [`StorageReply::CopiedIn`].
    CopyInBegin {
        container: String,
        /// Issue 9: the init's pid while the container runs. The tar then
        /// goes through the container's own root mount (the overlay it
        /// sees), found in that process's mount namespace and accepted only
        /// when its mount id is the one recorded on the caller's root, so
        /// the container sees every file at once.
        running: Option<i32>,
    },

    // --- disk quota (issue 9) ---
    /// Mount the caller's container root for a start: an overlay whose upper
    /// layer is the root's subvolume, made detached (never attached in any
    /// mount namespace by the helper). Answered first with
    /// [`StorageReply::RootMount`] carrying the mount (`SCM_RIGHTS`), then
    /// with `Done`; or with one error. The container sees only the overlay,
    /// so no process of the caller ever holds a directory of the btrfs store
    /// (whose subvolume ioctls would let it choose its own quota groups).
    MountRoot {
        container: String,
        /// Issue 11: the container is removed when it ends (`run --rm`).
        /// Its overlay is mounted `volatile`: nothing inside it reaches the
        /// disk by `fsync`, and its end does not sync the whole store (which
        /// costs a start and stop milliseconds, more with other containers
        /// writing). A root discarded at its end needs neither.
        transient: bool,
    },
    /// `Snapshot` with the container's own disk size (`run --storage-opt
    /// size=`), in bytes; refused above the policy's `disk`. Plain `Snapshot`
    /// takes the policy's value.
    SnapshotSized {
        image: String,
        container: String,
        size: u64,
    },
    // --- images made of layers (issue 10, engineer "oci") ---
    /// Store one layer of an image: the layer blob (plain, gzip or zstd tar)
    /// follows as `ImportChunk` frames ended by `ImportEnd`, answered once
    /// with [`StorageReply::LayerStored`]. The layer becomes a read-only
    /// snapshot of the caller's layer `parent` (a chain id; `None` for the
    /// first) with the blob applied, OCI whiteouts honoured. The helper
    /// hashes what it receives and what it extracts: the blob must hash to
    /// `blob` (when given) and its uncompressed tar to `diff_id`, or nothing
    /// is kept. The helper computes the chain id itself.
    LayerBegin {
        parent: Option<String>,
        diff_id: String,
        blob: Option<String>,
    },
    /// Which of these chain ids the caller has as layers
    /// ([`StorageReply::HaveLayers`], in the same order). At most
    /// [`MAX_IMAGE_LAYERS`].
    HasLayers { chains: Vec<String> },
    /// Make image `name` (a reference key) a read-only snapshot of the
    /// caller's layer `layers.last()`, and keep `meta` (opaque to the helper,
    /// at most [`MAX_IMAGE_META`] bytes: the supervisor's image config) and
    /// the layer list with it. An existing `name` is replaced.
    CreateImage {
        name: String,
        layers: Vec<String>,
        meta: Vec<u8>,
    },
    /// The `meta` of a caller's image ([`StorageReply::ImageMeta`]; `None`
    /// for an image imported from a root filesystem).
    GetImageMeta { name: String },
    /// Give image `source` the further name `name` (a snapshot, no copy).
    TagImage { source: String, name: String },
    /// Remove the caller's layers no image of the caller names.
    PruneLayers,
}

/// Most layers an image may have.
pub const MAX_IMAGE_LAYERS: usize = 256;
/// Largest image metadata the helper keeps for the supervisor.
pub const MAX_IMAGE_META: usize = 512 * 1024;

/// What a path inside a container root is ([`StorageRequest::StatPath`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PathKind {
    Missing,
    Directory,
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageInfo {
    pub name: String,
    /// Seconds since the epoch when the import finished.
    pub created: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StorageReply {
    Done,
    Imported {
        name: String,
        entries: u64,
        bytes: u64,
        /// Device nodes the tarball held, left out: the runtime gives each
        /// container its own `/dev`.
        devices_skipped: u64,
        // -- issue 7, extended attributes at import --
        /// Extended attributes the tarball held that mean nothing in a
        /// container or cannot be kept safely (`trusted.*`,
        /// `security.selinux`, `security.ima`, ...), left out.
        xattrs_skipped: u64,
    },
    Images(Vec<ImageInfo>),
    Containers(Vec<String>),

    // --- files in and out of containers (commit, export, cp) ---
    /// Part of a tar stream ([`StorageRequest::ExportBegin`]).
    ExportChunk(Vec<u8>),
    /// The end of a tar stream.
    Exported {
        entries: u64,
        /// Sockets found and left out (a tarball cannot hold one).
        sockets_skipped: u64,
        /// Device nodes found and left out.
        devices_skipped: u64,
    },
    PathKind(PathKind),
    CopiedIn {
        entries: u64,
    },

    // --- images made of layers (issue 10, engineer "oci") ---
    LayerStored {
        /// The layer's chain id, computed by the helper.
        chain_id: String,
        /// Bytes of file data written (0 when it was already there).
        bytes: u64,
        /// The layer existed already; the stream was read and dropped.
        present: bool,
    },
    HaveLayers(Vec<bool>),
    ImageMeta(Option<Vec<u8>>),
    Pruned {
        layers: u64,
    },
    /// Issue 9: the first answer to [`StorageRequest::MountRoot`], carrying
    /// the detached overlay mount of the container root (`SCM_RIGHTS`).
    RootMount,
}

/// Issue 9: the frame after [`NsRequest::Spawn`] that carries the container
/// root (`SCM_RIGHTS`): the detached overlay mount `tupper-storage` made
/// ([`StorageRequest::MountRoot`]). `tupper-ns` refuses anything but an
/// overlay mount's root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRoot;

/// What to run and how; the root filesystem is the caller's container root
/// as `tupper-storage` mounted it, sent with the next frame
/// ([`ContainerRoot`]), never a path from the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpawnRequest {
    /// Container id (validated with [`crate::validate::container_id`]).
    pub container: String,
    /// argv; `command[0]` is looked up in the container's `PATH` when it has no `/`.
    pub command: Vec<String>,
    /// `KEY=VALUE` strings.
    pub env: Vec<String>,
    pub hostname: String,
    /// Working directory inside the container.
    pub workdir: String,
    /// Give the command a terminal: the init allocates it in the container's
    /// devpts, makes it its stdio and controlling terminal, and passes the
    /// master to the supervisor with [`NsReply::Terminal`].
    pub tty: bool,
    // --- privileges inside the container (issue 7) ---
    /// Capabilities, `no_new_privs`, seccomp, user, `--init`, host network.
    pub security: crate::security::SpawnSecurity,

    // Volumes, tmpfs, provided /etc files, read-only root (engineer "vol").
    /// Mounts beyond the container's own tree, parents first
    /// (validated with [`crate::validate::mount_spec`]).
    pub mounts: Vec<crate::MountSpec>,
    /// Make the container root's own mount read-only (`--read-only`).
    pub read_only_root: bool,
}

/// Requests to `tupper-ns`.
///
/// `Spawn` is answered by the helper first with `NsReply::Cloned` as soon as
/// the container init exists (issue 11: the supervisor has it join its
/// cgroups while it sets itself up), then with `NsReply::Spawned` once the
/// init sits in its namespaces, pivoted into its root, waiting (or with the
/// error, the init killed).
/// The helper then exits; the container init (a child of the supervisor)
/// keeps the channel and waits for `Start`. On `Start` it executes the
/// command: success closes the channel (close-on-exec) with no reply; a
/// failure is answered with an error of kind `CommandNotFound` or
/// `NotExecutable`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NsRequest {
    Spawn(Box<SpawnRequest>),
    Start,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NsReply {
    /// Issue 11: the container init was cloned (host pid); its setup goes
    /// on, and `Spawned` or an error follows.
    Cloned { pid: i32 },
    /// Host pid of the container init, set up and waiting for `Start`.
    Spawned { pid: i32 },
    /// With `tty`: the first answer to `Start`, carrying the master side of
    /// the terminal the init made in the container's own devpts (the
    /// descriptor travels with the frame, `SCM_RIGHTS`).
    Terminal,
}

/// Requests to `tupper-net`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NetRequest {
    /// Give the container whose init has host pid `pid` an `eth0` on the bridge.
    Attach { pid: i32, container: String },
    /// Return the container's address lease and remove its host interface.
    Release { container: String },
    // Issue 11 (engineer "net"): published ports.
    /// Publish host ports to the container, which must hold a lease. Each
    /// port is followed by one frame `PortReservation` carrying (SCM_RIGHTS)
    /// a socket of the caller bound to that host port in the host's network
    /// namespace: it keeps every host service off the port while it is
    /// published (an ephemeral port is the one that socket got).
    Publish {
        container: String,
        ports: Vec<crate::ports::PortSpec>,
    },
}

/// Issue 11: the frame after `Publish` that carries one port's socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortReservation {
    pub index: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NetReply {
    Attached {
        /// Container address with prefix, e.g. `10.88.0.2/16`.
        address: String,
        gateway: String,
        /// Host side of the veth pair.
        host_interface: String,
    },
    Released,
    // Issue 11 (engineer "net"): published ports.
    /// The ports as published (ephemeral host ports filled in).
    Published {
        ports: Vec<crate::ports::PortSpec>,
    },
}
