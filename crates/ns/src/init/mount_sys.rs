//! The system calls the mount sequence makes, behind a trait so that unit
//! tests can check the sequence without root (the model is youki's `Syscall`).
//!
//! [`Real`] calls exactly what `mounts.rs` called before the seam; the
//! recording fake lives in [`fake`] and exists only in tests.

use std::ffi::CStr;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use nix::mount::{MntFlags, MsFlags};

pub trait MountSys {
    /// `mount(2)`.
    fn mount(
        &self,
        source: Option<&str>,
        target: &CStr,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> nix::Result<()>;
    /// `umount2(2)`.
    fn umount2(&self, target: &CStr, flags: MntFlags) -> nix::Result<()>;
    /// `open_tree(2)`.
    fn open_tree(&self, dirfd: RawFd, path: &CStr, flags: u32) -> io::Result<OwnedFd>;
    /// `move_mount(2)`.
    fn move_mount(
        &self,
        from_dirfd: RawFd,
        from_path: &CStr,
        to_dirfd: RawFd,
        to_path: &CStr,
        flags: u32,
    ) -> io::Result<()>;
    /// `openat2(2)`.
    fn openat2(&self, dirfd: RawFd, path: &CStr, flags: i32, resolve: u64) -> io::Result<OwnedFd>;
    /// `mkdirat(dirfd, name, 0755)`.
    fn mkdirat(&self, dirfd: RawFd, name: &CStr) -> io::Result<()>;
    /// Create the empty regular file `name` in `dirfd` (never following a
    /// symlink, failing with `EEXIST` when something is there) and close it.
    fn create_file(&self, dirfd: RawFd, name: &CStr) -> io::Result<()>;
    /// `symlinkat(to, dirfd, name)`.
    fn symlinkat(&self, to: &CStr, dirfd: RawFd, name: &CStr) -> io::Result<()>;
    /// `st_mode` of `fstat(fd)`.
    fn file_mode(&self, fd: &OwnedFd) -> nix::Result<libc::mode_t>;
    /// `fchdir(2)`.
    fn fchdir(&self, fd: &OwnedFd) -> nix::Result<()>;
    /// `pivot_root(2)`.
    fn pivot_root(&self, new_root: &CStr, put_old: &CStr) -> nix::Result<()>;
    /// `chdir(2)`.
    fn chdir(&self, path: &CStr) -> nix::Result<()>;

    // Volumes, tmpfs, provided files, read-only root (`volumes.rs`).
    /// Device, inode and mode of `fstat(fd)`.
    fn stat(&self, fd: &OwnedFd) -> nix::Result<FileId>;
    /// `mount_setattr(2)` setting `set` and clearing `clear`.
    fn mount_setattr(
        &self,
        dirfd: RawFd,
        path: &CStr,
        flags: u32,
        set: u64,
        clear: u64,
    ) -> io::Result<()>;
    /// `unlinkat(dirfd, name, 0)`.
    fn unlinkat(&self, dirfd: RawFd, name: &CStr) -> io::Result<()>;
}

/// What `fstat` says about a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
    pub mode: libc::mode_t,
}

/// The kernel.
pub struct Real;

fn rc(rc: libc::c_int) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

impl MountSys for Real {
    fn mount(
        &self,
        source: Option<&str>,
        target: &CStr,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> nix::Result<()> {
        nix::mount::mount(source, target, fstype, flags, data)
    }

    fn umount2(&self, target: &CStr, flags: MntFlags) -> nix::Result<()> {
        nix::mount::umount2(target, flags)
    }

    fn open_tree(&self, dirfd: RawFd, path: &CStr, flags: u32) -> io::Result<OwnedFd> {
        tupper_sys::open_tree(dirfd, path, flags)
    }

    fn move_mount(
        &self,
        from_dirfd: RawFd,
        from_path: &CStr,
        to_dirfd: RawFd,
        to_path: &CStr,
        flags: u32,
    ) -> io::Result<()> {
        tupper_sys::move_mount(from_dirfd, from_path, to_dirfd, to_path, flags)
    }

    fn openat2(&self, dirfd: RawFd, path: &CStr, flags: i32, resolve: u64) -> io::Result<OwnedFd> {
        tupper_sys::openat2(dirfd, path, flags, resolve)
    }

    fn mkdirat(&self, dirfd: RawFd, name: &CStr) -> io::Result<()> {
        // SAFETY: valid descriptor and C string.
        rc(unsafe { libc::mkdirat(dirfd, name.as_ptr(), 0o755) })
    }

    fn create_file(&self, dirfd: RawFd, name: &CStr) -> io::Result<()> {
        // SAFETY: valid descriptor and C string.
        let fd = unsafe {
            libc::openat(
                dirfd,
                name.as_ptr(),
                libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                0o644,
            )
        };
        rc(fd)?;
        // SAFETY: openat just returned this descriptor and nothing else owns
        // it; dropping the OwnedFd closes it at once.
        drop(unsafe { OwnedFd::from_raw_fd(fd) });
        Ok(())
    }

    fn symlinkat(&self, to: &CStr, dirfd: RawFd, name: &CStr) -> io::Result<()> {
        // SAFETY: valid descriptor and C strings.
        rc(unsafe { libc::symlinkat(to.as_ptr(), dirfd, name.as_ptr()) })
    }

    fn file_mode(&self, fd: &OwnedFd) -> nix::Result<libc::mode_t> {
        nix::sys::stat::fstat(fd).map(|st| st.st_mode)
    }

    fn fchdir(&self, fd: &OwnedFd) -> nix::Result<()> {
        nix::unistd::fchdir(fd)
    }

    fn pivot_root(&self, new_root: &CStr, put_old: &CStr) -> nix::Result<()> {
        nix::unistd::pivot_root(new_root, put_old)
    }

    fn chdir(&self, path: &CStr) -> nix::Result<()> {
        nix::unistd::chdir(path)
    }

    fn stat(&self, fd: &OwnedFd) -> nix::Result<FileId> {
        nix::sys::stat::fstat(fd).map(|st| FileId {
            dev: st.st_dev,
            ino: st.st_ino,
            mode: st.st_mode,
        })
    }

    fn mount_setattr(
        &self,
        dirfd: RawFd,
        path: &CStr,
        flags: u32,
        set: u64,
        clear: u64,
    ) -> io::Result<()> {
        tupper_sys::mount_setattr(dirfd, path, flags, set, clear)
    }

    fn unlinkat(&self, dirfd: RawFd, name: &CStr) -> io::Result<()> {
        // SAFETY: valid descriptor and C string.
        rc(unsafe { libc::unlinkat(dirfd, name.as_ptr(), 0) })
    }
}

/// A recording fake: a small file tree beneath the container root, real
/// descriptors (of `/dev/null`) standing for its entries, and a log of every
/// call in order.
#[cfg(test)]
pub mod fake {
    use super::*;
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::os::fd::AsRawFd;

    /// What a path argument named.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub enum Target {
        /// `/proc/self/fd/N` where N is a descriptor this fake handed out for
        /// the entry at this path beneath the container root ("" is the root).
        Fd(String),
        /// Any other string, taken literally.
        Path(String),
    }

    #[derive(Clone, Debug, PartialEq, Eq)]
    pub enum Call {
        Mount {
            source: Option<Target>,
            target: Target,
            fstype: Option<String>,
            flags: MsFlags,
            data: Option<String>,
        },
        Umount2 {
            target: String,
            flags: MntFlags,
        },
        OpenTree {
            dirfd: RawFd,
            path: String,
            flags: u32,
        },
        MoveMount {
            from: Target,
            from_path: String,
            to_dirfd: RawFd,
            /// What `to_dirfd` stands for.
            to: Target,
            to_path: String,
            flags: u32,
        },
        /// `openat2`: the directory it started from, the path, the resolve flags.
        Open {
            dir: Target,
            path: String,
            resolve: u64,
        },
        Mkdir(String),
        CreateFile(String),
        Symlink {
            at: String,
            to: String,
        },
        Fchdir(Target),
        PivotRoot {
            new_root: String,
            put_old: String,
        },
        Chdir(String),
        MountSetattr {
            at: Target,
            flags: u32,
            set: u64,
            clear: u64,
        },
        Unlink(String),
    }

    #[derive(Clone, Debug, PartialEq, Eq)]
    pub enum Node {
        Dir,
        File,
        /// A symbolic link to this (host) path.
        Link(String),
    }

    #[derive(Default)]
    pub struct Fake {
        pub calls: RefCell<Vec<Call>>,
        /// The tree beneath the container root, by relative path.
        pub tree: RefCell<HashMap<String, Node>>,
        /// Descriptors handed out, and which entry each stands for.
        fds: RefCell<HashMap<RawFd, String>>,
        /// `mount` of this file system type fails with this error.
        pub fail_fstype: Option<(&'static str, nix::Error)>,
        /// Host files reachable by absolute path: (dev, ino, node).
        pub host: RefCell<HashMap<String, (u64, u64, Node)>>,
    }

    fn join(dir: &str, rel: &str) -> String {
        let parts = dir
            .split('/')
            .chain(rel.split('/'))
            .filter(|p| !p.is_empty() && *p != ".");
        parts.collect::<Vec<_>>().join("/")
    }

    impl Fake {
        /// A container root holding `entries`.
        pub fn with(entries: &[(&str, Node)]) -> Fake {
            let fake = Fake::default();
            fake.tree.borrow_mut().insert(String::new(), Node::Dir);
            for (path, node) in entries {
                fake.tree
                    .borrow_mut()
                    .insert(path.to_string(), node.clone());
            }
            fake
        }

        pub fn calls(&self) -> Vec<Call> {
            self.calls.borrow().clone()
        }

        fn log(&self, call: Call) {
            self.calls.borrow_mut().push(call);
        }

        fn hand_out(&self, path: String) -> io::Result<OwnedFd> {
            let fd: OwnedFd = std::fs::File::open("/dev/null")?.into();
            self.fds.borrow_mut().insert(fd.as_raw_fd(), path);
            Ok(fd)
        }

        fn dir_of(&self, dirfd: RawFd) -> Option<String> {
            self.fds.borrow().get(&dirfd).cloned()
        }

        /// What a path string names, resolving `/proc/self/fd/N`.
        fn target(&self, s: &str) -> Target {
            s.strip_prefix("/proc/self/fd/")
                .and_then(|n| n.parse::<RawFd>().ok())
                .and_then(|n| self.dir_of(n))
                .map_or_else(|| Target::Path(s.to_string()), Target::Fd)
        }

        fn fd_target(&self, fd: RawFd) -> Target {
            self.dir_of(fd)
                .map_or_else(|| Target::Path(format!("fd {fd}")), Target::Fd)
        }

        fn entry_in(&self, dirfd: RawFd, name: &CStr) -> io::Result<String> {
            let dir = self
                .dir_of(dirfd)
                .ok_or_else(|| io::Error::from_raw_os_error(libc::EBADF))?;
            Ok(join(&dir, &name.to_string_lossy()))
        }

        fn create(&self, path: String, node: Node) -> io::Result<()> {
            let mut tree = self.tree.borrow_mut();
            if tree.contains_key(&path) {
                return Err(io::Error::from_raw_os_error(libc::EEXIST));
            }
            tree.insert(path, node);
            Ok(())
        }
    }

    fn text(s: Option<&str>) -> Option<String> {
        s.map(str::to_string)
    }

    impl MountSys for Fake {
        fn mount(
            &self,
            source: Option<&str>,
            target: &CStr,
            fstype: Option<&str>,
            flags: MsFlags,
            data: Option<&str>,
        ) -> nix::Result<()> {
            self.log(Call::Mount {
                source: source.map(|s| self.target(s)),
                target: self.target(&target.to_string_lossy()),
                fstype: text(fstype),
                flags,
                data: text(data),
            });
            match self.fail_fstype {
                Some((t, e)) if fstype == Some(t) => Err(e),
                _ => Ok(()),
            }
        }

        fn umount2(&self, target: &CStr, flags: MntFlags) -> nix::Result<()> {
            self.log(Call::Umount2 {
                target: target.to_string_lossy().into_owned(),
                flags,
            });
            Ok(())
        }

        fn open_tree(&self, dirfd: RawFd, path: &CStr, flags: u32) -> io::Result<OwnedFd> {
            let path = path.to_string_lossy().into_owned();
            self.log(Call::OpenTree {
                dirfd,
                path: path.clone(),
                flags,
            });
            if path.is_empty() {
                // AT_EMPTY_PATH: a clone of what `dirfd` holds.
                let of = self.fd_target(dirfd);
                return self.hand_out(format!("tree:{of:?}"));
            }
            // The cwd is the container root.
            self.hand_out(join("", &path))
        }

        fn move_mount(
            &self,
            from_dirfd: RawFd,
            from_path: &CStr,
            to_dirfd: RawFd,
            to_path: &CStr,
            flags: u32,
        ) -> io::Result<()> {
            self.log(Call::MoveMount {
                from: self.fd_target(from_dirfd),
                from_path: from_path.to_string_lossy().into_owned(),
                to_dirfd,
                to: self.fd_target(to_dirfd),
                to_path: to_path.to_string_lossy().into_owned(),
                flags,
            });
            Ok(())
        }

        fn openat2(
            &self,
            dirfd: RawFd,
            path: &CStr,
            flags: i32,
            resolve: u64,
        ) -> io::Result<OwnedFd> {
            let rel = path.to_string_lossy().into_owned();
            self.log(Call::Open {
                dir: self.fd_target(dirfd),
                path: rel.clone(),
                resolve,
            });
            if dirfd == libc::AT_FDCWD && rel.starts_with('/') {
                // A host path (a volume source).
                if !self.host.borrow().contains_key(&rel) {
                    return Err(io::Error::from_raw_os_error(libc::ENOENT));
                }
                return self.hand_out(format!("host:{rel}"));
            }
            let dir = self
                .dir_of(dirfd)
                .ok_or_else(|| io::Error::from_raw_os_error(libc::EBADF))?;
            // Walk the components as the kernel would.
            let mut todo: Vec<String> = join(&dir, &rel)
                .split('/')
                .filter(|p| !p.is_empty())
                .rev()
                .map(str::to_string)
                .collect();
            let mut at = String::new();
            let mut links = 0;
            while let Some(part) = todo.pop() {
                if part == ".." {
                    if resolve & (libc::RESOLVE_IN_ROOT | libc::RESOLVE_BENEATH) != 0
                        && at.is_empty()
                    {
                        if resolve & libc::RESOLVE_BENEATH != 0 {
                            return Err(io::Error::from_raw_os_error(libc::EXDEV));
                        }
                        continue;
                    }
                    at = at
                        .rsplit_once('/')
                        .map_or(String::new(), |(p, _)| p.to_string());
                    continue;
                }
                let next = join(&at, &part);
                let node = self.tree.borrow().get(&next).cloned();
                match node {
                    None => return Err(io::Error::from_raw_os_error(libc::ENOENT)),
                    Some(Node::Link(to)) => {
                        if todo.is_empty() && flags & libc::O_NOFOLLOW != 0 {
                            // The link itself.
                            return self.hand_out(next);
                        }
                        if resolve & libc::RESOLVE_NO_SYMLINKS != 0 {
                            return Err(io::Error::from_raw_os_error(libc::ELOOP));
                        }
                        if resolve & libc::RESOLVE_IN_ROOT == 0 {
                            // Followed: the descriptor names a host path.
                            return self.hand_out(format!("host:{to}"));
                        }
                        links += 1;
                        if links > 40 {
                            return Err(io::Error::from_raw_os_error(libc::ELOOP));
                        }
                        // Inside the root: absolute links start at it.
                        if to.starts_with('/') {
                            at = String::new();
                        }
                        for p in to.split('/').filter(|p| !p.is_empty() && *p != ".").rev() {
                            todo.push(p.to_string());
                        }
                    }
                    Some(_) => at = next,
                }
            }
            self.hand_out(at)
        }

        fn mkdirat(&self, dirfd: RawFd, name: &CStr) -> io::Result<()> {
            let path = self.entry_in(dirfd, name)?;
            self.log(Call::Mkdir(path.clone()));
            self.create(path, Node::Dir)
        }

        fn create_file(&self, dirfd: RawFd, name: &CStr) -> io::Result<()> {
            let path = self.entry_in(dirfd, name)?;
            self.log(Call::CreateFile(path.clone()));
            self.create(path, Node::File)
        }

        fn symlinkat(&self, to: &CStr, dirfd: RawFd, name: &CStr) -> io::Result<()> {
            let path = self.entry_in(dirfd, name)?;
            let to = to.to_string_lossy().into_owned();
            self.log(Call::Symlink {
                at: path.clone(),
                to: to.clone(),
            });
            self.create(path, Node::Link(to))
        }

        fn file_mode(&self, fd: &OwnedFd) -> nix::Result<libc::mode_t> {
            let path = self.dir_of(fd.as_raw_fd()).ok_or(nix::Error::EBADF)?;
            if let Some(host) = path.strip_prefix("host:") {
                return Ok(match self.host.borrow().get(host) {
                    Some((_, _, Node::File)) => libc::S_IFREG,
                    _ => libc::S_IFDIR,
                });
            }
            match self.tree.borrow().get(&path) {
                Some(Node::Dir) => Ok(libc::S_IFDIR),
                Some(Node::File) => Ok(libc::S_IFREG),
                Some(Node::Link(_)) => Ok(libc::S_IFLNK),
                None => Err(nix::Error::ENOENT),
            }
        }

        fn fchdir(&self, fd: &OwnedFd) -> nix::Result<()> {
            self.log(Call::Fchdir(self.fd_target(fd.as_raw_fd())));
            Ok(())
        }

        fn pivot_root(&self, new_root: &CStr, put_old: &CStr) -> nix::Result<()> {
            self.log(Call::PivotRoot {
                new_root: new_root.to_string_lossy().into_owned(),
                put_old: put_old.to_string_lossy().into_owned(),
            });
            Ok(())
        }

        fn chdir(&self, path: &CStr) -> nix::Result<()> {
            self.log(Call::Chdir(path.to_string_lossy().into_owned()));
            Ok(())
        }

        fn stat(&self, fd: &OwnedFd) -> nix::Result<FileId> {
            let mode = self.file_mode(fd)?;
            let path = self.dir_of(fd.as_raw_fd()).ok_or(nix::Error::EBADF)?;
            let (dev, ino) = path
                .strip_prefix("host:")
                .and_then(|h| self.host.borrow().get(h).map(|(d, i, _)| (*d, *i)))
                .unwrap_or((1, 1));
            Ok(FileId { dev, ino, mode })
        }

        fn mount_setattr(
            &self,
            dirfd: RawFd,
            _path: &CStr,
            flags: u32,
            set: u64,
            clear: u64,
        ) -> io::Result<()> {
            self.log(Call::MountSetattr {
                at: self.fd_target(dirfd),
                flags,
                set,
                clear,
            });
            Ok(())
        }

        fn unlinkat(&self, dirfd: RawFd, name: &CStr) -> io::Result<()> {
            let path = self.entry_in(dirfd, name)?;
            self.log(Call::Unlink(path.clone()));
            self.tree
                .borrow_mut()
                .remove(&path)
                .map(drop)
                .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT))
        }
    }
}
