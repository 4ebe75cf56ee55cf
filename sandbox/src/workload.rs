//! The last steps of the workload process before its execve, the same in both modes
//! (the container's workload and the guest's run exactly this list, in this order):
//!
//! 1. `setsid`: its own session and process group, no controlling terminal, so TIOCSTI
//!    or job control on an inherited terminal cannot reach the caller's session; with
//!    [`Workload::terminal`] (`isol run -t`), its stdin (the workload's own pty, never
//!    the caller's terminal) then becomes that new session's controlling terminal;
//! 2. a fresh anonymous session keyring (`KEYCTL_JOIN_SESSION_KEYRING`), so keys of the
//!    caller's session are not reachable (a kernel without keyrings: nothing to hide);
//! 3. rlimits and oom_score_adj from the spec (while CAP_SYS_RESOURCE may still be held);
//! 4. the privilege drop ([`crate::privdrop`]);
//! 5. the working directory, entered as the workload's user;
//! 6. umask 022 (the init may have run with another one for its mounts);
//! 7. default signal dispositions and an empty signal mask (the init blocks everything;
//!    isol's runtime ignores SIGPIPE);
//! 8. every fd from 3 up close-on-exec (close_range), so only stdio crosses the execve;
//! 9. the exec stub ([`crate::stub`]) in a sealed memfd, and the report pipe as its fd 3;
//! 10. the seccomp filter, last, so nothing above runs under it;
//! 11. execveat of the stub, which execs the workload through `PATH` ([`crate::exec`]'s
//!     rules), so the process that performs the workload's execve is never a host binary.

use std::ffi::{CString, NulError, OsStr};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use isol_common::spec::Rlimit;
use nix::errno::Errno;

use crate::exec;
use crate::privdrop::{self, Identity};
use crate::report::Report;
use crate::rlimit;
use crate::seccomp::Filter;
use crate::syscall::Syscall;

/// The umask the workload starts with (docker's, and the usual login default).
pub const WORKLOAD_UMASK: u32 = 0o022;

/// Everything the workload process needs, prepared before the fork so that the child
/// only makes system calls.
#[derive(Debug, Clone)]
pub struct Workload {
    /// User, group, capabilities.
    pub identity: Identity,
    /// Working directory (inside the new root).
    pub cwd: CString,
    /// argv.
    pub argv: Vec<CString>,
    /// The environment, `K=V`.
    pub envp: Vec<CString>,
    /// Paths execve tries, in order (PATH lookup).
    pub candidates: Vec<CString>,
    /// Resource limits.
    pub rlimits: Vec<Rlimit>,
    /// oom_score_adj.
    pub oom_score_adj: i32,
    /// The seccomp filter (`None`: unconfined).
    pub seccomp: Option<Filter>,
    /// Its stdin is a pty of its own (`isol run -t`) to make its controlling terminal.
    pub terminal: bool,
}

impl Workload {
    /// The workload of `args` under `env` (its `PATH` decides the lookup of `args[0]`).
    /// Fails when a string holds a NUL byte (the spec refuses those already).
    pub fn new(
        args: &[String],
        env: &[(String, String)],
        cwd: &str,
        identity: Identity,
    ) -> Result<Workload, NulError> {
        let cmd = args.first().map_or("", String::as_str);
        Ok(Workload {
            identity,
            cwd: CString::new(cwd)?,
            argv: args
                .iter()
                .map(|a| CString::new(a.as_str()))
                .collect::<Result<_, _>>()?,
            envp: env
                .iter()
                .map(|(k, v)| CString::new(format!("{k}={v}")))
                .collect::<Result<_, _>>()?,
            candidates: exec::c_candidates(cmd, exec::env_path(env)),
            rlimits: isol_common::spec::DEFAULT_RLIMITS.to_vec(),
            oom_score_adj: 0,
            seccomp: None,
            terminal: false,
        })
    }
}

fn setup(what: impl Into<String>) -> impl FnOnce(Errno) -> Report {
    move |e| Report::Setup {
        what: what.into(),
        errno: e as i32,
    }
}

/// Runs the steps above in the workload process; returns only on failure, with the
/// report to send. `report` is the pipe the stub reports an exec failure on (as
/// [`Report::Exec`]: 127 or 126).
pub fn exec(sys: &dyn Syscall, w: &Workload, report: &OwnedFd) -> Report {
    let stub = match prepare(sys, w, report) {
        Ok(stub) => stub,
        Err(r) => return r,
    };
    let argv = crate::stub::argv(&w.candidates, &w.argv);
    let e = sys.execve_fd(&stub, &argv, &w.envp);
    setup("execute isol's exec stub (execveat; a seccomp profile must allow it)")(e)
}

fn prepare(sys: &dyn Syscall, w: &Workload, report: &OwnedFd) -> Result<OwnedFd, Report> {
    sys.setsid()
        .map_err(setup("start a new session (setsid)"))?;
    if w.terminal {
        sys.set_controlling_tty()
            .map_err(setup("make the pty the controlling terminal (TIOCSCTTY)"))?;
    }
    match sys.join_session_keyring() {
        Ok(()) | Err(Errno::ENOSYS) => {}
        Err(e) => return Err(setup("join a new session keyring")(e)),
    }
    rlimit::apply(sys, &w.rlimits, w.oom_score_adj).map_err(|(what, e)| setup(what)(e))?;
    privdrop::drop_privileges(sys, &w.identity).map_err(|(what, e)| setup(what)(e))?;
    let cwd = Path::new(OsStr::from_bytes(w.cwd.as_bytes()));
    sys.chdir(cwd).map_err(setup(format!(
        "enter the working directory {}",
        cwd.display()
    )))?;
    sys.umask(WORKLOAD_UMASK);
    sys.reset_signals()
        .map_err(setup("reset signal dispositions and mask"))?;
    sys.cloexec_from(3);
    sys.report_fd_to_3(report)
        .map_err(setup("pass the report pipe to the exec stub"))?;
    let stub = sys
        .stub_memfd()
        .map_err(setup("create the exec stub's sealed memfd"))?;
    if let Some(f) = &w.seccomp {
        sys.install_seccomp(f)
            .map_err(setup("install the seccomp filter"))?;
    }
    Ok(stub)
}

#[cfg(test)]
mod tests {
    use isol_common::security::default_capability_mask;

    use super::*;
    use crate::syscall::fake::FakeSyscall;

    fn workload(uid: u32) -> Workload {
        let env = [("PATH".to_string(), "/a:/b".to_string())];
        let id = Identity {
            uid,
            gid: uid,
            caps: default_capability_mask(),
        };
        let mut w = Workload::new(&["sh".into(), "-c".into()], &env, "/w", id).unwrap();
        w.seccomp = Some(
            crate::seccomp::for_spec(&isol_common::spec::Seccomp::Default)
                .unwrap()
                .unwrap(),
        );
        w
    }

    fn report_fd() -> OwnedFd {
        std::fs::File::open("/dev/null").unwrap().into()
    }

    /// The log without the per-capability bounding-set drops.
    fn steps(fake: &FakeSyscall) -> Vec<String> {
        let log = fake.log();
        log.into_iter()
            .filter(|l| !l.starts_with("capbset_drop"))
            .collect()
    }

    #[test]
    fn test_exec_runs_every_step_in_order() {
        let fake = FakeSyscall::default();
        let r = exec(&fake, &workload(0), &report_fd());
        assert_eq!(
            r,
            Report::Setup {
                what: "execute isol's exec stub (execveat; a seccomp profile must allow it)".into(),
                errno: libc::ENOEXEC
            }
        );
        let n = workload(0).seccomp.unwrap().len();
        assert_eq!(
            steps(&fake),
            [
                "setsid".to_string(),
                "join_session_keyring".into(),
                "setrlimit 7 1024 1024".into(),
                "oom_score_adj 0".into(),
                "setgroups []".into(),
                "setresgid 0".into(),
                "setresuid 0".into(),
                "capset eff=0xa80425fb prm=0xa80425fb inh=0x0".into(),
                "ambient_clear".into(),
                "no_new_privs".into(),
                "chdir /w".into(),
                "umask 022".into(),
                "reset_signals".into(),
                "cloexec_from 3".into(),
                "report_fd_to_3".into(),
                "stub_memfd".into(),
                format!("seccomp {n} insns"),
                "execve_stub [/a/sh,/b/sh,,sh,-c]".into(),
            ]
        );
    }

    #[test]
    fn test_terminal_becomes_controlling_right_after_setsid() {
        let fake = FakeSyscall::default();
        let mut w = workload(0);
        w.terminal = true;
        exec(&fake, &w, &report_fd());
        assert_eq!(
            steps(&fake)[..3],
            ["setsid", "set_controlling_tty", "join_session_keyring"]
        );
    }

    #[test]
    fn test_failure_stops_before_exec_and_names_the_step() {
        let fake = FakeSyscall {
            fail_on: Some("chdir".into()),
            ..Default::default()
        };
        let r = exec(&fake, &workload(1000), &report_fd());
        assert_eq!(
            r,
            Report::Setup {
                what: "enter the working directory /w".into(),
                errno: libc::EPERM
            }
        );
        assert!(!fake
            .log()
            .iter()
            .any(|l| l.starts_with("execve") || l.starts_with("seccomp")));
        let fake = FakeSyscall {
            fail_on: Some("setsid".into()),
            ..Default::default()
        };
        assert!(matches!(
            exec(&fake, &workload(0), &report_fd()),
            Report::Setup { .. }
        ));
        assert_eq!(fake.log(), ["setsid"]);
    }
}
