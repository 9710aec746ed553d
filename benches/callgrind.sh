#!/usr/bin/env bash
# Instruction counts per enter–body–exit cycle of scenario (b) (every phase Pending once), for
# each variant, and of scenarios (d) three nested and (e) three as a tuple (`*_nested`,
# `with_tuple`), counted by valgrind's callgrind: deterministic for a given binary, so changes
# can be compared on a noisy machine.
#
#   bash benches/callgrind.sh [cycles] [cargo flags]   # default 10000 cycles per variant
#   bash benches/callgrind.sh 10000 --no-default-features   # without `std` (no panic catching)
#   VARIANTS="nested_with_10 stack_with_10 stack_close_10" bash benches/callgrind.sh 1000
#                                          # other variants: scenario (f), see bench_table.rs
#
# Each count is per cycle (divide by N for per entry in scenario (f)).
# Needs valgrind (Debian: `apt-get install valgrind`).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
n="${1:-10000}"
shift || true

cargo build --release --example bench_table "$@" >&2
bin="${CARGO_TARGET_DIR:-target}/release/examples/bench_table"
out=$(mktemp -d)

printf '| variant | instructions per cycle |\n|---|---:|\n'
variants="${VARIANTS:-with async_fn boxed combinators with_nested with_tuple async_fn_nested}"
for variant in $variants; do
  valgrind --tool=callgrind --callgrind-out-file="$out/$variant.out" \
    --collect-atstart=no --toggle-collect='bench_table::cycles' \
    "$bin" cycles "$variant" "$n" 2>"$out/$variant.log"
  total=$(grep -E '^(summary|totals):' "$out/$variant.out" | tail -n 1 | awk '{print $2}')
  if [ -z "$total" ] || [ "$total" -eq 0 ]; then
    echo "callgrind counted nothing for $variant (see $out/$variant.log)" >&2
    exit 1
  fi
  printf '| %s | %s |\n' "$variant" "$(awk -v t="$total" -v n="$n" 'BEGIN { printf "%.1f", t / n }')"
done
rm -rf "$out"
