//! The workload spec: what to run and under which limits, identical for both modes.
//!
//! A spec comes from an optional TOML file plus command-line overrides ([`Overrides`]),
//! and is validated once, by [`WorkloadSpec::resolve`]. Every error names the field (or
//! flag), the bad value and what is accepted. Unknown fields are errors.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::size::parse_size;

pub mod network;
mod process;
mod seccomp;
pub use network::{Network, NetworkMode, Protocol, Publish, Subnet, DEFAULT_SUBNET};
pub use process::{parse_ulimit, Rlimit, DEFAULT_RLIMITS, RLIMIT_NAMES, RLIM_INFINITY};
pub use seccomp::Seccomp;

/// The isolation model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Linux namespaces and cgroups (the default).
    #[default]
    Container,
    /// A KVM microVM booted by isol's own VMM.
    Vm,
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::Container => "container",
            Mode::Vm => "vm",
        })
    }
}

/// User and group the workload runs as (numeric, as in the root filesystem's view).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct User {
    /// User id.
    pub uid: u32,
    /// Primary group id. Supplementary groups are always empty.
    pub gid: u32,
}

/// A host directory made visible inside the workload's root filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    /// Absolute, existing host directory.
    pub host: PathBuf,
    /// Absolute path inside the workload.
    pub path: PathBuf,
    /// Mounted read-only.
    pub read_only: bool,
}

/// Resource limits. `None` means unlimited (the host's).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Resources {
    /// CPUs: the workload sees `ceil(cpus)` CPUs and gets a CPU quota of `cpus`.
    pub cpus: Option<f64>,
    /// Memory limit in bytes; over it the workload is OOM-killed (exit 137).
    pub memory: Option<u64>,
    /// Maximum number of processes/threads; fork fails past it.
    pub pids: Option<u64>,
}

/// A validated workload spec. Both backends receive exactly this.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkloadSpec {
    /// Which backend runs it.
    pub mode: Mode,
    /// argv of the workload; never empty.
    pub args: Vec<String>,
    /// Environment set by the user (see [`WorkloadSpec::effective_env`] for what the
    /// workload actually gets).
    pub env: BTreeMap<String, String>,
    /// Absolute working directory inside the workload.
    pub cwd: PathBuf,
    /// Who the workload runs as.
    pub user: User,
    /// Hostname inside the workload.
    pub hostname: String,
    /// Root filesystem directory; `None` means isol's default busybox rootfs.
    pub rootfs: Option<PathBuf>,
    /// Whether `/` is read-only (`/tmp` stays writable).
    pub read_only: bool,
    /// Host directories mounted inside.
    pub volumes: Vec<Volume>,
    /// Limits.
    pub resources: Resources,
    /// Network model.
    pub network: Network,
    /// Kill the workload after this long (exit 124).
    pub timeout: Option<Duration>,
    /// The workload's seccomp profile.
    pub seccomp: Seccomp,
    /// Resource limits the workload starts with (see [`DEFAULT_RLIMITS`]).
    pub rlimits: Vec<Rlimit>,
    /// The workload's oom_score_adj (-1000..=1000, default 0).
    pub oom_score_adj: i32,
    /// Give the workload a pty of its own as stdin/stdout/stderr and controlling
    /// terminal (`isol run -t`; OCI's `process.terminal`). Set by the CLI, not the file.
    pub terminal: bool,
}

/// Default `PATH` inside the workload (docker's).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Default hostname.
pub const DEFAULT_HOSTNAME: &str = "isol";

impl WorkloadSpec {
    /// The exact environment the workload gets, in both modes: `PATH` (docker's default
    /// unless set), `HOSTNAME`, `HOME` (`/root` for uid 0, `/` otherwise, unless set),
    /// then the user's variables. Nothing of isol's own environment leaks in.
    pub fn effective_env(&self) -> Vec<(String, String)> {
        let mut env = BTreeMap::new();
        env.insert("PATH".to_string(), DEFAULT_PATH.to_string());
        env.insert("HOSTNAME".to_string(), self.hostname.clone());
        let home = if self.user.uid == 0 { "/root" } else { "/" };
        env.insert("HOME".to_string(), home.to_string());
        for (k, v) in &self.env {
            env.insert(k.clone(), v.clone());
        }
        env.into_iter().collect()
    }

    /// Number of CPUs the workload sees: `ceil(cpus)`, or `None` for all of the host's.
    pub fn visible_cpus(&self) -> Option<u32> {
        // cpus is validated to lie in (0, MAX_CPUS], so the cast cannot truncate.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        self.resources.cpus.map(|c| c.ceil() as u32)
    }
}

/// CFS period of the CPU quota, in microseconds (the kernel's default, as docker uses).
pub const CPU_PERIOD_US: u64 = 100_000;

/// The CFS quota for `cpus` CPUs in microseconds per [`CPU_PERIOD_US`]: at least the
/// kernel's 1 ms minimum. Both modes use it (container: the run's cgroup; VM: the
/// workload's cgroup in the guest), so `--cpus` means the same in both.
pub fn cpu_quota_us(cpus: f64) -> u64 {
    // cpus is validated to lie in (0, MAX_CPUS], so the product is small and positive.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let quota = (cpus * CPU_PERIOD_US as f64).round() as u64;
    quota.max(1000)
}

/// Most CPUs a spec may ask for.
pub const MAX_CPUS: f64 = 64.0;
/// Smallest memory limit accepted (the kernel, runc and our guest all need some room).
pub const MIN_MEMORY: u64 = 8 << 20;

/// Command-line overrides (plain data: clap types stay in the CLI). Every `Some` replaces
/// the spec file's value; `env` and `volumes` are added to the file's.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--mode`.
    pub mode: Option<String>,
    /// Trailing `CMD [ARG...]`; replaces `process.args` when non-empty.
    pub args: Vec<String>,
    /// `--env K=V`, repeatable.
    pub env: Vec<String>,
    /// `--workdir`.
    pub cwd: Option<String>,
    /// `--user UID[:GID]`.
    pub user: Option<String>,
    /// `--hostname`.
    pub hostname: Option<String>,
    /// `--rootfs`.
    pub rootfs: Option<String>,
    /// `--read-only` (only ever turns it on).
    pub read_only: bool,
    /// `--volume HOST:PATH[:ro]`, repeatable.
    pub volumes: Vec<String>,
    /// `--cpus`.
    pub cpus: Option<String>,
    /// `--memory`.
    pub memory: Option<String>,
    /// `--pids`.
    pub pids: Option<String>,
    /// `--timeout` in seconds.
    pub timeout: Option<String>,
    /// `--seccomp default|unconfined|FILE`.
    pub seccomp: Option<String>,
    /// `--ulimit NAME=SOFT[:HARD]`, repeatable.
    pub ulimits: Vec<String>,
    /// `--oom-score-adj`.
    pub oom_score_adj: Option<String>,
    /// `--network none|bridge`.
    pub network: Option<String>,
    /// `--publish [HOST_IP:]HOST_PORT:PORT[/tcp|/udp]`, repeatable.
    pub publish: Vec<String>,
    /// `--dns IP`, repeatable.
    pub dns: Vec<String>,
    /// `--add-host NAME:IP`, repeatable.
    pub add_hosts: Vec<String>,
    /// `--subnet CIDR`.
    pub subnet: Option<String>,
}

/// A spec that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The spec file could not be read.
    #[error("Cannot read spec file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The spec file is not valid TOML or has unknown or mistyped fields.
    #[error("Invalid spec file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// toml's description, which names the field and line.
        message: String,
    },
    /// A field or flag has a bad value.
    #[error("{field}: {value:?} {problem}; {hint}")]
    Invalid {
        /// The field (`resources.memory`) or flag (`--memory`).
        field: String,
        /// The bad value as given.
        value: String,
        /// What is wrong with it.
        problem: String,
        /// What is accepted.
        hint: String,
    },
    /// Nothing to run.
    #[error("No command given; put it after `--` (isol run -- CMD ARG...) or in process.args")]
    NoCommand,
}

fn invalid(field: &str, value: impl ToString, problem: &str, hint: &str) -> SpecError {
    SpecError::Invalid {
        field: field.to_string(),
        value: value.to_string(),
        problem: problem.to_string(),
        hint: hint.to_string(),
    }
}

/// The spec file as written (TOML). Every section and field is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SpecFile {
    mode: Option<String>,
    hostname: Option<String>,
    timeout: Option<toml::Value>,
    #[serde(default)]
    process: ProcessFile,
    rootfs: Option<RootfsFile>,
    #[serde(default)]
    volumes: Vec<VolumeFile>,
    #[serde(default)]
    resources: ResourcesFile,
    network: Option<network::NetworkFile>,
    security: Option<seccomp::SecurityFile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProcessFile {
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    cwd: Option<String>,
    user: Option<UserFile>,
    #[serde(default)]
    rlimits: process::RlimitsFile,
    oom_score_adj: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserFile {
    uid: u32,
    #[serde(default)]
    gid: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RootfsFile {
    path: Option<String>,
    #[serde(default)]
    read_only: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VolumeFile {
    host: String,
    path: String,
    #[serde(default)]
    read_only: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResourcesFile {
    cpus: Option<toml::Value>,
    memory: Option<toml::Value>,
    pids: Option<toml::Value>,
}

/// A TOML scalar as the user wrote it, for error messages (`"12 parsecs"` or `12`).
fn scalar_text(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl WorkloadSpec {
    /// Reads and validates a spec file (if any) with the command-line overrides on top.
    pub fn resolve(file: Option<&Path>, ov: &Overrides) -> Result<WorkloadSpec, SpecError> {
        let parsed = match file {
            None => SpecFile::default(),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| SpecError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
                toml::from_str::<SpecFile>(&text).map_err(|e| SpecError::Parse {
                    path: path.to_path_buf(),
                    message: e.to_string().trim_end().replace('\n', " "),
                })?
            }
        };
        Self::build(parsed, ov)
    }

    /// Validates a spec given as TOML text (for tests and `--spec -`).
    pub fn from_toml(text: &str, ov: &Overrides) -> Result<WorkloadSpec, SpecError> {
        let parsed = toml::from_str::<SpecFile>(text).map_err(|e| SpecError::Parse {
            path: PathBuf::from("<spec>"),
            message: e.to_string().trim_end().replace('\n', " "),
        })?;
        Self::build(parsed, ov)
    }

    fn build(f: SpecFile, ov: &Overrides) -> Result<WorkloadSpec, SpecError> {
        let mode = match (&ov.mode, &f.mode) {
            (Some(m), _) => parse_mode("--mode", m)?,
            (None, Some(m)) => parse_mode("mode", m)?,
            (None, None) => Mode::default(),
        };

        let args = if ov.args.is_empty() {
            f.process.args
        } else {
            ov.args.clone()
        };
        if args.is_empty() {
            return Err(SpecError::NoCommand);
        }
        for (i, a) in args.iter().enumerate() {
            if a.contains('\0') {
                return Err(invalid(
                    &format!("process.args[{i}]"),
                    a,
                    "contains a NUL byte",
                    "remove it",
                ));
            }
        }
        if args[0].is_empty() {
            return Err(invalid(
                "process.args[0]",
                "",
                "is empty",
                "give a command name or path",
            ));
        }

        let mut env = BTreeMap::new();
        for (k, v) in f.process.env {
            check_env("process.env", &k, &v)?;
            env.insert(k, v);
        }
        for kv in &ov.env {
            let (k, v) = kv.split_once('=').ok_or_else(|| {
                invalid(
                    "--env",
                    kv,
                    "is not KEY=VALUE",
                    "write --env NAME=value (value may be empty)",
                )
            })?;
            check_env("--env", k, v)?;
            env.insert(k.to_string(), v.to_string());
        }

        let cwd = match (&ov.cwd, &f.process.cwd) {
            (Some(c), _) => abs_path("--workdir", c)?,
            (None, Some(c)) => abs_path("process.cwd", c)?,
            (None, None) => PathBuf::from("/"),
        };

        let user = match (&ov.user, &f.process.user) {
            (Some(u), _) => parse_user("--user", u)?,
            (None, Some(u)) => User {
                uid: u.uid,
                gid: u.gid,
            },
            (None, None) => User { uid: 0, gid: 0 },
        };

        let hostname = match (&ov.hostname, &f.hostname) {
            (Some(h), _) => check_hostname("--hostname", h)?,
            (None, Some(h)) => check_hostname("hostname", h)?,
            (None, None) => DEFAULT_HOSTNAME.to_string(),
        };

        let (file_rootfs, file_ro) = match f.rootfs {
            Some(r) => (r.path, r.read_only),
            None => (None, false),
        };
        let rootfs = match (&ov.rootfs, &file_rootfs) {
            (Some(r), _) => Some(existing_dir("--rootfs", r)?),
            (None, Some(r)) => Some(existing_dir("rootfs.path", r)?),
            (None, None) => None,
        };
        let read_only = ov.read_only || file_ro;

        let mut volumes = Vec::new();
        for (i, v) in f.volumes.into_iter().enumerate() {
            let field = format!("volumes[{i}]");
            volumes.push(Volume {
                host: existing_dir(&format!("{field}.host"), &v.host)?,
                path: abs_path(&format!("{field}.path"), &v.path)?,
                read_only: v.read_only,
            });
        }
        for v in &ov.volumes {
            volumes.push(parse_volume_flag(v)?);
        }
        check_volume_targets(&volumes)?;

        let resources = Resources {
            cpus: pick(
                &ov.cpus,
                &f.resources.cpus,
                "--cpus",
                "resources.cpus",
                parse_cpus,
            )?,
            memory: pick(
                &ov.memory,
                &f.resources.memory,
                "--memory",
                "resources.memory",
                parse_memory,
            )?,
            pids: pick(
                &ov.pids,
                &f.resources.pids,
                "--pids",
                "resources.pids",
                parse_pids,
            )?,
        };

        let network = network::resolve(f.network, ov, mode)?;

        let timeout = pick(
            &ov.timeout,
            &f.timeout,
            "--timeout",
            "timeout",
            parse_timeout,
        )?;

        let seccomp = seccomp::pick_seccomp(ov.seccomp.as_deref(), f.security.as_ref())?;
        let rlimits = process::rlimits(&f.process.rlimits, &ov.ulimits)?;
        let oom_score_adj =
            process::oom_score_adj(ov.oom_score_adj.as_deref(), f.process.oom_score_adj)?;

        Ok(WorkloadSpec {
            mode,
            args,
            env,
            cwd,
            user,
            hostname,
            rootfs,
            read_only,
            volumes,
            resources,
            network,
            timeout,
            seccomp,
            rlimits,
            oom_score_adj,
            terminal: false,
        })
    }
}

/// Takes the flag if given, else the file's value, and parses whichever it is.
fn pick<T>(
    flag: &Option<String>,
    file: &Option<toml::Value>,
    flag_name: &str,
    field_name: &str,
    parse: fn(&str, &str) -> Result<T, SpecError>,
) -> Result<Option<T>, SpecError> {
    match (flag, file) {
        (Some(v), _) => parse(flag_name, v).map(Some),
        (None, Some(v)) => parse(field_name, &scalar_text(v)).map(Some),
        (None, None) => Ok(None),
    }
}

fn parse_mode(field: &str, m: &str) -> Result<Mode, SpecError> {
    match m {
        "container" => Ok(Mode::Container),
        "vm" => Ok(Mode::Vm),
        _ => Err(invalid(field, m, "is not a mode", "use container or vm")),
    }
}

fn check_env(field: &str, k: &str, v: &str) -> Result<(), SpecError> {
    let key_ok = !k.is_empty() && !k.contains('=') && !k.contains('\0');
    if !key_ok {
        return Err(invalid(
            field,
            k,
            "is not a variable name",
            "names are non-empty and have no '=' or NUL",
        ));
    }
    if v.contains('\0') {
        return Err(invalid(
            &format!("{field}.{k}"),
            v,
            "contains a NUL byte",
            "remove it",
        ));
    }
    Ok(())
}

fn abs_path(field: &str, p: &str) -> Result<PathBuf, SpecError> {
    if !p.starts_with('/') || p.contains('\0') {
        return Err(invalid(
            field,
            p,
            "is not an absolute path",
            "give a path starting with /",
        ));
    }
    Ok(PathBuf::from(p))
}

fn existing_dir(field: &str, p: &str) -> Result<PathBuf, SpecError> {
    let path = abs_path(field, p)?;
    if !path.is_dir() {
        return Err(invalid(
            field,
            p,
            "is not an existing directory",
            "give the absolute path of a directory on this host",
        ));
    }
    Ok(path)
}

fn parse_user(field: &str, u: &str) -> Result<User, SpecError> {
    let bad = || {
        invalid(
            field,
            u,
            "is not a numeric user",
            "use UID or UID:GID, e.g. 1000 or 1000:1000",
        )
    };
    let (uid, gid) = match u.split_once(':') {
        Some((a, b)) => (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?),
        None => (u.parse().map_err(|_| bad())?, 0),
    };
    Ok(User { uid, gid })
}

fn check_hostname(field: &str, h: &str) -> Result<String, SpecError> {
    let ok = !h.is_empty()
        && h.len() <= 64
        && h.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if !ok {
        return Err(invalid(
            field,
            h,
            "is not a hostname",
            "use letters, digits, '-' and '.', at most 64 characters",
        ));
    }
    Ok(h.to_string())
}

fn parse_volume_flag(v: &str) -> Result<Volume, SpecError> {
    let parts: Vec<&str> = v.split(':').collect();
    let (host, path, ro) = match parts.as_slice() {
        [h, p] => (*h, *p, false),
        [h, p, "ro"] => (*h, *p, true),
        [h, p, "rw"] => (*h, *p, false),
        _ => {
            return Err(invalid(
                "--volume",
                v,
                "is not HOST:PATH[:ro]",
                "e.g. --volume /srv/data:/data:ro",
            ))
        }
    };
    Ok(Volume {
        host: existing_dir("--volume", host)?,
        path: abs_path("--volume", path)?,
        read_only: ro,
    })
}

fn check_volume_targets(volumes: &[Volume]) -> Result<(), SpecError> {
    for (i, v) in volumes.iter().enumerate() {
        if v.path == Path::new("/") {
            return Err(invalid(
                "--volume",
                v.path.display(),
                "cannot be mounted over /",
                "use --rootfs for the root",
            ));
        }
        if volumes[..i].iter().any(|w| w.path == v.path) {
            return Err(invalid(
                "--volume",
                v.path.display(),
                "is mounted twice",
                "give each volume its own path",
            ));
        }
    }
    Ok(())
}

fn parse_cpus(field: &str, s: &str) -> Result<f64, SpecError> {
    let hint = "use a number of CPUs greater than 0, e.g. 1, 2 or 0.5";
    let c: f64 = s
        .trim()
        .parse()
        .map_err(|_| invalid(field, s, "is not a number", hint))?;
    if !c.is_finite() || c <= 0.0 {
        return Err(invalid(field, s, "is not a positive number", hint));
    }
    if c > MAX_CPUS {
        return Err(invalid(
            field,
            s,
            "is too many CPUs",
            "isol supports at most 64",
        ));
    }
    Ok(c)
}

fn parse_memory(field: &str, s: &str) -> Result<u64, SpecError> {
    let m =
        parse_size(s).ok_or_else(|| invalid(field, s, "is not a size", "use 64M, 1G or bytes"))?;
    if m < MIN_MEMORY {
        return Err(invalid(
            field,
            s,
            "is too small",
            "the smallest memory limit is 8M",
        ));
    }
    Ok(m)
}

fn parse_pids(field: &str, s: &str) -> Result<u64, SpecError> {
    match s.trim().parse::<u64>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(invalid(
            field,
            s,
            "is not a process count",
            "use a whole number of at least 1",
        )),
    }
}

fn parse_timeout(field: &str, s: &str) -> Result<Duration, SpecError> {
    let hint = "use seconds greater than 0, e.g. 30 or 0.5";
    let t: f64 = s
        .trim()
        .parse()
        .map_err(|_| invalid(field, s, "is not a number of seconds", hint))?;
    if !t.is_finite() || t <= 0.0 || t > 1e9 {
        return Err(invalid(
            field,
            s,
            "is not a positive number of seconds",
            hint,
        ));
    }
    Ok(Duration::from_secs_f64(t))
}

#[cfg(test)]
mod tests;
