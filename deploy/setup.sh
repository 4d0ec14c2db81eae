#!/usr/bin/env bash
# Sets up a Debian 12 machine for podvisor: installs the Debian packages it needs, configures and
# builds it into build/ (Release), and builds the guest image. Idempotent: a second run with
# nothing changed finishes in seconds.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${PODVISOR_BUILD_DIR:-$repo/build}"

log() { printf '[setup] %s\n' "$*" >&2; }

if [[ $EUID -ne 0 ]]; then
  log "run as root (it installs packages and podvisord manages VMs and network namespaces)"
  exit 1
fi

install_packages() {
  local wanted missing=()
  mapfile -t wanted < <(grep -v '^\s*#' "$repo/deploy/packages.txt" | sed '/^\s*$/d')
  for p in "${wanted[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
      missing+=("$p")
    fi
  done
  if ((${#missing[@]} == 0)); then
    log "Debian packages: all ${#wanted[@]} present"
    return
  fi
  log "installing ${#missing[@]} Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

configure_and_build() {
  if [[ ! -f "$build/build.ninja" ]]; then
    log "configuring $build"
    # In CI (CI or PODVISOR_WERROR=ON set: .ci/run does) every compiler warning is an error.
    local werror="${PODVISOR_WERROR:-OFF}"
    [[ -n "${CI:-}" ]] && werror=ON
    cmake -S "$repo" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DPODVISOR_WERROR="$werror" >/dev/null
  fi
  log "building (ninja)"
  # Two jobs: the CRI proto's generated code needs ~1.4 GB per compiler at -O2.
  ninja -C "$build" -j "${PODVISOR_BUILD_JOBS:-2}"
}

# The default CNI network (bridge + host-local + portmap + loopback), only where the node has none.
install_cni_config() {
  "$repo/deploy/cni/install-cni-config.sh" /etc/cni/net.d >&2
}

build_guest() {
  if [[ -x "$repo/deploy/guest/build.sh" ]]; then
    "$repo/deploy/guest/build.sh" "$build"
  fi
}

install_packages
install_cni_config
configure_and_build
build_guest
log "ready: $build/bin/podvisord"
