#!/usr/bin/env bash
# memory.sh: enforcer's resident memory idle, and after recording N distinct client IPs
# (default 1,000,000) with every feature on (recording, activity, enforcement, store).
#
#   benches/memory.sh            # 1M distinct IPs
#   CLIENTS=200000 benches/memory.sh
#
# Starts enforcer in sideband mode on loopback (the cheapest way to present many clients:
# each /ase/request call names its source_ip) and drives it with wrk and a Lua script that
# gives every request a new IP (10.x.y.z), then prints VmRSS and VmHWM from /proc. The
# request calls get no response call, so the correlation table fills to its cap too.
# Installs wrk with apt-get when it is missing. Everything stays on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
CLIENTS=${CLIENTS:-1000000}

cargo build --release --locked --quiet --bin enforcer
. benches/common.sh

mkdir -p "$tmp/config/api"
cat >"$tmp/config/ase.conf" <<CONF
mode=sideband
http_ws_port=0
https_wss_port=0
management_port=0
bind_address=127.0.0.1
enable_sideband_keepalive=true
admin_log_level=2
data_dir=$tmp/data
tls_cert_path=$PWD/certs/server.crt
tls_key_path=$PWD/certs/server.key
CONF
cat >"$tmp/config/api/accounts.json" <<'API'
{"api_metadata":{"protocol":"http","url":"/api/v1","hostname":"*","enable_blocking":true}}
API
target/release/enforcer run --config "$tmp/config" >"$tmp/enf.out" 2>"$tmp/enf.err" &
pids+=($!)
enf_pid=$!
addr=$(wait_addr "$tmp/enf.out" "http=")
rss() { awk -v k="$1" '$1 == k":" {printf "%.1f", $2 / 1024}' "/proc/$enf_pid/status"; }
# Idle: after start-up, before any traffic.
sleep 2
idle=$(rss VmRSS)

# lua FIRST: the script numbering requests from FIRST (wrk restarts the Lua state per run).
lua() {
  cat <<LUA
local n = $1
request = function()
  n = n + 1
  local ip = string.format("10.%d.%d.%d", math.floor(n / 65536) % 256, math.floor(n / 256) % 256, n % 256)
  local body = '{"source_ip":"' .. ip .. '","source_port":40000,"method":"GET","url":"/api/v1/accounts/42","http_version":"1.1","headers":[{"host":"api.example.com"},{"user-agent":"curl/8.5.0"}]}'
  return wrk.format("POST", "/ase/request", {["Content-Type"] = "application/json"}, body)
end
LUA
}
# One wrk thread, so every request until CLIENTS is a new IP.
sent=0
while [ "$sent" -lt "$CLIENTS" ]; do
  lua "$sent" >"$tmp/ips.lua"
  out=$(wrk -t1 -c16 -d10s -s "$tmp/ips.lua" "http://$addr/")
  n=$(awk '/requests in/ {print $1}' <<<"$out")
  sent=$((sent + n))
  echo "  sent $sent requests; VmRSS $(rss VmRSS) MiB" >&2
done
printf '\nenforcer memory (MiB): idle %s; after %d requests from as many distinct client IPs: VmRSS %s, peak VmHWM %s\n' \
  "$idle" "$sent" "$(rss VmRSS)" "$(rss VmHWM)"
