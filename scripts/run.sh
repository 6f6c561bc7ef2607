#!/usr/bin/env bash
# Runs voidrecon for a newcomer: installs what is missing, builds, starts a local PostgreSQL
# under var/ unless VOIDRECON_DATABASE_URL is set, migrates, and serves in the foreground.
set -euo pipefail

usage() {
    cat <<'USAGE'
usage: scripts/run.sh [--demo] [--setting=VALUE ...]

Installs missing Debian packages (scripts/setup.sh), builds into build/, and runs
"voidrecon serve" in the foreground on 127.0.0.1:8080 (VOIDRECON_LISTEN changes it).
Without VOIDRECON_DATABASE_URL, a throwaway PostgreSQL is kept under var/pg and
stopped again when the service stops. Ctrl-C stops the service cleanly.
Other arguments go to "voidrecon serve" (see build/voidrecon serve --help).

--demo also starts the Atlas simulator (tests/atlas_sim.py) as the Atlas API, points the
poller at it with short timings, registers a handful of void cases and prints how they
move, reconcile, and how a rejection raises its alert.
USAGE
}

demo=0
args=()
for a in "$@"; do
    case "$a" in
        -h | --help) usage; exit 0 ;;
        --demo) demo=1 ;;
        *) args+=("$a") ;;
    esac
done
set -- "${args[@]+"${args[@]}"}"

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
"$root/scripts/setup.sh"
echo "run.sh: building into build/" >&2
"$root/scripts/build.sh" build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
bin=$root/build/voidrecon

own_pg=0
if [[ -z "${VOIDRECON_DATABASE_URL:-}" ]]; then
    echo "run.sh: starting the local PostgreSQL in var/pg" >&2
    VOIDRECON_DATABASE_URL=$("$root/scripts/pg.sh" start "$root/var/pg")
    export VOIDRECON_DATABASE_URL
    own_pg=1
fi
stop_pg() {
    if ((own_pg)); then
        "$root/scripts/pg.sh" stop "$root/var/pg" || true
    fi
}
trap stop_pg EXIT

"$bin" migrate

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
helpers=()
if ((demo)); then
    listen=${VOIDRECON_LISTEN:-127.0.0.1:8080}
    sim_port=$(free_port)
    admin_token=demo-$RANDOM$RANDOM
    python3 "$root/tests/atlas_sim.py" --port "$sim_port" --client-id demo-id \
        --client-secret demo-secret --webhook-url "http://$listen/webhooks/atlas" >/dev/null &
    helpers+=($!)
    # A Python process may take long to start on a cold machine: the service (whose poller
    # calls it) and the demo start only once it answers, within a bound.
    "$root/scripts/wait-http.sh" "http://127.0.0.1:$sim_port/_sim/stats" 60 "$!" \
        "the Atlas simulator" || {
        kill "${helpers[@]}" 2>/dev/null || true
        exit 1
    }
    export VOIDRECON_ATLAS_BASE_URL=http://127.0.0.1:$sim_port VOIDRECON_ATLAS_CLIENT_ID=demo-id
    export VOIDRECON_ATLAS_CLIENT_SECRET=demo-secret VOIDRECON_ADMIN_TOKEN=$admin_token
    export VOIDRECON_POLL_TICK_MS=200 VOIDRECON_POLL_FIRST_MS=3000 VOIDRECON_POLL_CONFIRM_MS=1500
    export VOIDRECON_POLL_MAX_INTERVAL_MS=6000 VOIDRECON_POLL_RETRY_MS=1000
    # The table the demo prints is the show; the service logs only errors meanwhile.
    export VOIDRECON_LOG_LEVEL=${VOIDRECON_LOG_LEVEL:-error}
    echo "run.sh: demo: Atlas simulator on 127.0.0.1:$sim_port" >&2
fi

# The service gets a session of its own, so that Ctrl-C reaches it once, through us, and a
# second Ctrl-C can still force it.
setsid "$bin" serve "$@" &
pid=$!
forward() {
    kill "-$1" "$pid" 2>/dev/null || true
}
stop_helpers() {
    for h in "${helpers[@]+"${helpers[@]}"}"; do
        kill "$h" 2>/dev/null || true
    done
    stop_pg
}
trap stop_helpers EXIT
if ((demo)); then
    # The service must answer before the demo talks to it.
    "$root/scripts/wait-http.sh" "http://$listen/healthz" 60 "$pid" "voidrecon serve" || {
        forward TERM
        wait "$pid" || true
        exit 1
    }
    python3 "$root/scripts/demo.py" --service-port "${listen##*:}" --sim-port "$sim_port" \
        --admin-token "$admin_token" --database-url "$VOIDRECON_DATABASE_URL" &
    helpers+=($!)
fi
trap 'forward INT' INT
trap 'forward TERM' TERM
rc=0
while kill -0 "$pid" 2>/dev/null; do
    wait "$pid" && rc=0 || rc=$?
done
exit "$rc"
