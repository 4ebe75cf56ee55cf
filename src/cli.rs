//! Command-line arguments (clap derive). Nothing here but argument shapes and their
//! conversion to [`Overrides`]: the spec is validated in isol-common.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use isol_common::Overrides;

use crate::lifecycle::args as lc;

/// Run one workload in a KVM microVM or in a Linux container, with the same behaviour.
#[derive(Debug, Parser)]
#[command(name = "isol", version, about)]
pub struct Cli {
    /// Directory of detached runs' state (default: /run/isol/runs for root).
    #[arg(long, global = true, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands. Each one's arguments are built only when it is the one invoked
/// (`defer`): more subcommands cost a foreground `isol run` nothing at start.
#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum Command {
    /// Run a workload and exit with its exit code.
    Run(RunArgs),
    /// Run a workload in both modes several times and print the measured comparison.
    Compare(CompareArgs),
    /// Show the guest kernel in use, where it came from and how to build it.
    Kernel(KernelArgs),
    /// Boot a raw kernel image in isol's VMM (no workload, no init): for tests and benchmarks.
    Boot(BootArgs),
    /// Remove what killed isol runs left behind (cgroups, mounts, temp dirs, runs whose
    /// supervisor died).
    Gc,
    /// List detached runs.
    Ps(lc::PsArgs),
    /// Print a detached run's stdout and stderr.
    Logs(lc::LogsArgs),
    /// Run a command inside a running detached run.
    Exec(lc::ExecArgs),
    /// Send a signal to a detached run.
    Kill(lc::KillArgs),
    /// Stop a detached run: SIGTERM, then SIGKILL.
    Stop(lc::StopArgs),
    /// Wait for a detached run to end; exit with its exit code.
    Wait(lc::RunRef),
    /// Remove a detached run that has ended (-f: also a running one).
    Rm(lc::RmArgs),
    /// Show a detached run's record.
    Inspect(lc::InspectArgs),
}

/// Options shared by `run` and `compare`: the CLI contract both modes obey.
#[derive(Debug, Args, Clone)]
pub struct WorkloadArgs {
    /// Workload spec file (TOML). Flags override it.
    #[arg(long, value_name = "FILE")]
    pub spec: Option<PathBuf>,
    /// Root filesystem directory (default: isol's busybox rootfs).
    #[arg(long, value_name = "DIR")]
    pub rootfs: Option<String>,
    /// Environment variable for the workload (repeatable).
    #[arg(long = "env", short = 'e', value_name = "K=V")]
    pub env: Vec<String>,
    /// Working directory inside the workload.
    #[arg(long, value_name = "DIR")]
    pub workdir: Option<String>,
    /// Hostname inside the workload.
    #[arg(long, value_name = "NAME")]
    pub hostname: Option<String>,
    /// Numeric user (and group) to run as.
    #[arg(long, value_name = "UID[:GID]")]
    pub user: Option<String>,
    /// Memory limit (64M, 1G, bytes); over it the workload is killed (exit 137).
    #[arg(long, value_name = "SIZE")]
    pub memory: Option<String>,
    /// CPUs the workload sees and may use (e.g. 1, 2, 0.5).
    #[arg(long, value_name = "N")]
    pub cpus: Option<String>,
    /// Maximum number of processes and threads.
    #[arg(long, value_name = "N")]
    pub pids: Option<String>,
    /// Make / read-only (/tmp stays writable).
    #[arg(long)]
    pub read_only: bool,
    /// Mount a host directory inside (repeatable).
    #[arg(long, short = 'v', value_name = "HOST:PATH[:ro]")]
    pub volume: Vec<String>,
    /// Kill the workload after SECS seconds (exit 124).
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<String>,
    /// Seccomp profile: default (Docker's), unconfined, or an OCI/Docker JSON profile file.
    #[arg(long, value_name = "default|unconfined|FILE")]
    pub seccomp: Option<String>,
    /// Resource limit of the workload (repeatable), e.g. nofile=1024:4096 (default: nofile=1024).
    #[arg(long, value_name = "NAME=SOFT[:HARD]")]
    pub ulimit: Vec<String>,
    /// The workload's oom_score_adj, -1000..1000 (default 0).
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub oom_score_adj: Option<String>,
    // Network (`[network]` in the spec; see common/src/spec/network.rs).
    /// Network: none (loopback only, the default) or bridge (eth0 on isol's bridge, NAT).
    #[arg(long, value_name = "none|bridge")]
    pub network: Option<String>,
    /// Publish a workload port on the host (repeatable; needs --network bridge).
    #[arg(long, short = 'p', value_name = "[HOST_IP:]HOST_PORT:PORT[/tcp|/udp]")]
    pub publish: Vec<String>,
    /// Name server for the workload's /etc/resolv.conf (repeatable; default: the host's).
    #[arg(long, value_name = "IP")]
    pub dns: Vec<String>,
    /// Extra /etc/hosts entry (repeatable).
    #[arg(long, value_name = "NAME:IP")]
    pub add_host: Vec<String>,
    /// The bridge's IPv4 subnet (default 10.88.0.0/16).
    #[arg(long, value_name = "CIDR")]
    pub subnet: Option<String>,
    /// Guest kernel for VM mode (default: $ISOL_KERNEL, then the one `isol kernel` shows).
    #[arg(long, value_name = "FILE")]
    pub kernel: Option<PathBuf>,
    /// Show the guest kernel console (VM mode) and backend details on stderr.
    #[arg(long)]
    pub verbose: bool,
    /// VM mode: the VMM's per-thread seccomp filters; `off` is for debugging only.
    #[arg(long, value_enum, default_value_t = OnOff::On, value_name = "on|off")]
    pub vmm_seccomp: OnOff,
    /// VM mode: the VMM's jail (own namespaces, empty root, own cgroup, unprivileged
    /// uid, capabilities dropped); `off` is for debugging only.
    #[arg(long, value_enum, default_value_t = OnOff::On, value_name = "on|off")]
    pub vmm_jail: OnOff,
    /// The command and its arguments.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    pub cmd: Vec<String>,
}

/// `isol run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Isolation model: container (default) or vm.
    #[arg(long, value_name = "container|vm")]
    pub mode: Option<String>,
    /// -d|--detach, --name.
    #[command(flatten)]
    pub detach: lc::DetachArgs,
    /// Terminal options (-i, -t).
    #[command(flatten)]
    pub term: TermArgs,
    /// The workload.
    #[command(flatten)]
    pub workload: WorkloadArgs,
}

/// `-i` / `-t` of `isol run` (docker's).
#[derive(Debug, Args, Clone, Copy)]
pub struct TermArgs {
    /// Keep stdin attached (it always is: accepted for docker's `-it`).
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Give the workload a terminal of its own (a pty), wired to isol's terminal in raw
    /// mode; isol's stdin must be a terminal.
    #[arg(short = 't', long)]
    pub tty: bool,
}

/// `isol compare`.
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Runs per mode.
    #[arg(long, default_value_t = 5)]
    pub runs: u32,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Measure one mode only (used to measure the VM column inside the nested lab).
    #[arg(long, value_name = "container|vm")]
    pub only: Option<String>,
    /// The workload.
    #[command(flatten)]
    pub workload: WorkloadArgs,
}

/// `isol kernel`.
#[derive(Debug, Args)]
pub struct KernelArgs {
    /// Kernel to describe instead of the default.
    #[arg(long, value_name = "FILE")]
    pub kernel: Option<PathBuf>,
}

/// `isol boot`: the bare VMM.
#[derive(Debug, Args)]
pub struct BootArgs {
    /// Kernel image: ELF with a PVH note, or bzImage.
    #[arg(long, value_name = "FILE")]
    pub kernel: PathBuf,
    /// Initial ramdisk.
    #[arg(long, value_name = "FILE")]
    pub initrd: Option<PathBuf>,
    /// Kernel command line.
    #[arg(long, default_value = "")]
    pub cmdline: String,
    /// Guest memory.
    #[arg(long, default_value = "128M", value_name = "SIZE")]
    pub memory: String,
    /// vCPUs.
    #[arg(long, default_value_t = 1)]
    pub cpus: u8,
    /// Stop the VM after SECS seconds (exit 124).
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<f64>,
    /// Boot even on a PVM host (for PVM guest kernels and tiny test guests).
    #[arg(long)]
    pub allow_pvm: bool,
    /// The VMM's per-thread seccomp filters; `off` is for debugging only.
    #[arg(long, value_enum, default_value_t = OnOff::On, value_name = "on|off")]
    pub vmm_seccomp: OnOff,
    /// The VMM's jail; `off` is for debugging only.
    #[arg(long, value_enum, default_value_t = OnOff::On, value_name = "on|off")]
    pub vmm_jail: OnOff,
}

/// A switch that is on unless turned off explicitly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnOff {
    /// On (the default).
    On,
    /// Off.
    Off,
}

impl WorkloadArgs {
    /// The overrides these flags make to the spec file.
    pub fn overrides(&self, mode: Option<String>) -> Overrides {
        Overrides {
            mode,
            args: self.cmd.clone(),
            env: self.env.clone(),
            cwd: self.workdir.clone(),
            user: self.user.clone(),
            hostname: self.hostname.clone(),
            rootfs: self.rootfs.clone(),
            read_only: self.read_only,
            volumes: self.volume.clone(),
            cpus: self.cpus.clone(),
            memory: self.memory.clone(),
            pids: self.pids.clone(),
            timeout: self.timeout.clone(),
            seccomp: self.seccomp.clone(),
            ulimits: self.ulimit.clone(),
            oom_score_adj: self.oom_score_adj.clone(),
            network: self.network.clone(),
            publish: self.publish.clone(),
            dns: self.dns.clone(),
            add_hosts: self.add_host.clone(),
            subnet: self.subnet.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(argv: &[&str]) -> Cli {
        Cli::try_parse_from(argv).expect("argv should parse")
    }

    #[test]
    fn test_run_parses_contract_flags_and_trailing_cmd() {
        let cli = parse(&[
            "isol",
            "run",
            "--mode",
            "vm",
            "--memory",
            "64M",
            "--cpus",
            "2",
            "--pids",
            "10",
            "-e",
            "A=1",
            "--env",
            "B=",
            "--read-only",
            "--volume",
            "/tmp:/d:ro",
            "--timeout",
            "3",
            "--user",
            "1:2",
            "--hostname",
            "h",
            "--workdir",
            "/tmp",
            "--seccomp",
            "unconfined",
            "--ulimit",
            "nofile=10:20",
            "--oom-score-adj",
            "-5",
            "--",
            "sh",
            "-c",
            "exit 7",
        ]);
        let Command::Run(run) = cli.command else {
            panic!("not run")
        };
        let ov = run.workload.overrides(run.mode.clone());
        assert_eq!(ov.mode.as_deref(), Some("vm"));
        assert_eq!(ov.args, vec!["sh", "-c", "exit 7"]);
        assert_eq!(ov.env, vec!["A=1", "B="]);
        assert_eq!(ov.memory.as_deref(), Some("64M"));
        assert!(ov.read_only);
        assert_eq!(ov.volumes, vec!["/tmp:/d:ro"]);
        assert_eq!(ov.seccomp.as_deref(), Some("unconfined"));
        assert_eq!(ov.ulimits, vec!["nofile=10:20"]);
        assert_eq!(ov.oom_score_adj.as_deref(), Some("-5"));
    }

    #[test]
    fn test_run_cmd_hyphen_args_not_taken_as_flags() {
        let cli = parse(&["isol", "run", "ls", "-la", "--memory", "1G"]);
        let Command::Run(run) = cli.command else {
            panic!("not run")
        };
        assert_eq!(run.workload.cmd, vec!["ls", "-la", "--memory", "1G"]);
        assert_eq!(run.workload.memory, None);
    }
}
