#!/bin/sh
# Assembles the tiny test guests into OUTDIR with binutils' `as` and `ld` (installed with
# gcc: `apt-get install binutils`).
#   NAME-raw.s -> OUTDIR/NAME-raw.bin  isol raw real-mode image (see vmm/src/boot/raw.rs)
#   NAME.s     -> OUTDIR/NAME          ELF64 with a PVH note, 32-bit entry, linked at 1 MiB
# Safe to run concurrently into one OUTDIR: each result is renamed into place.
# Usage: vmm/tests/guests/build.sh OUTDIR [SRCDIR]   (SRCDIR: default this directory;
# tests/vm_guests holds the channel-speaking raw guests of the black-box tests)
set -eu
out=${1:?usage: build.sh OUTDIR [SRCDIR]}
src=$(cd "${2:-$(dirname "$0")}" && pwd)
mkdir -p "$out"
work=$(mktemp -d "$out/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$src"
for s in *.s; do
    name=${s%.s}
    case $name in
    *-raw)
        as --32 -o "$work/$name.o" "$s"
        ld -m elf_i386 -Ttext 0 --oformat binary -e 0 -o "$work/$name.bin" "$work/$name.o"
        mv -f "$work/$name.bin" "$out/$name.bin"
        ;;
    *)
        as --64 -I "$src" -o "$work/$name.o" "$s"
        ld -m elf_x86_64 -T pvh.ld -nostdlib --no-warn-rwx-segments -o "$work/$name" "$work/$name.o"
        mv -f "$work/$name" "$out/$name"
        ;;
    esac
done
