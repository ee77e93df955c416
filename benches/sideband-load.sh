#!/usr/bin/env bash
# sideband-load.sh: sideband decisions per second over HTTP/1.1 keep-alive, enforcer against
# a bare hyper server that answers 200 to the same POST, in one run with the same pinning.
#
#   benches/sideband-load.sh            # 3 interleaved repeats of 10 s, 32 connections
#   DURATION=20 CONNS=64 REPEATS=5 benches/sideband-load.sh
#
# Layout (2 cores): the server under test on core 0 (enforcer with workers=1), wrk on core 1.
# The body is benches/sideband_request.json (~700 bytes, the gateway sample with more headers).
# Prints, per target, the medians of req/s, p50, p99 and the server's CPU time per request
# (user+sys from /proc), then the ratios that count: enforcer/bare throughput and CPU.
# Installs wrk with apt-get when it is missing. Everything stays on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
CONNS=${CONNS:-32}
REPEATS=${REPEATS:-3}

cargo build --release --locked --quiet --bin enforcer --example bare_post
. benches/common.sh

taskset -c 0 target/release/examples/bare_post 127.0.0.1:0 >"$tmp/bare.out" &
pids+=($!)
bare_pid=$!
bare_addr=$(wait_addr "$tmp/bare.out" "bare_post ready: ")

mkdir -p "$tmp/config/api"
cat >"$tmp/config/ase.conf" <<EOF
mode=sideband
http_ws_port=0
https_wss_port=0
management_port=0
bind_address=127.0.0.1
workers=1
enable_sideband_keepalive=true
admin_log_level=2
data_dir=$tmp/data
tls_cert_path=$PWD/certs/server.crt
tls_key_path=$PWD/certs/server.key
EOF
cat >"$tmp/config/api/shop.json" <<'EOF'
{"api_metadata":{"protocol":"http","url":"/shopapi","hostname":"*","cookie":"JSESSIONID",
 "oauth2_access_token":true,"apikey_header":"x-api-key"}}
EOF
taskset -c 0 target/release/enforcer run --config "$tmp/config" >"$tmp/enf.out" 2>"$tmp/enf.err" &
pids+=($!)
enf_pid=$!
enf_addr=$(wait_addr "$tmp/enf.out" "http=")

body=$(tr -d '\n' <benches/sideband_request.json | sed 's/\\/\\\\/g; s/"/\\"/g')
cat >"$tmp/post.lua" <<EOF
wrk.method = "POST"
wrk.body = "$body"
wrk.headers["Content-Type"] = "application/json"
EOF

# run NAME URL PID: one measured wrk run; appends "name rps p50us p99us cpu_us_per_req".
run() {
  local name=$1 url=$2 pid=$3 out c0 c1
  c0=$(cpu_ticks "$pid")
  out=$(taskset -c 1 wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -s "$tmp/post.lua" "$url")
  c1=$(cpu_ticks "$pid")
  local rps total p50 p99 errors
  rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
  total=$(awk '/requests in/ {print $1}' <<<"$out")
  p50=$(to_us "$(awk '$1 == "50%" {print $2}' <<<"$out")")
  p99=$(to_us "$(awk '$1 == "99%" {print $2}' <<<"$out")")
  errors=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
  if [ -n "$errors" ]; then echo "$name: $errors non-2xx answers" >&2; fi
  awk -v n="$name" -v r="$rps" -v a="$p50" -v b="$p99" -v c0="$c0" -v c1="$c1" -v t="$total" -v hz="$ticks" \
    'BEGIN { printf "%s %s %s %s %.2f\n", n, r, a, b, (c1 - c0) / hz * 1e6 / t }' >>"$tmp/results"
}

echo "warming up..." >&2
taskset -c 1 wrk -t1 -c"$CONNS" -d2s -s "$tmp/post.lua" "http://$bare_addr/ase/request" >/dev/null
taskset -c 1 wrk -t1 -c"$CONNS" -d2s -s "$tmp/post.lua" "http://$enf_addr/ase/request" >/dev/null
for i in $(seq 1 "$REPEATS"); do
  echo "repeat $i/$REPEATS..." >&2
  run bare "http://$bare_addr/ase/request" "$bare_pid"
  run enforcer "http://$enf_addr/ase/request" "$enf_pid"
done

printf "\nsideband /ase/request, %s connections, %ss x %s, ~%s-byte body, server on core 0, wrk on core 1\n" \
  "$CONNS" "$DURATION" "$REPEATS" "$(wc -c <benches/sideband_request.json)"
printf "%-10s %12s %10s %10s %14s\n" target req/s p50_us p99_us cpu_us/req
for n in bare enforcer; do
  printf "%-10s %12.0f %10.0f %10.0f %14.2f\n" "$n" "$(col $n 2)" "$(col $n 3)" "$(col $n 4)" "$(col $n 5)"
done
awk -v er="$(col enforcer 2)" -v br="$(col bare 2)" -v ec="$(col enforcer 5)" -v bc="$(col bare 5)" \
  'BEGIN { printf "\nthroughput enforcer/bare: %.2f   CPU per decision enforcer/bare: %.2f\n", er / br, ec / bc }'
