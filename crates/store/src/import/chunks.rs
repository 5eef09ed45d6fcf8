//! A `Read` over the `ImportChunk` frames of one import, ending at `ImportEnd`.

use std::io::Read;

use proto::{Channel, StorageRequest};

use crate::error::Error;

/// Where the stream of frames stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    Streaming,
    /// `ImportEnd` was received.
    Ended,
    /// The channel closed or broke: nothing more can be read or answered.
    Closed,
    /// The supervisor sent something other than a chunk or the end.
    Violated(String),
}

pub struct ChunkReader<'c> {
    chan: &'c mut Channel,
    buf: Vec<u8>,
    pos: usize,
    state: State,
}

/// Run `f` over the chunk stream that follows on `chan`, then read the
/// stream to its end, so that the single reply follows the last chunk. A
/// broken stream wins over whatever `f` made of it.
pub fn receive<T>(
    chan: &mut Channel,
    f: impl FnOnce(&mut ChunkReader<'_>) -> Result<T, Error>,
) -> Result<T, Error> {
    let mut reader = ChunkReader::new(chan);
    let result = f(&mut reader);
    reader.drain();
    match reader.stream_error() {
        Some(e) => Err(e),
        None => result,
    }
}

impl<'c> ChunkReader<'c> {
    pub fn new(chan: &'c mut Channel) -> Self {
        ChunkReader {
            chan,
            buf: Vec::new(),
            pos: 0,
            state: State::Streaming,
        }
    }

    /// Next frame into `buf`; false at the end (or when the stream broke).
    fn next_chunk(&mut self) -> bool {
        while self.state == State::Streaming {
            match self.chan.recv::<StorageRequest>() {
                Ok(StorageRequest::ImportChunk(data)) => {
                    if !data.is_empty() {
                        self.buf = data;
                        self.pos = 0;
                        return true;
                    }
                }
                Ok(StorageRequest::ImportEnd) => self.state = State::Ended,
                Ok(other) => {
                    self.state = State::Violated(format!(
                        "expected an import chunk or the end of the import, got {}",
                        request_name(&other)
                    ))
                }
                Err(proto::Error::Closed) | Err(proto::Error::Io(_)) => self.state = State::Closed,
                Err(e) => self.state = State::Violated(e.to_string()),
            }
        }
        false
    }

    /// Read and throw away everything up to `ImportEnd`, so that the reply
    /// comes after the last chunk the supervisor sends.
    pub fn drain(&mut self) {
        self.buf.clear();
        self.pos = 0;
        while self.next_chunk() {}
    }

    /// The error to report instead of whatever extraction said, if the frame
    /// stream itself went wrong.
    pub fn stream_error(&self) -> Option<Error> {
        match &self.state {
            State::Streaming | State::Ended => None,
            State::Closed => Some(Error::ChannelClosed),
            State::Violated(why) => Some(Error::Protocol(why.clone())),
        }
    }
}

impl Read for ChunkReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        if self.pos >= self.buf.len() && !self.next_chunk() {
            return match &self.state {
                State::Ended => Ok(0),
                _ => Err(std::io::Error::other("the import stream was interrupted")),
            };
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

pub fn request_name(r: &StorageRequest) -> &'static str {
    match r {
        StorageRequest::Init => "Init",
        StorageRequest::ImportBegin { .. } => "ImportBegin",
        StorageRequest::ImportChunk(_) => "ImportChunk",
        StorageRequest::ImportEnd => "ImportEnd",
        StorageRequest::Snapshot { .. } => "Snapshot",
        StorageRequest::RemoveContainer { .. } => "RemoveContainer",
        StorageRequest::RemoveImage { .. } => "RemoveImage",
        StorageRequest::ListImages => "ListImages",
        StorageRequest::ListContainers => "ListContainers",
        StorageRequest::Commit { .. } => "Commit",
        StorageRequest::ExportBegin { .. } => "ExportBegin",
        StorageRequest::StatPath { .. } => "StatPath",
        StorageRequest::CopyInBegin { .. } => "CopyInBegin",
        StorageRequest::SnapshotSized { .. } => "SnapshotSized",
        StorageRequest::MountRoot { .. } => "MountRoot",
        StorageRequest::LayerBegin { .. } => "LayerBegin",
        StorageRequest::HasLayers { .. } => "HasLayers",
        StorageRequest::CreateImage { .. } => "CreateImage",
        StorageRequest::GetImageMeta { .. } => "GetImageMeta",
        StorageRequest::TagImage { .. } => "TagImage",
        StorageRequest::PruneLayers => "PruneLayers",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::frame::write_frame;

    #[test]
    fn reads_chunks_until_the_end() {
        let (mut helper, mut sup) = Channel::pair().unwrap();
        for f in [
            StorageRequest::ImportChunk(b"abc".to_vec()),
            StorageRequest::ImportChunk(vec![]),
            StorageRequest::ImportChunk(b"de".to_vec()),
            StorageRequest::ImportEnd,
            StorageRequest::ListImages,
        ] {
            write_frame(&mut sup, &f).unwrap();
        }
        let mut r = ChunkReader::new(&mut helper);
        let mut s = String::new();
        r.read_to_string(&mut s).unwrap();
        assert_eq!(s, "abcde");
        assert!(r.stream_error().is_none());
        // The next request is still there for the main loop.
        assert_eq!(
            helper.recv::<StorageRequest>().unwrap(),
            StorageRequest::ListImages
        );
    }

    #[test]
    fn drain_discards_the_rest_and_stray_requests_are_violations() {
        let (mut helper, mut sup) = Channel::pair().unwrap();
        write_frame(&mut sup, &StorageRequest::ImportChunk(b"abc".to_vec())).unwrap();
        write_frame(&mut sup, &StorageRequest::ImportChunk(b"def".to_vec())).unwrap();
        write_frame(&mut sup, &StorageRequest::ImportEnd).unwrap();
        write_frame(&mut sup, &StorageRequest::ImportChunk(b"x".to_vec())).unwrap();
        write_frame(&mut sup, &StorageRequest::ListImages).unwrap();
        drop(sup);
        let mut r = ChunkReader::new(&mut helper);
        let mut one = [0u8; 1];
        r.read_exact(&mut one).unwrap();
        r.drain();
        assert!(r.stream_error().is_none());
        let mut r = ChunkReader::new(&mut helper);
        let mut v = Vec::new();
        assert!(r.read_to_end(&mut v).is_err());
        assert!(matches!(r.stream_error(), Some(Error::Protocol(_))));
    }

    #[test]
    fn closed_channel_is_reported() {
        let (mut helper, mut sup) = Channel::pair().unwrap();
        write_frame(&mut sup, &StorageRequest::ImportChunk(b"abc".to_vec())).unwrap();
        drop(sup);
        let mut r = ChunkReader::new(&mut helper);
        let mut v = Vec::new();
        assert!(r.read_to_end(&mut v).is_err());
        assert!(matches!(r.stream_error(), Some(Error::ChannelClosed)));
    }
}
