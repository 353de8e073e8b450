#!/usr/bin/env bash
# The ledger's two stores side by side: an unthrottled send of the same
# campaign to the loopback stub with a SQLite ledger, then with a
# PostgreSQL one on 127.0.0.1 (a throwaway cluster, default settings, so
# every commit is flushed as a real server's is), alternating, a fresh
# ledger for each run. Prints rows/s at the median for each and the ratio.
#
#   bash benches/postgres.sh [BINARY]          # default: this checkout's release build
#   ROWS=20000 RUNS=5 bash benches/postgres.sh
#
# Needs nginx, python3, /usr/bin/time and PostgreSQL's programs
# (`pg_config --bindir`; installed with apt-get if missing). As root, the
# server runs as the `postgres` user.
set -euo pipefail
cd "$(dirname "$0")/.."

BINARY=${1:-}
ROWS=${ROWS:-20000}
RUNS=${RUNS:-3}
if [ -z "$BINARY" ]; then
  cargo build --release --quiet --bin interacto-bulk
  BINARY=target/release/interacto-bulk
fi
BINARY=$(realpath "$BINARY")
source benches/stub.sh
command -v pg_config >/dev/null || apt-get install -y postgresql >/dev/null
PG_BIN=$(pg_config --bindir)
PG_PORT=${PG_PORT:-55433}
as_server() { if [ "$(id -u)" = 0 ]; then su postgres -c "$*"; else sh -c "$*"; fi; }

PG_DIR=$(mktemp -d)
chmod 755 "$PG_DIR"
[ "$(id -u)" = 0 ] && chown postgres "$PG_DIR"
as_server "$PG_BIN/initdb -D $PG_DIR/data -U bench --auth=trust >/dev/null"
as_server "$PG_BIN/pg_ctl -D $PG_DIR/data -l $PG_DIR/log -w \
  -o '-p $PG_PORT -c listen_addresses=127.0.0.1 -k $PG_DIR' start >/dev/null"
trap 'as_server "$PG_BIN/pg_ctl -D $PG_DIR/data -m fast stop" >/dev/null 2>&1 || true;
      nginx -p "$WORK" -c "$WORK/nginx.conf" -s quit 2>/dev/null || true; rm -rf "$WORK" "$PG_DIR"' EXIT
psql_admin() { "$PG_BIN/psql" -q -h 127.0.0.1 -p "$PG_PORT" -U bench -d postgres -c "$1"; }

python3 benches/gen_campaign.py "$ROWS" > "$WORK/campaign.csv"
for run in $(seq "$RUNS"); do
  for store in sqlite postgres; do
    fresh_ledger
    ledger="sqlite://$WORK/ledger.db"
    if [ "$store" = postgres ]; then
      psql_admin "DROP DATABASE IF EXISTS ledger"
      psql_admin "CREATE DATABASE ledger"
      ledger="postgres://bench@127.0.0.1:$PG_PORT/ledger"
    fi
    /usr/bin/time -f %e -o "$WORK/took" "$BINARY" send "$WORK/campaign.csv" --config "$UNTHROTTLED" \
      --ledger "$ledger" --out "$WORK/results.csv" --overwrite -q --summary json > "$WORK/summary.json" || true
    sent=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['counts']['SENT'])" "$WORK/summary.json")
    took=$(tail -1 "$WORK/took")
    echo "$store $(awk -v sent="$sent" -v took="$took" 'BEGIN {printf "%.0f", sent / took}')" >> "$WORK/rates"
    echo "run $run $store: $sent sent in $took s" >&2
  done
done
python3 - "$WORK/rates" "$ROWS" <<'PY'
import statistics, sys
rates = {"sqlite": [], "postgres": []}
for line in open(sys.argv[1]):
    store, rate = line.split()
    rates[store].append(int(rate))
median = {store: statistics.median(r) for store, r in rates.items()}
print(f"{int(sys.argv[2]):,} rows unthrottled, {len(rates['sqlite'])} alternating runs each, rows/s")
print("| ledger | median | best |\n| --- | --- | --- |")
for store in ("sqlite", "postgres"):
    print(f"| {store} | {median[store]:,.0f} | {max(rates[store]):,.0f} |")
print(f"| PostgreSQL / SQLite | {median['postgres'] / median['sqlite']:.2f}× | |")
PY
