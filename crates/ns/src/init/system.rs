//! Hostname, loopback, working directory, session and terminal.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use crate::error::{Context, Error};

pub fn set_hostname(name: &str) -> Result<(), Error> {
    nix::unistd::sethostname(name).ctx("set the hostname")
}

/// Bring `lo` up in the container's network namespace.
pub fn loopback_up() -> Result<(), Error> {
    // SAFETY: plain socket creation; the descriptor is owned right away.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error()).ctx("bring up lo");
    }
    // SAFETY: raw is a new descriptor nobody else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: ifreq is plain data; zeroed is valid.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in ifr.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: ifr is a valid ifreq for both ioctls.
    unsafe {
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut ifr) < 0 {
            return Err(std::io::Error::last_os_error()).ctx("bring up lo");
        }
        ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &ifr) < 0 {
            return Err(std::io::Error::last_os_error()).ctx("bring up lo");
        }
    }
    Ok(())
}

/// `chdir` into the working directory (a path inside the container, after pivot_root).
pub fn enter_workdir(workdir: &str) -> Result<(), Error> {
    nix::unistd::chdir(workdir)
        .map_err(|e| Error::sys(format!("working directory {workdir:?}"))(e.into()))
}

/// New session; with a tty, stdin becomes the controlling terminal. The
/// init dies with the supervisor.
pub fn new_session(tty: bool) -> Result<(), Error> {
    tupper_sys::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong)
        .ctx("set the parent-death signal")?;
    nix::unistd::setsid().ctx("start a session")?;
    if tty {
        // SAFETY: TIOCSCTTY takes an integer argument.
        if unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) } < 0 {
            return Err(std::io::Error::last_os_error()).ctx("make stdin the controlling terminal");
        }
    }
    Ok(())
}

/// Open a new terminal in the container's devpts (`/dev/ptmx`, after
/// `pivot_root`), make its slave side our stdin, stdout and stderr, and
/// return the master side for the supervisor.
pub fn terminal_as_stdio() -> Result<OwnedFd, Error> {
    let master = nix::fcntl::open(
        "/dev/ptmx",
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .ctx("open /dev/ptmx in the container")?;
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads an int; TIOCGPTPEER returns a new descriptor.
    let slave = unsafe {
        if libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) < 0 {
            return Err(std::io::Error::last_os_error()).ctx("unlock the terminal");
        }
        libc::ioctl(
            master.as_raw_fd(),
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY,
        )
    };
    if slave < 0 {
        return Err(std::io::Error::last_os_error()).ctx("open the terminal's slave side");
    }
    // SAFETY: the kernel returned a fresh descriptor we own.
    let slave = unsafe { OwnedFd::from_raw_fd(slave) };
    for target in 0..=2 {
        // SAFETY: dup2 onto the standard descriptors.
        if unsafe { libc::dup2(slave.as_raw_fd(), target) } < 0 {
            return Err(std::io::Error::last_os_error()).ctx("make the terminal standard I/O");
        }
    }
    Ok(master)
}
