#!/usr/bin/env bash
# Runs voidrecon for a newcomer: installs what is missing, builds, starts a local PostgreSQL
# under var/ unless VOIDRECON_DATABASE_URL is set, migrates, and serves in the foreground.
set -euo pipefail

usage() {
    cat <<'USAGE'
usage: scripts/run.sh [--setting=VALUE ...]

Installs missing Debian packages (scripts/setup.sh), builds into build/, and runs
"voidrecon serve" in the foreground on 127.0.0.1:8080 (VOIDRECON_LISTEN changes it).
Without VOIDRECON_DATABASE_URL, a throwaway PostgreSQL is kept under var/pg and
stopped again when the service stops. Ctrl-C stops the service cleanly.
Arguments go to "voidrecon serve" (see build/voidrecon serve --help).
USAGE
}

for a in "$@"; do
    case "$a" in
        -h | --help) usage; exit 0 ;;
    esac
done

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

# The service gets a session of its own, so that Ctrl-C reaches it once, through us, and a
# second Ctrl-C can still force it.
setsid "$bin" serve "$@" &
pid=$!
forward() {
    kill "-$1" "$pid" 2>/dev/null || true
}
trap 'forward INT' INT
trap 'forward TERM' TERM
rc=0
while kill -0 "$pid" 2>/dev/null; do
    wait "$pid" && rc=0 || rc=$?
done
exit "$rc"
