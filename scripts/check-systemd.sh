#!/usr/bin/env bash
# The package under a real systemd, which the suite cannot have where systemd is not PID 1:
# boots this machine's own system as a container (systemd-nspawn) on a throwaway overlay, with
# a private network, installs the .deb there and drives it as an operator would.
set -euo pipefail

usage() {
    cat <<'USAGE'
usage: scripts/check-systemd.sh [DEB]     DEB defaults to what scripts/package.sh builds

As root: starts a throwaway PostgreSQL (scripts/pg.sh), mounts an overlay over / (nothing
written reaches this machine), boots it with systemd-nspawn (private network, the cluster's
Unix socket bound in), and checks in it: dpkg -i leaves the service disabled and inactive;
after the settings are written, systemctl enable --now makes it active with status "ready",
without capabilities, with no_new_privs and a seccomp filter; /readyz answers 200 and a webhook
is stored; installing again restarts it; dpkg -r stops it; dpkg --purge removes /etc/voidrecon
and the unit's enabling. Everything started is stopped and removed at the end. Needs
overlayfs and systemd-nspawn (scripts/setup.sh systemd-container installs it). Services this
machine enables (PostgreSQL, nginx, prometheus, cron, man-db) are masked in the container.
USAGE
}
case "${1:-}" in
    -h | --help) usage; exit 0 ;;
esac
((EUID == 0)) || { echo "check-systemd.sh: run as root" >&2; exit 2; }

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
"$root/scripts/setup.sh" systemd-container
deb=${1:-$("$root/scripts/package.sh")}
[[ -f "$deb" ]] || { echo "check-systemd.sh: no package at $deb" >&2; exit 1; }

work=$(mktemp -d /tmp/vr-systemd-XXXXXX)
chmod 755 "$work" # the cluster's postgres user enters it
merged=$work/merged
nspawn_pid=''
cleanup() {
    if [[ -n "$nspawn_pid" ]] && kill -0 "$nspawn_pid" 2>/dev/null; then
        kill -TERM "$nspawn_pid" 2>/dev/null || true # nspawn powers the container off
        for _ in $(seq 60); do kill -0 "$nspawn_pid" 2>/dev/null || break; sleep 0.5; done
        kill -KILL "$nspawn_pid" 2>/dev/null || true
    fi
    mountpoint -q "$merged" && umount "$merged"
    "$root/scripts/pg.sh" destroy "$work/pg" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

failed=0
check() { # check WHAT EXPECTED ACTUAL
    if [[ "$2" == "$3" ]]; then
        echo "ok: $1 ($3)"
    else
        echo "FAILED: $1: expected '$2', got '$3'"
        failed=1
    fi
}

"$root/scripts/pg.sh" start "$work/pg" --fast >/dev/null
port=$(<"$work/pg/port")
sockdir=$work/pg/run
[[ -f "$work/pg/sockdir" ]] && sockdir=$(<"$work/pg/sockdir")

mkdir -p "$work/upper" "$work/ovl-work" "$merged"
mount -t overlay overlay -o "lowerdir=/,upperdir=$work/upper,workdir=$work/ovl-work" "$merged"
cp "$deb" "$merged/root/voidrecon.deb"
rm -f "$merged/usr/sbin/policy-rc.d" # in the container only: let the package's scripts act
for unit in postgresql.service nginx.service prometheus.service prometheus-node-exporter.service \
    cron.service man-db.service man-db.timer; do
    ln -sf /dev/null "$merged/etc/systemd/system/$unit"
done

systemd-nspawn -D "$merged" -b --private-network --register=no --keep-unit -M vrcheck \
    --bind-ro="$sockdir:/run/vrpg" >"$work/console.log" 2>&1 &
nspawn_pid=$!
leader=''
in_container() { nsenter -t "$leader" -a "$@"; }
for _ in $(seq 120); do
    leader=$(pgrep -P "$nspawn_pid" | head -n1 || true)
    if [[ -n "$leader" ]]; then
        state=$(in_container systemctl is-system-running 2>/dev/null || true)
        [[ "$state" == running || "$state" == degraded ]] && break
    fi
    sleep 0.5
done
[[ -n "$leader" ]] || { cat "$work/console.log"; echo "check-systemd.sh: no container" >&2; exit 1; }

in_container dpkg -i /root/voidrecon.deb >/dev/null
check "after dpkg -i, enabled" disabled "$(in_container systemctl is-enabled voidrecon || true)"
check "after dpkg -i, active" inactive "$(in_container systemctl is-active voidrecon || true)"

echo "VOIDRECON_DATABASE_URL=\"host=/run/vrpg port=$port dbname=voidrecon user=postgres\"" \
    >>"$merged/etc/voidrecon/voidrecon.env"
in_container systemctl enable --now voidrecon 2>/dev/null
check "after enable --now, active" active "$(in_container systemctl is-active voidrecon || true)"
status=$(in_container systemctl show -p StatusText --value voidrecon)
check "status" "ready: listening on http://127.0.0.1:8080" "${status%%;*}"
pid=$(in_container systemctl show -p MainPID --value voidrecon)
proc=$(in_container cat "/proc/$pid/status") # the container's pid, read in its /proc
check "capabilities" 0000000000000000 "$(awk '/^CapEff/ {print $2}' <<<"$proc")"
check "no_new_privs" 1 "$(awk '/^NoNewPrivs/ {print $2}' <<<"$proc")"
check "seccomp" 2 "$(awk '/^Seccomp:/ {print $2}' <<<"$proc")"
check "user" voidrecon "$(in_container ps -o user= -p "$pid")"
check "/readyz" 200 "$(in_container curl -s -o /dev/null -w '%{http_code}' \
    http://127.0.0.1:8080/readyz)"
check "webhook" 200 "$(in_container curl -s -o /dev/null -w '%{http_code}' \
    -H 'Content-Type: application/json' --data-binary \
    '{"type":"order.void","status":-1,"data":{"orderNo":"SYSTEMD1","voidCode":"V","voidStatus":2}}' \
    http://127.0.0.1:8080/webhooks/atlas)"

in_container dpkg -i /root/voidrecon.deb >/dev/null
check "after a second dpkg -i, active" active "$(in_container systemctl is-active voidrecon || true)"
new_pid=$(in_container systemctl show -p MainPID --value voidrecon)
[[ "$new_pid" != "$pid" ]] && restarted=yes || restarted=no
check "restarted by the upgrade" yes "$restarted"

in_container dpkg -r voidrecon >/dev/null
check "after dpkg -r, active" inactive "$(in_container systemctl is-active voidrecon || true)"
in_container dpkg --purge voidrecon >/dev/null
[[ -e "$merged/etc/voidrecon" ]] && etc=left || etc=gone
check "/etc/voidrecon after purge" gone "$etc"
[[ -e "$merged/etc/systemd/system/multi-user.target.wants/voidrecon.service" ]] && wants=left ||
    wants=gone
check "enabling after purge" gone "$wants"

if ((failed)); then
    in_container journalctl -u voidrecon --no-pager -n 50 || true
    echo "check-systemd.sh: FAILED" >&2
    exit 1
fi
echo "check-systemd.sh: all checks passed" >&2
