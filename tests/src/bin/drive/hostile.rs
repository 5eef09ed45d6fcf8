//! `hold-hostile HELPER`: start a helper the way a hostile caller would —
//! core dumps allowed, a working directory of the caller's choosing, signals
//! ignored and blocked, an interval timer armed, standard input closed — and
//! keep it waiting in its handshake so the test can inspect what the helper
//! made of that state. Prints `pid N`, then waits until its own standard
//! input closes, ends the helper (its own child, by pid) and exits.

use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode, Stdio};

pub fn hold(libexec: &str, helper: &str) -> ExitCode {
    let (chan, theirs) = match proto::Channel::pair() {
        Ok(p) => p,
        Err(e) => {
            println!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let fd = theirs.as_raw_fd();
    let mut cmd = Command::new(format!("{libexec}/tupper-{helper}"));
    cmd.stdout(Stdio::null());
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(fd, proto::CONTROL_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // Core dumps as large as the hard limit allows.
            let mut core = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            libc::getrlimit(libc::RLIMIT_CORE, &mut core);
            core.rlim_cur = core.rlim_max;
            libc::setrlimit(libc::RLIMIT_CORE, &core);
            // A working directory of the caller's.
            if libc::chdir(c"/tmp".as_ptr()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // SIGTERM ignored, SIGUSR1 blocked.
            libc::signal(libc::SIGTERM, libc::SIG_IGN);
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGUSR1);
            libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            // SIGALRM in two seconds: interval timers survive execve.
            let timer = libc::itimerval {
                it_interval: libc::timeval {
                    tv_sec: 0,
                    tv_usec: 0,
                },
                it_value: libc::timeval {
                    tv_sec: 2,
                    tv_usec: 0,
                },
            };
            libc::setitimer(libc::ITIMER_REAL, &timer, std::ptr::null_mut());
            // Standard input closed.
            libc::close(0);
            Ok(())
        });
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            println!("error: spawn: {e}");
            return ExitCode::FAILURE;
        }
    };
    drop(theirs);
    println!("pid {}", child.id());
    // Wait for the test to close our standard input.
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    drop(chan);
    let _ = child.kill();
    let _ = child.wait();
    ExitCode::SUCCESS
}
