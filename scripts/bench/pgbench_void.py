#!/usr/bin/env python3
"""Writes a pgbench script that runs, for each webhook, the statements voidrecon's store runs
for a report of a new void case: the case read (sql_case_select), then the write
(sql_voids_write, with the report's JSON built in SQL), each in its own transaction, as one
webhook at a time does. The statements are read from src/store/voids.c, so that the two cannot
drift apart. Run it with pgbench -M prepared: the service prepares them too."""
import argparse
import re
import sys

ap = argparse.ArgumentParser(description=__doc__)
ap.add_argument("source", help="src/store/voids.c")
args = ap.parse_args()

text = open(args.source, encoding="utf-8").read()


def statement(name):
    m = re.search(r"static const char %s\[\] =(.*?);\n" % name, text, re.S)
    if not m:
        sys.exit("pgbench_void.py: %s not found in %s" % (name, args.source))
    return "".join(re.findall(r'"((?:[^"\\]|\\.)*)"', m.group(1)))


ORDER = "('PB' || :client_id || '-' || :r)"
BODY = "'{\"cid\":\"BENCH\",\"type\":\"order.void\",\"data\":{\"orderNo\":\"' || %s || '\"}}'" % ORDER
# The report of a new case with status 0 (pending), by an Atlas webhook, as the store sends it.
REPORT = {
    "ord": "'0'", "order_no": ORDER, "void_code": "'V1'", "provider": "'atlas'",
    "event_type": "'order.void'", "remote_addr": "'127.0.0.1'",
    "body": "encode(convert_to(%s, 'UTF8'), 'base64')" % BODY, "outcome": "'applied'",
    "source": "'webhook'", "reported": "'0'", "to_status": "'0'", "confirmed": "'false'",
    "message": "'bench'", "poll_mode": "'at'", "poll_delay_ms": "'300000'",
    "changed": "'true'", "reconciled": "'false'", "status_name": "'PENDING'",
    "has_details": "'false'", "headers": "'{}'", "cid": "'BENCH'", "in_feed": "'true'",
}
report = "jsonb_build_array(jsonb_build_object(%s))" % ", ".join(
    "'%s', %s" % kv for kv in REPORT.items())

select = statement("sql_case_select").replace("$1::text", ORDER).replace("$2::text", "'V1'")
write = statement("sql_voids_write").replace("$1::jsonb", report)
print("\\set r random(1, 1000000000000)")
print(select + ";")
print(write + ";")
