//! The default images the package ships (issue 12): a user's first `run`
//! of `busybox` imports `/usr/share/tupperware/images/busybox.tar` for that
//! user, once, saying so in one line. Any `NAME.tar` in that directory is a
//! default image called NAME.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use proto::frame::MAX_CHUNK_LEN;
use proto::{StorageReply, StorageRequest};

use crate::error::{Error, Result};
use crate::helpers::{call_once, Helper, HelperProcess, HelperStdio};

/// `share/tupperware` beside the helpers' `libexec/tupperware` (the prefix
/// both are compiled with), unless `TUPPER_DATADIR` was set at build time.
pub fn data_dir() -> PathBuf {
    if let Some(d) = option_env!("TUPPER_DATADIR") {
        return PathBuf::from(d);
    }
    let libexec = Path::new(tupper_config::system::LIBEXECDIR);
    match libexec.parent().and_then(Path::parent) {
        Some(prefix) => prefix.join("share/tupperware"),
        None => PathBuf::from("/usr/share/tupperware"),
    }
}

/// The shipped tarball of image `name`, when there is one.
pub fn tarball(name: &str) -> Option<PathBuf> {
    proto::validate::name(name).ok()?;
    let path = data_dir().join("images").join(format!("{name}.tar"));
    path.is_file().then_some(path)
}

pub(crate) fn has_image(name: &str) -> Result<bool> {
    let reply: StorageReply = call_once(Helper::Storage, &StorageRequest::ListImages)?;
    let StorageReply::Images(images) = reply else {
        return Err(Error::user("storage: unexpected reply to ListImages"));
    };
    Ok(images.iter().any(|i| i.name == name))
}

/// Import image `name`, which the caller was found not to have, when the
/// package ships it: `Ok(true)` when it was imported now, `Ok(false)` when
/// it is not a default image (or another first run of the same user
/// imported it meanwhile). Called where `run` looks up its image, before
/// anything is created; `run` looks the image up first (one helper call),
/// so a present image costs nothing here.
pub fn import_missing(name: &str) -> Result<bool> {
    let Some(path) = tarball(name) else {
        return Ok(false);
    };
    eprintln!(
        "tupper: importing the default image {name} from {} (once)",
        path.display()
    );
    match import(name, &path) {
        Ok(()) => Ok(true),
        // Another first run of the same user may have imported it meanwhile.
        Err(_) if has_image(name).unwrap_or(false) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Stream the tarball to the storage helper, as `image import` does, quietly.
fn import(name: &str, path: &Path) -> Result<()> {
    let mut input =
        File::open(path).map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
    let mut helper = HelperProcess::spawn(Helper::Storage, HelperStdio::default())?;
    helper.send(&StorageRequest::ImportBegin {
        name: name.to_string(),
    })?;
    let mut buf = vec![0u8; MAX_CHUNK_LEN];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            // Dropping the helper without ImportEnd makes it discard the partial image.
            Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
        };
        helper.send(&StorageRequest::ImportChunk(buf[..n].to_vec()))?;
    }
    helper.send(&StorageRequest::ImportEnd)?;
    let _: StorageReply = helper.recv_reply()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_dir_sits_beside_libexec() {
        // Built without TUPPER_DATADIR in the unit tests.
        if option_env!("TUPPER_DATADIR").is_none() {
            let libexec = Path::new(tupper_config::system::LIBEXECDIR);
            let prefix = libexec.parent().and_then(Path::parent).unwrap();
            assert_eq!(data_dir(), prefix.join("share/tupperware"));
        }
    }

    #[test]
    fn only_valid_names_have_tarballs() {
        assert_eq!(tarball("../../etc/passwd"), None);
        assert_eq!(tarball(""), None);
    }
}
