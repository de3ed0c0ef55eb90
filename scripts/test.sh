#!/usr/bin/env bash
# Run every check of the workspace: formatting, clippy, and all tests.
#
# Installs the system tools the tests need (apt, only when root and only what is
# missing); otherwise says what is missing and fails. Fails fast: the first
# failing step stops the run with a non-zero exit.
#
# The end-to-end tests on a real systemd (tests/e2e/run.sh) run last, when the
# machine allows namespaces (root, unshare, /lib/systemd/systemd); elsewhere they
# are skipped with the reason printed. Under CI (CI=true) a skip is a failure
# unless E2E_ALLOW_SKIP=1; E2E_SKIP=1 skips them on purpose.
#
# Usage: scripts/test.sh
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ -t 1 ]]; then
  BOLD=$'\033[1m' RESET=$'\033[0m'
  RUSTFMT_COLOR=auto
else
  BOLD='' RESET=''
  export CARGO_TERM_COLOR=never
  # rustfmt's own "auto" still colours its diff when writing to a pipe.
  RUSTFMT_COLOR=never
fi

STEP=''
section() {
  STEP=$1
  printf '\n%s===== %s =====%s\n' "$BOLD" "$STEP" "$RESET"
}
on_exit() {
  local rc=$?
  if ((rc != 0)); then
    printf '\n%stest.sh: FAILED at step "%s" (exit %d)%s\n' "$BOLD" "${STEP:-setup}" "$rc" "$RESET" >&2
  fi
}
trap on_exit EXIT

# --- system tools --------------------------------------------------------

section "system tools"

# command -> Debian package that provides it
declare -A PACKAGE_OF=(
  [dbus-daemon]=dbus-daemon
  [nginx]=nginx
  [zstd]=zstd
  [curl]=curl
  [sqlite3]=sqlite3
  [tar]=tar
  [sha256sum]=coreutils
  [python3]=python3
  # the test CA of the https ping tests (tests/tests/hooks.rs)
  [openssl]=openssl
  [setsid]=util-linux
  # socket activation without PID 1 (tests/tests/service.rs), and the systemd
  # the end-to-end tests boot in a namespace (tests/e2e/run.sh)
  [systemd-socket-activate]=systemd
  # the shipped units' lint and abssd's calendar check (tests/tests/schedule.rs)
  [systemd-analyze]=systemd
  [make]=make
  [unshare]=util-linux
  [nsenter]=util-linux
  [setpriv]=util-linux
  # decrypting what abssd encrypted for a remote, as an operator would
  # (the tests of off-host copies)
  [age]=age
  [age-keygen]=age
)
have() { command -v "$1" >/dev/null 2>&1; }

missing_cmds=()
for cmd in "${!PACKAGE_OF[@]}"; do
  have "$cmd" || missing_cmds+=("$cmd")
done

if ((${#missing_cmds[@]} > 0)); then
  packages=()
  for cmd in "${missing_cmds[@]}"; do packages+=("${PACKAGE_OF[$cmd]}"); done
  echo "missing: ${missing_cmds[*]} (packages: ${packages[*]})"
  if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
    echo "test.sh: install them first, e.g.: sudo apt-get install -y --no-install-recommends ${packages[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt_install() { apt-get install -y --no-install-recommends "$@"; }
  # Install from the current package lists if they are fresh enough; refresh once if not.
  if ! apt_install "${packages[@]}"; then
    apt-get update
    if ! apt_install "${packages[@]}"; then
      # dbus-daemon is its own package from Debian 12 on; older releases ship it in dbus.
      fallback=("${packages[@]/#dbus-daemon/dbus}")
      apt_install "${fallback[@]}"
    fi
  fi
  still=()
  for cmd in "${missing_cmds[@]}"; do have "$cmd" || still+=("$cmd"); done
  if ((${#still[@]} > 0)); then
    echo "test.sh: still missing after apt-get install: ${still[*]}" >&2
    exit 1
  fi
fi
# The time zone database, a file set with no command to look for: the daemon
# reads the host's zone from it, and prune's unit tests read Europe/Berlin.
if [[ ! -e /usr/share/zoneinfo/Europe/Berlin ]]; then
  echo "missing: /usr/share/zoneinfo (package: tzdata)"
  if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
    echo "test.sh: install it first, e.g.: sudo apt-get install -y --no-install-recommends tzdata" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends tzdata || {
    apt-get update
    apt-get install -y --no-install-recommends tzdata
  }
  [[ -e /usr/share/zoneinfo/Europe/Berlin ]] || { echo "test.sh: still missing after apt-get install: tzdata" >&2; exit 1; }
fi
for cmd in dbus-daemon nginx zstd curl sqlite3 tar sha256sum python3; do
  printf '  %-12s %s\n' "$cmd" "$(command -v "$cmd")"
done

command -v cargo >/dev/null || { echo "test.sh: cargo is required (install Rust with rustup)" >&2; exit 1; }
if ! cargo clippy --version >/dev/null 2>&1 || ! cargo fmt --version >/dev/null 2>&1; then
  if command -v rustup >/dev/null; then
    rustup component add rustfmt clippy
  else
    echo "test.sh: cargo fmt and cargo clippy are required (rustup component add rustfmt clippy)" >&2
    exit 1
  fi
fi
cargo --version

# --- checks --------------------------------------------------------------

section "scripts: syntax"
for f in scripts/*.sh bench/*.sh tests/e2e/*.sh tests/e2e/scenarios/*.sh .ci/run; do
  if [[ -f $f ]]; then bash -n "$f"; fi
done
python3 -m py_compile scripts/sample-instance.py tests/e2e/treehash.py tests/src/s3/*.py
echo "ok"

section "cargo fmt --all -- --check"
cargo fmt --all -- --check --color "$RUSTFMT_COLOR"
echo "ok"

section "cargo clippy --workspace --all-targets --locked -j2 -- -D warnings"
cargo clippy --workspace --all-targets --locked -j2 -- -D warnings

section "documented builds contain no crash points (scripts/check-builds.sh)"
scripts/check-builds.sh

section "the Python abssctl as a test peer (scripts/python-peer.sh)"
ABSSD_TEST_PYTHON_PEER=$(realpath "$(scripts/python-peer.sh)")
export ABSSD_TEST_PYTHON_PEER
PYTHONPATH=${ABSSD_PYTHON_PEER_SRC:-../shared/reference/python-abssctl/src} "$ABSSD_TEST_PYTHON_PEER/bin/python" -m abssctl --version
echo "ok: $ABSSD_TEST_PYTHON_PEER"

section "an S3-compatible server for the tests of off-host copies (scripts/s3-server.sh)"
ABSSD_TEST_S3_SERVER=$(realpath "$(scripts/s3-server.sh)")
export ABSSD_TEST_S3_SERVER
"$ABSSD_TEST_S3_SERVER/bin/moto_server" --help >/dev/null
echo "ok: $ABSSD_TEST_S3_SERVER"

if cargo nextest --version >/dev/null 2>&1; then
  section "cargo nextest run --workspace --locked"
  cargo nextest run --workspace --locked --build-jobs 2 -j 2
  # nextest does not run doctests.
  section "cargo test --doc --workspace --locked"
  cargo test --doc --workspace --locked -j2
else
  section "cargo test --workspace --locked"
  cargo test --workspace --locked -j2
fi

section "end-to-end tests on a real systemd (tests/e2e/run.sh)"
if [[ -n ${E2E_SKIP:-} ]]; then
  echo "SKIPPED: E2E_SKIP is set"
elif e2e_reason=$(tests/e2e/run.sh --preflight); then
  tests/e2e/run.sh
elif [[ ${CI:-} == true && -z ${E2E_ALLOW_SKIP:-} ]]; then
  echo "test.sh: CI must run the end-to-end tests, but this machine cannot: $e2e_reason" >&2
  echo "test.sh: (E2E_ALLOW_SKIP=1 turns this into a skip)" >&2
  exit 1
else
  echo "SKIPPED: this machine cannot run them: $e2e_reason"
fi

STEP=''
printf '\n%sall checks passed%s\n' "$BOLD" "$RESET"
