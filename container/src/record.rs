//! The run record: `<run_dir>/container/<id>/owner` names the isol process that owns
//! the run (pid and start time, so a reused pid is not mistaken for it) and the run's
//! cgroups. Only runs with cgroups have one: if isol is SIGKILLed, its init dies with it
//! (parent-death signal) and takes the namespaces and mounts along, so the cgroups are
//! all that is left; the record lets the next run, or `isol gc`, remove them.

use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

/// Name of the record file in the run directory.
pub const OWNER_FILE: &str = "owner";

/// The process start time (clock ticks since boot, field 22 of /proc/PID/stat).
pub fn start_time(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: skip past the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Whether process `pid`, started at `start`, still runs: same start time and not a
/// zombie (a killed process whose parent has not reaped it yet has ended already).
pub fn alive(pid: i32, start: u64) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
        return false;
    };
    let mut fields = rest.split_whitespace();
    let state = fields.next();
    !matches!(state, Some("Z" | "X")) && fields.nth(18).and_then(|s| s.parse().ok()) == Some(start)
}

/// What a record says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// isol's pid.
    pub pid: i32,
    /// isol's start time.
    pub start: u64,
    /// The run's cgroup directories.
    pub cgroups: Vec<PathBuf>,
}

impl Owner {
    /// The record file's text.
    pub fn to_text(&self) -> String {
        let mut s = format!("owner {} {}\n", self.pid, self.start);
        for c in &self.cgroups {
            s += &format!("cgroup {}\n", c.display());
        }
        s
    }

    /// Parses a record file; `None` if it has no owner line.
    pub fn parse(text: &str) -> Option<Owner> {
        let mut owner = None;
        let mut cgroups = Vec::new();
        for line in text.lines() {
            match line.split_once(' ') {
                Some(("owner", rest)) => {
                    let (p, s) = rest.split_once(' ')?;
                    owner = Some((p.parse().ok()?, s.parse().ok()?));
                }
                Some(("cgroup", path)) => cgroups.push(PathBuf::from(path)),
                _ => {}
            }
        }
        let (pid, start) = owner?;
        Some(Owner {
            pid,
            start,
            cgroups,
        })
    }

    /// Whether the owning isol still runs.
    pub fn alive(&self) -> bool {
        alive(self.pid, self.start)
    }
}

/// A live run record; removed by [`RunRecord::remove`] or on drop.
#[derive(Debug)]
pub struct RunRecord {
    dir: PathBuf,
    removed: bool,
}

impl RunRecord {
    /// Creates `<base>/<id>` and its owner file.
    pub fn create(base: &Path, id: &str, owner: &Owner) -> io::Result<RunRecord> {
        let dir = base.join(id);
        if let Err(e) = fs::create_dir(&dir) {
            if e.kind() != io::ErrorKind::NotFound {
                return Err(e);
            }
            fs::create_dir_all(base)?;
            fs::create_dir(&dir)?;
        }
        let rec = RunRecord {
            dir,
            removed: false,
        };
        let mut f = fs::File::create(rec.dir.join(OWNER_FILE))?;
        f.write_all(owner.to_text().as_bytes())?;
        Ok(rec)
    }

    /// The run's directory (the scratch mount point inside the container).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Leaves the record in place (for `isol gc`) instead of removing it on drop.
    pub fn keep(mut self) {
        self.removed = true;
    }

    /// Removes the record; returns what could not be removed.
    pub fn remove(&mut self) -> Option<String> {
        if self.removed {
            return None;
        }
        self.removed = true;
        remove_record_dir(&self.dir)
            .err()
            .map(|e| format!("cannot remove {}: {e}", self.dir.display()))
    }
}

/// Removes a record directory (owner file, then the directory).
pub fn remove_record_dir(dir: &Path) -> io::Result<()> {
    match fs::remove_file(dir.join(OWNER_FILE)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    match fs::remove_dir(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

impl Drop for RunRecord {
    fn drop(&mut self) {
        let _ = self.remove();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_alive_needs_start_time_and_no_zombie() {
        let me = std::process::id() as i32;
        assert!(alive(me, start_time(me).unwrap()));
        assert!(!alive(me, 1));
        assert!(!alive(-1, 0));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        let start = start_time(pid).unwrap();
        // Exited but not reaped: a zombie, not alive.
        while fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|s| !s[s.rfind(')').unwrap()..].starts_with(") Z"))
        {
            std::thread::yield_now();
        }
        assert!(!alive(pid, start));
        child.wait().unwrap();
    }

    #[test]
    fn test_owner_round_trip() {
        let o = Owner {
            pid: 12,
            start: 345,
            cgroups: vec!["/sys/fs/cgroup/memory/isol/isol-12-ab".into()],
        };
        assert_eq!(Owner::parse(&o.to_text()), Some(o));
        assert_eq!(Owner::parse("cgroup /x\n"), None);
    }

    #[test]
    fn test_owner_alive_only_with_matching_start_time() {
        let me = std::process::id() as i32;
        let start = start_time(me).unwrap();
        let mut o = Owner {
            pid: me,
            start,
            cgroups: vec![],
        };
        assert!(o.alive());
        o.start += 1;
        assert!(!o.alive());
        o.pid = i32::MAX;
        assert!(!o.alive());
    }

    #[test]
    fn test_record_create_and_remove_leaves_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().join("container");
        let o = Owner {
            pid: 1,
            start: 2,
            cgroups: vec![],
        };
        let mut r = RunRecord::create(&base, "isol-1-x", &o).unwrap();
        assert_eq!(
            Owner::parse(&fs::read_to_string(r.dir().join(OWNER_FILE)).unwrap()),
            Some(o)
        );
        assert_eq!(r.remove(), None);
        assert_eq!(fs::read_dir(&base).unwrap().count(), 0);
    }
}
