//! A `Write` that sends what it is given as `ExportChunk` replies.

use std::io::Write;

use proto::frame::MAX_CHUNK_LEN;
use proto::{Channel, RemoteError, StorageReply};

use crate::error::{Error, Result};

/// Buffers up to [`MAX_CHUNK_LEN`] bytes and sends them as one frame. The
/// socket's buffer is the flow control: a slow reader slows the walk. A
/// closed channel (the supervisor died or gave up) makes every later write
/// fail, which ends the walk.
pub struct ChunkWriter<'c> {
    chan: &'c mut Channel,
    buf: Vec<u8>,
    closed: bool,
}

impl<'c> ChunkWriter<'c> {
    pub fn new(chan: &'c mut Channel) -> Self {
        ChunkWriter {
            chan,
            buf: Vec::with_capacity(MAX_CHUNK_LEN),
            closed: false,
        }
    }

    /// Whether the channel broke: nobody is left to answer.
    pub fn closed(&self) -> bool {
        self.closed
    }

    fn send(&mut self) -> std::io::Result<()> {
        if self.closed {
            return Err(std::io::Error::from_raw_os_error(libc::EPIPE));
        }
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(MAX_CHUNK_LEN));
        let frame: std::result::Result<StorageReply, RemoteError> =
            Ok(StorageReply::ExportChunk(chunk));
        self.chan.reply(&frame).map_err(|e| {
            self.closed = true;
            std::io::Error::other(e.to_string())
        })
    }

    /// Send what is buffered (before the final reply).
    pub fn flush_chunk(&mut self) -> Result<()> {
        self.send().map_err(|_| Error::ChannelClosed)
    }
}

impl Write for ChunkWriter<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.closed {
            return Err(std::io::Error::from_raw_os_error(libc::EPIPE));
        }
        let room = MAX_CHUNK_LEN - self.buf.len();
        let n = room.min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == MAX_CHUNK_LEN {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        // Frames go out when full or at the end; tar's flushes do not cut them.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::frame::read_frame;

    #[test]
    fn chunks_are_bounded_and_complete() {
        let (mut helper, mut sup) = Channel::pair().unwrap();
        let data: Vec<u8> = (0..(MAX_CHUNK_LEN * 2 + 7)).map(|i| i as u8).collect();
        let t = std::thread::spawn(move || {
            let mut got = Vec::new();
            loop {
                let f: std::result::Result<StorageReply, RemoteError> =
                    read_frame(&mut sup).unwrap().unwrap();
                match f.unwrap() {
                    StorageReply::ExportChunk(c) => {
                        assert!(!c.is_empty() && c.len() <= MAX_CHUNK_LEN);
                        got.extend(c);
                    }
                    StorageReply::Done => return got,
                    other => panic!("{other:?}"),
                }
            }
        });
        let mut w = ChunkWriter::new(&mut helper);
        w.write_all(&data).unwrap();
        w.flush_chunk().unwrap();
        helper
            .reply(&Ok::<_, RemoteError>(StorageReply::Done))
            .unwrap();
        assert_eq!(t.join().unwrap(), data);
    }

    #[test]
    fn a_closed_channel_stops_the_writer() {
        let (mut helper, sup) = Channel::pair().unwrap();
        drop(sup);
        let mut w = ChunkWriter::new(&mut helper);
        let big = vec![0u8; MAX_CHUNK_LEN * 2];
        assert!(w.write_all(&big).is_err());
        assert!(w.closed());
        assert!(w.write(b"x").is_err());
    }
}
