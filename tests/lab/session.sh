#!/bin/bash
# A persistent lab session: one L1 VM that runs many commands, so each costs seconds less.
#
#   ISOL_LAB_SESSION=DIR tests/lab/run.sh -- CMD...   starts the session if needed, runs CMD
#   tests/lab/session.sh start DIR | stop DIR | status DIR
#
# DIR holds io/ (the L1's io share: io/req/<id>/ per command), console.log, qemu.log and
# qemu.pid. Commands run concurrently. The L1 powers itself off after
# ISOL_LAB_SESSION_IDLE (default 300) seconds without a command, so a forgotten session
# does not linger; `stop` ends it at once. Host files are read uncached in a session: a
# file replaced by a new inode between two commands (cargo's outputs, rm+cp, mv) is seen
# fresh; one rewritten in place could be mapped stale (executables), so the L1 drops its
# caches before a command whose executable changed since the session last ran it, and
# before every command with ISOL_LAB_SESSION_FRESH=1 (seconds slower).
# Sourced by run.sh (which has sourced lib.sh and defined write_request, finish_request,
# qemu_args, lab_failed, lab_wait_up, lab_boot_wedged, lab_boot_tries, kdir, initramfs),
# or run directly for start/stop/status.

session_qemu_alive() {
  local pid
  pid=$(cat "$1/qemu.pid" 2>/dev/null) || return 1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

# Stops the session in DIR: asks the L1 to power off, then kills QEMU if it lingers.
session_stop() {
  local dir="$1" i pid
  [ -d "$dir" ] || return 0
  if session_qemu_alive "$dir"; then
    : >"$dir/io/stop" 2>/dev/null
    for i in $(seq 1 50); do session_qemu_alive "$dir" || break; sleep 0.1; done
    pid=$(cat "$dir/qemu.pid" 2>/dev/null)
    session_qemu_alive "$dir" && kill "$pid" 2>/dev/null
  fi
  rm -rf "$dir/io" "$dir/qemu.pid"
}

# Starts the session's L1 (under the lock) unless it is up; waits until it takes commands.
session_ensure() {
  local dir="$1"
  mkdir -p "$dir" || refuse "cannot create the session dir $dir"
  exec 7>"$dir/lock"
  flock 7
  if session_qemu_alive "$dir" && [ -e "$dir/io/ready" ] && [ ! -e "$dir/io/stop" ]; then
    flock -u 7
    return 0
  fi
  local attempt st
  for attempt in $(seq 1 "$lab_boot_tries"); do
    session_stop "$dir"
    mkdir -p "$dir/io/req"
    : >"$dir/console.log"
    qemu_args "$dir/io" "$dir/console.log" session "isol_lab_idle=${ISOL_LAB_SESSION_IDLE:-300}"
    vlog "starting session L1 in $dir"
    # Detached: the session outlives this command. The hard cap is a backstop only.
    setsid timeout -k 5 "${ISOL_LAB_SESSION_MAX:-14400}" "${QEMU[@]}" \
      </dev/null >"$dir/qemu.log" 2>&1 &
    echo $! >"$dir/qemu.pid"
    # Not up in time: wedged while booting (see lab_boot_timeout in run.sh); boot again.
    lab_wait_up "$!" "$dir/io"
    case $? in
      0) vlog "session L1 up"; flock -u 7; return 0 ;;
      1) flock -u 7; lab_failed "session L1 died while booting" "$dir/console.log" "$dir/qemu.log" ;;
    esac
    st=$(lab_cpu_state "$dir/io/monitor.sock" 2>&1 | tr '\n' ' ')
    if [ "$attempt" -ge "$lab_boot_tries" ]; then
      session_stop "$dir"
      flock -u 7
      lab_failed "session L1 was not up within ${lab_boot_timeout}s, $attempt times (ISOL_LAB_BOOT_TIMEOUT); L1 vCPUs then: $st" \
        "$dir/console.log" "$dir/qemu.log"
    fi
    lab_boot_wedged "$st" "$dir/console.log"
  done
}

# True when the command's executable is new to the session or differs from the one it last
# ran (a rebuilt isol can be relinked in place, and the L1 would map stale pages and crash).
binary_changed() {
  local stamp old
  stamp=$(stat -L -c '%i %s %Y' -- "$(command -v -- "$2" 2>/dev/null || echo "$2")" 2>/dev/null) || return 1
  old=$(cat "$1/bin-stamp.$(printf %s "$2" | md5sum | cut -c1-8)" 2>/dev/null)
  printf '%s\n' "$stamp" >"$1/bin-stamp.$(printf %s "$2" | md5sum | cut -c1-8)"
  [ "$old" != "$stamp" ]
}

# Runs "$@" in the session named by $ISOL_LAB_SESSION; exits with its status.
session_run() {
  local dir attempt req deadline from
  dir=$(readlink -f "$ISOL_LAB_SESSION")
  req=""
  trap '[ -n "$req" ] && rm -rf "$req"' EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  for attempt in 1 2; do
    session_ensure "$dir"
    req=$(mktemp -d "$dir/io/req/r.XXXXXX") || refuse "cannot create a request in $dir"
    write_request "$req" "$@"
    if [ "${ISOL_LAB_SESSION_FRESH:-0}" = 1 ] || binary_changed "$dir" "$1"; then
      : >"$req/drop_caches"
    fi
    # The session's console is shared by its commands: only what comes after this one
    # started counts against it (lab_deadline_kind).
    from=$(( $(wc -l <"$dir/console.log" 2>/dev/null || echo 0) + 1 ))
    : >"$req/go"
    deadline=$(( $(date +%s) + ${ISOL_LAB_TIMEOUT:-900} ))
    while [ ! -e "$req/rc" ]; do
      if ! session_qemu_alive "$dir"; then
        # The L1 went idle and powered off as we submitted: start a new one, once.
        [ "$attempt" = 1 ] && [ ! -e "$req/taken" ] && { rm -rf "$req"; req=""; continue 2; }
        lab_failed "session L1 ended while running the command" "$dir/console.log" "$dir/qemu.log"
      fi
      if [ "$(date +%s)" -ge "$deadline" ]; then
        lab_hang_report "$req"
        lab_fail_kind=$(lab_deadline_kind $? "$dir/console.log" "$from")
        lab_cpu_state "$dir/io/monitor.sock" >"$dir/cpu-state" 2>&1
        session_stop "$dir"
        lab_failed "timed out after ${ISOL_LAB_TIMEOUT:-900}s (ISOL_LAB_TIMEOUT); session stopped; L1 vCPUs then: $(tr '\n' ' ' <"$dir/cpu-state")" \
          "$dir/console.log" "$dir/qemu.log"
      fi
      sleep 0.05
    done
    finish_request "$req"
  done
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -uo pipefail
  cmd="${1:-}" dir="${2:-}"
  [ -n "$dir" ] || { echo "usage: tests/lab/session.sh start|stop|status DIR" >&2; exit 2; }
  case "$cmd" in
    start) ISOL_LAB_SESSION="$dir" exec "$(dirname "$0")/run.sh" -- true ;;
    stop) session_stop "$dir"; echo "session $dir stopped" ;;
    status)
      if session_qemu_alive "$dir" && [ -e "$dir/io/ready" ]; then
        echo "session $dir: up (qemu pid $(cat "$dir/qemu.pid"), $(ls "$dir/io/req" | wc -l) request(s) open)"
      else
        echo "session $dir: down"; exit 1
      fi ;;
    *) echo "usage: tests/lab/session.sh start|stop|status DIR" >&2; exit 2 ;;
  esac
fi
