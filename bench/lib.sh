# Shared set-up of the bench/*.sh end-to-end benchmarks; sourced, not run.
# Reads the BENCH_* knobs, checks tools (BENCH_TOOLS plus the usual ones),
# installs the clean-up trap (stops $DAEMON_PID, removes $WORK), builds the
# release binaries (ABSSD, ABSSCTL), creates WORK/PREFIX/SOCK and generates the
# instances listed in CASES (none when the caller sets BENCH_INSTANCES=0; the
# sized ones with the caller's SAMPLE_ARGS passed to scripts/sample-instance.py).
# Then the helpers the measuring scripts share: starting the daemon, timing,
# backing the cases up, JSON fields, units, and checking targets.
if [[ ${BENCH_QUICK:-0} == 1 ]]; then
  SIZES=${BENCH_SIZES:-"20 100"}
  SMALL_FILES=${BENCH_SMALL_FILES:-5000}
else
  SIZES=${BENCH_SIZES:-"200 1024"}
  SMALL_FILES=${BENCH_SMALL_FILES:-50000}
fi
RUNS=${BENCH_RUNS:-3}

die() { printf 'bench: %s\n' "$*" >&2; exit 1; }
for tool in cargo python3 tar zstd sha256sum ${BENCH_TOOLS:-}; do
  command -v "$tool" >/dev/null || die "'$tool' is required"
done
((RUNS >= 1)) || die "BENCH_RUNS must be at least 1"

WORK=''
DAEMON_PID=''
cleanup() {
  local rc=$?
  trap - EXIT
  if [[ -n $DAEMON_PID ]] && kill -0 "$DAEMON_PID" 2>/dev/null; then
    kill -TERM "$DAEMON_PID" 2>/dev/null || true
    wait "$DAEMON_PID" 2>/dev/null || true
  fi
  if [[ -n $WORK && -d $WORK ]]; then
    if [[ ${BENCH_KEEP:-0} == 1 ]]; then
      echo "bench: work dir kept: $WORK"
    else
      if ((rc != 0)) && [[ -s $WORK/abssd.log ]]; then
        echo "--- last lines of the abssd log ---" >&2
        tail -n 20 "$WORK/abssd.log" >&2
      fi
      rm -rf -- "$WORK"
    fi
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "== build (release)"
cargo build --release -j2 --locked -p abssd -p abssctl-client
BIN_DIR=$(cd "${CARGO_TARGET_DIR:-target}/release" && pwd -P)
ABSSD=$BIN_DIR/abssd
ABSSCTL=$BIN_DIR/abssctl

if [[ -n ${BENCH_DIR:-} ]]; then
  mkdir -p "$BENCH_DIR"
  WORK=$(mktemp -d -p "$BENCH_DIR" abssd-bench.XXXXXX)
else
  WORK=$(mktemp -d -t abssd-bench.XXXXXX)
fi
WORK=$(cd "$WORK" && pwd -P)
PREFIX=$WORK/prefix
SOCK=$PREFIX/run/abssctl/abssd.sock
((${#SOCK} < 108)) || die "socket path too long (${#SOCK} bytes): $SOCK; set a shorter BENCH_DIR"

# --- data ----------------------------------------------------------------

CASES=()
if [[ ${BENCH_INSTANCES:-1} == 0 ]]; then
  SIZES='' SMALL_FILES=0
else
  echo "== generate instances in $PREFIX"
fi
for size in $SIZES; do
  name="bench-${size}m"
  # shellcheck disable=SC2086 # SAMPLE_ARGS: more options, split on spaces
  python3 scripts/sample-instance.py "$PREFIX" "$name" --size-mb "$size" ${SAMPLE_ARGS:-}
  CASES+=("$name")
done
if ((SMALL_FILES > 0)); then
  name="bench-${SMALL_FILES}files"
  python3 scripts/sample-instance.py "$PREFIX" "$name" --size-mb 0 --small-files "$SMALL_FILES"
  CASES+=("$name")
fi
if [[ ${BENCH_INSTANCES:-1} != 0 ]]; then
  ((${#CASES[@]} > 0)) || die "nothing to measure (BENCH_SIZES empty and BENCH_SMALL_FILES=0)"
fi

# --- helpers shared by the measuring scripts --------------------------------

proc_kib() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }
# elapsed START END: seconds between two $EPOCHREALTIME stamps
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
min() { awk -v a="$1" -v b="$2" 'BEGIN { print (a == "" || b < a) ? b : a }'; }
# mb BYTES: in MB (10^6 bytes), one decimal; mib KIB: KiB in MiB.
mb() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1e6 }'; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

# json KEY...: the value at KEY... (an object's key, a list's index) of the JSON
# document on stdin; null prints as an empty line, a missing key fails.
json() { python3 -c 'import json, sys
doc = json.load(sys.stdin)
for key in sys.argv[1:]:
    doc = doc[int(key)] if isinstance(doc, list) else doc[key]
print("" if doc is None else doc)' "$@"; }

# backup_cases: back up every instance of CASES (zstd level 3) and note, by
# name, its ID, ARCHIVE, DATA_B (content bytes) and ARCHIVE_B (archive bytes).
declare -A ID ARCHIVE DATA_B ARCHIVE_B
backup_cases() {
  local name
  for name in "${CASES[@]}"; do
    echo "== back up $name (zstd level 3)"
    "$ABSSCTL" --socket "$SOCK" --json backup create "$name" --compression zstd >"$WORK/create.json"
    ID[$name]=$(json result id <"$WORK/create.json")
    ARCHIVE[$name]=$(json result archive <"$WORK/create.json")
    DATA_B[$name]=$(json result uncompressed_bytes <"$WORK/create.json")
    ARCHIVE_B[$name]=$(json result size_bytes <"$WORK/create.json")
  done
}

# check DESCRIPTION AWK-CONDITION: one target, "ok" or "MISSED" (which sets
# MISSED); strict_exit ends the run with 1 when BENCH_STRICT=1 and one was.
MISSED=0
check() {
  if awk "BEGIN { exit !($2) }"; then echo "  ok      $1"; else echo "  MISSED  $1"; MISSED=1; fi
}
strict_exit() {
  if [[ ${BENCH_STRICT:-0} == 1 ]] && ((MISSED)); then
    exit 1
  fi
}

# start_daemon: abssd --prefix $PREFIX in the background (DAEMON_PID), ready when
# its socket appears.
start_daemon() {
  echo "== start abssd --prefix $PREFIX"
  NO_COLOR=1 "$ABSSD" --prefix "$PREFIX" >"$WORK/abssd.log" 2>&1 &
  DAEMON_PID=$!
  for _ in $(seq 1 100); do
    [[ -S $SOCK ]] && return 0
    kill -0 "$DAEMON_PID" 2>/dev/null || die "abssd exited during start-up"
    sleep 0.1
  done
  die "abssd socket did not appear within 10 s"
}

# measure NAME: one warm-up of time_abssd and time_shell (defined by the caller),
# then RUNS alternating runs; prints each pair and sets BEST_A / BEST_S.
measure() {
  time_abssd "$1" >/dev/null
  time_shell "$1" >/dev/null
  BEST_A='' BEST_S=''
  local i a s
  for ((i = 1; i <= RUNS; i++)); do
    a=$(time_abssd "$1")
    s=$(time_shell "$1")
    printf ', abssd %ss / shell %ss' "$a" "$s"
    BEST_A=$(min "$BEST_A" "$a")
    BEST_S=$(min "$BEST_S" "$s")
  done
  echo
}
