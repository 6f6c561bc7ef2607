#!/usr/bin/env bash
# Measures the webhook intake: requests/s, latency percentiles and memory of voidrecon serve,
# with group commit and with one transaction per webhook, beside GET /healthz on the same
# service and pgbench running the same statements, all in one run.
set -euo pipefail

usage() {
    cat <<'USAGE'
usage: scripts/bench.sh [SECONDS] [CONNECTIONS] [RUNS]    defaults: 10 32 3

Starts a PostgreSQL of its own (durable settings: fsync and synchronous_commit on) in a
temporary folder, then for each workload a voidrecon serve on a free port (started afresh, so
that its peak RSS is the workload's), and runs the workload RUNS times; prints the median of
each figure and the peak RSS.

Closed loop, wrk with CONNECTIONS connections for SECONDS:
  healthz          GET /healthz: the HTTP layer alone (the baseline)
  new batch=1      POST order.void, a new case every request, VOIDRECON_WRITE_BATCH=1: one
                   transaction per webhook
  new              the same with the default group commit
  same batch=1     POST order.void, every request for one case (duplicates of one row)
  same             the same with the default group commit
  pgbench          the store's statements for a new case (case read, then write), prepared,
                   one transaction each, VR_BENCH_PGBENCH_CLIENTS clients (4, the service's
                   pool), for SECONDS: what PostgreSQL alone takes of one transaction per
                   webhook, with no HTTP and no service: the ceiling of that design
Open loop (scripts/bench/paced.py), VR_BENCH_RATE requests a second (1000) offered at a fixed
rate for VR_BENCH_PACED_SECS (30), latency counted from when each request was due, so that
queueing is never hidden:
  paced healthz, paced new batch=1, paced new
VR_BENCH_FAST=1 turns fsync off to show what durability costs. VR_BENCH_BIN=path runs that
binary instead of building one.
USAGE
}
case "${1:-}" in -h | --help) usage; exit 0 ;; esac
secs=${1:-10}
conns=${2:-32}
runs=${3:-3}
rate=${VR_BENCH_RATE:-1000}
psecs=${VR_BENCH_PACED_SECS:-30}

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
"$root/scripts/setup.sh" wrk
# shellcheck source=bench/lib.sh
. "$root/scripts/bench/lib.sh"
fast=()
[[ "${VR_BENCH_FAST:-0}" == 1 ]] && fast=(--fast)
bench_start "${fast[@]}"

row() { printf '%-16s %10s %9s %9s %9s %8s %9s\n' "$@"; }
med() { printf '%s\n' "$@" | median; }
total() { printf '%s\n' "$@" | awk '{s+=$1} END {print s+0}'; }

# wrk_workload NAME PATH BATCH [WRK ARGS...]: a fresh service with VOIDRECON_WRITE_BATCH=BATCH
# (empty: the default), RUNS wrk runs, one row of medians.
wrk_workload() {
    local name=$1 path=$2 batch=$3 i out
    shift 3
    local rps=() p50=() p99=() bad=()
    bench_serve "$work/serve.log" ${batch:+VOIDRECON_WRITE_BATCH=$batch}
    for ((i = 1; i <= runs; i++)); do
        out=$(wrk -t2 -c"$conns" -d"${secs}s" --latency "$@" "http://127.0.0.1:$port$path" -- "$i$RANDOM")
        rps+=("$(awk '/^Requests\/sec/ {print $2}' <<<"$out")")
        p50+=("$(awk '$1=="50%" {print $2}' <<<"$out" | to_ms)")
        p99+=("$(awk '$1=="99%" {print $2}' <<<"$out" | to_ms)")
        bad+=("$(awk -F= '/^non2xx=/ {print $2}' <<<"$out")")
    done
    row "$name" "$(med "${rps[@]}")" "$(med "${p50[@]}")" "$(med "${p99[@]}")" "-" \
        "$(total "${bad[@]:-0}")" "$(hwm_kb)"
    bench_log_errors "$work/serve.log"
    bench_stop_service
}

pgbench_workload() {
    local i out logs tps=() p50=() p99=()
    python3 "$root/scripts/bench/pgbench_void.py" "$root/src/store/voids.c" >"$work/pgbench.sql"
    for ((i = 1; i <= runs; i++)); do
        rm -f "$work"/pgb.*
        out=$(pgbench -n -M prepared -c "${VR_BENCH_PGBENCH_CLIENTS:-4}" -j 2 -T "$secs" \
            -f "$work/pgbench.sql" \
            --log --log-prefix="$work/pgb" "$url" 2>&1)
        tps+=("$(awk '/^tps = / {printf "%.2f\n", $3}' <<<"$out")")
        logs=$(cat "$work"/pgb.* | awk '{print $3}' | sort -n)
        p50+=("$(awk '{a[NR]=$1} END {printf "%.2f\n", a[int(NR*0.50)]/1000}' <<<"$logs")")
        p99+=("$(awk '{a[NR]=$1} END {printf "%.2f\n", a[int(NR*0.99)]/1000}' <<<"$logs")")
    done
    row pgbench "$(med "${tps[@]}")" "$(med "${p50[@]}")" "$(med "${p99[@]}")" "-" "0" "-"
}

# paced NAME PATH KIND BATCH: a fresh service, RUNS open-loop runs, one row of medians.
paced() {
    local name=$1 path=$2 kind=$3 batch=$4 i out
    local got=() p50=() p99=() p999=() bad=()
    bench_serve "$work/serve.log" ${batch:+VOIDRECON_WRITE_BATCH=$batch}
    for ((i = 1; i <= runs; i++)); do
        out=$(python3 "$root/scripts/bench/paced.py" "http://127.0.0.1:$port$path" "$rate" "$psecs" \
            --body-kind "$kind" --run-id "$i$RANDOM")
        got+=("$(sed -n 's/.* rate=\([0-9.]*\).*/\1/p' <<<"$out")")
        p50+=("$(sed -n 's/.* p50=\([0-9.]*\).*/\1/p' <<<"$out")")
        p99+=("$(sed -n 's/.* p99=\([0-9.]*\).*/\1/p' <<<"$out")")
        p999+=("$(sed -n 's/.* p999=\([0-9.]*\).*/\1/p' <<<"$out")")
        bad+=("$(sed -n 's/.* bad=\([0-9]*\).*/\1/p' <<<"$out")")
    done
    row "$name" "$(med "${got[@]}")" "$(med "${p50[@]}")" "$(med "${p99[@]}")" \
        "$(med "${p999[@]}")" "$(total "${bad[@]:-0}")" "$(hwm_kb)"
    bench_log_errors "$work/serve.log"
    bench_stop_service
}

echo "voidrecon bench: $(nproc) CPUs shared by everything, fsync" \
     "$([[ ${#fast[@]} -gt 0 ]] && echo off || echo on), synchronous_commit on; medians of $runs runs"
echo
echo "closed loop: wrk, ${secs}s, $conns connections, 2 threads"
row workload req/s p50_ms p99_ms - non2xx peak_rss_kB
wrk_workload healthz /healthz ""
wrk_workload "new batch=1" "" 1 -s "$root/scripts/bench/void_new.lua"
wrk_workload new "" "" -s "$root/scripts/bench/void_new.lua"
wrk_workload "same batch=1" "" 1 -s "$root/scripts/bench/void_same.lua"
wrk_workload same "" "" -s "$root/scripts/bench/void_same.lua"
pgbench_workload
echo
echo "open loop: $rate requests/s offered for ${psecs}s, latency from each request's due time"
row workload achieved p50_ms p99_ms p999_ms bad peak_rss_kB
paced "paced healthz" /healthz none ""
paced "paced new batch=1" /webhooks/atlas new 1
paced "paced new" /webhooks/atlas new ""
echo
echo "void cases: $(psql -X -At -d "$url" -c 'select count(*) from voidrecon.void_cases')," \
     "deliveries: $(psql -X -At -d "$url" -c 'select count(*) from voidrecon.deliveries')"
