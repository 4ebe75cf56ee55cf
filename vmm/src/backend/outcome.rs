//! What the run ended with: the init's report, a timeout, or how the machine stopped.

use std::time::Duration;

use isol_common::{ExecFailure, WorkloadExit};

use super::{ConsoleLog, VmError};
use crate::channel::protocol::ExitReport;
use crate::channel::Outcome;
use crate::machine::MachineExit;

/// Turns what the channel recorded (and how the machine ended) into the run's result.
pub(super) fn map_outcome(
    outcome: Option<Outcome>,
    exit: &MachineExit,
    command: &str,
    console: &ConsoleLog,
    boot_timeout: Duration,
) -> Result<WorkloadExit, VmError> {
    match outcome {
        Some(Outcome::Reported(raw)) => match ExitReport::decode(raw) {
            Some(ExitReport::Exited(c)) => Ok(WorkloadExit::Exited(c)),
            Some(ExitReport::Signaled(s)) => Ok(WorkloadExit::Signaled(i32::from(s))),
            Some(ExitReport::ExecFailed(e)) => Ok(WorkloadExit::ExecFailed {
                failure: ExecFailure::from_errno(i32::try_from(e).unwrap_or(0)),
                command: command.to_string(),
            }),
            Some(ExitReport::InitFailed(errno)) => Err(VmError::InitFailed {
                errno,
                tail: console.tail(),
            }),
            None => Err(VmError::NoReport {
                cause: format!("bad report {raw:#x}"),
                tail: console.tail(),
            }),
        },
        Some(Outcome::TimedOut) => Ok(WorkloadExit::TimedOut),
        Some(Outcome::BootTimedOut { ready }) => Err(VmError::BootTimeout {
            secs: boot_timeout.as_secs(),
            stage: if ready {
                "the init started but the workload did not"
            } else {
                "the init never reported"
            },
            tail: console.tail(),
        }),
        None => {
            let cause = match exit {
                MachineExit::Reset => "the guest reset".to_string(),
                MachineExit::TripleFault => "the guest triple-faulted".to_string(),
                MachineExit::Stopped => "the VM was stopped".to_string(),
                MachineExit::DeadlineExpired => "the VM ran past its deadline".to_string(),
                MachineExit::Crashed { reason } => format!("the guest crashed: {reason}"),
            };
            Err(VmError::NoReport {
                cause,
                tail: console.tail(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_map_outcome_reports() {
        let c = ConsoleLog::new(None, false);
        let d = Duration::from_secs(60);
        let stopped = MachineExit::Stopped;
        let exited = Some(Outcome::Reported(ExitReport::Exited(7).encode()));
        assert_eq!(
            map_outcome(exited, &stopped, "x", &c, d).unwrap(),
            WorkloadExit::Exited(7)
        );
        let sig = Some(Outcome::Reported(ExitReport::Signaled(15).encode()));
        assert_eq!(
            map_outcome(sig, &stopped, "x", &c, d).unwrap(),
            WorkloadExit::Signaled(15)
        );
        let nf = Some(Outcome::Reported(ExitReport::ExecFailed(2).encode()));
        assert_eq!(
            map_outcome(nf, &stopped, "x", &c, d).unwrap().exit_code(),
            127
        );
        let ne = Some(Outcome::Reported(ExitReport::ExecFailed(13).encode()));
        assert_eq!(
            map_outcome(ne, &stopped, "x", &c, d).unwrap().exit_code(),
            126
        );
        assert_eq!(
            map_outcome(Some(Outcome::TimedOut), &stopped, "x", &c, d).unwrap(),
            WorkloadExit::TimedOut
        );
    }

    #[test]
    fn test_map_outcome_without_report_is_error_with_cause() {
        let mut c = ConsoleLog::new(None, false);
        std::io::Write::write_all(&mut c, b"Kernel panic - not syncing\n").unwrap();
        let e = map_outcome(
            None,
            &MachineExit::TripleFault,
            "x",
            &c,
            Duration::from_secs(1),
        )
        .unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("triple-faulted") && msg.contains("Kernel panic"),
            "{msg}"
        );
        let init = Some(Outcome::Reported(ExitReport::InitFailed(2).encode()));
        assert!(matches!(
            map_outcome(init, &MachineExit::Stopped, "x", &c, Duration::ZERO),
            Err(VmError::InitFailed { errno: 2, .. })
        ));
        let boot = Some(Outcome::BootTimedOut { ready: false });
        assert!(
            map_outcome(boot, &MachineExit::Stopped, "x", &c, Duration::ZERO)
                .unwrap_err()
                .to_string()
                .contains("never reported")
        );
    }
}
