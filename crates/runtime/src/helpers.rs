//! Starting a helper with its control channel on fd 3.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use proto::Channel;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, Result};

/// The four helpers, by the name used in messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Helper {
    Storage,
    Ns,
    Net,
    // Issue 9: cgroups.
    Cgroup,
}

impl Helper {
    /// Every helper, for `doctor` (issue 12): a new helper is one more entry.
    pub const ALL: [Helper; 4] = [Helper::Storage, Helper::Ns, Helper::Net, Helper::Cgroup];

    pub fn name(self) -> &'static str {
        match self {
            Helper::Storage => "storage",
            Helper::Ns => "ns",
            Helper::Net => "net",
            Helper::Cgroup => "cgroup",
        }
    }

    pub(crate) fn binary(self) -> PathBuf {
        PathBuf::from(tupper_config::system::LIBEXECDIR).join(format!("tupper-{}", self.name()))
    }
}

/// Standard streams for a helper (the ns helper's become the container's).
pub struct HelperStdio {
    pub stdin: Stdio,
    pub stdout: Stdio,
    pub stderr: Stdio,
}

impl Default for HelperStdio {
    fn default() -> Self {
        HelperStdio {
            stdin: Stdio::null(),
            stdout: Stdio::null(),
            stderr: Stdio::inherit(),
        }
    }
}

/// A running helper and our end of its channel.
pub struct HelperProcess {
    pub helper: Helper,
    /// `None` only after [`HelperProcess::into_channel`] took it.
    channel: Option<Channel>,
    /// Whether the helper's `Hello` was read (see [`HelperProcess::start`]).
    greeted: bool,
    /// `None` only once reaped or let go (see `Drop`).
    child: Option<Child>,
}

impl HelperProcess {
    /// Start a helper and greet it, ready for requests.
    pub fn spawn(helper: Helper, stdio: HelperStdio) -> Result<HelperProcess> {
        let mut p = HelperProcess::start(helper, stdio)?;
        p.channel()?;
        Ok(p)
    }

    /// Issue 11: start a helper and say our `Hello` without waiting for its
    /// answer, which is read when we first talk to it: its start-up (exec,
    /// the helper runtime's hygiene) runs while we do something else.
    pub fn start(helper: Helper, stdio: HelperStdio) -> Result<HelperProcess> {
        let mut cmd = Command::new(helper.binary());
        cmd.env_clear()
            .stdin(stdio.stdin)
            .stdout(stdio.stdout)
            .stderr(stdio.stderr);
        let (mut channel, child) =
            proto::spawn::spawn_with_channel(&mut cmd).map_err(|e| match e {
                proto::Error::Io(e) => Error::io(
                    format!("cannot start helper {}", helper.binary().display()),
                    e,
                ),
                e => wrap(helper, e),
            })?;
        channel.greet().map_err(|e| wrap(helper, e))?;
        Ok(HelperProcess {
            helper,
            channel: Some(channel),
            greeted: false,
            child: Some(child),
        })
    }

    /// The channel to send on: a request may follow our `Hello` before the
    /// helper's answer came (it reads them in order).
    fn outgoing(&mut self) -> Result<&mut Channel> {
        let helper = self.helper;
        self.channel
            .as_mut()
            .ok_or_else(|| wrap(helper, proto::Error::Closed))
    }

    /// The channel, once the helper's `Hello` was read and checked.
    fn channel(&mut self) -> Result<&mut Channel> {
        let helper = self.helper;
        let channel = self
            .channel
            .as_mut()
            .ok_or_else(|| wrap(helper, proto::Error::Closed))?;
        if !self.greeted {
            channel.expect_greeting().map_err(|e| wrap(helper, e))?;
            self.greeted = true;
        }
        Ok(channel)
    }

    /// One request, one reply.
    pub fn call<Req: Serialize, Rep: DeserializeOwned>(&mut self, req: &Req) -> Result<Rep> {
        let helper = self.helper;
        self.channel()?.call(req).map_err(|e| wrap(helper, e))
    }

    pub fn send<Req: Serialize>(&mut self, req: &Req) -> Result<()> {
        let helper = self.helper;
        self.outgoing()?.send(req).map_err(|e| wrap(helper, e))
    }

    /// Issue 11: one frame with a descriptor (SCM_RIGHTS).
    pub fn send_with_fd<Req: Serialize>(
        &mut self,
        req: &Req,
        fd: std::os::fd::BorrowedFd<'_>,
    ) -> Result<()> {
        let helper = self.helper;
        self.outgoing()?
            .send_with_fd(req, fd)
            .map_err(|e| wrap(helper, e))
    }

    /// Issue 9: read one frame and the descriptor that came with it.
    pub fn recv_with_fd<T: DeserializeOwned>(
        &mut self,
    ) -> Result<(T, Option<std::os::fd::OwnedFd>)> {
        let helper = self.helper;
        self.channel()?.recv_with_fd().map_err(|e| wrap(helper, e))
    }

    /// Read the reply to a request sent earlier with [`HelperProcess::send`].
    pub fn recv_reply<Rep: DeserializeOwned>(&mut self) -> Result<Rep> {
        let helper = self.helper;
        let reply: std::result::Result<Rep, proto::RemoteError> =
            self.channel()?.recv().map_err(|e| wrap(helper, e))?;
        reply.map_err(|r| wrap(helper, proto::Error::Remote(r)))
    }

    /// Issue 11: close our end of the channel, which a forked process of
    /// ours goes on using (the helper stays our child, reaped as any other
    /// let go: it ends when that process is done with it).
    pub fn hand_over(&mut self) {
        self.channel = None;
    }

    /// Wait for the helper to exit and keep our end of the channel: the
    /// container init started by the ns helper goes on talking on it.
    pub fn into_channel(mut self) -> Result<Channel> {
        let waited = match self.child.take() {
            Some(mut child) => child.wait(),
            None => Err(std::io::Error::from_raw_os_error(libc::ECHILD)),
        };
        let status = waited
            .map_err(|e| Error::io(format!("waiting for the {} helper", self.helper.name()), e))?;
        if !status.success() {
            return Err(Error::user(format!(
                "{} helper failed ({status})",
                self.helper.name()
            )));
        }
        let helper = self.helper;
        self.channel
            .take()
            .ok_or_else(|| wrap(helper, proto::Error::Closed))
    }
}

impl Drop for HelperProcess {
    fn drop(&mut self) {
        // Close the channel first: the helper exits when it sees the end of it.
        drop(self.channel.take());
        // Issue 11: its exit is not waited for here (a helper's exit can
        // take milliseconds: sockets closed after nf_tables work wait for
        // the kernel); it is reaped by `reap_finished`, or its zombie by
        // whoever reaps this process's children when it ends.
        if let Some(mut child) = self.child.take() {
            if let Ok(None) = child.try_wait() {
                if let Ok(mut pending) = ENDING.lock() {
                    pending.push(child);
                }
            }
        }
    }
}

/// Helpers whose channel was closed and that may still be exiting.
static ENDING: std::sync::Mutex<Vec<Child>> = std::sync::Mutex::new(Vec::new());

/// Reap the helpers let go so far: those that ended, or with `wait` all of
/// them (the monitor reaps as it goes, and waits once it is done). Whether
/// none is left.
pub fn reap_finished(wait: bool) -> bool {
    let Ok(mut pending) = ENDING.lock() else {
        return true;
    };
    pending.retain_mut(|child| {
        if wait {
            let _ = child.wait();
            false
        } else {
            matches!(child.try_wait(), Ok(None))
        }
    });
    pending.is_empty()
}

pub fn wrap(helper: Helper, source: proto::Error) -> Error {
    Error::Helper {
        helper: helper.name(),
        source,
    }
}

/// Spawn a helper, make one call, and let it go.
pub fn call_once<Req: Serialize, Rep: DeserializeOwned>(helper: Helper, req: &Req) -> Result<Rep> {
    let mut p = HelperProcess::spawn(helper, HelperStdio::default())?;
    p.call(req)
}
