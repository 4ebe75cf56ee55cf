//! isol-container: runs a workload in Linux namespaces and cgroups.
//!
//! [`ContainerBackend::prepare`] validates what only this backend can check, computes the
//! mount plan and cgroup writes as data, and writes the run record
//! and creates the cgroups. [`PreparedContainer::run`] clones the container's init into
//! new pid, mount, uts, ipc, net and cgroup namespaces, waits for the workload and
//! removes the cgroups and the run record whatever happened (dropping a
//! `PreparedContainer` removes them too).
//!
//! Design choices:
//! - A small init (a clone of isol, no exec) is PID 1 and forwards signals to the
//!   workload, like `docker run --init`; see `init` and isol-sandbox's `supervisor`.
//! - Mounts exist only in the container's mount namespace (everything below `/` is made
//!   private first), so they vanish with it; the host keeps no per-run directory.
//! - Every run gets a cgroup for the device allow-list (v1 `devices` or a cgroup2 BPF
//!   program); limited controllers get one each. The run record names them (what
//!   `isol gc` needs after a SIGKILL of isol; the init dies with isol through its
//!   parent-death signal, taking the namespaces along).
//!
//! Module map: `syscall` (the kernel, behind a trait with a recording fake), `rootfs`
//! (mount plan), `cgroup` (layout detection, limits), `namespaces`, `init` (code inside
//! the container up to isol-sandbox's supervisor and workload steps),
//! `process` (clone, signals, timeout, outcome), `record` + `gc` (cleanup after kills).
#![warn(missing_docs)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use isol_common::security::default_capability_mask;
use isol_common::{Backend, Prepared, WorkloadExit, WorkloadSpec};

pub mod cgroup;
mod error;
pub mod exec;
pub mod gc;
pub mod init;
pub mod namespaces;
pub mod network;
pub mod process;
pub mod pty;
pub mod record;
pub mod rootfs;
mod signals;
pub use isol_sandbox::syscall;

pub use error::ContainerError;

use cgroup::{Cgroups, Controller, CpusetInfo, Layout};
use init::ChildConfig;
use isol_sandbox::workload::Workload;
use record::{Owner, RunRecord};

/// The container backend.
#[derive(Debug, Default)]
pub struct ContainerBackend {
    opts: ContainerOptions,
}

/// Options of the container backend that are not part of the workload spec.
#[derive(Debug, Default, Clone)]
pub struct ContainerOptions {
    /// Print backend details on stderr.
    pub verbose: bool,
}

impl ContainerBackend {
    /// A backend with these options.
    pub fn new(opts: ContainerOptions) -> Self {
        ContainerBackend { opts }
    }
}

/// Where this backend keeps run records: `<run_dir>/container`.
pub fn records_dir() -> PathBuf {
    isol_common::paths::run_dir().join("container")
}

/// Removes what killed runs left behind; returns a line per run cleaned.
pub fn gc() -> Result<Vec<String>, ContainerError> {
    Ok(gc::collect(&records_dir()))
}

/// A prepared container: cgroups created, run record written (only runs with cgroups
/// have one: without cgroups a run leaves nothing on the host once its init is dead).
/// Field order matters: the cgroups are removed before the record that names them.
#[derive(Debug)]
pub struct PreparedContainer {
    net: Option<isol_sandbox::net::host::Attachment>,
    cgroups: Cgroups,
    record: Option<RunRecord>,
    child: ChildConfig,
    command: String,
    timeout: Option<Duration>,
    verbose: bool,
    started: Instant,
}

fn run_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("isol-{}-{nanos:08x}", std::process::id())
}

fn cgroup_plan(
    spec: &WorkloadSpec,
    id: &str,
) -> Result<Vec<cgroup::CgroupDir>, cgroup::CgroupError> {
    let r = &spec.resources;
    // Every run gets a cgroup: the device allow-list lives there.
    let layout =
        Layout::detect(Path::new("/proc/self")).map_err(|source| cgroup::CgroupError::Detect {
            path: "/proc/self/mountinfo".into(),
            source,
        })?;
    let mut cpuset = match (r.cpus, layout.find(Controller::Cpuset)) {
        (Some(_), Some(h)) => cgroup::read_cpuset(h)?,
        _ => CpusetInfo::default(),
    };
    // Runs take the first ceil(cpus) CPUs of this list: rotating it by the pid spreads
    // concurrent runs over the host's CPUs instead of piling them on CPU 0.
    if !cpuset.cpus.is_empty() {
        let n = cpuset.cpus.len();
        cpuset.cpus.rotate_left(std::process::id() as usize % n);
    }
    cgroup::plan(&layout, r, id, &cpuset)
}

fn child_config(
    spec: &WorkloadSpec,
    steps: Vec<rootfs::Step>,
    net: Option<&isol_sandbox::net::host::Attachment>,
) -> Result<ChildConfig, ContainerError> {
    Ok(ChildConfig {
        steps,
        hostname: spec.hostname.clone(),
        workload: workload_of(spec)?,
        net: net.map(|a| a.iface.clone()),
    })
}

/// The sandboxed process `spec` describes (identity, argv, env, cwd, rlimits, seccomp):
/// the workload, and every `isol exec` into it (one description, one sandbox).
pub fn workload_of(spec: &WorkloadSpec) -> Result<Workload, ContainerError> {
    let identity = isol_sandbox::privdrop::Identity {
        uid: spec.user.uid,
        gid: spec.user.gid,
        caps: default_capability_mask(),
    };
    let cwd = spec.cwd.to_string_lossy();
    let mut workload = Workload::new(&spec.args, &spec.effective_env(), &cwd, identity)
        .map_err(|_| ContainerError::Nul { what: "command" })?;
    workload.rlimits.clone_from(&spec.rlimits);
    workload.oom_score_adj = spec.oom_score_adj;
    workload.terminal = spec.terminal;
    workload.seccomp =
        isol_sandbox::seccomp::for_spec(&spec.seccomp).map_err(ContainerError::Seccomp)?;
    Ok(workload)
}

/// How the run's cgroups appear under /sys/fs/cgroup inside the container.
fn cgroup_view(dirs: &[cgroup::CgroupDir]) -> Vec<rootfs::CgroupMount> {
    if let [d] = dirs {
        if d.version == cgroup::Version::V2 {
            return vec![rootfs::CgroupMount {
                name: None,
                v2: true,
                controllers: String::new(),
            }];
        }
    }
    dirs.iter()
        .map(|d| {
            let v2 = d.version == cgroup::Version::V2;
            let controllers = d.controllers.join(",");
            rootfs::CgroupMount {
                name: Some(if v2 {
                    "unified".into()
                } else {
                    controllers.clone()
                }),
                v2,
                controllers,
            }
        })
        .collect()
}

/// The run record naming this isol process as the owner of `cgroups`.
fn write_record(base: &Path, id: &str, cgroups: Vec<PathBuf>) -> std::io::Result<RunRecord> {
    // A pid always fits in i32.
    #[allow(clippy::cast_possible_wrap)]
    let me = std::process::id() as i32;
    let owner = Owner {
        pid: me,
        start: record::start_time(me).unwrap_or(0),
        cgroups,
    };
    RunRecord::create(base, id, &owner)
}

/// `--network bridge`: the run's place on the bridge network and its veth pair.
fn attach_network(
    spec: &WorkloadSpec,
    id: &str,
) -> Result<Option<isol_sandbox::net::host::Attachment>, ContainerError> {
    if spec.network.mode != isol_common::spec::NetworkMode::Bridge {
        return Ok(None);
    }
    let att = isol_sandbox::net::host::attach(&isol_sandbox::net::host::AttachRequest {
        network: &spec.network,
        hostname: &spec.hostname,
        run: id,
    })
    .map_err(ContainerError::Network)?;
    Ok(Some(att))
}

/// The network's /etc files, bound over the rootfs's.
fn view_files(
    net: Option<&isol_sandbox::net::host::Attachment>,
) -> Vec<isol_sandbox::view::ViewFile> {
    let Some(att) = net else {
        return Vec::new();
    };
    isol_sandbox::net::config::ETC_FILES
        .iter()
        .zip(&att.files)
        .map(|(name, host)| isol_sandbox::view::ViewFile {
            path: std::path::Path::new("/etc").join(name),
            host: host.clone(),
        })
        .collect()
}

impl Backend for ContainerBackend {
    type Error = ContainerError;
    type Prepared = PreparedContainer;

    fn prepare(&self, spec: &WorkloadSpec) -> Result<PreparedContainer, ContainerError> {
        let started = Instant::now();
        let rootfs = spec.rootfs.as_deref().ok_or(ContainerError::NoRootfs)?;
        if !nix::unistd::geteuid().is_root() {
            return Err(ContainerError::NotRoot);
        }
        let base = records_dir();
        for line in gc::collect(&base) {
            if self.opts.verbose {
                eprintln!("isol: cleaned up {line}");
            }
        }
        let id = run_id();
        let cg_plan = cgroup_plan(spec, &id).map_err(ContainerError::Cgroup)?;
        let record_err = |path: &Path| {
            let (path, parent) = (path.to_path_buf(), base.clone());
            move |source| ContainerError::Record {
                path,
                parent,
                source,
            }
        };
        // The records directory doubles as the mount point of the run's private tmpfs
        // (inside the container's mount namespace only), so no per-run directory is
        // needed for the rootfs.
        std::fs::create_dir_all(&base).map_err(record_err(&base))?;
        let net = attach_network(spec, &id)?;
        let files = view_files(net.as_ref());
        let steps = rootfs::plan(
            &rootfs::RootfsConfig {
                rootfs,
                scratch: &base,
                read_only: spec.read_only,
                volumes: &spec.volumes,
                cwd: &spec.cwd,
                cgroups: &cgroup_view(&cg_plan),
                files: &files,
            },
            &|p: &Path| p.is_dir(),
        )
        .map_err(ContainerError::Plan)?;
        let child = child_config(spec, steps, net.as_ref())?;
        let record = if cg_plan.is_empty() {
            None
        } else {
            let cgroups = cg_plan.iter().map(|d| d.path.clone()).collect();
            Some(write_record(&base, &id, cgroups).map_err(record_err(&base.join(&id)))?)
        };
        let cgroups = cgroup::create(cg_plan).map_err(ContainerError::Cgroup)?;
        if self.opts.verbose {
            eprintln!("isol: container {id}: cgroups {:?}", cgroups.paths());
        }
        Ok(PreparedContainer {
            net,
            cgroups,
            record,
            child,
            command: spec.args[0].clone(),
            timeout: spec.timeout,
            verbose: self.opts.verbose,
            started,
        })
    }
}

impl Prepared for PreparedContainer {
    type Error = ContainerError;

    fn run_observed(
        mut self,
        started: &mut dyn FnMut(&isol_common::Started),
    ) -> Result<WorkloadExit, ContainerError> {
        let prepared = self.started.elapsed();
        let result = process::run(
            &self.child,
            &self.cgroups,
            self.timeout,
            &self.command,
            self.net.as_ref(),
            started,
        );
        let ran = self.started.elapsed();
        let mut problems = self.net.take().map(|mut n| n.release()).unwrap_or_default();
        problems.extend(self.cgroups.remove());
        match self.record.take() {
            // Keep the record naming cgroups that would not go: `isol gc` retries them.
            Some(r) if !problems.is_empty() => r.keep(),
            Some(mut r) => problems.extend(r.remove()),
            None => {}
        }
        for p in &problems {
            eprintln!("isol: warning: {p} (`isol gc` retries)");
        }
        if self.verbose {
            let ms = |d: Duration| d.as_secs_f64() * 1e3;
            eprintln!(
                "isol: container: prepare {:.2} ms, run {:.2} ms, cleanup {:.2} ms: {result:?}",
                ms(prepared),
                ms(ran - prepared),
                ms(self.started.elapsed() - ran)
            );
        }
        result
    }
}
