#!/usr/bin/env bash
# Measures retention: how long pruning N old deliveries (with their history rows) takes, one
# batch and the whole run, and what it costs the webhooks that arrive meanwhile.
set -euo pipefail

usage() {
    cat <<'USAGE'
usage: scripts/bench-prune.sh [OLD_DELIVERIES] [CONNECTIONS]    defaults: 200000 16

Starts a PostgreSQL of its own (fsync on) in a temporary folder and loads OLD_DELIVERIES
deliveries 120 days old, each with the history row it produced (four per case: created,
two changes, a duplicate; 1% of the cases rejected and not acknowledged, whose deliveries
are kept), beside 50,000 recent deliveries. Then, each time on the same freshly loaded data:
  1. voidrecon prune alone: the run's time, its batches, and the slowest batch;
  2. webhooks alone: wrk posting new order.void cases (as scripts/bench.sh void_new) for
     as long as run 1 took: requests/s and latency percentiles;
  3. both at once: voidrecon serve prunes on its timer while wrk posts to it.
VR_BENCH_BIN=path uses that binary instead of building one.
USAGE
}
case "${1:-}" in -h | --help) usage; exit 0 ;; esac
old=${1:-200000}
conns=${2:-16}

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
"$root/scripts/setup.sh" wrk
# shellcheck source=bench/lib.sh
. "$root/scripts/bench/lib.sh"
bench_start

sql() { psql -X -q -At -v ON_ERROR_STOP=1 -d "$url" "$@"; }

# Deliveries 1..old are the old ones, in order of receipt, four per case; their history rows
# point at them. The recent ones come after and have none.
load() {
    sql <<SQL
TRUNCATE voidrecon.void_case_events, voidrecon.order_cancellations, voidrecon.deliveries,
         voidrecon.alerts, voidrecon.void_cases RESTART IDENTITY;
INSERT INTO voidrecon.void_cases (order_no, void_code, status, needs_followup, followup_reason,
                                  created_at, updated_at, last_seen_at)
SELECT 'OLD' || c, 'V1', CASE WHEN c % 100 = 0 THEN 4 ELSE 2 END, c % 100 = 0,
       CASE WHEN c % 100 = 0 THEN 'rejected' END, now() - interval '120 days',
       now() - interval '120 days', now() - interval '120 days'
  FROM generate_series(1, ($old + 3) / 4) c;
INSERT INTO voidrecon.deliveries (provider, event_type, remote_addr, body, outcome, received_at,
                                  body_length, body_sha256)
SELECT 'atlas', 'order.void', '203.0.113.7', b, CASE WHEN g % 4 = 0 THEN 'duplicate' ELSE 'applied' END,
       now() - interval '120 days' + g * interval '10 ms', octet_length(b), sha256(b)
  FROM generate_series(1, $old) g,
       LATERAL (SELECT convert_to(json_build_object('cid', 'C', 'type', 'order.void', 'status', -1,
                  'data', json_build_object('orderNo', 'OLD' || ((g + 3) / 4), 'voidCode', 'V1',
                  'voidStatus', g % 4, 'message', repeat('Void accepted by the airline. ', 10)))::text,
                  'UTF8') AS b) x;
INSERT INTO voidrecon.void_case_events (order_no, void_code, source, reported_status,
                                        from_status, to_status, outcome, delivery_id, at)
SELECT 'OLD' || ((id + 3) / 4), 'V1', 'webhook', 2,
       CASE id % 4 WHEN 1 THEN NULL WHEN 2 THEN 0 WHEN 3 THEN 1 ELSE 2 END,
       CASE id % 4 WHEN 1 THEN 0 WHEN 2 THEN 1 ELSE 2 END,
       CASE WHEN id % 4 = 0 THEN 'duplicate' ELSE 'applied' END, id, received_at
  FROM voidrecon.deliveries;
INSERT INTO voidrecon.deliveries (provider, event_type, remote_addr, body, outcome, received_at)
SELECT 'atlas', 'order.ticketed', '203.0.113.7', convert_to('{"type":"order.ticketed"}', 'UTF8'),
       'ignored', now() - g * interval '1 second'
  FROM generate_series(1, 50000) g;
SQL
    sql -c 'VACUUM ANALYZE' >/dev/null
}

# wrk's figures of one run of SECONDS against the service: req/s p50 p99 non2xx.
post_webhooks() {
    local out
    out=$(wrk -t2 -c"$conns" -d"$1s" --latency -s "$root/scripts/bench/void_new.lua" \
        "http://127.0.0.1:$port" -- "$RANDOM")
    printf '%s %s %s %s' "$(awk '/^Requests\/sec/ {print $2}' <<<"$out")" \
        "$(awk '$1=="50%" {print $2}' <<<"$out" | to_ms)" \
        "$(awk '$1=="99%" {print $2}' <<<"$out" | to_ms)" \
        "$(awk -F= '/^non2xx=/ {print $2}' <<<"$out")"
}

# The slowest batch and the run's line, from a debug log.
batch_figures() {
    python3 - "$1" <<'PY'
import json, re, sys
ms, n, run = [], 0, ""
for line in open(sys.argv[1], errors="replace"):
    try:
        o = json.loads(line)
    except ValueError:
        continue
    if o.get("event") == "prune_batch":
        m = re.search(r"removed=(\d+) ms=([\d.]+)", o["msg"])
        if m and int(m.group(1)) > 0:
            ms.append(float(m.group(2)))
    elif o.get("event") == "pruned" and not run:
        run = o["msg"]
ms.sort()
if ms:
    print("batches that removed rows: %d; batch ms p50 %.1f, p99 %.1f, max %.1f"
          % (len(ms), ms[len(ms) // 2], ms[int(len(ms) * 0.99)], ms[-1]))
print("run: " + run)
PY
}

echo "voidrecon bench-prune: $old old deliveries (+ history rows), 50000 recent;" \
     "$conns wrk connections; fsync on; $(nproc) CPUs"
load
size() { sql -c "select pg_size_pretty(pg_total_relation_size('voidrecon.$1'))"; }
echo "loaded: deliveries $(size deliveries), history $(size void_case_events)"

echo "1. voidrecon prune alone"
start=$(date +%s.%N)
VOIDRECON_DATABASE_URL=$url VOIDRECON_LOG_LEVEL=debug "$bin" prune 2>"$work/prune.log"
took=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN {printf "%.1f", e - s}')
echo "   took ${took}s; left: $(sql -c 'select count(*) from voidrecon.deliveries') deliveries," \
     "$(sql -c 'select count(*) from voidrecon.void_case_events where delivery_id is null') history rows unlinked"
python3 - "$work/prune.log" <<'PY'
import json, re, sys
ms = sorted(float(re.search(r"ms=([\d.]+)", o["msg"]).group(1))
            for o in (json.loads(l) for l in open(sys.argv[1]) if l.startswith("{"))
            if o.get("event") == "prune_batch")
print("   %d batches; batch ms p50 %.1f, p99 %.1f, max %.1f"
      % (len(ms), ms[len(ms) // 2], ms[int(len(ms) * 0.99)], ms[-1]))
PY

secs=$(awk -v t="$took" 'BEGIN {s = int(t + 0.999); print (s < 5 ? 5 : s)}')
load
echo "2. webhooks alone, ${secs}s (retention off)"
bench_serve "$work/alone.log" VOIDRECON_DELIVERY_RETENTION_MS=0
read -r rps p50 p99 bad <<<"$(post_webhooks "$secs")"
echo "   ${rps} req/s, p50 ${p50} ms, p99 ${p99} ms, non-2xx ${bad:-0}"
bench_stop_service

load
echo "3. webhooks while serve prunes, ${secs}s"
bench_serve "$work/both.log" VOIDRECON_LOG_LEVEL=debug VOIDRECON_PRUNE_INTERVAL_MS=500
read -r rps p50 p99 bad <<<"$(post_webhooks "$secs")"
echo "   ${rps} req/s, p50 ${p50} ms, p99 ${p99} ms, non-2xx ${bad:-0}"
for _ in $(seq 600); do
    grep -q '"event":"pruned"' "$work/both.log" && break
    sleep 0.5
done
batch_figures "$work/both.log" | sed 's/^/   /'
bench_stop_service
bench_log_errors "$work/both.log"
