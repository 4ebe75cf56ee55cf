//! `isol`: run one workload under the isolation model its owner picks.
#![forbid(unsafe_code)]

mod cli;
mod compare;
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
    let result = match cli.command {
        Command::Run(args) => run::run(&args),
        Command::Compare(args) => compare::compare(&args),
        Command::Kernel(args) => run::kernel(&args),
        Command::Boot(args) => run::boot(&args),
        Command::Gc => run::gc(),
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
