#!/bin/sh
# Assembles stub.S into a flat ELF and prints it as the Rust byte array of stub.rs.
# Usage: sh sandbox/src/stub/stub.sh  (needs GNU as and objcopy)
set -eu
dir=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
as --64 -o "$tmp/stub.o" "$dir/stub.S"
objcopy -O binary -j .text "$tmp/stub.o" "$tmp/stub.bin"
od -An -v -tx1 "$tmp/stub.bin" | sed 's/ *$//; s/ \([0-9a-f][0-9a-f]\)/0x\1, /g; s/^/    /'
