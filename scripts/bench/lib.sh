# What the benchmark scripts share: a voidrecon build, a PostgreSQL of their own in a
# temporary folder, voidrecon serve on a free port, and reading wrk's figures. Sourced with
# root set to the project's root.

bench_work=
svc_pid=
bench_pids=() # more background processes to stop at exit

bench_cleanup() {
    local pid
    # A process killed here exits non-zero: under set -e that must not end the cleanup early,
    # or the PostgreSQL below would be left running.
    for pid in "${bench_pids[@]}" $svc_pid; do
        kill "$pid" 2>/dev/null && { wait "$pid" 2>/dev/null || true; }
    done
    if [[ -n "$bench_work" ]]; then
        "$root/scripts/pg.sh" destroy "$bench_work/pg" >/dev/null 2>&1 || true
        rm -rf "$bench_work"
    fi
}

# bench_start [PG_SH_START_ARG...]: builds voidrecon (VR_BENCH_BIN=path takes that binary
# instead), starts a PostgreSQL in a new temporary folder and migrates it. Sets bin, work
# and url; everything is stopped and removed at exit.
bench_start() {
    if [[ -n "${VR_BENCH_BIN:-}" ]]; then
        bin=$VR_BENCH_BIN
    else
        "$root/scripts/build.sh" build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
        bin=$root/build/voidrecon
    fi
    bench_work=$(mktemp -d /tmp/vrbench.XXXXXX)
    work=$bench_work
    trap bench_cleanup EXIT
    url=$("$root/scripts/pg.sh" start "$work/pg" "$@")
    VOIDRECON_DATABASE_URL=$url "$bin" migrate 2>/dev/null
}

# bench_serve LOG [NAME=VALUE...]: voidrecon serve on a free port with those settings (log
# level warn unless given), its output in LOG; returns once /readyz answers. Sets port and
# svc_pid.
bench_serve() {
    local log=$1
    shift
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    env VOIDRECON_LOG_LEVEL=warn "$@" VOIDRECON_DATABASE_URL="$url" \
        VOIDRECON_LISTEN="127.0.0.1:$port" "$bin" serve 2>"$log" &
    svc_pid=$!
    for _ in $(seq 100); do
        curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
}

# Stops the service bench_serve started.
bench_stop_service() {
    kill "$svc_pid" 2>/dev/null
    wait "$svc_pid" 2>/dev/null || true
    svc_pid=
}

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$svc_pid/status"; }
hwm_kb() { awk '/^VmHWM/ {print $2}' "/proc/$svc_pid/status"; }

# wrk prints "Requests/sec: N" and, with --latency, "50% 1.23ms" lines; figures in ms.
to_ms() {
    awk '{ v=$1; if (v ~ /us$/) { sub(/us$/,"",v); v/=1000 } else if (v ~ /ms$/) { sub(/ms$/,"",v) }
           else if (v ~ /s$/) { sub(/s$/,"",v); v*=1000 } printf "%.2f\n", v }'
}
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

# Says so when the service logged errors.
bench_log_errors() {
    if grep -q '"level":"error"' "$1"; then
        echo "errors in the service log:" >&2
        grep '"level":"error"' "$1" | head -5 >&2
    fi
}
