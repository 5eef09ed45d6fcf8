//! The attach channel: a unix stream socket, `attach` in the container's
//! directory (mode 0600 in the user's 0700 state directory), served by the
//! container's monitor. Frames are a kind byte, a little-endian u32 length
//! and the payload. Both ends are the same user; the monitor bounds what it
//! reads all the same.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};

pub const SOCKET_NAME: &str = "attach";

/// Largest payload either side sends or accepts.
pub const MAX_FRAME: usize = 64 * 1024;

/// Monitor → client: container output.
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
/// Monitor → client: the container's exit code (i32 LE); the last frame.
pub const EXIT: u8 = 3;
/// Client → monitor: input for the container.
pub const STDIN: u8 = 4;
/// Client → monitor: end of input.
pub const STDIN_EOF: u8 = 5;
/// Client → monitor: window size (rows u16 LE, cols u16 LE).
pub const RESIZE: u8 = 6;

pub fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(payload.len() + 5);
    v.push(kind);
    v.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    v.extend_from_slice(payload);
    v
}

/// Split complete frames off the front of `buf`; `None` on a malformed one.
pub fn take_frames(buf: &mut Vec<u8>) -> Option<Vec<(u8, Vec<u8>)>> {
    let mut out = Vec::new();
    loop {
        if buf.len() < 5 {
            return Some(out);
        }
        let len = u32::from_le_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
        if len > MAX_FRAME {
            return None;
        }
        if buf.len() < 5 + len {
            return Some(out);
        }
        let kind = buf[0];
        let payload = buf[5..5 + len].to_vec();
        buf.drain(..5 + len);
        out.push((kind, payload));
    }
}

fn read_frame(s: &mut impl Read) -> io::Result<Option<(u8, Vec<u8>)>> {
    let mut head = [0u8; 5];
    match s.read_exact(&mut head) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_le_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "frame too large",
        ));
    }
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload)?;
    Ok(Some((head[0], payload)))
}

/// Connect to a container's monitor.
pub fn connect(dir: &std::path::Path) -> Result<UnixStream> {
    UnixStream::connect(dir.join(SOCKET_NAME))
        .map_err(|e| Error::io("connect to the container's monitor", e))
}

/// The current window size of our terminal as a RESIZE payload.
fn window_payload() -> Option<Vec<u8>> {
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes a winsize into the buffer we pass.
    if unsafe { libc::ioctl(libc::STDIN_FILENO, libc::TIOCGWINSZ, &mut ws) } != 0 {
        return None;
    }
    let mut p = ws.ws_row.to_le_bytes().to_vec();
    p.extend_from_slice(&ws.ws_col.to_le_bytes());
    Some(p)
}

/// Relay our standard streams through the monitor until the container
/// exits; returns its exit code. With `stdin`, our input goes to the
/// container; with `tty`, our terminal is raw and its size follows ours.
pub fn relay(
    stream: UnixStream,
    stdin: bool,
    tty: bool,
    signals: Option<&crate::signals::Signals>,
) -> Result<i32> {
    let writer = Arc::new(Mutex::new(
        stream
            .try_clone()
            .map_err(|e| Error::io("attach socket", e))?,
    ));
    let send = {
        let writer = writer.clone();
        move |kind: u8, payload: &[u8]| -> bool {
            writer
                .lock()
                .map(|mut w| w.write_all(&frame(kind, payload)).is_ok())
                .unwrap_or(false)
        }
    };
    let mut _raw = None;
    if tty && crate::tty::stdin_is_tty() {
        if let Some(p) = window_payload() {
            send(RESIZE, &p);
        }
        if let Some(signals) = signals {
            let send = send.clone();
            signals.on_window_change(Box::new(move || {
                if let Some(p) = window_payload() {
                    send(RESIZE, &p);
                }
            }));
        }
        _raw = crate::tty::RawMode::enter();
    }
    if stdin {
        let send = send.clone();
        // Not joined: it may sit in a read of our stdin after the container
        // is gone; the process exits under it.
        std::thread::Builder::new()
            .name("attach-in".into())
            .spawn(move || {
                let mut buf = vec![0u8; 32 * 1024];
                let mut input = io::stdin().lock();
                loop {
                    match input.read(&mut buf) {
                        Ok(0) => {
                            send(STDIN_EOF, &[]);
                            return;
                        }
                        Ok(n) => {
                            if !send(STDIN, &buf[..n]) {
                                return;
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(_) => {
                            send(STDIN_EOF, &[]);
                            return;
                        }
                    }
                }
            })
            .map_err(|e| Error::io("start the input relay", e))?;
    }
    let mut reader = io::BufReader::with_capacity(MAX_FRAME + 5, stream);
    let mut out_gone = false;
    let mut err_gone = false;
    loop {
        let frame = read_frame(&mut reader).map_err(|e| Error::io("attach socket", e))?;
        match frame {
            None => {
                return Err(Error::user(
                    "the container's monitor went away before the container exited",
                ))
            }
            Some((EXIT, p)) if p.len() == 4 => {
                return Ok(i32::from_le_bytes([p[0], p[1], p[2], p[3]]));
            }
            Some((STDOUT, p)) if !out_gone => {
                let mut o = io::stdout().lock();
                out_gone = o.write_all(&p).and_then(|_| o.flush()).is_err();
            }
            Some((STDERR, p)) if !err_gone => {
                let mut o = io::stderr().lock();
                err_gone = o.write_all(&p).and_then(|_| o.flush()).is_err();
            }
            Some(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_partial_ones_wait() {
        let mut buf = frame(STDOUT, b"hello");
        buf.extend(frame(EXIT, &3i32.to_le_bytes()));
        let tail = buf.split_off(buf.len() - 2);
        let got = take_frames(&mut buf).unwrap();
        assert_eq!(got, vec![(STDOUT, b"hello".to_vec())]);
        buf.extend(tail);
        let got = take_frames(&mut buf).unwrap();
        assert_eq!(got, vec![(EXIT, 3i32.to_le_bytes().to_vec())]);
        assert!(buf.is_empty());
    }

    #[test]
    fn an_oversized_frame_is_refused() {
        let mut buf = vec![STDIN];
        buf.extend_from_slice(&(MAX_FRAME as u32 + 1).to_le_bytes());
        assert!(take_frames(&mut buf).is_none());
    }
}
