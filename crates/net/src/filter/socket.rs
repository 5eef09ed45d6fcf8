//! The `NETLINK_NETFILTER` socket: send one batch, collect one ACK per message.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{SystemTime, UNIX_EPOCH};

use super::nfnl::{encode_batch, parse_acks, Message, NETLINK_NETFILTER};
use super::FilterError;

/// How long to wait for the kernel's answers (it answers while we send; this only bounds a surprise).
const REPLY_TIMEOUT_SECS: libc::time_t = 5;
const SOL_NETLINK: libc::c_int = 270;
const NETLINK_CAP_ACK: libc::c_int = 10;

fn os_err(what: &'static str) -> FilterError {
    FilterError::Socket {
        what,
        source: std::io::Error::last_os_error(),
    }
}

fn setsockopt<T>(fd: &OwnedFd, level: libc::c_int, opt: libc::c_int, v: &T) -> libc::c_int {
    // SAFETY: `v` is a live value of the size we pass.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            opt,
            (v as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    }
}

/// A socket bound in the calling thread's network namespace. The caller raises CAP_NET_ADMIN.
fn open() -> Result<OwnedFd, FilterError> {
    // SAFETY: plain socket(2); the result is checked.
    let raw = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            NETLINK_NETFILTER,
        )
    };
    if raw < 0 {
        return Err(os_err("open a netfilter netlink socket"));
    }
    // SAFETY: `raw` is a new descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // Errors echo only the failing message's header, not the whole batch.
    let one: libc::c_int = 1;
    let _ = setsockopt(&fd, SOL_NETLINK, NETLINK_CAP_ACK, &one);
    let tv = libc::timeval {
        tv_sec: REPLY_TIMEOUT_SECS,
        tv_usec: 0,
    };
    if setsockopt(&fd, libc::SOL_SOCKET, libc::SO_RCVTIMEO, &tv) != 0 {
        return Err(os_err("set the netlink receive timeout"));
    }
    // SAFETY: zeroed sockaddr_nl is valid; pid 0 lets the kernel pick the port id.
    let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    // SAFETY: `sa` is a valid sockaddr_nl of the size given.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sa as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(os_err("bind the netfilter netlink socket"));
    }
    Ok(fd)
}

fn first_seq() -> u32 {
    // Any value works (one socket per batch); a varying one makes stray replies obvious.
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos() & 0x7fff_ffff)
        .unwrap_or(1)
}

/// What the kernel said about one batch.
#[derive(Debug)]
pub enum Outcome {
    Applied,
    /// The first message refused, with its description and errno.
    Refused {
        what: String,
        errno: i32,
    },
}

/// Send `messages` as one batch and wait for the ACK of each.
pub fn transact(messages: &[Message]) -> Result<Outcome, FilterError> {
    let fd = open()?;
    let batch = encode_batch(messages, first_seq());
    // SAFETY: zeroed sockaddr_nl addresses the kernel (pid 0).
    let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    // SAFETY: the buffer and address are valid for the lengths given.
    let sent = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            batch.bytes.as_ptr().cast(),
            batch.bytes.len(),
            0,
            (&kernel as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if sent < 0 {
        return Err(os_err("send an nf_tables batch"));
    }
    if sent as usize != batch.bytes.len() {
        return Err(FilterError::Protocol(
            "the nf_tables batch was sent short".into(),
        ));
    }
    let mut pending: Vec<(u32, String)> = batch.acks.clone();
    let mut buf = vec![0u8; 64 * 1024];
    while !pending.is_empty() {
        // SAFETY: `buf` is valid for its length.
        let n = unsafe {
            libc::recv(
                fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_TRUNC,
            )
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(FilterError::Socket {
                what: "receive the kernel's answer to an nf_tables batch",
                source: e,
            });
        }
        let n = n as usize;
        if n > buf.len() {
            return Err(FilterError::Protocol(
                "an nf_tables answer was truncated".into(),
            ));
        }
        let acks = parse_acks(&buf[..n])
            .ok_or_else(|| FilterError::Protocol("a malformed netlink answer".into()))?;
        for ack in acks {
            if ack.errno != 0 {
                let what = if ack.seq == batch.begin_seq {
                    "apply the batch".to_string()
                } else {
                    batch
                        .acks
                        .iter()
                        .find(|(s, _)| *s == ack.seq)
                        .map(|(_, w)| w.clone())
                        .unwrap_or_else(|| "an unknown message".into())
                };
                return Ok(Outcome::Refused {
                    what,
                    errno: ack.errno,
                });
            }
            pending.retain(|(s, _)| *s != ack.seq);
        }
    }
    Ok(Outcome::Applied)
}
