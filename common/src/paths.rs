//! Where isol keeps what it builds once and reuses: the default root filesystem and the
//! guest kernels. Outside any repository: `$ISOL_CACHE_DIR`, else `$XDG_CACHE_HOME/isol`,
//! else `$HOME/.cache/isol`, else `/var/cache/isol`.

use std::path::PathBuf;

/// The cache directory (not created here).
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("ISOL_CACHE_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("isol");
    }
    if let Some(d) = std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join(".cache/isol");
    }
    PathBuf::from("/var/cache/isol")
}

/// Where per-run state lives (overlay dirs, initramfs files, run records for `isol gc`):
/// `$ISOL_RUN_DIR`, else `/run/isol`. A tmpfs on most hosts, so a reboot clears it.
pub fn run_dir() -> PathBuf {
    match std::env::var_os("ISOL_RUN_DIR").filter(|d| !d.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from("/run/isol"),
    }
}
