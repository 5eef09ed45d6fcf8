//! The two pipes between the helper and the container init during setup.
//!
//! init → helper: one byte "ready for maps", then one frame holding
//! `Result<(), RemoteError>` ("setup done" or why it failed).
//! helper → init: one byte "maps written". Either side seeing end-of-file
//! knows the other one is gone.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;

use nix::fcntl::OFlag;
use proto::RemoteError;

use crate::error::{Context, Error};

const READY: u8 = b'R';
const MAPS_WRITTEN: u8 = b'M';

/// Both pipes, before the clone.
pub struct Pipes {
    to_parent: (OwnedFd, OwnedFd),
    to_child: (OwnedFd, OwnedFd),
}

/// The helper's ends.
pub struct ParentEnd {
    from_child: File,
    to_child: File,
}

/// The init's ends.
pub struct ChildEnd {
    to_parent: File,
    from_parent: File,
}

impl Pipes {
    pub fn new() -> Result<Pipes, Error> {
        Ok(Pipes {
            to_parent: nix::unistd::pipe2(OFlag::O_CLOEXEC).ctx("create a pipe")?,
            to_child: nix::unistd::pipe2(OFlag::O_CLOEXEC).ctx("create a pipe")?,
        })
    }

    /// Keep the helper's ends, close the init's.
    pub fn into_parent(self) -> ParentEnd {
        ParentEnd {
            from_child: File::from(self.to_parent.0),
            to_child: File::from(self.to_child.1),
        }
    }

    /// Keep the init's ends, close the helper's.
    pub fn into_child(self) -> ChildEnd {
        ChildEnd {
            to_parent: File::from(self.to_parent.1),
            from_parent: File::from(self.to_child.0),
        }
    }
}

fn read_byte(f: &mut File) -> Option<u8> {
    let mut b = [0u8; 1];
    loop {
        match f.read(&mut b) {
            Ok(1) => return Some(b[0]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            _ => return None,
        }
    }
}

impl ParentEnd {
    pub fn wait_ready(&mut self) -> Result<(), Error> {
        match read_byte(&mut self.from_child) {
            Some(READY) => Ok(()),
            _ => Err(Error::InitGone),
        }
    }

    pub fn maps_written(&mut self) -> Result<(), Error> {
        self.to_child
            .write_all(&[MAPS_WRITTEN])
            .map_err(|_| Error::InitGone)
    }

    /// The init's verdict on its setup; its error is passed on unchanged.
    pub fn wait_setup_done(&mut self) -> Result<(), Error> {
        match proto::frame::read_frame::<_, Result<(), RemoteError>>(&mut self.from_child) {
            Ok(Some(Ok(()))) => Ok(()),
            Ok(Some(Err(e))) => Err(Error::Remote(e)),
            Ok(None) | Err(_) => Err(Error::InitGone),
        }
    }
}

impl ChildEnd {
    pub fn signal_ready(&mut self) -> Result<(), Error> {
        self.to_parent.write_all(&[READY]).ctx("signal the helper")
    }

    pub fn wait_maps_written(&mut self) -> Result<(), Error> {
        match read_byte(&mut self.from_parent) {
            Some(MAPS_WRITTEN) => Ok(()),
            _ => Err(Error::Sys {
                what: "wait for the id maps".into(),
                source: std::io::Error::other("the helper went away"),
            }),
        }
    }

    pub fn report(&mut self, result: &Result<(), RemoteError>) -> Result<(), Error> {
        proto::frame::write_frame(&mut self.to_parent, result)?;
        Ok(())
    }
}
