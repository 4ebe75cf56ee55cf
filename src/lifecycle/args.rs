//! Arguments of the lifecycle commands (`run -d`, ps, logs, exec, kill, stop, wait, rm,
//! inspect). `src/cli.rs` only names them.

use clap::Args;

/// `isol run -d|--detach [--name NAME]`.
#[derive(Debug, Args, Clone, Default)]
pub struct DetachArgs {
    /// Run in the background under a supervisor; print the run's id once it has started.
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// A unique name for the detached run (1-128 of [a-zA-Z0-9_.-]).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
}

/// `isol ps`.
#[derive(Debug, Args)]
pub struct PsArgs {
    /// Show every run, also those that have ended.
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `isol logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Keep printing new output until the run ends.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Only the workload's stdout.
    #[arg(long, conflicts_with = "stderr")]
    pub stdout: bool,
    /// Only the workload's stderr.
    #[arg(long)]
    pub stderr: bool,
    /// Run id, id prefix or name.
    #[arg(value_name = "ID|NAME")]
    pub run: String,
}

/// `isol kill`.
#[derive(Debug, Args)]
pub struct KillArgs {
    /// Run id, id prefix or name.
    #[arg(value_name = "ID|NAME")]
    pub run: String,
    /// Signal name or number (default KILL).
    #[arg(value_name = "SIGNAL", default_value = "KILL")]
    pub signal: String,
}

/// `isol stop`.
#[derive(Debug, Args)]
pub struct StopArgs {
    /// Seconds between SIGTERM and SIGKILL.
    #[arg(long, short = 't', default_value_t = 10.0, value_name = "SECS")]
    pub time: f64,
    /// Run id, id prefix or name.
    #[arg(value_name = "ID|NAME")]
    pub run: String,
}

/// `isol wait`, `isol inspect`, `isol rm`: one run.
#[derive(Debug, Args)]
pub struct RunRef {
    /// Run id, id prefix or name.
    #[arg(value_name = "ID|NAME")]
    pub run: String,
}

/// `isol rm`.
#[derive(Debug, Args)]
pub struct RmArgs {
    /// Kill a running run first.
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Run id, id prefix or name.
    #[arg(value_name = "ID|NAME")]
    pub run: String,
}

/// `isol inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Run id, id prefix or name.
    #[arg(value_name = "ID|NAME")]
    pub run: String,
}

/// `isol exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Keep stdin attached (otherwise the command reads /dev/null).
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// A terminal for the command: a new pty in the run's own devpts, isol's terminal
    /// (which stdin must be) raw and pumped to it, its size following the caller's.
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Environment variable for the command (repeatable), added to the workload's.
    #[arg(long = "env", short = 'e', value_name = "K=V")]
    pub env: Vec<String>,
    /// Working directory (default: the workload's).
    #[arg(long, short = 'w', value_name = "DIR")]
    pub workdir: Option<String>,
    /// Numeric user (and group) to run as (default: the workload's).
    #[arg(long, short = 'u', value_name = "UID[:GID]")]
    pub user: Option<String>,
    /// Run id, id prefix or name.
    #[arg(value_name = "ID|NAME")]
    pub run: String,
    /// The command and its arguments.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        required = true,
        value_name = "CMD"
    )]
    pub cmd: Vec<String>,
}
