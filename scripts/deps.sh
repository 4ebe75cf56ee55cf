#!/usr/bin/env bash
# Installs and caches everything isol and its tests need on a Debian bookworm x86_64 host
# (as root): Debian packages, the guest kernel (kernels/build.sh, cached by its inputs), and
# on PVM hosts the nested lab (tests/lab/setup.sh, cached). Idempotent; a second run is quick.
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$SECONDS
step() { printf '==> [%4ds] %s\n' $((SECONDS - t0)) "$*"; }

packages=(
  busybox-static                                  # the default root filesystem
  build-essential flex bison bc libelf-dev libssl-dev linux-source-6.1 cpio  # guest kernel
  qemu-system-x86                                 # nested lab on PVM hosts; benchmark baseline
  runc crun bubblewrap util-linux hyperfine time  # benchmark baselines and tools
  e2fsprogs iproute2 strace
  tmux                                            # tests/terminal.rs: isol run -t in real terminals
  nftables wget python3 iperf3                    # --network bridge (nft), tests/network.rs, bench/network.py
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  step "apt-get install ${missing[*]}"
  [ "$(id -u)" = 0 ] || { echo "setup needs root to install packages: ${missing[*]}" >&2; exit 1; }
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
else
  step "Debian packages present"
fi

step "guest kernel (kernels/build.sh; cached by config + source version)"
kernels/build.sh

if [ -d /sys/module/kvm_pvm ]; then
  step "PVM host: preparing the nested KVM lab (tests/lab/setup.sh; cached)"
  tests/lab/setup.sh
fi
step "dependencies ready"
