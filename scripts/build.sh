#!/usr/bin/env bash
# Builds isol and its static guest init. Usage: scripts/build.sh [--release]
# The guest init is linked statically (-C target-feature=+crt-static; no musl needed), stripped
# of debuginfo (7.8 MB -> 1.7 MB: it is packed into every VM's initramfs), and
# placed next to the isol binary, where the VM backend looks for it.
set -euo pipefail
cd "$(dirname "$0")/.."
profile=debug; flag=()
if [ "${1:-}" = --release ]; then profile=release; flag=(--release); fi
target_dir=${CARGO_TARGET_DIR:-target}
cargo build "${flag[@]}" --bin isol
RUSTFLAGS="-C target-feature=+crt-static -C strip=debuginfo" cargo build "${flag[@]}" -p isol-guest \
  --target x86_64-unknown-linux-gnu
install -m 0755 "$target_dir/x86_64-unknown-linux-gnu/$profile/isol-guest-init" \
  "$target_dir/$profile/isol-guest-init"
echo "built $target_dir/$profile/isol and $target_dir/$profile/isol-guest-init"
