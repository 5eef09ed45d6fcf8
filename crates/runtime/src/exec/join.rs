//! The children of `exec`.
//!
//! The joiner (forked by the supervisor, single-threaded):
//! 1. becomes non-dumpable, first: until `execve` it holds the supervisor's
//!    memory, and container processes run as the same host uid; a
//!    non-dumpable process can be neither traced nor read through `/proc`
//!    by them (the CVE-2019-5736 class). `execve` makes the command
//!    dumpable again;
//!    With `exec -d` it then forks again and its first process exits: the
//!    joiner leaves the supervisor (a session of its own, `/dev/null` as its
//!    standard streams) and lives as long as the command, which it reaps;
//! 2. closes every descriptor but its standard streams, the report channel
//!    and the pidfd (standard input is `/dev/null` without `-i` or `-t`);
//! 3. joins the init's namespaces that differ from its own at once with
//!    `setns(pidfd, CLONE_NEWUSER | ...)`, then closes the pidfd;
//! 4. forks the command's process (the first process it creates is in the
//!    container's pid namespace), reports its host pid to the supervisor,
//!    lets it go, waits for it and exits with its status.
//!
//! The command's process: with `-t` a terminal of the container's devpts as
//! its standard streams and controlling terminal (its master goes to the
//! supervisor), else a session of its own; the working directory; the user
//! of `-u` from the container's files; then `tupper_lockdown` as the init
//! does it (bounding set, default signals, every other descriptor
//! close-on-exec, user, `no_new_privs`, seccomp) and `execve`. A failure is
//! reported over the channel (126/127 as the init reports them).

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use proto::{Channel, ErrorKind, RemoteError};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// What the supervisor is told, in this order: `Started`, then `Terminal`
/// (with the master, `-t` only), then `Failed` if the command did not run.
#[derive(Debug, Serialize, Deserialize)]
pub enum Report {
    Started { pid: i32 },
    Terminal,
    Failed { error: RemoteError, code: i32 },
    // Issue 9: the joiner is in the container's namespaces and waits for
    // the supervisor to have it moved into the container's cgroups (the
    // answer is one `bool` frame: go on or give up). `pid`: the joiner's
    // own (`exec -d`: not the supervisor's child).
    Joined { pid: i32 },
}

/// What the children do.
pub struct Plan {
    pub namespaces: libc::c_int,
    pub command: Vec<String>,
    /// The container's environment with `-e` over it (defaults added inside).
    pub env: Vec<String>,
    pub hostname: String,
    pub workdir: String,
    pub security: proto::SpawnSecurity,
    pub tty: bool,
    pub interactive: bool,
    /// Issue 9: join the container's cgroups (through the supervisor) before
    /// forking the command.
    pub cgroups: bool,
    /// `exec -d`: the joiner leaves the supervisor (its first process forks
    /// it and exits) and its standard streams are `/dev/null`.
    pub detach: bool,
}

const NAMESPACES: [(libc::c_int, &str); 7] = [
    (libc::CLONE_NEWUSER, "user"),
    (libc::CLONE_NEWNS, "mnt"),
    (libc::CLONE_NEWPID, "pid"),
    (libc::CLONE_NEWNET, "net"),
    (libc::CLONE_NEWUTS, "uts"),
    (libc::CLONE_NEWIPC, "ipc"),
    (libc::CLONE_NEWCGROUP, "cgroup"),
];

/// The namespaces of `pid` that are not ours (`--network host` shares
/// ours, for instance). One we cannot see is counted as different: joining
/// it then fails in `setns` with a clean error.
pub fn namespaces_to_join(pid: i32) -> libc::c_int {
    use std::os::unix::fs::MetadataExt;
    let id = |path: String| std::fs::metadata(path).map(|m| (m.dev(), m.ino())).ok();
    NAMESPACES
        .iter()
        .filter(|(_, name)| {
            let theirs = id(format!("/proc/{pid}/ns/{name}"));
            theirs.is_none() || theirs != id(format!("/proc/self/ns/{name}"))
        })
        .fold(0, |flags, (flag, _)| flags | flag)
}

/// Fork the joiner; returns its pid (our child).
pub fn spawn(plan: &Plan, pidfd: BorrowedFd<'_>, channel: OwnedFd) -> Result<i32> {
    // SAFETY: the child only runs `joiner`, which never returns.
    match unsafe { libc::fork() } {
        -1 => Err(Error::io("fork", std::io::Error::last_os_error())),
        0 => joiner(plan, pidfd.as_raw_fd(), channel),
        pid => Ok(pid),
    }
}

fn exit(code: i32) -> ! {
    // SAFETY: ends the child without running the supervisor's cleanup.
    unsafe { libc::_exit(code) }
}

fn os(what: &str) -> RemoteError {
    RemoteError::new(
        ErrorKind::System,
        format!("exec: {what}: {}", std::io::Error::last_os_error()),
    )
}

fn fail(chan: &mut Channel, error: RemoteError, code: i32) -> ! {
    let _ = chan.send(&Report::Failed { error, code });
    exit(code)
}

/// Close every descriptor but those in `keep`.
fn close_all_but(keep: &[RawFd]) -> std::io::Result<()> {
    let mut keep = keep.to_vec();
    keep.sort_unstable();
    let mut next: u32 = 0;
    for fd in keep.into_iter().map(|f| f as u32) {
        if fd > next {
            close_range(next, fd - 1, 0)?;
        }
        next = next.max(fd + 1);
    }
    close_range(next, u32::MAX, 0)
}

fn close_range(first: u32, last: u32, flags: libc::c_uint) -> std::io::Result<()> {
    // SAFETY: close_range only closes (or marks) descriptors; the caller
    // owns none of them any more.
    let rc = unsafe { libc::syscall(libc::SYS_close_range, first, last, flags) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Make this process non-dumpable and check that it is (what the command's
/// process inherits until `execve`).
pub(super) fn harden() -> std::io::Result<()> {
    tupper_lockdown::privileges::non_dumpable().map_err(std::io::Error::other)?;
    // SAFETY: PR_GET_DUMPABLE takes no argument.
    match unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) } {
        0 => Ok(()),
        _ => Err(std::io::Error::other("still dumpable")),
    }
}

fn joiner(plan: &Plan, pidfd: RawFd, channel: OwnedFd) -> ! {
    let sock = channel.as_raw_fd();
    let mut chan = Channel::new(std::os::unix::net::UnixStream::from(channel));
    // 1.
    if harden().is_err() {
        fail(&mut chan, os("make the joining process non-dumpable"), 125);
    }
    // 1b. (`exec -d`) Leave the supervisor: this first process exits (the
    // supervisor reaps it) and the joiner goes on in a session of its own,
    // reparented to the system's reaper as podman's per-exec conmon is. It
    // waits for the command, so the command is never a zombie of the
    // container and the container's end (which waits for every process of
    // its pid namespace to be reaped) is not held up.
    if plan.detach {
        // SAFETY: this process is single-threaded (a fork); the child goes on
        // with this function, the parent only exits.
        match unsafe { libc::fork() } {
            -1 => fail(&mut chan, os("fork the detached joiner"), 125),
            0 => {}
            _ => exit(0),
        }
        // SAFETY: setsid has no arguments; a fresh child leads no group.
        unsafe { libc::setsid() };
        // Nothing is read or written through the supervisor's streams, which
        // the caller may be waiting on (`$(tupper-supervisor exec -d ...)`).
        let Ok(null) = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")
        else {
            fail(&mut chan, os("open /dev/null"), 125)
        };
        for fd in 0..3 {
            // SAFETY: dup2 onto a standard stream.
            if unsafe { libc::dup2(null.as_raw_fd(), fd) } != fd {
                fail(&mut chan, os("redirect to /dev/null"), 125);
            }
        }
    }
    // 2.
    if !plan.interactive && !plan.tty {
        match std::fs::File::open("/dev/null") {
            // SAFETY: dup2 onto standard input.
            Ok(null) if unsafe { libc::dup2(null.as_raw_fd(), 0) } == 0 => {}
            _ => fail(&mut chan, os("open /dev/null"), 125),
        }
    }
    if close_all_but(&[0, 1, 2, sock, pidfd]).is_err() {
        fail(&mut chan, os("close descriptors"), 125);
    }
    // 3.
    // SAFETY: setns with a pidfd and namespace flags changes only this process.
    if plan.namespaces != 0 && unsafe { libc::setns(pidfd, plan.namespaces) } != 0 {
        fail(&mut chan, os("join the container's namespaces"), 125);
    }
    // SAFETY: the pidfd is ours (inherited) and used no more.
    unsafe { libc::close(pidfd) };
    // Issue 9: into the container's cgroups before anything is forked.
    if plan.cgroups {
        // SAFETY: getpid has no arguments.
        let pid = unsafe { libc::getpid() };
        if chan.send(&Report::Joined { pid }).is_err() {
            exit(125);
        }
        match chan.recv_opt::<bool>() {
            Ok(Some(true)) => {}
            _ => exit(125),
        }
    }
    // 4.
    let mut gate = [0 as RawFd; 2];
    // SAFETY: pipe2 fills two descriptors.
    if unsafe { libc::pipe2(gate.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        fail(&mut chan, os("pipe"), 125);
    }
    // SAFETY: both ends are fresh descriptors of ours.
    let (gate_r, gate_w) =
        unsafe { (OwnedFd::from_raw_fd(gate[0]), OwnedFd::from_raw_fd(gate[1])) };
    // SAFETY: the child runs `command`, which never returns.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => fail(&mut chan, os("fork into the container"), 125),
        0 => {
            drop(gate_w);
            let mut b = [0u8; 1];
            // Wait until the supervisor knows our pid (end of file).
            // SAFETY: read into a one-byte buffer.
            while unsafe { libc::read(gate_r.as_raw_fd(), b.as_mut_ptr().cast(), 1) } < 0 {}
            drop(gate_r);
            command(plan, &mut chan)
        }
        _ => {}
    }
    drop(gate_r);
    let _ = chan.send(&Report::Started { pid });
    drop(chan);
    drop(gate_w);
    match crate::run::wait_exit(pid) {
        Ok(code) => exit(code),
        Err(_) => exit(125),
    }
}

/// The command's process, inside the container's pid namespace.
fn command(plan: &Plan, chan: &mut Channel) -> ! {
    let failed = |chan: &mut Channel, e: RemoteError| -> ! {
        let code = match e.kind {
            ErrorKind::NotExecutable => 126,
            ErrorKind::CommandNotFound => 127,
            _ => 125,
        };
        fail(chan, e, code)
    };
    // A session of its own: the supervisor forwards the signals of our
    // terminal, which must not reach the command twice.
    // SAFETY: setsid has no arguments; we are not a group leader (fresh child).
    if unsafe { libc::setsid() } < 0 {
        failed(chan, os("start a session"));
    }
    if plan.tty {
        match terminal() {
            Ok(master) => {
                let sent = chan.send_with_fd(&Report::Terminal, std::os::fd::AsFd::as_fd(&master));
                if sent.is_err() {
                    exit(125);
                }
            }
            Err(e) => failed(chan, e),
        }
    }
    if std::env::set_current_dir(&plan.workdir).is_err() {
        failed(
            chan,
            RemoteError::new(
                ErrorKind::NotExecutable,
                format!(
                    "exec: working directory {:?}: {}",
                    plan.workdir,
                    std::io::Error::last_os_error()
                ),
            ),
        );
    }
    let user = match plan
        .security
        .user
        .as_deref()
        .map(tupper_lockdown::user::lookup)
    {
        None => None,
        Some(Ok(u)) => Some(u),
        Some(Err(e)) => failed(chan, e.to_remote()),
    };
    let env = tupper_lockdown::exec::environment(
        &plan.env,
        &plan.hostname,
        user.as_ref().and_then(|u| u.home.as_deref()),
        plan.tty,
    );
    let keep = match tupper_lockdown::begin(&plan.security) {
        Ok(k) => k,
        Err(e) => failed(chan, e.to_remote()),
    };
    reset_signals();
    // Nothing of ours but stdio survives `execve` (the channel is
    // close-on-exec too).
    if close_range(3, u32::MAX, libc::CLOSE_RANGE_CLOEXEC).is_err() {
        failed(chan, os("mark descriptors close-on-exec"));
    }
    if let Err(e) = tupper_lockdown::finish(&keep, user.as_ref(), &plan.security) {
        failed(chan, e.to_remote());
    }
    let (error, code) = tupper_lockdown::exec::exec_command(&plan.command, &env);
    fail(chan, error, code)
}

/// Default dispositions and an empty mask (the supervisor blocks the
/// signals it forwards, and Rust ignores `SIGPIPE`).
fn reset_signals() {
    for sig in 1..=31 {
        if sig != libc::SIGKILL && sig != libc::SIGSTOP {
            // SAFETY: resetting a disposition to the default.
            unsafe { libc::signal(sig, libc::SIG_DFL) };
        }
    }
    // SAFETY: an empty set, applied to this thread (the only one).
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::pthread_sigmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
}

/// A new terminal of the container's devpts as our standard streams and
/// controlling terminal; returns its master. `/dev/ptmx` is the
/// container's: it is opened without blocking and must be a character
/// device, so a FIFO planted there cannot hold us.
fn terminal() -> std::result::Result<OwnedFd, RemoteError> {
    let path = c"/dev/ptmx";
    // SAFETY: open with a NUL-terminated path.
    let fd = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC | libc::O_NONBLOCK,
        )
    };
    if fd < 0 {
        return Err(os("open /dev/ptmx in the container"));
    }
    // SAFETY: a fresh descriptor we own.
    let master = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat into a stat buffer; fcntl and the tty ioctls on our fd.
    unsafe {
        if libc::fstat(fd, &mut st) != 0 || st.st_mode & libc::S_IFMT != libc::S_IFCHR {
            return Err(RemoteError::new(
                ErrorKind::Unsafe,
                "exec: /dev/ptmx in the container is not a terminal multiplexer",
            ));
        }
        libc::fcntl(fd, libc::F_SETFL, libc::O_RDWR);
        let unlock: libc::c_int = 0;
        if libc::ioctl(fd, libc::TIOCSPTLCK, &unlock) < 0 {
            return Err(os("unlock the terminal"));
        }
        let slave = libc::ioctl(fd, libc::TIOCGPTPEER, libc::O_RDWR | libc::O_NOCTTY);
        if slave < 0 {
            return Err(os("open the terminal's slave side"));
        }
        for target in 0..=2 {
            if libc::dup2(slave, target) < 0 {
                return Err(os("make the terminal standard I/O"));
            }
        }
        if slave > 2 {
            libc::close(slave);
        }
        if libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
            return Err(os("make the terminal the controlling terminal"));
        }
    }
    Ok(master)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The joining process is non-dumpable before it does anything else:
    /// a process of the same uid (a container's, after the join) cannot
    /// read its environment or memory. Checked in a forked child, from
    /// the inside (`PR_GET_DUMPABLE`) and, unless we are root (who may
    /// read anyway), from the outside.
    #[test]
    fn the_joining_process_is_not_dumpable() {
        let (mut r, mut w) = std::os::unix::net::UnixStream::pair().unwrap();
        // SAFETY: the child only makes system calls and exits.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let ok = harden().is_ok();
            let _ = std::io::Write::write_all(&mut w, &[ok as u8]);
            let mut b = [0u8; 1];
            let _ = std::io::Read::read(&mut w, &mut b);
            exit(0);
        }
        let mut b = [0u8; 1];
        std::io::Read::read_exact(&mut r, &mut b).unwrap();
        let outside = std::fs::read(format!("/proc/{pid}/environ"));
        std::io::Write::write_all(&mut r, &[0]).unwrap();
        crate::run::wait_exit(pid).unwrap();
        assert_eq!(b[0], 1, "PR_SET_DUMPABLE 0 did not hold");
        if nix::unistd::geteuid().as_raw() != 0 {
            let err = outside.expect_err("the environment of the joining process was readable");
            assert_eq!(err.raw_os_error(), Some(libc::EACCES), "{err}");
        }
    }

    #[test]
    fn our_own_namespaces_are_not_joined() {
        assert_eq!(namespaces_to_join(std::process::id() as i32), 0);
        // A process that does not exist: every namespace, so that setns
        // fails cleanly rather than something being skipped.
        let all = NAMESPACES.iter().fold(0, |f, (n, _)| f | n);
        assert_eq!(namespaces_to_join(i32::MAX), all);
    }

    #[test]
    fn every_descriptor_but_those_kept_is_closed() {
        // SAFETY: the child only makes system calls and exits.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: dup/fcntl on descriptors of this child.
            let a = unsafe { libc::dup(1) };
            let b = unsafe { libc::dup(1) };
            let c = unsafe { libc::dup(1) };
            if close_all_but(&[0, 1, 2, b]).is_err() {
                exit(2);
            }
            let open = |fd| unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0;
            exit(if !open(a) && open(b) && !open(c) {
                0
            } else {
                1
            });
        }
        assert_eq!(crate::run::wait_exit(pid).unwrap(), 0);
    }
}
