#!/bin/bash
# Extracts the uncompressed kernel ELF (vmlinux, which carries the PVH entry note that QEMU's
# microvm machine boots directly) from an x86 bzImage.
#
# usage: extract-vmlinux.sh <bzImage> <output vmlinux>
#
# The x86 boot protocol header says where the compressed payload is: setup_sects (offset 0x1f1)
# gives the size of the real-mode setup code, payload_offset/payload_length (0x248/0x24c) locate
# the payload inside the protected-mode part. The payload's first bytes name its compressor.
set -euo pipefail

if [[ $# -ne 2 ]]; then
  echo "usage: $0 <bzImage> <vmlinux>" >&2
  exit 2
fi
image=$1
out=$2

u8() { od -A n -t u1 -j "$2" -N 1 "$1" | tr -d ' \n'; }
u32() { od -A n -t u4 -j "$2" -N 4 "$1" | tr -d ' \n'; }

if [[ "$(dd if="$image" bs=1 skip=$((0x202)) count=4 status=none)" != "HdrS" ]]; then
  echo "$image: not a bzImage (no HdrS boot header)" >&2
  exit 1
fi
setup_sects=$(u8 "$image" $((0x1f1)))
if [[ $setup_sects -eq 0 ]]; then setup_sects=4; fi
payload_offset=$(u32 "$image" $((0x248)))
payload_length=$(u32 "$image" $((0x24c)))
start=$(( (setup_sects + 1) * 512 + payload_offset ))

payload() { tail -c +$((start + 1)) "$image" | head -c "$payload_length"; }
magic=$(od -A n -t x1 -j "$start" -N 6 "$image" | tr -d ' \n')

case "$magic" in
  1f8b*) decompress=(gzip -dc) ;;
  fd377a585a00) decompress=(xz -dc) ;;
  28b52ffd*) decompress=(zstd -dcq) ;;
  02214c18*) decompress=(lz4 -dc) ;;  # lz4 legacy frame, as the kernel writes it
  425a68*) decompress=(bzip2 -dc) ;;
  5d0000*) decompress=(xz --format=lzma -dc) ;;
  894c5a4f*) decompress=(lzop -dc) ;;
  *)
    echo "$image: unknown payload compression (magic $magic)" >&2
    exit 1
    ;;
esac

tmp="$out.tmp.$$"
trap 'rm -f "$tmp"' EXIT
# The kernel appends the decompressed size after the stream; decompressors that warn about
# trailing bytes still write the whole kernel, so the result is checked as an ELF instead.
payload | "${decompress[@]}" > "$tmp" 2>/dev/null || true
if [[ "$(head -c 4 "$tmp" | od -A n -t x1 | tr -d ' \n')" != "7f454c46" ]]; then
  echo "$image: payload (${decompress[0]}) did not decompress to an ELF kernel" >&2
  exit 1
fi
mv "$tmp" "$out"
trap - EXIT
