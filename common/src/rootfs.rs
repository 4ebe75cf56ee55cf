//! The default root filesystem: Debian's static busybox and its applet links, built once
//! into `<cache>/rootfs/busybox-<hash>` and reused by both modes. Built in a temporary
//! directory beside it and renamed into place, so a killed build never leaves a half tree.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where Debian's busybox-static package puts the binary.
pub const BUSYBOX: &str = "/bin/busybox";

/// The default rootfs could not be made.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    /// No static busybox on the host.
    #[error("No static busybox at {path}: install it with `apt-get install busybox-static` (see README setup), or pass --rootfs DIR")]
    NoBusybox {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// busybox is there but is dynamically linked, so it cannot run in an empty rootfs.
    #[error(
        "{path} is not statically linked; install Debian's busybox-static, or pass --rootfs DIR"
    )]
    NotStatic {
        /// The binary.
        path: PathBuf,
    },
    /// A file operation failed while building.
    #[error("Cannot build the default rootfs at {path}")]
    Io {
        /// The path being written.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> RootfsError + '_ {
    move |source| RootfsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// FNV-1a, 64 bit: enough to key a cache entry by the busybox binary's content.
fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Returns the default rootfs directory, building it on first use.
pub fn default_rootfs() -> Result<PathBuf, RootfsError> {
    ensure_rootfs(
        Path::new(BUSYBOX),
        &crate::paths::cache_dir().join("rootfs"),
    )
}

/// Identity and version of a file (device, inode, size, ctime): a changed binary gets a
/// new key, so it is read and hashed again.
fn stat_key(path: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let m = fs::metadata(path).ok()?;
    Some(format!(
        "{:x}-{:x}-{:x}-{}.{}",
        m.dev(),
        m.ino(),
        m.size(),
        m.ctime(),
        m.ctime_nsec()
    ))
}

/// Builds (or finds) a busybox rootfs for `busybox` under `cache`. Reading and hashing
/// the 2 MB binary costs milliseconds, so the result is remembered per [`stat_key`] in a
/// `.by-stat-KEY` symlink naming the rootfs directory.
pub fn ensure_rootfs(busybox: &Path, cache: &Path) -> Result<PathBuf, RootfsError> {
    let index = stat_key(busybox).map(|k| cache.join(format!(".by-stat-{k}")));
    if let Some(name) = index.as_ref().and_then(|i| fs::read_link(i).ok()) {
        let dir = cache.join(name);
        if dir.join(".complete").exists() {
            return Ok(dir);
        }
    }
    let dir = ensure_rootfs_by_hash(busybox, cache)?;
    if let (Some(i), Some(name)) = (index, dir.file_name()) {
        let tmp = i.with_extension(format!("tmp{}", std::process::id()));
        let _ = fs::remove_file(&tmp);
        if std::os::unix::fs::symlink(name, &tmp).is_ok() && fs::rename(&tmp, &i).is_err() {
            let _ = fs::remove_file(&tmp);
        }
    }
    Ok(dir)
}

fn ensure_rootfs_by_hash(busybox: &Path, cache: &Path) -> Result<PathBuf, RootfsError> {
    let bin = fs::read(busybox).map_err(|_| RootfsError::NoBusybox {
        path: busybox.to_path_buf(),
    })?;
    // A dynamic ELF has a PT_INTERP segment naming ld.so. (Searching for the string
    // "ld-linux" is not enough: static busybox contains it for its ldd applet.)
    if !crate::elf::is_static_elf(&bin) {
        return Err(RootfsError::NotStatic {
            path: busybox.to_path_buf(),
        });
    }
    let dir = cache.join(format!("busybox-{:016x}", fnv1a(&bin)));
    if dir.join(".complete").exists() {
        return Ok(dir);
    }
    fs::create_dir_all(cache).map_err(io_err(cache))?;
    let tmp = cache.join(format!(".build-{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    let built = build(busybox, &bin, &tmp);
    if let Err(e) = built {
        let _ = fs::remove_dir_all(&tmp);
        return Err(e);
    }
    match fs::rename(&tmp, &dir) {
        Ok(()) => Ok(dir),
        // Another isol built it at the same time: keep theirs.
        Err(_) if dir.join(".complete").exists() => {
            let _ = fs::remove_dir_all(&tmp);
            Ok(dir)
        }
        Err(e) => {
            let _ = fs::remove_dir_all(&tmp);
            Err(RootfsError::Io {
                path: dir,
                source: e,
            })
        }
    }
}

const DIRS: &[&str] = &[
    "bin", "sbin", "usr/bin", "usr/sbin", "etc", "proc", "sys", "dev", "tmp", "root", "home",
    "var/tmp", "run", "mnt",
];

const FILES: &[(&str, &str)] = &[
    (
        "etc/passwd",
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
    ),
    ("etc/group", "root:x:0:\nnogroup:x:65534:\n"),
    ("etc/hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost\n"),
    (
        "etc/os-release",
        "NAME=\"isol busybox rootfs\"\nID=isol-busybox\n",
    ),
];

fn build(busybox: &Path, bin: &[u8], root: &Path) -> Result<(), RootfsError> {
    for d in DIRS {
        let p = root.join(d);
        fs::create_dir_all(&p).map_err(io_err(&p))?;
    }
    use std::os::unix::fs::PermissionsExt;
    for d in ["tmp", "var/tmp"] {
        let p = root.join(d);
        fs::set_permissions(&p, fs::Permissions::from_mode(0o1777)).map_err(io_err(&p))?;
    }
    let target = root.join("bin/busybox");
    fs::write(&target, bin).map_err(io_err(&target))?;
    fs::set_permissions(&target, fs::Permissions::from_mode(0o755)).map_err(io_err(&target))?;
    for (name, content) in FILES {
        let p = root.join(name);
        fs::write(&p, content).map_err(io_err(&p))?;
    }
    let out = Command::new(busybox)
        .arg("--list-full")
        .output()
        .map_err(io_err(busybox))?;
    for applet in String::from_utf8_lossy(&out.stdout).lines() {
        let applet = applet.trim();
        if applet.is_empty() || applet == "bin/busybox" || applet.contains("..") {
            continue;
        }
        let link = root.join(applet);
        if link.exists() {
            continue;
        }
        std::os::unix::fs::symlink("/bin/busybox", &link).map_err(io_err(&link))?;
    }
    let marker = root.join(".complete");
    fs::write(&marker, b"").map_err(io_err(&marker))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_ensure_rootfs_missing_busybox_says_what_to_install() {
        let tmp = tempfile::tempdir().unwrap();
        let e = ensure_rootfs(&tmp.path().join("nope"), tmp.path()).unwrap_err();
        assert!(e.to_string().contains("busybox-static"), "{e}");
    }

    /// A minimal ELF64 x86-64 executable header with one program header of type `p_type`.
    fn elf64_with_phdr(p_type: u32) -> Vec<u8> {
        let mut b = vec![0u8; 0x40 + 0x38];
        b[..7].copy_from_slice(b"\x7fELF\x02\x01\x01");
        b[0x10..0x12].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
        b[0x12..0x14].copy_from_slice(&0x3eu16.to_le_bytes()); // EM_X86_64
        b[0x14..0x18].copy_from_slice(&1u32.to_le_bytes());
        b[0x20..0x28].copy_from_slice(&0x40u64.to_le_bytes()); // e_phoff
        b[0x34..0x36].copy_from_slice(&0x40u16.to_le_bytes()); // e_ehsize
        b[0x36..0x38].copy_from_slice(&0x38u16.to_le_bytes()); // e_phentsize
        b[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes()); // e_phnum
        b[0x40..0x44].copy_from_slice(&p_type.to_le_bytes());
        b
    }

    #[test]
    fn test_ensure_rootfs_dynamic_binary_rejected() {
        // A well-formed ELF64 whose only program header is PT_INTERP (3): rejected for
        // that header, as the same file with PT_LOAD (1) instead shows (it gets past the
        // check and fails later, running it).
        let tmp = tempfile::tempdir().unwrap();
        let fake = tmp.path().join("bb");
        fs::write(&fake, elf64_with_phdr(3)).unwrap();
        assert!(matches!(
            ensure_rootfs(&fake, &tmp.path().join("c1")),
            Err(RootfsError::NotStatic { .. })
        ));
        fs::write(&fake, elf64_with_phdr(1)).unwrap();
        assert!(matches!(
            ensure_rootfs(&fake, &tmp.path().join("c2")),
            Err(RootfsError::Io { .. })
        ));
    }

    #[test]
    fn test_ensure_rootfs_remembers_by_stat_and_rebuilds_on_change() {
        // A real build from a copy of Debian's static busybox (appending a byte to an ELF
        // file leaves it runnable, and changes its content hash).
        // (Named busybox: busybox answers --list-full only under its own name.)
        let tmp = tempfile::tempdir().unwrap();
        let bb = tmp.path().join("busybox");
        fs::copy(BUSYBOX, &bb).expect("/bin/busybox: apt-get install busybox-static");
        let cache = tmp.path().join("cache");
        let first = ensure_rootfs(&bb, &cache).unwrap();
        assert!(first.join(".complete").exists() && first.join("bin/sh").is_symlink());
        let key = stat_key(&bb).unwrap();
        assert_eq!(
            fs::read_link(cache.join(format!(".by-stat-{key}"))).unwrap(),
            first.file_name().unwrap()
        );
        // Second call: answered from the index.
        assert_eq!(ensure_rootfs(&bb, &cache).unwrap(), first);
        // A changed binary: new stat key, new content, so a new rootfs holding it.
        let mut bin = fs::read(&bb).unwrap();
        bin.push(0);
        fs::write(&bb, &bin).unwrap();
        assert_ne!(
            stat_key(&bb).unwrap(),
            key,
            "a changed binary has a new key"
        );
        let second = ensure_rootfs(&bb, &cache).unwrap();
        assert_ne!(second, first, "the changed binary was not rebuilt");
        assert!(fs::read(second.join("bin/busybox")).unwrap() == bin);
        assert!(fs::read(first.join("bin/busybox")).unwrap() != bin);
    }

    #[test]
    fn test_fnv1a_known_value() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
