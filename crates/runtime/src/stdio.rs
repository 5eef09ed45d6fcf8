//! The container's standard streams without a terminal: pipes of the
//! monitor's own, relayed to and from attached clients.
//!
//! The caller's descriptors may be objects the container cannot reopen (a
//! host terminal, a file of another owner, a pipe of another user), and
//! `/dev/stdout` is `/proc/self/fd/1`: reopening it is a fresh open of that
//! object. Our pipes belong to the caller, who is the container's root, and
//! are `0666` so that any user inside can reopen them too. That widens
//! nothing: opening another process's `/proc/<pid>/fd/N` requires being able
//! to ptrace it, and inside the container the pipes are already every
//! process's inherited stdio.
//!
//! The container's monitor holds our ends: it logs the output and relays it
//! to attached clients, and writes what they send to the input
//! (`monitor.rs`). End-of-file on an attached client's input closes the
//! container's.

use std::os::fd::{OwnedFd, RawFd};
use std::process::Stdio;

use crate::error::{Error, Result};
use crate::helpers::HelperStdio;

/// A pipe (read end, write end), close-on-exec, `0666`.
fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| Error::io("create a pipe for the container's stdio", e.into()))?;
    nix::sys::stat::fchmod(&r, nix::sys::stat::Mode::from_bits_truncate(0o666))
        .map_err(|e| Error::io("make the container's stdio pipe reopenable", e.into()))?;
    Ok((r, w))
}

/// Pipes created, not yet relayed: the far ends go to the ns helper.
pub struct Pending {
    /// (read end of ours, real descriptor to copy to)
    outputs: Vec<(OwnedFd, RawFd)>,
    /// (real stdin, write end of ours)
    input: Option<OwnedFd>,
}

/// The ns helper's standard streams, which become the container's: with a
/// terminal the container gets its own and these only carry the helper's
/// messages; without, our pipes (to relay once the helper runs).
pub fn for_container(tty: bool, interactive: bool) -> Result<(HelperStdio, Option<Pending>)> {
    if tty {
        return Ok((HelperStdio::default(), None));
    }
    let (stdio, pending) = interpose(interactive)?;
    Ok((stdio, Some(pending)))
}

/// Make the pipes; returns the helper's stdio (which the container inherits)
/// and what to relay once the helper runs.
pub fn interpose(interactive: bool) -> Result<(HelperStdio, Pending)> {
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let (stdin, input) = if interactive {
        let (in_r, in_w) = pipe()?;
        (Stdio::from(in_r), Some(in_w))
    } else {
        (Stdio::null(), None)
    };
    let stdio = HelperStdio {
        stdin,
        stdout: Stdio::from(out_w),
        stderr: Stdio::from(err_w),
    };
    Ok((
        stdio,
        Pending {
            outputs: vec![(out_r, libc::STDOUT_FILENO), (err_r, libc::STDERR_FILENO)],
            input,
        },
    ))
}

impl Pending {
    /// Our ends, for the monitor: the output pipes' read ends (stdout,
    /// stderr) and the input pipe's write end.
    pub fn into_parts(self) -> (Vec<(OwnedFd, crate::logs::Stream)>, Option<OwnedFd>) {
        let mut out = Vec::new();
        for (fd, to) in self.outputs {
            let stream = if to == libc::STDERR_FILENO {
                crate::logs::Stream::Stderr
            } else {
                crate::logs::Stream::Stdout
            };
            out.push((fd, stream));
        }
        (out, self.input)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipes_are_reopenable_by_anyone() {
        let (r, _w) = pipe().unwrap();
        let st = nix::sys::stat::fstat(&r).unwrap();
        assert_eq!(st.st_mode & 0o777, 0o666);
    }
}
