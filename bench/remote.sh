#!/usr/bin/env bash
# Benchmark off-host copies: `abssctl backup push` and `backup pull` of the
# ~1 GiB bench instance's archive to an S3 server on loopback (moto, the
# tests' server: scripts/s3-server.sh, credentials checked), plain and
# encrypted with age; and, as the yardstick in the same run, the same file
# sent and fetched with `curl --aws-sigv4` (-T up, a GET down). Reports MB/s
# of the archive's bytes and abssd's peak RSS during each transfer (the
# daemon is started afresh for each, so VmHWM is that transfer's own peak).
# See bench/README.md for the target.
#
# Knobs (environment):
#   BENCH_SIZES="1024"      instance size in MiB (one)
#   BENCH_QUICK=1           100 MiB instead
#   BENCH_PART_MIB=8        remotes.*.part_size_mib
#   BENCH_DIR=DIR           where to create the temporary work dir (default: $TMPDIR)
#   BENCH_KEEP=1            keep the work dir
#   BENCH_STRICT=1          exit 1 when a target is missed
set -euo pipefail
shopt -s inherit_errexit
export LC_ALL=C # '.' as decimal separator in $EPOCHREALTIME and printf

cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ ${BENCH_QUICK:-0} == 1 ]]; then BENCH_SIZES=${BENCH_SIZES:-100}; fi
export BENCH_SIZES=${BENCH_SIZES:-1024}
export BENCH_SMALL_FILES=0
BENCH_TOOLS="curl age age-keygen"
PART_MIB=${BENCH_PART_MIB:-8}
# shellcheck source=bench/lib.sh
source bench/lib.sh
((${#CASES[@]} == 1)) || die "BENCH_SIZES must name one size"
NAME=${CASES[0]}

# --- the S3 server ---------------------------------------------------------

VENV=$(realpath "$(scripts/s3-server.sh)")
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
ENDPOINT=http://127.0.0.1:$PORT
BUCKET=abssd-bench
echo "== start moto on $ENDPOINT"
INITIAL_NO_AUTH_ACTION_COUNT=3 "$VENV/bin/python" tests/src/s3/server.py -H 127.0.0.1 -p "$PORT" \
  >"$WORK/moto.log" 2>&1 &
MOTO_PID=$!
stop_moto() { kill "$MOTO_PID" 2>/dev/null || true; wait "$MOTO_PID" 2>/dev/null || true; }
trap 'rc=$?; stop_moto; (exit "$rc"); cleanup' EXIT
for _ in $(seq 1 100); do
  curl -s -o /dev/null "$ENDPOINT/moto-api/" && break
  kill -0 "$MOTO_PID" 2>/dev/null || die "moto exited during start-up (see $WORK/moto.log)"
  sleep 0.1
done
KEYS=$("$VENV/bin/python" tests/src/s3/provision.py "$ENDPOINT" "$BUCKET" us-east-1 1)
ACCESS=$(json access_key <<<"$KEYS")
SECRET=$(json secret_key <<<"$KEYS")

# --- abssd's remotes -------------------------------------------------------

ETC=$PREFIX/etc/abssctl
mkdir -p "$ETC"
(
  umask 077
  printf 'aws_access_key_id = %s\naws_secret_access_key = %s\n' "$ACCESS" "$SECRET" >"$ETC/bench.cred"
  age-keygen -o "$ETC/bench.age-key" 2>/dev/null
)
RECIPIENT=$(age-keygen -y "$ETC/bench.age-key")
cat >>"$ETC/abssd.yml" <<EOF
remotes:
  plain:
    endpoint: $ENDPOINT
    bucket: $BUCKET
    prefix: plain
    credentials_file: $ETC/bench.cred
    part_size_mib: $PART_MIB
  sealed:
    endpoint: $ENDPOINT
    bucket: $BUCKET
    prefix: sealed
    credentials_file: $ETC/bench.cred
    part_size_mib: $PART_MIB
    age_recipients: [$RECIPIENT]
    age_identity_file: $ETC/bench.age-key
EOF

stop_daemon() {
  kill -TERM "$DAEMON_PID" 2>/dev/null || true
  wait "$DAEMON_PID" 2>/dev/null || true
  DAEMON_PID=''
}

start_daemon
backup_cases
stop_daemon
ID=${ID[$NAME]}
ARCH=${ARCHIVE[$NAME]}
BYTES=${ARCHIVE_B[$NAME]}
cp -- "$ARCH" "$WORK/archive.copy"

# run_fresh LABEL CMD...: CMD against a freshly started abssd; prints
# "SECONDS PEAK_KIB" (abssd's VmHWM after CMD).
run_fresh() {
  local label=$1 t0 t1 peak
  shift
  start_daemon >/dev/null
  t0=$EPOCHREALTIME
  if ! "$@" >"$WORK/$label.json" 2>"$WORK/$label.err"; then
    printf '\nbench: %s failed:\n' "$label" >&2
    cat "$WORK/$label.err" >&2
    return 1
  fi
  t1=$EPOCHREALTIME
  peak=$(proc_kib "$DAEMON_PID" VmHWM)
  stop_daemon
  echo "$(elapsed "$t0" "$t1") $peak"
}
mbps() { awk -v b="$1" -v s="$2" 'BEGIN { printf "%.0f", b / 1e6 / s }'; }

declare -A SECS PEAK
for remote in plain sealed; do
  echo "== push $NAME ($(mb "$BYTES") MB) to $remote"
  read -r SECS[push-$remote] PEAK[push-$remote] < <(run_fresh "push-$remote" \
    "$ABSSCTL" --socket "$SOCK" --json backup push "$ID" --remote "$remote")
  echo "== pull it back from $remote (local archive deleted first)"
  rm -f -- "$ARCH" "$ARCH.sha256"
  read -r SECS[pull-$remote] PEAK[pull-$remote] < <(run_fresh "pull-$remote" \
    "$ABSSCTL" --socket "$SOCK" --json backup pull "$ID" --remote "$remote")
  cmp -s -- "$ARCH" "$WORK/archive.copy" || die "the archive pulled from $remote differs from the original"
done

echo "== yardstick: curl --aws-sigv4 -T, then GET, of the same file"
# curl (7.88) signs the payload's hash only when the header names it: the
# yardstick sends it unsigned, which S3 accepts.
SIGV4=(--aws-sigv4 "aws:amz:us-east-1:s3" --user "$ACCESS:$SECRET" -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" -sS --fail)
t0=$EPOCHREALTIME
curl "${SIGV4[@]}" -T "$WORK/archive.copy" "$ENDPOINT/$BUCKET/curl/archive" -o /dev/null
SECS[push-curl]=$(elapsed "$t0" "$EPOCHREALTIME")
t0=$EPOCHREALTIME
curl "${SIGV4[@]}" "$ENDPOINT/$BUCKET/curl/archive" -o "$WORK/archive.curl"
SECS[pull-curl]=$(elapsed "$t0" "$EPOCHREALTIME")
cmp -s -- "$WORK/archive.curl" "$WORK/archive.copy" || die "curl's download differs"

echo
printf '%-22s %10s %10s %14s\n' "transfer" "seconds" "MB/s" "abssd peak MiB"
for what in push-plain push-sealed push-curl pull-plain pull-sealed pull-curl; do
  peak=${PEAK[$what]:-}
  printf '%-22s %10s %10s %14s\n' "$what" "${SECS[$what]}" "$(mbps "$BYTES" "${SECS[$what]}")" \
    "$([[ -n $peak ]] && mib "$peak" || echo -)"
done
echo "archive: $(mb "$BYTES") MB; part size $PART_MIB MiB; server: moto on loopback"
echo
echo "targets:"
for what in push-plain push-sealed pull-plain pull-sealed; do
  check "abssd peak RSS during $what < 64 MiB ($(mib "${PEAK[$what]}") MiB)" "${PEAK[$what]} < 65536"
done
strict_exit
