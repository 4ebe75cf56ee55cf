#!/usr/bin/env bash
# One command from a fresh machine to a running workload: installs what isol needs
# (apt packages, guest kernel, nested lab on PVM hosts), builds isol, and runs a workload
# in both modes.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
scripts/build.sh --release
isol=target/release/isol
echo "==> isol run -- echo hi (container mode)"
"$isol" run -- sh -c 'echo "hello from a container: $(uname -r), hostname $(hostname)"'
if [ -d /sys/module/kvm_pvm ]; then
  echo "==> this host's /dev/kvm is PVM: running VM mode inside the nested lab"
  tests/lab/run.sh -- "$PWD/$isol" run --mode vm -- sh -c 'echo "hello from a microVM: $(uname -r), hostname $(hostname)"'
else
  echo "==> isol run --mode vm -- echo hi"
  "$isol" run --mode vm -- sh -c 'echo "hello from a microVM: $(uname -r), hostname $(hostname)"'
fi
echo "==> done: $PWD/$isol is ready (see README)"
