//! The `NETLINK_NETFILTER` socket: send one batch, collect one ACK per message;
//! and dumps (`GET…` requests) for reading what a table holds.
//!
//! Issue 11: one socket per helper invocation and network namespace. Closing
//! a netfilter socket after a batch that deleted something waits for the
//! kernel's RCU grace period (nf_tables frees deleted objects in a work item
//! the socket's release flushes): with one socket kept open until the helper
//! exits, an invocation pays that wait at most once, however many batches it
//! sends. Sequence numbers keep growing on the shared socket, and answers to
//! another request (left unread after an early refusal) are skipped.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use super::nfnl::{encode_batch, parse_acks, parse_messages, Message, NETLINK_NETFILTER};
use super::nfnl::{NFNL_SUBSYS_NFTABLES, NLMSG_DONE, NLMSG_ERROR, NLM_F_DUMP, NLM_F_REQUEST};
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
    // Any start works; a varying one makes stray replies obvious.
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

/// The socket shared by this process's requests in one network namespace.
struct Shared {
    fd: OwnedFd,
    /// `(st_dev, st_ino)` of the network namespace it was opened in.
    netns: (u64, u64),
    next_seq: u32,
}

static SHARED: Mutex<Option<Shared>> = Mutex::new(None);

/// The calling thread's network namespace, `None` if it cannot be told.
fn thread_netns() -> Option<(u64, u64)> {
    let md = std::fs::metadata("/proc/thread-self/ns/net").ok()?;
    use std::os::unix::fs::MetadataExt;
    Some((md.dev(), md.ino()))
}

/// Run `f` with the shared socket of the calling thread's network namespace
/// (opened on first use; the caller raises CAP_NET_ADMIN) and the next free
/// sequence number. A socket that failed is dropped, not reused; a thread in
/// a namespace that cannot be told gets a socket of its own.
fn with_socket<T>(
    f: impl FnOnce(&OwnedFd, &mut u32) -> Result<T, FilterError>,
) -> Result<T, FilterError> {
    let Some(netns) = thread_netns() else {
        let fd = open()?;
        let mut seq = first_seq();
        return f(&fd, &mut seq);
    };
    let mut guard = SHARED.lock().unwrap_or_else(|p| p.into_inner());
    let reusable = guard.as_ref().is_some_and(|s| s.netns == netns);
    if !reusable {
        *guard = Some(Shared {
            fd: open()?,
            netns,
            next_seq: first_seq(),
        });
    }
    let Some(shared) = guard.as_mut() else {
        return Err(FilterError::Protocol("no netfilter socket".into()));
    };
    let out = f(&shared.fd, &mut shared.next_seq);
    if out.is_err() {
        *guard = None;
    }
    out
}

/// Whether `seq` lies in `[first, first + count)` (wrapping).
fn in_range(seq: u32, first: u32, count: u32) -> bool {
    seq.wrapping_sub(first) < count
}

fn send(fd: &OwnedFd, bytes: &[u8]) -> Result<(), FilterError> {
    // SAFETY: zeroed sockaddr_nl addresses the kernel (pid 0).
    let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    // SAFETY: the buffer and address are valid for the lengths given.
    let sent = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            bytes.as_ptr().cast(),
            bytes.len(),
            0,
            (&kernel as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if sent < 0 {
        return Err(os_err("send an nf_tables request"));
    }
    if sent as usize != bytes.len() {
        return Err(FilterError::Protocol(
            "the nf_tables request was sent short".into(),
        ));
    }
    Ok(())
}

/// One datagram of answers into `buf`; its length.
fn receive(fd: &OwnedFd, buf: &mut [u8]) -> Result<usize, FilterError> {
    loop {
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
                what: "receive the kernel's answer to an nf_tables request",
                source: e,
            });
        }
        let n = n as usize;
        if n > buf.len() {
            return Err(FilterError::Protocol(
                "an nf_tables answer was truncated".into(),
            ));
        }
        return Ok(n);
    }
}

/// At most this many answers to one dump (a table of ours holds a few dozen).
const MAX_DUMP_ITEMS: usize = 65_536;

/// A `GET…` dump of nf_tables message type `ty` (e.g. `NFT_MSG_GETRULE`) for
/// `family`, with `attrs` as its filter: the family and attribute bytes of
/// each answer, in the kernel's order.
pub fn dump(ty: u16, family: u8, attrs: &[u8]) -> Result<Vec<(u8, Vec<u8>)>, FilterError> {
    with_socket(|fd, next_seq| {
        let seq = *next_seq;
        *next_seq = seq.wrapping_add(1);
        let mut req = Vec::new();
        super::nfnl::push_message(
            &mut req,
            (NFNL_SUBSYS_NFTABLES << 8) | ty,
            NLM_F_REQUEST | NLM_F_DUMP,
            seq,
            family,
            0,
            attrs,
        );
        send(fd, &req)?;
        let mut out = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = receive(fd, &mut buf)?;
            let msgs = parse_messages(&buf[..n])
                .ok_or_else(|| FilterError::Protocol("a malformed netlink answer".into()))?;
            for m in msgs {
                if m.seq != seq {
                    continue; // an answer to an earlier request
                }
                match m.ty {
                    NLMSG_DONE => return Ok(out),
                    NLMSG_ERROR => {
                        let code = m
                            .payload
                            .get(0..4)
                            .and_then(|b| b.try_into().ok())
                            .map(i32::from_ne_bytes)
                            .unwrap_or(-libc::EPROTO);
                        if code == 0 {
                            continue;
                        }
                        return Err(FilterError::Socket {
                            what: "dump nf_tables objects",
                            source: std::io::Error::from_raw_os_error(
                                code.checked_neg().unwrap_or(libc::EPROTO),
                            ),
                        });
                    }
                    _ => {
                        // struct nfgenmsg, then the attributes.
                        let Some(family) = m.payload.first().copied() else {
                            return Err(FilterError::Protocol("a short nf_tables answer".into()));
                        };
                        if out.len() >= MAX_DUMP_ITEMS {
                            return Err(FilterError::Protocol(
                                "an nf_tables dump too large".into(),
                            ));
                        }
                        out.push((family, m.payload.get(4..).unwrap_or(&[]).to_vec()));
                    }
                }
            }
        }
    })
}

/// Send `messages` as one batch and wait for the ACK of each.
pub fn transact(messages: &[Message]) -> Result<Outcome, FilterError> {
    with_socket(|fd, next_seq| {
        let begin = *next_seq;
        // BATCH_BEGIN, the messages, BATCH_END.
        let count = messages.len() as u32 + 2;
        *next_seq = begin.wrapping_add(count);
        transact_on(fd, messages, begin, count)
    })
}

fn transact_on(
    fd: &OwnedFd,
    messages: &[Message],
    begin: u32,
    count: u32,
) -> Result<Outcome, FilterError> {
    let batch = encode_batch(messages, begin);
    send(fd, &batch.bytes)?;
    let mut pending: Vec<(u32, String)> = batch.acks.clone();
    let mut buf = vec![0u8; 64 * 1024];
    while !pending.is_empty() {
        let n = receive(fd, &mut buf)?;
        let acks = parse_acks(&buf[..n])
            .ok_or_else(|| FilterError::Protocol("a malformed netlink answer".into()))?;
        for ack in acks {
            if !in_range(ack.seq, begin, count) {
                continue; // left unread by an earlier request on this socket
            }
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

#[cfg(test)]
mod tests {
    use super::in_range;

    #[test]
    fn sequence_ranges_wrap() {
        assert!(in_range(5, 5, 3));
        assert!(in_range(7, 5, 3));
        assert!(!in_range(8, 5, 3));
        assert!(!in_range(4, 5, 3));
        assert!(in_range(1, u32::MAX, 3));
        assert!(!in_range(2, u32::MAX, 3));
    }
}
