//! `--init`: pid 1 forks the command and stays behind as a reaper. It holds
//! no capabilities and is not dumpable; it forwards the signals sent to it to
//! the command, reaps every process that ends up as its child, and exits
//! with the command's status (128+n when a signal n ended it).

use std::os::fd::{AsFd, AsRawFd};

use proto::{Channel, NsReply};

use super::exit;

/// Signals not forwarded: the kernel's own notifications to pid 1.
fn forwarded(info: &libc::siginfo_t) -> bool {
    // A signal the kernel generated (a terminal's ^C, ^Z, a window change)
    // reached the command's process group itself.
    info.si_signo != libc::SIGCHLD && info.si_code != libc::SI_KERNEL
}

fn status_of(wstatus: libc::c_int) -> Option<i32> {
    if libc::WIFEXITED(wstatus) {
        Some(libc::WEXITSTATUS(wstatus))
    } else if libc::WIFSIGNALED(wstatus) {
        Some(128 + libc::WTERMSIG(wstatus))
    } else {
        None
    }
}

/// Fork; the child runs `exec` (which returns only on failure, with the
/// error already sent), the parent reaps. Never returns.
pub fn run(chan: &mut Channel, exec: impl FnOnce(&mut Channel) -> i32) -> ! {
    // Block everything first, so no SIGCHLD or forwarded signal is lost
    // between the fork and the wait loop.
    // SAFETY: plain signal-mask calls on a zeroed sigset_t.
    let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    unsafe {
        libc::sigfillset(&mut all);
        libc::sigprocmask(libc::SIG_SETMASK, &all, &mut old);
    }
    // SAFETY: the init is single-threaded; the child only unblocks signals
    // and runs the same code the init would have run.
    let child = unsafe { libc::fork() };
    if child < 0 {
        let err = proto::RemoteError::new(
            proto::ErrorKind::System,
            format!("--init: fork: {}", std::io::Error::last_os_error()),
        );
        let _ = chan.reply::<NsReply>(&Err(err));
        exit(super::EXIT_SETUP_FAILED);
    }
    if child == 0 {
        // SAFETY: restoring the mask saved above.
        unsafe { libc::sigprocmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
        exit(exec(chan));
    }
    // The reaper: the control channel belongs to the command now (it is
    // closed on exec, which tells the supervisor the command started).
    // SAFETY: we never use the channel again and leave through _exit.
    unsafe { libc::close(chan.as_fd().as_raw_fd()) };
    if tupper_lockdown::privileges::drop_everything().is_err() {
        // SAFETY: kill our own child.
        unsafe { libc::kill(child, libc::SIGKILL) };
        exit(super::EXIT_SETUP_FAILED);
    }
    loop {
        // SAFETY: info is plain data the kernel fills.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waits for one of the blocked signals.
        let sig = unsafe { libc::sigwaitinfo(&all, &mut info) };
        if sig < 0 {
            continue;
        }
        if sig == libc::SIGCHLD {
            loop {
                let mut wstatus = 0;
                // SAFETY: reaps any child without blocking.
                let pid = unsafe { libc::waitpid(-1, &mut wstatus, libc::WNOHANG) };
                if pid <= 0 {
                    break;
                }
                if pid == child {
                    if let Some(code) = status_of(wstatus) {
                        exit(code);
                    }
                }
            }
        } else if forwarded(&info) {
            // SAFETY: signal our own child.
            unsafe { libc::kill(child, sig) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        assert_eq!(status_of(7 << 8), Some(7));
        assert_eq!(status_of(libc::SIGTERM), Some(128 + 15));
        assert_eq!(status_of(0x7f | (libc::SIGSTOP << 8)), None);
    }
}
