#!/usr/bin/env bash
# Make (or refresh) the virtual environment of the S3-compatible server the
# tests of off-host copies run: moto's server (`moto_server`, S3 and IAM on one
# port) and boto3, pinned with everything they pull in by
# scripts/s3-server.requirements.txt, installed from the package registry.
# The harness (tests/src/s3.rs) starts the server on 127.0.0.1 per test.
#
# Prints the venv's directory. Re-runs are cheap: the venv is rebuilt only when
# the requirements file changed.
#
# Usage: scripts/s3-server.sh [VENV_DIR]   (default: target/s3-server)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
venv=${1:-${CARGO_TARGET_DIR:-target}/s3-server}
req=scripts/s3-server.requirements.txt
want=$(sha256sum "$req" | cut -d' ' -f1)

if [[ -x $venv/bin/moto_server && -x $venv/bin/python && -f $venv/.requirements.sha256 && $(<"$venv/.requirements.sha256") == "$want" ]]; then
  echo "$venv"
  exit 0
fi

if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3-venv >&2 \
      || { apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3-venv >&2; }
  else
    echo "s3-server.sh: python3's venv module is missing (apt-get install python3-venv)" >&2
    exit 1
  fi
fi

rm -rf "$venv"
python3 -m venv "$venv" >&2
"$venv/bin/pip" install --quiet --disable-pip-version-check --no-input -r "$req" >&2
# The server and the harness's client both import; fail here rather than in a test.
"$venv/bin/python" -c 'import boto3, moto.server' >&2
echo "$want" >"$venv/.requirements.sha256"
echo "$venv"
