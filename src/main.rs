//! `isol`: run one workload under the isolation model its owner picks.
#![forbid(unsafe_code)]

mod cli;
mod compare;
mod lifecycle;
mod run;

use std::process::ExitCode;

use clap::Parser;
use isol_common::exit::EXIT_ISOL_ERROR;

use cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_ISOL_ERROR } else { 0 };
            let _ = e.print();
            return exit_code(code);
        }
    };
    let store = || lifecycle::store(cli.root.as_deref());
    use lifecycle::commands as lc;
    let result = match &cli.command {
        Command::Run(args) if args.detach.detach => lifecycle::detach::run_detached(&store(), args),
        Command::Run(args) => run::run(args),
        Command::Compare(args) => compare::compare(args),
        Command::Kernel(args) => run::kernel(args),
        Command::Boot(args) => run::boot(args),
        Command::Gc => run::gc(&store()),
        Command::Ps(a) => lc::ps(&store(), a),
        Command::Logs(a) => lc::logs(&store(), a),
        Command::Exec(a) => lifecycle::exec::exec(&store(), a),
        Command::Kill(a) => lc::kill(&store(), a),
        Command::Stop(a) => lc::stop(&store(), a),
        Command::Wait(a) => lc::wait(&store(), a),
        Command::Rm(a) => lc::rm(&store(), a),
        Command::Inspect(a) => lc::inspect(&store(), a),
    };
    match result {
        Ok(code) => exit_code(code),
        Err(e) => {
            print_error_chain(&*e);
            exit_code(EXIT_ISOL_ERROR)
        }
    }
}

/// Prints `isol: error` and then each cause on its own line (Cloud Hypervisor's style).
pub fn print_error_chain(e: &(dyn std::error::Error + 'static)) {
    eprintln!("isol: {e}");
    let mut source = e.source();
    while let Some(cause) = source {
        eprintln!("  caused by: {cause}");
        source = cause.source();
    }
}

fn exit_code(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(EXIT_ISOL_ERROR as u8))
}
