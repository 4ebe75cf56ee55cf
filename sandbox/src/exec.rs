//! Command lookup the way execvp(3) does it, but with the workload's own `PATH` and
//! inside the new root: a name with a `/` is used as is; otherwise each `PATH` entry is
//! tried in order (an empty entry means the current directory), going on past "not
//! there" errors and remembering EACCES, which wins over ENOENT at the end. Both modes
//! use it; the errno it ends with becomes exit 127 (not found) or 126 (found, not
//! executable) through [`isol_common::ExecFailure`].
//!
//! This module makes the list of candidates; the execve attempts themselves are made by
//! the exec stub ([`crate::stub`], `stub.S`), which goes on past ENOENT, ENOTDIR,
//! ESTALE, ENODEV and ETIMEDOUT, remembers EACCES (which wins at the end) and stops at
//! any other errno, as glibc's execvp does.

use std::ffi::CString;

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
}
