#!/bin/bash
# Installs and caches everything the nested lab (tests/lab/run.sh) needs:
#   - Debian packages: LAB_APT_PACKAGES in lib.sh (qemu-system-x86, busybox-static, python3, ...);
#   - the L1 kernel and its modules (kvm, kvm-amd, 9p, virtio, overlay) from Debian's
#     generic amd64 kernel package, fetched with `apt-get download` and unpacked with
#     `dpkg -x` into <cache>/lab/kernel-<version>/ (nothing is installed on the host);
#   - the L1 initramfs (busybox + those modules + tests/lab/init.sh).
# Idempotent: a second run only checks. Needs root for apt-get.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

start=$(date +%s)
step() { echo "[lab-setup $(( $(date +%s) - start ))s] $*" >&2; }
die() { echo "tests/lab/setup.sh: error: $*" >&2; exit 1; }

# --- apt packages ----------------------------------------------------------------------------
mapfile -t missing < <(lab_missing_packages)
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || die "missing packages ${missing[*]}: run as root"
  step "installing ${missing[*]} (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null \
    || { apt-get update >/dev/null && apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null; } \
    || die "apt-get install ${missing[*]} failed"
fi

# --- the L1 kernel package ---------------------------------------------------------------------
# linux-image-amd64 is a metapackage; its dependency names the real image package.
pkg=$(apt-cache depends "$LAB_KERNEL_META" 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-[0-9].*\)$/\1/p' | head -n1)
if [ -z "$pkg" ]; then
  apt-get update >/dev/null || true
  pkg=$(apt-cache depends "$LAB_KERNEL_META" 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-[0-9].*\)$/\1/p' | head -n1)
fi
[ -n "$pkg" ] || die "cannot resolve $LAB_KERNEL_META to a kernel package (apt-get update?)"
version=$(apt-cache policy "$pkg" | sed -n 's/^ *Candidate: //p')
[ -n "$version" ] && [ "$version" != "(none)" ] || die "no candidate version for $pkg"
kdir="$lab_cache/kernel-$pkg-$version"
mkdir -p "$lab_cache"
exec 9>"$lab_cache/.lock"
flock 9

if [ -f "$kdir/vmlinuz" ] && [ -f "$kdir/modules/order.kvm" ]; then
  step "L1 kernel cached: $kdir"
else
  tmp=$(mktemp -d "$lab_cache/.kernel.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  step "apt-get download $pkg=$version"
  (cd "$tmp" && apt-get download "$pkg=$version" >/dev/null 2>&1) \
    || (cd "$tmp" && apt-get update >/dev/null && apt-get download "$pkg=$version" >/dev/null 2>&1) \
    || die "apt-get download $pkg=$version failed"
  step "unpacking with dpkg -x"
  dpkg -x "$tmp"/*.deb "$tmp/x"
  kver=$(ls "$tmp/x/lib/modules")
  mkdir -p "$tmp/out/modules"
  cp "$tmp/x/boot/vmlinuz-$kver" "$tmp/out/vmlinuz"
  cp "$tmp/x/boot/config-$kver" "$tmp/out/config"
  # The uncompressed ELF boots through its PVH entry: no XZ decompression under TCG
  # (about 2 s saved per lab start). The bzImage's payload is one XZ stream.
  off=$(grep -abo $'\xfd7zXZ\x00' "$tmp/out/vmlinuz" | head -n1 | cut -d: -f1)
  # (xz stops reading at the end of its stream, so tail may die of SIGPIPE: not an error.)
  if [ -n "$off" ] && { tail -c +$((off + 1)) "$tmp/out/vmlinuz" || true; } | xz -dc --single-stream >"$tmp/out/vmlinux" 2>/dev/null \
     && readelf -n "$tmp/out/vmlinux" 2>/dev/null | grep -q 'Xen.*(0x00000012)'; then
    step "extracted the ELF vmlinux (PVH entry)"
  else
    rm -f "$tmp/out/vmlinux"
    step "no PVH ELF in the kernel image; the lab will boot the bzImage (slower)"
  fi
  # Debian signs its modules; checking an RSA signature under TCG costs ~0.3 s per module,
  # so the copies the L1 loads have it cut off (the kernel does not enforce signatures;
  # it only taints itself, which does not matter in the lab). Layout at the end of a .ko:
  # signature, struct module_signature (12 bytes, sig_len big-endian in the last 4), magic.
  strip_signature() {
    local f="$1" magic size siglen
    magic=$(tail -c 28 "$f" | tr -d '\n')
    [ "$magic" = "~Module signature appended~" ] || return 0
    size=$(stat -c %s "$f")
    siglen=$(tail -c 32 "$f" | head -c 4 | od -An -tu1 | awk '{print $1*16777216+$2*65536+$3*256+$4}')
    truncate -s $((size - 40 - siglen)) "$f"
  }
  # Resolve dependencies depth-first so each module comes after what it needs.
  moddir="$tmp/x/lib/modules/$kver"
  order=()
  declare -A seen=()
  add_module() {
    local name="$1" file dep
    name=${name//-/_}
    [ -n "${seen[$name]:-}" ] && return 0
    seen[$name]=1
    file=$(find "$moddir/kernel" -name "$name.ko" -o -name "${name//_/-}.ko" | head -n1)
    if [ -z "$file" ]; then
      grep -qE "/(${name}|${name//_/-})\.ko$" "$moddir/modules.builtin" \
        || die "module $name is neither a module nor built into $pkg"
      return 0
    fi
    for dep in $(modinfo -F depends "$file" | tr ',' ' '); do add_module "$dep"; done
    cp "$file" "$tmp/out/modules/$name.ko"
    strip_signature "$tmp/out/modules/$name.ko"
    order+=("$name")
  }
  for m in "${LAB_MODULES_FS[@]}"; do add_module "$m"; done
  printf '%s\n' "${order[@]}" >"$tmp/out/modules/order.fs"
  nfs=${#order[@]}
  for m in "${LAB_MODULES_KVM[@]}"; do add_module "$m"; done
  printf '%s\n' "${order[@]:$nfs}" >"$tmp/out/modules/order.kvm"
  printf '%s\n' "${order[@]}" >"$tmp/out/modules/order"
  echo "$pkg $version $kver" >"$tmp/out/version"
  rm -rf "$kdir"
  mv "$tmp/out" "$kdir"
  rm -rf "$tmp"
  trap - EXIT
  step "L1 kernel $kver with modules: ${order[*]}"
fi
ln -sfn "$(basename "$kdir")" "$lab_cache/current"

step "L1 initramfs: $(lab_ensure_initramfs "$kdir")"
step "lab ready (tests/lab/run.sh -- CMD...)"
