//! Length-prefixed frames: a little-endian `u32` length, then a bincode payload.
//!
//! The length is checked against [`MAX_FRAME_LEN`] before any buffer is
//! allocated, and the decoder is bounded to the same limit, so a hostile peer
//! cannot make either side allocate more than one frame's worth of memory.

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::{Error, RemoteError, PROTOCOL_VERSION};

/// Largest frame either side accepts or sends (1 MiB).
pub const MAX_FRAME_LEN: u32 = 1 << 20;

/// Largest data chunk carried in one frame (leaves room for the envelope).
pub const MAX_CHUNK_LEN: usize = 512 * 1024;

type Config = bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<{ MAX_FRAME_LEN as usize }>,
>;

fn config() -> Config {
    bincode::config::standard().with_limit::<{ MAX_FRAME_LEN as usize }>()
}

/// Encode a message to its payload bytes (without the length prefix).
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, Error> {
    let bytes =
        bincode::serde::encode_to_vec(msg, config()).map_err(|e| Error::Encode(e.to_string()))?;
    // bincode does not apply the limit when encoding: check it here.
    if bytes.len() > MAX_FRAME_LEN as usize {
        return Err(Error::FrameTooLarge {
            len: bytes.len() as u64,
            max: MAX_FRAME_LEN,
        });
    }
    Ok(bytes)
}

/// Decode a payload; trailing bytes are an error.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    if bytes.len() > MAX_FRAME_LEN as usize {
        return Err(Error::FrameTooLarge {
            len: bytes.len() as u64,
            max: MAX_FRAME_LEN,
        });
    }
    let (msg, used) = bincode::serde::decode_from_slice(bytes, config())
        .map_err(|e| Error::Decode(e.to_string()))?;
    if used != bytes.len() {
        return Err(Error::Decode(format!(
            "{} trailing bytes after the message",
            bytes.len() - used
        )));
    }
    Ok(msg)
}

/// Write one frame.
pub fn write_frame<W: Write, T: Serialize>(w: &mut W, msg: &T) -> Result<(), Error> {
    let payload = encode(msg)?;
    let mut buf = Vec::with_capacity(4 + payload.len());
    buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    buf.extend_from_slice(&payload);
    w.write_all(&buf)?;
    w.flush()?;
    Ok(())
}

/// Read one frame. `Ok(None)` is a clean end of stream at a frame boundary.
pub fn read_frame<R: Read, T: DeserializeOwned>(r: &mut R) -> Result<Option<T>, Error> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r.read(&mut len[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(Error::Decode("stream ended inside a frame header".into())),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        }
    }
    let len = u32::from_le_bytes(len);
    if len > MAX_FRAME_LEN {
        return Err(Error::FrameTooLarge {
            len: len as u64,
            max: MAX_FRAME_LEN,
        });
    }
    let mut payload = vec![0u8; len as usize];
    r.read_exact(&mut payload).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            Error::Decode("stream ended inside a frame".into())
        } else {
            Error::Io(e)
        }
    })?;
    decode(&payload).map(Some)
}

/// The first frame each way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub version: u32,
}

/// One end of a control channel (a Unix stream socket).
#[derive(Debug)]
pub struct Channel {
    stream: UnixStream,
}

impl Channel {
    pub fn new(stream: UnixStream) -> Self {
        Channel { stream }
    }

    /// A connected pair: one end for the supervisor, one for the helper.
    pub fn pair() -> Result<(Channel, UnixStream), Error> {
        let (a, b) = UnixStream::pair()?;
        Ok((Channel::new(a), b))
    }

    /// Take the helper's inherited control descriptor ([`crate::CONTROL_FD`]).
    ///
    /// Fails cleanly when the descriptor is not open or is not a socket, which is
    /// what happens when someone runs a helper by hand.
    pub fn from_inherited() -> Result<Channel, Error> {
        let fd = crate::CONTROL_FD;
        // SAFETY: fstat on an arbitrary descriptor number only reads metadata.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::fstat(fd, &mut st) };
        if rc != 0 || (st.st_mode & libc::S_IFMT) != libc::S_IFSOCK {
            return Err(Error::invalid(
                "control channel",
                "file descriptor 3 is not a socket; helpers are started by tupper-supervisor",
            ));
        }
        // Keep it from leaking into anything the helper executes.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        // SAFETY: the descriptor is open (fstat succeeded) and nothing else owns it.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Channel::new(UnixStream::from(owned)))
    }

    pub fn send<T: Serialize>(&mut self, msg: &T) -> Result<(), Error> {
        write_frame(&mut self.stream, msg)
    }

    /// Receive one message; a closed channel is [`Error::Closed`].
    pub fn recv<T: DeserializeOwned>(&mut self) -> Result<T, Error> {
        read_frame(&mut self.stream)?.ok_or(Error::Closed)
    }

    /// Receive one message, or `None` when the peer closed the channel cleanly.
    pub fn recv_opt<T: DeserializeOwned>(&mut self) -> Result<Option<T>, Error> {
        read_frame(&mut self.stream)
    }

    /// Send our `Hello` and check the peer's.
    pub fn handshake(&mut self) -> Result<(), Error> {
        self.greet()?;
        self.expect_greeting()
    }

    /// The first half of [`Channel::handshake`]: our `Hello`. A supervisor
    /// that starts a helper before it needs it (issue 11) says it at once
    /// and reads the answer with [`Channel::expect_greeting`] when it first
    /// talks to the helper, so the helper's start-up overlaps its own work.
    pub fn greet(&mut self) -> Result<(), Error> {
        self.send(&Hello {
            version: PROTOCOL_VERSION,
        })
    }

    /// The second half of [`Channel::handshake`]: their `Hello`, of our version.
    pub fn expect_greeting(&mut self) -> Result<(), Error> {
        let theirs: Hello = self.recv()?;
        if theirs.version != PROTOCOL_VERSION {
            return Err(Error::VersionMismatch {
                ours: PROTOCOL_VERSION,
                theirs: theirs.version,
            });
        }
        Ok(())
    }

    /// Send a request and wait for its reply, turning a remote error into `Err`.
    pub fn call<Req: Serialize, Rep: DeserializeOwned>(&mut self, req: &Req) -> Result<Rep, Error> {
        self.send(req)?;
        let reply: Result<Rep, RemoteError> = self.recv()?;
        reply.map_err(Error::Remote)
    }

    /// Send a reply (helper side).
    pub fn reply<Rep: Serialize>(&mut self, reply: &Result<Rep, RemoteError>) -> Result<(), Error> {
        self.send(reply)
    }

    /// Send a message with a file descriptor attached (`SCM_RIGHTS`).
    pub fn send_with_fd<T: Serialize>(&mut self, msg: &T, fd: BorrowedFd<'_>) -> Result<(), Error> {
        use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
        let payload = encode(msg)?;
        let mut buf = Vec::with_capacity(4 + payload.len());
        buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        buf.extend_from_slice(&payload);
        let fds = [fd.as_raw_fd()];
        let cmsg = [ControlMessage::ScmRights(&fds)];
        let iov = [std::io::IoSlice::new(&buf)];
        let sent = sendmsg::<()>(
            self.stream.as_raw_fd(),
            &iov,
            &cmsg,
            MsgFlags::empty(),
            None,
        )
        .map_err(|e| Error::Io(e.into()))?;
        // The descriptor went with the first byte; the rest is ordinary data.
        if sent < buf.len() {
            self.stream.write_all(&buf[sent..])?;
        }
        Ok(())
    }

    /// Receive one message and the descriptor attached to it, if any.
    pub fn recv_with_fd<T: DeserializeOwned>(&mut self) -> Result<(T, Option<OwnedFd>), Error> {
        use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
        let mut header = [0u8; 4];
        let mut cmsg_space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let (got, fd) = {
            let mut iov = [std::io::IoSliceMut::new(&mut header)];
            let msg = recvmsg::<()>(
                self.stream.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg_space),
                MsgFlags::MSG_CMSG_CLOEXEC,
            )
            .map_err(|e| Error::Io(e.into()))?;
            let mut fd = None;
            for c in msg.cmsgs().map_err(|e| Error::Io(e.into()))? {
                if let ControlMessageOwned::ScmRights(fds) = c {
                    for raw in fds {
                        // SAFETY: the kernel just installed this descriptor for us.
                        let owned = unsafe { OwnedFd::from_raw_fd(raw) };
                        if fd.is_none() {
                            fd = Some(owned);
                        }
                    }
                }
            }
            (msg.bytes, fd)
        };
        if got == 0 {
            return Err(Error::Closed);
        }
        self.stream.read_exact(&mut header[got..]).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                Error::Decode("stream ended inside a frame header".into())
            } else {
                Error::Io(e)
            }
        })?;
        let mut framed: &[u8] = &header;
        let rest = ChainRead(&mut framed, &mut self.stream);
        let msg = read_frame(&mut { rest })?.ok_or(Error::Closed)?;
        Ok((msg, fd))
    }

    pub fn stream(&self) -> &UnixStream {
        &self.stream
    }

    pub fn into_stream(self) -> UnixStream {
        self.stream
    }
}

/// The already-read header, then the stream.
struct ChainRead<'a, 'b>(&'a mut &'b [u8], &'a mut UnixStream);

impl Read for ChainRead<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if !self.0.is_empty() {
            return self.0.read(buf);
        }
        self.1.read(buf)
    }
}

impl AsFd for Channel {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.stream.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip_over_a_socket() {
        let (mut a, b) = Channel::pair().unwrap();
        let mut b = Channel::new(b);
        let t = std::thread::spawn(move || {
            b.handshake().unwrap();
            let req: StorageRequest = b.recv().unwrap();
            assert_eq!(
                req,
                StorageRequest::Snapshot {
                    image: "busybox".into(),
                    container: "0123abcd".into()
                }
            );
            b.reply::<StorageReply>(&Ok(StorageReply::Done)).unwrap();
        });
        a.handshake().unwrap();
        let rep: StorageReply = a
            .call(&StorageRequest::Snapshot {
                image: "busybox".into(),
                container: "0123abcd".into(),
            })
            .unwrap();
        assert_eq!(rep, StorageReply::Done);
        t.join().unwrap();
    }

    #[test]
    fn a_descriptor_travels_with_its_frame() {
        let (mut a, b) = Channel::pair().unwrap();
        let mut b = Channel::new(b);
        let file = std::fs::File::open("/dev/null").unwrap();
        a.send_with_fd::<Result<NsReply, RemoteError>>(&Ok(NsReply::Terminal), file.as_fd())
            .unwrap();
        a.send::<Result<NsReply, RemoteError>>(&Ok(NsReply::Spawned { pid: 7 }))
            .unwrap();
        let (msg, fd) = b.recv_with_fd::<Result<NsReply, RemoteError>>().unwrap();
        assert_eq!(msg, Ok(NsReply::Terminal));
        let fd = fd.expect("a descriptor");
        let target = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap();
        assert_eq!(target, std::path::Path::new("/dev/null"));
        // Without a descriptor, and the following frame intact.
        let (msg, fd) = b.recv_with_fd::<Result<NsReply, RemoteError>>().unwrap();
        assert_eq!(msg, Ok(NsReply::Spawned { pid: 7 }));
        assert!(fd.is_none());
        drop(a);
        assert!(matches!(b.recv_with_fd::<Hello>(), Err(Error::Closed)));
    }

    #[test]
    fn absurd_length_is_refused_before_allocation() {
        let mut bytes: &[u8] = &[0xff, 0xff, 0xff, 0xff, 1, 2, 3];
        match read_frame::<_, Hello>(&mut bytes) {
            Err(Error::FrameTooLarge { len, .. }) => assert_eq!(len, u32::MAX as u64),
            other => panic!("expected FrameTooLarge, got {other:?}"),
        }
    }

    #[test]
    fn vec_length_inside_a_frame_is_bounded() {
        // A chunk that claims 2^40 bytes inside a small frame must not allocate.
        let mut payload = vec![1u8]; // variant index of ImportChunk
        payload.push(253); // varint u64 marker
        payload.extend_from_slice(&(1u64 << 40).to_le_bytes());
        assert!(decode::<StorageRequest>(&payload).is_err());
    }

    #[test]
    fn version_mismatch_is_reported() {
        let (mut a, b) = Channel::pair().unwrap();
        let mut b = Channel::new(b);
        let t = std::thread::spawn(move || {
            let _: Hello = b.recv().unwrap();
            b.send(&Hello { version: 999 }).unwrap();
        });
        match a.handshake() {
            Err(Error::VersionMismatch { theirs: 999, .. }) => {}
            other => panic!("expected VersionMismatch, got {other:?}"),
        }
        t.join().unwrap();
    }

    #[test]
    fn truncated_frame_is_an_error_not_eof() {
        let mut bytes: &[u8] = &[10, 0, 0, 0, 1, 2];
        assert!(matches!(
            read_frame::<_, Hello>(&mut bytes),
            Err(Error::Decode(_))
        ));
        let mut empty: &[u8] = &[];
        assert!(matches!(read_frame::<_, Hello>(&mut empty), Ok(None)));
    }

    #[test]
    fn oversized_message_is_not_sent() {
        let big = StorageRequest::ImportChunk(vec![0u8; MAX_FRAME_LEN as usize + 1]);
        assert!(matches!(encode(&big), Err(Error::FrameTooLarge { .. })));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
            let _ = decode::<StorageRequest>(&bytes);
            let _ = decode::<NsRequest>(&bytes);
            let _ = decode::<NetRequest>(&bytes);
            let _ = decode::<Result<NsReply, RemoteError>>(&bytes);
            let mut r: &[u8] = &bytes;
            let _ = read_frame::<_, StorageRequest>(&mut r);
        }

        #[test]
        fn arbitrary_frames_never_panic(len in 0u32..64, bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut framed = len.to_le_bytes().to_vec();
            framed.extend_from_slice(&bytes);
            let mut r: &[u8] = &framed;
            let _ = read_frame::<_, NetRequest>(&mut r);
        }

        #[test]
        fn spawn_round_trips(cmd in proptest::collection::vec(".*", 0..8), host in "[a-z]{1,20}") {
            let req = NsRequest::Spawn(Box::new(SpawnRequest {
                container: "abc".into(),
                command: cmd,
                env: vec!["A=B".into()],
                hostname: host,
                workdir: "/".into(),
                tty: false,
                security: Default::default(),
                mounts: vec![],
                read_only_root: false,
            }));
            let bytes = encode(&req).unwrap();
            prop_assert_eq!(decode::<NsRequest>(&bytes).unwrap(), req);
        }
    }
}
