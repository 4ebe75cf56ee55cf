//! The guest's initramfs, written at run time: an uncompressed newc cpio archive (the
//! format the kernel unpacks into its root tmpfs) holding `/init` (the static guest init),
//! `/dev/console`, the init's config at [`CONFIG_PATH`], the workload's root filesystem
//! under [`ROOTFS_PATH`]. Volumes are not copied: the VMM serves them over virtio-9p.
//!
//! Trees are copied as they are, never modified: directories, regular files and symlinks
//! keep their mode, uid, gid and mtime; hard links become separate copies; device nodes,
//! fifos and sockets are skipped (the init makes the workload's /dev). Uncompressed, so the
//! kernel only copies: the cost is guest RAM (see `backend` for the sizing).

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::channel::protocol::{CONFIG_PATH, ROOTFS_PATH};

/// newc's magic.
const MAGIC: &str = "070701";
/// The file type bits of st_mode.
const S_IFMT: u32 = 0o170_000;
const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFCHR: u32 = 0o020_000;

/// Errors while writing the initramfs.
#[derive(Debug, thiserror::Error)]
pub enum InitramfsError {
    /// Reading a source file or directory failed.
    #[error("Cannot read {path} for the guest's initramfs")]
    Read {
        /// The host path.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Writing the archive failed.
    #[error("Cannot write the initramfs {path}")]
    Write {
        /// The archive.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// newc stores sizes in 32 bits.
    #[error("{path} is {size} bytes; VM mode can only ship files under 4 GiB in its initramfs")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
    },
    /// A file changed size while it was being packed.
    #[error("{path} changed while it was being packed; try again")]
    Changed {
        /// The file.
        path: PathBuf,
    },
}

/// One archive member's metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    /// st_mode, type bits included.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time (seconds).
    pub mtime: u32,
}

impl Meta {
    /// A root-owned member of this mode.
    pub fn root(mode: u32) -> Meta {
        Meta {
            mode,
            uid: 0,
            gid: 0,
            mtime: 0,
        }
    }

    fn of(m: &std::fs::Metadata) -> Meta {
        Meta {
            mode: m.mode(),
            uid: m.uid(),
            gid: m.gid(),
            // newc has 32-bit times; clamp instead of wrapping.
            mtime: u32::try_from(m.mtime().max(0)).unwrap_or(u32::MAX),
        }
    }
}

/// What a tree copy skipped or packed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TreeStats {
    /// Members written.
    pub entries: u64,
    /// Device nodes, fifos and sockets left out.
    pub skipped: u64,
}

/// A newc archive being written.
#[derive(Debug)]
pub struct CpioWriter<W: Write> {
    out: W,
    next_ino: u32,
    offset: u64,
}

impl<W: Write> CpioWriter<W> {
    /// Starts an archive on `out`.
    pub fn new(out: W) -> Self {
        CpioWriter {
            out,
            next_ino: 1,
            offset: 0,
        }
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.offset
    }

    /// Whether nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.offset == 0
    }

    fn put(&mut self, b: &[u8]) -> io::Result<()> {
        self.out.write_all(b)?;
        self.offset += b.len() as u64;
        Ok(())
    }

    fn pad(&mut self) -> io::Result<()> {
        // offset % 4 < 4, so the cast is exact.
        #[allow(clippy::cast_possible_truncation)]
        let n = ((4 - self.offset % 4) % 4) as usize;
        self.put(&[0u8; 3][..n])
    }

    fn header(&mut self, name: &str, meta: Meta, size: u32, rdev: (u32, u32)) -> io::Result<()> {
        let name = name.trim_start_matches('/');
        let namesize = u32::try_from(name.len() + 1).map_err(|_| io::ErrorKind::InvalidInput)?;
        let ino = self.next_ino;
        self.next_ino += 1;
        let fields = [
            ino, meta.mode, meta.uid, meta.gid, 1, meta.mtime, size, 0, 0, rdev.0, rdev.1,
            namesize, 0,
        ];
        let mut h = String::with_capacity(110);
        h.push_str(MAGIC);
        for f in fields {
            h.push_str(&format!("{f:08x}"));
        }
        self.put(h.as_bytes())?;
        self.put(name.as_bytes())?;
        self.put(&[0])?;
        self.pad()
    }

    /// A directory.
    pub fn dir(&mut self, name: &str, meta: Meta) -> io::Result<()> {
        self.header(
            name,
            Meta {
                mode: S_IFDIR | (meta.mode & 0o7777),
                ..meta
            },
            0,
            (0, 0),
        )
    }

    /// A regular file with the given content.
    pub fn file_bytes(&mut self, name: &str, meta: Meta, data: &[u8]) -> io::Result<()> {
        let size = u32::try_from(data.len()).map_err(|_| io::ErrorKind::InvalidInput)?;
        self.header(
            name,
            Meta {
                mode: S_IFREG | (meta.mode & 0o7777),
                ..meta
            },
            size,
            (0, 0),
        )?;
        self.put(data)?;
        self.pad()
    }

    /// A symlink to `target`.
    pub fn symlink(&mut self, name: &str, meta: Meta, target: &[u8]) -> io::Result<()> {
        let size = u32::try_from(target.len()).map_err(|_| io::ErrorKind::InvalidInput)?;
        self.header(
            name,
            Meta {
                mode: S_IFLNK | 0o777,
                ..meta
            },
            size,
            (0, 0),
        )?;
        self.put(target)?;
        self.pad()
    }

    /// A character device node.
    pub fn char_dev(&mut self, name: &str, meta: Meta, major: u32, minor: u32) -> io::Result<()> {
        self.header(
            name,
            Meta {
                mode: S_IFCHR | (meta.mode & 0o7777),
                ..meta
            },
            0,
            (major, minor),
        )
    }

    /// Copies the host file `path` (exactly `meta`'s size) as `name`.
    fn file_from(
        &mut self,
        name: &str,
        path: &Path,
        m: &std::fs::Metadata,
    ) -> Result<(), TreeError> {
        let size = u32::try_from(m.len()).map_err(|_| TreeError::TooLarge(m.len()))?;
        let mut f = File::open(path).map_err(TreeError::Read)?;
        self.header(name, Meta::of(m), size, (0, 0))
            .map_err(TreeError::Write)?;
        let mut left = u64::from(size);
        let mut buf = vec![0u8; 64 << 10];
        while left > 0 {
            let want = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
            let n = f.read(&mut buf[..want]).map_err(TreeError::Read)?;
            if n == 0 {
                return Err(TreeError::Changed);
            }
            self.put(&buf[..n]).map_err(TreeError::Write)?;
            left -= n as u64;
        }
        self.pad().map_err(TreeError::Write)
    }

    /// Copies the host tree `dir` under `prefix` (the directory itself becomes `prefix`).
    pub fn tree(&mut self, dir: &Path, prefix: &str) -> Result<TreeStats, InitramfsError> {
        let mut stats = TreeStats::default();
        self.tree_at(dir, prefix, &mut stats)?;
        Ok(stats)
    }

    fn tree_at(
        &mut self,
        path: &Path,
        name: &str,
        stats: &mut TreeStats,
    ) -> Result<(), InitramfsError> {
        let err = |e: TreeError| e.at(path);
        let m = std::fs::symlink_metadata(path).map_err(|e| err(TreeError::Read(e)))?;
        let kind = m.mode() & S_IFMT;
        stats.entries += 1;
        match kind {
            S_IFDIR => {
                self.dir(name, Meta::of(&m))
                    .map_err(|e| err(TreeError::Write(e)))?;
                let mut children: Vec<_> = std::fs::read_dir(path)
                    .and_then(|rd| {
                        rd.map(|e| e.map(|e| e.file_name()))
                            .collect::<io::Result<Vec<_>>>()
                    })
                    .map_err(|e| err(TreeError::Read(e)))?;
                children.sort();
                for c in children {
                    let child_name = format!("{name}/{}", c.to_string_lossy());
                    self.tree_at(&path.join(&c), &child_name, stats)?;
                }
                Ok(())
            }
            S_IFREG => self.file_from(name, path, &m).map_err(err),
            S_IFLNK => {
                let target = std::fs::read_link(path).map_err(|e| err(TreeError::Read(e)))?;
                let bytes = std::os::unix::ffi::OsStrExt::as_bytes(target.as_os_str());
                self.symlink(name, Meta::of(&m), bytes)
                    .map_err(|e| err(TreeError::Write(e)))
            }
            _ => {
                stats.entries -= 1;
                stats.skipped += 1;
                Ok(())
            }
        }
    }

    /// Writes the trailer and returns the sink.
    pub fn finish(mut self) -> io::Result<W> {
        self.header("TRAILER!!!", Meta::root(0), 0, (0, 0))?;
        self.out.flush()?;
        Ok(self.out)
    }
}

/// Internal: a tree error before the path is known.
enum TreeError {
    Read(io::Error),
    Write(io::Error),
    TooLarge(u64),
    Changed,
}

impl TreeError {
    fn at(self, path: &Path) -> InitramfsError {
        let path = path.to_path_buf();
        match self {
            TreeError::Read(source) => InitramfsError::Read { path, source },
            TreeError::Write(source) => InitramfsError::Write { path, source },
            TreeError::TooLarge(size) => InitramfsError::TooLarge { path, size },
            TreeError::Changed => InitramfsError::Changed { path },
        }
    }
}

/// What goes into a run's initramfs.
#[derive(Debug)]
pub struct Contents<'a> {
    /// The static guest init (becomes `/init`).
    pub init: &'a Path,
    /// The config file's text.
    pub config: &'a str,
    /// The workload's root filesystem directory.
    pub rootfs: &'a Path,
}

/// Writes the run's initramfs to `out`; returns its size in bytes.
pub fn write_initramfs(out: &Path, c: &Contents<'_>) -> Result<u64, InitramfsError> {
    let werr = |source| InitramfsError::Write {
        path: out.to_path_buf(),
        source,
    };
    let file = File::create(out).map_err(werr)?;
    let mut w = CpioWriter::new(BufWriter::with_capacity(256 << 10, file));
    let dir = Meta::root(0o755);
    for d in ["dev", "proc", "sys", "isol"] {
        w.dir(d, dir).map_err(werr)?;
    }
    w.char_dev("dev/console", Meta::root(0o600), 5, 1)
        .map_err(werr)?;
    let init = std::fs::read(c.init).map_err(|source| InitramfsError::Read {
        path: c.init.to_path_buf(),
        source,
    })?;
    w.file_bytes("init", Meta::root(0o755), &init)
        .map_err(werr)?;
    w.file_bytes(CONFIG_PATH, Meta::root(0o600), c.config.as_bytes())
        .map_err(werr)?;
    w.tree(c.rootfs, ROOTFS_PATH)?;
    let size = w.len();
    w.finish().map_err(werr)?;
    Ok(size)
}

#[cfg(test)]
mod tests;
