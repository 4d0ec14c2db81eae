#!/usr/bin/env bash
# Builds the Debian package, unpacks it into a scratch root (dpkg -x) and checks what an operator
# gets: the files, the dependencies, a unit systemd accepts, and a daemon that starts from the
# unpacked tree the way the unit starts it and tells its supervisor READY=1.
# Usage: package_test.sh <source dir> <build dir>
set -euo pipefail
src=$1
build=$2
fail() { echo "FAIL: $*" >&2; exit 1; }

scratch=$(mktemp -d)
daemon_pid=
cleanup() {
  if [ -n "$daemon_pid" ]; then kill -KILL "$daemon_pid" 2>/dev/null || true; fi
  rm -rf "$scratch"
}
trap cleanup EXIT

deb=$("$src/deploy/package.sh" "$build")
[ -f "$deb" ] || fail "package.sh printed no package ($deb)"
case $(basename "$deb") in podvisor_*_amd64.deb) ;; *) fail "unexpected name $deb" ;; esac

# Control fields: Debian package names only.
dpkg-deb -f "$deb" Package | grep -qx podvisor || fail "Package field"
depends=$(dpkg-deb -f "$deb" Depends)
for dep in libvirt-daemon-driver-qemu qemu-system-x86 containernetworking-plugins iptables \
           libgrpc++ libprotobuf libyaml-cpp libsqlite3 libcurl libprometheus-cpp; do
  grep -q "$dep" <<<"$depends" || fail "Depends lacks $dep: $depends"
done
for dep in $(echo "$depends" | tr -d ' ' | tr ',' ' '); do
  apt-cache show "${dep%%(*}" >/dev/null 2>&1 || fail "dependency $dep is not a Debian package"
done
info=$(dpkg-deb -I "$deb")
grep -qw conffiles <<<"$info" || fail "no conffiles: $info"

root=$scratch/root
dpkg -x "$deb" "$root"
for f in usr/lib/podvisor/bin/podvisord usr/bin/podvisorctl usr/lib/podvisor/guest/vmlinux \
         usr/lib/podvisor/guest/initrd.img lib/systemd/system/podvisord.service \
         etc/podvisor/config.yaml usr/share/podvisor/cni/10-podvisor.conflist \
         usr/share/podvisor/cni/install-cni-config.sh usr/share/doc/podvisor/kubernetes.md; do
  [ -e "$root/$f" ] || fail "$f is not in the package"
done
[ -d "$root/etc/podvisor/config.d" ] || fail "no /etc/podvisor/config.d"
[ "$(readlink "$root/usr/bin/podvisord")" = ../lib/podvisor/bin/podvisord ] || fail "podvisord link"
[ -x "$root/usr/bin/podvisord" ] || fail "/usr/bin/podvisord does not resolve"
python3 -c 'import json,sys; json.load(open(sys.argv[1]))' \
  "$root/usr/share/podvisor/cni/10-podvisor.conflist" || fail "CNI conflist is not JSON"

# The unpacked binaries run, and the commented default config means the defaults.
"$root/usr/bin/podvisord" --version | grep -q '^podvisord ' || fail "podvisord --version"
"$root/usr/bin/podvisorctl" --help | grep -q 'console POD' || fail "podvisorctl --help"
printed=$("$root/usr/bin/podvisord" --config "$root/etc/podvisor/config.yaml" --print-config)
echo "$printed" | python3 -c '
import json, sys
c = json.load(sys.stdin)
assert c["root_dir"] == "/var/lib/podvisor", c
assert c["metrics"]["address"] == "127.0.0.1:10251", c
assert c["hypervisor"]["default_memory_mib"] == 256, c
' || fail "the packaged config does not give the defaults"

unit=$root/lib/systemd/system/podvisord.service
for line in Type=notify KillMode=process Delegate=yes Restart=on-failure; do
  grep -qx "$line" "$unit" || fail "unit lacks $line"
done
grep -q '^LimitNOFILE=' "$unit" || fail "unit lacks LimitNOFILE"
if command -v systemd-analyze >/dev/null; then
  # verify checks that ExecStart exists: point it at the unpacked binary.
  sed "s|/usr/bin/podvisord|$root/usr/bin/podvisord|" "$unit" > "$scratch/podvisord.service"
  out=$(systemd-analyze verify "$scratch/podvisord.service" 2>&1) || fail "systemd-analyze: $out"
  if echo "$out" | grep -v 'kubelet.service\|network-online' | grep -qi 'podvisord.service'; then
    fail "systemd-analyze complains: $out"
  fi
  echo "systemd-analyze verify: ok"
else
  echo "SKIP: systemd-analyze is not installed here; the unit was not verified by systemd"
fi

# What systemd does with Type=notify, done by hand: start ExecStart with NOTIFY_SOCKET set (state
# under the scratch dir) and wait for READY=1, which must come once the CRI socket serves.
exec_start=$(sed -n 's/^ExecStart=//p' "$unit")
exec_start=${exec_start/\/usr\/bin\/podvisord/$root/usr/bin/podvisord}
exec_start=${exec_start/\/etc\/podvisor\/config.yaml/$root/etc/podvisor/config.yaml}
notify=$scratch/notify.sock
sock=$scratch/run/podvisor.sock
python3 - "$notify" "$sock" "$scratch/ready" <<'PY' &
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
s.settimeout(60)
msg = s.recv(4096).decode()
live = os.path.exists(sys.argv[2])
open(sys.argv[3], "w").write(f"{msg} socket={'yes' if live else 'no'}\n")
PY
listener=$!
for _ in $(seq 50); do [ -S "$notify" ] && break; sleep 0.1; done
# A drop-in beside the packaged config, as an operator adds one: TCG, so no KVM probe boot.
printf 'hypervisor:\n  accel: tcg\n' > "$root/etc/podvisor/config.d/50-test.yaml"
NOTIFY_SOCKET=$notify $exec_start --root-dir "$scratch/lib" --state-dir "$scratch/state" \
  --listen "unix://$sock" --metrics-address 127.0.0.1:0 > "$scratch/podvisord.log" 2>&1 &
daemon_pid=$!
wait "$listener" || fail "no READY=1 from the packaged podvisord: $(cat "$scratch/podvisord.log")"
grep -q '^READY=1 socket=yes' "$scratch/ready" || fail "notification: $(cat "$scratch/ready")"
kill -TERM "$daemon_pid"
wait "$daemon_pid" || fail "podvisord did not stop cleanly: $(cat "$scratch/podvisord.log")"
daemon_pid=
echo "PASS: $(basename "$deb")"
