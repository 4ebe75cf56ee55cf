# Shared by tests/lab/setup.sh and tests/lab/run.sh (sourced, not run).
#
# The lab's inputs live outside the repository in <cache>/lab/ (<cache> as isol's:
# $ISOL_CACHE_DIR, else $XDG_CACHE_HOME/isol, else $HOME/.cache/isol):
#   <cache>/lab/kernel-<pkgversion>/   vmlinuz + the L1 modules, from Debian's kernel package
#   <cache>/lab/current                -> kernel-<pkgversion> (written by setup.sh)
#   <cache>/lab/initramfs-<hash>.cpio.gz  busybox + modules + init.sh, keyed by its inputs

lab_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# Debian packages the lab runs on (qemu: the L1 emulator; busybox-static: the L1 userland;
# cpio + gzip: packing its initramfs; kmod: modinfo to resolve module dependencies;
# xz-utils + binutils: extracting the ELF kernel and checking its PVH note; python3: the
# L1's KVM static-key pin, see init.sh).
LAB_APT_PACKAGES=(qemu-system-x86 busybox-static cpio gzip kmod xz-utils binutils python3)

# The L1 kernel package. Debian's *generic* amd64 flavour, not -cloud-amd64: the cloud
# flavour has no 9p (CONFIG_NET_9P unset), which the lab uses to share the host's files.
LAB_KERNEL_META=linux-image-amd64

# Modules the L1 init loads (dependencies are added from modinfo, in load order): file
# sharing first, then KVM (setup.sh also lists the groups apart in order.fs/order.kvm).
LAB_MODULES_FS=(virtio_pci 9pnet_virtio 9p overlay)
LAB_MODULES_KVM=(kvm-amd)

lab_cache_root() {
  if [ -n "${ISOL_CACHE_DIR:-}" ]; then echo "$ISOL_CACHE_DIR"
  elif [ -n "${XDG_CACHE_HOME:-}" ]; then echo "$XDG_CACHE_HOME/isol"
  elif [ -n "${HOME:-}" ]; then echo "$HOME/.cache/isol"
  else echo /var/cache/isol; fi
}

lab_cache="$(lab_cache_root)/lab"

# Packages of LAB_APT_PACKAGES that are not installed.
lab_missing_packages() {
  local p
  for p in "${LAB_APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"
  done
}

# The cached kernel dir setup.sh made (empty when there is none).
lab_kernel_dir() {
  local d
  d=$(readlink -f "$lab_cache/current" 2>/dev/null) || return 0
  [ -f "$d/vmlinuz" ] && [ -f "$d/modules/order" ] && echo "$d"
  return 0
}

# Key of the L1 initramfs: the init script, busybox's version and the module set.
lab_initramfs_key() {
  local kdir="$1"
  { cat "$lab_dir/init.sh" "$lab_dir/lib.sh"
    dpkg-query -W -f='${Version}' busybox-static
    cat "$kdir/version" "$kdir"/modules/*
  } | sha256sum | cut -c1-16
}

# Builds (if missing) the L1 initramfs for kernel dir $1; prints its path.
lab_ensure_initramfs() {
  local kdir="$1" key out tmp root
  key=$(lab_initramfs_key "$kdir")
  out="$lab_cache/initramfs-$key.cpio.gz"
  if [ ! -f "$out" ]; then
    tmp=$(mktemp -d "$lab_cache/.initramfs.XXXXXX")
    root="$tmp/root"
    mkdir -p "$root"/{bin,dev,proc,sys,io,host,newroot,ovl,modules}
    cp /bin/busybox "$root/bin/busybox"
    local applet
    for applet in $(/bin/busybox --list); do
      [ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"
    done
    cp "$kdir"/modules/*.ko "$kdir"/modules/order* "$root/modules/"
    cp "$lab_dir/init.sh" "$root/init"
    chmod 755 "$root/init"
    (cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc --quiet | gzip -1) >"$tmp/initramfs"
    mv "$tmp/initramfs" "$out"
    rm -rf "$tmp"
    # Older initramfs images (other inputs) are never used again.
    find "$lab_cache" -maxdepth 1 -name 'initramfs-*.cpio.gz' ! -name "${out##*/}" -delete
  fi
  echo "$out"
}
