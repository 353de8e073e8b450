#!/usr/bin/env bash
# Two builds of interacto-bulk, side by side: an unthrottled send of the same
# campaign against the loopback stub (or, with MODE=validate, a dry run of
# it), runs alternating (the machine's noise then falls on both alike), a
# fresh ledger for each. Prints rows/s at the median and at best for each
# binary, and the change.
#
#   git worktree add /tmp/before <commit> && cargo build --release --manifest-path /tmp/before/Cargo.toml
#   bash benches/side_by_side.sh /tmp/before/target/release/interacto-bulk
#   ROWS=1000000 RUNS=3 bash benches/side_by_side.sh OLD [NEW]   # NEW: this checkout's release build
#   MODE=validate ROWS=1000000 RUNS=5 bash benches/side_by_side.sh OLD   # the 1M-row dry run
#
# Needs nginx, python3 and /usr/bin/time (installed with apt-get if missing).
set -euo pipefail
cd "$(dirname "$0")/.."

OLD=$(realpath "${1:?usage: side_by_side.sh OLD_BINARY [NEW_BINARY]}")
NEW=${2:-}
ROWS=${ROWS:-100000}
RUNS=${RUNS:-10}
MODE=${MODE:-send}
if [ -z "$NEW" ]; then
  cargo build --release --quiet --bin interacto-bulk
  NEW=target/release/interacto-bulk
fi
NEW=$(realpath "$NEW")
source benches/stub.sh

python3 benches/gen_campaign.py "$ROWS" > "$WORK/campaign.csv"
for run in $(seq "$RUNS"); do
  for side in old new; do
    binary=$OLD; [ "$side" = new ] && binary=$NEW
    fresh_ledger
    /usr/bin/time -f %e -o "$WORK/took" "$binary" "$MODE" "$WORK/campaign.csv" --config "$UNTHROTTLED" \
      --out "$WORK/results.csv" --overwrite -q --summary json > "$WORK/summary.json" || true
    # Rows sent, or in a dry run every row checked.
    sent=$(python3 -c "import json,sys; s=json.load(open(sys.argv[1])); print(s['counts']['SENT'] or s['rows'])" "$WORK/summary.json")
    took=$(tail -1 "$WORK/took") # after "Command exited with non-zero status 1": some rows are invalid
    echo "$side $(awk -v sent="$sent" -v took="$took" 'BEGIN {printf "%.0f", sent / took}')" >> "$WORK/rates"
    echo "run $run $side: $sent sent in $took s" >&2
  done
done
python3 - "$WORK/rates" "$ROWS" "$MODE" <<'PY'
import statistics, sys
rates = {"old": [], "new": []}
for line in open(sys.argv[1]):
    side, rate = line.split()
    rates[side].append(int(rate))
median = {side: statistics.median(r) for side, r in rates.items()}
best = {side: max(r) for side, r in rates.items()}
print(f"{int(sys.argv[2]):,} rows, {len(rates['old'])} alternating runs each, rows/s ({sys.argv[3]})")
print(f"| | median | best |\n| --- | --- | --- |")
for side in ("old", "new"):
    print(f"| {side} | {median[side]:,.0f} | {best[side]:,.0f} |")
print(f"| change | {median['new'] / median['old'] - 1:+.1%} | {best['new'] / best['old'] - 1:+.1%} |")
PY
