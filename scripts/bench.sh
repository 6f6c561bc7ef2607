#!/usr/bin/env bash
# Measures the webhook intake: requests/s, latency percentiles and memory of voidrecon serve
# under wrk, against GET /healthz on the same service in the same run as the baseline.
set -euo pipefail

usage() {
    cat <<'USAGE'
usage: scripts/bench.sh [SECONDS] [CONNECTIONS] [RUNS]    defaults: 10 16 3

Starts a PostgreSQL of its own (durable settings: fsync on) in a temporary folder and a
voidrecon serve on a free port, then runs each workload RUNS times with wrk and prints the
median of each figure:
  healthz    GET /healthz: the HTTP layer alone (baseline)
  void_new   POST order.void, every request a new case (read + one write statement)
  void_same  POST order.void, all for one case (duplicates contending for one row)
VR_BENCH_FAST=1 turns fsync off to show what durability costs.
USAGE
}
case "${1:-}" in -h | --help) usage; exit 0 ;; esac
secs=${1:-10}
conns=${2:-16}
runs=${3:-3}

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
"$root/scripts/setup.sh"
command -v wrk >/dev/null || {
    echo "bench.sh: installing wrk" >&2
    if ((EUID == 0)); then apt-get install -y -qq wrk >&2; else sudo apt-get install -y -qq wrk >&2; fi
}
"$root/scripts/build.sh" build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
bin=$root/build/voidrecon

work=$(mktemp -d /tmp/vrbench.XXXXXX)
svc_pid=
cleanup() {
    [[ -n "$svc_pid" ]] && kill "$svc_pid" 2>/dev/null && wait "$svc_pid" 2>/dev/null
    "$root/scripts/pg.sh" destroy "$work/pg" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

fast=()
[[ "${VR_BENCH_FAST:-0}" == 1 ]] && fast=(--fast)
url=$("$root/scripts/pg.sh" start "$work/pg" "${fast[@]}")
VOIDRECON_DATABASE_URL=$url "$bin" migrate 2>/dev/null
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
VOIDRECON_DATABASE_URL=$url VOIDRECON_LISTEN=127.0.0.1:$port VOIDRECON_LOG_LEVEL=warn \
    "$bin" serve 2>"$work/serve.log" &
svc_pid=$!
for _ in $(seq 100); do
    curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
    sleep 0.1
done

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$svc_pid/status"; }
hwm_kb() { awk '/^VmHWM/ {print $2}' "/proc/$svc_pid/status"; }

# wrk prints "Requests/sec: N" and, with --latency, "50% 1.23ms" lines; figures in ms.
to_ms() {
    awk '{ v=$1; if (v ~ /us$/) { sub(/us$/,"",v); v/=1000 } else if (v ~ /ms$/) { sub(/ms$/,"",v) }
           else if (v ~ /s$/) { sub(/s$/,"",v); v*=1000 } printf "%.2f\n", v }'
}
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

declare -A results
workload() {
    local name=$1 i out
    shift
    local rps=() p50=() p90=() p99=() bad=()
    for ((i = 1; i <= runs; i++)); do
        out=$(wrk -t2 -c"$conns" -d"${secs}s" --latency "$@" "http://127.0.0.1:$port${path}" -- "$i$RANDOM")
        rps+=("$(awk '/^Requests\/sec/ {print $2}' <<<"$out")")
        p50+=("$(awk '$1=="50%" {print $2}' <<<"$out" | to_ms)")
        p90+=("$(awk '$1=="90%" {print $2}' <<<"$out" | to_ms)")
        p99+=("$(awk '$1=="99%" {print $2}' <<<"$out" | to_ms)")
        bad+=("$(awk -F= '/^non2xx=/ {print $2}' <<<"$out")")
    done
    printf '%-10s %10s %9s %9s %9s %8s %9s\n' "$name" \
        "$(printf '%s\n' "${rps[@]}" | median)" "$(printf '%s\n' "${p50[@]}" | median)" \
        "$(printf '%s\n' "${p90[@]}" | median)" "$(printf '%s\n' "${p99[@]}" | median)" \
        "$(printf '%s\n' "${bad[@]:-0}" | awk '{s+=$1} END {print s+0}')" "$(rss_kb)"
}

echo "voidrecon bench: ${secs}s x ${runs} runs per workload, $conns connections, 2 wrk threads," \
     "fsync $([[ ${#fast[@]} -gt 0 ]] && echo off || echo on), $(nproc) CPUs; medians"
echo "RSS at start: $(rss_kb) kB"
printf '%-10s %10s %9s %9s %9s %8s %9s\n' workload req/s p50_ms p90_ms p99_ms non2xx rss_kB
path=/healthz workload healthz
path= workload void_new -s "$root/scripts/bench/void_new.lua"
path= workload void_same -s "$root/scripts/bench/void_same.lua"
echo "peak RSS: $(hwm_kb) kB; void cases: $(psql -X -At -d "$url" -c 'select count(*) from voidrecon.void_cases')," \
     "deliveries: $(psql -X -At -d "$url" -c 'select count(*) from voidrecon.deliveries')"
if grep -q '"level":"error"' "$work/serve.log"; then
    echo "errors in the service log:" >&2
    grep '"level":"error"' "$work/serve.log" | head -5 >&2
fi
