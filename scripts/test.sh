#!/usr/bin/env bash
# The whole test suite, as root: dependencies (cached), format, lints, unit tests, and the
# privileged black-box tests of both modes (VM mode through the nested lab on PVM hosts).
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$SECONDS
step() { printf '==> [%4ds] %s\n' $((SECONDS - t0)) "$*"; }
scripts/deps.sh
step "cargo fmt --check"
cargo fmt --all -- --check
step "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
step "build isol and the static guest init"
scripts/build.sh
step "cargo test --workspace"
# VM-mode tests on PVM hosts share one nested-lab session (tests/support/mod.rs starts it
# in <target>/tmp/lab-session on first use; it is stopped here, or powers off when idle).
session="${CARGO_TARGET_DIR:-$PWD/target}/tmp/lab-session"
trap 'tests/lab/session.sh stop "$session" >/dev/null 2>&1 || true' EXIT
# One test at a time by default: on a 2-core PVM host every VM-mode test boots an L2 guest
# inside the one 2-CPU lab VM, and two SMP guests at once there can starve each other past
# the lab timeout (seen under load). ISOL_TEST_THREADS=2 is faster on a quiet host.
cargo test --workspace --no-fail-fast -- --test-threads="${ISOL_TEST_THREADS:-1}"
step "all tests passed"
