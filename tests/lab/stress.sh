#!/bin/sh
# Stress for the nested lab: ROUNDS rounds of two concurrent VMs, one moving 6.9 MB of
# stdout + 1.3 MB of stderr through the isol channel, one exiting 42. Prints a line per
# round and the stderr of any run that did not end as expected. Run it inside the lab:
#
#   ISOL_LAB_SESSION=target/tmp/lab-session ISOL_LAB_TIMEOUT=1500 \
#     tests/lab/run.sh -- tests/lab/stress.sh "$PWD/target/debug/isol" 40
#
# (A hung L1 then shows in the timeout message, with each L1 vCPU's RIP; see README.md.)
isol=${1:?usage: stress.sh ISOL ROUNDS}
rounds=${2:-20}
tmp=$(mktemp -d /run/isol-stress.XXXXXX) || exit 1
trap 'rm -rf "$tmp"' EXIT
i=0
while [ "$i" -lt "$rounds" ]; do
  i=$((i + 1))
  "$isol" run --mode vm -- sh -c 'seq 1 1000000; seq 1 200000 >&2' >"$tmp/o" 2>"$tmp/e" &
  big=$!
  "$isol" run --mode vm -- sh -c 'exit 42' >/dev/null 2>"$tmp/e2"
  rc2=$?
  wait "$big"
  rc1=$?
  echo "$(date +%T) round $i: big rc=$rc1 out=$(wc -c <"$tmp/o") err=$(wc -c <"$tmp/e") small rc=$rc2"
  [ "$rc1" = 0 ] || { echo "--- big run stderr"; tail -30 "$tmp/e"; }
  [ "$rc2" = 42 ] || { echo "--- small run stderr"; tail -30 "$tmp/e2"; }
done
