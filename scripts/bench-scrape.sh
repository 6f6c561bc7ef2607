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
if [[ -n "${VR_BENCH_BIN:-}" ]]; then
    bin=$VR_BENCH_BIN
else
    "$root/scripts/build.sh" build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
    bin=$root/build/voidrecon
fi

work=$(mktemp -d /tmp/vrbench-scrape.XXXXXX)
svc_pid=
scrape_pid=
cleanup() {
    [[ -n "$scrape_pid" ]] && kill "$scrape_pid" 2>/dev/null && wait "$scrape_pid" 2>/dev/null
    [[ -n "$svc_pid" ]] && kill "$svc_pid" 2>/dev/null && wait "$svc_pid" 2>/dev/null
    "$root/scripts/pg.sh" destroy "$work/pg" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

url=$("$root/scripts/pg.sh" start "$work/pg")
VOIDRECON_DATABASE_URL=$url "$bin" migrate 2>/dev/null
echo "bench-scrape.sh: loading $cases open cases" >&2
load_start=$(date +%s)
psql -X -q -v ON_ERROR_STOP=1 -d "$url" <<SQL
INSERT INTO voidrecon.void_cases (order_no, void_code, status, next_poll_at)
SELECT 'LOAD' || g, 'V1', 1, now() + interval '1 day' FROM generate_series(1, $cases) g;
VACUUM ANALYZE voidrecon.void_cases;
SQL
echo "bench-scrape.sh: loaded in $(($(date +%s) - load_start)) s" >&2

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
VOIDRECON_DATABASE_URL=$url VOIDRECON_LISTEN=127.0.0.1:$port VOIDRECON_LOG_LEVEL=warn \
    "$bin" serve 2>"$work/serve.log" &
svc_pid=$!
for _ in $(seq 100); do
    curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
    sleep 0.1
done
# One scrape on its own, for the record: what a single /metrics costs now.
one_ms=$(curl -fso /dev/null -w '%{time_total}' "http://127.0.0.1:$port/metrics" |
         awk '{printf "%.1f", $1 * 1000}')

# wrk prints "Requests/sec: N" and, with --latency, "50% 1.23ms" lines; figures in ms.
to_ms() {
    awk '{ v=$1; if (v ~ /us$/) { sub(/us$/,"",v); v/=1000 } else if (v ~ /ms$/) { sub(/ms$/,"",v) }
           else if (v ~ /s$/) { sub(/s$/,"",v); v*=1000 } printf "%.2f\n", v }'
}
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
sleep 1
webhooks scraped 2
wait "$scrape_pid"
scrape_pid=
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
if grep -q '"level":"error"' "$work/serve.log"; then
    echo "errors in the service log:" >&2
    grep '"level":"error"' "$work/serve.log" | head -5 >&2
fi
