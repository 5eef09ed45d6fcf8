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
