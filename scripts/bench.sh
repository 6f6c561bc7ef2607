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
Then an open-loop workload (scripts/bench/paced.py), RUNS times: VR_BENCH_RATE requests a
second (1000) offered at a fixed rate for VR_BENCH_PACED_SECS (30), latency counted from when
each request was due, so queueing is never hidden:
  paced_healthz  GET /healthz (the baseline, the generator's own cost included)
  paced_new      POST order.void, a new case every request
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
paced() {
    local name=$1 path=$2 kind=$3 i out
    local rate=${VR_BENCH_RATE:-1000} psecs=${VR_BENCH_PACED_SECS:-30}
    local got=() p50=() p99=() p999=() bad=()
    for ((i = 1; i <= runs; i++)); do
        out=$(python3 "$root/scripts/bench/paced.py" "http://127.0.0.1:$port$path" "$rate" "$psecs" \
            --body-kind "$kind" --run-id "$name$i$RANDOM")
        got+=("$(sed -n 's/.* rate=\([0-9.]*\).*/\1/p' <<<"$out")")
        p50+=("$(sed -n 's/.* p50=\([0-9.]*\).*/\1/p' <<<"$out")")
        p99+=("$(sed -n 's/.* p99=\([0-9.]*\).*/\1/p' <<<"$out")")
        p999+=("$(sed -n 's/.* p999=\([0-9.]*\).*/\1/p' <<<"$out")")
        bad+=("$(sed -n 's/.* bad=\([0-9]*\).*/\1/p' <<<"$out")")
    done
    printf '%-14s %8s %10s %9s %9s %9s %8s %9s\n' "$name" "$rate" \
        "$(printf '%s\n' "${got[@]}" | median)" "$(printf '%s\n' "${p50[@]}" | median)" \
        "$(printf '%s\n' "${p99[@]}" | median)" "$(printf '%s\n' "${p999[@]}" | median)" \
        "$(printf '%s\n' "${bad[@]:-0}" | awk '{s+=$1} END {print s+0}')" "$(rss_kb)"
}

echo
echo "open loop: ${VR_BENCH_PACED_SECS:-30}s x ${runs} runs, latency from each request's due time; medians"
printf '%-14s %8s %10s %9s %9s %9s %8s %9s\n' workload offered achieved p50_ms p99_ms p999_ms bad rss_kB
paced paced_healthz /healthz none
paced paced_new /webhooks/atlas new
echo "peak RSS: $(hwm_kb) kB; void cases: $(psql -X -At -d "$url" -c 'select count(*) from voidrecon.void_cases')," \
     "deliveries: $(psql -X -At -d "$url" -c 'select count(*) from voidrecon.deliveries')"
bench_log_errors "$work/serve.log"
