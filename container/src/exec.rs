//! Command lookup the way execvp(3) does it, but with the workload's own `PATH` and
//! inside the new root: a name with a `/` is used as is; otherwise each `PATH` entry is
//! tried in order (an empty entry means the current directory), going on past "not
//! there" errors and remembering EACCES, which wins over ENOENT at the end.

use nix::errno::Errno;

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

#[cfg(test)]
mod tests {
    use super::*;

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
