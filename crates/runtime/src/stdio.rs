//! The container's standard streams without a terminal: pipes of the
//! supervisor's own, relayed to and from the real ones.
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
//! Output is relayed with `splice` where the kernel can (a file or a pipe),
//! else with `read`/`write` (a terminal), and drained before `run` returns.
//! When the real output is gone (`EPIPE`), our read end is closed, so the
//! container sees `EPIPE`/`SIGPIPE` as it would on the host. End-of-file on
//! the real input closes the container's.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::process::Stdio;
use std::thread::JoinHandle;

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

/// The relay of one `run`: threads copying between our pipes and the real
/// streams, and what is left to join.
pub struct Relay {
    outputs: Vec<JoinHandle<()>>,
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
    /// Start copying. The helper's copies of the far ends must be gone from
    /// this process (they are: `Command` closes them after spawning).
    pub fn start(self) -> Result<Relay> {
        let mut outputs = Vec::new();
        for (from, to) in self.outputs {
            let h = std::thread::Builder::new()
                .name("stdio-out".into())
                .spawn(move || copy_out(from, to))
                .map_err(|e| Error::io("start the output relay", e))?;
            outputs.push(h);
        }
        if let Some(to) = self.input {
            // Not joined: it may sit in a read of our stdin after the
            // container is gone; the process exits under it.
            std::thread::Builder::new()
                .name("stdio-in".into())
                .spawn(move || copy_in(libc::STDIN_FILENO, to))
                .map_err(|e| Error::io("start the input relay", e))?;
        }
        Ok(Relay { outputs })
    }
}

impl Relay {
    /// Wait until everything the container wrote has been passed on (all
    /// writers are gone once the container's init has exited: its pid
    /// namespace goes with it).
    pub fn drain(mut self) {
        for h in self.outputs.drain(..) {
            let _ = h.join();
        }
    }
}

/// Copy from our pipe to the real descriptor until end-of-file or until the
/// real one fails; dropping `from` then closes our read end.
fn copy_out(from: OwnedFd, to: RawFd) {
    // SAFETY: the standard descriptors stay open for the life of the process.
    let to = unsafe { BorrowedFd::borrow_raw(to) };
    let mut can_splice = true;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if can_splice {
            match splice(from.as_fd(), to) {
                Ok(0) => return,
                Ok(_) => continue,
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => can_splice = false,
                Err(_) => return,
            }
        }
        let n = match nix::unistd::read(from.as_fd(), &mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return,
        };
        if write_all(to, &buf[..n]).is_err() {
            return;
        }
    }
}

/// Copy the real stdin into our pipe; end-of-file (or a failure on either
/// side) closes the pipe, which the container reads as end-of-file.
fn copy_in(from: RawFd, to: OwnedFd) {
    // SAFETY: the standard descriptors stay open for the life of the process.
    let from = unsafe { BorrowedFd::borrow_raw(from) };
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match nix::unistd::read(from, &mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return,
        };
        if write_all(to.as_fd(), &buf[..n]).is_err() {
            return;
        }
    }
}

fn write_all(to: BorrowedFd<'_>, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        match nix::unistd::write(to, data) {
            Ok(n) => data = &data[n..],
            Err(nix::errno::Errno::EINTR) => continue,
            Err(nix::errno::Errno::EAGAIN) => wait_writable(to)?,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// A real output left non-blocking by someone else: wait instead of spinning.
fn wait_writable(fd: BorrowedFd<'_>) -> io::Result<()> {
    let mut p = [nix::poll::PollFd::new(fd, nix::poll::PollFlags::POLLOUT)];
    nix::poll::poll(&mut p, nix::poll::PollTimeout::NONE)
        .map(drop)
        .map_err(io::Error::from)
}

/// One `splice` from a pipe to `to`; `EAGAIN` waits for room.
fn splice(from: BorrowedFd<'_>, to: BorrowedFd<'_>) -> io::Result<usize> {
    loop {
        // SAFETY: valid descriptors, no offsets.
        let n = unsafe {
            libc::splice(
                from.as_raw_fd(),
                std::ptr::null_mut(),
                to.as_raw_fd(),
                std::ptr::null_mut(),
                64 * 1024,
                libc::SPLICE_F_MOVE,
            )
        };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EAGAIN) {
            wait_writable(to)?;
            continue;
        }
        return Err(e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::IntoRawFd;

    #[test]
    fn pipes_are_reopenable_by_anyone() {
        let (r, _w) = pipe().unwrap();
        let st = nix::sys::stat::fstat(&r).unwrap();
        assert_eq!(st.st_mode & 0o777, 0o666);
    }

    #[test]
    fn output_is_copied_to_a_file_and_to_a_pipe_until_end_of_file() {
        // To a file.
        let file = tempfile::tempfile().unwrap();
        let (r, w) = pipe().unwrap();
        let to = file.as_raw_fd();
        let h = std::thread::spawn(move || copy_out(r, to));
        let mut w = std::fs::File::from(w);
        w.write_all(&vec![b'x'; 200_000]).unwrap();
        drop(w);
        h.join().unwrap();
        assert_eq!(file.metadata().unwrap().len(), 200_000);

        // To a pipe, read while it is copied.
        let (dst_r, dst_w) = nix::unistd::pipe().unwrap();
        let (r, w) = pipe().unwrap();
        let h = std::thread::spawn(move || copy_out(r, dst_w.as_raw_fd()));
        let writer = std::thread::spawn(move || {
            let mut w = std::fs::File::from(w);
            w.write_all(&vec![b'y'; 200_000]).unwrap();
        });
        let mut got = Vec::new();
        let mut rd = std::fs::File::from(dst_r);
        let mut buf = [0u8; 8192];
        while got.len() < 200_000 {
            let n = rd.read(&mut buf).unwrap();
            assert!(n > 0);
            got.extend_from_slice(&buf[..n]);
        }
        writer.join().unwrap();
        h.join().unwrap();
        assert_eq!(got.len(), 200_000);
    }

    #[test]
    fn a_closed_reader_closes_our_pipe_so_the_writer_gets_epipe() {
        let (dst_r, dst_w) = nix::unistd::pipe().unwrap();
        drop(dst_r);
        let (r, w) = pipe().unwrap();
        let to = dst_w.into_raw_fd();
        let h = std::thread::spawn(move || copy_out(r, to));
        let mut w = std::fs::File::from(w);
        // The first write may fit in the pipe; once the relay has seen
        // EPIPE and closed the read end, writes fail with EPIPE (Rust
        // ignores SIGPIPE).
        let mut err = None;
        for _ in 0..100 {
            if let Err(e) = w.write_all(b"hello\n") {
                err = Some(e);
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        h.join().unwrap();
        assert_eq!(err.map(|e| e.raw_os_error()), Some(Some(libc::EPIPE)));
        // SAFETY: we own `to` (into_raw_fd above).
        unsafe { libc::close(to) };
    }
}
