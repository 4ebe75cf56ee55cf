//! The tiny test guests (assembled with binutils by vmm/tests/guests/build.sh), and where
//! a VMM runs: one copy for the black-box tests (through `support`) and vmm's own
//! integration tests (which include this file by path).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

/// The repository's root, from whichever package's tests include this file.
fn repo_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .find(|d| d.join("vmm/tests/guests/build.sh").exists())
        .unwrap_or(manifest)
        .to_path_buf()
}

/// Assembles the guests of `src` (relative to the repository: `vmm/tests/guests` or
/// `tests/vm_guests`) into the target's test tmpdir under `tag`, once per test process,
/// and returns that directory. `NAME-raw.s` becomes `NAME-raw.bin` (isol's raw real-mode
/// image), `NAME.s` becomes `NAME` (ELF64 with a PVH note).
pub fn tiny_guests(tag: &str, src: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<Vec<PathBuf>>> = OnceLock::new();
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(tag);
    let built = BUILT.get_or_init(|| Mutex::new(Vec::new()));
    let mut built = built.lock().unwrap_or_else(|p| p.into_inner());
    if built.contains(&dir) {
        return dir;
    }
    let root = repo_root();
    let script = root.join("vmm/tests/guests/build.sh");
    let out = Command::new("sh")
        .arg(&script)
        .arg(&dir)
        .arg(root.join(src))
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "assembling the tiny guests of {src} failed (needs binutils: apt-get install binutils):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    built.push(dir.clone());
    dir
}

/// The VMM's own tiny guest `name` (vmm/tests/guests), assembled under `tag`.
pub fn vmm_guest(tag: &str, name: &str) -> PathBuf {
    tiny_guests(tag, "vmm/tests/guests").join(name)
}

/// The channel-speaking raw guest `name` (tests/vm_guests/NAME-raw.s), assembled under
/// `tag`.
pub fn channel_guest(tag: &str, name: &str) -> PathBuf {
    tiny_guests(tag, "tests/vm_guests").join(format!("{name}-raw.bin"))
}

/// The process that runs the VMM's threads: isol's child (the jailed VMM) if it has one,
/// else isol itself (`--vmm-jail off`).
pub fn vmm_of(isol: u32) -> u32 {
    std::fs::read_to_string(format!("/proc/{isol}/task/{isol}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .find_map(|p| p.parse().ok())
        .unwrap_or(isol)
}
