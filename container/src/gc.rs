//! Removing what killed isol runs left behind. A run whose owner (isol) is dead has at
//! most: its record directory and its cgroups (mounts lived only in its mount namespace,
//! and its init died with isol through the parent-death signal). Any process still in
//! those cgroups is killed first. Runs of live isol processes are never touched; a record
//! directory without an owner file is only taken once it is older than [`YOUNG`] (its
//! isol may be writing it right now).

use std::fs;
use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, SystemTime};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::cgroup;
use crate::record::{self, Owner, OWNER_FILE};

/// How old an owner-less record must be before it counts as abandoned.
pub const YOUNG: Duration = Duration::from_secs(30);

fn age(path: &Path) -> Duration {
    fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .unwrap_or_default()
}

/// SIGKILLs every process of a cgroup and waits (briefly) until it is empty.
fn kill_cgroup(dir: &Path) {
    // cgroup2 (5.14+) kills the whole cgroup in one write; never create the file.
    let kill_file = fs::OpenOptions::new()
        .write(true)
        .open(dir.join("cgroup.kill"));
    if kill_file.and_then(|mut f| f.write_all(b"1")).is_ok() {
        return;
    }
    for _ in 0..100 {
        let Ok(procs) = fs::read_to_string(dir.join("cgroup.procs")) else {
            return;
        };
        let pids: Vec<i32> = procs
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect();
        if pids.is_empty() {
            return;
        }
        for p in pids {
            let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn collect_one(dir: &Path) -> Option<String> {
    let owner = match fs::read_to_string(dir.join(OWNER_FILE)) {
        Ok(text) => Owner::parse(&text),
        Err(_) => None,
    };
    match &owner {
        Some(o) if o.alive() => return None,
        None if age(dir) < YOUNG => return None,
        _ => {}
    }
    let mut what = Vec::new();
    for cg in owner.iter().flat_map(|o| &o.cgroups) {
        if cg.exists() {
            kill_cgroup(cg);
            match cgroup::remove_dir(cg, cg.parent()) {
                Ok(()) => what.push(format!("cgroup {}", cg.display())),
                Err(e) => what.push(format!("cgroup {} NOT removed: {e}", cg.display())),
            }
        }
    }
    match record::remove_record_dir(dir) {
        Ok(()) => what.push(format!("run directory {}", dir.display())),
        Err(e) => what.push(format!("run directory {} NOT removed: {e}", dir.display())),
    }
    let who = owner.map_or("no owner".to_string(), |o| {
        format!("dead isol pid {}", o.pid)
    });
    Some(format!("{} ({who}): {}", dir.display(), what.join(", ")))
}

/// Cleans up every abandoned run under `base`; one line per run cleaned.
pub fn collect(base: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir(base) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| collect_one(&e.path()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{start_time, RunRecord};

    #[test]
    fn test_collect_removes_dead_owner_keeps_live() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path();
        let me = std::process::id() as i32;
        let live = Owner {
            pid: me,
            start: start_time(me).unwrap(),
            cgroups: vec![],
        };
        let cg = tmp.path().join("cg/isol/isol-9-z");
        fs::create_dir_all(&cg).unwrap();
        let dead = Owner {
            pid: me,
            start: 1,
            cgroups: vec![cg.clone()],
        };
        let live_rec = RunRecord::create(base, "isol-live", &live).unwrap();
        std::mem::forget(RunRecord::create(base, "isol-dead", &dead).unwrap());
        let removed = collect(base);
        assert_eq!(removed.len(), 1, "{removed:?}");
        assert!(removed[0].contains("isol-dead") && removed[0].contains("dead isol pid"));
        assert!(!base.join("isol-dead").exists());
        assert!(!cg.exists() && !tmp.path().join("cg/isol").exists());
        assert!(live_rec.dir().exists());
    }

    #[test]
    fn test_collect_young_ownerless_dir_kept() {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir(tmp.path().join("isol-new")).unwrap();
        assert!(collect(tmp.path()).is_empty());
        assert!(tmp.path().join("isol-new").exists());
    }

    #[test]
    fn test_collect_missing_base_is_empty() {
        assert!(collect(Path::new("/nonexistent/isol/container")).is_empty());
    }
}
