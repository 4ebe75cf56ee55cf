//! Finds the guest kernel: `--kernel`, then `$ISOL_KERNEL`, then the kernel cache
//! (`<cache>/kernels/default/vmlinux`, the symlink kernels/build.sh points at its newest
//! build, else the newest `<cache>/kernels/<key>/vmlinux`), and describes it for
//! `isol kernel`: where it came from, its build info, and whether its ELF notes carry a PVH
//! entry point (`XEN_ELFNOTE_PHYS32_ENTRY`, type 18, owner "Xen"), the entry isol's VMM
//! uses to boot an uncompressed vmlinux directly.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// How to build the default kernel (shown in errors and reports).
pub const BUILD_HINT: &str = "kernels/build.sh";
/// ELF note type of the 32-bit PVH entry point (Xen's public/elfnote.h).
pub const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;
/// Largest kernel file whose ELF notes are read (bytes): a vmlinux is tens of MB.
const MAX_KERNEL_BYTES: u64 = 512 << 20;

/// Where the kernel in use came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelSource {
    /// `--kernel FILE`.
    Flag,
    /// `$ISOL_KERNEL`.
    Env,
    /// The kernel cache.
    Cache,
}

/// The kernel to boot.
#[derive(Debug, Clone)]
pub struct KernelChoice {
    /// The image.
    pub path: PathBuf,
    /// Where the choice came from.
    pub source: KernelSource,
}

/// No usable kernel.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// Nothing found.
    #[error("No guest kernel found: build one with `kernels/build.sh` (see README), or pass --kernel FILE / set ISOL_KERNEL")]
    NotFound,
    /// The given file does not exist.
    #[error("Guest kernel {path} does not exist")]
    Missing {
        /// The path given.
        path: PathBuf,
    },
    /// The kernel file cannot be read.
    #[error("Cannot read guest kernel {path}")]
    Read {
        /// The kernel file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Picks the kernel: `explicit`, then `$ISOL_KERNEL`, then the cache.
pub fn resolve_kernel(explicit: Option<&Path>) -> Result<KernelChoice, KernelError> {
    resolve_from(
        explicit,
        std::env::var_os("ISOL_KERNEL"),
        &isol_common::paths::cache_dir(),
    )
}

/// `resolve_kernel` with its inputs made explicit (for tests).
fn resolve_from(
    explicit: Option<&Path>,
    env: Option<OsString>,
    cache: &Path,
) -> Result<KernelChoice, KernelError> {
    let (path, source) = if let Some(p) = explicit {
        (p.to_path_buf(), KernelSource::Flag)
    } else if let Some(p) = env.filter(|p| !p.is_empty()) {
        (PathBuf::from(p), KernelSource::Env)
    } else {
        let path = cached_kernel(&cache.join("kernels")).ok_or(KernelError::NotFound)?;
        return Ok(KernelChoice {
            path,
            source: KernelSource::Cache,
        });
    };
    if !path.is_file() {
        return Err(KernelError::Missing { path });
    }
    Ok(KernelChoice { path, source })
}

/// The default kernel in `kernels` (`<cache>/kernels`): `default/vmlinux`, else the newest
/// `<key>/vmlinux`.
fn cached_kernel(kernels: &Path) -> Option<PathBuf> {
    let default = kernels.join("default").join("vmlinux");
    if default.is_file() {
        return Some(default);
    }
    std::fs::read_dir(kernels)
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.path().join("vmlinux"))
        .filter_map(|p| Some((p.metadata().ok()?.modified().ok()?, p)))
        .max()
        .map(|(_, p)| p)
}

/// The PVH entry point of an ELF64 kernel, if its notes have one; `None` for anything else
/// (a bzImage, an ELF without the note).
pub fn pvh_entry(path: &Path) -> Result<Option<u32>, KernelError> {
    let read_err = |source| KernelError::Read {
        path: path.to_path_buf(),
        source,
    };
    let len = std::fs::metadata(path).map_err(read_err)?.len();
    if len > MAX_KERNEL_BYTES {
        return Ok(None);
    }
    let bytes = std::fs::read(path).map_err(read_err)?;
    Ok(elf_notes(&bytes)
        .into_iter()
        .find(|n| n.name == b"Xen" && n.kind == XEN_ELFNOTE_PHYS32_ENTRY)
        .and_then(|n| Some(u32::from_le_bytes(n.desc.get(..4)?.try_into().ok()?))))
}

/// One ELF note.
#[derive(Debug, PartialEq, Eq)]
struct Note<'a> {
    name: &'a [u8],
    kind: u32,
    desc: &'a [u8],
}

/// `N` bytes of `b` at `at`, if all are inside it.
fn field<const N: usize>(b: &[u8], at: usize) -> Option<[u8; N]> {
    b.get(at..at.checked_add(N)?)?.try_into().ok()
}

fn le_u16(b: &[u8], at: usize) -> Option<u16> {
    field(b, at).map(u16::from_le_bytes)
}

fn le_u32(b: &[u8], at: usize) -> Option<u32> {
    field(b, at).map(u32::from_le_bytes)
}

fn le_u64(b: &[u8], at: usize) -> Option<usize> {
    usize::try_from(u64::from_le_bytes(field(b, at)?)).ok()
}

/// The notes in the PT_NOTE segments of a little-endian ELF64 image; empty for anything
/// else. Every offset and length is bounds-checked: a malformed file yields fewer notes.
fn elf_notes(elf: &[u8]) -> Vec<Note<'_>> {
    const PT_NOTE: u32 = 4;
    let mut notes = Vec::new();
    // e_ident: magic, ELFCLASS64 (2), ELFDATA2LSB (1).
    if elf.get(..6) != Some(b"\x7fELF\x02\x01".as_slice()) {
        return notes;
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) =
        (le_u64(elf, 0x20), le_u16(elf, 0x36), le_u16(elf, 0x38))
    else {
        return notes;
    };
    for i in 0..usize::from(phnum) {
        let ph = phoff.saturating_add(i.saturating_mul(usize::from(phentsize)));
        if le_u32(elf, ph) != Some(PT_NOTE) {
            continue;
        }
        let (Some(off), Some(size)) = (
            le_u64(elf, ph.saturating_add(8)),
            le_u64(elf, ph.saturating_add(32)),
        ) else {
            continue;
        };
        if let Some(seg) = elf.get(off..off.saturating_add(size)) {
            parse_notes(seg, &mut notes);
        }
    }
    notes
}

/// Appends the notes of one note segment (4-byte aligned name and descriptor).
fn parse_notes<'a>(mut seg: &'a [u8], out: &mut Vec<Note<'a>>) {
    let align4 = |n: usize| n.saturating_add(3) & !3;
    while seg.len() >= 12 {
        let (Some(namesz), Some(descsz), Some(kind)) =
            (le_u32(seg, 0), le_u32(seg, 4), le_u32(seg, 8))
        else {
            return;
        };
        let (namesz, descsz) = (namesz as usize, descsz as usize);
        let desc_at = 12usize.saturating_add(align4(namesz));
        let end = desc_at.saturating_add(align4(descsz));
        let (Some(name), Some(desc)) = (
            seg.get(12..12usize.saturating_add(namesz)),
            seg.get(desc_at..desc_at.saturating_add(descsz)),
        ) else {
            return;
        };
        let name = name.strip_suffix(b"\0").unwrap_or(name);
        out.push(Note { name, kind, desc });
        seg = seg.get(end..).unwrap_or_default();
    }
}

/// `KEY=VALUE` lines of the build's `info` file next to the kernel (kernels/build.sh).
fn build_info(kernel: &Path) -> Vec<(String, String)> {
    let Some(dir) = kernel.parent() else {
        return Vec::new();
    };
    std::fs::read_to_string(dir.join("info"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// Describes the guest kernel in use, where it came from and how to build it.
pub fn kernel_report(explicit: Option<&Path>) -> Result<String, KernelError> {
    let k = resolve_kernel(explicit)?;
    let pvh = pvh_entry(&k.path)?;
    Ok(render_report(&k, pvh, &build_info(&k.path)))
}

fn render_report(k: &KernelChoice, pvh: Option<u32>, info: &[(String, String)]) -> String {
    let get = |key: &str| info.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    let mut out = String::new();
    let _ = writeln!(out, "Guest kernel: {}", k.path.display());
    let from = match k.source {
        KernelSource::Flag => "--kernel".to_string(),
        KernelSource::Env => "$ISOL_KERNEL".to_string(),
        KernelSource::Cache => format!(
            "the kernel cache ({}/kernels, default build of {BUILD_HINT})",
            isol_common::paths::cache_dir().display()
        ),
    };
    let _ = writeln!(out, "  from:        {from}");
    if let Ok(m) = std::fs::metadata(&k.path) {
        let _ = writeln!(out, "  size:        {} bytes", m.len());
    }
    let _ = match pvh {
        Some(entry) => writeln!(
            out,
            "  boot:        ELF with a PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY = {entry:#x}): boots directly"
        ),
        None => writeln!(
            out,
            "  boot:        no PVH entry note (a bzImage, or an ELF built without CONFIG_PVH)"
        ),
    };
    if info.is_empty() {
        let _ = writeln!(out, "  build info:  none (not built by {BUILD_HINT})");
    } else {
        let field = |key| get(key).unwrap_or("?");
        let _ = writeln!(
            out,
            "  source:      {} (kernel {})",
            field("source"),
            field("kernel_release")
        );
        let _ = writeln!(
            out,
            "  config:      fragment sha256 {} (kernels/microvm.config), cache key {}",
            field("fragment_sha256"),
            field("key")
        );
        let _ = writeln!(
            out,
            "  built:       {} in {} s ({} CPU s), bzImage {} bytes",
            field("built"),
            field("build_seconds"),
            field("build_cpu_seconds"),
            field("bzimage_bytes")
        );
    }
    let _ = writeln!(
        out,
        "Build or rebuild the default kernel: {BUILD_HINT} (cached by config and source version; prints the path)"
    );
    out
}

#[cfg(test)]
mod tests;
