//! The jailed VMM's own cgroup, `isol-vmm/<run name>`: memory capped at guest RAM plus
//! [`VMM_OVERHEAD`] (guest RAM is anonymous memory of the VMM, so the cap bounds what
//! device emulation, 9P buffers and page cache may add to it), and at most [`pids_max`]
//! threads. On cgroup2 it hangs off the root (cgroup2 forbids processes in inner
//! nodes); on cgroup v1 off isol's own cgroup in the memory and pids hierarchies, as
//! the container backend's cgroups do. A controller the host does not mount is skipped.
//!
//! isol moves the VMM in while the VMM builds its jail and machine, and lets it run the
//! guest only afterwards: what the guest can drive is charged here; the VMM's own setup
//! before the move (its jail's tmpfs, loading the kernel) stays charged to isol's
//! cgroup. isol removes the (then empty)
//! directories after reaping it, and `isol gc` removes those whose run directory is gone.

use std::io;
use std::path::{Path, PathBuf};

use super::VmmJailError;

/// What the VMM may use on top of guest RAM.
pub const VMM_OVERHEAD: u64 = 256 << 20;

/// The parent directory's name in each hierarchy.
pub const PARENT: &str = "isol-vmm";

/// Threads of a VMM with `vcpus` vCPUs: the vCPUs, a worker per virtio slot, the
/// channel's host threads and the main thread, with room to spare.
pub fn pids_max(vcpus: u8) -> u64 {
    64 + u64::from(vcpus)
}

/// The cgroup root (tests use a tempdir through the `_in` functions).
fn root() -> PathBuf {
    PathBuf::from("/sys/fs/cgroup")
}

/// The parent directories `isol-vmm` with the limit files each one's runs get:
/// `(parent, [(file, is_memory)])`.
fn parents(root: &Path, self_cgroup: &str) -> Vec<(PathBuf, Vec<(&'static str, bool)>)> {
    if root.join("cgroup.controllers").exists() {
        return vec![(
            root.join(PARENT),
            vec![("memory.max", true), ("pids.max", false)],
        )];
    }
    let mut v = Vec::new();
    for (ctrl, file, memory) in [
        ("memory", "memory.limit_in_bytes", true),
        ("pids", "pids.max", false),
    ] {
        let mount = root.join(ctrl);
        if !mount.join("cgroup.procs").exists() {
            continue;
        }
        let own = self_cgroup
            .lines()
            .filter_map(|l| {
                let mut f = l.splitn(3, ':').skip(1);
                f.next().zip(f.next())
            })
            .find(|(ctrls, _)| ctrls.split(',').any(|c| c == ctrl))
            .map_or("/", |(_, p)| p);
        let own = own.trim_start_matches('/');
        v.push((mount.join(own).join(PARENT), vec![(file, memory)]));
    }
    v
}

fn self_cgroup() -> String {
    std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default()
}

/// A VMM's cgroup directories (one per hierarchy), removed on drop.
#[derive(Debug, Default)]
pub struct VmmCgroup {
    dirs: Vec<PathBuf>,
}

fn err(path: &Path) -> impl FnOnce(io::Error) -> VmmJailError + '_ {
    move |source| VmmJailError::Cgroup {
        path: path.to_path_buf(),
        source,
    }
}

fn mkdir(p: &Path) -> io::Result<()> {
    match std::fs::create_dir(p) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        r => r,
    }
}

impl VmmCgroup {
    /// Creates `isol-vmm/<name>` in every hierarchy, with the limits for `guest_ram`
    /// bytes of guest RAM and `vcpus` vCPUs.
    pub fn create(name: &str, guest_ram: u64, vcpus: u8) -> Result<VmmCgroup, VmmJailError> {
        VmmCgroup::create_in(&root(), &self_cgroup(), name, guest_ram, vcpus)
    }

    fn create_in(
        root: &Path,
        self_cgroup: &str,
        name: &str,
        guest_ram: u64,
        vcpus: u8,
    ) -> Result<VmmCgroup, VmmJailError> {
        let mut cg = VmmCgroup::default();
        for (parent, files) in parents(root, self_cgroup) {
            mkdir(&parent).map_err(err(&parent))?;
            if root.join("cgroup.controllers").exists() {
                // Best effort: systemd hosts have both enabled at the root already.
                let _ = std::fs::write(root.join("cgroup.subtree_control"), "+memory +pids");
                let _ = std::fs::write(parent.join("cgroup.subtree_control"), "+memory +pids");
            }
            let dir = parent.join(name);
            mkdir(&dir).map_err(err(&dir))?;
            cg.dirs.push(dir.clone());
            for (file, memory) in files {
                let value = match memory {
                    true => guest_ram.saturating_add(VMM_OVERHEAD),
                    false => pids_max(vcpus),
                };
                let path = dir.join(file);
                // A controller not enabled here has no file: skip it, never create it.
                if path.exists() {
                    std::fs::write(&path, value.to_string()).map_err(err(&path))?;
                }
            }
        }
        Ok(cg)
    }

    /// Moves process `pid` (the VMM, by isol, while the VMM builds its jail) into the
    /// cgroup. On cgroup v1 a move waits for an RCU grace period (10-20 ms here), which
    /// is why isol makes it concurrently with the VMM's setup instead of the VMM itself.
    pub fn attach(&self, pid: i32) -> Result<(), VmmJailError> {
        for d in &self.dirs {
            let procs = d.join("cgroup.procs");
            std::fs::write(&procs, pid.to_string()).map_err(err(&procs))?;
        }
        Ok(())
    }

    /// The directories.
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }
}

impl Drop for VmmCgroup {
    fn drop(&mut self) {
        for d in &self.dirs {
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// Removes the VMM cgroups whose run is gone (`live(name)` false); returns them.
pub fn gc(live: &dyn Fn(&str) -> bool) -> Vec<PathBuf> {
    gc_in(&root(), &self_cgroup(), live)
}

fn gc_in(root: &Path, self_cgroup: &str, live: &dyn Fn(&str) -> bool) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    for (parent, _) in parents(root, self_cgroup) {
        let Ok(entries) = std::fs::read_dir(&parent) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let p = e.path();
            if p.is_dir() && !live(&name) && std::fs::remove_dir(&p).is_ok() {
                removed.push(p);
            }
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    const SELF_V1: &str = "9:name=systemd:/\n8:pids:/\n4:memory:/outer/me\n0::/\n";

    fn v1_root() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        for d in ["memory/outer/me", "pids"] {
            std::fs::create_dir_all(t.path().join(d)).unwrap();
        }
        std::fs::write(t.path().join("memory/cgroup.procs"), "").unwrap();
        std::fs::write(t.path().join("pids/cgroup.procs"), "").unwrap();
        t
    }

    #[test]
    fn test_v1_under_own_cgroup_with_limits_and_removed_on_drop() {
        let t = v1_root();
        let r = t.path();
        // The kernel makes the limit files; a tempdir needs them made first.
        for d in ["memory/outer/me/isol-vmm/run1", "pids/isol-vmm/run1"] {
            std::fs::create_dir_all(r.join(d)).unwrap();
        }
        std::fs::write(
            r.join("memory/outer/me/isol-vmm/run1/memory.limit_in_bytes"),
            "",
        )
        .unwrap();
        std::fs::write(r.join("pids/isol-vmm/run1/pids.max"), "").unwrap();
        let cg = VmmCgroup::create_in(r, SELF_V1, "run1", 1 << 30, 2).unwrap();
        assert_eq!(
            cg.dirs(),
            [
                r.join("memory/outer/me/isol-vmm/run1"),
                r.join("pids/isol-vmm/run1")
            ]
        );
        let read = |f: &str| std::fs::read_to_string(r.join(f)).unwrap();
        let mem = read("memory/outer/me/isol-vmm/run1/memory.limit_in_bytes");
        assert_eq!(mem, ((1u64 << 30) + VMM_OVERHEAD).to_string());
        assert_eq!(read("pids/isol-vmm/run1/pids.max"), "66");
        // Drop removes empty cgroup directories (here: those whose files were removed).
        for f in [
            "memory/outer/me/isol-vmm/run1/memory.limit_in_bytes",
            "pids/isol-vmm/run1/pids.max",
        ] {
            std::fs::remove_file(r.join(f)).unwrap();
        }
        drop(cg);
        assert!(!r.join("pids/isol-vmm/run1").exists());
        assert!(!r.join("memory/outer/me/isol-vmm/run1").exists());
    }

    #[test]
    fn test_v2_parent_at_root_and_missing_controller_skipped() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        std::fs::write(r.join("cgroup.controllers"), "memory pids").unwrap();
        let cg = VmmCgroup::create_in(r, "0::/user.slice\n", "run2", 64 << 20, 1).unwrap();
        assert_eq!(cg.dirs(), [r.join("isol-vmm/run2")]);
        // No limit file was created where the controller is not enabled.
        assert!(!r.join("isol-vmm/run2/memory.max").exists());
    }

    #[test]
    fn test_gc_removes_only_dead_runs() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        std::fs::write(r.join("cgroup.controllers"), "").unwrap();
        for n in ["dead", "live"] {
            std::fs::create_dir_all(r.join("isol-vmm").join(n)).unwrap();
        }
        let removed = gc_in(r, "", &|n| n == "live");
        assert_eq!(removed, [r.join("isol-vmm/dead")]);
        assert!(r.join("isol-vmm/live").exists());
    }
}
