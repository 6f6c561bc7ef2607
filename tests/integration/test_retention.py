"""Retention: old deliveries and the history rows that changed nothing are pruned, by serve on
its timer (one process at a time) and by `voidrecon prune`; cases, their status changes,
alerts, acknowledgements, and what a waiting follow-up refers to are kept."""

import json
import os
import subprocess

from utils import PsqlSession, Service, eq, metrics_of, voidrecon_bin, wait_until

DAY_MS = 86400000
# "voidprun" in ASCII: the advisory lock of every prune batch (README, Retention).
PRUNE_LOCK = 8534155698994574702
FAST = {"VOIDRECON_PRUNE_INTERVAL_MS": "100",
        # Two rows a batch: a run takes several, and passes over the kept ones between them.
        "VOIDRECON_PRUNE_BATCH": "2"}


def void(order, status, code="V1"):
    return {"cid": "C", "type": "order.void", "status": -1,
            "data": {"orderNo": order, "voidCode": code, "voidStatus": status,
                     "message": "status %d" % status}}


def cancelled(order):
    return {"cid": "C", "type": "order.cancelled",
            "data": {"orderNo": order, "orderStatus": -3, "errorCode": "604",
                     "errorMessage": "Payment declined by airline"}}


def post(svc, body):
    """Posts an Atlas webhook; returns (outcome, delivery id)."""
    status, _, reply = svc.post_json("/webhooks/atlas", body)
    eq(status, 200, "answer to %r" % body)
    reply = json.loads(reply)
    return reply["outcome"], int(reply["delivery_id"])


def age(db, days, deliveries=True, events=True):
    """Makes every delivery and history row days older."""
    if deliveries:
        db.query("update voidrecon.deliveries"
                 " set received_at = received_at - :'p1'::int * interval '1 day'", days)
    if events:
        db.query("update voidrecon.void_case_events set at = at - :'p1'::int * interval '1 day'",
                 days)


def ids(db, sql, *params):
    return sorted(int(r[0]) for r in db.query(sql, *params))


def delivery_ids(db):
    return ids(db, "select id from voidrecon.deliveries")


def cli(db, *args, env=None):
    merged = {k: v for k, v in os.environ.items() if not k.startswith("VOIDRECON_")}
    merged["VOIDRECON_DATABASE_URL"] = db.url
    merged.update(env or {})
    return subprocess.run([voidrecon_bin()] + list(args), env=merged, capture_output=True,
                          text=True, timeout=30)


def snapshot(db):
    """What retention must never change: the cases, the status changes of their history, the
    alerts and the acknowledgements."""
    return {
        "cases": db.query("select order_no, void_code, status, confirmed, needs_followup,"
                          " followup_reason, version from voidrecon.void_cases order by 1, 2"),
        "changes": db.query("select id, order_no, void_code, source, reported_status,"
                            " from_status, to_status, outcome, message from"
                            " voidrecon.void_case_events where from_status is distinct from"
                            " to_status or outcome not in ('duplicate', 'stale') order by id"),
        "alerts": db.query("select id, kind, order_no, void_code from voidrecon.alerts"
                           " order by id"),
        "acks": db.query("select * from voidrecon.acknowledgements order by id"),
        "cancellations": db.query("select id, provider, order_ref, needs_followup from"
                                  " voidrecon.order_cancellations order by id"),
    }


def pruned_metric(svc, table):
    return metrics_of(svc)['voidrecon_pruned_rows_total{table="%s"}' % table]


# ---- delivery retention in serve ---------------------------------------------------------------


def test_old_deliveries_go_and_cases_history_alerts_and_waiting_followups_stay(db):
    env = dict(FAST, VOIDRECON_DELIVERY_RETENTION_MS=str(DAY_MS), VOIDRECON_LOG_LEVEL="debug")
    with Service(db, env=env) as svc:
        # Oldest first: what a waiting follow-up refers to comes before what goes, so that the
        # batches have to pass over it.
        waiting = [post(svc, void("REJ-OPEN", 0))[1], post(svc, void("REJ-OPEN", 4))[1]]
        waiting.append(post(svc, cancelled("CXL-OPEN"))[1])
        later_acked = [post(svc, void("REJ-ACKED", 0))[1], post(svc, void("REJ-ACKED", 4))[1]]
        cxl_acked = post(svc, cancelled("CXL-ACKED"))[1]
        done = [post(svc, void("DONE", 0))[1], post(svc, void("DONE", 2))[1]]
        eq(post(svc, void("DONE", 2))[0], "duplicate")
        eq(post(svc, void("DONE", 1))[0], "stale")
        eq(svc.post_json("/webhooks/atlas", b'{"type":"order.void"}')[0], 400)
        eq(post(svc, {"cid": "C", "type": "order.ticketed", "data": {}})[0], "ignored")
        r = cli(db, "cases", "ack", "REJ-ACKED", "V1", "--by", "ops")
        eq(r.returncode, 0, r.stderr)
        db.query("update voidrecon.order_cancellations set needs_followup = false,"
                 " followup_acked_at = now() where order_ref = 'CXL-ACKED'")
        before = snapshot(db)
        events_before = db.query("select id, delivery_id from voidrecon.void_case_events")
        total = len(delivery_ids(db))
        eq(total, 12, "deliveries stored")
        # A run goes by while everything is younger than a day, and removes nothing.
        svc.wait_log("prune_nothing", timeout=10)
        eq(len(delivery_ids(db)), total)

        age(db, 2)
        wait_until(lambda: delivery_ids(db) == sorted(waiting), timeout=10,
                   what="the old deliveries pruned")
        assert ("removed %d deliveries and 0 unchanged history rows" % (total - len(waiting))
                in svc.wait_log("pruned")["msg"]), svc.log_tail()
        eq(pruned_metric(svc, "deliveries"), total - len(waiting), "pruned deliveries counted")
        eq(pruned_metric(svc, "void_case_events"), 0, "event retention is off")

        # Cases, status changes, alerts, acknowledgements and cancellations are all there.
        eq(snapshot(db), before)
        # Every history row is still there; those of pruned deliveries lost only the link.
        after = dict((r[0], r[1]) for r in db.query(
            "select id, delivery_id from voidrecon.void_case_events"))
        eq(sorted(after), sorted(r[0] for r in events_before))
        for event_id, delivery_id in events_before:
            want = delivery_id if delivery_id is not None and int(delivery_id) in waiting else None
            eq(after[event_id], want, "delivery_id of event %s" % event_id)
        eq(db.query("select order_ref, delivery_id from voidrecon.order_cancellations"
                    " order by order_ref"),
           [["CXL-ACKED", None], ["CXL-OPEN", str(waiting[2])]])
        assert cxl_acked not in delivery_ids(db) and not set(done + later_acked) & set(
            delivery_ids(db))

        # Acknowledged, the rejected case's deliveries go at the next run.
        r = cli(db, "cases", "ack", "REJ-OPEN", "V1", "--by", "ops")
        eq(r.returncode, 0, r.stderr)
        wait_until(lambda: delivery_ids(db) == [waiting[2]], timeout=10,
                   what="the acknowledged case's deliveries pruned")
        eq(pruned_metric(svc, "deliveries"), total - 1)


def test_event_retention_prunes_only_the_rows_that_changed_nothing(db):
    env = dict(FAST, VOIDRECON_DELIVERY_RETENTION_MS="0", VOIDRECON_EVENT_RETENTION_MS=str(DAY_MS))
    with Service(db, env=env) as svc:
        outcomes = [post(svc, void("EV", s))[0] for s in (0, 0, 3, 1, 3, 2, 2, 5)]
        eq(outcomes, ["applied", "duplicate", "applied", "stale", "duplicate", "applied",
                      "duplicate", "conflict"])
        post(svc, void("EV", 0, code="OTHER"))
        deliveries = delivery_ids(db)
        changes = db.query("select id from voidrecon.void_case_events"
                           " where outcome not in ('duplicate', 'stale') order by id")
        eq(len(changes), 5)  # created, 0 -> 3, 3 -> 2, the conflict, the other case
        # The poll that confirms a closing changes no status, but it is when the void finished
        # for the change feed: it stays as long as the case.
        db.query("insert into voidrecon.void_case_events (order_no, void_code, source,"
                 " reported_status, from_status, to_status, outcome, reconciled, in_feed)"
                 " values ('EV', 'V1', 'poll', 2, 2, 2, 'duplicate', true, true)")
        changes.append([db.scalar("select max(id) from voidrecon.void_case_events")])
        age(db, 2, deliveries=False)
        # A duplicate recorded after the back-dating is young, and stays.
        eq(post(svc, void("EV", 2))[0], "duplicate")
        young = int(db.scalar("select max(id) from voidrecon.void_case_events"))

        wait_until(lambda: db.scalar("select count(*) from voidrecon.void_case_events") == "7",
                   timeout=10, what="the unchanged rows pruned")
        eq(db.query("select id from voidrecon.void_case_events order by id"),
           changes + [[str(young)]])
        eq(db.query("select outcome, from_status, to_status from voidrecon.void_case_events"
                    " where order_no = 'EV' and void_code = 'V1' order by id"),
           [["applied", None, "0"], ["applied", "0", "3"], ["applied", "3", "2"],
            ["conflict", "2", "2"], ["duplicate", "2", "2"], ["duplicate", "2", "2"]])
        eq(len(delivery_ids(db)), len(deliveries) + 1, "deliveries are kept (retention 0)")
        eq(pruned_metric(svc, "void_case_events"), 4)
        eq(pruned_metric(svc, "deliveries"), 0)
        assert "removed 0 deliveries and 4 unchanged history rows" in svc.wait_log("pruned")["msg"]


# ---- voidrecon prune ---------------------------------------------------------------------------


def insert_old_deliveries(db, n, days=100):
    db.query("insert into voidrecon.deliveries (provider, body, outcome, received_at)"
             " select 'atlas', convert_to('{}', 'UTF8'), 'ignored',"
             "        now() - :'p2'::int * interval '1 day'"
             "   from generate_series(1, :'p1'::int)", n, days)


def test_prune_command_removes_to_the_end_and_prints_the_counts(db):
    insert_old_deliveries(db, 7, days=100)
    insert_old_deliveries(db, 2, days=10)
    r = cli(db, "prune", "--prune-batch=3")
    eq(r.returncode, 0, r.stderr)
    lines = r.stdout.splitlines()
    eq(lines[0].split()[:3], ["deliveries", "7", "removed"], r.stdout)
    eq(lines[1].split()[:2], ["void_case_events", "kept"], r.stdout)
    eq(db.scalar("select count(*) from voidrecon.deliveries"), "2")

    r = cli(db, "prune", "--json", "--delivery-retention-ms=%d" % (5 * DAY_MS),
            "--event-retention-ms=1")
    eq(r.returncode, 0, r.stderr)
    doc = json.loads(r.stdout)
    eq((doc["deliveries"], doc["void_case_events"]), (2, 0))
    eq(db.scalar("select count(*) from voidrecon.deliveries"), "0")

    r = cli(db, "prune", "--json")
    eq((r.returncode, json.loads(r.stdout)["deliveries"]), (0, 0), r.stderr)


def test_prune_command_waits_for_the_lock_and_says_when_it_never_comes(db):
    insert_old_deliveries(db, 3)
    with PsqlSession(db.url) as holder:
        holder.send("select 'held', pg_advisory_lock(%d);\n" % PRUNE_LOCK)
        holder.line_with("held")
        r = cli(db, "prune", "--db-timeout-ms=1000")
        eq(r.returncode, 1, r.stdout)
        assert "prune_busy" in r.stderr and "lock" in r.stderr, r.stderr
        eq(db.scalar("select count(*) from voidrecon.deliveries"), "3")
        holder.finish()
    r = cli(db, "prune")
    eq(r.returncode, 0, r.stderr)
    eq(db.scalar("select count(*) from voidrecon.deliveries"), "0")


# ---- one process at a time ---------------------------------------------------------------------


def test_serve_processes_prune_only_with_the_lock_and_never_two_at_once(db):
    insert_old_deliveries(db, 40)
    env = dict(FAST, VOIDRECON_LOG_LEVEL="debug", VOIDRECON_DELIVERY_RETENTION_MS=str(DAY_MS))
    with PsqlSession(db.url) as holder:
        holder.send("select 'held', pg_advisory_lock(%d);\n" % PRUNE_LOCK)
        holder.line_with("held")
        services = [Service(db, env=env) for _ in range(2)]
        # Both have tried, and found the lock taken: nothing is pruned while it is held.
        for svc in services:
            svc.wait_log("prune_busy", timeout=10)
        eq(db.scalar("select count(*) from voidrecon.deliveries"), "40")
        # Seen from the database: the only holder of the lock is this session.
        eq(db.scalar("select count(*) from pg_locks where locktype = 'advisory' and granted"
                     " and (classid::bigint << 32 | objid::bigint) = :'p1'", PRUNE_LOCK), "1")
        holder.finish()
    wait_until(lambda: db.scalar("select count(*) from voidrecon.deliveries") == "0",
               timeout=10, what="the deliveries pruned once the lock is free")
    # Together they removed each delivery once.
    eq(sum(pruned_metric(svc, "deliveries") for svc in services), 40)
    for svc in services:
        svc.stop()


def test_serve_leaves_pruning_to_the_prune_command_when_its_interval_is_0(db):
    insert_old_deliveries(db, 3)
    with Service(db, env={"VOIDRECON_PRUNE_INTERVAL_MS": "0"}) as svc:
        assert "VOIDRECON_PRUNE_INTERVAL_MS is 0" in svc.wait_log("retention_off")["msg"]
        eq(db.scalar("select count(*) from voidrecon.deliveries"), "3")
        eq(pruned_metric(svc, "deliveries"), 0)
        r = cli(db, "prune", "--prune-interval-ms=0")
        eq(r.returncode, 0, r.stderr)
        eq(r.stdout.split()[:3], ["deliveries", "3", "removed"], r.stdout)
