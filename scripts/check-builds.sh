#!/usr/bin/env bash
# The documented builds of abssd contain no crash points.
#
# abssd's `failpoints` feature (the `fail` crate) is for the crash tests only;
# the tests crate enables it, and cargo unifies features across the packages of
# one build. So this builds abssd the ways the README, Makefile, demo and e2e
# tests do, and looks for a crash point's name in the binary (the name is only
# compiled in with the feature). The crash tests' own binary must have it: that
# shows the check can fail.
#
# Usage: scripts/check-builds.sh [--release]   (default: debug builds, which
# resolve features exactly as the release builds do)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

profile=debug flags=()
if [[ ${1:-} == --release ]]; then profile=release flags=(--release); fi
marker=$(grep -rho 'crash_point!("[^"]*")' abssd/src | head -n1 | sed 's/crash_point!("\(.*\)")/\1/')
[[ -n $marker ]] || { echo "check-builds: no crash_point! found in abssd/src" >&2; exit 1; }
bin=target/$profile/abssd
has_marker() { grep -aqF -- "$marker" "$1"; }

check() {
  local what=$1; shift
  cargo build "${flags[@]}" --locked -j2 -q "$@"
  if has_marker "$bin"; then
    echo "check-builds: '$what' built an abssd with crash points ($marker in $bin)" >&2
    exit 1
  fi
  echo "  ok: $what -> $bin has no crash points"
}

# `cargo build` at the workspace root (README), then the Makefile's, the demo's
# and the e2e tests' package selection.
check "cargo build${flags[*]:+ ${flags[*]}}"
check "cargo build -p abssd -p abssctl-client --bins" -p abssd -p abssctl-client --bins

cargo build "${flags[@]}" --locked -j2 -q -p abssd-tests --bin abssd-failpoints
if ! has_marker "target/$profile/abssd-failpoints"; then
  echo "check-builds: the crash tests' abssd-failpoints lacks '$marker': this check cannot see crash points" >&2
  exit 1
fi
echo "  ok: abssd-failpoints (the crash tests' build) has them"
