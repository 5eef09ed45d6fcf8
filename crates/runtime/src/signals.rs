//! Signals reach the container: the supervisor blocks the signals it forwards
//! and a dedicated thread receives them with `sigwait`.

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};

use nix::sys::signal::{SigSet, SigmaskHow, Signal};

use crate::error::{Error, Result};
use crate::process::PidFd;

const FORWARDED: [Signal; 7] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

#[derive(Default)]
struct Target {
    container: Option<PidFd>,
    /// Called when our window size changes (the attached terminal follows it).
    on_resize: Option<Box<dyn Fn() + Send>>,
}

/// Handle on the forwarding thread.
#[derive(Clone)]
pub struct Signals {
    target: Arc<Mutex<Target>>,
    /// A signal that arrived before there was a container to forward it to.
    pending: Arc<AtomicI32>,
    /// Interrupts forwarded so far: a PID 1 without a handler ignores them.
    interrupts: Arc<AtomicI32>,
}

/// After this many interrupts (Ctrl-C) the container is killed.
const INTERRUPTS_BEFORE_KILL: i32 = 3;

impl Signals {
    /// Block the forwarded signals in this thread (and every thread started
    /// after) and start the forwarding thread. Call before starting threads.
    pub fn install() -> Result<Signals> {
        let mut set = SigSet::empty();
        for s in FORWARDED {
            set.add(s);
        }
        nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None)
            .map_err(|e| Error::io("block signals", e.into()))?;
        let signals = Signals {
            target: Arc::new(Mutex::new(Target::default())),
            pending: Arc::new(AtomicI32::new(0)),
            interrupts: Arc::new(AtomicI32::new(0)),
        };
        let s = signals.clone();
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || loop {
                let Ok(sig) = set.wait() else { continue };
                s.deliver(sig);
            })
            .map_err(|e| Error::io("start the signal thread", e))?;
        Ok(signals)
    }

    fn deliver(&self, sig: Signal) {
        let Ok(target) = self.target.lock() else {
            return;
        };
        if sig == Signal::SIGWINCH {
            if let Some(f) = &target.on_resize {
                f();
            }
            return;
        }
        match &target.container {
            Some(pidfd) => {
                let _ = pidfd.signal(sig as i32);
                if sig == Signal::SIGINT
                    && self.interrupts.fetch_add(1, Ordering::SeqCst) + 1 >= INTERRUPTS_BEFORE_KILL
                {
                    eprintln!(
                        "tupper: interrupted {INTERRUPTS_BEFORE_KILL} times: killing the container"
                    );
                    let _ = pidfd.signal(libc::SIGKILL);
                }
            }
            None => self.pending.store(sig as i32, Ordering::SeqCst),
        }
    }

    pub fn forward_to(&self, pidfd: PidFd) {
        if let Ok(mut t) = self.target.lock() {
            t.container = Some(pidfd);
        }
    }

    pub fn on_window_change(&self, f: Box<dyn Fn() + Send>) {
        if let Ok(mut t) = self.target.lock() {
            t.on_resize = Some(f);
        }
    }

    pub fn stop_forwarding(&self) {
        if let Ok(mut t) = self.target.lock() {
            *t = Target::default();
        }
    }

    /// A terminating signal received while there was no container yet.
    pub fn pending(&self) -> Option<i32> {
        match self.pending.load(Ordering::SeqCst) {
            0 => None,
            s => Some(s),
        }
    }
}
