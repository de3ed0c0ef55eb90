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
exec scripts/venv.sh python-peer.sh tests/python-peer/requirements.txt \
  "${1:-${CARGO_TARGET_DIR:-target}/python-peer}"
