#!/usr/bin/env bash
# What tracing costs on the request path, and what a collector that is down costs in memory.
#
#   benches/tracing_cost.sh                 # both parts
#   PART=instructions benches/tracing_cost.sh
#   PART=queue DURATION=30 benches/tracing_cost.sh
#
# instructions: ../shared/bench/instructions.sh on benches/full-path.yaml's full route with no
#   `tracing` section, with `sample_ratio: 0` and with `sample_ratio: 1` (spans exported to a
#   local sink that answers every export with 200). BASE_BIN adds another build as a target
#   (e.g. the tree before tracing) for the no-tracing comparison.
# queue: the same config at `sample_ratio: 1` exporting to a port nobody listens on, driven
#   by wrk (50 connections) for DURATION seconds; prints the request rate, the resident memory
#   each 5 s and the spans dropped, so a flat memory line shows the queue's bound.
# Needs: valgrind, nginx, wrk, python3 (apt-get install -y valgrind nginx-light wrk).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${FLOODGATE_BIN:-$ROOT/target/release/floodgate}
PART=${PART:-all}
DURATION=${DURATION:-30}
REQUESTS=${REQUESTS:-6000}
SINK_PORT=18020
WORK=$(mktemp -d /tmp/tracing-cost.XXXXXX)
OWNED=()
cleanup() { for p in "${OWNED[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
[[ -x $BIN ]] || (cd "$ROOT" && cargo build --release --bin floodgate)

config() { # NAME TRACING-YAML: benches/full-path.yaml plus a tracing section
  sed -e "s|/tmp/floodgate-full-path|$WORK/$1|g" "$ROOT/benches/full-path.yaml" >"$WORK/$1.yaml"
  [[ -n $2 ]] && printf '%s\n' "$2" >>"$WORK/$1.yaml"
  echo "$WORK/$1.yaml"
}
tracing_yaml() { # ENDPOINT RATIO [MORE]
  printf 'tracing:\n  otlp: { endpoint: "%s" }\n  sample_ratio: %s\n%s' "$1" "$2" "${3:-}"
}

if [[ $PART == all || $PART == instructions ]]; then
  mkdir -p "$WORK/sink"
  cat >"$WORK/sink/nginx.conf" <<EOF
worker_processes 1; daemon off; pid sink.pid; error_log error.log warn;
events { worker_connections 1024; }
http { access_log off; client_body_temp_path .; client_max_body_size 64m;
  server { listen 127.0.0.1:$SINK_PORT; location /v1/traces {
    default_type application/x-protobuf; return 200 ""; } } }
EOF
  nginx -p "$WORK/sink/" -e error.log -c "$WORK/sink/nginx.conf" &
  OWNED+=($!)
  none=$(config none "")
  zero=$(config zero "$(tracing_yaml "http://127.0.0.1:$SINK_PORT" 0)")
  one=$(config one "$(tracing_yaml "http://127.0.0.1:$SINK_PORT" 1)")
  targets=(
    "none=http://127.0.0.1:18010/api/x=$BIN -c $none"
    "ratio0=http://127.0.0.1:18010/api/x=$BIN -c $zero"
    "ratio1=http://127.0.0.1:18010/api/x=$BIN -c $one"
  )
  [[ -n ${BASE_BIN:-} ]] && targets=("base=http://127.0.0.1:18010/api/x=$BASE_BIN -c $none" "${targets[@]}")
  "$ROOT/../shared/bench/instructions.sh" --requests "$REQUESTS" \
    --header 'X-API-Key: bench-key-0123456789' "${targets[@]}"
fi

if [[ $PART == all || $PART == queue ]]; then
  if ! (echo >/dev/tcp/127.0.0.1/18000) 2>/dev/null; then
    mkdir -p "$WORK/origin"
    cat >"$WORK/origin/nginx.conf" <<'EOF'
worker_processes 1; daemon off; pid origin.pid; error_log error.log warn;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 10000000; client_body_temp_path .;
  server { listen 127.0.0.1:18000 backlog=4096; location / { return 200 "ok\n"; } } }
EOF
    nginx -p "$WORK/origin/" -e error.log -c "$WORK/origin/nginx.conf" &
    OWNED+=($!)
  fi
  dead=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  # The same load without tracing first: the resident memory tracing is compared with.
  for run in none down; do
    case $run in
      none) cfg=$(config queue-none "") ;;
      down) cfg=$(config down "$(tracing_yaml "http://127.0.0.1:$dead" 1 "  max_queue: 2048")") ;;
    esac
    "$BIN" -c "$cfg" >"$WORK/$run.log" 2>&1 &
    pid=$!
    OWNED+=($pid)
    for _ in $(seq 100); do curl -sf http://127.0.0.1:19010/ready >/dev/null && break; sleep 0.1; done
    wrk -t1 -c50 -d"${DURATION}s" -H 'X-API-Key: bench-key-0123456789' http://127.0.0.1:18010/api/x >"$WORK/wrk-$run.txt" &
    driver=$!
    rss=""
    for t in $(seq 5 5 "$DURATION"); do
      sleep 5
      rss+=" $(awk '/VmRSS/ { print int($2 / 1024) }' /proc/$pid/status)"
    done
    wait $driver
    echo "$run: $(awk '/Requests\/sec/ { print int($2) }' "$WORK/wrk-$run.txt") req/s; RSS MiB every 5 s:$rss"
    [[ $run == down ]] && curl -s http://127.0.0.1:19010/metrics |
      grep -E '^floodgate_tracing_(spans_dropped_total|export_errors_total|spans_exported_total)'
    kill $pid; wait $pid 2>/dev/null || true
  done
fi
