#!/usr/bin/env bash
# What a run pays for the ledger's history: a 10k-row `validate` (with a
# cooldown, so every row asks for its recipient's last card too) and the
# 1M-row dry run, each against an empty ledger and against one of 3M cards
# (2M sent ten days ago, 1M today), made by the tool itself: unthrottled
# sends to the loopback stub, the old ones under libfaketime. Prints seconds
# and peak memory for each, side by side.
#
#   bash benches/history.sh [BINARY]        # default: this checkout's release build
#   CARDS=300000 bash benches/history.sh    # a smaller ledger, for a quick look
#
# Needs nginx, python3, /usr/bin/time and faketime (installed if missing).
# Filling 3M cards takes about five minutes here.
set -euo pipefail
cd "$(dirname "$0")/.."

BINARY=${1:-}
CARDS=${CARDS:-3000000}
if [ -z "$BINARY" ]; then
  cargo build --release --quiet --bin interacto-bulk
  BINARY=target/release/interacto-bulk
fi
BINARY=$(realpath "$BINARY")
source benches/stub.sh
command -v faketime >/dev/null || apt-get install -y faketime >/dev/null

OLD=$((CARDS * 2 / 3))
python3 benches/gen_campaign.py "$CARDS" > "$WORK/all.csv"
awk -v old="$OLD" 'NR == 1 || NR <= old + 1' "$WORK/all.csv" > "$WORK/old.csv"
awk -v old="$OLD" 'NR == 1 || NR > old + 1' "$WORK/all.csv" > "$WORK/today.csv"
# Rows of today's campaign: the re-export a nightly job checks again.
awk 'NR <= 10001' "$WORK/today.csv" > "$WORK/check10k.csv"
python3 benches/gen_campaign.py 1000000 > "$WORK/check1m.csv"
COOLDOWN="$WORK/cooldown.toml"
{ cat "$UNTHROTTLED"; printf '[schedule]\ncooldown = "7d"\n'; } > "$COOLDOWN"

# One measured dry run: seconds and peak MiB.
measure() {
  local file=$1 config=$2
  /usr/bin/time -f "%e %M" -o "$WORK/took" "$BINARY" validate "$file" --config "$config" \
    --out "$WORK/check.csv" --overwrite -q > /dev/null || true
  # The last line: "Command exited with non-zero status 1" may come first.
  tail -1 "$WORK/took" | awk '{ printf "%.2f s, %.1f MiB", $1, $2 / 1024 }'
}

declare -A empty full
fresh_ledger
empty[10k]=$(measure "$WORK/check10k.csv" "$COOLDOWN")
empty[1m]=$(measure "$WORK/check1m.csv" "$UNTHROTTLED")

echo "filling the ledger: $OLD cards ten days ago, $((CARDS - OLD)) today" >&2
FAKETIME_DONT_FAKE_MONOTONIC=1 faketime -f -10d "$BINARY" send "$WORK/old.csv" --campaign old \
  --config "$UNTHROTTLED" --out "$WORK/old.results.csv" -q > /dev/null || true
"$BINARY" send "$WORK/today.csv" --campaign today --config "$UNTHROTTLED" \
  --out "$WORK/today.results.csv" -q > /dev/null || true
"$BINARY" ledger stats --ledger "$INTERACTO_LEDGER_URL" >&2

full[10k]=$(measure "$WORK/check10k.csv" "$COOLDOWN")
full[1m]=$(measure "$WORK/check1m.csv" "$UNTHROTTLED")

echo "| dry run | empty ledger | $CARDS cards |"
echo "| --- | --- | --- |"
echo "| 10k rows, cooldown 7d | ${empty[10k]} | ${full[10k]} |"
echo "| 1M rows | ${empty[1m]} | ${full[1m]} |"
