#!/bin/bash
# The nested KVM lab: runs CMD inside a Linux VM (L1) under QEMU's software emulator (TCG)
# with emulated AMD SVM, where /dev/kvm is a real kvm_amd, even on a host whose own
# /dev/kvm is PVM.
#
#   tests/lab/run.sh [--] CMD [ARG...]
#
# CMD runs as root in the host's own files (9p, read-only, with a throwaway writable layer;
# /tmp and isol's cache dir are shared read-write), in the caller's cwd, with HOME, PATH,
# LANG/LC_*, TERM, USER, TZ, RUST_BACKTRACE/RUST_LOG and ISOL_* (except ISOL_LAB_*) from
# the caller, plus ISOL_IN_LAB=1. Its stdout and stderr come out separately and byte-exact
# (after it ends), this script's stdin is its stdin (read to EOF first, empty when a tty),
# and this script exits with its exit status. 125: the lab itself failed (L1 console tail
# on stderr) -- or the command exited 125; only the status file below tells them apart.
#
# Environment:
#   ISOL_LAB_TIMEOUT=900     seconds before QEMU is killed (exit 125), after a report of
#                            the command's processes and kernel stacks from inside the L1
#   ISOL_LAB_MEM=4096        L1 memory, MiB;   ISOL_LAB_CPUS=2  L1 vCPUs (at least 2)
#   ISOL_LAB_VERBOSE=1       stream the L1 console and the lab's steps to stderr
#   ISOL_LAB_RW="/tmp:DIR"   host dirs shared read-write (default: /tmp and isol's cache)
#   ISOL_LAB_ENV="A B"       extra variables to pass to CMD
#   ISOL_LAB_APPEND="..."    extra L1 kernel command line (e.g. loglevel=7 to debug)
#   ISOL_LAB_BOOT_TIMEOUT=90 seconds for the L1 to come up before it counts as wedged
#                            and is booted again (3 boots at most)
#   ISOL_LAB_FAILURE_FILE=F  when the lab fails (exit 125), write F (nothing else writes
#                            it; the command is never told its path): "isol-lab-failure v1",
#                            "kind=broke" (the L1 itself broke: panic, soft lockup, RCU
#                            stall, wedged, died; a retry may help), "kind=hang" (the command
#                            ran past ISOL_LAB_TIMEOUT in a responsive L1) or "kind=setup"
#                            (bad inputs or usage), then "why=..."
#   ISOL_LAB_RETRY_LOG=F     append a line to F for every L1 boot that is retried
#   ISOL_LAB_SESSION=DIR     keep one L1 running in DIR and run commands through it
#                            (see tests/lab/session.sh); ends itself after
#                            ISOL_LAB_SESSION_IDLE=300 seconds without a command
# Setup (apt packages, L1 kernel, initramfs): tests/lab/setup.sh.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

t0=$(date +%s%N)
# Writes the failure status file (see ISOL_LAB_FAILURE_FILE above): kind $1, reason $2.
lab_mark() {
  [ -n "${ISOL_LAB_FAILURE_FILE:-}" ] || return 0
  printf 'isol-lab-failure v1\nkind=%s\nwhy=%s\n' "$1" "$(printf %s "$2" | tr '\n' ' ')" \
    >"$ISOL_LAB_FAILURE_FILE.tmp" && mv "$ISOL_LAB_FAILURE_FILE.tmp" "$ISOL_LAB_FAILURE_FILE"
}
refuse() { echo "tests/lab/run.sh: $*" >&2; lab_mark setup "$*"; exit 125; }
vlog() { [ "${ISOL_LAB_VERBOSE:-0}" = 1 ] && echo "[lab $(( ($(date +%s%N) - t0) / 1000000 ))ms] $*" >&2; return 0; }

[ "${1:-}" = "--" ] && shift
[ $# -gt 0 ] || refuse "usage: tests/lab/run.sh [--] CMD [ARG...]"
[ "$(id -u)" = 0 ] || refuse "the lab needs root (9p export of /, as the tests do)"
# Measured: with one L1 vCPU, KVM_RUN inside the L1 spins forever without entering the guest.
[ "${ISOL_LAB_CPUS:-2}" -ge 2 ] 2>/dev/null || refuse "ISOL_LAB_CPUS must be 2 or more (nested KVM hangs on a 1-vCPU L1)"

# --- Inputs -------------------------------------------------------------------------------------
mapfile -t missing < <(lab_missing_packages)
[ ${#missing[@]} -eq 0 ] || refuse "missing packages: ${missing[*]}; run tests/lab/setup.sh (as root) first"
command -v qemu-system-x86_64 >/dev/null || refuse "qemu-system-x86_64 is missing; run tests/lab/setup.sh"
kdir=$(lab_kernel_dir)
[ -n "$kdir" ] || refuse "no L1 kernel in $lab_cache; run tests/lab/setup.sh first (fetches it with apt-get download)"
kimage="$kdir/vmlinux"               # ELF, booted through its PVH entry (fast)
[ -f "$kimage" ] || kimage="$kdir/vmlinuz"
initramfs=$( { flock 8; lab_ensure_initramfs "$kdir"; } 8>"$lab_cache/.initramfs.lock") \
  || refuse "cannot build the L1 initramfs in $lab_cache"

# --- The request: cmd.sh + stdin ----------------------------------------------------------------
# Writes DIR/cmd.sh (runs "$@" in the caller's cwd with the chosen environment) and DIR/stdin.
write_request() {
  local dir="$1" name; shift
  local vars=("ISOL_IN_LAB=1")
  local extra=" ${ISOL_LAB_ENV:-} "
  for name in $(compgen -e); do
    case "$name" in
      ISOL_LAB_*|ISOL_IN_LAB) ;;
      HOME|PATH|LANG|LC_*|TERM|USER|LOGNAME|TZ|RUST_BACKTRACE|RUST_LOG|ISOL_*) vars+=("$name=${!name}") ;;
      *) [[ "$extra" == *" $name "* ]] && vars+=("$name=${!name}") ;;
    esac
  done
  case "$1" in *=*) refuse "CMD '$1' contains '=': give it as ./$1 or a full path" ;; esac
  {
    echo "cd $(printf '%q' "$PWD") 2>/dev/null || cd /"
    printf 'exec env -i'
    printf ' %q' "${vars[@]}" "$@"
    echo
  } >"$dir/cmd.sh"
  if [ -t 0 ]; then : >"$dir/stdin"; else cat >"$dir/stdin" 2>/dev/null; fi
}

# Prints the outputs of a finished request in DIR and exits with its status.
finish_request() {
  local dir="$1" rc
  rc=$(cat "$dir/rc")
  vlog "CMD exited $rc"
  cat "$dir/stdout"
  cat "$dir/stderr" >&2
  exit "$rc"
}

# The host directories shared read-write: "TAG PATH" lines for init.sh, -virtfs args.
rw_dirs() {
  local IFS=: d
  for d in ${ISOL_LAB_RW:-/tmp:$(lab_cache_root)}; do
    [ -n "$d" ] || continue
    mkdir -p "$d" 2>/dev/null
    [ -d "$d" ] && readlink -f "$d"
  done
}

# The L1 kernel's command line. Everything here shortens the boot under TCG, where each
# instruction is emulated: quiet console (each byte is an emulated UART write); no ACPI IRQ
# routing (AML under TCG takes ~1 s; ACPI stays on, it describes the second CPU and nested
# KVM hangs on a 1-CPU L1); no LSMs, audit, speculation mitigations; TSC trusted
# (QEMU's TSC follows the host clock; otherwise the clocksource watchdog falls back to the
# slow emulated HPET); no IO-APIC timer check; one UART; RNG seeded from RDRAND; no crypto
# self-tests, built-in certificates (modules are unsigned copies) or kprobe tracing
# (initcall_debug showed each at 0.1-0.3 s). oops=panic: an L1 oops (seen: a page fault
# in KVM's world switch under the emulated SVM) ends the L1 at once, so the command fails
# fast as a lab failure instead of hanging on a half-dead L1 for minutes. Likewise a soft
# lockup of 60 s (seen: an SMP L2's vCPU thread stuck in smp_call_function_many_cond, its
# IPI never answered by the other L1 vCPU, until the 900 s lab timeout) panics the L1;
# 60 s (watchdog_thresh=30) is far above the stalls a busy host causes.
# Under TCG the L1's TSC is the host's TSC (QEMU reads the host's), so on a host with a
# constant TSC its frequency is passed in (tsc_early_khz): calibrating it against the
# emulated PIT on a busy host fails or drifts ("Unable to calibrate against PIT").
l1_cmdline() {
  local khz="" hz
  if grep -qw constant_tsc /proc/cpuinfo; then
    # lpj (delay-loop units per jiffy) from the same frequency: the secondary CPU otherwise
    # calibrates its delay loop too, and fails the same way.
    hz=$(sed -n 's/^CONFIG_HZ=//p' "$kdir/config" 2>/dev/null)
    khz=$(awk -F: -v hz="${hz:-250}" \
      '/^cpu MHz/ { k = int($2 * 1000); printf "tsc_early_khz=%d lpj=%d", k, k * 1000 / hz; exit }' /proc/cpuinfo)
  fi
  echo "console=ttyS0 quiet loglevel=4 panic=-1 oops=panic softlockup_panic=1 watchdog_thresh=30" \
       "reboot=t acpi=noirq mitigations=off nokaslr" \
       "random.trust_cpu=on tsc=reliable no_timer_check audit=0 security=none lsm=" \
       "8250.nr_uarts=1 cryptomgr.notests $khz" \
       "initcall_blacklist=crypto_kdf108_init,load_system_certificate_list,init_kprobe_trace,blake2s_mod_init"
}

# QEMU's command line for an L1 whose io share is $1, console log $2, mode $3 (oneshot or
# session), extra kernel command line $4.
qemu_args() {
  local io="$1" console="$2" mode="$3" extra="${4:-}" i=0 d
  QEMU=(qemu-system-x86_64
    -accel "tcg,thread=${ISOL_LAB_TCG_THREAD:-multi}" -cpu "${ISOL_LAB_CPU:-max}" -M pc
    -smp "${ISOL_LAB_CPUS:-2}" -m "${ISOL_LAB_MEM:-4096}"
    -nodefaults -no-user-config -display none -no-reboot
    -monitor "unix:$io/monitor.sock,server=on,wait=off"
    -serial "file:$console"
    -kernel "$kimage" -initrd "$initramfs"
    -append "$(l1_cmdline) isol_lab=$mode $extra ${ISOL_LAB_APPEND:-}"
    -virtfs "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap"
    -virtfs "local,path=$io,mount_tag=io,security_model=none,multidevs=remap")
  : >"$io/mounts"
  while read -r d; do
    QEMU+=(-virtfs "local,path=$d,mount_tag=rw$i,security_model=none,multidevs=remap")
    echo "rw$i $d" >>"$io/mounts"
    i=$((i + 1))
  done < <(rw_dirs)
}

# Where each L1 vCPU is, from QEMU's monitor on socket $1 (RIP, and CPL: 0 is the L1
# kernel, 3 its user space; a vCPU running the L2 shows the L1's state at its VMRUN).
# The L1 boots with nokaslr, so kernel RIPs can be looked up in its /proc/kallsyms.
lab_cpu_state() {
  [ -S "$1" ] || return 0
  python3 - "$1" <<'PY' 2>/dev/null
import socket, sys, time
s = socket.socket(socket.AF_UNIX); s.settimeout(3); s.connect(sys.argv[1])
s.sendall(b"info registers -a\n"); out = b""; end = time.time() + 3
while time.time() < end:
    try:
        chunk = s.recv(65536)
    except socket.timeout:
        break
    if not chunk:
        break
    out += chunk
cpu = "?"
for line in out.decode(errors="replace").splitlines():
    if line.startswith("CPU#"):
        cpu = line.split()[0]
    elif line.startswith("RIP="):
        keep = [p for p in line.split() if p.startswith(("RIP=", "CPL=", "HLT="))]
        print(f"  {cpu} {' '.join(keep)}")
PY
}

# Asks the L1 for the report of a command that ran past the deadline (request dir $1 as
# the host sees it; init.sh writes hang.txt: its processes, their kernel stacks, the L1
# kernel log) and prints it to stderr; gives up after 30 s (a wedged L1 writes nothing).
lab_hang_report() {
  local i
  : >"$1/dump" 2>/dev/null || return 0
  for i in $(seq 1 300); do
    [ -e "$1/hang.txt" ] && break
    sleep 0.1
  done
  if [ -e "$1/hang.txt" ]; then
    echo "--- the command's processes in the L1 at the deadline (kernel stacks, L1 log) ---" >&2
    cat "$1/hang.txt" >&2
    return 0
  fi
  echo "--- no hang report from the L1 within 30 s (its init is stuck too) ---" >&2
  return 1
}

# The kind of a deadline failure: "hang" when the L1 answered with a hang report ($1 = 0)
# and its own console (console file $2 from line $3 on, 1 by default: the L1 kernel's
# serial, which nothing in the L1's user space writes to) shows no panic, soft lockup or
# RCU stall; else "broke".
lab_deadline_kind() {
  if [ "$1" = 0 ] && ! tail -n +"${3:-1}" "$2" 2>/dev/null \
      | grep -qE 'soft lockup|rcu_sched self-detected stall|rcu: INFO: rcu_sched|Kernel panic - not syncing'; then
    echo hang
  else
    echo broke
  fi
}

# Booting an L1: its init is up (io/ready) within ISOL_LAB_BOOT_TIMEOUT seconds, or it is
# wedged and booted again, up to 3 times in all. Seen: the L1 kernel live-patches a
# static key when init.sh pins KVM's keys (its first VM), and under QEMU's multi-threaded
# TCG a vCPU can loop on that int3 forever (both L1 vCPUs in exc_int3 / at the jump label
# in __schedule; about 1 boot in 6 with two L1s and a build on a 2-core host, before
# init.sh made the pin with the other CPUs offline). A normal boot takes 5-15 s.
lab_boot_timeout=${ISOL_LAB_BOOT_TIMEOUT:-90}
lab_boot_tries=3

# Waits for the booting L1 whose QEMU runs as pid $1 to be up (its init writes $2/ready):
# returns 0 once it is, 1 if QEMU has ended, 2 if it is still not up after
# ISOL_LAB_BOOT_TIMEOUT seconds (wedged).
lab_wait_up() {
  local deadline=$(( $(date +%s) + lab_boot_timeout ))
  while [ ! -e "$2/ready" ]; do
    kill -0 "$1" 2>/dev/null || return 1
    if [ "$(date +%s)" -ge "$deadline" ]; then
      [ -e "$2/ready" ] && return 0
      return 2
    fi
    sleep 0.05
  done
}

# Says that an L1 boot wedged (vCPU state $1, console $2) and that it is booted again.
lab_boot_wedged() {
  echo "tests/lab/run.sh: the L1 was not up within ${lab_boot_timeout}s (wedged; L1 vCPUs: $1); booting it again" >&2
  [ -n "${ISOL_LAB_RETRY_LOG:-}" ] && echo "L1-REBOOT $(date -u +%FT%TZ) not up within ${lab_boot_timeout}s" >>"$ISOL_LAB_RETRY_LOG"
  cp "$2" "$lab_cache/last-console.log" 2>/dev/null
}

# Prints why the L1 failed and the console tail, marks the failure (kind $lab_fail_kind:
# broke unless the caller says otherwise, see ISOL_LAB_FAILURE_FILE), then exits 125.
lab_fail_kind=broke
lab_failed() {
  local why="$1" console="$2" qlog="$3"
  echo "tests/lab/run.sh: $why" >&2
  lab_mark "$lab_fail_kind" "$why"
  if [ -n "${4:-}" ] && [ -S "$4" ]; then
    echo "--- L1 vCPUs (QEMU monitor) ---" >&2
    lab_cpu_state "$4" >&2
  fi
  [ -s "$qlog" ] && { echo "--- qemu ---" >&2; tail -n 20 "$qlog" >&2; }
  echo "--- L1 console (last 30 lines; full log: $lab_cache/last-console.log) ---" >&2
  tail -n 30 "$console" >&2
  cp "$console" "$lab_cache/last-console.log" 2>/dev/null
  exit 125
}

if [ -n "${ISOL_LAB_SESSION:-}" ]; then
  source "$lab_dir/session.sh"
  session_run "$@"
fi

# --- One-shot: boot an L1 for this command ------------------------------------------------------
io=$(mktemp -d "${TMPDIR:-/tmp}/isol-lab.XXXXXX") || refuse "cannot create a temp dir"
# The console log lives outside the io share, so nothing in the L1 but its kernel's serial
# writes it (lab_deadline_kind reads it).
console=$(mktemp "${TMPDIR:-/tmp}/isol-lab-console.XXXXXX") || refuse "cannot create a temp file"
qpid=""
tailpid=""
cleanup() {
  [ -n "$qpid" ] && kill "$qpid" 2>/dev/null && wait "$qpid" 2>/dev/null
  [ -n "$tailpid" ] && kill "$tailpid" 2>/dev/null
  rm -rf "$io" "$console"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

write_request "$io" "$@"
qemu_args "$io" "$console" oneshot
vlog "starting L1: ${QEMU[*]}"
if [ "${ISOL_LAB_VERBOSE:-0}" = 1 ]; then
  tail -n +1 -f "$console" >&2 &
  tailpid=$!
fi
# Boots the one-shot L1 until its init is up (io/ready), at most $lab_boot_tries times:
# an L1 that is not up within ISOL_LAB_BOOT_TIMEOUT is wedged (see lab_boot_wedged) and
# is killed and booted again. Sets qpid; the L1 then runs the request.
boot_oneshot() {
  local attempt=1 st
  while :; do
    # A killed boot's init may have got as far as writing these.
    rm -f "$io/ready" "$io/rc" "$io/rc.tmp" "$io/stdout" "$io/stderr" "$io/error"
    : >"$console"
    timeout -k 5 $((lab_boot_timeout + limit + 60)) "${QEMU[@]}" </dev/null >"$io/qemu.log" 2>&1 &
    qpid=$!
    # Up, or ended (the caller reports that): the L1 is booted.
    lab_wait_up "$qpid" "$io"
    [ $? = 2 ] || return 0
    st=$(lab_cpu_state "$io/monitor.sock" 2>&1 | tr '\n' ' ')
    kill "$qpid" 2>/dev/null; wait "$qpid" 2>/dev/null; qpid=""
    [ "$attempt" -ge "$lab_boot_tries" ] && lab_failed \
      "the L1 was not up within ${lab_boot_timeout}s, $attempt times (ISOL_LAB_BOOT_TIMEOUT); L1 vCPUs then: $st" \
      "$console" "$io/qemu.log"
    lab_boot_wedged "$st" "$console"
    attempt=$((attempt + 1))
  done
}

# The command's deadline is watched here, so a command that hangs is reported from inside
# the L1; `timeout` is the backstop for an L1 that cannot even report.
limit=${ISOL_LAB_TIMEOUT:-900}
boot_oneshot
deadline=$(( $(date +%s) + limit ))
while kill -0 "$qpid" 2>/dev/null; do
  if [ "$(date +%s)" -ge "$deadline" ]; then
    lab_hang_report "$io"
    lab_fail_kind=$(lab_deadline_kind $? "$console")
    cpu=$(lab_cpu_state "$io/monitor.sock" 2>&1 | tr '\n' ' ')
    kill "$qpid" 2>/dev/null
    lab_failed "timed out after ${limit}s (ISOL_LAB_TIMEOUT); L1 vCPUs then: $cpu" "$console" "$io/qemu.log"
  fi
  sleep 0.05
done
wait "$qpid"
qrc=$?
qpid=""
vlog "L1 ended (qemu status $qrc)"
[ -f "$io/rc" ] && finish_request "$io"
[ "$qrc" = 124 ] && lab_failed "the L1 did not answer by its backstop (ISOL_LAB_BOOT_TIMEOUT + ISOL_LAB_TIMEOUT + 60 s)" "$console" "$io/qemu.log"
[ -f "$io/error" ] && lab_failed "L1 init failed: $(cat "$io/error")" "$console" "$io/qemu.log"
lab_failed "L1 ended without running the command (qemu status $qrc)" "$console" "$io/qemu.log"
