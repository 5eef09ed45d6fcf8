//! Hand-made tarballs, including entries a well-behaved tar writer refuses.

use tar::{EntryType, Header};

pub struct Tarball {
    data: Vec<u8>,
}

impl Default for Tarball {
    fn default() -> Self {
        Self::new()
    }
}

impl Tarball {
    pub fn new() -> Self {
        Tarball { data: Vec::new() }
    }

    fn push(&mut self, path: &str, kind: EntryType, link: Option<&str>, body: &[u8], mode: u32) {
        let mut h = Header::new_ustar();
        // Write the raw name so `..` and absolute paths survive.
        {
            let name = &mut h.as_old_mut().name;
            name.fill(0);
            name[..path.len()].copy_from_slice(path.as_bytes());
        }
        if let Some(link) = link {
            let l = &mut h.as_old_mut().linkname;
            l.fill(0);
            l[..link.len()].copy_from_slice(link.as_bytes());
        }
        h.set_entry_type(kind);
        h.set_size(body.len() as u64);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_cksum();
        self.data.extend_from_slice(h.as_bytes());
        self.data.extend_from_slice(body);
        let pad = (512 - body.len() % 512) % 512;
        self.data.extend(std::iter::repeat_n(0u8, pad));
    }

    pub fn dir(mut self, path: &str) -> Self {
        self.push(path, EntryType::Directory, None, b"", 0o755);
        self
    }

    pub fn file(mut self, path: &str, body: &[u8]) -> Self {
        self.push(path, EntryType::Regular, None, body, 0o644);
        self
    }

    pub fn symlink(mut self, path: &str, target: &str) -> Self {
        self.push(path, EntryType::Symlink, Some(target), b"", 0o777);
        self
    }

    pub fn hardlink(mut self, path: &str, target: &str) -> Self {
        self.push(path, EntryType::Link, Some(target), b"", 0o644);
        self
    }

    pub fn device(mut self, path: &str) -> Self {
        self.push(path, EntryType::Char, None, b"", 0o600);
        self
    }

    pub fn finish(mut self) -> Vec<u8> {
        self.data.extend(std::iter::repeat_n(0u8, 1024));
        self.data
    }
}
