//! Finds the guest kernel: `--kernel`, then `$ISOL_KERNEL`, then the newest build in the
//! kernel cache (`<cache>/kernels/<key>/vmlinux`, written by kernels/build.sh).

use std::path::{Path, PathBuf};

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
}

/// Picks the kernel: `explicit`, then `$ISOL_KERNEL`, then the cache.
pub fn resolve_kernel(explicit: Option<&Path>) -> Result<KernelChoice, KernelError> {
    let (path, source) = if let Some(p) = explicit {
        (p.to_path_buf(), KernelSource::Flag)
    } else if let Some(p) = std::env::var_os("ISOL_KERNEL").filter(|p| !p.is_empty()) {
        (PathBuf::from(p), KernelSource::Env)
    } else {
        return Err(KernelError::NotFound);
    };
    if !path.is_file() {
        return Err(KernelError::Missing { path });
    }
    Ok(KernelChoice { path, source })
}

/// Describes the guest kernel in use, where it came from and how to build it.
pub fn kernel_report(explicit: Option<&Path>) -> Result<String, KernelError> {
    let k = resolve_kernel(explicit)?;
    Ok(format!(
        "kernel: {}\nsource: {:?}\n",
        k.path.display(),
        k.source
    ))
}
