//! Command lookup the way execvp(3) does it, but with the workload's own `PATH` and
//! inside the new root: a name with a `/` is used as is; otherwise each `PATH` entry is
//! tried in order (an empty entry means the current directory), going on past "not
//! there" errors and remembering EACCES, which wins over ENOENT at the end. Both modes
//! use it; the errno it ends with becomes exit 127 (not found) or 126 (found, not
//! executable) through [`isol_common::ExecFailure`].

use std::ffi::CString;

use nix::errno::Errno;

use crate::syscall::Syscall;

/// The paths to try for `cmd`.
pub fn candidates(cmd: &str, path: Option<&str>) -> Vec<String> {
    if cmd.contains('/') {
        return vec![cmd.to_string()];
    }
    path.unwrap_or("/bin:/usr/bin")
        .split(':')
        .map(|dir| match dir {
            "" => cmd.to_string(),
            d => format!("{}/{cmd}", d.trim_end_matches('/')),
        })
        .collect()
}

/// Tracks failed execve attempts and decides whether to try the next candidate.
#[derive(Debug, Default)]
pub struct Attempts {
    saw_eacces: bool,
    last: Option<Errno>,
}

impl Attempts {
    /// Records a failure; true when the next candidate should be tried.
    pub fn failed(&mut self, e: Errno) -> bool {
        self.last = Some(e);
        match e {
            Errno::EACCES => {
                self.saw_eacces = true;
                true
            }
            Errno::ENOENT | Errno::ENOTDIR | Errno::ESTALE | Errno::ENODEV | Errno::ETIMEDOUT => {
                true
            }
            _ => false,
        }
    }

    /// The errno to report once no candidate is left (or one stopped the search).
    pub fn result(&self) -> Errno {
        match self.last {
            Some(e)
                if !matches!(
                    e,
                    Errno::ENOENT
                        | Errno::ENOTDIR
                        | Errno::ESTALE
                        | Errno::ENODEV
                        | Errno::ETIMEDOUT
                        | Errno::EACCES
                ) =>
            {
                e
            }
            _ if self.saw_eacces => Errno::EACCES,
            Some(e) => e,
            None => Errno::ENOENT,
        }
    }
}

/// Tries every candidate in order, like execvp; returns only when none could be
/// executed, with the errno to report.
pub fn exec_first(
    sys: &dyn Syscall,
    candidates: &[CString],
    argv: &[CString],
    envp: &[CString],
) -> Errno {
    let mut attempts = Attempts::default();
    for path in candidates {
        let e = sys.execve(path.as_c_str(), argv, envp);
        if !attempts.failed(e) {
            break;
        }
    }
    attempts.result()
}

/// The candidates as C strings (a NUL byte cannot be in a path: such a candidate is
/// dropped, and the lookup ends in ENOENT as the kernel would answer).
pub fn c_candidates(cmd: &str, path: Option<&str>) -> Vec<CString> {
    candidates(cmd, path)
        .into_iter()
        .filter_map(|c| CString::new(c).ok())
        .collect()
}

/// The `PATH` of an environment, the last one winning as in a `K=V` list.
pub fn env_path(env: &[(String, String)]) -> Option<&str> {
    env.iter()
        .rev()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syscall::fake::FakeSyscall;

    fn c(s: &str) -> CString {
        CString::new(s).unwrap()
    }

    #[test]
    fn test_exec_first_goes_past_enoent_and_stops_on_enoexec() {
        let mut fake = FakeSyscall::default();
        fake.exec_errnos.insert("/b/x".into(), Errno::EACCES);
        fake.exec_errnos.insert("/c/x".into(), Errno::ENOEXEC);
        let cands = c_candidates("x", Some("/a:/b:/c:/d"));
        let e = exec_first(&fake, &cands, &[c("x"), c("1")], &[]);
        assert_eq!(e, Errno::ENOEXEC);
        assert_eq!(
            fake.log(),
            ["execve /a/x x 1", "execve /b/x x 1", "execve /c/x x 1"]
        );
        let fake = FakeSyscall::default();
        assert_eq!(exec_first(&fake, &cands, &[c("x")], &[]), Errno::ENOENT);
        assert_eq!(fake.log().len(), 4);
    }

    #[test]
    fn test_env_path_last_wins() {
        let env = [
            ("PATH".to_string(), "/a".to_string()),
            ("PATH".to_string(), "/b".to_string()),
        ];
        assert_eq!(env_path(&env), Some("/b"));
        assert_eq!(env_path(&[]), None);
    }

    #[test]
    fn test_candidates_path_search_and_slash() {
        assert_eq!(
            candidates("sh", Some("/usr/bin:/bin/")),
            ["/usr/bin/sh", "/bin/sh"]
        );
        assert_eq!(candidates("./x", Some("/bin")), ["./x"]);
        assert_eq!(candidates("/bin/sh", Some("/nope")), ["/bin/sh"]);
        assert_eq!(candidates("x", Some("/a::/b")), ["/a/x", "x", "/b/x"]);
        assert_eq!(candidates("x", None), ["/bin/x", "/usr/bin/x"]);
    }

    #[test]
    fn test_attempts_eacces_wins_over_enoent() {
        let mut a = Attempts::default();
        assert!(a.failed(Errno::ENOENT));
        assert!(a.failed(Errno::EACCES));
        assert!(a.failed(Errno::ENOENT));
        assert_eq!(a.result(), Errno::EACCES);
    }

    #[test]
    fn test_attempts_other_error_stops() {
        let mut a = Attempts::default();
        assert!(a.failed(Errno::ENOENT));
        assert!(!a.failed(Errno::ENOEXEC));
        assert_eq!(a.result(), Errno::ENOEXEC);
        let mut b = Attempts::default();
        b.failed(Errno::ENOENT);
        assert_eq!(b.result(), Errno::ENOENT);
        assert_eq!(Attempts::default().result(), Errno::ENOENT);
    }
}
