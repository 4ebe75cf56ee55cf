#!/bin/sh
# /init of the lab's L1 VM (busybox sh). Loads kvm-amd and the 9p modules, builds the root
# the command runs in, runs it, and reports through the `io` 9p share:
#   host root (9p "hostroot", read-only) + a tmpfs upper layer (overlayfs: writes are
#   discarded), fresh /proc /sys /dev /dev/pts /dev/shm /run, the host directories listed
#   in /io/mounts ("TAG PATH" lines, 9p read-write shares) at their own paths, and /io
#   itself at /run/isol-lab.
# A request is a directory holding cmd.sh (bash, run in the new root) and stdin; the init
# writes stdout, stderr, then rc (the exit status, renamed into place last).
# isol_lab=oneshot: one request in /io, then power off. isol_lab=session: requests are
# /io/req/<id>/ directories that appear with a "go" file; runs them (concurrently) until
# /io/stop exists.
export PATH=/bin

log() { echo "lab-init: $*" >/dev/console; }
# reboot=t (triple fault) + QEMU's -no-reboot end the VM at once, with or without ACPI.
halt_vm() { sync; reboot -f; poweroff -f; }
fail() { log "$*"; echo "$*" >/io/error 2>/dev/null; halt_vm; }

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

# Loading KVM and pinning its keys (below) live-patch kernel text: static calls and jump
# labels, whose int3 can livelock a vCPU under QEMU's multi-threaded TCG (seen at the pin:
# exc_int3 / the preempt-notifier jump label in __schedule, about 1 boot in 6 under load).
# So that is done with the other CPUs offline, where no second vCPU runs the code being
# patched; they come back once the keys are pinned (KVM enables SVM on each as it comes).
offline=""
for c in /sys/devices/system/cpu/cpu[1-9]*/online; do
  [ -e "$c" ] && echo 0 >"$c" 2>/dev/null && offline="$offline $c"
done

# (Loading the KVM group concurrently on the second CPU was measured: no faster under TCG.)
for m in $(cat /modules/order); do
  insmod "/modules/$m.ko" || log "insmod $m failed"
done

mode=oneshot idle=300
for w in $(cat /proc/cmdline); do
  case "$w" in
    isol_lab=*) mode=${w#isol_lab=} ;;
    isol_lab_idle=*) idle=${w#isol_lab_idle=} ;;
  esac
done
# A one-shot L1 caches host files freely (nothing changes while it runs); a session lives
# across rebuilds, so it reads them uncached.
hostcache=loose
[ "$mode" = session ] && hostcache=none

ninep="trans=virtio,version=9p2000.L,msize=262144"
mount -t 9p -o "$ninep,cache=none" io /io || fail "cannot mount the io share"
mount -t 9p -o "$ninep,cache=$hostcache,ro" hostroot /host || fail "cannot mount the host root"

# The new root: the host's / under a throwaway writable layer.
mount -t tmpfs -o mode=755 tmpfs /ovl
mkdir -p /ovl/upper /ovl/work
if ! mount -t overlay -o lowerdir=/host,upperdir=/ovl/upper,workdir=/ovl/work overlay /newroot; then
  log "overlayfs over 9p failed; the root is read-only"
  mount --bind /host /newroot
fi
r=/newroot
mount -t proc proc $r/proc
mount -t sysfs sysfs $r/sys
mount -t cgroup2 cgroup2 $r/sys/fs/cgroup 2>/dev/null
mount -t devtmpfs devtmpfs $r/dev
mkdir -p $r/dev/pts $r/dev/shm
mount -t devpts -o newinstance,ptmxmode=0666 devpts $r/dev/pts
mount -t tmpfs -o mode=1777 tmpfs $r/dev/shm
mount -t tmpfs -o mode=755 tmpfs $r/run
if [ -f /io/mounts ]; then
  while read -r tag path; do
    [ -n "$tag" ] || continue
    mkdir -p "$r$path" 2>/dev/null
    mount -t 9p -o "$ninep,cache=none" "$tag" "$r$path" || fail "cannot mount share $tag at $path"
  done </io/mounts
fi
mkdir -p $r/run/isol-lab
mount --bind /io $r/run/isol-lab

# Runs the request in directory $1 (as seen from here; $2: the same inside the new root).
run_request() {
  chroot $r /bin/bash "$2/cmd.sh" <"$1/stdin" >"$1/stdout" 2>"$1/stderr"
  echo $? >"$1/rc.tmp"
  mv "$1/rc.tmp" "$1/rc"
}

# A hung command's state, for the host's timeout report: every user-space process with
# each thread's state, wait channel and kernel stack, then the L1 kernel log after asking
# for every CPU's backtrace and the blocked tasks (sysrq l, w). Written to $1.
hang_report() {
  {
    for p in /proc/[0-9]*; do
      # Kernel threads have an empty command line (proc files all have size 0).
      c=$(tr '\0\n' '  ' <$p/cmdline 2>/dev/null | cut -c1-300)
      [ -n "$c" ] || continue
      echo "== pid ${p#/proc/}: $c"
      for t in $p/task/*; do
        echo "-- tid ${t##*/} ($(cat $t/comm)) state $(sed 's/.*) //' $t/stat | cut -d' ' -f1) wchan $(cat $t/wchan)"
        sed 's/^/     /' $t/stack
      done
    done
    echo l >/proc/sysrq-trigger
    echo w >/proc/sysrq-trigger
    sleep 2
    echo "== L1 kernel log (last 150 lines)"
    chroot $r dmesg | tail -n 150  # util-linux's: busybox's reads only the log's start
  } >"$1.tmp" 2>&1
  mv "$1.tmp" "$1"
}

# Starts the hang report of request dir $1 once the host asks for it (its deadline passed:
# $1/dump). The host may remove a finished request's dir at any moment: `true` (a regular
# builtin) fails softly there, where a failed redirection of `:` would end this shell.
report_if_asked() {
  if [ -e "$1/dump" ] && [ ! -e "$1/dumping" ] && true 2>/dev/null >"$1/dumping"; then
    hang_report "$1/hang.txt" &
  fi
}

# Pin the L1 kernel's KVM static keys. Every VM create/destroy flips KVM's static keys
# (the preempt-notifier key in __schedule, the local APIC's sw-disabled key), and each
# flip live-patches kernel code with int3 (text_poke_bp). Under QEMU's multi-threaded TCG
# that patching sometimes livelocks a vCPU on the int3 (seen: both L1 vCPUs spinning in
# exc_int3 / at a jump-label nop in __schedule, console silent, for good). A VM with an
# irqchip and one vCPU kept open for the L1's life holds those keys on, so isol's VMs
# never flip them.
chroot $r /usr/bin/python3 -c '
import fcntl, os, time
kvm = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
vm = fcntl.ioctl(kvm, 0xAE01, 0)     # KVM_CREATE_VM
fcntl.ioctl(vm, 0xAE60, 0)           # KVM_CREATE_IRQCHIP
fcntl.ioctl(vm, 0xAE41, 0)           # KVM_CREATE_VCPU 0 (local APIC software-disabled)
open("/run/isol-lab-kvm-pinned", "w").close()
time.sleep(1 << 30)
' </dev/null >/dev/null 2>/dev/console &
i=0
while [ ! -e $r/run/isol-lab-kvm-pinned ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
[ -e $r/run/isol-lab-kvm-pinned ] || log "could not pin KVM's static keys (python3 in the host root?)"
for c in $offline; do
  echo 1 >"$c" || log "could not bring ${c%/online} back online"
done

echo up >/io/ready
# Both modes poll the io share; `read -t` on a private fifo is a sleep without forking.
mkfifo /tick
exec 3<>/tick
if [ "$mode" = session ]; then
  mkdir -p /io/req
  # Powers off after $idle seconds (10 ticks each) with no command running.
  quiet=0
  while [ ! -e /io/stop ] && [ $quiet -lt $((idle * 10)) ]; do
    quiet=$((quiet + 1))
    for d in /io/req/*; do
      [ -e "$d/go" ] || continue
      report_if_asked "$d"
      [ -e "$d/rc" ] || quiet=0
      [ -e "$d/taken" ] && continue
      # The host removes a finished request's directory at any moment: `true` (a regular
      # builtin) fails softly there, where a failed redirection of the special builtin `:`
      # would end this shell, PID 1, and panic the L1.
      true 2>/dev/null >"$d/taken" || continue
      # On request (ISOL_LAB_SESSION_FRESH=1), forget cached host pages and dentries: an
      # executable rewritten in place on the host (same inode) is otherwise mapped stale.
      # Files replaced by a new inode (cargo, rm+cp, mv) are always seen fresh.
      [ -e "$d/drop_caches" ] && echo 3 >/proc/sys/vm/drop_caches
      run_request "$d" "/run/isol-lab/req/${d##*/}" &
    done
    read -t 0.1 -u 3 _
  done
  : >/io/stop
else
  run_request /io /run/isol-lab &
  until [ -e /io/rc ]; do
    report_if_asked /io
    read -t 0.05 -u 3 _
  done
fi
halt_vm
