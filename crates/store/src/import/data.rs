//! File contents: written with their holes left as holes, and the size the
//! whole image may reach.
//!
//! A tiny compressed tarball can describe gigabytes of zeros (a GNU sparse
//! entry, or plain zeros that compress ~1000:1). Zero blocks are skipped with
//! a seek (positioned writes) and the file is sized at the end, so they cost
//! no disk blocks; the apparent sizes of all files together are bounded by
//! the caller's `import_size` limit from the administrator's policy.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;

use tupper_config::policy::Limit;

use crate::error::{Error, Result};

/// Holes are detected in blocks of this size, aligned to the file offset.
const BLOCK: usize = 4096;
const BUF: usize = 64 * BLOCK;

/// The apparent size imported so far against the caller's limit.
pub struct Budget {
    limit: Limit<u64>,
    used: u64,
}

impl Budget {
    pub fn new(limit: Limit<u64>) -> Budget {
        Budget { limit, used: 0 }
    }

    /// Account for an entry of `size` bytes before anything of it is written;
    /// refuses once the total would pass the limit.
    pub fn charge(&mut self, size: u64, name: &str) -> Result<()> {
        let total = self.used.saturating_add(size);
        if total > self.limit.value {
            return Err(self
                .limit
                .exceeded(&format!(
                    "the image is too large: with entry {name:?} ({}) its files add up to \
                     more than the import size limit of {}",
                    human(size),
                    human(self.limit.value)
                ))
                .into());
        }
        self.used = total;
        Ok(())
    }
}

/// `1.5 GiB`, `512 MiB`, `100 bytes`.
pub fn human(n: u64) -> String {
    const UNITS: [(&str, u64); 4] = [
        ("TiB", 1 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ];
    for (unit, size) in UNITS {
        if n >= size {
            let whole = n / size;
            let tenth = (n % size) * 10 / size;
            return if tenth == 0 {
                format!("{whole} {unit}")
            } else {
                format!("{whole}.{tenth} {unit}")
            };
        }
    }
    format!("{n} bytes")
}

/// Read until `buf` is full or the input ends; the count read.
fn fill(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn is_zero(block: &[u8]) -> bool {
    // An OR over the block (no early exit) is vectorised.
    block.iter().fold(0u8, |acc, b| acc | b) == 0
}

/// Copy an entry's data into the new, empty `file`: runs of non-zero blocks
/// are written at their offset, zero blocks skipped, then the file is given
/// its full size. Returns the size.
pub fn copy_sparse(r: &mut impl Read, file: &File, name: &str) -> Result<u64> {
    let write_err = || Error::io(format!("cannot write {name:?}"));
    let mut buf = vec![0u8; BUF];
    let mut pos = 0u64;
    loop {
        let n = fill(r, &mut buf).map_err(|e| Error::Tarball(e.to_string()))?;
        if n == 0 {
            break;
        }
        let data = &buf[..n];
        let mut i = 0;
        while i < n {
            let end = (i + BLOCK).min(n);
            if is_zero(&data[i..end]) {
                i = end;
                continue;
            }
            let start = i;
            while i < n {
                let end = (i + BLOCK).min(n);
                if is_zero(&data[i..end]) {
                    break;
                }
                i = end;
            }
            file.write_all_at(&data[start..i], pos + start as u64)
                .map_err(write_err())?;
        }
        pos += n as u64;
    }
    file.set_len(pos).map_err(write_err())?;
    Ok(pos)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;
    use tupper_helper::ToRemote;

    fn limit(value: u64) -> Limit<u64> {
        Limit {
            value,
            source: "/etc/tupperware/policy.toml [default]".into(),
        }
    }

    #[test]
    fn budget_refuses_past_the_limit_and_names_it() {
        let mut b = Budget::new(limit(1 << 30));
        b.charge(1 << 29, "a").unwrap();
        b.charge(1 << 29, "b").unwrap();
        let e = b.charge(1, "c").unwrap_err().to_remote();
        assert_eq!(e.kind, proto::ErrorKind::Exhausted);
        assert!(e.message.contains("\"c\""), "{}", e.message);
        assert!(e.message.contains("1 GiB"), "{}", e.message);
        assert!(e.message.contains("policy.toml [default]"), "{}", e.message);
        assert!(Budget::new(limit(10)).charge(u64::MAX, "x").is_err());
    }

    #[test]
    fn sizes_for_people() {
        assert_eq!(human(2 << 30), "2 GiB");
        assert_eq!(human(3 << 29), "1.5 GiB");
        assert_eq!(human(100), "100 bytes");
    }

    #[test]
    fn zeros_become_holes_and_data_stays() {
        let dir = std::env::temp_dir().join(format!("tupper-sparse-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f");
        let mut input = vec![0u8; 8 << 20];
        input[5 * BLOCK + 7] = 1;
        input.extend_from_slice(b"tail"); // unaligned end, not a hole
        let file = File::create(&path).unwrap();
        let n = copy_sparse(&mut &input[..], &file, "f").unwrap();
        assert_eq!(n, input.len() as u64);
        drop(file);
        assert_eq!(std::fs::read(&path).unwrap(), input);
        let zeros = vec![0u8; 8 << 20];
        let file = File::create(&path).unwrap();
        copy_sparse(&mut &zeros[..], &file, "f").unwrap();
        let md = std::fs::metadata(&path).unwrap();
        assert_eq!(md.len(), 8 << 20);
        // tmpfs and every filesystem used here support holes.
        assert!(md.blocks() * 512 < 64 * 1024, "{} blocks", md.blocks());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
