//! Container logs: what the monitor writes and what `logs` reads.
//!
//! One record per line, as the k8s-file format:
//! `2026-11-29T12:00:00.123456789Z stdout F text`: the time, the stream
//! (`stdout` or `stderr`), `F` for a full line or `P` for a partial one
//! (output that did not end in a newline, continued by the next record),
//! then the text. The current file is `ctr.log` in the container's
//! directory; when writing would take it past the cap it becomes
//! `ctr.log.1` (and `.1` becomes `.2`, ...), keeping `log_files` files in
//! all, so a container's logs never take more than about
//! `log_size_max × log_files`. Files are mode 0600 in the 0700 state
//! directory.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

pub const LOG_NAME: &str = "ctr.log";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// The log writer of one container (in the monitor).
pub struct LogWriter {
    dir: PathBuf,
    max: u64,
    files: u32,
    file: Option<File>,
    size: u64,
}

fn open_log(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

impl LogWriter {
    pub fn open(dir: PathBuf, max: u64, files: u32) -> LogWriter {
        let path = dir.join(LOG_NAME);
        let file = open_log(&path).ok();
        let size = file
            .as_ref()
            .and_then(|f| f.metadata().ok())
            .map_or(0, |m| m.len());
        LogWriter {
            dir,
            max: max.max(4096),
            files: files.max(1),
            file,
            size,
        }
    }

    fn rotate(&mut self) {
        self.file = None;
        let name = |n: u32| {
            if n == 0 {
                self.dir.join(LOG_NAME)
            } else {
                self.dir.join(format!("{LOG_NAME}.{n}"))
            }
        };
        if self.files <= 1 {
            let _ = fs::remove_file(name(0));
        } else {
            for n in (0..self.files - 1).rev() {
                let _ = fs::rename(name(n), name(n + 1));
            }
        }
        self.file = open_log(&name(0)).ok();
        self.size = 0;
    }

    /// Append what a stream produced, as records (split at newlines).
    pub fn write(&mut self, stream: Stream, data: &[u8]) {
        let ts = timestamp(std::time::SystemTime::now());
        let mut rest = data;
        while !rest.is_empty() {
            let (line, full, next) = match rest.iter().position(|b| *b == b'\n') {
                Some(i) => (&rest[..i], true, &rest[i + 1..]),
                None => (rest, false, &[][..]),
            };
            // A record never exceeds the cap: very long lines are split.
            let room = (self.max / 2) as usize;
            let (line, full, next) = if line.len() > room {
                (&line[..room], false, &rest[room..])
            } else {
                (line, full, next)
            };
            let mut rec = Vec::with_capacity(line.len() + 48);
            rec.extend_from_slice(ts.as_bytes());
            rec.push(b' ');
            rec.extend_from_slice(stream.name().as_bytes());
            rec.extend_from_slice(if full { b" F " } else { b" P " });
            rec.extend_from_slice(line);
            rec.push(b'\n');
            if self.size + rec.len() as u64 > self.max {
                self.rotate();
            }
            if let Some(f) = &mut self.file {
                if f.write_all(&rec).is_ok() {
                    self.size += rec.len() as u64;
                }
            }
            rest = next;
        }
    }
}

/// RFC 3339 in UTC with nanoseconds.
pub fn timestamp(t: std::time::SystemTime) -> String {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    let (y, m, dd) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{dd:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_nanos()
    )
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian calendar.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// One parsed log record.
#[derive(Debug, PartialEq, Eq)]
pub struct Entry<'a> {
    pub time: &'a str,
    pub stream: Stream,
    pub full: bool,
    pub text: &'a [u8],
}

pub fn parse(line: &[u8]) -> Option<Entry<'_>> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let mut parts = line.splitn(4, |b| *b == b' ');
    let time = std::str::from_utf8(parts.next()?).ok()?;
    let stream = match parts.next()? {
        b"stdout" => Stream::Stdout,
        b"stderr" => Stream::Stderr,
        _ => return None,
    };
    let full = match parts.next()? {
        b"F" => true,
        b"P" => false,
        _ => return None,
    };
    Some(Entry {
        time,
        stream,
        full,
        text: parts.next().unwrap_or(b""),
    })
}

/// The log files of a container, oldest first.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut rotated: Vec<(u32, PathBuf)> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let n = name.strip_prefix(&format!("{LOG_NAME}."))?.parse().ok()?;
            Some((n, e.path()))
        })
        .collect();
    rotated.sort_by_key(|r| std::cmp::Reverse(r.0));
    let mut all: Vec<PathBuf> = rotated.into_iter().map(|(_, p)| p).collect();
    all.push(dir.join(LOG_NAME));
    all
}

pub struct LogOptions {
    pub follow: bool,
    pub tail: Option<usize>,
    pub timestamps: bool,
}

fn emit(line: &[u8], opts: &LogOptions) -> io::Result<()> {
    let Some(e) = parse(line) else { return Ok(()) };
    let mut out: Box<dyn Write> = match e.stream {
        Stream::Stdout => Box::new(io::stdout().lock()),
        Stream::Stderr => Box::new(io::stderr().lock()),
    };
    if opts.timestamps {
        out.write_all(e.time.as_bytes())?;
        out.write_all(b" ")?;
    }
    out.write_all(e.text)?;
    if e.full {
        out.write_all(b"\n")?;
    }
    out.flush()
}

/// Print a container's logs; with `follow`, keep printing until `running`
/// says the container is gone and everything written was printed.
pub fn print(dir: &Path, opts: &LogOptions, running: &dyn Fn() -> bool) -> Result<()> {
    let io_err = |e| Error::io("write the logs", e);
    let mut lines: Vec<Vec<u8>> = Vec::new();
    for path in files(dir) {
        let Ok(f) = File::open(&path) else { continue };
        for line in io::BufReader::new(f).split(b'\n') {
            let Ok(line) = line else { break };
            lines.push(line);
        }
    }
    let skip = opts.tail.map_or(0, |n| lines.len().saturating_sub(n));
    for line in &lines[skip..] {
        emit(line, opts).map_err(io_err)?;
    }
    if !opts.follow {
        return Ok(());
    }
    // Follow the current file from where we are; a rotation shows as a new inode.
    let path = dir.join(LOG_NAME);
    let (mut ino, mut pos) = match fs::metadata(&path) {
        Ok(m) => (m.ino(), m.len()),
        Err(_) => (0, 0),
    };
    let mut partial = Vec::new();
    loop {
        let alive = running();
        if let Ok(m) = fs::metadata(&path) {
            if m.ino() != ino {
                ino = m.ino();
                pos = 0;
            }
            if m.len() > pos {
                if let Ok(f) = File::open(&path) {
                    use std::io::{Read, Seek};
                    let mut f = f;
                    let _ = f.seek(io::SeekFrom::Start(pos));
                    let mut buf = Vec::new();
                    let _ = f.read_to_end(&mut buf);
                    pos += buf.len() as u64;
                    partial.extend_from_slice(&buf);
                    while let Some(i) = partial.iter().position(|b| *b == b'\n') {
                        let line: Vec<u8> = partial.drain(..=i).collect();
                        emit(&line, opts).map_err(io_err)?;
                    }
                    continue;
                }
            }
        }
        if !alive {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::new(1_796_040_000, 123_456_789);
        assert_eq!(timestamp(t), "2026-11-30T12:00:00.123456789Z");
        assert_eq!(
            timestamp(std::time::UNIX_EPOCH),
            "1970-01-01T00:00:00.000000000Z"
        );
    }

    #[test]
    fn records_keep_streams_apart_and_mark_partial_lines() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = LogWriter::open(dir.path().into(), 1 << 20, 2);
        w.write(Stream::Stdout, b"one\ntwo");
        w.write(Stream::Stderr, b"err\n");
        let text = fs::read(dir.path().join(LOG_NAME)).unwrap();
        let entries: Vec<_> = text.split(|b| *b == b'\n').filter_map(parse).collect();
        assert_eq!(entries.len(), 3);
        assert_eq!(
            (entries[0].stream, entries[0].full, entries[0].text),
            (Stream::Stdout, true, &b"one"[..])
        );
        assert_eq!((entries[1].full, entries[1].text), (false, &b"two"[..]));
        assert_eq!(entries[2].stream, Stream::Stderr);
        let mode = fs::metadata(dir.path().join(LOG_NAME)).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn rotation_keeps_the_total_under_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = LogWriter::open(dir.path().into(), 8192, 2);
        let line = vec![b'x'; 1000];
        for _ in 0..1000 {
            w.write(Stream::Stdout, &line);
            w.write(Stream::Stdout, b"\n");
        }
        // An endless line is split, and still rotated.
        w.write(Stream::Stderr, &vec![b'y'; 100_000]);
        let total: u64 = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum();
        assert!(total <= 2 * 8192, "{total}");
        assert!(dir.path().join("ctr.log.1").exists());
        assert!(!dir.path().join("ctr.log.2").exists());
    }
}
