#!/usr/bin/env bash
# Sets everything up (deploy/setup.sh) and runs podvisord in the foreground with its embedded
# defaults (or /etc/podvisor/config.yaml when present). Extra arguments go to podvisord.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$repo/deploy/setup.sh"
exec "${PODVISOR_BUILD_DIR:-$repo/build}/bin/podvisord" "$@"
