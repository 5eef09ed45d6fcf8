//! Process hygiene every helper performs before it reads a request
//! (moved here from `proto::helper`, same behaviour).

use crate::Error;

/// Who asked: the real ids of the helper process. The type stays in
/// `proto` (its id policy, `subid` and `policy`, and the supervisor use it);
/// re-exported here so a helper needs one import.
pub use proto::Caller;

/// What the start-up hygiene keeps of the caller's process state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CoreLimit {
    /// `RLIMIT_CORE` 0, soft and hard: nothing this process or a child of it
    /// runs can ever dump core (the default for every helper).
    Zero,
    /// Soft limit 0, the caller's hard limit kept, so that a container init
    /// (which runs the caller's code in its own user namespace) can be given
    /// the caller's soft limit back just before it executes the command.
    /// The helper itself stays non-dumpable, so it still never dumps.
    SoftZero,
}

/// The caller's soft resource limits as they were when the helper started
/// (the helper raises them; a container init gets them back before it
/// executes the caller's command).
#[derive(Debug, Clone, Default)]
pub struct CallerLimits(Vec<(libc::__rlimit_resource_t, u64)>);

impl CallerLimits {
    /// Set each soft limit back to the caller's, never above the current
    /// hard limit. Failures are ignored: a limit left higher is the one the
    /// helper ran with.
    pub fn restore_soft_limits(&self) {
        for (resource, soft) in &self.0 {
            if let Ok(now) = get_limit(*resource) {
                let soft = (*soft).min(now.rlim_max);
                let _ = set_limit(*resource, soft, now.rlim_max);
            }
        }
    }
}

/// Every helper's start-up, before it reads a request. The caller controls
/// all the process state a helper inherits; none of it may change what the
/// helper does with its capabilities, so each piece is reset or checked:
///
/// 1. signal dispositions back to their defaults (`SIGPIPE` and `SIGXFSZ`
///    ignored, so a closed channel or a file size limit is an error return,
///    not a death half-way), an empty signal mask, interval timers cancelled
///    (they survive `execve`: a pending `SIGALRM` would kill us mid-way);
/// 2. not dumpable and `RLIMIT_CORE` 0: no core file is ever written, in any
///    directory, and `/proc/<pid>` of the helper belongs to root;
/// 3. descriptors 0–2 open (on `/dev/null` when the caller closed them, so
///    no file the helper opens can become "standard error"), every descriptor
///    above the control channel closed;
/// 4. resource limits: soft limits raised to the hard ones, and a caller
///    whose hard limits are too low for a helper to finish (CPU time, file
///    size, address space, open files, stack) is refused before anything is
///    done; see [`check_limits`];
/// 5. environment cleared (`PATH` set), umask 022, working directory `/`.
///
/// A caller can still stop, kill or `prlimit` a helper it started at any
/// moment (same uid): every helper's state changes are therefore atomic
/// (write a temporary, rename) and never depend on finishing.
pub fn sanitize_process() -> Result<Caller, Error> {
    sanitize_process_with(CoreLimit::Zero).map(|(caller, _)| caller)
}

/// [`sanitize_process`] with a choice of core limit; returns the caller's
/// original soft limits too.
pub fn sanitize_process_with(core: CoreLimit) -> Result<(Caller, CallerLimits), Error> {
    let mut original = Vec::new();
    for resource in REQUIRED_LIMITS
        .iter()
        .map(|(r, _, _)| *r)
        .chain([libc::RLIMIT_CORE])
    {
        original.push((resource, get_limit(resource)?.rlim_cur));
    }
    reset_signals();
    cancel_interval_timers();
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0 as libc::c_ulong, 0, 0, 0) } != 0 {
        return Err(refused("cannot make the helper non-dumpable"));
    }
    let caller_core = get_limit(libc::RLIMIT_CORE)?;
    let hard = match core {
        CoreLimit::Zero => 0,
        CoreLimit::SoftZero => caller_core.rlim_max,
    };
    set_limit(libc::RLIMIT_CORE, 0, hard)?;
    open_standard_descriptors()?;
    close_fds_from(proto::CONTROL_FD + 1)?;
    check_limits()?;
    let keys: Vec<_> = std::env::vars_os().map(|(k, _)| k).collect();
    for k in keys {
        std::env::remove_var(k);
    }
    std::env::set_var("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
    // SAFETY: umask cannot fail.
    unsafe { libc::umask(0o022) };
    std::env::set_current_dir("/").map_err(|e| refused(&format!("cannot enter /: {e}")))?;
    Ok((Caller::current(), CallerLimits(original)))
}

fn refused(why: &str) -> Error {
    Error::StartUp(why.to_string())
}

/// The kernel's `struct sigaction` on Linux (x86_64 and aarch64).
#[repr(C)]
struct KernelSigaction {
    handler: usize,
    flags: libc::c_ulong,
    restorer: usize,
    mask: u64,
}

/// Every signal to its default disposition (`ignored` for those in
/// `ignore`), and an empty signal mask. Raw `rt_sigaction`, because libc
/// refuses the signals it reserves for itself; SIGKILL and SIGSTOP cannot be
/// changed and are skipped.
pub fn reset_signals_except(ignore: &[libc::c_int]) {
    for sig in 1..=64 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        let action = KernelSigaction {
            handler: if ignore.contains(&sig) {
                libc::SIG_IGN
            } else {
                libc::SIG_DFL
            },
            flags: 0,
            restorer: 0,
            mask: 0,
        };
        // SAFETY: a valid kernel sigaction; failures for reserved numbers are harmless.
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                &action as *const KernelSigaction,
                std::ptr::null_mut::<KernelSigaction>(),
                8usize,
            );
        }
    }
    let empty: u64 = 0;
    // SAFETY: a valid 8-byte signal set.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &empty as *const u64,
            std::ptr::null_mut::<u64>(),
            8usize,
        );
    }
}

/// A helper's dispositions: defaults, but write errors come back as errors.
fn reset_signals() {
    reset_signals_except(&[libc::SIGPIPE, libc::SIGXFSZ]);
}

fn cancel_interval_timers() {
    let zero = libc::itimerval {
        it_interval: libc::timeval {
            tv_sec: 0,
            tv_usec: 0,
        },
        it_value: libc::timeval {
            tv_sec: 0,
            tv_usec: 0,
        },
    };
    for which in [libc::ITIMER_REAL, libc::ITIMER_VIRTUAL, libc::ITIMER_PROF] {
        // SAFETY: a valid itimerval; the old value is not wanted.
        unsafe { libc::setitimer(which, &zero, std::ptr::null_mut()) };
    }
}

/// Open `/dev/null` on each of descriptors 0, 1 and 2 that is closed.
fn open_standard_descriptors() -> Result<(), Error> {
    for fd in 0..=2 {
        // SAFETY: F_GETFD only inspects the descriptor table.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0 {
            continue;
        }
        // SAFETY: open of a constant path; the result is checked below.
        let null = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) };
        if null < 0 {
            return Err(refused("cannot open /dev/null"));
        }
        if null != fd {
            // SAFETY: dup2 onto the missing standard descriptor, then close the spare.
            let ok = unsafe { libc::dup2(null, fd) } == fd;
            unsafe { libc::close(null) };
            if !ok {
                return Err(refused("cannot reopen the standard descriptors"));
            }
        }
    }
    Ok(())
}

fn get_limit(resource: libc::__rlimit_resource_t) -> Result<libc::rlimit, Error> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit.
    if unsafe { libc::getrlimit(resource, &mut lim) } != 0 {
        return Err(Error::Sys {
            what: "read a resource limit",
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(lim)
}

fn set_limit(resource: libc::__rlimit_resource_t, soft: u64, hard: u64) -> Result<(), Error> {
    let lim = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: setrlimit reads one rlimit.
    if unsafe { libc::setrlimit(resource, &lim) } != 0 {
        return Err(refused(&format!(
            "cannot set a resource limit: {}",
            std::io::Error::last_os_error()
        )));
    }
    Ok(())
}

/// The least hard limit each resource must allow for a helper to finish
/// what it starts, with the name `ulimit` and `prlimit` use for it.
/// `None` means unlimited.
pub const REQUIRED_LIMITS: [(libc::__rlimit_resource_t, &str, Option<u64>); 7] = [
    (libc::RLIMIT_CPU, "cpu time (ulimit -t)", None),
    (libc::RLIMIT_FSIZE, "file size (ulimit -f)", None),
    (libc::RLIMIT_AS, "address space (ulimit -v)", Some(1 << 30)),
    (libc::RLIMIT_DATA, "data size (ulimit -d)", Some(1 << 30)),
    (libc::RLIMIT_STACK, "stack size (ulimit -s)", Some(8 << 20)),
    (libc::RLIMIT_NOFILE, "open files (ulimit -n)", Some(256)),
    (libc::RLIMIT_NPROC, "processes (ulimit -u)", Some(64)),
];

/// The first limit in [`REQUIRED_LIMITS`] that `hard` does not meet.
pub fn limit_too_low(resource: libc::__rlimit_resource_t, hard: u64) -> Option<String> {
    let (_, name, need) = REQUIRED_LIMITS.iter().find(|(r, _, _)| *r == resource)?;
    let ok = match need {
        None => hard == libc::RLIM_INFINITY,
        Some(n) => hard == libc::RLIM_INFINITY || hard >= *n,
    };
    if ok {
        return None;
    }
    let want = need.map_or("unlimited".to_string(), |n| format!("at least {n}"));
    Some(format!(
        "the hard resource limit on {name} is {hard}; tupperware's helpers need {want} to finish \
         what they start: raise it (or start from a login shell with the default limits)"
    ))
}

/// Raise every soft limit to its hard limit (so a caller cannot make a
/// helper fail half-way with a low soft limit) and refuse when a hard limit
/// is below what a helper needs.
fn check_limits() -> Result<(), Error> {
    for (resource, _, _) in REQUIRED_LIMITS {
        let lim = get_limit(resource)?;
        if let Some(why) = limit_too_low(resource, lim.rlim_max) {
            return Err(refused(&why));
        }
        if lim.rlim_cur != lim.rlim_max {
            set_limit(resource, lim.rlim_max, lim.rlim_max)?;
        }
    }
    Ok(())
}

/// Close every descriptor numbered `first` or above.
pub fn close_fds_from(first: i32) -> Result<(), Error> {
    // SAFETY: close_range only closes descriptors; none above `first` is owned
    // by Rust code at this point of a helper's start-up.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            libc::c_uint::MAX,
            0,
        )
    };
    if rc != 0 {
        return Err(Error::Sys {
            what: "close inherited descriptors",
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn required_limits() {
        assert!(limit_too_low(libc::RLIMIT_CPU, libc::RLIM_INFINITY).is_none());
        let msg = limit_too_low(libc::RLIMIT_CPU, 10).expect("10 s of cpu is too low");
        assert!(msg.contains("cpu time (ulimit -t) is 10"), "{msg}");
        assert!(msg.contains("need unlimited"), "{msg}");
        assert!(limit_too_low(libc::RLIMIT_FSIZE, 1 << 40).is_some());
        assert!(limit_too_low(libc::RLIMIT_NOFILE, 1024).is_none());
        assert!(limit_too_low(libc::RLIMIT_NOFILE, 16).is_some());
        assert!(limit_too_low(libc::RLIMIT_STACK, libc::RLIM_INFINITY).is_none());
        assert!(limit_too_low(libc::RLIMIT_STACK, 64 << 10).is_some());
        // Resources not listed are not checked.
        assert!(limit_too_low(libc::RLIMIT_MEMLOCK, 0).is_none());
    }
}
