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

    /// Extended attributes for the next entry: a PAX `x` header with one
    /// `SCHILY.xattr.<name>` record each (as GNU `tar --xattrs` writes them).
    /// Anything goes, including names and values a kernel would refuse.
    pub fn xattrs(self, attrs: &[(&str, &[u8])]) -> Self {
        let records: Vec<(String, &[u8])> = attrs
            .iter()
            .map(|(n, v)| (format!("SCHILY.xattr.{n}"), *v))
            .collect();
        self.pax(
            &records
                .iter()
                .map(|(k, v)| (k.as_str(), *v))
                .collect::<Vec<_>>(),
        )
    }

    /// A PAX extended header (`x`) with these records, for the next entry.
    pub fn pax(mut self, records: &[(&str, &[u8])]) -> Self {
        let mut body = Vec::new();
        for (key, value) in records {
            // "<len> <key>=<value>\n", where <len> counts itself.
            let rest = key.len() + value.len() + 3;
            let mut len = rest + 1;
            while len != rest + len.to_string().len() {
                len = rest + len.to_string().len();
            }
            body.extend_from_slice(format!("{len} {key}=").as_bytes());
            body.extend_from_slice(value);
            body.push(b'\n');
        }
        self.push("./PaxHeaders/x", EntryType::XHeader, None, &body, 0o644);
        self
    }

    /// A regular file with a given mode.
    pub fn file_mode(mut self, path: &str, body: &[u8], mode: u32) -> Self {
        self.push(path, EntryType::Regular, None, body, mode);
        self
    }

    /// Start from the entries of an existing tarball (its end-of-archive
    /// blocks dropped), to add entries to a known image.
    pub fn from_entries_of(tar_bytes: &[u8]) -> Self {
        let mut archive = tar::Archive::new(tar_bytes);
        let mut end = 0u64;
        for entry in archive.entries().expect("entries") {
            let entry = entry.expect("entry");
            let size = entry.header().entry_size().expect("size");
            end = end.max(entry.raw_file_position() + size.div_ceil(512) * 512);
        }
        Tarball {
            data: tar_bytes[..end as usize].to_vec(),
        }
    }

    pub fn finish(mut self) -> Vec<u8> {
        self.data.extend(std::iter::repeat_n(0u8, 1024));
        self.data
    }
}
