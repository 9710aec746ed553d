#!/usr/bin/env bash
# Instructions per enter–body–exit cycle, counted by valgrind's callgrind: deterministic for a
# given compiler, dependency set and binary, so changes can be compared on a noisy machine.
# Prints, for scenarios (a) ready, (b) every phase Pending once, (c) the body fails and exit
# rolls back, (d) three nested, (e) three as a tuple and (g) scenario (b) with a stop signal
# that never fires, `with` against the same logic as one `async fn` (for (g), an `async fn`
# with a hand-written `select`) and the ratio of the two; then scenario (b) for the boxed body
# and the combinator chain; then (h) scenario (b) as a one-function manager
# (`scoped(..).with(body)`, variant `scoped`) against (b)'s `with` and `async fn`.
#
#   bash benches/callgrind.sh [cycles] [cargo flags]   # default 10000 cycles per variant
#   bash benches/callgrind.sh 10000 --no-default-features   # without `std` (no panic catching)
#   VARIANTS="nested_with_10 stack_with_10 stack_close_10" bash benches/callgrind.sh 1000
#                          # only these variants, scenario (b) (others: see bench_table.rs)
#
# The regression guard of `.ci/run`: fails if scenario (b)'s ratio is above LIMIT.
#
#   LIMIT=1.06 bash benches/callgrind.sh 10000 --no-default-features
#
# Counts depend on the compiler: `.ci/run` pins it (RUSTUP_TOOLCHAIN=1.95.0) and records the
# limits it was measured against next to that pin.
#
# Needs valgrind (Debian: `apt-get install valgrind`).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
n="${1:-10000}"
shift || true

cargo build --release --example bench_table "$@" >&2
bin="${CARGO_TARGET_DIR:-target}/release/examples/bench_table"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# count VARIANT [ready]: instructions per cycle (one decimal).
count() {
  local variant=$1 mode=${2:-pending}
  valgrind --tool=callgrind --callgrind-out-file="$out/$variant.$mode.out" \
    --collect-atstart=no --toggle-collect='bench_table::cycles' \
    "$bin" cycles "$variant" "$n" "$mode" 2>"$out/$variant.log"
  local total
  total=$(grep -E '^(summary|totals):' "$out/$variant.$mode.out" | tail -n 1 | awk '{print $2}')
  if [ -z "$total" ] || [ "$total" -eq 0 ]; then
    echo "callgrind counted nothing for $variant (see $out/$variant.log)" >&2
    exit 1
  fi
  awk -v t="$total" -v n="$n" 'BEGIN { printf "%.1f", t / n }'
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }

echo "$(rustc --version), $n cycles, flags: ${*:-(default features)}"

if [ -n "${VARIANTS:-}" ]; then
  printf '| variant | instructions per cycle |\n|---|---:|\n'
  for variant in $VARIANTS; do
    printf '| %s | %s |\n' "$variant" "$(count "$variant")"
  done
  exit 0
fi

printf '| scenario | `with` | `async fn` | ratio |\n|---|---:|---:|---:|\n'
# row SCENARIO WITH BASE [ready]: prints a row; leaves the ratio in $last_ratio and the two
# counts in $last_with and $last_base.
row() {
  local scenario=$1 with=$2 base=$3 mode=${4:-pending} w b
  w=$(count "$with" "$mode")
  b=$(count "$base" "$mode")
  last_ratio=$(ratio "$w" "$b")
  last_with=$w last_base=$b
  printf '| %s | %s | %s | %s |\n' "$scenario" "$w" "$b" "$last_ratio"
}
row "(a) ready" with async_fn ready
row "(b) pending once" with async_fn
b_ratio=$last_ratio b_with=$last_with b_async_fn=$last_base
row "(c) body fails, rollback" with_rollback async_fn_rollback
row "(d) three nested" with_nested async_fn_nested
row "(e) three as a tuple" with_tuple async_fn_nested
row "(g) (b) with a signal that never fires" with_signal async_fn_select

printf '\n| scenario (b), other styles | instructions per cycle |\n|---|---:|\n'
for variant in boxed combinators; do
  printf '| %s | %s |\n' "$variant" "$(count "$variant")"
done

# (h): the same cycle as (b), so (b)'s counts are reused rather than counted again.
h_scoped=$(count scoped)
printf '\n| scenario (h) | `scoped(..).with` | `with` (b) | `async fn` (b) | scoped / with | scoped / async fn |\n'
printf '|---|---:|---:|---:|---:|---:|\n'
printf '| (h) one-function manager | %s | %s | %s | %s | %s |\n' "$h_scoped" "$b_with" \
  "$b_async_fn" "$(ratio "$h_scoped" "$b_with")" "$(ratio "$h_scoped" "$b_async_fn")"

if [ -n "${LIMIT:-}" ]; then
  if awk -v r="$b_ratio" -v l="$LIMIT" 'BEGIN { exit !(r > l) }'; then
    echo "REGRESSION: scenario (b) costs $b_ratio times the async fn's instructions (limit $LIMIT)" >&2
    exit 1
  fi
  echo "scenario (b): $b_ratio times the async fn (limit $LIMIT): ok"
fi
