//! The serve loop every helper runs: handshake, then for each request:
//! decode (bounded, by `proto`) → handle → reply.

use proto::{Channel, ErrorKind, RemoteError};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{Error, ToRemote};

/// What a session did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Served {
    /// Requests answered.
    pub requests: u64,
    /// Of those, answered with an error.
    pub failed: u64,
}

/// Serve requests until the supervisor closes the channel.
///
/// 1. Handshake (a version mismatch ends the session with an error).
/// 2. Read one request; a clean close at a frame boundary ends the session
///    with `Ok`. A frame that cannot be decoded (too large, malformed) is
///    answered once with a `Protocol` error and ends the session.
/// 3. `handler(channel, request)`; it gets the channel too, for requests
///    that stream more frames (an import) or pass it on (the container init).
/// 4. Reply `Ok(reply)` or `Err(error.to_remote())`. An error whose
///    [`ToRemote::channel_closed`] is true is not answered (nobody listens)
///    and ends the session; an error of kind `Protocol` is answered and ends
///    the session (the peer's framing can no longer be trusted).
pub fn serve<Req, Rep, E, H>(channel: &mut Channel, handler: H) -> Result<Served, Error>
where
    Req: DeserializeOwned,
    Rep: Serialize,
    E: ToRemote,
    H: FnMut(&mut Channel, Req) -> Result<Rep, E>,
{
    session(channel, None, handler)
}

/// [`serve`] for exactly one request (`tupper-ns`: its one `Spawn`; the
/// channel then belongs to the container init, and nothing more may be read
/// from it here). A close before the request is an error.
pub fn serve_one<Req, Rep, E, H>(channel: &mut Channel, handler: H) -> Result<Served, Error>
where
    Req: DeserializeOwned,
    Rep: Serialize,
    E: ToRemote,
    H: FnMut(&mut Channel, Req) -> Result<Rep, E>,
{
    let served = session(channel, Some(1), handler)?;
    if served.requests == 0 {
        return Err(Error::Channel {
            what: "waiting for the request",
            source: proto::Error::Closed,
        });
    }
    Ok(served)
}

fn session<Req, Rep, E, H>(
    channel: &mut Channel,
    limit: Option<u64>,
    mut handler: H,
) -> Result<Served, Error>
where
    Req: DeserializeOwned,
    Rep: Serialize,
    E: ToRemote,
    H: FnMut(&mut Channel, Req) -> Result<Rep, E>,
{
    channel.handshake().map_err(|source| Error::Channel {
        what: "handshake",
        source,
    })?;
    let mut served = Served::default();
    loop {
        if limit == Some(served.requests) {
            break;
        }
        let request = match channel.recv_opt::<Req>() {
            Ok(Some(request)) => request,
            Ok(None) => break,
            Err(source) => {
                // Answered once, for the supervisor's log; then we stop.
                let _ = channel.reply::<Rep>(&Err(source.to_remote()));
                return Err(Error::Channel {
                    what: "reading a request",
                    source,
                });
            }
        };
        let reply: Result<Rep, RemoteError> = match handler(channel, request) {
            Ok(rep) => Ok(rep),
            Err(e) if e.channel_closed() => {
                return Err(Error::ChannelLost(e.to_remote().message));
            }
            Err(e) => Err(e.to_remote()),
        };
        served.requests += 1;
        channel.reply(&reply).map_err(|source| Error::Channel {
            what: "sending a reply",
            source,
        })?;
        if let Err(remote) = reply {
            served.failed += 1;
            if remote.kind == ErrorKind::Protocol {
                return Err(Error::Protocol(remote));
            }
        }
    }
    Ok(served)
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::unix::net::UnixStream;
    use std::thread::JoinHandle;

    use proto::frame::Hello;

    use super::*;

    type Reply = Result<u32, RemoteError>;

    /// The helper's end, and a supervisor thread driving the other end.
    fn pair<F>(supervisor: F) -> (Channel, JoinHandle<()>)
    where
        F: FnOnce(Channel) + Send + 'static,
    {
        let (helper, sup) = timed_pair();
        let t = std::thread::spawn(move || {
            let mut sup = Channel::new(sup);
            sup.handshake().unwrap();
            supervisor(sup)
        });
        (helper, t)
    }

    /// A broken sequence (a missing handshake, a missing reply) fails the
    /// test instead of hanging it.
    fn timed_pair() -> (Channel, UnixStream) {
        let (helper, sup) = Channel::pair().unwrap();
        let limit = Some(std::time::Duration::from_secs(10));
        helper.stream().set_read_timeout(limit).unwrap();
        sup.set_read_timeout(limit).unwrap();
        (helper, sup)
    }

    /// The helper closed its end without answering (a close with our
    /// request unread is a connection reset on a Unix socket).
    fn no_reply(r: Result<Reply, proto::Error>) {
        match r {
            Err(proto::Error::Closed) => {}
            Err(proto::Error::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            other => panic!("expected no reply, got {other:?}"),
        }
    }

    fn call(sup: &mut Channel, req: &str) -> Reply {
        sup.send(&req.to_string()).unwrap();
        sup.recv::<Reply>().unwrap()
    }

    /// What the helper answers: the length, an error for "bad", a protocol
    /// violation for "violate", a lost channel for "lost".
    fn handle(_: &mut Channel, req: String) -> Result<u32, TestError> {
        match req.as_str() {
            "bad" => Err(TestError::Bad),
            "violate" => Err(TestError::Violation),
            "lost" => Err(TestError::Lost),
            _ => Ok(req.len() as u32),
        }
    }

    #[derive(Debug)]
    enum TestError {
        Bad,
        Violation,
        Lost,
    }

    impl ToRemote for TestError {
        fn to_remote(&self) -> RemoteError {
            match self {
                TestError::Bad => RemoteError::new(ErrorKind::NotFound, "no such thing"),
                TestError::Violation => RemoteError::new(ErrorKind::Protocol, "out of order"),
                TestError::Lost => RemoteError::new(ErrorKind::Protocol, "closed mid-request"),
            }
        }

        fn channel_closed(&self) -> bool {
            matches!(self, TestError::Lost)
        }
    }

    #[test]
    fn serves_every_request_until_the_supervisor_closes() {
        let (mut helper, sup) = pair(|mut sup| {
            assert_eq!(call(&mut sup, "abc"), Ok(3));
            let err = call(&mut sup, "bad").unwrap_err();
            assert_eq!(err.kind, ErrorKind::NotFound);
            assert_eq!(err.message, "no such thing");
            // An error that is not a protocol error does not end the session.
            assert_eq!(call(&mut sup, "abcde"), Ok(5));
        });
        let served = serve(&mut helper, handle).unwrap();
        sup.join().unwrap();
        assert_eq!(
            served,
            Served {
                requests: 3,
                failed: 1
            }
        );
    }

    #[test]
    fn an_undecodable_frame_is_answered_once_and_ends_the_session() {
        let (mut helper, sup) = pair(|sup| {
            let mut stream: UnixStream = sup.into_stream();
            // A string that claims more bytes than its frame holds.
            stream.write_all(&[2, 0, 0, 0, 200, b'x']).unwrap();
            // A good request after it must not be served (the helper may
            // be gone already: then this is a broken pipe).
            let _ = proto::frame::write_frame(&mut stream, &"abc".to_string());
            let reply: Reply = proto::frame::read_frame(&mut stream).unwrap().unwrap();
            assert_eq!(reply.unwrap_err().kind, ErrorKind::Protocol);
            no_reply(
                proto::frame::read_frame::<_, Reply>(&mut stream)
                    .and_then(|r| r.ok_or(proto::Error::Closed)),
            );
        });
        let mut calls = 0;
        let r = serve(&mut helper, |c: &mut Channel, req: String| {
            calls += 1;
            handle(c, req)
        });
        drop(helper);
        sup.join().unwrap();
        assert!(matches!(r, Err(Error::Channel { .. })), "{r:?}");
        assert_eq!(calls, 0);
    }

    #[test]
    fn a_protocol_error_of_the_handler_is_answered_and_ends_the_session() {
        let (mut helper, sup) = pair(|mut sup| {
            let err = call(&mut sup, "violate").unwrap_err();
            assert_eq!(err.kind, ErrorKind::Protocol);
            // The helper may be gone already (then this is a broken pipe).
            let _ = sup.send(&"abc".to_string());
            no_reply(sup.recv::<Reply>());
        });
        let mut calls = 0;
        let r = serve(&mut helper, |c: &mut Channel, req: String| {
            calls += 1;
            handle(c, req)
        });
        drop(helper);
        sup.join().unwrap();
        assert!(matches!(r, Err(Error::Protocol(_))), "{r:?}");
        assert_eq!(calls, 1);
    }

    #[test]
    fn a_channel_lost_mid_request_is_not_answered() {
        let (mut helper, sup) = pair(|mut sup| {
            sup.send(&"lost".to_string()).unwrap();
            no_reply(sup.recv::<Reply>());
        });
        let r = serve(&mut helper, handle);
        drop(helper);
        sup.join().unwrap();
        assert!(matches!(r, Err(Error::ChannelLost(_))), "{r:?}");
    }

    #[test]
    fn the_handler_gets_the_channel_for_streamed_frames() {
        let (mut helper, sup) = pair(|mut sup| {
            sup.send(&"stream".to_string()).unwrap();
            for chunk in ["ab", "cde", ""] {
                sup.send(&chunk.to_string()).unwrap();
            }
            assert_eq!(sup.recv::<Reply>().unwrap(), Ok(5));
        });
        let served = serve(&mut helper, |chan: &mut Channel, _req: String| {
            let mut total = 0;
            loop {
                let chunk: String = chan.recv().map_err(|e| e.to_remote())?;
                if chunk.is_empty() {
                    return Ok::<u32, RemoteError>(total);
                }
                total += chunk.len() as u32;
            }
        })
        .unwrap();
        sup.join().unwrap();
        assert_eq!(served.requests, 1);
    }

    #[test]
    fn serve_one_reads_exactly_one_request() {
        let (mut helper, sup) = pair(|mut sup| {
            sup.send(&"abc".to_string()).unwrap();
            // Meant for whoever takes the channel next (the container init).
            sup.send(&"next".to_string()).unwrap();
            assert_eq!(sup.recv::<Reply>().unwrap(), Ok(3));
        });
        let served = serve_one(&mut helper, handle).unwrap();
        sup.join().unwrap();
        assert_eq!(
            served,
            Served {
                requests: 1,
                failed: 0
            }
        );
        assert_eq!(helper.recv::<String>().unwrap(), "next");
    }

    #[test]
    fn serve_one_without_a_request_is_an_error() {
        let (mut helper, sup) = pair(drop);
        let r = serve_one(&mut helper, handle);
        sup.join().unwrap();
        assert!(matches!(r, Err(Error::Channel { .. })), "{r:?}");
    }

    #[test]
    fn a_version_mismatch_serves_nothing() {
        let (mut helper, sup) = timed_pair();
        let t = std::thread::spawn(move || {
            let mut sup = Channel::new(sup);
            let _: Hello = sup.recv().unwrap();
            sup.send(&Hello { version: 999 }).unwrap();
            sup.send(&"abc".to_string()).unwrap();
        });
        let mut calls = 0;
        let r = serve(&mut helper, |c: &mut Channel, req: String| {
            calls += 1;
            handle(c, req)
        });
        t.join().unwrap();
        assert!(
            matches!(
                r,
                Err(Error::Channel {
                    source: proto::Error::VersionMismatch { .. },
                    ..
                })
            ),
            "{r:?}"
        );
        assert_eq!(calls, 0);
    }
}
