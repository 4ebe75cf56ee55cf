//! Black-box tests of signal forwarding (root), each run in both modes: SIGTERM, SIGINT,
//! SIGHUP and SIGQUIT sent to isol reach the workload. The workload installs a trap, says
//! "ready", and the test signals isol only then (tests/support/signal_after_ready.py); the
//! trap names the signal and exits with its own code, which proves the workload itself got
//! it (a 128+N could be isol killing it).

mod support;

use support::{assert_code, signal_after_ready, stderr, stdout, Mode};

/// Sends SIG to isol once the workload's trap is in place; checks the trap ran.
fn trapped(mode: Mode, sig: &str, code: i32) {
    let script = format!(
        "trap 'echo got-{sig}; exit {code}' {sig}; echo ready; while :; do sleep 0.05; done"
    );
    let out = signal_after_ready(mode, sig, &["--", "sh", "-c", &script]);
    assert_code(&out, code);
    assert_eq!(stdout(&out), format!("ready\ngot-{sig}\n"));
    assert_eq!(stderr(&out), "");
}

fn sigterm_reaches_the_workloads_trap(mode: Mode) {
    trapped(mode, "TERM", 43);
}

fn sigint_reaches_the_workloads_trap(mode: Mode) {
    trapped(mode, "INT", 44);
}

fn sighup_reaches_the_workloads_trap(mode: Mode) {
    trapped(mode, "HUP", 45);
}

fn sigquit_reaches_the_workloads_trap(mode: Mode) {
    trapped(mode, "QUIT", 46);
}

fn sighup_without_a_trap_ends_the_workload_129(mode: Mode) {
    // The default action: the workload dies of SIGHUP, and isol says so (128+1).
    let out = signal_after_ready(
        mode,
        "HUP",
        &["--", "sh", "-c", "echo ready; exec sleep 1000"],
    );
    assert_code(&out, 129);
    assert_eq!(stdout(&out), "ready\n");
}

in_both_modes!(
    sigterm_reaches_the_workloads_trap,
    sigint_reaches_the_workloads_trap,
    sighup_reaches_the_workloads_trap,
    sigquit_reaches_the_workloads_trap,
    sighup_without_a_trap_ends_the_workload_129,
);
