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
step "bench/test_bench.py (the benchmark's own helpers)"
if python3 -m pytest --version >/dev/null 2>&1; then
  python3 -m pytest -q bench/test_bench.py
else
  python3 -m unittest bench/test_bench.py
fi
step "cargo test --workspace"
# VM-mode tests on PVM hosts share one nested-lab session (tests/support/mod.rs starts it
# in <target>/tmp/lab-session on first use; it is stopped here, or powers off when idle).
tmp="${CARGO_TARGET_DIR:-$PWD/target}/tmp"
session="$tmp/lab-session"
# What the tests did not run or ran twice (tests/support/gate.rs appends; printed below).
skip_log="$tmp/isol-skipped.log"
retry_log="$tmp/isol-lab-retries.log"
mkdir -p "$tmp"
: >"$skip_log"
: >"$retry_log"
max_retries=2
# Prints skips and lab retries; fails the run on any skip or more than $max_retries retries.
summary() {
  local rc=$? skips retries reboots
  tests/lab/session.sh stop "$session" >/dev/null 2>&1 || true
  skips=$(grep -c . "$skip_log" 2>/dev/null) || skips=0
  retries=$(grep -c '^RETRY ' "$retry_log" 2>/dev/null) || retries=0
  reboots=$(grep -c '^L1-REBOOT ' "$retry_log" 2>/dev/null) || reboots=0
  if [ -s "$retry_log" ]; then
    echo "--- $retry_log ---"
    cat "$retry_log"
  fi
  echo "==> lab: $retries command retr$([ "$retries" = 1 ] && echo y || echo ies) (at most $max_retries), $reboots L1 re-boot(s)"
  if [ "$retries" -gt "$max_retries" ]; then
    echo "!!! FAILED: $retries lab retries in one run (more than $max_retries): the lab is unreliable or hides a bug !!!"
    rc=1
  fi
  if [ "$skips" -gt 0 ] || [ "${ISOL_SKIP_PRIVILEGED:-}" = 1 ]; then
    echo "--- $skip_log ---"
    cat "$skip_log"
    echo "!!! FAILED: ISOL_SKIP_PRIVILEGED=1: $skips privileged test(s) were SKIPPED; this run proves nothing about them !!!"
    rc=1
  fi
  [ "$rc" = 0 ] && step "all tests passed"
  exit "$rc"
}
trap summary EXIT
# One test at a time by default: on a 2-core PVM host every VM-mode test boots an L2 guest
# inside the one 2-CPU lab VM, and two SMP guests at once there can starve each other past
# the lab timeout (seen under load). ISOL_TEST_THREADS=2 is faster on a quiet host.
cargo test --workspace --no-fail-fast -- --test-threads="${ISOL_TEST_THREADS:-1}"
