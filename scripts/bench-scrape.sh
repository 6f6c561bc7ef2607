#!/usr/bin/env bash
# Measures what health scrapes cost the webhook intake: webhook latency and throughput under
# wrk with a large backlog of open cases, alone (the same-run baseline) and while 64
# connections scrape /metrics and /readyz as fast as they are answered.
set -euo pipefail

usage() {
    cat <<'USAGE'
usage: scripts/bench-scrape.sh [CASES] [SECONDS] [CONNECTIONS] [SCRAPERS]
       defaults: 1000000 10 16 64

Starts a PostgreSQL of its own (durable settings: fsync on) in a temporary folder, loads CASES
open void cases with one bulk INSERT (then VACUUM ANALYZE, as autovacuum would have), starts
voidrecon serve with its default settings on a free port, and runs wrk POSTing a new order.void
per request over CONNECTIONS connections for SECONDS:
  alone      nothing else runs (the baseline)
  scraped    SCRAPERS more connections GET /metrics and /readyz in turn meanwhile
and prints both side by side: requests/s, p50, p90, p99 and max in ms, non-2xx answers, and
the scrapes answered per second. Takes about a minute plus the load (under 10 s per million
cases on two cores). VR_BENCH_BIN=path runs that voidrecon binary instead of building one
(e.g. an older build, to compare).
USAGE
}
case "${1:-}" in -h | --help) usage; exit 0 ;; esac
cases=${1:-1000000}
secs=${2:-10}
conns=${3:-16}
scrapers=${4:-64}

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
"$root/scripts/setup.sh" wrk
# shellcheck source=bench/lib.sh
. "$root/scripts/bench/lib.sh"
bench_start
echo "bench-scrape.sh: loading $cases open cases" >&2
load_start=$(date +%s)
psql -X -q -v ON_ERROR_STOP=1 -d "$url" <<SQL
INSERT INTO voidrecon.void_cases (order_no, void_code, status, next_poll_at)
SELECT 'LOAD' || g, 'V1', 1, now() + interval '1 day' FROM generate_series(1, $cases) g;
VACUUM ANALYZE voidrecon.void_cases;
SQL
echo "bench-scrape.sh: loaded in $(($(date +%s) - load_start)) s" >&2

bench_serve "$work/serve.log"
# One scrape on its own, for the record: what a single /metrics costs now.
one_ms=$(curl -fso /dev/null -w '%{time_total}' "http://127.0.0.1:$port/metrics" |
         awk '{printf "%.1f", $1 * 1000}')

declare -A fig
webhooks() {
    local name=$1 out
    out=$(wrk -t1 -c"$conns" -d"${secs}s" --timeout 30s --latency \
              -s "$root/scripts/bench/void_new.lua" "http://127.0.0.1:$port" -- "$2")
    fig[$name.rps]=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
    fig[$name.p50]=$(awk '$1=="50%" {print $2}' <<<"$out" | to_ms)
    fig[$name.p90]=$(awk '$1=="90%" {print $2}' <<<"$out" | to_ms)
    fig[$name.p99]=$(awk '$1=="99%" {print $2}' <<<"$out" | to_ms)
    fig[$name.max]=$(awk '$1=="Latency" && $2 ~ /^[0-9]/ {print $4}' <<<"$out" | to_ms)
    fig[$name.bad]=$(awk -F= '/^non2xx=/ {print $2}' <<<"$out")
    fig[$name.timeouts]=$(awk '/Socket errors/ {for (i=1;i<=NF;i++) if ($i=="timeout") print $(i-1)+0}' <<<"$out")
}

webhooks alone 1
wrk -t1 -c"$scrapers" -d"$((secs + 3))s" --timeout 30s -s "$root/scripts/bench/scrape.lua" \
    "http://127.0.0.1:$port" >"$work/scrape.out" &
scrape_pid=$!
bench_pids+=("$scrape_pid")
sleep 1
webhooks scraped 2
wait "$scrape_pid"
bench_pids=()
scrape_rps=$(awk '/^Requests\/sec/ {print $2}' "$work/scrape.out")
scrape_bad=$(awk -F= '/^non2xx=/ {print $2}' "$work/scrape.out")

echo
echo "voidrecon bench-scrape: $cases open cases, POST order.void over $conns connections for" \
     "${secs}s, fsync on, $(nproc) CPUs; one /metrics alone: ${one_ms} ms"
printf '%-28s %12s %12s\n' "" "alone" "scraped"
for k in rps p50 p90 p99 max bad; do
    case $k in
        rps) label="webhooks/s" ;; bad) label="non-2xx webhooks" ;; *) label="$k ms" ;;
    esac
    printf '%-28s %12s %12s\n' "$label" "${fig[alone.$k]:-?}" "${fig[scraped.$k]:-?}"
done
printf '%-28s %12s %12s\n' "scrapes/s ($scrapers connections)" "-" "${scrape_rps:-?}"
printf '%-28s %12s %12s\n' "non-2xx scrapes" "-" "${scrape_bad:-?}"
bench_log_errors "$work/serve.log"
