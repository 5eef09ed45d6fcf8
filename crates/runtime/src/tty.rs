//! `-t`: our terminal in raw mode while attached (the container's terminal
//! master is held by its monitor); `exec -t` relays a terminal itself.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::thread::JoinHandle;

use crate::error::{Error, Result};

use nix::sys::termios::{self, SetArg, Termios};

pub fn stdin_is_tty() -> bool {
    // SAFETY: isatty only inspects the descriptor.
    unsafe { libc::isatty(libc::STDIN_FILENO) == 1 }
}

/// Our terminal in raw mode until dropped.
pub struct RawMode {
    saved: Termios,
}

impl RawMode {
    pub fn enter() -> Option<RawMode> {
        let stdin = std::io::stdin();
        let saved = termios::tcgetattr(stdin.as_fd()).ok()?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw).ok()?;
        Some(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, &self.saved);
    }
}

fn window_size(fd: RawFd) -> Option<libc::winsize> {
    // SAFETY: winsize is plain data; all zeroes is a valid value.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes a winsize into the buffer we pass.
    let rc = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) };
    (rc == 0).then_some(ws)
}

/// Give the pty behind `master` the size of our standard input's terminal
/// (`exec -t`, whose terminal the supervisor relays itself).
pub fn copy_window_size(master: RawFd) {
    if let Some(ws) = window_size(libc::STDIN_FILENO) {
        // SAFETY: TIOCSWINSZ reads a winsize from the buffer we pass.
        unsafe { libc::ioctl(master, libc::TIOCSWINSZ, &ws) };
    }
}

/// Copy `from` to `to` until either end fails or `from` ends. A pty master
/// reads EIO once every slave descriptor is closed, which ends the copy too.
fn pump(mut from: impl Read, mut to: impl Write) {
    let mut buf = [0u8; 4096];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).and_then(|_| to.flush()).is_err() {
                    break;
                }
            }
        }
    }
}

/// Copy our stdin to the master (detached: it may block on a read forever)
/// and the master to our stdout; the returned handle ends when the container
/// side of the terminal is closed by every process.
pub fn relay(master: OwnedFd) -> Result<JoinHandle<()>> {
    let to_pty = master.try_clone().map_err(|e| Error::io("pty", e))?;
    std::thread::Builder::new()
        .name("tty-in".into())
        .spawn(move || pump(std::io::stdin().lock(), File::from(to_pty)))
        .map_err(|e| Error::io("start the terminal relay", e))?;
    std::thread::Builder::new()
        .name("tty-out".into())
        .spawn(move || pump(File::from(master), std::io::stdout().lock()))
        .map_err(|e| Error::io("start the terminal relay", e))
}
