#!/bin/bash
# Builds isol's microVM guest kernel from Debian's linux-source package.
#
#   kernels/build.sh [--force] [--keep-build]
#
# tinyconfig + kernels/microvm.config -> olddefconfig -> verify every wanted option ->
# vmlinux (ELF, PVH entry) + bzImage, installed into <cache>/kernels/<key>/ with the .config
# and an info file; <cache>/kernels/default points at the newest build. <cache> is isol's
# cache dir ($ISOL_CACHE_DIR, else $XDG_CACHE_HOME/isol, else $HOME/.cache/isol). <key>
# hashes the fragment, the linux-source package version and this script: a second run with
# the same inputs only prints where the kernel is.
#
# Environment: ISOL_KERNEL_JOBS (default: nproc), ISOL_KERNEL_BUILD_DIR (scratch space,
# default <cache>/kernels/.build; removed after a successful build unless --keep-build).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
fragment="$here/microvm.config"
src_pkg=linux-source-6.1
src_tar=/usr/src/linux-source-6.1.tar.xz
start=$(date +%s)

step() { echo "[kernel $(( $(date +%s) - start ))s] $*" >&2; }
die() { echo "kernels/build.sh: error: $*" >&2; exit 1; }

force=0 keep=0
for a in "$@"; do
  case "$a" in
    --force) force=1 ;;
    --keep-build) keep=1 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) die "unknown argument '$a' (see --help)" ;;
  esac
done

cache_dir() {
  if [ -n "${ISOL_CACHE_DIR:-}" ]; then echo "$ISOL_CACHE_DIR"
  elif [ -n "${XDG_CACHE_HOME:-}" ]; then echo "$XDG_CACHE_HOME/isol"
  elif [ -n "${HOME:-}" ]; then echo "$HOME/.cache/isol"
  else echo /var/cache/isol; fi
}

# --- 1. Build dependencies (Debian) ----------------------------------------------------------
need_pkgs=()
for p in "$src_pkg" build-essential flex bison libelf-dev libssl-dev bc xz-utils; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need_pkgs+=("$p")
done
if [ ${#need_pkgs[@]} -gt 0 ]; then
  step "installing ${need_pkgs[*]} (apt-get)"
  [ "$(id -u)" = 0 ] || die "missing packages ${need_pkgs[*]}: run as root or 'sudo apt-get install ${need_pkgs[*]}'"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends "${need_pkgs[@]}" >/dev/null \
    || { apt-get update >/dev/null && apt-get install -y --no-install-recommends "${need_pkgs[@]}" >/dev/null; } \
    || die "apt-get install ${need_pkgs[*]} failed"
fi
[ -f "$src_tar" ] || die "$src_tar is missing although $src_pkg is installed"

# --- 2. Cache key ------------------------------------------------------------------------------
src_version=$(dpkg-query -W -f='${Version}' "$src_pkg")
frag_hash=$(sha256sum "$fragment" | cut -c1-16)
key=$( { echo "$src_pkg $src_version"; cat "$fragment" "$0"; } | sha256sum | cut -c1-16)
kernels="$(cache_dir)/kernels"
dest="$kernels/$key"
mkdir -p "$kernels"
exec 9>"$kernels/.lock"
flock 9 || die "cannot lock $kernels/.lock"

if [ "$force" = 0 ] && [ -f "$dest/vmlinux" ] && [ -f "$dest/bzImage" ] && [ -f "$dest/info" ]; then
  ln -sfn "$key" "$kernels/default"
  step "cached: $dest (linux $src_version, fragment $frag_hash); nothing to do"
  echo "$dest/vmlinux"
  exit 0
fi

# --- 3. Unpack -----------------------------------------------------------------------------
build_root="${ISOL_KERNEL_BUILD_DIR:-$kernels/.build}"
work="$build_root/$key"
# Scratch trees of other keys (failed or --keep-build runs) are 1-2 GB each: drop them.
find "$build_root" -mindepth 1 -maxdepth 1 -type d -regextype posix-extended \
  -regex '.*/[0-9a-f]{16}' ! -name "$key" -exec rm -rf {} + 2>/dev/null || true
rm -rf "$work"
mkdir -p "$work"
step "unpacking $src_tar (linux-source $src_version) into $work"
tar -xf "$src_tar" -C "$work"
tree=$(find "$work" -mindepth 1 -maxdepth 1 -type d -name 'linux-source-*' | head -n1)
[ -n "$tree" ] || die "no linux-source-* directory in $src_tar"
cd "$tree"

# --- 4. Configure ----------------------------------------------------------------------------
# The fragment's lines, comments stripped: "NAME VALUE" with NAME without CONFIG_.
wanted() {
  sed -e 's/#.*$//' -e 's/[[:space:]]*$//' "$fragment" | grep -v '^[[:space:]]*$' \
    | sed -n 's/^[[:space:]]*CONFIG_\([A-Za-z0-9_]*\)=\(.*\)$/\1 \2/p'
}
bad=$(sed -e 's/#.*$//' "$fragment" | grep -v '^[[:space:]]*$' | grep -v '^[[:space:]]*CONFIG_[A-Za-z0-9_]*=' || true)
[ -z "$bad" ] || die "unparseable lines in $fragment: $bad"

step "make ARCH=x86_64 tinyconfig"
make -s ARCH=x86_64 tinyconfig >/dev/null
step "applying $(wanted | wc -l) options from kernels/microvm.config"
args=()
while read -r name value; do
  case "$value" in
    y) args+=(--enable "$name") ;;
    n) args+=(--disable "$name") ;;
    \"*) args+=(--set-str "$name" "$(echo "$value" | sed 's/^"//; s/"$//')") ;;
    *) args+=(--set-val "$name" "$value") ;;
  esac
done < <(wanted)
# Twice: an option whose menu is enabled in the same pass may need a second olddefconfig.
for _ in 1 2; do
  scripts/config --file .config "${args[@]}"
  make -s ARCH=x86_64 olddefconfig >/dev/null
done

step "verifying every wanted option survived olddefconfig"
missing=()
while read -r name value; do
  actual=$(grep -E "^(CONFIG_$name=|# CONFIG_$name is not set)" .config | head -n1 || true)
  case "$value" in
    n) [ -z "$actual" ] || [ "$actual" = "# CONFIG_$name is not set" ] || missing+=("CONFIG_$name=n (got: $actual)") ;;
    *) [ "$actual" = "CONFIG_$name=$value" ] || missing+=("CONFIG_$name=$value (got: ${actual:-absent})") ;;
  esac
done < <(wanted)
if [ ${#missing[@]} -gt 0 ]; then
  echo "kernels/build.sh: error: ${#missing[@]} wanted option(s) did not survive olddefconfig" \
       "(missing dependency or renamed option); fix kernels/microvm.config:" >&2
  printf '  %s\n' "${missing[@]}" >&2
  echo "  (config left in $tree/.config)" >&2
  exit 1
fi

# --- 5. Build ----------------------------------------------------------------------------------
jobs="${ISOL_KERNEL_JOBS:-$(nproc)}"
step "make -j$jobs vmlinux bzImage (several minutes)"
build_start=$(date +%s)
cpu_before=$(awk '{print $14+$15+$16+$17}' /proc/$$/stat)
log="$work/build.log"
if ! make ARCH=x86_64 -j"$jobs" vmlinux bzImage >"$log" 2>&1; then
  tail -n 40 "$log" >&2
  die "kernel build failed (full log: $log)"
fi
build_secs=$(( $(date +%s) - build_start ))
clk=$(getconf CLK_TCK)
cpu_after=$(awk '{print $14+$15+$16+$17}' /proc/$$/stat)
cpu_secs=$(( (cpu_after - cpu_before) / clk ))

# The PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY = 18, owner "Xen") is what lets the VMM boot
# the ELF directly.
if ! readelf -n vmlinux 2>/dev/null | grep -q 'Xen.*0x00000012\|Xen.*Unknown note type: (0x00000012)\|PHYS32_ENTRY'; then
  die "vmlinux has no PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY): is CONFIG_PVH=y?"
fi

# --- 6. Install --------------------------------------------------------------------------------
step "installing into $dest"
tmp="$kernels/.tmp-$key"
rm -rf "$tmp"
mkdir -p "$tmp"
cp vmlinux "$tmp/vmlinux"
cp arch/x86/boot/bzImage "$tmp/bzImage"
cp .config "$tmp/config"
cp "$fragment" "$tmp/microvm.config"
cat >"$tmp/info" <<EOF
source=$src_pkg $src_version
kernel_release=$(make -s ARCH=x86_64 kernelrelease)
fragment_sha256=$frag_hash
key=$key
built=$(date -u +%Y-%m-%dT%H:%M:%SZ)
vmlinux_bytes=$(stat -c %s vmlinux)
bzimage_bytes=$(stat -c %s arch/x86/boot/bzImage)
build_seconds=$build_secs
build_cpu_seconds=$cpu_secs
jobs=$jobs
EOF
rm -rf "$dest"
mv "$tmp" "$dest"
ln -sfn "$key" "$kernels/default"
cd /
if [ "$keep" = 0 ]; then
  step "removing scratch tree $work"
  rm -rf "$work"
fi
step "done: $dest/vmlinux ($(stat -c %s "$dest/vmlinux") bytes), bzImage ($(stat -c %s "$dest/bzImage") bytes), build ${build_secs}s wall, ${cpu_secs}s CPU"
echo "$dest/vmlinux"
