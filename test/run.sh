#!/usr/bin/env bash
# Sets everything up (deploy/setup.sh), then runs every test through ctest: unit, integration
# (real QEMU guests, registries, CNI) and e2e (the real daemon over its socket). Extra arguments
# go to ctest, e.g. `test/run.sh -L unit`.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${PODVISOR_BUILD_DIR:-$repo/build}"
"$repo/deploy/setup.sh"
cd "$build"
# Tests that boot VMs are heavy on two cores: run them one at a time.
exec ctest --output-on-failure --timeout 900 "$@"
