#!/bin/bash
# Boot stress for the nested lab: ROUNDS one-shot L1 boots beside an idle session L1 (the
# layout of the test suite when a one-shot test runs while the suite's session idles),
# each running CMD. Prints a line per round with its time, exit status and re-boots
# (an L1 that was not up within ISOL_LAB_BOOT_TIMEOUT; see README.md, "When the L1
# hangs"). LOAD=1 adds a busy host thread.
#
#   tests/lab/boot-stress.sh 15                      # CMD defaults to `true`
#   LOAD=1 tests/lab/boot-stress.sh 15 sh -c 'grep -c svm /proc/cpuinfo'
#
# Exits 1 when any round failed (the last line counts failures and re-boots), else 0.
set -uo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:?usage: tests/lab/boot-stress.sh ROUNDS [CMD...]}
shift
[ $# -gt 0 ] || set -- true
session=$(mktemp -d /tmp/isol-boot-stress.XXXXXX)
err=$(mktemp /tmp/isol-boot-stress-err.XXXXXX)
hog=""
cleanup() {
  [ -n "$hog" ] && kill "$hog" 2>/dev/null
  tests/lab/session.sh stop "$session/s" >/dev/null 2>&1
  rm -rf "$session" "$err"
}
trap cleanup EXIT
ISOL_LAB_SESSION="$session/s" ISOL_LAB_SESSION_IDLE=3600 tests/lab/run.sh -- true || exit 1
failed=0 reboots=0
if [ "${LOAD:-0}" = 1 ]; then
  ( while :; do :; done ) &
  hog=$!
fi
for i in $(seq 1 "$rounds"); do
  t0=$(date +%s)
  tests/lab/run.sh -- "$@" >/dev/null 2>"$err"
  rc=$?
  n=$(grep -c 'booting it again' "$err")
  reboots=$((reboots + n))
  echo "$(date +%T) round $i: $(( $(date +%s) - t0 ))s rc=$rc re-boots=$n"
  [ "$rc" = 0 ] || { failed=$((failed + 1)); tail -20 "$err"; }
done
echo "boot-stress: $rounds rounds, $failed failed, $reboots L1 re-boot(s)"
[ "$failed" = 0 ]
