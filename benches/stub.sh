# Sourced by the benchmark scripts: a fast loopback stub answering like the
# API (nginx), a work directory removed on exit, the unthrottled config, and
# a throwaway ledger.
#
# Sets WORK, PORT, URL and UNTHROTTLED; `fresh_ledger` empties the ledger
# and removes the results files before a run, so no run finds the cards of
# the one before (the campaign would remember them as sent, from the ledger
# or from its results file, and send nothing) or spends a real number's
# daily cap.

PORT=${PORT:-18089}
WORK=$(mktemp -d)
trap 'nginx -p "$WORK" -c "$WORK/nginx.conf" -s quit 2>/dev/null || true; rm -rf "$WORK"' EXIT

for tool in nginx:nginx-light wrk:wrk curl:curl /usr/bin/time:time; do
  command -v "${tool%%:*}" >/dev/null || apt-get install -y "${tool##*:}" >/dev/null
done

# The stub: a fixed 201 in the vendor's shape; the access log keeps arrival times per instance.
mkdir -p "$WORK/logs"
cat > "$WORK/nginx.conf" <<CONF
worker_processes 1;
pid $WORK/nginx.pid;
error_log $WORK/logs/error.log;
events { worker_connections 4096; }
http {
  log_format arrivals '\$msec \$http_instance_id';
  access_log $WORK/logs/access.log arrivals;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$PORT;
    location = /message/contact {
      default_type application/json;
      return 201 '{"statusCode":201,"message":"request successful","data":{"id":"66b3c041eac929f51c6f160f","status":"QUEUED"}}';
    }
  }
}
CONF
nginx -p "$WORK" -c "$WORK/nginx.conf"
URL="http://127.0.0.1:$PORT"

UNTHROTTLED="$WORK/unthrottled.toml"
cat > "$UNTHROTTLED" <<CONF
[api]
base_url = "$URL"
instance_id = "bench"
timeout = 10
[pacing]
rate = "1000000/s"
burst = 1000
concurrency = 64
pace_by_message = false
CONF

export INTERACTO_API_KEY=bench-key
export INTERACTO_LEDGER_URL="sqlite://$WORK/ledger.db"
fresh_ledger() { rm -f "$WORK"/ledger.db* "$WORK"/*results.csv* "$WORK"/s[0-9]*.csv*; }
