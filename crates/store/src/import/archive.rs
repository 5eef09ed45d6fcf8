//! Recognise image archives given where a root filesystem is expected: a
//! `docker save`/`podman save` archive (top-level `manifest.json` with
//! `repositories`, `<id>/layer.tar` or `blobs/sha256/...`) or an OCI image
//! layout (`oci-layout`). Such a tarball "imports" as a tree of a few JSON
//! files and layer blobs that cannot run, so the import is refused at its
//! end with a message naming the format and what to do today.
//!
//! A tree with a top-level `etc`, `usr` or `bin` is a root filesystem,
//! whatever else it holds.

use std::path::{Component, Path};

use super::policy::Kind;

/// An image archive format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    DockerArchive,
    OciLayout,
}

impl Format {
    /// The refusal: which format, and what imports it today.
    pub fn refusal(self) -> String {
        match self {
            Format::DockerArchive => "this is an image archive made by `docker save` or \
                `podman save`, not a root filesystem, and tupperware cannot import image \
                archives yet; import a container's filesystem instead: `podman load -i FILE`, \
                then `podman export -o rootfs.tar $(podman create IMAGE)` (or the same with \
                docker), then `tupper-supervisor image import NAME rootfs.tar`"
                .into(),
            Format::OciLayout => "this is an OCI image layout, not a root filesystem, and \
                tupperware cannot import image layouts yet; unpack it into a root filesystem \
                first: `umoci unpack --rootless --image DIR:TAG BUNDLE`, then \
                `tar -C BUNDLE/rootfs -cf rootfs.tar .` and \
                `tupper-supervisor image import NAME rootfs.tar`"
                .into(),
        }
    }
}

/// What the entries seen so far say about the tarball.
#[derive(Debug, Default)]
pub struct Sniffer {
    rootfs: bool,
    manifest_json: bool,
    repositories: bool,
    oci_layout: bool,
    layer_tar: bool,
    blobs: bool,
}

fn is_hex_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

impl Sniffer {
    /// Note one entry (its path normalised inside the image).
    pub fn see(&mut self, rel: &Path, kind: Kind) {
        let parts: Vec<&str> = rel
            .components()
            .map(|c| match c {
                Component::Normal(s) => s.to_str().unwrap_or(""),
                _ => "",
            })
            .collect();
        let Some(first) = parts.first() else {
            return;
        };
        if matches!(*first, "etc" | "usr" | "bin") {
            self.rootfs = true;
        }
        let file = matches!(kind, Kind::File | Kind::Hardlink | Kind::Symlink);
        match (parts.as_slice(), file) {
            (["manifest.json"], true) => self.manifest_json = true,
            (["repositories"], true) => self.repositories = true,
            (["oci-layout"], true) => self.oci_layout = true,
            ([id, "layer.tar"], true) if is_hex_id(id) => self.layer_tar = true,
            (["blobs", alg, ..], _) if !alg.is_empty() => self.blobs = true,
            _ => {}
        }
    }

    /// The archive format, when the tarball is one and not a root filesystem.
    pub fn verdict(&self) -> Option<Format> {
        if self.rootfs {
            return None;
        }
        if self.manifest_json && (self.repositories || self.layer_tar || self.blobs) {
            return Some(Format::DockerArchive);
        }
        if self.oci_layout {
            return Some(Format::OciLayout);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sniff(entries: &[(&str, Kind)]) -> Option<Format> {
        let mut s = Sniffer::default();
        for (p, k) in entries {
            s.see(Path::new(p), *k);
        }
        s.verdict()
    }

    const ID: &str = "3f2a4b5c6d7e8f901a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7081";

    #[test]
    fn docker_save_legacy_layout() {
        let layer = format!("{ID}/layer.tar");
        let json = format!("{ID}/json");
        assert_eq!(
            sniff(&[
                (ID, Kind::Directory),
                (&json, Kind::File),
                (&layer, Kind::File),
                ("manifest.json", Kind::File),
                ("repositories", Kind::File),
            ]),
            Some(Format::DockerArchive)
        );
        // Without `repositories` (podman save of an untagged image).
        assert_eq!(
            sniff(&[(&layer, Kind::File), ("manifest.json", Kind::File)]),
            Some(Format::DockerArchive)
        );
    }

    #[test]
    fn docker_save_oci_layout_and_plain_oci_layout() {
        let blob = format!("blobs/sha256/{ID}");
        assert_eq!(
            sniff(&[
                ("blobs/", Kind::Directory),
                ("blobs/sha256/", Kind::Directory),
                (&blob, Kind::File),
                ("index.json", Kind::File),
                ("manifest.json", Kind::File),
                ("oci-layout", Kind::File),
            ]),
            Some(Format::DockerArchive)
        );
        assert_eq!(
            sniff(&[
                ("oci-layout", Kind::File),
                ("index.json", Kind::File),
                (&blob, Kind::File),
            ]),
            Some(Format::OciLayout)
        );
    }

    #[test]
    fn root_filesystems_are_never_archives() {
        let layer = format!("{ID}/layer.tar");
        for marker in ["etc/", "usr/", "bin/"] {
            assert_eq!(
                sniff(&[
                    ("manifest.json", Kind::File),
                    ("repositories", Kind::File),
                    (&layer, Kind::File),
                    ("oci-layout", Kind::File),
                    (marker, Kind::Directory),
                ]),
                None,
                "{marker}"
            );
        }
        assert_eq!(sniff(&[("manifest.json", Kind::File)]), None);
        assert_eq!(
            sniff(&[
                ("srv/manifest.json", Kind::File),
                ("srv/oci-layout", Kind::File)
            ]),
            None
        );
        assert_eq!(sniff(&[("etc/hostname", Kind::File)]), None);
        // A directory named like a file is not one.
        assert_eq!(sniff(&[("oci-layout/", Kind::Directory)]), None);
    }
}
