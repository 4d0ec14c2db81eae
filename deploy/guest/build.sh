#!/bin/bash
# Builds the guest image Podvisor boots every pod VM with:
#   <out>/vmlinux      uncompressed kernel ELF (PVH entry) for QEMU's microvm direct boot
#   <out>/initrd.img   lz4-compressed cpio newc: the agent as /init, kernel modules + load order, crun + libraries
#   <out>/MANIFEST     every path in the initrd, for review
#   <out>/kernel.release
#
# usage: build.sh <build_dir> [--init <file>] [--output <dir>]
#   --init    the program to run as /init (default: <build_dir>/bin/podvisor-agent)
#   --output  where to write the image (default: <build_dir>/guest)
#
# The kernel comes from Debian's generic kernel package (the versioned linux-image-*-amd64 that
# linux-image-amd64 depends on), downloaded once with `apt-get download` and cached in
# <build_dir>/guest-cache; it is unpacked with dpkg-deb, never installed on the host. Not the
# cloud kernel: it has no 9p, which template clones share host directories over (their RAM is a
# private copy-on-write mapping that virtiofsd cannot map). The package ships a compressed
# bzImage only; the uncompressed vmlinux is extracted from it (a bzImage spends ~6 s
# decompressing itself under TCG).
# A rebuild whose inputs (this script, the package, /init, crun and its libraries) are unchanged
# does nothing. Set PODVISOR_GUEST_REFRESH=1 to look for a newer kernel package.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

usage() {
  echo "usage: $0 <build_dir> [--init <file>] [--output <dir>]" >&2
  exit 2
}
[[ $# -ge 1 ]] || usage
build_dir=$(realpath -m "$1")
shift
init=$build_dir/bin/podvisor-agent
init_given=0
out=$build_dir/guest
while [[ $# -gt 0 ]]; do
  case "$1" in
    --init) init=$(realpath -m "$2"); init_given=1; shift 2 ;;
    --output) out=$(realpath -m "$2"); shift 2 ;;
    *) usage ;;
  esac
done

# Modules the guest needs (their dependencies are added from each module's .modinfo):
# virtio transports (microvm: mmio; q35: pci), the agent's virtio-serial port, block devices
# (virtio-blk and hot-pluggable virtio-scsi disks), the NIC, the root filesystem types, and
# virtiofs and 9p for the directory the host shares with the pod (volumes: virtiofs for cold
# boots, 9p for template clones), and the bridge a container
# with CAP_NET_ADMIN may create in the pod's network namespace (the guest has no modprobe to load
# it on demand; critest's Privileged and capability tests run `brctl addbr`).
# crc32c_generic first: the generic kernel builds the crc32c hash as a module, and libcrc32c
# (erofs) and ext4 (metadata checksums) look it up by name, which .modinfo does not list.
modules=(crc32c_generic virtio_mmio virtio_pci virtio_console virtio_blk virtio_scsi sd_mod virtio_net
         erofs ext4 overlay fuse virtiofs 9p 9pnet_virtio bridge)
# Programs besides /init, with their shared libraries and the dynamic loader.
programs=(/usr/bin/crun)

cache=$build_dir/guest-cache
mkdir -p "$cache" "$out"

log() { echo "guest: $*" >&2; }
die() { echo "guest: error: $*" >&2; exit 1; }

if [[ ! -x "$init" ]]; then
  if [[ $init_given == 0 ]]; then
    # setup.sh calls us after every build; until the agent target exists there is no image.
    log "warning: $init not built: no guest image (podvisord will refuse to start VMs)"
    exit 0
  fi
  die "no /init program at $init"
fi
for p in "${programs[@]}"; do [[ -x "$p" ]] || die "$p is missing (apt-get install crun)"; done

# --- 1. the kernel package -------------------------------------------------------------------
kernel_deb() {
  local deb
  deb=$(ls "$cache"/linux-image-[0-9]*-amd64_*.deb 2>/dev/null | grep -v -- '-cloud-amd64_' |
          sort -V | tail -n 1 || true)
  if [[ -n "$deb" && "${PODVISOR_GUEST_REFRESH:-0}" != 1 ]]; then
    echo "$deb"
    return
  fi
  local pkg
  versioned() {
    apt-cache depends linux-image-amd64 2>/dev/null |
      sed -n 's/^ *Depends: \(linux-image-[0-9].*-amd64\)$/\1/p' | { grep -v -- '-cloud-amd64$' || true; } |
      head -n 1
  }
  pkg=$(versioned)
  if [[ -z "$pkg" ]]; then
    log "apt knows no linux-image-amd64: apt-get update"
    apt-get update -qq >&2 || true
    pkg=$(versioned)
  fi
  [[ -n "$pkg" ]] || die "apt-cache knows no linux-image-amd64"
  if ! ls "$cache"/"${pkg}"_*.deb >/dev/null 2>&1; then
    log "downloading $pkg"
    # apt's sandbox user cannot write to most build dirs; download as the caller.
    (cd "$cache" && apt-get download -o APT::Sandbox::User=root "$pkg" >&2) ||
      die "apt-get download $pkg failed"
  fi
  ls "$cache"/"${pkg}"_*.deb | sort -V | tail -n 1
}

deb=$(kernel_deb)
deb_id=$(basename "$deb" .deb)
kroot=$cache/$deb_id
if [[ ! -f "$kroot/.unpacked" ]]; then
  log "unpacking $(basename "$deb")"
  rm -rf "$kroot"
  dpkg-deb -x "$deb" "$kroot"
  touch "$kroot/.unpacked"
fi
kver=$(ls "$kroot/lib/modules" | head -n 1)
[[ -n "$kver" ]] || die "$deb has no /lib/modules"
bzimage=$kroot/boot/vmlinuz-$kver

# --- 2. input hash: skip everything when nothing changed --------------------------------------
libs_of() {
  # Prints the shared libraries and loader a dynamic ELF needs (nothing for a static one).
  { ldd "$1" 2>/dev/null || true; } | sed -n 's/.*=> \(\/[^ ]*\) .*/\1/p; s/^[[:space:]]*\(\/[^ ]*\) .*/\1/p'
}
inputs() {
  echo "format 1"
  sha256sum "$here/build.sh" "$here/extract-vmlinux.sh" "$init"
  echo "$deb_id"
  echo "${modules[*]}"
  local p
  for p in "${programs[@]}" "$init"; do
    sha256sum "$p"
    libs_of "$p" | while read -r l; do sha256sum "$(readlink -f "$l")"; done
  done
}
stamp=$(inputs | sha256sum | cut -d' ' -f1)
if [[ -f "$out/.stamp" && "$(cat "$out/.stamp")" == "$stamp" && -f "$out/vmlinux" &&
      -f "$out/initrd.img" ]]; then
  log "up to date ($out)"
  exit 0
fi
rm -f "$out/.stamp"

# --- 3. vmlinux ---------------------------------------------------------------------------------
log "extracting vmlinux from $(basename "$bzimage")"
"$here/extract-vmlinux.sh" "$bzimage" "$out/vmlinux.new"
mv "$out/vmlinux.new" "$out/vmlinux"
echo "$kver" > "$out/kernel.release"

# --- 4. initrd tree -----------------------------------------------------------------------------
root=$(mktemp -d "$out/.root.XXXXXX")
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{dev,proc,sys,tmp,run,mnt,etc,root,usr/bin,usr/sbin,usr/lib64}
mkdir -p "$root/usr/lib/x86_64-linux-gnu"
# The Debian (merged /usr) layout, so that library paths recorded by ldd resolve as on the host.
ln -s usr/bin "$root/bin"
ln -s usr/sbin "$root/sbin"
ln -s usr/lib "$root/lib"
ln -s usr/lib64 "$root/lib64"
chmod 1777 "$root/tmp"

install -m 0755 "$init" "$root/init"

# Copies a host library (or loader) into the tree: the real file under its canonical path
# (/usr/...), plus a symlink for the name ldd printed when that differs.
add_lib() {
  local name=$1 real canon_name canon_real
  real=$(readlink -f "$name")
  canon_real=/usr${real#/usr}
  canon_name=$name
  [[ "$canon_name" == /usr/* ]] || canon_name=/usr$canon_name
  if [[ ! -e "$root$canon_real" ]]; then
    mkdir -p "$(dirname "$root$canon_real")"
    install -m 0755 "$real" "$root$canon_real"
  fi
  if [[ "$canon_name" != "$canon_real" && ! -e "$root$canon_name" ]]; then
    mkdir -p "$(dirname "$root$canon_name")"
    ln -s "$(realpath -m --relative-to="$(dirname "$canon_name")" "$canon_real")" \
      "$root$canon_name"
  fi
}
for p in "${programs[@]}"; do
  install -m 0755 "$(readlink -f "$p")" "$root/usr/bin/$(basename "$p")"
done
for p in "${programs[@]}" "$init"; do
  while read -r l; do add_lib "$l"; done < <(libs_of "$p")
done

# Kernel modules, dependencies first, decompressed, with /lib/modules/load-order.
declare -A mod_path=() mod_done=()
while read -r f; do
  b=$(basename "$f")
  b=${b%%.ko*}
  mod_path[${b//-/_}]=$f
done < <(cd "$kroot" && find lib/modules/"$kver"/kernel -name '*.ko*')
load_order=()
add_module() {
  local m=${1//-/_} d
  [[ -n "${mod_done[$m]:-}" ]] && return
  mod_done[$m]=1
  [[ -n "${mod_path[$m]:-}" ]] || return 0  # built into this kernel
  local src=$kroot/${mod_path[$m]} rel=${mod_path[$m]%.ko*}.ko
  mkdir -p "$(dirname "$root/$rel")"
  case "$src" in
    *.ko.xz) xz -dc "$src" > "$root/$rel" ;;
    *.ko.zst) zstd -dcq "$src" > "$root/$rel" ;;
    *.ko.gz) gzip -dc "$src" > "$root/$rel" ;;
    *) cp "$src" "$root/$rel" ;;
  esac
  chmod 0644 "$root/$rel"
  for d in $(objcopy -O binary --only-section=.modinfo "$root/$rel" /dev/stdout |
             tr '\0' '\n' | sed -n 's/^depends=//p' | tr ',' ' '); do
    add_module "$d"
  done
  load_order+=("/$rel")
}
for m in "${modules[@]}"; do add_module "$m"; done
printf '%s\n' "${load_order[@]}" > "$root/lib/modules/load-order"
echo "$kver" > "$root/lib/modules/kernel.release"

# --- 5. the archive: sorted, fixed times and owners, so equal inputs give equal bytes -----------
find "$root" -mindepth 1 -exec touch -h -d @0 {} +
# lz4 (legacy frame, the format the kernel's initramfs unpacker reads): boots as fast as an
# uncompressed archive under TCG (measured, docs/hypervisor.md) at half the size QEMU keeps in RAM.
(cd "$root" && find . -mindepth 1 | LC_ALL=C sort |
   cpio --quiet -o -H newc -R 0:0 --reproducible) | lz4 -l -9 -q > "$out/initrd.img.new"
mv "$out/initrd.img.new" "$out/initrd.img"
(cd "$root" && find . -mindepth 1 \( -type f -printf '%M %8s %p\n' \) -o \
   \( -type l -printf '%M        - %p -> %l\n' \) | LC_ALL=C sort -k3) > "$out/MANIFEST"
echo "$stamp" > "$out/.stamp"
log "built $out (kernel $kver, initrd $(du -h "$out/initrd.img" | cut -f1))"
