"""At a million open cases, every /v1 listing and the poller's lease find their rows through an
index: the statements the service runs (taken from its source, macros expanded by the C
preprocessor) are planned and run with EXPLAIN ANALYZE on a database filled to that size, and
no plan reads a big table whole or filters more than a page's worth of rows away."""
import json
import os
import re
import subprocess

import pytest

from utils import TRACK, eq, psql, source_dir

CASES = 1_000_000
ALERTS = 200_000
DELIVERIES = 200_000
PAGE = 50


def statements(path):
    """The static const char sql_*[] statements of a C file of the store, as the compiler sees
    them: the file preprocessed, then its adjacent string literals joined."""
    root = source_dir()
    out = subprocess.run(
        ["cc", "-E", "-P", "-I", os.path.join(root, "include"), "-I",
         os.path.join(root, "src", "store"), "-I", "/usr/include/postgresql",
         os.path.join(root, path)],
        capture_output=True, text=True, timeout=60, check=True).stdout
    found = {}
    for m in re.finditer(r"static const char (sql_\w+)\[\] =(.*?);", out, re.S):
        found[m.group(1)] = "".join(
            bytes(s, "utf-8").decode("unicode_escape")
            for s in re.findall(r'"((?:[^"\\]|\\.)*)"', m.group(2)))
    return found


FILL = """
INSERT INTO voidrecon.void_cases (order_no, void_code, status, confirmed, next_poll_at,
                                  needs_followup, followup_reason)
SELECT 'S' || lpad(g::text, 8, '0'), 'V' || (g % 3),
       CASE WHEN g % 2000 = 0 THEN 4 ELSE 1 END, false,
       CASE WHEN g % 2000 = 0 THEN NULL
            ELSE now() + (g % 100000 - 500) * interval '1 second' END,
       g % 2000 = 0 OR g % 5000 = 1, CASE WHEN g % 2000 = 0 THEN 'rejected'
                                          WHEN g % 5000 = 1 THEN 'stuck' END
  FROM generate_series(1, {cases}) AS g;
INSERT INTO voidrecon.case_followups (order_no, void_code, reason)
SELECT order_no, void_code, followup_reason FROM voidrecon.void_cases WHERE needs_followup;
INSERT INTO voidrecon.deliveries (provider, event_type, remote_addr, body, outcome,
                                  body_length, body_sha256)
SELECT CASE WHEN g % 50 = 0 THEN 'xsolla' ELSE 'atlas' END, 'order.void', '127.0.0.1',
       '\\x7b7d', CASE WHEN g % 400 = 0 THEN 'rejected' ELSE 'applied' END, 2,
       sha256('\\x7b7d')
  FROM generate_series(1, {deliveries}) AS g;
INSERT INTO voidrecon.alerts (kind, order_no, void_code, payload, delivered_at)
SELECT 'void_rejected', 'S' || lpad(g::text, 8, '0'), 'V1', '{{}}',
       CASE WHEN g % 2000 <> 0 THEN now() END
  FROM generate_series(1, {alerts}) AS g;
ANALYZE voidrecon.void_cases;
ANALYZE voidrecon.case_followups;
ANALYZE voidrecon.deliveries;
ANALYZE voidrecon.alerts;
"""

BIG = {"void_cases", "deliveries", "alerts", "case_followups"}


def walk(node):
    yield node
    for child in node.get("Plans", []):
        yield from walk(child)


def explain(db, sql, args):
    """EXPLAIN ANALYZE of sql planned with args, as the service's unnamed statements are; in a
    transaction rolled back, so that the lease changes nothing."""
    literal = ", ".join("NULL" if a is None else "'%s'" % a for a in args)
    rows = db.query("BEGIN;\nPREPARE q AS %s;\n"
                    "EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE q(%s);\nROLLBACK;" % (sql, literal))
    return json.loads(rows[-1][0])[0]["Plan"]


@pytest.fixture(scope="module")
def big(pg):
    db = pg.new_db()
    TRACK.dbs.remove(db)  # kept for the module's tests, dropped below
    try:
        psql(db.url, FILL.format(cases=CASES, deliveries=DELIVERIES, alerts=ALERTS), timeout=600)
        yield db
    finally:
        TRACK.dbs.append(db)
        db.drop()


LISTINGS = statements("src/store/listings.c")
DELIVERY_LISTINGS = statements("src/store/deliveries.c")
POLLING = statements("src/store/polling.c")

CASES_ARGS = [("open", PAGE, None), ("followup", PAGE, None), ("rejected", PAGE, None),
              ("all", PAGE, None)]


@pytest.mark.parametrize("name, sql, args", [
    *[("cases state=%s" % a[0], LISTINGS["sql_cases_list"], a) for a in CASES_ARGS],
    ("alerts state=pending", LISTINGS["sql_alerts_list"], ("pending", PAGE, None)),
    ("alerts state=all", LISTINGS["sql_alerts_list"], ("all", PAGE, None)),
    ("alerts state=delivered", LISTINGS["sql_alerts_list"], ("delivered", PAGE, None)),
    ("deliveries", DELIVERY_LISTINGS["sql_deliveries_list"], (None, None, PAGE, None)),
    ("deliveries provider=xsolla", DELIVERY_LISTINGS["sql_deliveries_list"],
     ("xsolla", None, PAGE, None)),
    ("deliveries outcome=rejected", DELIVERY_LISTINGS["sql_deliveries_list"],
     (None, "rejected", PAGE, None)),
    ("poller lease", POLLING["sql_lease_due"], (100, 60000, 1000, 10000, 300000)),
], ids=lambda v: v if isinstance(v, str) and not v.startswith(("WITH", "SELECT")) else "")
def test_index_served_at_a_million_open_cases(big, name, sql, args):
    eq(big.scalar("select count(*) from voidrecon.void_cases where is_open") != "0", True)
    plan = explain(big, sql, args)
    for node in walk(plan):
        rel = node.get("Relation Name")
        assert not (node["Node Type"] == "Seq Scan" and rel in BIG), (name, "reads all", rel)
        assert node.get("Rows Removed by Filter", 0) <= 4 * PAGE, (
            name, "filters rows away instead of finding them", node["Node Type"], rel,
            node.get("Index Name"), node.get("Rows Removed by Filter"))
    print(name, "%.2f ms" % plan["Actual Total Time"])
