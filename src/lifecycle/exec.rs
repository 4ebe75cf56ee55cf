//! `isol exec` (container mode): rebuilds the workload's sandbox from the run's saved
//! command line with the exec's own command, env, workdir and user on top (the same
//! validation as `isol run`), names the run's init by a pidfd and confirms with the
//! supervisor that it is still that run's init, then hands over to isol-container's
//! `exec` (cgroups, `setns(pidfd)`, fork, the sandbox's workload steps).

use clap::Parser;
use isol_common::Mode;
use isol_runs::process::pidfd_open;
use isol_runs::proto::Request;
use isol_runs::{Status, Store};

use super::args::ExecArgs;
use super::detach::{ARGS_FILE, SPEC_COPY};
use super::{ask, status, Failure};
use crate::cli::{Cli, Command, RunArgs};
use crate::run::{block_forwarded_signals, resolve_spec, CliResult};

/// The `isol run` arguments the run was started with.
fn saved_run_args(dir: &std::path::Path) -> Result<RunArgs, Failure> {
    let text = std::fs::read(dir.join(ARGS_FILE))?;
    let saved: serde_json::Value = serde_json::from_slice(&text)?;
    let argv: Vec<String> = serde_json::from_value(saved["argv"].clone())?;
    if let Some(cwd) = saved["cwd"].as_str() {
        // Relative paths of the command line meant that directory.
        let _ = std::env::set_current_dir(cwd);
    }
    let Command::Run(mut run) = Cli::try_parse_from(&argv)?.command else {
        return Err("The run's saved command line is not `isol run`".into());
    };
    if run.workload.spec.is_some() {
        run.workload.spec = Some(dir.join(SPEC_COPY));
    }
    Ok(run)
}

/// `isol exec`.
pub fn exec(store: &Store, a: &ExecArgs) -> CliResult {
    block_forwarded_signals()?;
    let r = store.find(&a.run)?;
    if status(&r) != "running" {
        return Err(format!(
            "Run {} is not running ({}); exec needs a running run",
            r.short_name(),
            status(&r)
        )
        .into());
    }
    let dir = store.dir(&r.id);
    let here = std::env::current_dir()?;
    let mut run = saved_run_args(&dir)?;
    let w = &mut run.workload;
    w.cmd.clone_from(&a.cmd);
    w.env.extend(a.env.iter().cloned());
    if a.workdir.is_some() {
        w.workdir.clone_from(&a.workdir);
    }
    if a.user.is_some() {
        w.user.clone_from(&a.user);
    }
    let spec = resolve_spec(w, run.mode.clone());
    std::env::set_current_dir(here)?;
    let mut spec = spec?;
    if spec.mode != Mode::Container {
        return Err("isol exec into a VM-mode run is not available yet".into());
    }
    if a.tty {
        isol_term::require_tty(std::io::stdin())?;
        spec.terminal = true;
    }
    let workload = isol_container::workload_of(&spec)?;
    let pid = r.pid.ok_or("The run has no workload process recorded")?;
    // Pidfd first, confirmation second: the supervisor has not reaped its init while it
    // still says running with that pid, so the pidfd names that init.
    let init =
        pidfd_open(pid).map_err(|e| format!("Cannot open the run's init (pid {pid}): {e}"))?;
    let now = ask(store, &r, &Request::State)?;
    if now.state != Status::Running || now.pid != Some(pid) {
        return Err(format!("Run {} is no longer running", r.short_name()).into());
    }
    if !a.interactive && !a.tty {
        nix::unistd::dup2_stdin(std::fs::File::open("/dev/null")?)?;
    }
    let exit = isol_container::exec::exec(&init, &now.cgroups, &workload)?;
    if let Some(msg) = exit.message() {
        eprintln!("{msg}");
    }
    Ok(exit.exit_code())
}
