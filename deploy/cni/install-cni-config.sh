#!/bin/sh
# Installs Podvisor's default CNI network (bridge + host-local + portmap + loopback, 10.88.0.0/16
# on bridge podvisor0) into the CNI config dir, unless the node already has a network config
# there: an existing .conflist/.conf/.json is never replaced.
# Usage: install-cni-config.sh [conf_dir]   (default /etc/cni/net.d, podvisor's cni.conf_dir)
set -eu
conf_dir=${1:-/etc/cni/net.d}
src_dir=$(cd "$(dirname "$0")" && pwd)

for f in "$conf_dir"/*.conflist "$conf_dir"/*.conf "$conf_dir"/*.json; do
  if [ -e "$f" ]; then
    echo "CNI config already present ($f): leaving $conf_dir alone"
    exit 0
  fi
done

for plugin in bridge host-local portmap loopback; do
  if [ ! -x "/usr/lib/cni/$plugin" ] && [ ! -x "/opt/cni/bin/$plugin" ]; then
    echo "warning: CNI plugin $plugin not found in /usr/lib/cni or /opt/cni/bin" \
         "(apt-get install containernetworking-plugins)" >&2
  fi
done
command -v iptables >/dev/null 2>&1 || \
  echo "warning: iptables not found: the portmap and bridge (ipMasq) plugins need it" >&2

mkdir -p "$conf_dir"
install -m 0644 "$src_dir/10-podvisor.conflist" "$conf_dir/10-podvisor.conflist"
echo "installed $conf_dir/10-podvisor.conflist"
