//! A VM run's private directory, `<run_dir>/vm/<pid>-<nanos>/`: the initramfs and the
//! console log live there. It is removed when the run ends (on every path: [`Drop`]), and
//! [`gc`] removes the directories of isol processes that were killed (the `owner` file
//! records the pid and its start time, so a reused pid is not mistaken for the owner).

use std::io;
use std::path::{Path, PathBuf};

/// The owner record's file name.
const OWNER: &str = "owner";

/// A run directory, removed on drop.
#[derive(Debug)]
pub struct RunDir {
    path: PathBuf,
}

/// `<run_dir>/vm`.
pub fn vm_runs_dir() -> PathBuf {
    isol_common::paths::run_dir().join("vm")
}

/// The start time (clock ticks since boot) of `pid`, field 22 of /proc/PID/stat.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_comm = &stat[stat.rfind(')')? + 1..];
    after_comm.split_whitespace().nth(19)?.parse().ok()
}

fn owner_record(pid: u32) -> String {
    format!("{pid} {}\n", start_time(pid).unwrap_or(0))
}

impl RunDir {
    /// Creates a fresh directory under `parent` owned by this process.
    pub fn create_in(parent: &Path) -> io::Result<RunDir> {
        std::fs::create_dir_all(parent)?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let path = parent.join(format!("{}-{nanos}", std::process::id()));
        std::fs::create_dir(&path)?;
        let dir = RunDir { path };
        std::fs::write(dir.path.join(OWNER), owner_record(std::process::id()))?;
        Ok(dir)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Whether the owner recorded in `dir` is gone.
fn orphaned(dir: &Path) -> bool {
    let Ok(rec) = std::fs::read_to_string(dir.join(OWNER)) else {
        // No record yet (a run being created) or killed before writing it: judge by the
        // pid in the name; a name without one is not ours to remove.
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned());
        let pid = name.and_then(|n| n.split('-').next().and_then(|p| p.parse::<u32>().ok()));
        return pid.is_some_and(|p| start_time(p).is_none());
    };
    let mut parts = rec.split_whitespace();
    let pid: Option<u32> = parts.next().and_then(|p| p.parse().ok());
    let started: Option<u64> = parts.next().and_then(|s| s.parse().ok());
    match (pid, started) {
        (Some(pid), Some(started)) => start_time(pid) != Some(started),
        // A record cut short by a kill during its write.
        _ => true,
    }
}

/// Removes the run directories under `parent` whose owner is gone; returns them.
pub fn gc_in(parent: &Path) -> io::Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(parent) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut removed = Vec::new();
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() && orphaned(&p) {
            std::fs::remove_dir_all(&p)?;
            removed.push(p);
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_rundir_removed_on_drop() {
        let t = tempfile::tempdir().unwrap();
        let d = RunDir::create_in(t.path()).unwrap();
        let p = d.path().to_path_buf();
        std::fs::write(p.join("initramfs.cpio"), b"x").unwrap();
        drop(d);
        assert!(!p.exists());
    }

    #[test]
    fn test_gc_removes_only_orphans() {
        let t = tempfile::tempdir().unwrap();
        let live = RunDir::create_in(t.path()).unwrap();
        let dead = t.path().join("999999999-1");
        std::fs::create_dir(&dead).unwrap();
        std::fs::write(dead.join(OWNER), "999999999 1\n").unwrap();
        let reused = t.path().join("1-2");
        std::fs::create_dir(&reused).unwrap();
        std::fs::write(reused.join(OWNER), "1 123456789\n").unwrap(); // pid 1 started at 0-ish
        let creating = t.path().join(format!("{}-3", std::process::id()));
        std::fs::create_dir(&creating).unwrap(); // no owner record yet, owner alive
        let foreign = t.path().join("not-ours");
        std::fs::create_dir(&foreign).unwrap();
        let removed = gc_in(t.path()).unwrap();
        assert!(creating.exists() && foreign.exists());
        assert!(live.path().exists());
        assert!(!dead.exists());
        assert!(!reused.exists());
        assert_eq!(removed.len(), 2);
    }
}
