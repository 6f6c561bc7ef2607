#!/usr/bin/env bash
# Measures what hostile uploads cost: the memory of voidrecon serve while many clients send
# 1 MiB bodies slowly, and the bytes stored per refused 1 MiB request. The same run measures a
# service whose buffered-bytes budget is out of reach as the baseline.
set -euo pipefail

usage() {
    cat <<'USAGE'
usage: scripts/bench-uploads.sh [CONNECTIONS] [SECONDS]    defaults: 1024 8

Starts a PostgreSQL of its own in a temporary folder and, one after the other, two voidrecon
serve on free ports: one with the default VOIDRECON_MAX_BUFFERED_BYTES (64 MiB) and one with
a budget no upload reaches (the baseline). Against each, CONNECTIONS clients declare a 1 MiB
body of a refused kind (unsigned, not JSON) and send it over SECONDS, all at once. Prints per
service: peak and idle resident memory, the answers by status, and the bytes the deliveries
table grew by per stored refusal.
USAGE
}
case "${1:-}" in -h | --help) usage; exit 0 ;; esac
conns=${1:-1024}
secs=${2:-8}

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
"$root/scripts/setup.sh"
# shellcheck source=bench/lib.sh
. "$root/scripts/bench/lib.sh"
bench_start
psql_q() { psql -X -q -At -d "$url" -c "$1"; }
ulimit -n "$(ulimit -Hn)"

run() {
    local label=$1 budget=$2 before after
    bench_serve "$work/serve-$label.log" VOIDRECON_LOG_LEVEL=error \
        VOIDRECON_MAX_BUFFERED_BYTES="$budget" VOIDRECON_MAX_CONNECTIONS=$((conns + 64)) \
        VOIDRECON_HEADER_TIMEOUT_MS=$(((secs + 20) * 1000))
    before=$(psql_q "select pg_total_relation_size('voidrecon.deliveries'), count(*), coalesce(max(id), 0) from voidrecon.deliveries")
    python3 - "$port" "$conns" "$secs" "$svc_pid" "$label" <<'PY'
import os, selectors, socket, sys, time
port, conns, secs, pid, label = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5]
size, chunk = 1024 * 1024, 16 * 1024
head = (b"POST /webhooks/atlas HTTP/1.1\r\nHost: b\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % size)
body = os.urandom(size)  # incompressible, as an attacker would send
def rss(field):
    with open("/proc/%s/status" % pid) as f:
        return next(int(l.split()[1]) // 1024 for l in f if l.startswith(field))
idle = rss("VmRSS:")
sel = selectors.DefaultSelector()
sent, got, counts = {}, {}, {}
def finish(s, status):
    sel.unregister(s)
    s.close()
    del sent[s], got[s]
    counts[status] = counts.get(status, 0) + 1
for _ in range(conns):
    s = socket.create_connection(("127.0.0.1", port))
    s.setblocking(False)
    s.send(head)
    sent[s], got[s] = 0, b""
    sel.register(s, selectors.EVENT_READ)
start = time.monotonic()
while sent and time.monotonic() - start < secs + 30:
    # Every connection has sent its share of the body for the time gone by.
    share = min(size, int((time.monotonic() - start) / secs * size) + chunk)
    for s in list(sent):
        while sent[s] < share:
            try:
                n = s.send(body[sent[s]:sent[s] + min(chunk, share - sent[s])])
            except (BlockingIOError, BrokenPipeError, ConnectionResetError):
                break
            sent[s] += n
    for key, _ in sel.select(timeout=0.05):
        s = key.fileobj
        try:
            data = s.recv(65536)
        except (BlockingIOError, ConnectionResetError):
            data = b""
        got[s] += data
        if b"\r\n\r\n" in got[s]:
            finish(s, got[s][9:12].decode(errors="replace"))
        elif not data:
            finish(s, "closed")
for s in list(sent):
    finish(s, "unanswered")
print("%-9s peak RSS %4d MiB (idle %d MiB); answers: %s" % (
    label, rss("VmHWM:"), idle, ", ".join("%s x%d" % kv for kv in sorted(counts.items()))))
PY
    bench_stop_service
    psql_q "vacuum voidrecon.deliveries" >/dev/null
    IFS='|' read -r size0 count0 last0 <<<"$before"
    after=$(psql_q "select pg_total_relation_size('voidrecon.deliveries'), count(*) from voidrecon.deliveries")
    IFS='|' read -r size1 count1 <<<"$after"
    if ((count1 > count0)); then
        printf '%-9s stored %d refusals: body %s bytes each, row %s bytes, table and indexes +%d bytes each\n' \
            "$label" $((count1 - count0)) \
            "$(psql_q "select round(avg(octet_length(body))) from voidrecon.deliveries where id > $last0")" \
            "$(psql_q "select round(avg(pg_column_size(d.*))) from voidrecon.deliveries d where id > $last0")" \
            $(((size1 - size0) / (count1 - count0)))
    fi
}

echo "bench-uploads: $conns slow 1 MiB uploads over ${secs}s"
run budget 67108864
run baseline $((64 * 1024 * 1024 * 1024))
