//! `isol run` (and the small subcommands): spec -> backend -> exit code.

use std::error::Error;

use isol_common::{Backend, Mode, Prepared, WorkloadSpec};
use isol_container::{ContainerBackend, ContainerOptions};
use isol_vmm::{VmBackend, VmOptions, VmmJail, VmmSeccomp};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};

use crate::cli::{BootArgs, KernelArgs, OnOff, RunArgs, TermArgs, WorkloadArgs};

/// Errors `main` prints with their causes, then exits 125.
pub type CliResult = Result<i32, Box<dyn Error + Send + Sync + 'static>>;

/// Signals isol forwards to the workload; blocked here, taken by the backend while it waits.
pub const FORWARDED: [Signal; 4] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
];

/// Blocks the forwarded signals in this thread; threads spawned later inherit the mask.
pub fn block_forwarded_signals() -> nix::Result<()> {
    let mut set = SigSet::empty();
    for s in FORWARDED {
        set.add(s);
    }
    nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None)
}

/// Resolves the spec from the spec file and flags; fills in the default rootfs.
pub fn resolve_spec(
    w: &WorkloadArgs,
    mode: Option<String>,
) -> Result<WorkloadSpec, Box<dyn Error + Send + Sync>> {
    let mut spec = WorkloadSpec::resolve(w.spec.as_deref(), &w.overrides(mode))?;
    if spec.rootfs.is_none() {
        spec.rootfs = Some(isol_common::rootfs::default_rootfs()?);
    }
    // The same rule in both modes, before anything starts: no hard limit above isol's
    // own, no oom_score_adj below it (without CAP_SYS_RESOURCE).
    isol_sandbox::rlimit::check_caller(&spec.rlimits, spec.oom_score_adj)?;
    // Every limit the spec does not name is isol's own, set explicitly in both modes.
    spec.rlimits = isol_sandbox::rlimit::complete(&spec.rlimits);
    Ok(spec)
}

/// Runs one workload in the given mode and returns isol's exit code.
pub fn run_spec(spec: &WorkloadSpec, w: &WorkloadArgs) -> CliResult {
    let exit = match spec.mode {
        Mode::Container => drive(
            &ContainerBackend::new(ContainerOptions { verbose: w.verbose }),
            spec,
        )?,
        Mode::Vm => drive(&VmBackend::new(vm_options(w, &EnvVars)), spec)?,
    };
    if let Some(msg) = exit.message() {
        eprintln!("{msg}");
    }
    write_stats();
    Ok(exit.exit_code())
}

/// Where [`vm_options`] reads its variables (the process environment, or a test's map).
pub trait Env {
    /// The variable's value, if set.
    fn get(&self, name: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug)]
pub struct EnvVars;

impl Env for EnvVars {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

/// The VM backend's options from the flags and the environment: `ISOL_VM_BOOT_TIMEOUT`
/// (seconds; default 60, 600 with `ISOL_IN_LAB=1`), `ISOL_VM_ALLOW_PVM=1`,
/// `ISOL_VM_CMDLINE_EXTRA`. The library itself reads none of them.
pub fn vm_options(w: &WorkloadArgs, env: &dyn Env) -> VmOptions {
    let default = if env.get("ISOL_IN_LAB").as_deref() == Some("1") {
        isol_vmm::backend::LAB_BOOT_TIMEOUT
    } else {
        isol_vmm::backend::DEFAULT_BOOT_TIMEOUT
    };
    let secs = env
        .get("ISOL_VM_BOOT_TIMEOUT")
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0 && *s < 1e9)
        .unwrap_or(default as f64);
    VmOptions {
        kernel: w.kernel.clone(),
        verbose: w.verbose,
        boot_timeout: Some(std::time::Duration::from_secs_f64(secs)),
        allow_pvm: env.get("ISOL_VM_ALLOW_PVM").as_deref() == Some("1"),
        cmdline_extra: env.get("ISOL_VM_CMDLINE_EXTRA"),
        seccomp: vmm_seccomp(w.vmm_seccomp),
        jail: vmm_jail(w.vmm_jail),
    }
}

/// With `$ISOL_STATS_FILE` set (by `isol compare`), records this process's peak RSS and
/// that of its largest waited-for child, in KiB, as JSON. Best effort: a failure to write
/// only loses the measurement.
fn write_stats() {
    use nix::sys::resource::{getrusage, UsageWho};
    let Some(path) = std::env::var_os("ISOL_STATS_FILE") else {
        return;
    };
    let own = getrusage(UsageWho::RUSAGE_SELF)
        .map(|u| u.max_rss())
        .unwrap_or(0);
    let children = getrusage(UsageWho::RUSAGE_CHILDREN)
        .map(|u| u.max_rss())
        .unwrap_or(0);
    let json = serde_json::json!({ "self_max_rss_kib": own, "children_max_rss_kib": children });
    let _ = std::fs::write(path, json.to_string());
}

fn drive<B: Backend>(
    backend: &B,
    spec: &WorkloadSpec,
) -> Result<isol_common::WorkloadExit, B::Error> {
    backend.prepare(spec)?.run()
}

/// `isol run`.
pub fn run(args: &RunArgs) -> CliResult {
    if args.detach.name.is_some() {
        return Err("--name names a detached run: add -d (--detach)".into());
    }
    block_forwarded_signals()?;
    let mut spec = resolve_spec(&args.workload, args.mode.clone())?;
    spec.terminal = terminal(args.term, spec.mode)?;
    run_spec(&spec, &args.workload)
}

/// `-t`: isol's stdin must be a terminal; refused before anything starts (exit 125).
fn terminal(t: TermArgs, mode: Mode) -> Result<bool, Box<dyn Error + Send + Sync>> {
    if !t.tty {
        return Ok(false);
    }
    if mode == Mode::Vm {
        return Err("-t/--tty is not available with --mode vm yet (container mode only)".into());
    }
    isol_term::require_tty(std::io::stdin())?;
    Ok(true)
}

/// `isol kernel`.
pub fn kernel(args: &KernelArgs) -> CliResult {
    print!("{}", isol_vmm::kernel_report(args.kernel.as_deref())?);
    Ok(0)
}

/// `isol boot`.
pub fn boot(args: &BootArgs) -> CliResult {
    block_forwarded_signals()?;
    let memory = isol_common::size::parse_size(&args.memory).ok_or_else(|| {
        format!(
            "--memory: {:?} is not a size; use 64M, 1G or bytes",
            args.memory
        )
    })?;
    let cfg = isol_vmm::BootConfig {
        kernel: args.kernel.clone(),
        initrd: args.initrd.clone(),
        cmdline: args.cmdline.clone(),
        memory,
        cpus: args.cpus,
        timeout: args.timeout.map(std::time::Duration::from_secs_f64),
        allow_pvm: args.allow_pvm,
        seccomp: vmm_seccomp(args.vmm_seccomp),
        jail: vmm_jail(args.vmm_jail),
    };
    Ok(isol_vmm::boot(&cfg)?)
}

/// The VMM's seccomp setting; turning it off is allowed but said loudly.
fn vmm_seccomp(switch: OnOff) -> VmmSeccomp {
    match switch {
        OnOff::On => VmmSeccomp::On,
        OnOff::Off => {
            eprintln!(
                "isol: WARNING: --vmm-seccomp off: the VMM runs WITHOUT its seccomp filters; \
                 a guest that exploits a bug in isol's device emulation gets every syscall \
                 of isol's user. For debugging only."
            );
            VmmSeccomp::Off
        }
    }
}

/// The VMM's jail setting; turning it off is allowed but said loudly.
fn vmm_jail(switch: OnOff) -> VmmJail {
    match switch {
        OnOff::On => VmmJail::On,
        OnOff::Off => {
            eprintln!(
                "isol: WARNING: --vmm-jail off: the VMM runs in isol's own process, as root, \
                 with the host's filesystem in view. For debugging only."
            );
            VmmJail::Off
        }
    }
}

/// `isol gc`.
pub fn gc(runs: &isol_runs::Store) -> CliResult {
    let mut removed = crate::lifecycle::commands::gc_runs(runs);
    removed.extend(isol_container::gc()?);
    removed.extend(isol_vmm::gc()?);
    removed.extend(isol_sandbox::net::host::gc()?);
    for r in &removed {
        println!("removed {r}");
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use clap::Parser;

    use super::*;

    struct Map(HashMap<&'static str, &'static str>);
    impl Env for Map {
        fn get(&self, name: &str) -> Option<String> {
            self.0.get(name).map(|v| v.to_string())
        }
    }

    fn workload() -> WorkloadArgs {
        let cli = crate::cli::Cli::parse_from(["isol", "run", "--", "true"]);
        let crate::cli::Command::Run(run) = cli.command else {
            panic!("not run")
        };
        run.workload
    }

    #[test]
    fn test_vm_options_defaults_and_lab() {
        let o = vm_options(&workload(), &Map(HashMap::new()));
        assert_eq!(o.boot_timeout, Some(Duration::from_secs(60)));
        assert!(!o.allow_pvm);
        assert_eq!(o.cmdline_extra, None);
        let lab = Map(HashMap::from([("ISOL_IN_LAB", "1")]));
        let o = vm_options(&workload(), &lab);
        assert_eq!(o.boot_timeout, Some(Duration::from_secs(600)));
    }

    #[test]
    fn test_vm_options_from_variables_bad_timeout_ignored() {
        let env = Map(HashMap::from([
            ("ISOL_VM_BOOT_TIMEOUT", " 2.5 "),
            ("ISOL_VM_ALLOW_PVM", "1"),
            ("ISOL_VM_CMDLINE_EXTRA", "loglevel=8"),
        ]));
        let o = vm_options(&workload(), &env);
        assert_eq!(o.boot_timeout, Some(Duration::from_millis(2500)));
        assert!(o.allow_pvm);
        assert_eq!(o.cmdline_extra.as_deref(), Some("loglevel=8"));
        for bad in ["0", "-1", "inf", "x"] {
            let env = Map(HashMap::from([("ISOL_VM_BOOT_TIMEOUT", bad)]));
            let o = vm_options(&workload(), &env);
            assert_eq!(o.boot_timeout, Some(Duration::from_secs(60)), "{bad}");
        }
    }
}
