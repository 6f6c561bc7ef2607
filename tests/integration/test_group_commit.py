"""Group commit writes exactly what one transaction per webhook writes: the same random stream
of Atlas webhooks (duplicates, reorders, conflicts, rejections, several reports of a case in one
batch, ignored types, cancellations, malformed bodies) goes to a service with
VOIDRECON_WRITE_BATCH=1 and to one with the default, and the tables are compared row for row.
For the second, a lock held on the deliveries table makes the stream queue up, so that it is
written in a few large batches; the writer's counters in /metrics show that it was."""
import json
import random
import re
import threading

from utils import PsqlSession, Service, eq, join_all, metrics_of, wait_until

PATH = "/webhooks/atlas"
SEED = random.randrange(1 << 30)


def stream(seed, n=90):
    """n webhook bodies, each naming its place in the stream (seq), over a few cases."""
    rng = random.Random(seed)
    cases = [("GC%d" % i, "V%d" % (i % 3)) for i in range(12)]
    out = []
    for seq in range(n):
        kind = rng.random()
        if kind < 0.06:
            body = {"cid": "C1", "type": "order.ticketed", "seq": seq, "data": {"orderNo": "T"}}
        elif kind < 0.12:
            body = {"cid": "C1", "type": "order.cancelled", "seq": seq,
                    "data": {"orderNo": "CX%d" % rng.randrange(3), "orderStatus": -3,
                             "errorCode": "604", "errorMessage": "declined"}}
        elif kind < 0.16:
            out.append(('{"type": "order.void", "seq": %d, "data": {"orderNo": 7}}' % seq)
                       .encode())
            continue
        else:
            order, code = rng.choice(cases)
            # Mostly forward, with repeats, steps back, rejections (4) and closings (5, 6).
            status = rng.choice([0, 0, 1, 1, 2, 3, 3, 4, 5, 5, 6])
            data = {"orderNo": order, "voidCode": code, "voidStatus": status}
            if rng.random() < 0.7:
                data["message"] = "m%d" % rng.randrange(4)
            body = {"cid": rng.choice(["C1", "C2"]), "type": "order.void", "status": -1,
                    "seq": seq, "data": data}
        out.append(json.dumps(body).encode())
    return out


def snapshot(db):
    """Every row the stream wrote, with ids turned into places in the stream (a delivery's seq)
    or into the order of rows within their case, and times into whether they are set."""
    seq_of = {}
    for did, body in db.query("select id, convert_from(body, 'UTF8') from voidrecon.deliveries"):
        seq_of[did] = int(re.search(r'"seq": (\d+)', body).group(1))
    deliveries = sorted(
        [seq_of[r[0]]] + r[1:] for r in db.query(
            "select id, provider, event_type, outcome, reason, body_length, encode(body_sha256,"
            " 'hex'), headers::text, replay_of, cid from voidrecon.deliveries"))
    cases = db.query(
        "select order_no, void_code, status, confirmed, message, needs_followup,"
        " followup_reason, followup_acked_at is null, version, is_open, reconciled_at is null,"
        " next_poll_at is null, cid, polls from voidrecon.void_cases order by 1, 2")
    events = [r[:2] + [seq_of.get(r[2])] + r[3:] for r in db.query(
        "select order_no, void_code, delivery_id, source, reported_status, from_status,"
        " to_status, outcome, message, reconciled, in_feed from voidrecon.void_case_events"
        " order by order_no, void_code, id")]
    alerts = db.query(
        "select kind, order_no, void_code, (payload - 'raised_at')::text"
        " from voidrecon.alerts order by order_no, void_code, id")
    followups = [r[:3] + [seq_of.get(r[3])] + r[4:] for r in db.query(
        "select f.order_no, f.void_code, f.reason, f.delivery_id, a.kind,"
        " (a.payload - 'raised_at')::text"
        " from voidrecon.case_followups f left join voidrecon.alerts a on a.id = f.alert_id"
        " order by 1, 2, 3")]
    cancellations = db.query(
        "select provider, order_ref, error_code, error_message, order_status, needs_followup"
        " from voidrecon.order_cancellations order by provider, order_ref")
    cancelled_by = sorted(seq_of[r[0]] for r in db.query(
        "select delivery_id from voidrecon.order_cancellations"))
    return {"deliveries": deliveries, "cases": cases, "events": events, "alerts": alerts,
            "followups": followups, "cancellations": cancellations,
            "cancelled_by": cancelled_by}


def writer(svc):
    m = metrics_of(svc)
    return {k: int(m["voidrecon_" + k]) for k in
            ("write_queue", "write_in_flight", "write_batches_total",
             "write_batch_items_total")}


def send_queued(db, bodies, env=None):
    """Posts bodies to a service of default settings on db, each once the one before waits in
    the writer, behind a lock on deliveries that holds the first batches; then lets go. Returns
    the answers' statuses and the writer's figures at the end."""
    env = dict(env or {}, VOIDRECON_DB_TIMEOUT_MS="60000", VOIDRECON_DB_POOL_SIZE="4")
    with Service(db, env=env) as svc, PsqlSession(db.url) as lock:
        lock.send("BEGIN; LOCK TABLE voidrecon.deliveries IN EXCLUSIVE MODE;"
                  " SELECT 'locked' AS state;\n")
        lock.line_with("locked")
        answers = [None] * len(bodies)

        def send(i):
            answers[i] = svc.post_json(PATH, bodies[i], timeout=60)[0]

        threads = []
        for i in range(len(bodies)):
            threads.append(threading.Thread(target=send, args=(i,)))
            threads[-1].start()
            # The next webhook is sent once this one waits in the writer: arrival in order.
            wait_until(lambda: sum(writer(svc)[k] for k in ("write_queue", "write_in_flight"))
                       == i + 1, 10, "webhook %d queued" % i)
        lock.send("COMMIT;\n")
        join_all(threads, 60, "webhooks")
        return answers, writer(svc)


def test_batches_write_what_one_at_a_time_writes(pg):
    bodies = stream(SEED)
    print("seed", SEED)

    one = pg.new_db()
    with Service(one, env={"VOIDRECON_WRITE_BATCH": "1"}) as svc:
        answers_one = [svc.post_json(PATH, b)[0] for b in bodies]
        w = writer(svc)
        eq(w["write_batches_total"], w["write_batch_items_total"], "batch=1 writes one by one")
    assert 400 in answers_one and 200 in answers_one, answers_one

    many = pg.new_db()
    answers, w = send_queued(many, bodies)
    eq(answers, answers_one, "the same answers (seed %d)" % SEED)
    print("writer", w)
    assert w["write_batches_total"] <= 6, ("a few large batches", w)
    eq(w["write_batch_items_total"], len(bodies), "every webhook was one write")
    a, b = snapshot(one), snapshot(many)
    for table in a:
        eq(b[table], a[table], "%s (seed %d)" % (table, SEED))


def test_an_item_the_database_refuses_fails_alone(pg):
    """A report the database refuses for good (a trigger stands for any such refusal) in the
    middle of a batch: it gets 500 and is kept as failed; the batch is written again without
    it, and every other report of the batch is answered and written normally."""
    db = pg.new_db()
    db.query("create function vr_test_refuse() returns trigger language plpgsql as $$"
             " begin if new.order_no = 'REFUSED' then raise exception 'refused by a trigger';"
             " end if; return new; end $$;"
             " create trigger vr_test_refuse before insert on voidrecon.void_cases"
             " for each row execute function vr_test_refuse()")
    orders = ["OK%d" % i for i in range(6)] + ["REFUSED"] + ["OK%d" % i for i in range(6, 12)]
    bodies = [json.dumps({"type": "order.void", "seq": i,
                          "data": {"orderNo": o, "voidCode": "V", "voidStatus": 1}}).encode()
              for i, o in enumerate(orders)]
    answers, w = send_queued(db, bodies)
    eq(answers, [500 if o == "REFUSED" else 200 for o in orders])
    assert w["write_batches_total"] < len(orders), ("written in batches", w)
    eq(sorted(r[0] for r in db.query("select order_no from voidrecon.void_cases")),
       sorted(o for o in orders if o != "REFUSED"))
    rows = db.query("select outcome, reason from voidrecon.deliveries"
                    " where convert_from(body, 'UTF8') like '%REFUSED%'")
    eq([r[0] for r in rows], ["failed"])
    assert "refused by a trigger" in rows[0][1], rows
    eq(db.scalar("select count(*) from voidrecon.deliveries where outcome = 'applied'"),
       str(len(orders) - 1))


def test_two_processes_writing_the_same_cases_lose_nothing(pg):
    """Two processes take reports of the same cases at once: a batch whose statement finds a
    case changed by the other process answers the reports it wrote and runs the rest again.
    Six rounds, each with new cases; at least one race must have been lost."""
    db = pg.new_db()
    env = {"VOIDRECON_LOG_LEVEL": "debug"}
    rng = random.Random(SEED)
    with Service(db, env=env) as a, Service(db, env=env) as b:
        for rnd in range(6):
            reports = [("R%d-%d" % (rnd, c), s) for c in range(20) for s in (0, 1, 3, 5)]
            rng.shuffle(reports)
            answers = []

            def send(svc, order, status):
                body = {"type": "order.void", "seq": 0,
                        "data": {"orderNo": order, "voidCode": "V", "voidStatus": status}}
                answers.append(svc.post_json(PATH, body)[0])

            threads = [threading.Thread(target=send, args=((a, b)[i % 2], o, s))
                       for i, (o, s) in enumerate(reports)]
            for t in threads:
                t.start()
            join_all(threads, 60, "reports")
            eq(answers, [200] * len(reports))
            eq(db.scalar("select count(*) from voidrecon.void_case_events"
                         " where order_no like 'R%d-%%'" % rnd), str(len(reports)),
               "every report is one history row")
            eq(db.query("select distinct status from voidrecon.void_cases"
                        " where order_no like 'R%d-%%'" % rnd), [["5"]],
               "the closing wins whatever the order")
        assert any(line["event"] == "store_retry" for svc in (a, b) for line in svc.logs()), \
            "a race was lost"


def test_a_connection_whose_prepared_statements_are_gone_prepares_them_again(pg):
    """Prepared statements can vanish under a session (DISCARD ALL, a pooler in transaction
    mode): the write that finds its statement gone gets 503, to be sent again, and the next
    prepares it anew. A trigger stands for what dropped them."""
    db = pg.new_db()
    db.query("create function vr_test_dealloc() returns trigger language plpgsql as $$"
             " begin if new.order_no = 'DEALLOC' then execute 'DEALLOCATE ALL'; end if;"
             " return new; end $$;"
             " create trigger vr_test_dealloc before insert on voidrecon.void_cases"
             " for each row execute function vr_test_dealloc()")

    def void(order):
        return {"type": "order.void", "data": {"orderNo": order, "voidCode": "V", "voidStatus": 1}}

    with Service(db, env={"VOIDRECON_DB_POOL_SIZE": "1"}) as svc:
        eq(svc.post_json(PATH, void("DEALLOC"))[0], 200)
        eq(svc.post_json(PATH, void("AFTER1"))[0], 503, "the statement was gone")
        eq(svc.post_json(PATH, void("AFTER1"))[0], 200, "prepared again")
        eq(svc.post_json(PATH, void("AFTER2"))[0], 200)
    eq(sorted(r[0] for r in db.query("select order_no from voidrecon.void_cases")),
       ["AFTER1", "AFTER2", "DEALLOC"])


def test_a_batch_that_waits_for_a_case_reads_it_as_committed(pg):
    """A batch locking a case that another transaction holds (here an acknowledgement made by
    hand) must decide on the case as that transaction left it, follow-ups included: the
    conflict acknowledged meanwhile is raised again, with a new alert."""
    db = pg.new_db()
    with Service(db) as svc:
        def post(order, status):
            return svc.post_json(PATH, {"type": "order.void", "data": {
                "orderNo": order, "voidCode": "V", "voidStatus": status}}, timeout=60)[0]

        eq(post("X", 2), 200)
        eq(post("X", 5), 200)
        eq(db.scalar("select count(*) from voidrecon.alerts where kind = 'void_conflict'"), "1")
        with PsqlSession(db.url) as ack, PsqlSession(db.url) as lock:
            ack.send("BEGIN; DELETE FROM voidrecon.case_followups WHERE order_no = 'X';"
                     " UPDATE voidrecon.void_cases SET needs_followup = false,"
                     " followup_acked_at = now(), version = version + 1 WHERE order_no = 'X';"
                     " SELECT 'acked' AS state;\n")
            ack.line_with("acked")
            lock.send("BEGIN; LOCK TABLE voidrecon.deliveries IN EXCLUSIVE MODE;"
                      " SELECT 'locked' AS state;\n")
            lock.line_with("locked")
            answers = {}
            threads = []
            # Two batches wait on the deliveries lock; the two reports of X queue behind them
            # and become one batch of two statements, which locks X.
            for i, (order, status) in enumerate([("Z1", 1), ("Z2", 1), ("X", 6), ("X", 6)]):
                threads.append(threading.Thread(
                    target=lambda i=i, o=order, s=status: answers.__setitem__(i, post(o, s))))
                threads[-1].start()
                wait_until(lambda: sum(writer(svc)[k] for k in ("write_queue", "write_in_flight"))
                           == i + 1, 10, "report %d queued" % i)
            lock.send("COMMIT;\n")
            wait_until(lambda: db.scalar(
                "select count(*) from pg_stat_activity where application_name = 'voidrecon'"
                " and wait_event_type = 'Lock'") == "1", 10, "the batch waiting for X")
            ack.send("COMMIT;\n")
            join_all(threads, 60, "reports")
    eq(answers, {0: 200, 1: 200, 2: 200, 3: 200})
    eq(db.scalar("select count(*) from voidrecon.alerts where kind = 'void_conflict'"), "2",
       "the conflict, acknowledged meanwhile, raised again")
    eq(db.query("select reason from voidrecon.case_followups where order_no = 'X'"),
       [["conflict"]])
