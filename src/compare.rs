//! `isol compare`: runs one workload in both modes several times and prints the measured
//! VM-versus-container table (latency, memory, size, exit agreement, isolation).
//!
//! Each run is a child `isol run --mode M ...` of this process, timed from spawn to its
//! first output byte and to its exit; its peak RSS comes from the child itself
//! (`$ISOL_STATS_FILE`). On a PVM host the VM column cannot be measured directly (ordinary
//! guest kernels do not boot there): it is measured inside the nested lab when the lab is
//! found, and labelled as such, or left out with the reason.

mod measure;
mod report;

use std::path::{Path, PathBuf};

use isol_common::Mode;

use crate::cli::{CompareArgs, WorkloadArgs};
use crate::run::CliResult;

pub use measure::ModeResult;

/// Where the VM column came from.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VmVenue {
    /// Hardware-backed /dev/kvm on this host.
    Direct,
    /// Inside the nested lab (QEMU TCG, emulated SVM): timings not representative.
    NestedLab,
    /// Not measured.
    NotMeasured {
        /// Why.
        reason: String,
    },
}

const PVM_NOTE: &str = "this host's /dev/kvm is PVM (kvm_pvm, no VT-x/AMD-V): ordinary guest \
kernels cannot boot on it, so VM mode runs inside the nested lab (a Linux VM under QEMU's \
software emulator with emulated AMD SVM); VM timings there are tens of times slower than on \
hardware KVM and are NOT representative";

/// `isol compare`.
pub fn compare(args: &CompareArgs) -> CliResult {
    // Validate once, up front, so a bad spec fails fast with the usual message.
    let spec = crate::run::resolve_spec(&args.workload, None)?;
    let runs = args.runs.max(1);
    let argv = workload_argv(&args.workload);
    let modes: Vec<Mode> = match args.only.as_deref() {
        Some("vm") => vec![Mode::Vm],
        Some("container") => vec![Mode::Container],
        Some(other) => {
            return Err(format!("--only: {other:?} is not a mode; use container or vm").into())
        }
        None => vec![Mode::Container, Mode::Vm],
    };
    let progress = !args.json || args.only.is_none();
    let mut results = Vec::new();
    let mut venue = VmVenue::Direct;
    for mode in modes {
        if mode == Mode::Vm && is_pvm_host() && !in_lab() {
            let (r, v) = vm_on_pvm_host(args, runs)?;
            venue = v;
            results.extend(r);
            continue;
        }
        let r = measure::measure_mode(
            mode,
            &argv,
            &spec,
            args.workload.kernel.as_deref(),
            runs,
            progress,
        )?;
        results.push(r);
    }
    if in_lab() {
        venue = VmVenue::NestedLab;
    }
    let report = report::Report::new(&spec, runs, results, venue);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table());
    }
    Ok(0)
}

/// The `run` flags that reproduce this workload (everything but the mode).
fn workload_argv(w: &WorkloadArgs) -> Vec<String> {
    let mut v = Vec::new();
    let mut opt = |flag: &str, val: &Option<String>| {
        if let Some(x) = val {
            v.push(flag.to_string());
            v.push(x.clone());
        }
    };
    opt("--spec", &w.spec.as_ref().map(|p| p.display().to_string()));
    opt("--rootfs", &w.rootfs);
    opt("--workdir", &w.workdir);
    opt("--hostname", &w.hostname);
    opt("--user", &w.user);
    opt("--memory", &w.memory);
    opt("--cpus", &w.cpus);
    opt("--pids", &w.pids);
    opt("--timeout", &w.timeout);
    opt(
        "--kernel",
        &w.kernel.as_ref().map(|p| p.display().to_string()),
    );
    for e in &w.env {
        v.push("--env".into());
        v.push(e.clone());
    }
    for vol in &w.volume {
        v.push("--volume".into());
        v.push(vol.clone());
    }
    if w.read_only {
        v.push("--read-only".into());
    }
    if w.vmm_seccomp == crate::cli::OnOff::Off {
        v.extend(["--vmm-seccomp".into(), "off".into()]);
    }
    if !w.cmd.is_empty() {
        v.push("--".into());
        v.extend(w.cmd.iter().cloned());
    }
    v
}

/// True on a host whose /dev/kvm is served by kvm_pvm.
pub fn is_pvm_host() -> bool {
    Path::new("/sys/module/kvm_pvm").exists()
}

fn in_lab() -> bool {
    std::env::var_os("ISOL_IN_LAB").is_some_and(|v| v == "1")
}

/// The nested lab script: `$ISOL_LAB`, else `tests/lab/run.sh` of the checkout this binary
/// was built in (target/<profile>/isol -> ../../tests/lab/run.sh).
fn find_lab() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ISOL_LAB") {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    let exe = std::env::current_exe().ok()?;
    exe.ancestors()
        .skip(1)
        .take(4)
        .map(|d| d.join("tests/lab/run.sh"))
        .find(|p| p.is_file())
}

/// Measures the VM column inside the nested lab (one lab boot for all runs).
fn vm_on_pvm_host(
    args: &CompareArgs,
    runs: u32,
) -> Result<(Vec<ModeResult>, VmVenue), Box<dyn std::error::Error + Send + Sync>> {
    let Some(lab) = find_lab() else {
        let reason = format!("{PVM_NOTE}; the lab (tests/lab/run.sh) was not found: set ISOL_LAB");
        return Ok((Vec::new(), VmVenue::NotMeasured { reason }));
    };
    eprintln!("isol compare: {PVM_NOTE}.");
    eprintln!("isol compare: booting the nested lab for the VM column (this takes a while)...");
    let exe = std::env::current_exe()?;
    let mut cmd = std::process::Command::new(&lab);
    cmd.arg("--")
        .arg(&exe)
        .arg("compare")
        .arg("--json")
        .arg("--only")
        .arg("vm");
    cmd.arg("--runs")
        .arg(runs.to_string())
        .args(workload_argv(&args.workload));
    let out = cmd.stdin(std::process::Stdio::null()).output()?;
    if !out.status.success() {
        let reason = format!(
            "{PVM_NOTE}; the lab run failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
        );
        return Ok((Vec::new(), VmVenue::NotMeasured { reason }));
    }
    let inner: report::Report = serde_json::from_slice(&out.stdout)?;
    Ok((inner.modes, VmVenue::NestedLab))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn test_workload_argv_round_trips_through_clap() {
        let cli = crate::cli::Cli::try_parse_from([
            "isol",
            "compare",
            "--memory",
            "64M",
            "-e",
            "A=1",
            "--read-only",
            "--",
            "sh",
            "-c",
            "echo hi",
        ])
        .unwrap();
        let crate::cli::Command::Compare(c) = cli.command else {
            panic!("not compare")
        };
        let argv = workload_argv(&c.workload);
        assert_eq!(
            argv,
            vec![
                "--memory",
                "64M",
                "--env",
                "A=1",
                "--read-only",
                "--",
                "sh",
                "-c",
                "echo hi"
            ]
        );
        let mut full = vec!["isol".to_string(), "run".to_string()];
        full.extend(argv);
        let again = crate::cli::Cli::try_parse_from(full).unwrap();
        let crate::cli::Command::Run(r) = again.command else {
            panic!("not run")
        };
        assert_eq!(r.workload.cmd, vec!["sh", "-c", "echo hi"]);
        assert_eq!(r.workload.memory.as_deref(), Some("64M"));
    }
}
