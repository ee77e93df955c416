#!/usr/bin/env bash
# load.sh: enforcer against nginx and HAProxy on loopback, with every feature on, and the
# ratios issue 25 sets as targets (met or missed, from the medians of this one run).
#
#   benches/load.sh                     # 3 interleaved repeats of 10 s, then 10k req/s open loop
#   DURATION=20 REPEATS=5 benches/load.sh
#   RATE=0 benches/load.sh              # skip the open-loop (added latency) part
#   LAYOUT=server benches/load.sh       # another pinning (see ../shared/bench/proxy-peers.sh)
#   ENFORCER_BIN=/tmp/enforcer-old benches/load.sh   # measure another build of enforcer
#   KEEP=/tmp/run benches/load.sh; benches/load.sh --summary /tmp/run   # keep, re-read a run
#
# It installs what it needs (Debian: wrk, nginx, haproxy; oha with cargo for the open-loop
# part), builds the release binary, and drives ../shared/bench/proxy-peers.sh, which starts a
# backend (nginx answering "ok"), nginx and HAProxy as reverse proxies and enforcer, pins
# them (default layout "split": proxies on core 0, backend and wrk on core 1) and runs wrk
# against each in alternation. enforcer runs twice side by side: inline in front of the
# backend (recording, enforcement, Prometheus and the store on: the shipped defaults) and in
# sideband mode answering /ase/request with the ~700 B JSON body of the harness.
#
# A third run puts nginx with the shipped auth_request integration (integrations/nginx) in
# front of the backend, asking enforcer (sideband mode, /ase/auth/nginx) about every
# request, beside nginx alone: the pair's CPU per request (nginx and enforcer together) is
# what the integration costs (issue 26).
#
# A fourth run uses both cores (layout none): enforcer with its default two workers against
# nginx with two worker processes and the naive hyper proxy with two threads (the floor),
# alternating, REPEATS times.
#
# Prints the harness's table (req/s, p50, p99, CPU µs per request of proxy, backend and
# client) and then the targets of issue 25 as ratios from the same run, each with the
# must-reach bound and the goal, met or MISSED.
# Everything stays on 127.0.0.1; ports BASE_PORT..BASE_PORT+4 (default 18080).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
# ENFORCER_BIN: another build to measure (e.g. a copy of the previous commit's binary).
bin=${ENFORCER_BIN:-$root/target/release/enforcer}
export ENFORCER_BIN=$bin

# The targets, from the medians of the same run.
summary() {
  awk -F'\t' -v rate="$RATE" '
  function median(list,   n, a, i, j, t) {
    n = split(list, a, " ")
    for (i = 2; i <= n; i++) { t = a[i]; j = i - 1; while (j > 0 && a[j] + 0 > t + 0) { a[j+1] = a[j]; j-- } a[j+1] = t }
    if (n == 0) return 0
    return (n % 2) ? a[(n+1)/2] : (a[n/2] + a[n/2+1]) / 2
  }
  FNR == 1 { file++; next }
  {
    k = file SUBSEP $1 SUBSEP $2
    rps[k] = rps[k] " " $4; p50[k] = p50[k] " " $5; p99[k] = p99[k] " " $6
    if ($8 != "NA") cpu[k] = cpu[k] " " $8
    if ($11 != "NA") be[k] = be[k] " " $11
  }
  function m(arr, f, t, tg) { return median(arr[f SUBSEP t SUBSEP tg]) }
  function line(name, value, op, bound, goal,   ok, good) {
    ok = (op == "<=") ? (value <= bound) : (value >= bound)
    good = (op == "<=") ? (value <= goal) : (value >= goal)
    printf "  %-56s %9.3f  must %s %-6s %-7s goal %s %-6s %s\n", name, value, op, bound, ok ? "met" : "MISSED", op, goal, good ? "met" : "-"
  }
  END {
    print "\nissue 25 targets (same run, medians):"
    line("inline: CPU per request enforcer / nginx", m(cpu, 1, "get", "enforcer") / m(cpu, 1, "get", "nginx"), "<=", 1.10, 1.00)
    line("inline: throughput enforcer / direct (proxy on one core)", m(rps, 1, "get", "enforcer") / m(rps, 1, "get", "direct"), ">=", 0.85, 0.90)
    line("inline: p99 at saturation enforcer / nginx", m(p99, 1, "get", "enforcer") / m(p99, 1, "get", "nginx"), "<=", 1.30, 1.20)
    line("sideband: CPU per decision / trivial server (nginx) CPU", m(cpu, 1, "sideband", "enforcer") / m(be, 1, "sideband", "direct"), "<=", 1.40, 1.15)
    if (file >= 4) {
      line("both cores: CPU per request enforcer / nginx, 2 workers", m(cpu, 4, "get", "enforcer-2w") / m(cpu, 4, "get", "nginx-2w"), "<=", 1.15, 1.00)
      if (m(cpu, 4, "get", "naive-2w") > 0)
        printf "  %-56s %9.3f\n", "(reference) naive hyper proxy, 2 threads, CPU / nginx 2w", m(cpu, 4, "get", "naive-2w") / m(cpu, 4, "get", "nginx-2w")
    }
    if (file >= 5) {
      line("inline at " rate " req/s: added p50 over nginx, us", (m(p50, 5, "get", "enforcer") - m(p50, 5, "get", "direct")) - (m(p50, 5, "get", "nginx") - m(p50, 5, "get", "direct")), "<=", 25, 0)
      line("inline at " rate " req/s: added p99 over nginx, us", (m(p99, 5, "get", "enforcer") - m(p99, 5, "get", "direct")) - (m(p99, 5, "get", "nginx") - m(p99, 5, "get", "direct")), "<=", 100, 0)
      printf "  %-56s %9d\n", "(reference) nginx at " rate " req/s: added p50, us", m(p50, 5, "get", "nginx") - m(p50, 5, "get", "direct")
      printf "  %-56s %9d\n", "(reference) nginx at " rate " req/s: added p99, us", m(p99, 5, "get", "nginx") - m(p99, 5, "get", "direct")
    }
    printf "  %-56s %9.3f\n", "(reference) nginx CPU per request / direct backend CPU", m(cpu, 1, "get", "nginx") / m(be, 1, "get", "direct")
    printf "  %-56s %9.3f\n", "(reference) nginx throughput / direct", m(rps, 1, "get", "nginx") / m(rps, 1, "get", "direct")
    printf "  %-56s %9.0f\n", "(reference) sideband decisions per second (one core)", m(rps, 1, "sideband", "enforcer")
    if (file >= 2) {
      printf "  %-56s %9.3f\n", "(reference) naive hyper proxy CPU / nginx", m(cpu, 2, "get", "naive_hyper") / m(cpu, 2, "get", "nginx")
      printf "  %-56s %9.3f\n", "(reference) naive hyper proxy throughput / direct", m(rps, 2, "get", "naive_hyper") / m(rps, 2, "get", "direct")
      if (m(cpu, 2, "sideband", "naive_hyper") > 0)
        printf "  %-56s %9.3f\n", "(reference) naive hyper JSON server CPU / trivial server", m(cpu, 2, "sideband", "naive_hyper") / m(be, 2, "sideband", "direct")
    }
    if (file >= 3) {
      printf "  %-56s %9.1f\n", "(issue 26) nginx + enforcer via auth_request: CPU us/request", m(cpu, 3, "get", "nginx+enforcer")
      printf "  %-56s %9.1f\n", "(issue 26) nginx alone: CPU us/request", m(cpu, 3, "get", "nginx")
      printf "  %-56s %9.3f\n", "(issue 26) nginx + enforcer / nginx alone, CPU per request", m(cpu, 3, "get", "nginx+enforcer") / m(cpu, 3, "get", "nginx")
      printf "  %-56s %9.3f\n", "(issue 26) nginx + enforcer / nginx alone, throughput", m(rps, 3, "get", "nginx+enforcer") / m(rps, 3, "get", "nginx")
    }
  }' "$@"
}
# --summary DIR: the targets again from a kept run (KEEP=DIR benches/load.sh keeps one).
if [ "${1:-}" = "--summary" ]; then
  RATE=${RATE:-10000}
  files=("$2/closed/results.tsv" "$2/naive/results.tsv" "$2/auth/results.tsv" "$2/two/results.tsv")
  [ -f "$2/open/results.tsv" ] && files+=("$2/open/results.tsv")
  summary "${files[@]}"
  exit
fi

# --serve: the command the harness starts as the proxy under test (LISTEN_PORT and
# BACKEND_PORT come from it). Both enforcers run in the foreground of this process tree.
if [ "${1:-}" = "--serve" ]; then
  dir=$(mktemp -d)
  trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$dir"' EXIT
  for mode in inline sideband; do
    mkdir -p "$dir/$mode/api"
    port=$LISTEN_PORT
    [ "$mode" = sideband ] && port=$((LISTEN_PORT + 1))
    cat >"$dir/$mode/ase.conf" <<EOF
mode=$mode
http_ws_port=$port
https_wss_port=0
management_port=0
bind_address=127.0.0.1
enable_sideband_keepalive=true
admin_log_level=2
data_dir=$dir/$mode/data
tls_cert_path=$root/certs/server.crt
tls_key_path=$root/certs/server.key
${ENFORCER_CONF:-}
EOF
  done
  cat >"$dir/inline/api/root.json" <<EOF
{"api_metadata":{"protocol":"http","url":"/","hostname":"*","cookie":"JSESSIONID",
 "oauth2_access_token":true,"apikey_header":"x-api-key","enable_blocking":true,
 "servers":[{"host":"127.0.0.1","port":$BACKEND_PORT}]}}
EOF
  cat >"$dir/sideband/api/accounts.json" <<'EOF'
{"api_metadata":{"protocol":"http","url":"/api/v1","hostname":"*","cookie":"JSESSIONID",
 "oauth2_access_token":true,"apikey_header":"x-api-key","enable_blocking":true}}
EOF
  "$bin" run --config "$dir/sideband" >"$dir/sideband.out" 2>&1 &
  exec "$bin" run --config "$dir/inline"
fi

# --serve-auth: nginx with integrations/nginx on LISTEN_PORT in front of BACKEND_PORT,
# asking an enforcer in sideband mode on LISTEN_PORT+10. The harness counts the CPU of this
# process and its children: both run as children, nginx as one process (master_process
# off: its worker would be a grandchild, uncounted; the event loop is the same).
if [ "${1:-}" = "--serve-auth" ]; then
  dir=$(mktemp -d)
  trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$dir"' EXIT
  mkdir -p "$dir/enforcer/api" "$dir/nginx"
  cat >"$dir/enforcer/ase.conf" <<EOF
mode=sideband
http_ws_port=$((LISTEN_PORT + 10))
https_wss_port=0
management_port=0
bind_address=127.0.0.1
enable_sideband_keepalive=true
admin_log_level=2
data_dir=$dir/enforcer/data
tls_cert_path=$root/certs/server.crt
tls_key_path=$root/certs/server.key
${ENFORCER_CONF:-}
EOF
  cat >"$dir/enforcer/api/root.json" <<'EOF'
{"api_metadata":{"protocol":"http","url":"/","hostname":"*","cookie":"JSESSIONID",
 "oauth2_access_token":true,"apikey_header":"x-api-key","enable_blocking":true}}
EOF
  cp "$root"/integrations/nginx/enforcer-*.conf "$dir/nginx/"
  sed -e "s|127.0.0.1:8000|127.0.0.1:$((LISTEN_PORT + 10))|" -e "s|127.0.0.1:3000|$BACKEND_ADDR|" \
    -e "s|listen 8080;|listen $LISTEN_ADDR backlog=4096;|" -e "s|/etc/nginx/enforcer/|$dir/nginx/|" \
    "$root/integrations/nginx/site.conf" >"$dir/nginx/site.conf"
  cat >"$dir/nginx/nginx.conf" <<EOF
user root root;
master_process off;
daemon off;
pid $dir/nginx/nginx.pid;
error_log $dir/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 65s;
  client_body_temp_path $dir/nginx/body; proxy_temp_path $dir/nginx/proxy;
  fastcgi_temp_path $dir/nginx/fcgi; uwsgi_temp_path $dir/nginx/uwsgi; scgi_temp_path $dir/nginx/scgi;
  include $dir/nginx/site.conf;
}
EOF
  "$bin" run --config "$dir/enforcer" >"$dir/enforcer.out" 2>&1 &
  # nginx's first subrequests must find enforcer listening.
  for _ in $(seq 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$((LISTEN_PORT + 10))") 2>/dev/null && break
    sleep 0.05
  done
  nginx -p "$dir/nginx" -c "$dir/nginx/nginx.conf" -e stderr &
  wait -n
  exit
fi

# --serve-nginx2: nginx as a reverse proxy with two worker processes (the master and its
# workers are the tracked process and its children), the harness's proxy config otherwise.
if [ "${1:-}" = "--serve-nginx2" ]; then
  dir=$(mktemp -d)
  trap 'rm -rf "$dir"' EXIT
  cat >"$dir/nginx.conf" <<EOF
worker_processes 2;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 65s;
  client_body_temp_path $dir/body; proxy_temp_path $dir/proxy;
  fastcgi_temp_path $dir/fcgi; uwsgi_temp_path $dir/uwsgi; scgi_temp_path $dir/scgi;
  upstream be { server $BACKEND_ADDR; keepalive 64; keepalive_requests 1000000; }
  server {
    listen $LISTEN_ADDR backlog=4096;
    location / { proxy_pass http://be; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
EOF
  exec nginx -p "$dir" -c "$dir/nginx.conf" -e stderr
fi

DURATION=${DURATION:-10}
REPEATS=${REPEATS:-3}
RATE=${RATE:-10000}
BASE_PORT=${BASE_PORT:-18080}
export LAYOUT=${LAYOUT:-split}
# Extra ase.conf lines for enforcer, e.g. ENFORCER_CONF=runtime=multi_thread
export ENFORCER_CONF=${ENFORCER_CONF:-}

missing=()
for tool in wrk nginx haproxy taskset; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "load.sh: installing wrk nginx haproxy" >&2
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk nginx haproxy util-linux >/dev/null
fi
if [ "$RATE" -gt 0 ] && ! command -v oha >/dev/null && [ ! -x "$HOME/.cargo/bin/oha" ]; then
  echo "load.sh: installing oha (open-loop load generator) with cargo" >&2
  cargo install --locked oha >/dev/null
fi
export OHA=${OHA:-$(command -v oha || echo "$HOME/.cargo/bin/oha")}

cargo build --release --locked --quiet --bin enforcer --example naive_proxy

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
harness=("$root/../shared/bench/proxy-peers.sh" --duration "$DURATION" --repeats "$REPEATS"
  --base-port "$BASE_PORT" --extra-cmd "$root/benches/load.sh --serve" --extra-name enforcer)

echo "== closed loop: saturation (wrk)" >&2
"${harness[@]}" --sideband --extra-sideband-path /ase/request \
  --extra-sideband-port $((BASE_PORT + 4)) --out "$out/closed"
echo "== closed loop: the naive hyper proxy and JSON server (examples/naive_proxy.rs) beside nginx" >&2
"$root/../shared/bench/proxy-peers.sh" --duration "$DURATION" --repeats "$REPEATS" \
  --base-port "$BASE_PORT" --peers nginx --extra-name naive_hyper \
  --extra-cmd "exec $root/target/release/examples/naive_proxy \$LISTEN_ADDR \$BACKEND_ADDR json=127.0.0.1:$((BASE_PORT + 4))" \
  --sideband --extra-sideband-path /ase/request --extra-sideband-port $((BASE_PORT + 4)) \
  --out "$out/naive"
echo "== closed loop: nginx + enforcer (integrations/nginx, auth_request) beside nginx alone" >&2
"$root/../shared/bench/proxy-peers.sh" --duration "$DURATION" --repeats "$REPEATS" \
  --base-port "$BASE_PORT" --peers nginx --extra-name nginx+enforcer \
  --extra-cmd "$root/benches/load.sh --serve-auth" --out "$out/auth"
echo "== closed loop, both cores (layout none): enforcer (2 workers) and nginx (2 workers), alternating" >&2
mkdir -p "$out/two"
for rep in $(seq "$REPEATS"); do
  for who in nginx-2w enforcer-2w naive-2w; do
    cmd="$root/benches/load.sh --serve-nginx2"
    [ "$who" = enforcer-2w ] && cmd="$root/benches/load.sh --serve"
    [ "$who" = naive-2w ] && cmd="exec $root/target/release/examples/naive_proxy \$LISTEN_ADDR \$BACKEND_ADDR threads=2"
    LAYOUT=none "$root/../shared/bench/proxy-peers.sh" --duration "$DURATION" --repeats 1 \
      --base-port "$BASE_PORT" --peers "" --threads 2 --extra-name "$who" --extra-cmd "$cmd" \
      --out "$out/two/$who-$rep" >&2
    tail -n +2 "$out/two/$who-$rep/results.tsv" >>"$out/two/rows.tsv"
  done
done
{ head -1 "$out/closed/results.tsv"; cat "$out/two/rows.tsv"; } >"$out/two/results.tsv"
if [ "$RATE" -gt 0 ]; then
  echo "== open loop: $RATE req/s (oha), latency added by each proxy" >&2
  "${harness[@]}" --rate "$RATE" --out "$out/open"
fi

files=("$out/closed/results.tsv" "$out/naive/results.tsv" "$out/auth/results.tsv" "$out/two/results.tsv")
[ "$RATE" -gt 0 ] && files+=("$out/open/results.tsv")
if [ -n "${KEEP:-}" ]; then
  for f in "${files[@]}"; do mkdir -p "$KEEP/$(basename "$(dirname "$f")")" && cp "$f" "$KEEP/$(basename "$(dirname "$f")")/"; done
fi
summary "${files[@]}"
