#!/usr/bin/env bash
# The campaign report of a 1M-row results file: time, peak memory and the
# page's size. The file is a dry run's check of a generated campaign (the
# report reads a check, a rehearsal's or a send's file alike).
#
#   bash benches/report.sh            # ROWS=1000000
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${ROWS:-1000000}
cargo build --release --quiet --bin interacto-bulk
BIN=$(realpath target/release/interacto-bulk)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
python3 benches/gen_campaign.py "$ROWS" > "$WORK/campaign.csv"
env -i HOME="$WORK/home" "$BIN" validate "$WORK/campaign.csv" --out "$WORK/check.csv" \
  --ledger "sqlite://$WORK/ledger.db" -q > /dev/null || true
for lang in en pt-BR; do
  /usr/bin/time -f "%e s, %M KB peak" -o "$WORK/took" env -i HOME="$WORK/home" \
    "$BIN" report "$WORK/check.csv" --out "$WORK/report.html" --lang "$lang" > /dev/null
  echo "$ROWS rows, $lang: $(cat "$WORK/took"), page $(stat -c %s "$WORK/report.html") bytes"
done
