//! Progress of a pull: on a terminal a bar per blob with bytes and rate;
//! otherwise one line per blob when it is done; nothing with `--quiet`.

use std::io::{IsTerminal, Write};
use std::time::Instant;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

pub enum Progress {
    Bars(MultiProgress),
    Lines,
    Quiet,
}

pub struct Blob {
    bar: Option<ProgressBar>,
    lines: bool,
    what: String,
    size: u64,
    start: Instant,
}

impl Progress {
    pub fn new(quiet: bool) -> Progress {
        if quiet {
            Progress::Quiet
        } else if std::io::stderr().is_terminal() {
            Progress::Bars(MultiProgress::with_draw_target(ProgressDrawTarget::stderr()))
        } else {
            Progress::Lines
        }
    }

    /// A message line (`Pulling docker.io/library/busybox:latest`).
    pub fn note(&self, line: &str) {
        match self {
            Progress::Bars(m) => {
                let _ = m.println(line);
            }
            Progress::Lines => {
                let _ = writeln!(std::io::stderr(), "{line}");
            }
            Progress::Quiet => {}
        }
    }

    /// Start the blob `what` (`layer sha256:1234abcd5678`) of `size` bytes.
    pub fn blob(&self, what: String, size: u64) -> Blob {
        let bar = match self {
            Progress::Bars(m) => {
                let bar = m.add(ProgressBar::new(size));
                let style = ProgressStyle::with_template(
                    "{prefix:28} [{bar:30}] {bytes:>10}/{total_bytes:<10} {binary_bytes_per_sec:>12}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
                bar.set_style(style);
                bar.set_prefix(what.clone());
                Some(bar)
            }
            _ => None,
        };
        Blob {
            bar,
            lines: matches!(self, Progress::Lines),
            what,
            size,
            start: Instant::now(),
        }
    }
}

impl Blob {
    pub fn advance(&self, n: u64) {
        if let Some(b) = &self.bar {
            b.inc(n);
        }
    }

    /// The blob is in place: `cached` when it was already there.
    pub fn done(self, cached: bool) {
        let how = if cached {
            "already present".to_string()
        } else {
            let secs = self.start.elapsed().as_secs_f64().max(0.001);
            format!(
                "{} in {:.1} s ({}/s)",
                human(self.size),
                secs,
                human((self.size as f64 / secs) as u64)
            )
        };
        if let Some(b) = self.bar {
            b.set_position(self.size);
            b.finish_with_message(how);
        } else if self.lines {
            let _ = writeln!(std::io::stderr(), "{}: {how}", self.what);
        }
    }

    /// The blob failed: remove its bar.
    pub fn abandon(self) {
        if let Some(b) = self.bar {
            b.abandon();
        }
    }
}

/// Bytes in B/KiB/MiB/GiB with one decimal.
pub fn human(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    format!("{v:.1} {}", UNITS[i])
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(super::human(10), "10 B");
        assert_eq!(super::human(2048), "2.0 KiB");
        assert_eq!(super::human(5 << 20), "5.0 MiB");
    }
}
