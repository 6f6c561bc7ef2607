#!/usr/bin/env bash
# Measures what polling Atlas costs: the poller's CPU per queryVoidOrders.do request, against
# the Atlas simulator answering without latency, next to the same service idle in the same run
# (the same cases, none due), so that the poller's own cost stands out from the rest.
set -euo pipefail

usage() {
    cat <<'USAGE'
usage: scripts/bench-poller.sh [CASES] [SECONDS] [RUNS] [CONCURRENCY]
       defaults: 20000 20 3 64

Starts a PostgreSQL of its own (durable settings: fsync on) in a temporary folder and the
Atlas simulator (tests/atlas_sim.py --nodelay: no latency, no faults, and none of the ~40 ms
that Nagle's algorithm adds to each answer on a reused connection) on a free port, registers CASES
void cases in the simulator that stay open (status 1 for good), and loads the same cases into
voidrecon.void_cases with one bulk INSERT (then VACUUM ANALYZE). Each of RUNS runs starts
voidrecon serve polling the simulator as fast as it can (POLL_MAX_RPS 100000, POLL_TICK_MS
VR_BENCH_TICK_MS (1000, the default: a slot that frees up leases again at once),
POLL_CONCURRENCY CONCURRENCY; a case comes due again within
POLL_MAX_INTERVAL_MS VR_BENCH_REPOLL_MS (1000), so the backlog never runs dry, but a small
CASES caps the rate near CASES per re-poll interval: 1000 cases, about 1100 polls/s) and samples,
for SECONDS each:
  idle     no case due (the baseline: the tick's empty leases and the once-a-second sweeps)
  polling  every case made due at once; the window starts 1 s after the first poll
the service's CPU time (/proc/PID/stat), the polls it counted (/metrics), the simulator's
queries (/_sim/stats) and the CPU of the simulator and of every process of the PostgreSQL
cluster, and prints the median of each figure over the runs: polls/s, CPU seconds and CPU
microseconds per poll of each party (also net of idle), the machine's CPU use, and the
service's peak RSS. The simulator is Python: on a small machine it takes the largest share of
the CPU, and the polls/s it allows are its ceiling as much as the service's. CONCURRENCY 64
came out best on two CPUs (16: ~1000 polls/s, 32: ~1500, 64 and 128: ~1600-2400, the machine
saturated, measured with a 5 ms tick before free slots leased at once). Takes about RUNS x (2 x SECONDS + 10) s plus the build and the load.
VR_BENCH_BIN=path runs that voidrecon binary instead of building one.
USAGE
}
case "${1:-}" in -h | --help) usage; exit 0 ;; esac
cases=${1:-20000}
secs=${2:-20}
runs=${3:-3}
conc=${4:-64}
tick=${VR_BENCH_TICK_MS:-1000}
repoll=${VR_BENCH_REPOLL_MS:-1000}
for v in "$cases" "$secs" "$runs" "$conc" "$tick" "$repoll"; do
    if ! [[ "$v" =~ ^[1-9][0-9]{0,8}$ ]]; then
        echo "bench-poller.sh: \"$v\" is not a positive whole number" >&2
        usage >&2
        exit 2
    fi
done

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
"$root/scripts/setup.sh"
# shellcheck source=bench/lib.sh
. "$root/scripts/bench/lib.sh"
# shellcheck disable=SC2119 # no option: durable settings
bench_start

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# ---- the simulator, and the same cases in both places ---------------------------------------

sim_port=$(free_port)
sim_url=http://127.0.0.1:$sim_port
python3 "$root/tests/atlas_sim.py" --port "$sim_port" --client-id bench-id \
    --client-secret bench-secret --nodelay >"$work/sim.log" 2>&1 &
sim_pid=$!
bench_pids+=("$sim_pid")
"$root/scripts/wait-http.sh" "$sim_url/_sim/stats" 60 "$sim_pid" "the Atlas simulator"
# Its defaults inject nothing; said here all the same, so that the figures never depend on them.
curl -fsS --max-time 10 -o /dev/null -H 'Content-Type: application/json' -d '{
    "latency_ms": [0, 0], "error_rate": 0, "rate_limit_rate": 0, "rate_limit_count": 0,
    "envelope_error": null, "malformed_rate": 0, "missing_rate": 0, "gzip_rate": 0,
    "case_envelope": {}, "case_missing": []}' "$sim_url/_sim/faults"

echo "bench-poller.sh: loading $cases open cases" >&2
load_start=$(date +%s)
python3 -c '
import json, sys
n = int(sys.argv[1])
print(json.dumps({"cases": [{"orderNo": "BENCH%d" % i, "voidCode": "V1", "path": [1]}
                            for i in range(1, n + 1)]}))' "$cases" |
    curl -fsS --max-time 120 -o /dev/null -H 'Content-Type: application/json' \
        --data-binary @- "$sim_url/_sim/cases"
psql -X -q -v ON_ERROR_STOP=1 -d "$url" <<SQL
INSERT INTO voidrecon.void_cases (order_no, void_code, status, next_poll_at)
SELECT 'BENCH' || g, 'V1', 1, now() + interval '1 day' FROM generate_series(1, $cases) g;
VACUUM ANALYZE voidrecon.void_cases;
SQL
echo "bench-poller.sh: loaded in $(($(date +%s) - load_start)) s" >&2

# ---- what is sampled ---------------------------------------------------------------------------

hz=$(getconf CLK_TCK)
pg_data=$(psql -X -At -d "$url" -c 'SHOW data_directory')
pg_pid=$(head -n 1 "$pg_data/postmaster.pid")

# utime + stime of one process, in clock ticks (the fields after "(comm)", which may hold spaces).
ticks_of() { sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }

# utime + stime of the postmaster and its children (backends, writers, autovacuum): a backend
# that exits within a window takes its CPU with it, so this is a close lower bound.
pg_ticks() {
    { cat /proc/[0-9]*/stat 2>/dev/null || true; } |
        awk -v pm="$pg_pid" '{ pid = $1; sub(/^.*\) /, "");
                               if (pid == pm || $2 == pm) s += $12 + $13 } END { print s + 0 }'
}

# Every CPU's busy and total ticks since boot (busy: all but idle and iowait).
machine_ticks() { awk '$1 == "cpu" { t = 0; for (i = 2; i <= NF; i++) t += $i;
                                      print t - $5 - $6, t; exit }' /proc/stat; }

# "ok all": polls counted by the service, with result ok and with any result.
polls_now() {
    curl -fsS --max-time 5 "http://127.0.0.1:$port/metrics" |
        awk '/^voidrecon_polls_total\{/ { all += $2; if ($1 ~ /result="ok"/) ok += $2 }
             END { print ok + 0, all + 0 }'
}

sim_queries() {
    curl -fsS --max-time 5 "$sim_url/_sim/stats" | sed -n 's/.*"queries": *\([0-9]*\).*/\1/p'
}

# One line: time, service ticks, PostgreSQL ticks, simulator ticks, polls ok, polls, simulator
# queries, machine busy ticks, machine ticks.
sample() {
    echo "$(date +%s.%N) $(ticks_of "$svc_pid") $(pg_ticks) $(ticks_of "$sim_pid") $(polls_now)" \
         "$(sim_queries) $(machine_ticks)"
}

# The figures of one window from two samples, name=value; CPU in seconds.
window() {
    awk -v hz="$hz" -v a="$1" -v b="$2" 'BEGIN {
        split(a, x, " "); split(b, y, " ")
        dt = y[1] - x[1]; svc = (y[2] - x[2]) / hz; pg = (y[3] - x[3]) / hz
        sim = (y[4] - x[4]) / hz; ok = y[5] - x[5]; polls = y[6] - x[6]; q = y[7] - x[7]
        printf "ok_rps=%.1f other_rps=%.1f sim_qps=%.1f svc_s=%.2f svc_pct=%.1f pg_s=%.2f",
               ok / dt, (polls - ok) / dt, q / dt, svc, 100 * svc / dt, pg
        printf " sim_s=%.2f machine_pct=%.0f polls=%d queries=%d\n",
               sim, 100 * (y[8] - x[8]) / (y[9] - x[9]), polls, q
    }'
}

fig() { sed -n "s/.*\\b$1=\\([^ ]*\\).*/\\1/p" <<<"$2"; }

# ---- the runs ----------------------------------------------------------------------------------

declare -A res
put() { res[$1]+="$2 "; }

run_once() {
    local i=$1 log=$work/serve$1.log a b idle busy start deadline
    psql -X -q -v ON_ERROR_STOP=1 -d "$url" -c "UPDATE voidrecon.void_cases
        SET next_poll_at = now() + interval '1 day', lease_token = NULL, lease_until = NULL"
    bench_serve "$log" VOIDRECON_ATLAS_BASE_URL="$sim_url" VOIDRECON_ATLAS_CLIENT_ID=bench-id \
        VOIDRECON_ATLAS_CLIENT_SECRET=bench-secret VOIDRECON_POLL_MAX_RPS=100000 \
        VOIDRECON_POLL_CONCURRENCY="$conc" VOIDRECON_POLL_TICK_MS="$tick" \
        VOIDRECON_POLL_MAX_INTERVAL_MS="$repoll"
    "$root/scripts/wait-http.sh" "http://127.0.0.1:$port/readyz" 30 "$svc_pid" "voidrecon serve"
    sleep 1

    a=$(sample)
    sleep "$secs"
    b=$(sample)
    idle=$(window "$a" "$b")

    start=$(polls_now)
    psql -X -q -v ON_ERROR_STOP=1 -d "$url" -c \
        "UPDATE voidrecon.void_cases SET next_poll_at = now()"
    deadline=$((SECONDS + 30))
    until [[ "$(polls_now)" != "$start" ]]; do
        if ((SECONDS >= deadline)); then
            echo "bench-poller.sh: run $i: no poll within 30 s of the cases coming due" >&2
            bench_log_errors "$log"
            exit 1
        fi
        sleep 0.1
    done
    sleep 1
    a=$(sample)
    sleep "$secs"
    b=$(sample)
    busy=$(window "$a" "$b")
    put hwm "$(hwm_kb)"
    bench_log_errors "$log"
    bench_stop_service

    echo "bench-poller.sh: run $i/$runs: idle: $idle" >&2
    echo "bench-poller.sh: run $i/$runs: polling: $busy" >&2
    local k
    for k in ok_rps other_rps sim_qps svc_s svc_pct pg_s sim_s machine_pct; do
        put "idle.$k" "$(fig "$k" "$idle")"
        put "busy.$k" "$(fig "$k" "$busy")"
    done
    # Per poll (any result) and per simulator query, in microseconds; net: less the idle window.
    awk -v i="$idle" -v b="$busy" 'BEGIN {
            n = split(i, x, " "); for (j = 1; j <= n; j++) { split(x[j], kv, "="); I[kv[1]] = kv[2] }
            n = split(b, x, " "); for (j = 1; j <= n; j++) { split(x[j], kv, "="); B[kv[1]] = kv[2] }
            p = B["polls"] > 0 ? B["polls"] : 1; q = B["queries"] > 0 ? B["queries"] : 1
            printf "svc_us=%.1f svc_net_us=%.1f pg_us=%.1f pg_net_us=%.1f sim_us=%.1f\n",
                   1e6 * B["svc_s"] / p, 1e6 * (B["svc_s"] - I["svc_s"]) / p,
                   1e6 * B["pg_s"] / p, 1e6 * (B["pg_s"] - I["pg_s"]) / p,
                   1e6 * (B["sim_s"] - I["sim_s"]) / q
        }' >"$work/per$i"
    for k in svc_us svc_net_us pg_us pg_net_us sim_us; do
        put "busy.$k" "$(fig "$k" "$(<"$work/per$i")")"
    done
}

for ((r = 1; r <= runs; r++)); do
    run_once "$r"
done

med() {
    if [[ -z "${res[$1]:-}" ]]; then
        echo "-"
        return
    fi
    tr ' ' '\n' <<<"${res[$1]}" | sed '/^$/d' | median
}
row() { printf '%-44s %12s %12s\n' "$1" "$2" "$3"; }

echo
echo "voidrecon bench-poller: $cases open cases, ${secs}s per window x $runs runs," \
     "POLL_CONCURRENCY $conc, POLL_TICK_MS $tick, simulator without latency or faults," \
     "fsync on, $(nproc) CPUs; medians"
row "" idle polling
row "polls/s (result ok)" "$(med idle.ok_rps)" "$(med busy.ok_rps)"
row "polls/s (any other result)" "$(med idle.other_rps)" "$(med busy.other_rps)"
row "simulator queries/s" "$(med idle.sim_qps)" "$(med busy.sim_qps)"
row "service CPU s" "$(med idle.svc_s)" "$(med busy.svc_s)"
row "service CPU % of one CPU" "$(med idle.svc_pct)" "$(med busy.svc_pct)"
row "service CPU us/poll" "-" "$(med busy.svc_us)"
row "service CPU us/poll, net of idle" "-" "$(med busy.svc_net_us)"
row "PostgreSQL CPU s (all its processes)" "$(med idle.pg_s)" "$(med busy.pg_s)"
row "PostgreSQL CPU us/poll" "-" "$(med busy.pg_us)"
row "PostgreSQL CPU us/poll, net of idle" "-" "$(med busy.pg_net_us)"
row "simulator CPU s" "$(med idle.sim_s)" "$(med busy.sim_s)"
row "simulator CPU us/query, net of idle" "-" "$(med busy.sim_us)"
row "machine CPU busy % (all CPUs, all users)" "$(med idle.machine_pct)" "$(med busy.machine_pct)"
row "service peak RSS kB" "-" "$(med hwm)"
