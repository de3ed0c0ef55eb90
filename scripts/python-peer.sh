#!/usr/bin/env bash
# Make (or refresh) the virtual environment the interoperability tests run the
# Python abssctl in: the pinned packages of tests/python-peer/requirements.txt,
# installed from the package registry. The Python tool's own source is not
# installed; the tests put its src/ on PYTHONPATH (see tests/src/peer.rs).
#
# Prints the venv's directory. Re-runs are cheap: the venv is rebuilt only when
# the requirements file changed.
#
# Usage: scripts/python-peer.sh [VENV_DIR]   (default: target/python-peer)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
venv=${1:-${CARGO_TARGET_DIR:-target}/python-peer}
req=tests/python-peer/requirements.txt
want=$(sha256sum "$req" | cut -d' ' -f1)

if [[ -x $venv/bin/python && -f $venv/.requirements.sha256 && $(<"$venv/.requirements.sha256") == "$want" ]]; then
  echo "$venv"
  exit 0
fi

if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3-venv >&2 \
      || { apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3-venv >&2; }
  else
    echo "python-peer.sh: python3's venv module is missing (apt-get install python3-venv)" >&2
    exit 1
  fi
fi

rm -rf "$venv"
python3 -m venv "$venv" >&2
"$venv/bin/pip" install --quiet --disable-pip-version-check --no-input -r "$req" >&2
echo "$want" >"$venv/.requirements.sha256"
echo "$venv"
