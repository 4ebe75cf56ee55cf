//! The guest's initramfs, written at run time: an uncompressed newc cpio archive (the
//! format the kernel unpacks into its root tmpfs) holding `/init` (the static guest init),
//! `/dev/console` and the init's config at [`CONFIG_PATH`]. Nothing of the workload's: the
//! VMM serves its root filesystem and volumes over virtio-9p, so a run costs the same
//! whatever the size of its rootfs. Uncompressed, so the kernel only copies.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::channel::protocol::CONFIG_PATH;

/// newc's magic.
const MAGIC: &str = "070701";
/// The file type bits of st_mode.
#[cfg(test)]
const S_IFMT: u32 = 0o170_000;
const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFCHR: u32 = 0o020_000;

/// Errors while writing the initramfs.
#[derive(Debug, thiserror::Error)]
pub enum InitramfsError {
    /// Reading the guest init failed.
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

    /// Writes the trailer and returns the sink.
    pub fn finish(mut self) -> io::Result<W> {
        self.header("TRAILER!!!", Meta::root(0), 0, (0, 0))?;
        self.out.flush()?;
        Ok(self.out)
    }
}

/// What goes into a run's initramfs.
#[derive(Debug)]
pub struct Contents<'a> {
    /// The static guest init (becomes `/init`).
    pub init: &'a Path,
    /// The config file's text.
    pub config: &'a str,
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
    let size = w.len();
    w.finish().map_err(werr)?;
    Ok(size)
}

#[cfg(test)]
mod tests;
