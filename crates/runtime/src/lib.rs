//! `tupper_runtime`: the unprivileged side of tupperware behind the
//! `tupper-supervisor` binary: the `run` sequence, images, containers and
//! their records, cleanup. It holds no privileges; every privileged step is a
//! request to a helper over its control channel.

mod cleanup;
pub mod containers;
pub mod error;
pub mod exec;
pub mod files;
mod helpers;
pub mod images;
pub mod lifecycle;
mod process;
mod records;
// Issue 9: container roots are overlays tupper-storage mounts for each start.
mod root_mount;
pub mod run;
pub mod security;
pub mod signals;
mod tty;
pub mod usage;
// Volumes, /etc files, stdio relay (engineer "vol").
mod etc_files;
mod stdio;
pub mod volumes;
// Containers that outlive the command (issue 8, engineer "mon").
mod attach;
pub mod control;
pub mod logs;
mod monitor;
// Pull over the OCI distribution API (issue 10, engineer "pull").
pub mod registry;
// Issue 9: resource limits, cgroups, stats.
pub mod limits;
pub mod stats;
// Issue 11 (engineer "net"): published ports.
mod ports;
// Packages, doctor, default images (issue 12, engineer "pkg").
pub mod default_image;
pub mod doctor;
pub mod generate;
// OCI images, layers, image config (issue 10, engineer "oci").
pub mod oci;
