//! Starts the workload as the init's child: its own session, pipes for stdio, its cgroup,
//! no channel ports, chroot into the workload root, cwd, groups/gid/uid, docker's
//! capability set, no_new_privs, then execve through PATH like execvp. A failure in the
//! child is sent back over a close-on-exec pipe as (step, errno); a clean exec closes it.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use isol_common::security::default_capability_mask;

use crate::protocol::GuestConfig;
use crate::setup::Step;
use crate::sys::{self, Ctx, InitError};

/// The child failed at execve (the errno decides 126/127).
pub const STEP_EXEC: u8 = 0;

/// Steps before exec, named for the init's error message.
const STEPS: &[&str] = &[
    "exec the command",
    "join the workload cgroup",
    "revoke the channel ports",
    "chroot into the workload root",
    "change to the working directory",
    "drop capabilities",
    "set groups, gid and uid",
    "set no_new_privs",
    "set up stdio",
    "mount its view of the cgroup",
    "mount the workload root",
    "fork the workload",
    "install the seccomp filter",
];

/// The child step that installs the seccomp filter (after no_new_privs, before execve).
const STEP_SECCOMP: u8 = 12;

/// The name of a child step, for messages.
pub fn step_name(step: u8) -> &'static str {
    STEPS
        .get(usize::from(step))
        .copied()
        .unwrap_or("set up the workload")
}

/// The running workload and the init's ends of its stdio pipes.
#[derive(Debug)]
pub struct Workload {
    /// Its pid (also its session and process group id).
    pub pid: libc::pid_t,
    /// Write end of its stdin.
    pub stdin: OwnedFd,
    /// Read end of its stdout.
    pub stdout: OwnedFd,
    /// Read end of its stderr.
    pub stderr: OwnedFd,
    /// Read end of the exit pipe: the workload's raw wait status (see [`crate::nsinit`]).
    pub exit: OwnedFd,
}

/// Everything the child needs, prepared before fork so the child only makes syscalls.
pub struct Prepared {
    candidates: Vec<CString>,
    argv: Vec<CString>,
    envp: Vec<CString>,
    root: CString,
    cwd: CString,
    cgroup_procs: Option<CString>,
    /// `<root>/sys/fs/cgroup`, where the workload's own cgroup is mounted read-only.
    cgroup_view: CString,
    uid: u32,
    gid: u32,
    drop_caps: Vec<u32>,
    seccomp: Option<isol_sandbox::seccomp::Filter>,
}

/// The paths execvp would try for `cmd` under `path` (the workload's PATH).
pub fn exec_candidates(cmd: &str, path: &str) -> Vec<PathBuf> {
    if cmd.contains('/') {
        return vec![PathBuf::from(cmd)];
    }
    path.split(':')
        .map(|dir| {
            if dir.is_empty() {
                Path::new(".").join(cmd)
            } else {
                Path::new(dir).join(cmd)
            }
        })
        .collect()
}

fn prepare(cfg: &GuestConfig, root: &Path, cgroup: Option<&Path>) -> std::io::Result<Prepared> {
    let path = cfg
        .env
        .iter()
        .rev()
        .find(|(k, _)| k == "PATH")
        .map_or("", |(_, v)| v.as_str());
    let candidates = exec_candidates(&cfg.args[0], path)
        .iter()
        .map(|p| sys::cpath(p))
        .collect::<Result<_, _>>()?;
    let mask = default_capability_mask();
    let last_cap: u32 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")?
        .trim()
        .parse()
        .map_err(|_| std::io::ErrorKind::InvalidData)?;
    Ok(Prepared {
        candidates,
        argv: cfg
            .args
            .iter()
            .map(|a| sys::cstr(a))
            .collect::<Result<_, _>>()?,
        envp: cfg
            .env
            .iter()
            .map(|(k, v)| sys::cstr(&format!("{k}={v}")))
            .collect::<Result<_, _>>()?,
        root: sys::cpath(root)?,
        cwd: sys::cstr(&cfg.cwd)?,
        cgroup_procs: cgroup
            .map(|c| sys::cpath(&c.join("cgroup.procs")))
            .transpose()?,
        cgroup_view: sys::cpath(&root.join("sys/fs/cgroup"))?,
        uid: cfg.uid,
        gid: cfg.gid,
        drop_caps: (0..=last_cap)
            .filter(|c| *c >= 64 || mask & (1 << c) == 0)
            .collect(),
        seccomp: cfg
            .seccomp
            .as_deref()
            .map(isol_sandbox::seccomp::Filter::from_bytes)
            .transpose()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?,
    })
}

/// Starts the workload in its own pid namespace: forks the namespace init
/// ([`crate::nsinit`]), which applies `plan` (the workload root) and forks the workload.
/// `pid` of the result is the namespace init's: signals go to it and it forwards them.
/// Returns the workload, or the (step, errno) its setup failed with.
pub fn spawn(
    cfg: &GuestConfig,
    root: &Path,
    cgroup: Option<&Path>,
    plan: &[Step],
) -> Result<Result<Workload, (u8, i32)>, InitError> {
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
        crate::nsinit::run(crate::nsinit::NsInit {
            prep: &prep,
            plan,
            dev_null: &root.join("dev/null"),
            stdio: [in_r, out_w, err_w],
            status: st_w,
            exit: ex_w,
        });
    }
    drop((in_r, out_w, err_w, st_w, ex_w));
    let mut msg = [0u8; 5];
    let n = loop {
        match sys::read(st_r.as_raw_fd(), &mut msg) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            r => break r.ctx(|| "read the workload's start status".into())?,
        }
    };
    if n == msg.len() {
        return Ok(Err((
            msg[0],
            i32::from_le_bytes([msg[1], msg[2], msg[3], msg[4]]),
        )));
    }
    Ok(Ok(Workload {
        pid,
        stdin: in_w,
        stdout: out_r,
        stderr: err_r,
        exit: ex_r,
    }))
}

fn errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// Runs in the forked workload; returns only on failure, with (step, errno).
pub fn child(p: &Prepared, fds: [libc::c_int; 3]) -> (u8, i32) {
    macro_rules! check {
        ($step:expr, $e:expr) => {
            if $e < 0 {
                return ($step, errno());
            }
        };
    }
    // SAFETY: every call gets plain integers or pointers to C strings and
    // arrays prepared before fork, alive until exec or _exit.
    unsafe {
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        check!(
            8,
            libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut())
        );
        for sig in 1..32 {
            libc::signal(sig, libc::SIG_DFL); // Rust ignores SIGPIPE; the workload must not.
        }
        check!(8, libc::setsid());
        for (target, fd) in (0..).zip(fds) {
            check!(8, libc::dup2(fd, target));
        }
        if let Some(procs) = &p.cgroup_procs {
            let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            check!(1, fd);
            check!(1, libc::write(fd, b"0".as_ptr().cast(), 1) as libc::c_int);
            libc::close(fd);
            // As in container mode: a cgroup namespace rooted at the workload's cgroup,
            // and that cgroup read-only at /sys/fs/cgroup (memory.max and friends).
            check!(9, libc::unshare(libc::CLONE_NEWCGROUP));
            let flags = libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
            check!(
                9,
                libc::mount(
                    c"cgroup2".as_ptr(),
                    p.cgroup_view.as_ptr(),
                    c"cgroup2".as_ptr(),
                    flags,
                    std::ptr::null()
                )
            );
        }
        check!(
            2,
            libc::ioperm(
                crate::protocol::CHANNEL_BASE.into(),
                crate::protocol::CHANNEL_LEN.into(),
                0
            )
        );
        check!(3, libc::chroot(p.root.as_ptr()));
        check!(4, libc::chdir(p.cwd.as_ptr()));
        for cap in &p.drop_caps {
            check!(
                5,
                libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(*cap), 0, 0, 0)
            );
        }
        check!(
            5,
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_CLEAR_ALL,
                0,
                0,
                0
            )
        );
        check!(6, libc::setgroups(0, std::ptr::null()));
        check!(6, libc::setgid(p.gid));
        check!(6, libc::setuid(p.uid));
        check!(7, libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0));
    }
    if let Some(f) = &p.seccomp {
        if let Err(e) = isol_sandbox::seccomp::install(f) {
            return (STEP_SECCOMP, e as i32);
        }
    }
    (STEP_EXEC, exec(p))
}

/// execve through the candidates like execvp: ENOENT/ENOTDIR go on to the next, EACCES is
/// remembered, anything else stops. Returns the errno to report.
fn exec(p: &Prepared) -> i32 {
    let mut argv: Vec<*const libc::c_char> = p.argv.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = p.envp.iter().map(|e| e.as_ptr()).collect();
    envp.push(std::ptr::null());
    let mut seen_eacces = false;
    for c in &p.candidates {
        // SAFETY: `c`, `argv` and `envp` are NUL-terminated and null-terminated arrays of
        // C strings that live until execve replaces the process or returns.
        unsafe { libc::execve(c.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
        match errno() {
            libc::EACCES => seen_eacces = true,
            libc::ENOENT | libc::ENOTDIR | libc::ESTALE | libc::ENODEV | libc::ETIMEDOUT => {}
            other => return other,
        }
    }
    if seen_eacces {
        libc::EACCES
    } else {
        libc::ENOENT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_exec_candidates_follow_path_like_execvp() {
        let c = exec_candidates("ls", "/usr/bin::/bin");
        assert_eq!(
            c,
            vec![
                PathBuf::from("/usr/bin/ls"),
                PathBuf::from("./ls"),
                PathBuf::from("/bin/ls")
            ]
        );
    }

    #[test]
    fn test_exec_candidates_slash_means_no_search() {
        assert_eq!(exec_candidates("./x", "/bin"), vec![PathBuf::from("./x")]);
        assert_eq!(
            exec_candidates("/bin/sh", "/usr/bin"),
            vec![PathBuf::from("/bin/sh")]
        );
    }

    #[test]
    fn test_step_names_cover_every_step() {
        assert_eq!(step_name(STEP_EXEC), "exec the command");
        assert_eq!(step_name(8), "set up stdio");
        assert_eq!(step_name(9), "mount its view of the cgroup");
        assert_eq!(
            step_name(crate::nsinit::STEP_ROOT),
            "mount the workload root"
        );
        assert_eq!(step_name(crate::nsinit::STEP_FORK), "fork the workload");
        assert_eq!(step_name(200), "set up the workload");
    }
}
