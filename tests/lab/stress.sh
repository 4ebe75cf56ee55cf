#!/bin/sh
# Stress for the nested lab: ROUNDS rounds of two concurrent VMs, one moving 6.9 MB of
# stdout + 1.3 MB of stderr through the isol channel, one exiting 42. Prints a line per
# round and the stderr of any run that did not end as expected. Run it inside the lab:
#
#   ISOL_LAB_SESSION=target/tmp/lab-session ISOL_LAB_TIMEOUT=1500 \
#     tests/lab/run.sh -- tests/lab/stress.sh "$PWD/target/debug/isol" 40
#
# (A hung L1 then shows in the timeout message, with each L1 vCPU's RIP; see README.md.)
# Exits 1 when any run did not end as expected (the last line counts them), else 0.
isol=${1:?usage: stress.sh ISOL ROUNDS}
rounds=${2:-20}
tmp=$(mktemp -d "${TMPDIR:-/run}/isol-stress.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
i=0
failed=0
while [ "$i" -lt "$rounds" ]; do
  i=$((i + 1))
  "$isol" run --mode vm -- sh -c 'seq 1 1000000; seq 1 200000 >&2' >"$tmp/o" 2>"$tmp/e" &
  big=$!
  "$isol" run --mode vm -- sh -c 'exit 42' >/dev/null 2>"$tmp/e2"
  rc2=$?
  wait "$big"
  rc1=$?
  echo "$(date +%T) round $i: big rc=$rc1 out=$(wc -c <"$tmp/o") err=$(wc -c <"$tmp/e") small rc=$rc2"
  # The big run's output is checked for size too: 6888896 bytes out, 1288895 err.
  if [ "$rc1" != 0 ] || [ "$(wc -c <"$tmp/o")" != 6888896 ] || [ "$(wc -c <"$tmp/e")" != 1288895 ]; then
    failed=$((failed + 1)); echo "--- big run stderr"; tail -30 "$tmp/e"
  fi
  [ "$rc2" = 42 ] || { failed=$((failed + 1)); echo "--- small run stderr"; tail -30 "$tmp/e2"; }
done
echo "stress: $rounds rounds, $failed failed run(s)"
[ "$failed" = 0 ]
