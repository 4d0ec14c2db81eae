#!/bin/bash
# What the guest kernel's CPU vulnerability mitigations cost (hypervisor.guest_mitigations).
#
# Boots the guest kernel directly under QEMU (microvm, TCG, as pod VMs run here) with a tiny
# initramfs (busybox-static) whose /init prints a line, runs an exec-heavy loop (N runs of
# /bin/true through fork+exec), prints its duration and powers off. Alternates "mitigations on"
# (the default kernel command line) and "mitigations=off" ROUNDS times in one run and prints
# per-run figures and medians: QEMU start -> first line of /init (boot), and the exec loop.
#
# Usage: guest_mitigations_bench.sh VMLINUX [ROUNDS=3] [EXECS=2000]
set -euo pipefail
vmlinux=${1:?usage: $0 VMLINUX [ROUNDS] [EXECS]}
rounds=${2:-3}
execs=${3:-2000}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

mkdir -p "$work/root/bin" "$work/root/proc" "$work/root/sys" "$work/root/dev"
cp /bin/busybox "$work/root/bin/busybox"
for tool in sh true echo date seq poweroff mount cat; do ln -s busybox "$work/root/bin/$tool"; done
cat > "$work/root/init" <<INIT
#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sysfs /sys
echo PODVISOR-BENCH-INIT
start=\$(cat /proc/uptime)
i=0
while [ \$i -lt $execs ]; do /bin/true; i=\$((i+1)); done
end=\$(cat /proc/uptime)
echo "PODVISOR-BENCH-EXEC \${start%% *} \${end%% *}"
echo "PODVISOR-BENCH-VULN \$(cat /sys/devices/system/cpu/vulnerabilities/spectre_v2 2>/dev/null)"
poweroff -f
INIT
chmod 755 "$work/root/init"
(cd "$work/root" && find . | cpio -o -H newc --quiet | gzip -1 > "$work/initrd.gz")

tsc_khz=$(awk '/^cpu MHz/ {printf "%d", $4 * 1000; exit}' /proc/cpuinfo)
base="console=ttyS0 quiet panic=-1 reboot=t cryptomgr.notests tsc_early_khz=$tsc_khz rdinit=/init"

run() {  # $1: label, $2: extra kernel args
  local out="$work/console-$1-$RANDOM.log" t0 t1
  t0=$(date +%s.%N)
  timeout 300 qemu-system-x86_64 -M microvm,accel=tcg -m 256 -smp 1 -nodefaults -no-user-config \
    -display none -no-reboot -kernel "$vmlinux" -initrd "$work/initrd.gz" \
    -append "$base $2" -serial stdio > "$out" 2>&1 &
  local qemu=$!
  while ! grep -q PODVISOR-BENCH-INIT "$out" 2>/dev/null; do
    kill -0 "$qemu" 2>/dev/null || break
    sleep 0.02
  done
  t1=$(date +%s.%N)
  wait "$qemu" || true
  local exec_line vuln
  exec_line=$(grep PODVISOR-BENCH-EXEC "$out" | tr -d '\r')
  vuln=$(grep PODVISOR-BENCH-VULN "$out" | tr -d '\r' | cut -d' ' -f2-)
  awk -v l="$1" -v t0="$t0" -v t1="$t1" -v e="$exec_line" -v n="$execs" -v v="$vuln" 'BEGIN {
    split(e, f, " "); printf "%-16s boot %.2f s  %d execs %.2f s (%.2f ms each)  spectre_v2: %s\n",
      l, t1 - t0, n, f[3] - f[2], (f[3] - f[2]) * 1000 / n, v }'
}

results="$work/results"
for r in $(seq "$rounds"); do
  run "mitigations-on" "" | tee -a "$results"
  run "mitigations-off" "mitigations=off" | tee -a "$results"
done
echo "medians over $rounds rounds:"
for l in mitigations-on mitigations-off; do
  boot=$(grep "^$l " "$results" | awk '{print $3}' | sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}')
  loop=$(grep "^$l " "$results" | awk '{print $7}' | sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}')
  printf "  %-16s boot %s s  exec loop %s s\n" "$l" "$boot" "$loop"
done
