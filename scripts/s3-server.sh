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
# The server and the harness's client both import.
exec scripts/venv.sh s3-server.sh scripts/s3-server.requirements.txt \
  "${1:-${CARGO_TARGET_DIR:-target}/s3-server}" 'import boto3, moto.server'
