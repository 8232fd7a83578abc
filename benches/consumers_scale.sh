#!/usr/bin/env bash
# What runtime API keys held in Redis cost an instance at start: KEYS keys written into a
# real redis-server (the admin API's records, pipelined through `redis-cli --pipe`), then
# the gateway started on it: the time from its start to `/ready` (which waits for the
# runtime consumers to be loaded) and its resident memory then, against the same with no
# keys. Bytes per key = (RSS with KEYS keys - RSS with none) / KEYS.
#
#   benches/consumers_scale.sh                        # 1,000,000 keys, target/release/floodgate
#   KEYS=100000 FLOODGATE_BIN=target/debug/floodgate benches/consumers_scale.sh
#
# redis-server and redis-cli come from $FLOODGATE_TOOLS/bin (or $FLOODGATE_TOOLS) or PATH.
# RSS is VmRSS from /proc/PID/status, read a second after ready.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
KEYS=${KEYS:-1000000}
BIN=${FLOODGATE_BIN:-$ROOT/target/release/floodgate}
OUT=${OUT:-$(mktemp -d /tmp/floodgate-consumers-scale.XXXXXX)}
PORT=18210 ADMIN=19210 REDIS=18220
TOOLS=${FLOODGATE_TOOLS:-}
PATH="${TOOLS:+$TOOLS/bin:$TOOLS:}$PATH"

[ -x "$BIN" ] || { echo "no $BIN (cargo build --release, or set FLOODGATE_BIN)" >&2; exit 1; }
command -v redis-server >/dev/null && command -v redis-cli >/dev/null ||
  { echo "redis-server and redis-cli needed (FLOODGATE_TOOLS or PATH)" >&2; exit 1; }
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT

redis-server --port "$REDIS" --bind 127.0.0.1 --save '' --appendonly no >"$OUT/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do redis-cli -p "$REDIS" ping >/dev/null 2>&1 && break; sleep 0.1; done

cat >"$OUT/floodgate.yaml" <<YAML
threads: 1
pid_file: $OUT/fg.pid
upgrade_sock: $OUT/fg.sock
listen: ["127.0.0.1:$PORT"]
admin: { listen: "127.0.0.1:$ADMIN" }
access_log: off
redis: { url: "redis://127.0.0.1:$REDIS" }
auth:
  default_tier: free
  api_keys: { keys: [] }
tiers:
  free: { rate: 100, burst: 100 }
routes:
  - { name: api, path_prefix: /api, respond: { status: 200, body: ok }, auth: required }
YAML

# Writes $1 keys as the admin API stores them (12-hex-digit ids, one consumer each, the
# names `benches/consumers.rs` uses; 1,000 fields per HSET),
# the version they would have made and an epoch marker, so the instance's start is a
# first look at a live fleet's Redis (a full reload), not a repair.
fill() {
  python3 - "$1" <<'PY' | redis-cli -p "$REDIS" --pipe >"$OUT/fill.log"
import hashlib, sys
n = int(sys.argv[1])
out = sys.stdout.buffer
def cmd(*args):
    parts = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(a), a))
    out.write(b"".join(parts))
tag = b"{floodgate:consumers}"
for start in range(0, n, 1000):
    args = [b"HSET", tag + b":keys"]
    for i in range(start, min(n, start + 1000)):
        digest = hashlib.sha256(b"bench-key-%d" % i).hexdigest()
        key_id = b"%012x" % i  # as the admin API makes them
        args += [key_id, b'{"key_id":"%s","consumer":"consumer-%d","digest":"%s","tier":null,"created_at_s":1700000000,"expires_at_s":null}' % (key_id, i, digest.encode())]
    cmd(*args)
cmd(b"SET", tag + b":version", n)
cmd(b"SET", tag + b":epoch", b"bench")
PY
}

# Starts the gateway; prints seconds to ready and VmRSS in kB a second later.
measure() {
  local started ready rss
  started=$(date +%s.%N)
  "$BIN" -c "$OUT/floodgate.yaml" >"$OUT/floodgate-$1.log" 2>&1 &
  FG=$!
  pids+=($FG)
  for _ in $(seq 1200); do
    curl -sf "http://127.0.0.1:$ADMIN/ready" >/dev/null 2>&1 && break
    sleep 0.05
  done
  ready=$(date +%s.%N)
  curl -sf "http://127.0.0.1:$ADMIN/ready" >/dev/null || { kill "$FG"; echo "not ready; see $OUT/floodgate-$1.log" >&2; exit 1; }
  sleep 1
  rss=$(awk '/^VmRSS/ {print $2}' "/proc/$FG/status")
  kill "$FG"
  wait "$FG" 2>/dev/null || true
  echo "$(echo "$ready - $started" | bc) $rss"
}

read -r ready0 rss0 < <(measure empty)
filled=$(date +%s.%N)
fill "$KEYS"
fill_s=$(echo "$(date +%s.%N) - $filled" | bc)
[ "$(redis-cli -p "$REDIS" hlen '{floodgate:consumers}:keys')" = "$KEYS" ] || { echo "fill failed: $OUT/fill.log" >&2; exit 1; }
read -r ready1 rss1 < <(measure keys)

echo "keys: $KEYS   binary: $BIN   files: $OUT"
echo "redis filled in:              ${fill_s} s ($(redis-cli -p "$REDIS" info memory | awk -F: '/^used_memory_human/ {print $2}' | tr -d '\r') in redis)"
echo "no keys:    ready in ${ready0} s, RSS $((rss0 / 1024)) MB"
echo "$KEYS keys: ready in ${ready1} s, RSS $((rss1 / 1024)) MB"
echo "per key:                      $(((rss1 - rss0) * 1024 / KEYS)) bytes"
grep -h "reloaded in full" "$OUT/floodgate-keys.log" | sed 's/^/gateway: /' || true
