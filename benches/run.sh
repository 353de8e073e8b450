#!/usr/bin/env bash
# Benchmarks interacto-bulk side by side with wrk and curl against one fast
# loopback stub (nginx answering like the API), in one run:
#   - unthrottled send (no pacing, concurrency 64) vs wrk (same body, 64
#     connections) vs reqwest alone (benches/reqwest_ceiling.rs: the same
#     HTTP client with nothing else) vs `xargs -P 64 curl`;
#   - dry-run validation speed;
#   - peak memory (send and dry run) per campaign size;
#   - pacing fidelity at 20/s, and at 5/s on each of 3 instances, measured at the stub.
#
#   bash benches/run.sh                      # 10k, 100k, 1M rows (about 15 minutes)
#   SIZES="1000 10000" PACE_SECONDS=5 RUNS=1 bash benches/run.sh   # quick
#
# Needs nginx, wrk, curl, python3 and /usr/bin/time (installed with apt-get if missing).
set -euo pipefail
cd "$(dirname "$0")/.."

SIZES=${SIZES:-"10000 100000 1000000"}
PACE_SECONDS=${PACE_SECONDS:-30}
RUNS=${RUNS:-3}
BIN=target/release/interacto-bulk
source benches/stub.sh
cargo build --release --quiet --bin interacto-bulk --example reqwest_ceiling

body='{"to":"5511987654321","contact":{"name":"Pessoa 1","phone":"551130034000"},"delay":2,"typing":5}'
cat > "$WORK/post.lua" <<EOF
wrk.method = "POST"
wrk.body = '$body'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "bench-key"
wrk.headers["Instance-Id"] = "bench"
EOF

seconds() { awk '/Elapsed \(wall clock\)/ {n=split($NF,p,":"); s=0; for(i=1;i<=n;i++) s=s*60+p[i]; print s}' "$1"; }
peak_mib() { awk '/Maximum resident set size/ {printf "%.1f", $NF/1024}' "$1"; }

echo "# interacto-bulk benchmarks, $(date -u +%Y-%m-%d), $(nproc) cores"
echo
echo "## Throughput against the stub (unthrottled, 64 in flight; best of $RUNS runs)"
echo
echo "| campaign | interacto-bulk rows/s | reqwest alone requests/s | wrk requests/s | ratio to wrk | ratio to reqwest | peak MiB (send) | dry run rows/s | peak MiB (dry run) |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
wrk_rps=$(wrk -t2 -c64 -d10s -s "$WORK/post.lua" "$URL/message/contact" | awk '/Requests\/sec/ {print $2}')
# The fastest of $RUNS runs of "$@": its /usr/bin/time -v report in $timing, its stdout in $timing.out.
best_of() {
  local timing=$1; shift
  local best=""
  for _ in $(seq "$RUNS"); do
    fresh_ledger
    /usr/bin/time -v "$@" > "$timing.try.out" 2> "$timing.try" || true
    local took; took=$(seconds "$timing.try")
    if [ -z "$best" ] || awk -v a="$took" -v b="$best" 'BEGIN {exit !(a < b)}'; then
      best=$took; cp "$timing.try" "$timing"; cp "$timing.try.out" "$timing.out"
    fi
  done
}
for n in $SIZES; do
  python3 benches/gen_campaign.py "$n" > "$WORK/c$n.csv"
  best_of "$WORK/s$n.time" "$BIN" send "$WORK/c$n.csv" --config "$UNTHROTTLED" --out "$WORK/s$n.csv" --overwrite -q \
    --summary json
  sent=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['counts']['SENT'])" "$WORK/s$n.time.out")
  send_s=$(seconds "$WORK/s$n.time")
  ceiling=$(for _ in $(seq "$RUNS"); do target/release/examples/reqwest_ceiling "$URL/message/contact" "$sent"; done \
    | awk '{print $(NF-1)}' | sort -n | tail -1)
  best_of "$WORK/v$n.time" "$BIN" validate "$WORK/c$n.csv" --out "$WORK/v$n.csv" --overwrite -q
  dry_s=$(seconds "$WORK/v$n.time")
  awk -v n="$n" -v sent="$sent" -v s="$send_s" -v w="$wrk_rps" -v r="$ceiling" -v ms="$(peak_mib "$WORK/s$n.time")" \
      -v d="$dry_s" -v md="$(peak_mib "$WORK/v$n.time")" \
    'BEGIN {printf "| %d rows | %.0f | %.0f | %.0f | %.2f | %.2f | %s | %.0f | %s |\n", n, sent/s, r, w, (sent/s)/w, (sent/s)/r, ms, n/d, md}'
done

echo
echo "## The naive peer: xargs -P 64 curl, 2,000 requests"
echo
start=$(date +%s.%N)
seq 2000 | xargs -P 64 -I{} curl -s -o /dev/null -X POST "$URL/message/contact" \
  -H 'Content-Type: application/json' -H 'Authorization: bench-key' -H 'Instance-Id: bench' -d "$body"
end=$(date +%s.%N)
awk -v a="$start" -v b="$end" 'BEGIN {printf "%.0f requests/s\n", 2000/(b-a)}'

echo
echo "## Pacing fidelity, measured at the stub"
echo
echo "| configured | instance | messages | achieved rate | largest count in any 1 s window |"
echo "| --- | --- | --- | --- | --- |"
pace() { # $1 = rate per instance, $2 = instances (TOML array), $3 = rows
  local config="$WORK/pace.toml"
  printf '[api]\nbase_url = "%s"\ninstances = %s\n[pacing]\nrate = "%s"\nburst = 1\nconcurrency = 16\npace_by_message = false\n' \
    "$URL" "$2" "$1" > "$config"
  python3 benches/gen_campaign.py "$3" | grep -v ',12' > "$WORK/pace.csv"
  : > "$WORK/logs/access.log"
  nginx -p "$WORK" -c "$WORK/nginx.conf" -s reopen 2>/dev/null
  fresh_ledger
  "$BIN" send "$WORK/pace.csv" --config "$config" --out "$WORK/pace.results.csv" --overwrite -q > /dev/null || true
  sleep 1
  python3 - "$WORK/logs/access.log" "$1" <<'PY'
import collections, sys
arrivals = collections.defaultdict(list)
for line in open(sys.argv[1]):
    at, instance = line.split()
    arrivals[instance].append(float(at))
for instance, times in sorted(arrivals.items()):
    times.sort()
    rate = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0
    most, j = 0, 0
    for i, t in enumerate(times):
        while times[j] <= t - 1.0:
            j += 1
        most = max(most, i - j + 1)
    print(f"| {sys.argv[2]} | {instance} | {len(times)} | {rate:.3f}/s | {most} |")
PY
}
pace "20/s" '["solo"]' $((20 * PACE_SECONDS))
pace "5/s" '["a", "b", "c"]' $((15 * PACE_SECONDS))
