#!/usr/bin/env bash
# Benchmark abssd's extraction (abssd::extract, through the `extract` example)
# against the shell restore `sha256sum -c` + `tar --zstd -xf` + `sync` on the
# same archives, in the same run. See bench/README.md.
#
# Knobs (environment):
#   BENCH_QUICK=1           small run: 20 MiB, 100 MiB, 5000 small files
#   BENCH_SIZES="200 1024"  instance sizes in MiB (space-separated)
#   BENCH_SMALL_FILES=50000 number of 1-8 KB files in the small-files case (0: skip)
#   BENCH_RUNS=3            measured runs per side (best is reported)
#   BENCH_DIR=DIR           where to create the temporary work dir (default: $TMPDIR)
#   BENCH_KEEP=1            keep the work dir
#   BENCH_STRICT=1          exit 1 when a target is missed
set -euo pipefail
shopt -s inherit_errexit
export LC_ALL=C

cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ ${BENCH_QUICK:-0} == 1 ]]; then
  SIZES=${BENCH_SIZES:-"20 100"}
  SMALL_FILES=${BENCH_SMALL_FILES:-5000}
else
  SIZES=${BENCH_SIZES:-"200 1024"}
  SMALL_FILES=${BENCH_SMALL_FILES:-50000}
fi
RUNS=${BENCH_RUNS:-3}

die() { printf 'bench: %s\n' "$*" >&2; exit 1; }
[[ -x /usr/bin/time ]] || die "GNU time (/usr/bin/time) is required"
for tool in cargo python3 tar zstd sha256sum sync; do
  command -v "$tool" >/dev/null || die "'$tool' is required"
done
((RUNS >= 1)) || die "BENCH_RUNS must be at least 1"

WORK=''
cleanup() {
  local rc=$?
  trap - EXIT
  if [[ -n $WORK && -d $WORK ]]; then
    if [[ ${BENCH_KEEP:-0} == 1 ]]; then
      echo "bench: work dir kept: $WORK"
    else
      rm -rf -- "$WORK"
    fi
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "== build (release)"
cargo build --release -j2 --locked -p abssd --example extract
EXTRACT=$(cd "${CARGO_TARGET_DIR:-target}/release/examples" && pwd -P)/extract

if [[ -n ${BENCH_DIR:-} ]]; then
  mkdir -p "$BENCH_DIR"
  WORK=$(mktemp -d -p "$BENCH_DIR" abssd-bench-extract.XXXXXX)
else
  WORK=$(mktemp -d -t abssd-bench-extract.XXXXXX)
fi
WORK=$(cd "$WORK" && pwd -P)
PREFIX=$WORK/prefix

# --- data ----------------------------------------------------------------

# The small-files case runs first and nothing is deleted before it: ext4 makes
# creating inodes slow for a while after many were deleted (its allocator
# skips recently freed ones, seen here as 5-15x slower extractions), so the
# sources stay until the end and the case keeps its own output until it is done.
CASES=()
echo "== generate instances and archives in $WORK"
if ((SMALL_FILES > 0)); then
  name="bench-${SMALL_FILES}files"
  python3 scripts/sample-instance.py "$PREFIX" "$name" --size-mb 0 --small-files "$SMALL_FILES"
  CASES+=("$name")
fi
for size in $SIZES; do
  name="bench-${size}m"
  python3 scripts/sample-instance.py "$PREFIX" "$name" --size-mb "$size"
  CASES+=("$name")
done
((${#CASES[@]} > 0)) || die "nothing to measure"

declare -A DATA_B ARCHIVE_B ABSSD_S SHELL_S RSS_KIB
for name in "${CASES[@]}"; do
  DATA_B[$name]=$(find "$PREFIX/srv/$name" -type f -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }')
  tar --zstd -cf "$WORK/$name.tar.zst" -C "$PREFIX/srv" "$name"
  (cd "$WORK" && sha256sum "$name.tar.zst" >"$name.tar.zst.sha256")
  ARCHIVE_B[$name]=$(stat -c %s "$WORK/$name.tar.zst")
done
sync

# --- measure -------------------------------------------------------------

elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
min() { awk -v a="$1" -v b="$2" 'BEGIN { print (a == "" || b < a) ? b : a }'; }

# Each side extracts into a new directory and includes making it durable.
time_shell() { # NAME OUT
  mkdir "$2" && sync
  local t0=$EPOCHREALTIME
  (cd "$WORK" && sha256sum -c --quiet "$1.tar.zst.sha256") || return 1
  tar --zstd -xf "$WORK/$1.tar.zst" -C "$2" || return 1
  sync
  elapsed "$t0" "$EPOCHREALTIME"
}
time_abssd() { # NAME OUT
  mkdir "$2" && sync
  local sha t0
  sha=$(cut -d' ' -f1 "$WORK/$1.tar.zst.sha256")
  t0=$EPOCHREALTIME
  if ! /usr/bin/time -f %M -o "$WORK/rss" "$EXTRACT" "$WORK/$1.tar.zst" "$2" "$1" zstd "$sha" \
    >"$WORK/extract.out" 2>&1; then
    cat "$WORK/extract.out" >&2
    return 1
  fi
  elapsed "$t0" "$EPOCHREALTIME"
}

for name in "${CASES[@]}"; do
  printf '== %s (%s bytes in a %s-byte archive):' "$name" "${DATA_B[$name]}" "${ARCHIVE_B[$name]}"
  cat "$WORK/$name.tar.zst" >/dev/null # both sides read it from the page cache
  best_a='' best_s='' rss=0
  out=$WORK/out-$name
  mkdir "$out"
  for ((i = 1; i <= RUNS; i++)); do
    s=$(time_shell "$name" "$out/shell-$i")
    a=$(time_abssd "$name" "$out/abssd-$i")
    rss=$(awk -v a="$rss" -v b="$(cat "$WORK/rss")" 'BEGIN { print (b > a) ? b : a }')
    printf ' shell %ss / abssd %ss;' "$s" "$a"
    best_a=$(min "$best_a" "$a")
    best_s=$(min "$best_s" "$s")
    # Large-file cases free their space as they go; the small-files case keeps
    # its output until the end (see above).
    if [[ $name != *files ]]; then rm -rf -- "$out/shell-$i" "$out/abssd-$i"; fi
  done
  echo
  rm -rf -- "$out"
  sync
  ABSSD_S[$name]=$best_a
  SHELL_S[$name]=$best_s
  RSS_KIB[$name]=$rss
done

# --- report --------------------------------------------------------------

mb() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1e6 }'; }
ratio() { awk -v a="${ABSSD_S[$1]}" -v s="${SHELL_S[$1]}" 'BEGIN { printf "%.2f", a / s }'; }

echo
echo "abssd extract vs sha256sum -c + tar --zstd -xf + sync; best of $RUNS; page cache warm"
echo "machine: $(nproc) cores; $(tar --version | head -n 1); $(zstd --version | sed 's/^\*\*\* //; s/, by .*//')"
echo "MB = 10^6 bytes; ratio = abssd s / shell s; RSS = peak of the extracting process"
echo
printf '%-20s %9s %11s %8s %8s %7s %8s\n' case "data MB" "archive MB" "shell s" "abssd s" ratio "RSS MiB"
for name in "${CASES[@]}"; do
  printf '%-20s %9s %11s %8s %8s %7s %8s\n' "$name" "$(mb "${DATA_B[$name]}")" \
    "$(mb "${ARCHIVE_B[$name]}")" "${SHELL_S[$name]}" "${ABSSD_S[$name]}" "$(ratio "$name")" \
    "$(awk -v k="${RSS_KIB[$name]}" 'BEGIN { printf "%.1f", k / 1024 }')"
done

missed=0
check() { # check DESCRIPTION AWK-CONDITION
  if awk "BEGIN { exit !($2) }"; then echo "  ok      $1"; else echo "  MISSED  $1"; missed=1; fi
}
echo
echo "targets:"
for size in $SIZES; do
  name="bench-${size}m"
  if ((size >= 1024)); then limit=0.7; else limit=0.9; fi
  check "$name: <= ${limit}x the shell restore (measured $(ratio "$name")x)" "$(ratio "$name") <= $limit"
done
if ((SMALL_FILES > 0)); then
  name="bench-${SMALL_FILES}files"
  check "$name: no slower than the shell restore (measured $(ratio "$name")x)" "$(ratio "$name") <= 1.0"
fi

if [[ ${BENCH_STRICT:-0} == 1 ]] && ((missed)); then
  exit 1
fi
