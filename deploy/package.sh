#!/usr/bin/env bash
# Builds the Debian package build/podvisor_<version>_amd64.deb with dpkg-deb from a build tree
# that holds podvisord, podvisorctl and the guest image (deploy/guest/build.sh):
#   /usr/bin/podvisord -> /usr/lib/podvisor/bin/podvisord  (the guest image is found beside it,
#   /usr/bin/podvisorctl                                    in /usr/lib/podvisor/guest)
#   /lib/systemd/system/podvisord.service
#   /etc/podvisor/config.yaml (commented defaults), /etc/podvisor/config.d/
#   /usr/share/podvisor/cni/ (the default CNI network, installed by postinst when the node has none)
#   /usr/share/doc/podvisor/ (the operator's docs)
# Dependencies are the Debian packages of every shared library the binaries link (dpkg -S), plus
# what runs pod VMs and their networks.
# Usage: deploy/package.sh [build_dir]   (env PODVISOR_VERSION overrides the version)
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="$(cd "${1:-$repo/build}" && pwd)"
die() { echo "package: error: $*" >&2; exit 1; }

version=${PODVISOR_VERSION:-$(sed -n 's/^project(podvisor VERSION \([0-9.]*\).*/\1/p' \
  "$repo/CMakeLists.txt")}
[ -n "$version" ] || die "no version in CMakeLists.txt"
arch=$(dpkg --print-architecture)
for f in bin/podvisord bin/podvisorctl guest/vmlinux guest/initrd.img; do
  [ -e "$build/$f" ] || die "$build/$f is missing (build podvisord podvisorctl, then deploy/guest/build.sh)"
done

stage=$(mktemp -d "$build/package.XXXXXX")
trap 'rm -rf "$stage"' EXIT
root=$stage/root
install -d "$root/DEBIAN" "$root/usr/bin" "$root/usr/lib/podvisor/bin" \
  "$root/usr/lib/podvisor/guest" "$root/lib/systemd/system" "$root/etc/podvisor/config.d" \
  "$root/usr/share/podvisor/cni" "$root/usr/share/doc/podvisor"
install -m 0755 -s "$build/bin/podvisord" "$root/usr/lib/podvisor/bin/podvisord"
ln -s ../lib/podvisor/bin/podvisord "$root/usr/bin/podvisord"
install -m 0755 -s "$build/bin/podvisorctl" "$root/usr/bin/podvisorctl"
install -m 0644 "$build/guest/vmlinux" "$build/guest/initrd.img" "$root/usr/lib/podvisor/guest/"
install -m 0644 "$repo/deploy/systemd/podvisord.service" "$root/lib/systemd/system/"
install -m 0644 "$repo/deploy/config.yaml" "$root/etc/podvisor/config.yaml"
install -m 0644 "$repo/deploy/cni/10-podvisor.conflist" "$root/usr/share/podvisor/cni/"
install -m 0755 "$repo/deploy/cni/install-cni-config.sh" "$root/usr/share/podvisor/cni/"
for doc in README.md docs/kubernetes.md docs/configuration.md docs/metrics.md; do
  [ -e "$repo/$doc" ] && install -m 0644 "$repo/$doc" "$root/usr/share/doc/podvisor/"
done

# The package of each shared library the binaries need, as Debian names it.
libs=$(ldd "$build/bin/podvisord" "$build/bin/podvisorctl" | awk '/=> \//{print $3}' | sort -u)
# One dpkg -S for them all (each call reads the whole file list); usrmerge paths both ways.
paths=$(for lib in $libs; do echo "$lib"; readlink -f "$lib"; echo "/usr${lib#/usr}"; done | sort -u)
# shellcheck disable=SC2086
shlib_deps=$(dpkg -S $paths 2>/dev/null | cut -d: -f1 | tr -d ' ' | tr ',' '\n' | sort -u |
  grep -v '^libc6$' | paste -sd, | sed 's/,/, /g' || true)
[ -n "$shlib_deps" ] || die "could not find the packages of the shared libraries"
runtime_deps="libc6, libvirt-daemon, libvirt-daemon-driver-qemu, qemu-system-x86, qemu-system-common, containernetworking-plugins, iproute2, iptables"

installed_kib=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat > "$root/DEBIAN/control" <<CONTROL
Package: podvisor
Version: $version
Architecture: $arch
Maintainer: Podvisor developers <podvisor@localhost>
Section: admin
Priority: optional
Installed-Size: $installed_kib
Depends: $runtime_deps, $shlib_deps
Recommends: cri-tools
Description: Kubernetes CRI runtime that runs every pod in its own virtual machine
 podvisord serves the Kubernetes Container Runtime Interface (runtime.v1) on a
 unix socket. Each pod sandbox is a QEMU virtual machine driven through
 libvirt; containers run inside it under crun, started by a small guest agent.
 podvisorctl shows the pod VMs, their consoles and their agents.
CONTROL
printf '/etc/podvisor/config.yaml\n' > "$root/DEBIAN/conffiles"
cat > "$root/DEBIAN/postinst" <<'SCRIPT'
#!/bin/sh
set -e
if [ "$1" = configure ]; then
  /usr/share/podvisor/cni/install-cni-config.sh /etc/cni/net.d || true
  if [ -d /run/systemd/system ]; then
    systemctl daemon-reload || true
    systemctl enable podvisord.service || true
    # A restart keeps pod VMs running (KillMode=process); it starts the daemon on a first install.
    systemctl restart podvisord.service || true
  fi
fi
SCRIPT
cat > "$root/DEBIAN/prerm" <<'SCRIPT'
#!/bin/sh
set -e
if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
  systemctl disable --now podvisord.service || true
fi
SCRIPT
cat > "$root/DEBIAN/postrm" <<'SCRIPT'
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
SCRIPT
chmod 0755 "$root/DEBIAN/postinst" "$root/DEBIAN/prerm" "$root/DEBIAN/postrm"

out="$build/podvisor_${version}_${arch}.deb"
# gzip: a fraction of xz's time for the guest kernel, and every dpkg reads it.
dpkg-deb --root-owner-group -Zgzip --build "$root" "$out" >/dev/null
echo "$out"
