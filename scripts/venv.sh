#!/usr/bin/env bash
# Make (or refresh) a Python virtual environment from a pinned requirements
# file, for what the tests run in Python (scripts/python-peer.sh,
# scripts/s3-server.sh). Installs python3-venv with apt-get when the venv
# module is missing and this runs as root.
#
# Prints the venv's directory. Re-runs are cheap: the venv is rebuilt only when
# the requirements file changed (its SHA-256 is kept in the venv) or CHECK, a
# Python statement run in the venv, fails (e.g. an import of what it is for).
#
# Usage: scripts/venv.sh NAME REQUIREMENTS VENV_DIR [CHECK]
set -euo pipefail

name=$1 req=$2 venv=$3 check=${4:-pass}
want=$(sha256sum "$req" | cut -d' ' -f1)

if [[ -x $venv/bin/python && -f $venv/.requirements.sha256 && $(<"$venv/.requirements.sha256") == "$want" ]] &&
  "$venv/bin/python" -c "$check" 2>/dev/null; then
  echo "$venv"
  exit 0
fi

if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3-venv >&2 \
      || { apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3-venv >&2; }
  else
    echo "$name: python3's venv module is missing (apt-get install python3-venv)" >&2
    exit 1
  fi
fi

rm -rf "$venv"
python3 -m venv "$venv" >&2
"$venv/bin/pip" install --quiet --disable-pip-version-check --no-input -r "$req" >&2
# What the venv is for must work: fail here rather than in a test.
"$venv/bin/python" -c "$check" >&2
echo "$want" >"$venv/.requirements.sha256"
echo "$venv"
