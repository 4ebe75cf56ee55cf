//! Starts the workload in its own pid namespace: forks the namespace init
//! ([`crate::nsinit`]), which mounts the workload root and runs the sandbox's PID-1
//! supervisor. A failure before the workload's execve comes back over a close-on-exec
//! status pipe as an isol-sandbox [`Report`]; a clean exec closes it.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use isol_common::security::default_capability_mask;
use isol_sandbox::privdrop::Identity;
use isol_sandbox::report::{Outcome, Report};
use isol_sandbox::workload::Workload as SandboxWorkload;

use crate::nsinit::{self, Prepared};
use crate::protocol::GuestConfig;
use crate::setup::Step;
use crate::sys::{self, Ctx, InitError};

/// The running workload and the init's ends of its stdio pipes.
#[derive(Debug)]
pub struct Workload {
    /// The pid of its namespace init (signals go there and are forwarded).
    pub pid: libc::pid_t,
    /// Write end of its stdin.
    pub stdin: OwnedFd,
    /// Read end of its stdout.
    pub stdout: OwnedFd,
    /// Read end of its stderr.
    pub stderr: OwnedFd,
    /// Read end of the exit pipe: the workload's end as a [`Report`].
    pub exit: OwnedFd,
}

/// How the start went.
#[derive(Debug)]
pub enum Started {
    /// The workload runs.
    Running(Workload),
    /// Its execve failed with this errno (126/127).
    ExecFailed(i32),
}

fn invalid(e: impl std::error::Error + Send + Sync + 'static) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, e)
}

fn prepare(cfg: &GuestConfig, root: &Path, cgroup: Option<&Path>) -> std::io::Result<Prepared> {
    let identity = Identity {
        uid: cfg.uid,
        gid: cfg.gid,
        caps: default_capability_mask(),
    };
    let mut workload =
        SandboxWorkload::new(&cfg.args, &cfg.env, &cfg.cwd, identity).map_err(invalid)?;
    workload.rlimits = cfg
        .rlimits
        .iter()
        .map(|&(resource, soft, hard)| isol_common::spec::Rlimit {
            resource,
            soft,
            hard,
        })
        .collect();
    workload.oom_score_adj = cfg.oom_score_adj;
    workload.seccomp = cfg
        .seccomp
        .as_deref()
        .map(isol_sandbox::seccomp::Filter::from_bytes)
        .transpose()
        .map_err(invalid)?;
    Ok(Prepared {
        workload,
        root: sys::cpath(root)?,
        cgroup_procs: cgroup
            .map(|c| sys::cpath(&c.join("cgroup.procs")))
            .transpose()?,
        cgroup_view: sys::cpath(&root.join("sys/fs/cgroup"))?,
    })
}

/// Starts the workload in its own pid namespace: forks the namespace init
/// ([`crate::nsinit`]), which applies `plan` (the workload root) and forks the workload.
/// `pid` of the result is the namespace init's: signals go to it and it forwards them.
pub fn spawn(
    cfg: &GuestConfig,
    root: &Path,
    cgroup: Option<&Path>,
    plan: &[Step],
) -> Result<Started, InitError> {
    let prep = prepare(cfg, root, cgroup).ctx(|| "prepare the workload's exec".into())?;
    let (in_r, in_w) = sys::pipe().ctx(|| "create the stdin pipe".into())?;
    let (out_r, out_w) = sys::pipe().ctx(|| "create the stdout pipe".into())?;
    let (err_r, err_w) = sys::pipe().ctx(|| "create the stderr pipe".into())?;
    let (st_r, st_w) = sys::pipe().ctx(|| "create the status pipe".into())?;
    let (ex_r, ex_w) = sys::pipe().ctx(|| "create the exit pipe".into())?;
    // SAFETY: unshare takes a flag; it only changes where this process's children go.
    sys::cvt(unsafe { libc::unshare(libc::CLONE_NEWPID) })
        .ctx(|| "create the workload's pid namespace".into())?;
    // SAFETY: the init is single-threaded, so the child may run arbitrary code after fork.
    let pid = sys::cvt(unsafe { libc::fork() }).ctx(|| "fork the workload's init".into())?;
    if pid == 0 {
        drop((in_w, out_r, err_r, st_r, ex_r));
        nsinit::run(nsinit::NsInit {
            prep: &prep,
            plan,
            dev_null: &root.join("dev/null"),
            stdio: [in_r, out_w, err_w],
            status: st_w,
            exit: ex_w,
        });
    }
    drop((in_r, out_w, err_w, st_w, ex_w));
    let reports = read_all(&st_r).ctx(|| "read the workload's start status".into())?;
    match Report::outcome(&reports) {
        Some(Outcome::Exec(errno)) => Ok(Started::ExecFailed(errno)),
        Some(Outcome::Setup { what, errno }) => Err(InitError {
            op: format!("start the workload: {what}"),
            source: std::io::Error::from_raw_os_error(errno),
        }),
        _ => Ok(Started::Running(Workload {
            pid,
            stdin: in_w,
            stdout: out_r,
            stderr: err_r,
            exit: ex_r,
        })),
    }
}

/// Reads a report pipe to its end and decodes it.
pub fn read_all(fd: &OwnedFd) -> std::io::Result<Vec<Report>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        match sys::read(fd.as_raw_fd(), &mut chunk) {
            Ok(0) => return Ok(Report::decode_all(&buf)),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}
