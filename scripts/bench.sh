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
"$root/scripts/setup.sh" wrk
# shellcheck source=bench/lib.sh
. "$root/scripts/bench/lib.sh"
fast=()
[[ "${VR_BENCH_FAST:-0}" == 1 ]] && fast=(--fast)
bench_start "${fast[@]}"
bench_serve "$work/serve.log"

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
bench_log_errors "$work/serve.log"
