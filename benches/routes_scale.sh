#!/usr/bin/env bash
# What routes cost before they see traffic: a generated config of ROUTES routes, each with
# API-key auth, a tier limit of its own and a global_limit shared through a real
# redis-server; then the time from start to ready, the gateway's idle RSS, the size of
# /metrics and /admin/stats, the CPU of SCRAPES scrapes, RSS after them, the Redis
# commands of idle sync rounds, and the series
# one route gets from its first 200 and first 401.
#
#   benches/routes_scale.sh                    # 10,000 routes, target/release/floodgate
#   ROUTES=2 FLOODGATE_BIN=target/debug/floodgate benches/routes_scale.sh
#
# Scrape CPU is the gateway's utime+stime from /proc/PID/stat around SCRAPES sequential
# scrapes (curl, over loopback), divided by SCRAPES. RSS is VmRSS from /proc/PID/status.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
ROUTES=${ROUTES:-10000}
SCRAPES=${SCRAPES:-200}
BIN=${FLOODGATE_BIN:-$ROOT/target/release/floodgate}
OUT=${OUT:-$(mktemp -d /tmp/floodgate-routes-scale.XXXXXX)}
PORT=18110 ADMIN=19110 ORIGIN=18100 REDIS=18120
KEY=bench-key-0123456789

[ -x "$BIN" ] || { echo "no $BIN (cargo build --release, or set FLOODGATE_BIN)" >&2; exit 1; }
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT

mkdir -p "$OUT/www/r0"
echo ok > "$OUT/www/r0/x"
python3 -m http.server "$ORIGIN" --bind 127.0.0.1 --directory "$OUT/www" >"$OUT/origin.log" 2>&1 &
pids+=($!)
redis-server --port "$REDIS" --bind 127.0.0.1 --save '' --appendonly no >"$OUT/redis.log" 2>&1 &
pids+=($!)

{
  cat <<EOF
threads: 1
pid_file: $OUT/fg.pid
upgrade_sock: $OUT/fg.sock
listen: ["127.0.0.1:$PORT"]
admin: { listen: "127.0.0.1:$ADMIN", public_stats: true }
access_log: off
redis: { url: "redis://127.0.0.1:$REDIS" }
upstreams:
  origin: { targets: ["127.0.0.1:$ORIGIN"] }
auth:
  default_tier: free
  api_keys:
    keys:
      - { consumer: bench, key: "sha256:$(printf %s "$KEY" | sha256sum | cut -d' ' -f1)", tier: free }
tiers:
  free: { rate: 1000, burst: 1000 }
routes:
EOF
  for ((i = 0; i < ROUTES; i++)); do
    echo "  - { name: r$i, path_prefix: /r$i/, upstream: origin, limits: { free: { rate: 100, burst: 100 } }, global_limit: { rate: 1000, per_s: 1 } }"
  done
} >"$OUT/floodgate.yaml"

started_ns=$(date +%s%N)
"$BIN" -c "$OUT/floodgate.yaml" >"$OUT/floodgate.log" 2>&1 &
FG=$!
pids+=($FG)
for _ in $(seq 3000); do
  curl -sf "http://127.0.0.1:$ADMIN/ready" >/dev/null && break
  sleep 0.02
done
curl -sf "http://127.0.0.1:$ADMIN/ready" >/dev/null || { echo "not ready; see $OUT/floodgate.log" >&2; exit 1; }
ready_ms=$((($(date +%s%N) - started_ns) / 1000000))
sleep 1

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$FG/status"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$FG/stat"; }
redis_calls() { redis-cli -p "$REDIS" info commandstats | awk -F'[=,:]' '/^cmdstat_/ {n += $3} END {print n}'; }
tick_ms=$((1000 / $(getconf CLK_TCK)))

echo "routes: $ROUTES   binary: $BIN   files: $OUT"
echo "ready after:                  $ready_ms ms (start to the first 200 from /ready, polled every 20 ms)"
echo "idle RSS:                     $(($(rss_kb) / 1024)) MB"
curl -s "http://127.0.0.1:$ADMIN/metrics" >"$OUT/metrics-before"
echo "/metrics before traffic:      $(wc -c <"$OUT/metrics-before") bytes, $(grep -vc '^#' "$OUT/metrics-before") samples"
before=$(cpu_ticks)
for ((i = 0; i < SCRAPES; i++)); do
  curl -s "http://127.0.0.1:$ADMIN/metrics" >/dev/null
done
after=$(cpu_ticks)
echo "scrape CPU:                   $(((after - before) * tick_ms * 1000 / SCRAPES)) µs per scrape ($SCRAPES scrapes, $((after - before)) ticks of $tick_ms ms)"
echo "RSS after $SCRAPES scrapes:         $(($(rss_kb) / 1024)) MB"
echo "/admin/stats:                 $(curl -s "http://127.0.0.1:$ADMIN/admin/stats" | wc -c) bytes"
calls=$(redis_calls)
sleep 5
echo "redis commands, 5 s idle:     $(($(redis_calls) - calls - 1)) (sync rounds every 100 ms)"
curl -s -o /dev/null -w "first request with the key:   %{http_code}\n" -H "X-API-Key: $KEY" "http://127.0.0.1:$PORT/r0/x"
curl -s -o /dev/null -w "first request without:        %{http_code}\n" "http://127.0.0.1:$PORT/r1/x"
curl -s "http://127.0.0.1:$ADMIN/metrics" >"$OUT/metrics-after"
echo "/metrics after:               $(wc -c <"$OUT/metrics-after") bytes, $(grep -vc '^#' "$OUT/metrics-after") samples"
echo "series of r0 (a 200):         $(grep -c 'route="r0"' "$OUT/metrics-after")"
echo "series of r1 (a 401):         $(grep -c 'route="r1"' "$OUT/metrics-after")"
calls=$(redis_calls)
sleep 5
echo "redis commands, 5 s, 1 route active: $(($(redis_calls) - calls - 1))"
