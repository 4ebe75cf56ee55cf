//! Per-run cgroups: `<own cgroup>/isol/<run id>` in each v1 hierarchy that carries a
//! limited controller, or `<cgroup2 root>/isol/<run id>` for controllers only cgroup2
//! has. The limits are computed as data ([`plan`]: which files get which values), then
//! written by [`create`]. The filesystem root is whatever the [`Layout`] says, so tests
//! run the same code against a TempDir (Firecracker's `MockCgroupFs` idea).
//!
//! Only controllers the spec limits get a cgroup, plus the device allow-list every run
//! gets (`isol_sandbox::view::devices`): the v1 `devices` controller where the host has
//! it, else a BPF_CGROUP_DEVICE program on the run's cgroup2 directory.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use isol_common::spec::Resources;

pub mod layout;

pub use isol_sandbox::cgroup::Write;
use isol_sandbox::cgroup::{w, Limits};
pub use layout::{Controller, Hierarchy, Layout, Version};

pub use isol_common::spec::CPU_PERIOD_US as CFS_PERIOD_US;

/// A cgroup failure.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// /proc/self/mountinfo or /proc/self/cgroup unreadable.
    #[error("Cannot read the cgroup layout from {path}")]
    Detect {
        /// What was read.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The spec asks for a limit the host has no controller for.
    #[error("The {limit} limit needs the {controller} cgroup controller, which is mounted neither as cgroup v1 nor in cgroup2 on this host; mount it or drop the limit")]
    NoController {
        /// Which limit (`memory`, `pids`, `cpus`).
        limit: &'static str,
        /// Which controller.
        controller: &'static str,
    },
    /// More CPUs asked for than isol may use.
    #[error("cpus = {cpus} needs {wanted} CPUs but only {available} are available here; use --cpus {available} or less")]
    TooManyCpus {
        /// As given.
        cpus: f64,
        /// ceil(cpus).
        wanted: u32,
        /// CPUs in isol's cpuset.
        available: usize,
    },
    /// mkdir of a cgroup failed.
    #[error("Cannot create cgroup {path}")]
    Create {
        /// The cgroup directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A limit could not be written.
    #[error("Cannot write {value:?} to {path}")]
    Write {
        /// The control file.
        path: PathBuf,
        /// The value.
        value: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Neither a v1 devices controller nor cgroup2 is mounted.
    #[error("The device allow-list needs the v1 devices cgroup controller or cgroup2 (for a BPF_CGROUP_DEVICE program), and this host has neither mounted; mount one of them")]
    NoDeviceCgroup,
    /// The BPF device program could not be loaded or attached.
    #[error("Cannot attach the device allow-list (a BPF_CGROUP_DEVICE program) to {path}; the kernel needs CONFIG_CGROUP_BPF and isol needs CAP_SYS_ADMIN")]
    DeviceProgram {
        /// The cgroup.
        path: PathBuf,
        /// Why.
        #[source]
        source: nix::errno::Errno,
    },
    /// Reading the CPUs isol may use failed.
    #[error("Cannot read the CPU set from {path}")]
    ReadCpuset {
        /// The control file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// One cgroup of the run, in one hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupDir {
    /// The shared `isol` parent.
    pub parent: PathBuf,
    /// This run's cgroup.
    pub path: PathBuf,
    /// Writes that prepare the parent (cpuset init on v1, subtree_control on v2).
    pub parent_writes: Vec<Write>,
    /// The limits.
    pub writes: Vec<Write>,
    /// The hierarchy's version.
    pub version: Version,
    /// The hierarchy's controllers (v1 mount options).
    pub controllers: Vec<String>,
    /// Attach the BPF device program (cgroup2) once the cgroup exists.
    pub device_program: bool,
}

/// What the cpuset hierarchy offers: the CPUs and memory nodes of isol's cgroup.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CpusetInfo {
    /// CPUs isol may use.
    pub cpus: Vec<u32>,
    /// Memory nodes (kernel list syntax), needed by v1 cpusets.
    pub mems: String,
}

/// Reads the CPUs and memory nodes isol's own cpuset allows.
pub fn read_cpuset(h: &Hierarchy) -> Result<CpusetInfo, CgroupError> {
    let (cpus_file, mems_file) = match h.version {
        Version::V1 => (h.own_dir.join("cpuset.cpus"), h.own_dir.join("cpuset.mems")),
        Version::V2 => (
            h.mountpoint.join("cpuset.cpus.effective"),
            h.mountpoint.join("cpuset.mems.effective"),
        ),
    };
    let read = |p: &Path| {
        fs::read_to_string(p).map_err(|source| CgroupError::ReadCpuset {
            path: p.to_path_buf(),
            source,
        })
    };
    Ok(CpusetInfo {
        cpus: layout::parse_cpu_list(&read(&cpus_file)?),
        mems: read(&mems_file)?.trim().to_string(),
    })
}

/// A kernel CPU list, ascending.
fn cpu_list(cpus: &[u32]) -> String {
    let mut v = cpus.to_vec();
    v.sort_unstable();
    v.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

/// Which controllers a spec needs, with the limit that needs each.
fn needed(r: &Resources) -> Vec<(Controller, &'static str)> {
    let mut v = Vec::new();
    if r.memory.is_some() {
        v.push((Controller::Memory, "memory"));
    }
    if r.pids.is_some() {
        v.push((Controller::Pids, "pids"));
    }
    if r.cpus.is_some() {
        v.push((Controller::Cpu, "cpus"));
        v.push((Controller::Cpuset, "cpus"));
    }
    v
}

fn parent_of(h: &Hierarchy) -> PathBuf {
    match h.version {
        Version::V1 => h.own_dir.join("isol"),
        // cgroup2 forbids processes in inner nodes, so the parent hangs off the root.
        Version::V2 => h.mountpoint.join("isol"),
    }
}

/// The run's cgroup in hierarchy `h`, added to `dirs` if new; its index.
fn dir_for(dirs: &mut Vec<CgroupDir>, h: &Hierarchy, name: &str) -> usize {
    let parent = parent_of(h);
    let path = parent.join(name);
    if let Some(i) = dirs.iter().position(|d| d.path == path) {
        return i;
    }
    dirs.push(CgroupDir {
        parent,
        path,
        parent_writes: Vec::new(),
        writes: Vec::new(),
        version: h.version,
        controllers: h.controllers.clone(),
        device_program: false,
    });
    dirs.len() - 1
}

/// Computes the cgroups of a run named `name` and every file write they need.
/// `cpuset` is what [`read_cpuset`] found (only used when `cpus` is limited).
pub fn plan(
    layout: &Layout,
    r: &Resources,
    name: &str,
    cpuset: &CpusetInfo,
) -> Result<Vec<CgroupDir>, CgroupError> {
    let limits = limits(r, cpuset, layout.find(Controller::Cpuset).is_some())?;
    let mut dirs: Vec<CgroupDir> = Vec::new();
    for (c, limit) in needed(r) {
        let h = layout.find(c).ok_or(CgroupError::NoController {
            limit,
            controller: c.name(),
        })?;
        let idx = dir_for(&mut dirs, h, name);
        let d = &mut dirs[idx];
        let (parent, path) = (d.parent.clone(), d.path.clone());
        if h.version == Version::V2 {
            for dir in [&h.mountpoint, &parent] {
                d.parent_writes
                    .push(w(dir, "cgroup.subtree_control", format!("+{}", c.name())));
            }
        }
        if c == Controller::Cpuset && h.version == Version::V1 {
            // v1 cpusets start empty: the shared parent needs every CPU isol may use.
            d.parent_writes
                .push(w(&parent, "cpuset.cpus", cpu_list(&cpuset.cpus)));
            d.parent_writes
                .push(w(&parent, "cpuset.mems", &cpuset.mems));
        }
        d.writes.extend(isol_sandbox::cgroup::limit_writes(
            c, h.version, &path, &limits,
        ));
    }
    device_policy(layout, name, &mut dirs)?;
    Ok(dirs)
}

/// The device allow-list: v1 `devices` writes (deny all, then each allowed rule), or
/// the BPF program on the run's cgroup2 directory.
fn device_policy(
    layout: &Layout,
    name: &str,
    dirs: &mut Vec<CgroupDir>,
) -> Result<(), CgroupError> {
    if let Some(h) = layout.find(Controller::Devices) {
        let i = dir_for(dirs, h, name);
        let path = dirs[i].path.clone();
        dirs[i]
            .writes
            .extend(isol_sandbox::cgroup::device_writes(&path));
        return Ok(());
    }
    let h = layout
        .hierarchies
        .iter()
        .find(|h| h.version == Version::V2)
        .ok_or(CgroupError::NoDeviceCgroup)?;
    let i = dir_for(dirs, h, name);
    dirs[i].device_program = true;
    Ok(())
}

/// The spec's limits in kernel units. +1 process: the container's init (PID 1, see
/// `init`) lives in the cgroup too, and the limit is the workload's, as in VM mode
/// where the guest's init is not counted. The CPU set: the first ceil(cpus) CPUs isol
/// may use.
fn limits(r: &Resources, cpuset: &CpusetInfo, has_cpuset: bool) -> Result<Limits, CgroupError> {
    let mut l = Limits {
        memory: r.memory,
        pids: r.pids.map(|p| p.saturating_add(1)),
        cpu_max: r
            .cpus
            .map(|c| (isol_common::spec::cpu_quota_us(c), CFS_PERIOD_US)),
        cpuset: None,
    };
    // Without a cpuset hierarchy, plan() reports the missing controller.
    if let Some(cpus) = r.cpus.filter(|_| has_cpuset) {
        // cpus is validated to lie in (0, 64].
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let wanted = cpus.ceil() as u32;
        if wanted as usize > cpuset.cpus.len() {
            return Err(CgroupError::TooManyCpus {
                cpus,
                wanted,
                available: cpuset.cpus.len(),
            });
        }
        let chosen = cpu_list(&cpuset.cpus[..wanted as usize]);
        l.cpuset = Some((chosen, cpuset.mems.clone()));
    }
    Ok(l)
}

/// The cgroups of a run, created. Removed by [`Cgroups::remove`] (also on drop).
#[derive(Debug, Default)]
pub struct Cgroups {
    dirs: Vec<CgroupDir>,
}

fn write_file(wr: &Write) -> Result<(), CgroupError> {
    isol_sandbox::cgroup::write(wr).map_err(|source| CgroupError::Write {
        path: wr.path.clone(),
        value: wr.value.clone(),
        source,
    })
}

fn mkdir(path: &Path) -> io::Result<()> {
    match fs::create_dir(path) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        r => r,
    }
}

/// Creates one cgroup: parent (shared, may be removed concurrently by another run's
/// cleanup, hence the retry), parent writes, the cgroup, its limits.
fn create_one(d: &CgroupDir) -> Result<(), CgroupError> {
    let create_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CgroupError::Create { path, source }
    };
    let mut attempt = 0;
    loop {
        mkdir(&d.parent).map_err(create_err(&d.parent))?;
        d.parent_writes.iter().try_for_each(write_file)?;
        match fs::create_dir(&d.path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound && attempt < 5 => attempt += 1,
            r => {
                r.map_err(create_err(&d.path))?;
                break;
            }
        }
    }
    d.writes.iter().try_for_each(write_file)?;
    if d.device_program {
        isol_sandbox::view::devices::attach_program(&d.path).map_err(|source| {
            CgroupError::DeviceProgram {
                path: d.path.clone(),
                source,
            }
        })?;
    }
    Ok(())
}

/// Creates every cgroup of the plan; on failure removes what it made.
pub fn create(plan: Vec<CgroupDir>) -> Result<Cgroups, CgroupError> {
    let mut made = Cgroups::default();
    for d in plan {
        let r = create_one(&d);
        made.dirs.push(d);
        if let Err(e) = r {
            made.remove();
            return Err(e);
        }
    }
    Ok(made)
}

/// Removes a cgroup directory, waiting briefly while the kernel still counts exiting
/// tasks in it; then tries the shared parent (fails harmlessly while others use it).
pub fn remove_dir(path: &Path, parent: Option<&Path>) -> io::Result<()> {
    let mut last = Ok(());
    // EBUSY while the run's last task is still exiting: up to about 5 s (a loaded host
    // can take a second or more to tear a process down), rarely more than a few ms.
    for i in 0..1000 {
        last = match fs::remove_dir(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            r => r,
        };
        match &last {
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {}
            _ => break,
        }
        std::thread::sleep(Duration::from_micros(if i < 20 { 100 } else { 5000 }));
    }
    if let Some(p) = parent {
        let _ = fs::remove_dir(p);
    }
    last
}

impl Cgroups {
    /// Whether there is any cgroup (no limits means none).
    pub fn is_empty(&self) -> bool {
        self.dirs.is_empty()
    }

    /// The run's cgroup directories.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|d| d.path.clone()).collect()
    }

    /// Moves process `pid` (and its future children) into every cgroup of the run.
    pub fn attach(&self, pid: i32) -> Result<(), CgroupError> {
        let value = pid.to_string();
        for d in &self.dirs {
            write_file(&w(&d.path, "cgroup.procs", &value))?;
        }
        Ok(())
    }

    /// Removes every cgroup; returns the failures (as text, for warnings).
    pub fn remove(&mut self) -> Vec<String> {
        let mut errors = Vec::new();
        for d in self.dirs.drain(..) {
            if let Err(e) = remove_dir(&d.path, Some(&d.parent)) {
                errors.push(format!("cannot remove cgroup {}: {e}", d.path.display()));
            }
        }
        errors
    }
}

impl Drop for Cgroups {
    fn drop(&mut self) {
        let _ = self.remove();
    }
}

#[cfg(test)]
mod tests;
