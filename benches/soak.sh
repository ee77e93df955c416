#!/usr/bin/env bash
# soak.sh: mixed load for a given time (inline and sideband, normal clients and attackers),
# reporting resident memory, open file descriptors and errors over time.
#
#   benches/soak.sh            # 10 minutes
#   DURATION=3600 benches/soak.sh
#
# Starts on 127.0.0.1: nginx as the backend (200 for pages, 401 on /shop/login, 404 under
# /shop/missing), enforcer inline in front of it (XFF trusted, cookie/token/API-key capture,
# blocking and detection on, a decoy under /shop/admin), and enforcer in sideband mode. Two
# wrk load generators run the whole time: inline traffic from 5,000 rotating client IPs with
# a few attackers (login failures, decoy and probing), and sideband request calls that never
# get their response call. Every SAMPLE seconds it prints RSS and open fds of both
# enforcers; at the end the errors (socket errors and 5xx; 401/403/404 are expected answers
# to the attackers) and whether memory stayed flat after the warm-up (the first fifth).
# Records are kept in time buckets (minute, hour, day), so memory grows with every new
# bucket until the caps are reached; a 10-minute run cannot reach the default caps (128 MiB
# per API, 1 GiB of client activity). The soak therefore sets small caps (SOAK_CONF, added
# to both ase.conf files): memory must then level off at the caps within the warm-up and stay
# there, which is the property that matters for any cap.
# Then an h2 phase (H2_ROUNDS rounds, 0 to skip): examples/h2_rounds opens 20 h2c
# connections of 100 streams each against the inline enforcer, all downloading a 20 MB file
# with a 1-byte flow-control window so every stream stalls with its backend response in
# flight, holds them 2 s and drops them, and prints RSS after each round; the script then
# prints the RSS range and drift after the first fifth of the rounds (a leak grows round
# after round; allocator retention levels off).
# Installs wrk and nginx with apt-get when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-600}
SAMPLE=${SAMPLE:-10}
H2_ROUNDS=${H2_ROUNDS:-30}
SOAK_CONF=${SOAK_CONF:-"metrics_api_memory=8mb
activity_memory=32mb
activity_max_clients=20000"}

for tool in wrk nginx; do
  if ! command -v "$tool" >/dev/null; then
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk nginx >/dev/null
  fi
done
cargo build --release --locked --quiet --bin enforcer --example h2_rounds
. benches/common.sh

# Backend.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
bport=$(free_port)
cat >"$tmp/backend.conf" <<CONF
worker_processes 1; daemon off; pid $tmp/nginx.pid; error_log $tmp/nginx.err;
events { worker_connections 4096; }
http { access_log off;
  server { listen 127.0.0.1:$bport;
    location /shop/login { return 401 "no"; }
    location /shop/missing { return 404 "missing"; }
    location = /shop/big { alias $tmp/big; }
    location / { return 200 "ok"; } } }
CONF
head -c 20000000 /dev/zero >"$tmp/big"
nginx -p "$tmp" -c "$tmp/backend.conf" &
pids+=($!)

# The two enforcers.
for mode in inline sideband; do
  mkdir -p "$tmp/$mode/api"
  cat >"$tmp/$mode/ase.conf" <<CONF
mode=$mode
http_ws_port=0
https_wss_port=0
management_port=0
bind_address=127.0.0.1
enable_xff=true
enable_sideband_keepalive=true
admin_log_level=2
data_dir=$tmp/$mode/data
store_flush_interval=2s
sideband_pending_max=20000
tls_cert_path=$PWD/certs/server.crt
tls_key_path=$PWD/certs/server.key
$SOAK_CONF
CONF
done
cat >"$tmp/inline/api/shop.json" <<API
{"api_metadata":{"protocol":"http","url":"/shop","hostname":"*","cookie":"JSESSIONID",
 "oauth2_access_token":true,"apikey_header":"x-api-key","login_url":"/shop/login",
 "enable_blocking":true,
 "decoy_config":{"decoy_enabled":true,"response_code":404,"response_def":"Not Found",
   "response_message":"","decoy_subpaths":["admin"]},
 "servers":[{"host":"127.0.0.1","port":$bport}]}}
API
cat >"$tmp/sideband/api/shop.json" <<'API'
{"api_metadata":{"protocol":"http","url":"/shop","hostname":"*","cookie":"JSESSIONID",
 "oauth2_access_token":true,"apikey_header":"x-api-key","login_url":"/shop/login","enable_blocking":true}}
API
declare -A pid_of addr_of
for mode in inline sideband; do
  target/release/enforcer run --config "$tmp/$mode" >"$tmp/$mode.out" 2>"$tmp/$mode.err" &
  pids+=($!)
  pid_of[$mode]=$!
  addr_of[$mode]=$(wait_addr "$tmp/$mode.out" "http=")
done

# Inline mix: 95% normal clients (5,000 IPs, sessions and tokens), 5% from 10 attacker
# IPs (login failures, the decoy, probing for missing pages).
cat >"$tmp/inline.lua" <<'LUA'
local n = 0
local bad = 0
request = function()
  n = n + 1
  local path, ip
  if n % 20 == 0 then
    ip = string.format("203.0.113.%d", n % 10)
    local k = (n / 20) % 3
    if k == 0 then path = "/shop/login" elseif k == 1 then path = "/shop/admin/x" else path = string.format("/shop/missing/%d", n % 500) end
  else
    ip = string.format("10.%d.%d.%d", math.floor(n / 65536) % 2, math.floor(n / 256) % 20, n % 250)
    path = string.format("/shop/items/%d", n % 300)
  end
  local headers = {["X-Forwarded-For"] = ip, ["Cookie"] = "JSESSIONID=s" .. (n % 2000),
    ["Authorization"] = "Bearer tok" .. (n % 3000), ["User-Agent"] = "soak/" .. (n % 7)}
  return wrk.format("GET", path, headers)
end
response = function(status, headers, body)
  if status >= 500 then bad = bad + 1 end
end
done = function(summary, latency, requests)
  io.write(string.format("FIVEXX %d\n", bad))
end
LUA
cat >"$tmp/sideband.lua" <<'LUA'
local n = 0
local bad = 0
request = function()
  n = n + 1
  local ip = string.format("10.%d.%d.%d", math.floor(n / 65536) % 4, math.floor(n / 256) % 256, n % 256)
  local body = '{"source_ip":"' .. ip .. '","source_port":4000,"method":"GET","url":"/shop/items/' .. (n % 300) .. '","http_version":"1.1","headers":[{"host":"shop.example"},{"cookie":"JSESSIONID=s' .. (n % 2000) .. '"}]}'
  return wrk.format("POST", "/ase/request", {["Content-Type"] = "application/json", ["X-CorrelationID"] = "c" .. n}, body)
end
response = function(status, headers, body)
  if status >= 500 then bad = bad + 1 end
end
done = function(summary, latency, requests)
  io.write(string.format("FIVEXX %d\n", bad))
end
LUA

echo "soak: ${DURATION}s; inline ${addr_of[inline]}, sideband ${addr_of[sideband]}" >&2
wrk -t1 -c16 -d"${DURATION}s" -s "$tmp/inline.lua" "http://${addr_of[inline]}/" >"$tmp/wrk-inline.out" 2>&1 &
w1=$!
wrk -t1 -c16 -d"${DURATION}s" -s "$tmp/sideband.lua" "http://${addr_of[sideband]}/" >"$tmp/wrk-sideband.out" 2>&1 &
w2=$!

rss() { awk '$1 == "VmRSS:" {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }
fds() { ls "/proc/$1/fd" | wc -l; }
printf '%8s %12s %10s %14s %12s\n' seconds inline_MiB inline_fds sideband_MiB sideband_fds
start=$(date +%s)
: >"$tmp/samples"
while kill -0 "$w1" 2>/dev/null || kill -0 "$w2" 2>/dev/null; do
  sleep "$SAMPLE"
  t=$(( $(date +%s) - start ))
  line=$(printf '%8d %12s %10s %14s %12s' "$t" "$(rss "${pid_of[inline]}")" "$(fds "${pid_of[inline]}")" \
    "$(rss "${pid_of[sideband]}")" "$(fds "${pid_of[sideband]}")")
  echo "$line"
  echo "$line" >>"$tmp/samples"
done
wait "$w1" "$w2" || true

errors() {  # socket errors and 5xx from a wrk output
  awk '/Socket errors/ {gsub(",", ""); n += $4 + $6 + $8 + $10} /^FIVEXX/ {n += $2} END {print n + 0}' "$1"
}
reqs() { awk '/requests in/ {print $1}' "$1"; }
echo
echo "inline:   $(reqs "$tmp/wrk-inline.out") requests, unexpected errors (socket + 5xx): $(errors "$tmp/wrk-inline.out")"
echo "sideband: $(reqs "$tmp/wrk-sideband.out") requests, unexpected errors (socket + 5xx): $(errors "$tmp/wrk-sideband.out")"
# Flat memory: after the warm-up (first fifth of the samples), the last RSS against the
# lowest and highest seen, and the drift: the mean of the second half of those samples
# minus the mean of the first half (RSS moves in allocator-sized steps both ways; a leak
# shows as a drift that grows with the duration).
awk '{ r[NR] = $2; s[NR] = $4 } END {
  w = int(NR / 5) + 1
  for (i = w; i <= NR; i++) { if (i == w || r[i] > rmax) rmax = r[i]; if (i == w || r[i] < rmin) rmin = r[i]
                              if (i == w || s[i] > smax) smax = s[i]; if (i == w || s[i] < smin) smin = s[i] }
  printf "after warm-up (sample %d on): inline RSS %.1f-%.1f MiB (last %.1f), sideband RSS %.1f-%.1f MiB (last %.1f)\n", w, rmin, rmax, r[NR], smin, smax, s[NR]
  m = w + int((NR - w + 1) / 2)
  for (i = w; i < m; i++) { r1 += r[i]; s1 += s[i] }
  for (i = m; i <= NR; i++) { r2 += r[i]; s2 += s[i] }
  printf "drift (second half minus first half of those samples): inline %+.1f MiB, sideband %+.1f MiB\n", r2 / (NR - m + 1) - r1 / (m - w), s2 / (NR - m + 1) - s1 / (m - w)
}' "$tmp/samples"

if [ "$H2_ROUNDS" -gt 0 ]; then
  echo
  echo "h2 phase: $H2_ROUNDS rounds of 20 h2c connections x 100 stalled 20 MB downloads (inline)"
  target/release/examples/h2_rounds "${addr_of[inline]}" /shop/big "${pid_of[inline]}" "$H2_ROUNDS" \
    | tee "$tmp/h2.out"
  awk 'NR > 1 { k[NR - 1] = $2 / 1024 } END {
    n = NR - 1; w = int(n / 5) + 1
    for (i = w; i <= n; i++) { if (i == w || k[i] > max) max = k[i]; if (i == w || k[i] < min) min = k[i] }
    m = w + int((n - w + 1) / 2)
    for (i = w; i < m; i++) a += k[i]
    for (i = m; i <= n; i++) b += k[i]
    printf "h2 rounds %d-%d: RSS %.1f-%.1f MiB; drift (second half minus first half) %+.1f MiB\n", w - 1, n - 1, min, max, b / (n - m + 1) - a / (m - w)
  }' "$tmp/h2.out"
fi
