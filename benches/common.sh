# common.sh: helpers the load scripts in benches/ source (not run on its own).
# Sets up $tmp (removed on exit, with every pid in $pids killed), installs wrk when missing,
# and defines wait_addr, cpu_ticks, to_us, median and col.

if ! command -v wrk >/dev/null; then
  echo "installing wrk..." >&2
  apt-get update -qq >/dev/null && apt-get install -y -qq wrk >/dev/null
fi

tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
: >"$tmp/results"

# wait_addr FILE PATTERN: waits for "<...>PATTERN<ADDR> ..." in FILE and prints ADDR.
wait_addr() {
  local file=$1 pattern=$2
  for _ in $(seq 1 200); do
    if grep -q "$pattern" "$file" 2>/dev/null; then
      grep "$pattern" "$file" | head -1 | sed -E "s/.*$pattern//; s/ .*//"
      return
    fi
    sleep 0.05
  done
  echo "timed out waiting for '$pattern' in $file" >&2
  exit 1
}

ticks=$(getconf CLK_TCK)
# cpu_ticks PID: user+sys clock ticks the process has used.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# to_us "1.23ms": microseconds.
to_us() {
  awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) print n; else if (v ~ /ms$/) print n * 1000; else if (v ~ /s$/) print n * 1000000; else print n }'
}
median() { sort -n | awk '{a[NR] = $1} END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
# col NAME N: the median of column N over the rows of $tmp/results whose first field is NAME.
col() { awk -v n="$1" -v c="$2" '$1 == n {print $c}' "$tmp/results" | median; }
