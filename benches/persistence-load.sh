#!/usr/bin/env bash
# persistence-load.sh: what persistence costs. Two enforcers in inline mode in front of the
# same bare backend, identical except store=redb (flush every 5 s) versus store=none, are
# loaded in turn (interleaved repeats, same pinning) with requests that spread over many
# client IPs (X-Forwarded-For) and paths, so the buckets being flushed are not trivial.
#
#   benches/persistence-load.sh                 # 3 interleaved repeats of 10 s, 32 connections
#   DURATION=20 CONNS=64 REPEATS=5 benches/persistence-load.sh
#   CLUSTER=1 benches/persistence-load.sh       # cluster mode (Redis) against the embedded store
#
# With CLUSTER=1 the two enforcers are the embedded default (store=redb, "off" in the table)
# and a cluster node (redis_url to a redis-server on core 1, cluster_sync_interval=1s, "on"):
# the ratios are then the cost of cluster mode. Installs redis-server with apt-get if missing.
#
# Layout (2 cores): both enforcers on core 0 (workers=1, only one is loaded at a time), the
# backend and wrk on core 1. Prints the medians of req/s, p99 and CPU per request for both,
# the ratios on/off, and the store file's size per million requests recorded.
# Installs wrk with apt-get when it is missing. Everything stays on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
CONNS=${CONNS:-32}
REPEATS=${REPEATS:-3}

cargo build --release --locked --quiet --bin enforcer --example bare_post
. benches/common.sh

taskset -c 1 target/release/examples/bare_post 127.0.0.1:0 >"$tmp/bare.out" &
pids+=($!)
backend=$(wait_addr "$tmp/bare.out" "bare_post ready: ")

redis_conf=""
if [ -n "${CLUSTER:-}" ]; then
  if ! command -v redis-server >/dev/null; then
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  fi
  rport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  taskset -c 1 redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no >/dev/null &
  pids+=($!)
  until redis-cli -p "$rport" ping >/dev/null 2>&1; do sleep 0.1; done
  redis_conf="redis_url=redis://127.0.0.1:$rport
cluster_sync_interval=1s"
fi

# start NAME STORE [EXTRA]: an enforcer with its own config and data dirs (EXTRA: more
# ase.conf lines); sets addr_NAME, pid_NAME.
start() {
  local name=$1 store=$2 extra=${3:-} dir="$tmp/$1"
  mkdir -p "$dir/config/api"
  cat >"$dir/config/ase.conf" <<EOF
mode=inline
http_ws_port=0
https_wss_port=0
management_port=0
bind_address=127.0.0.1
workers=1
enable_xff=true
admin_log_level=2
store=$store
store_flush_interval=5s
data_dir=$dir/data
tls_cert_path=$PWD/certs/server.crt
tls_key_path=$PWD/certs/server.key
$extra
EOF
  cat >"$dir/config/api/shop.json" <<EOF
{"api_metadata":{"protocol":"http","url":"/shop","hostname":"*","cookie":"sid",
 "servers":[{"host":"${backend%:*}","port":${backend##*:}}]}}
EOF
  taskset -c 0 target/release/enforcer run --config "$dir/config" >"$dir/out" 2>"$dir/err" &
  pids+=($!)
  eval "pid_$name=$!"
  eval "addr_$name=$(wait_addr "$dir/out" "http=")"
}
if [ -n "${CLUSTER:-}" ]; then
  start on redb "$redis_conf"
  start off redb
  labels=("cluster (on)" "redb (off)")
else
  start on redb
  start off none
  labels=("redb (on)" "none (off)")
fi

cat >"$tmp/mix.lua" <<'EOF'
-- 5,000 client IPs, 200 paths, 1,000 sessions, a few agents: a busy API's minute.
local agents = { "curl/8.5.0", "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0",
  "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X)", "okhttp/4.12.0" }
request = function()
  local n = math.random(0, 4999)
  wrk.headers["X-Forwarded-For"] = string.format("10.%d.%d.%d", n % 7, math.floor(n / 256) % 256, n % 256)
  wrk.headers["Cookie"] = "sid=s" .. math.random(1, 1000)
  wrk.headers["User-Agent"] = agents[math.random(1, #agents)]
  return wrk.format("GET", "/shop/item/" .. math.random(1, 200))
end
EOF

run() {
  local name=$1 url=$2 pid=$3 out c0 c1
  c0=$(cpu_ticks "$pid")
  out=$(taskset -c 1 wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -s "$tmp/mix.lua" "$url")
  c1=$(cpu_ticks "$pid")
  local rps total p99 errors
  rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
  total=$(awk '/requests in/ {print $1}' <<<"$out")
  p99=$(to_us "$(awk '$1 == "99%" {print $2}' <<<"$out")")
  errors=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
  if [ -n "$errors" ]; then echo "$name: $errors non-2xx answers" >&2; fi
  echo "$total" >>"$tmp/total_$name"
  awk -v n="$name" -v r="$rps" -v b="$p99" -v c0="$c0" -v c1="$c1" -v t="$total" -v hz="$ticks" \
    'BEGIN { printf "%s %s %s %.2f\n", n, r, b, (c1 - c0) / hz * 1e6 / t }' >>"$tmp/results"
}

echo "warming up..." >&2
taskset -c 1 wrk -t1 -c"$CONNS" -d2s -s "$tmp/mix.lua" "http://$addr_on/" >/dev/null
taskset -c 1 wrk -t1 -c"$CONNS" -d2s -s "$tmp/mix.lua" "http://$addr_off/" >/dev/null
for i in $(seq 1 "$REPEATS"); do
  echo "repeat $i/$REPEATS..." >&2
  run on "http://$addr_on/" "$pid_on"
  run off "http://$addr_off/" "$pid_off"
done
# Let the last flush land, then stop the store's owner gracefully (final flush).
kill -TERM "$pid_on"
wait "$pid_on" 2>/dev/null || true

printf "\ninline GET through enforcer, %s connections, %ss x %s, 5k IPs x 200 paths x 1k sessions\n" \
  "$CONNS" "$DURATION" "$REPEATS"
printf "%-14s %12s %10s %14s\n" store req/s p99_us cpu_us/req
printf "%-14s %12.0f %10.0f %14.2f\n" "${labels[0]}" "$(col on 2)" "$(col on 3)" "$(col on 4)"
printf "%-14s %12.0f %10.0f %14.2f\n" "${labels[1]}" "$(col off 2)" "$(col off 3)" "$(col off 4)"
awk -v a="$(col on 2)" -v b="$(col off 2)" -v c="$(col on 4)" -v d="$(col off 4)" -v p="$(col on 3)" -v q="$(col off 3)" \
  'BEGIN { printf "\nthroughput on/off: %.3f   CPU per request on/off: %.3f   p99 on/off: %.2f\n", a / b, c / d, p / q }'
if [ -n "${CLUSTER:-}" ]; then
  echo "redis: $(redis-cli -p "$rport" info memory | awk -F: '/^used_memory_human/ {print $2}' | tr -d '\r') used"
  exit 0
fi
requests=$(awk '{ s += $1 } END { print s }' "$tmp/total_on")
bytes=$(stat -c %s "$tmp/on/data/enforcer.redb")
awk -v r="$requests" -v b="$bytes" \
  'BEGIN { printf "store file: %.1f MB after %d requests (%.1f MB per million, all in minute buckets)\n", b / 1e6, r, b / 1e6 / (r / 1e6) }'
