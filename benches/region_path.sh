#!/usr/bin/env bash
# Instructions per request with several regions against one: the "every feature on"
# config (benches/full-path.yaml) synced through a real redis-server, once as one
# region (`redis`) and once with `redis.region` and a peer region's redis-server, so
# that the region sync runs beside the requests (its lease, the peer's change log
# and the keys named for it, every second).
#   benches/region_path.sh [--requests N]      (after cargo build --release)
set -euo pipefail
cd "$(dirname "$0")/.."
N=6000
[[ ${1:-} == --requests ]] && N=$2
WORK=$(mktemp -d /tmp/region-path.XXXXXX)
PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null || true; rm -rf "$WORK"' EXIT
# One Redis for the one-region target, two for the regions target: no state shared.
for port in 18379 18380 18381; do
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --daemonize no >/dev/null &
  PIDS+=($!)
done
for port in 18379 18380 18381; do
  for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
done
grep -v '^#' benches/full-path.yaml >"$WORK/one.yaml"
cp "$WORK/one.yaml" "$WORK/regions.yaml"
echo 'redis: { url: "redis://127.0.0.1:18379/0" }' >>"$WORK/one.yaml"
echo 'redis: { url: "redis://127.0.0.1:18380/0", region: { name: a, peers: { b: "redis://127.0.0.1:18381/0" } } }' >>"$WORK/regions.yaml"
../shared/bench/instructions.sh --requests "$N" --header 'X-API-Key: bench-key-0123456789' \
  "one-region=http://127.0.0.1:18010/api/x=target/release/floodgate -c $WORK/one.yaml" \
  "regions=http://127.0.0.1:18010/api/x=target/release/floodgate -c $WORK/regions.yaml"
