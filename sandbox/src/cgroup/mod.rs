//! The cgroup limit writer of both modes: which control file gets which value for a
//! workload's limits ([`limit_writes`], plain data), the device allow-list's v1 writes
//! ([`device_writes`]; on cgroup2 `crate::view::devices::attach_program`), and writing
//! them ([`write`]). Container mode uses it for the host cgroups it creates (v1, hybrid or
//! cgroup2), the guest init for the workload's cgroup2 directory inside the VM.

use std::io;
use std::path::{Path, PathBuf};

/// cgroup v1 or the unified v2 hierarchy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// A v1 hierarchy (one or a few controllers per mount).
    V1,
    /// The cgroup2 hierarchy.
    V2,
}

/// A controller isol sets limits with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Controller {
    /// Memory limit.
    Memory,
    /// Process count limit.
    Pids,
    /// CFS bandwidth (CPU quota).
    Cpu,
    /// CPU set (how many CPUs the workload sees).
    Cpuset,
    /// The v1 device allow-list (cgroup2 has a BPF program instead).
    Devices,
}

impl Controller {
    /// The kernel's name of the controller.
    pub fn name(self) -> &'static str {
        match self {
            Controller::Memory => "memory",
            Controller::Pids => "pids",
            Controller::Cpu => "cpu",
            Controller::Cpuset => "cpuset",
            Controller::Devices => "devices",
        }
    }
}

/// A workload's limits in kernel units, as both modes write them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of memory (no swap on top).
    pub memory: Option<u64>,
    /// Processes in the cgroup (the caller adds its own init if it lives there).
    pub pids: Option<u64>,
    /// CFS quota and period in microseconds.
    pub cpu_max: Option<(u64, u64)>,
    /// CPUs (kernel list syntax) and, for v1, the memory nodes.
    pub cpuset: Option<(String, String)>,
}

impl Limits {
    /// The controllers these limits need, in write order.
    pub fn controllers(&self) -> Vec<Controller> {
        let mut v = Vec::new();
        if self.memory.is_some() {
            v.push(Controller::Memory);
        }
        if self.pids.is_some() {
            v.push(Controller::Pids);
        }
        if self.cpu_max.is_some() {
            v.push(Controller::Cpu);
        }
        if self.cpuset.is_some() {
            v.push(Controller::Cpuset);
        }
        v
    }
}

/// One control-file write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    /// The control file.
    pub path: PathBuf,
    /// What to write.
    pub value: String,
    /// Skip silently if the file does not exist (memsw, swap.max: no swap support).
    pub optional: bool,
}

/// A write of `value` to `dir/file`.
pub fn w(dir: &Path, file: &str, value: impl ToString) -> Write {
    Write {
        path: dir.join(file),
        value: value.to_string(),
        optional: false,
    }
}

fn opt(dir: &Path, file: &str, value: impl ToString) -> Write {
    Write {
        optional: true,
        ..w(dir, file, value)
    }
}

/// The writes that set controller `c`'s part of `l` on the cgroup `dir` of a `v`
/// hierarchy (nothing when `l` does not limit it).
pub fn limit_writes(c: Controller, v: Version, dir: &Path, l: &Limits) -> Vec<Write> {
    match (c, v) {
        (Controller::Memory, Version::V1) => l.memory.map_or_else(Vec::new, |m| {
            vec![
                w(dir, "memory.limit_in_bytes", m),
                opt(dir, "memory.memsw.limit_in_bytes", m),
            ]
        }),
        (Controller::Memory, Version::V2) => l.memory.map_or_else(Vec::new, |m| {
            vec![w(dir, "memory.max", m), opt(dir, "memory.swap.max", 0)]
        }),
        (Controller::Pids, _) => l.pids.map(|p| w(dir, "pids.max", p)).into_iter().collect(),
        (Controller::Cpu, Version::V1) => l.cpu_max.map_or_else(Vec::new, |(q, p)| {
            vec![
                w(dir, "cpu.cfs_period_us", p),
                w(dir, "cpu.cfs_quota_us", q),
            ]
        }),
        (Controller::Cpu, Version::V2) => l
            .cpu_max
            .map(|(q, p)| w(dir, "cpu.max", format!("{q} {p}")))
            .into_iter()
            .collect(),
        (Controller::Cpuset, Version::V1) => l.cpuset.as_ref().map_or_else(Vec::new, |(c, m)| {
            // v1 cpusets start empty and refuse tasks until both files are set.
            vec![w(dir, "cpuset.cpus", c), w(dir, "cpuset.mems", m)]
        }),
        (Controller::Cpuset, Version::V2) => l
            .cpuset
            .as_ref()
            .map(|(c, _)| w(dir, "cpuset.cpus", c))
            .into_iter()
            .collect(),
        (Controller::Devices, _) => Vec::new(),
    }
}

/// The v1 `devices` controller writes of the allow-list on cgroup `dir`: deny all,
/// then each allowed rule in a write of its own.
pub fn device_writes(dir: &Path) -> Vec<Write> {
    let mut v = vec![w(dir, "devices.deny", "a")];
    v.extend(
        crate::view::devices::v1_rules()
            .into_iter()
            .map(|r| w(dir, "devices.allow", r)),
    );
    v
}

/// Makes one write (one write(2) of the whole value); an optional file that does not
/// exist is skipped (looked up first: cgroupfs answers an O_CREAT open of a missing
/// file with EACCES, not ENOENT).
pub fn write(wr: &Write) -> io::Result<()> {
    if wr.optional && !wr.path.exists() {
        return Ok(());
    }
    std::fs::write(&wr.path, &wr.value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(v: Version, l: &Limits) -> Vec<(String, String, bool)> {
        l.controllers()
            .into_iter()
            .flat_map(|c| limit_writes(c, v, Path::new("/cg"), l))
            .map(|w| (w.path.display().to_string(), w.value, w.optional))
            .collect()
    }

    fn limits() -> Limits {
        Limits {
            memory: Some(64 << 20),
            pids: Some(11),
            cpu_max: Some((150_000, 100_000)),
            cpuset: Some(("0,1".into(), "0".into())),
        }
    }

    #[test]
    fn test_v2_writes() {
        let s = |a: &str, b: &str, o| (a.to_string(), b.to_string(), o);
        assert_eq!(
            all(Version::V2, &limits()),
            [
                s("/cg/memory.max", "67108864", false),
                s("/cg/memory.swap.max", "0", true),
                s("/cg/pids.max", "11", false),
                s("/cg/cpu.max", "150000 100000", false),
                s("/cg/cpuset.cpus", "0,1", false),
            ]
        );
    }

    #[test]
    fn test_v1_writes() {
        let s = |a: &str, b: &str, o| (a.to_string(), b.to_string(), o);
        assert_eq!(
            all(Version::V1, &limits()),
            [
                s("/cg/memory.limit_in_bytes", "67108864", false),
                s("/cg/memory.memsw.limit_in_bytes", "67108864", true),
                s("/cg/pids.max", "11", false),
                s("/cg/cpu.cfs_period_us", "100000", false),
                s("/cg/cpu.cfs_quota_us", "150000", false),
                s("/cg/cpuset.cpus", "0,1", false),
                s("/cg/cpuset.mems", "0", false),
            ]
        );
    }

    #[test]
    fn test_no_limits_no_writes_and_device_writes_deny_first() {
        assert!(all(Version::V2, &Limits::default()).is_empty());
        let d = device_writes(Path::new("/cg"));
        assert_eq!(
            (d[0].path.as_path(), d[0].value.as_str()),
            (Path::new("/cg/devices.deny"), "a")
        );
        assert!(d[1..]
            .iter()
            .all(|w| w.path == Path::new("/cg/devices.allow")));
    }

    #[test]
    fn test_optional_missing_file_is_skipped_required_is_not() {
        let t = tempfile::tempdir().unwrap();
        let missing = t.path().join("nodir");
        assert!(write(&opt(&missing, "x", 1)).is_ok());
        assert!(write(&w(&missing, "x", 1)).is_err());
        write(&w(t.path(), "pids.max", 5)).unwrap();
        assert_eq!(
            std::fs::read_to_string(t.path().join("pids.max")).unwrap(),
            "5"
        );
    }
}
