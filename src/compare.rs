//! `isol compare`: not built yet (issue 5).

use crate::cli::CompareArgs;
use crate::run::CliResult;

/// `isol compare`.
pub fn compare(_args: &CompareArgs) -> CliResult {
    Err("isol compare is not built yet".into())
}
