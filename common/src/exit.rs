//! How a workload ended, and the exit code `isol` returns for it (the podman/docker
//! convention): the workload's own code, 128+N for death by signal N, 124 on timeout,
//! 125 for isol's own errors, 126 when the command cannot be executed, 127 when it is
//! not found.

/// `isol`'s exit code when the `--timeout` expired and the workload was killed.
pub const EXIT_TIMEOUT: i32 = 124;
/// `isol`'s exit code for its own errors: bad spec, missing rootfs, no permission, ...
pub const EXIT_ISOL_ERROR: i32 = 125;
/// `isol`'s exit code when the command exists but cannot be executed.
pub const EXIT_CANNOT_EXECUTE: i32 = 126;
/// `isol`'s exit code when the command is not found.
pub const EXIT_NOT_FOUND: i32 = 127;

/// Why `execve` of the workload's command failed inside the sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecFailure {
    /// ENOENT (or ENOTDIR): no such command in the root filesystem or on `PATH`.
    NotFound,
    /// EACCES, ENOEXEC, EISDIR, ...: the file exists but cannot be executed. Carries errno.
    NotExecutable(i32),
}

/// How the workload ended. Both backends report exactly this, so `isol` behaves the same
/// in both modes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkloadExit {
    /// The workload called exit with this code (0..=255).
    Exited(u8),
    /// The workload was killed by this signal number.
    Signaled(i32),
    /// `--timeout` expired; the workload was killed.
    TimedOut,
    /// The command could not be started.
    ExecFailed {
        /// Which failure (decides 126 or 127).
        failure: ExecFailure,
        /// The command as given (`args[0]`).
        command: String,
    },
}

impl ExecFailure {
    /// Classifies an `execve` errno the way a shell does.
    pub fn from_errno(errno: i32) -> Self {
        const ENOENT: i32 = 2;
        const ENOTDIR: i32 = 20;
        match errno {
            ENOENT | ENOTDIR => ExecFailure::NotFound,
            e => ExecFailure::NotExecutable(e),
        }
    }
}

impl WorkloadExit {
    /// The exit code `isol run` returns for this outcome.
    pub fn exit_code(&self) -> i32 {
        match self {
            WorkloadExit::Exited(code) => i32::from(*code),
            WorkloadExit::Signaled(sig) => 128 + sig,
            WorkloadExit::TimedOut => EXIT_TIMEOUT,
            WorkloadExit::ExecFailed {
                failure: ExecFailure::NotFound,
                ..
            } => EXIT_NOT_FOUND,
            WorkloadExit::ExecFailed { .. } => EXIT_CANNOT_EXECUTE,
        }
    }

    /// The line `isol` prints on its stderr for this outcome, if any. The same text in
    /// both modes (the parity suite compares it).
    pub fn message(&self) -> Option<String> {
        match self {
            WorkloadExit::TimedOut => Some("isol: timeout expired; the workload was killed".into()),
            WorkloadExit::ExecFailed {
                failure: ExecFailure::NotFound,
                command,
            } => Some(format!(
                "isol: {command}: command not found in the root filesystem"
            )),
            WorkloadExit::ExecFailed {
                failure: ExecFailure::NotExecutable(errno),
                command,
            } => Some(format!("isol: {command}: cannot execute (errno {errno})")),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_exit_code_convention() {
        assert_eq!(WorkloadExit::Exited(7).exit_code(), 7);
        assert_eq!(WorkloadExit::Signaled(9).exit_code(), 137);
        assert_eq!(WorkloadExit::TimedOut.exit_code(), 124);
        let nf = WorkloadExit::ExecFailed {
            failure: ExecFailure::from_errno(2),
            command: "x".into(),
        };
        assert_eq!(nf.exit_code(), 127);
        let ne = WorkloadExit::ExecFailed {
            failure: ExecFailure::from_errno(13),
            command: "x".into(),
        };
        assert_eq!(ne.exit_code(), 126);
    }

    #[test]
    fn test_message_only_for_isol_outcomes() {
        assert_eq!(WorkloadExit::Exited(3).message(), None);
        assert!(WorkloadExit::TimedOut.message().is_some());
    }
}
