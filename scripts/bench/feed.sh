#!/usr/bin/env bash
# Measures the change feed's delay from a case change's COMMIT to its NOTIFY voidrecon_cases
# being received, and to `voidrecon events --follow` printing it.
set -euo pipefail

usage() {
    cat <<'USAGE'
usage: scripts/bench/feed.sh [CASES] [WORKERS...]
       defaults: 100 1 8

Starts a PostgreSQL of its own (durable settings: fsync on; track_commit_timestamp on, so
that each change's commit time is known) in a temporary folder and voidrecon serve on a free
port. For each WORKERS count, registers CASES new void cases through POST /v1/cases and moves
each through three order.void webhooks (0 -> 1 -> 3 -> 2): four status changes a case, each
committed by the service and announced. WORKERS connections send them at once. Prints, over
those changes, the median, p90, p99 and max in ms from COMMIT to the NOTIFY received by a bare
listener (notify), and to the event printed by voidrecon events --follow --json (feed).
The commit time PostgreSQL records is taken before the commit's WAL flush, so the figures
include that flush (fsync); VR_BENCH_FAST=1 runs PostgreSQL without fsync to show the rest
alone. VR_BENCH_BIN=path runs that voidrecon binary instead of building one.
USAGE
}
case "${1:-}" in -h | --help) usage; exit 0 ;; esac
cases=${1:-100}
shift || true
workers=("$@")
((${#workers[@]})) || workers=(1 8)

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
# shellcheck source=lib.sh
. "$root/scripts/bench/lib.sh"
fast=()
[[ "${VR_BENCH_FAST:-0}" == 1 ]] && fast=(--fast)
bench_start "${fast[@]}"
psql -X -q -d "$url" -c "ALTER SYSTEM SET track_commit_timestamp = on"
"$root/scripts/pg.sh" stop "$work/pg" >/dev/null
"$root/scripts/pg.sh" start "$work/pg" "${fast[@]}" >/dev/null
token=bench-feed-token
bench_serve "$work/serve.log" VOIDRECON_ADMIN_TOKEN=$token
for w in "${workers[@]}"; do
    python3 "$root/scripts/bench/feed_latency.py" "$url" "$port" "$token" "$bin" "$cases" "$w"
done
bench_log_errors "$work/serve.log"
