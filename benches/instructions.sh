#!/usr/bin/env bash
# instructions.sh: user-space instructions per request, counted by valgrind (callgrind), for
# nginx as a reverse proxy, the naive hyper proxy (examples/naive_proxy.rs: the hyper floor,
# and hyper-util's legacy pool), enforcer inline, nginx answering a constant JSON, the naive
# hyper server reading the body and answering a constant JSON (the sideband floor), and
# enforcer answering /ase/request. A busy machine does not blur these counts (time-based
# ratios move by tens of percent here), so they are what to steer user-space work by; the
# kernel's share is compared with `strace -c` (docs/performance.md).
#
#   benches/instructions.sh                 # all rows
#   ONLY="enforcer-inline" benches/instructions.sh
#   ENFORCER_BIN=/tmp/enforcer-old benches/instructions.sh   # another build
#   KEEP=/tmp/ir benches/instructions.sh    # keep each callgrind dump (for callgrind_annotate)
#
# Each server runs under callgrind; wrk (8 connections) warms it up for 3 s, the counters
# are zeroed, wrk runs SECONDS (default 15) more, and the dump is divided by the requests
# wrk completed. Everything on 127.0.0.1, ports BASE_PORT.. (default 19300).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
bin=${ENFORCER_BIN:-$root/target/release/enforcer}
SECONDS_RUN=${SECONDS_RUN:-15}
BASE_PORT=${BASE_PORT:-19300}
ONLY=${ONLY:-}

missing=()
for tool in wrk nginx valgrind callgrind_control; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "instructions.sh: installing wrk nginx valgrind" >&2
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk nginx valgrind >/dev/null
fi
[ -n "${ENFORCER_BIN:-}" ] || cargo build --release --locked --quiet --bin enforcer
cargo build --release --locked --quiet --example naive_proxy

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

backend=$BASE_PORT
wait_port() {
  for _ in $(seq 300); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.2
  done
  echo "instructions.sh: nothing listens on port $1" >&2
  return 1
}

nginx_conf() { # nginx_conf DIR PORT (proxy|json)
  mkdir -p "$1"
  local body
  if [ "$3" = proxy ]; then
    body="location / { proxy_pass http://be; proxy_http_version 1.1; proxy_set_header Connection \"\"; }"
  else
    body="location / { default_type application/json; return 200 '{\"decision\":\"allow\"}'; }"
  fi
  cat >"$1/nginx.conf" <<EOF
worker_processes 1;
master_process off;
daemon off;
pid $1/nginx.pid;
error_log $1/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 65s;
  client_body_temp_path $1/body; proxy_temp_path $1/proxy;
  fastcgi_temp_path $1/fcgi; uwsgi_temp_path $1/uwsgi; scgi_temp_path $1/scgi;
  upstream be { server 127.0.0.1:$backend; keepalive 64; keepalive_requests 1000000; }
  server { listen 127.0.0.1:$2 backlog=4096; $body }
}
EOF
}

enforcer_conf() { # enforcer_conf DIR PORT MODE
  mkdir -p "$1/api"
  cat >"$1/ase.conf" <<EOF
mode=$3
http_ws_port=$2
https_wss_port=0
management_port=0
bind_address=127.0.0.1
enable_sideband_keepalive=true
admin_log_level=2
data_dir=$1/data
tls_cert_path=$root/certs/server.crt
tls_key_path=$root/certs/server.key
EOF
  if [ "$3" = inline ]; then
    cat >"$1/api/root.json" <<EOF
{"api_metadata":{"protocol":"http","url":"/","hostname":"*","cookie":"JSESSIONID",
 "oauth2_access_token":true,"apikey_header":"x-api-key","enable_blocking":true,
 "servers":[{"host":"127.0.0.1","port":$backend}]}}
EOF
  else
    cat >"$1/api/accounts.json" <<'EOF'
{"api_metadata":{"protocol":"http","url":"/api/v1","hostname":"*","cookie":"JSESSIONID",
 "oauth2_access_token":true,"apikey_header":"x-api-key","enable_blocking":true}}
EOF
  fi
}

# The sideband call of the peer harness (../shared/bench/proxy-peers.sh).
cat >"$work/post.lua" <<'EOF'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [[{"source_ip":"203.0.113.17","source_port":53122,"method":"GET","url":"/api/v1/accounts/8f14e45f/orders?limit=20&cursor=eyJpZCI6MTIzNDV9","http_version":"1.1","headers":[{"host":"api.example.com"},{"user-agent":"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36"},{"accept":"application/json"},{"authorization":"Bearer eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTYiLCJzY29wZSI6InJlYWQifQ.c2lnbmF0dXJl"},{"x-forwarded-for":"203.0.113.17"},{"x-request-id":"4b9f1c2e-7d3a-4e51-9a8b-0c6d5e4f3a21"},{"content-length":"0"}]}]]
EOF

# The backend, not measured: nginx answering "ok".
mkdir -p "$work/backend"
cat >"$work/backend/nginx.conf" <<EOF
worker_processes 1;
master_process off;
daemon off;
pid $work/backend/nginx.pid;
error_log $work/backend/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path $work/backend/body; proxy_temp_path $work/backend/proxy;
  fastcgi_temp_path $work/backend/fcgi; uwsgi_temp_path $work/backend/uwsgi; scgi_temp_path $work/backend/scgi;
  server { listen 127.0.0.1:$backend backlog=4096; location / { default_type text/plain; return 200 "ok"; } }
}
EOF
nginx -p "$work/backend" -c "$work/backend/nginx.conf" -e stderr >"$work/backend.log" 2>&1 &
pids+=($!)
disown $!
wait_port "$backend"

measure() { # measure NAME PORT PATH LUA -- COMMAND...
  local name=$1 port=$2 path=$3 lua=$4
  shift 5
  if [ -n "$ONLY" ] && [[ " $ONLY " != *" $name "* ]]; then return; fi
  local out="$work/$name"
  mkdir -p "$out"
  valgrind --tool=callgrind --callgrind-out-file="$out/cg.out" "$@" >"$out/log" 2>&1 &
  local vpid=$!
  pids+=("$vpid")
  wait_port "$port"
  local args=(-t1 -c8)
  [ -n "$lua" ] && args+=(-s "$lua")
  wrk "${args[@]}" -d3s "http://127.0.0.1:$port$path" >/dev/null
  callgrind_control -z "$vpid" >/dev/null 2>&1
  local n
  n=$(wrk "${args[@]}" -d"${SECONDS_RUN}s" "http://127.0.0.1:$port$path" | awk '/requests in/{print $1}')
  callgrind_control -d "$vpid" >/dev/null 2>&1
  kill -9 "$vpid" 2>/dev/null || true
  wait "$vpid" 2>/dev/null || true
  local dump ir
  dump=$(ls -S "$out"/cg.out.* | head -1)
  ir=$(callgrind_annotate "$dump" 2>/dev/null | awk '/PROGRAM TOTALS/{gsub(",","",$1); print $1}')
  [ -n "${KEEP:-}" ] && mkdir -p "$KEEP" && cp "$dump" "$KEEP/$name.cg.out"
  printf "%-22s %9d requests %9d instructions/request\n" "$name" "$n" $((ir / n))
}

p=$((BASE_PORT + 1))
nginx_conf "$work/nginx-proxy" $p proxy
measure nginx-proxy $p / "" -- nginx -p "$work/nginx-proxy" -c "$work/nginx-proxy/nginx.conf" -e stderr
p=$((BASE_PORT + 2))
measure naive-hyper-floor $p / "" -- "$root/target/release/examples/naive_proxy" "127.0.0.1:$p" "127.0.0.1:$backend"
p=$((BASE_PORT + 3))
measure naive-hyper-legacy $p / "" -- "$root/target/release/examples/naive_proxy" "127.0.0.1:$p" "127.0.0.1:$backend" legacy
p=$((BASE_PORT + 4))
enforcer_conf "$work/inline" $p inline
measure enforcer-inline $p / "" -- "$bin" run --config "$work/inline"
p=$((BASE_PORT + 5))
nginx_conf "$work/nginx-json" $p json
measure nginx-json $p /ase/request "$work/post.lua" -- nginx -p "$work/nginx-json" -c "$work/nginx-json/nginx.conf" -e stderr
p=$((BASE_PORT + 7))
measure naive-hyper-json $p /ase/request "$work/post.lua" -- "$root/target/release/examples/naive_proxy" "127.0.0.1:$((BASE_PORT + 8))" "127.0.0.1:$backend" "json=127.0.0.1:$p"
p=$((BASE_PORT + 6))
enforcer_conf "$work/sideband" $p sideband
measure enforcer-sideband $p /ase/request "$work/post.lua" -- "$bin" run --config "$work/sideband"
