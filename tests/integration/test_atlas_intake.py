"""Atlas webhooks through a running `voidrecon serve` into a real PostgreSQL: every rule of the
void-case state machine for webhooks, cancellations, ignored types, and rejected input."""

import itertools
import json
import os
import random
import re
import threading

import pytest

from utils import PsqlSession, Service, eq, join_all, source_dir

DATA = os.path.join(source_dir(), "tests", "data", "atlas")
SEEDS = os.path.join(source_dir(), "tests", "data", "seeds")
PATH = "/webhooks/atlas"


def sample(name):
    with open(os.path.join(DATA, name), "rb") as f:
        return f.read()


def void(order, code, status, message=None):
    data = {"orderNo": order, "voidCode": code, "voidStatus": status}
    if message is not None:
        data["message"] = message
    return {"cid": "XXXXXXX", "type": "order.void", "status": -1, "data": data}


def post(svc, obj, path=PATH, headers=None):
    status, hdrs, body = svc.post_json(path, obj, headers=headers)
    return status, hdrs, json.loads(body) if body else None


def ok(svc, obj):
    status, _, body = post(svc, obj)
    eq(status, 200, "status of %r (body %r)" % (obj, body))
    return body


def case(db, order, code):
    rows = db.query("select status, is_open, confirmed, needs_followup, followup_reason, message,"
                    " reconciled_at is null, next_poll_at is not null"
                    " from voidrecon.void_cases where order_no = :'p1' and void_code = :'p2'",
                    order, code)
    if not rows:
        return None
    r = rows[0]
    return {"status": int(r[0]), "open": r[1] == "t", "confirmed": r[2] == "t",
            "followup": r[3] == "t", "reason": r[4], "message": r[5],
            "reconciled": r[6] == "f", "scheduled": r[7] == "t"}


def outcomes(db, order, code):
    return [r[0] for r in db.query(
        "select outcome from voidrecon.void_case_events"
        " where order_no = :'p1' and void_code = :'p2' order by id", order, code)]


def alerts(db, kind=None):
    sql = "select kind, order_no, void_code, payload from voidrecon.alerts"
    if kind:
        return [r for r in db.query(sql + " where kind = :'p1' order by id", kind)]
    return db.query(sql + " order by id")


def seed_json_blocks(name):
    """The ```json blocks of a seed document, parsed."""
    with open(os.path.join(SEEDS, name), encoding="utf-8") as f:
        text = f.read()
    return [json.loads(b) for b in re.findall(r"```json\n(.*?)```", text, re.S)]


# ---------------------------------------------------------------------------------------------


def test_fixtures_are_the_seed_documents_samples():
    blocks = seed_json_blocks("001_1fc4eb98cefd0adf.txt")
    eq(json.loads(sample("void_success.json")), blocks[0], "typical payload")
    assert json.loads(sample("void_success.json")) in blocks
    assert json.loads(sample("void_retry_failure.json")) in blocks
    cancelled = seed_json_blocks("000_f1f6720dbef326b3.txt")
    eq(json.loads(sample("cancelled_notification.json")), cancelled[0])


def test_seed_sample_answers_200_and_creates_the_case(svc):
    status, hdrs, body = svc.request("POST", PATH, body=sample("void_success.json"),
                                     headers={"Content-Type": "application/json"})
    eq(status, 200)
    eq(hdrs["content-type"], "application/json")
    reply = json.loads(body)
    eq(reply["outcome"], "applied")
    c = case(svc.db, "TESTA20250512100600259", "202505-0012")
    eq(c["status"], 2)
    eq(c["open"], False)
    eq(c["confirmed"], False, "a webhook alone never confirms")
    eq(c["reconciled"], False)
    eq(c["scheduled"], True, "a webhook-reported closing is polled to confirm it")
    eq(c["message"], "Void successful and confirmed by the airline.")
    row = svc.db.query("select provider, event_type, outcome, remote_addr,"
                       " convert_from(body, 'UTF8') from voidrecon.deliveries where id = :'p1'",
                       reply["delivery_id"])[0]
    eq(row[:4], ["atlas", "order.void", "applied", "127.0.0.1"])
    eq(row[4].encode(), sample("void_success.json"), "the raw body is kept byte for byte")
    eq(svc.db.query("select source, reported_status, from_status, to_status, outcome, delivery_id"
                    " from voidrecon.void_case_events"),
       [["webhook", "2", None, "2", "applied", str(reply["delivery_id"])]])


def test_chinese_message_is_kept_as_sent(svc):
    ok(svc, sample("void_zh.json"))
    eq(case(svc.db, "TESTA20250512100600259", "202505-0012")["message"], "废票成功，航司已确认")


def test_lifecycle_in_order(svc):
    for s in (0, 1, 3):
        eq(ok(svc, void("ORD1", "V1", s))["outcome"], "applied")
        c = case(svc.db, "ORD1", "V1")
        eq((c["status"], c["open"], c["scheduled"]), (s, True, True))
    eq(ok(svc, void("ORD1", "V1", 2, "Void successful"))["outcome"], "applied")
    c = case(svc.db, "ORD1", "V1")
    eq((c["status"], c["open"], c["confirmed"], c["followup"]), (2, False, False, False))
    eq(outcomes(svc.db, "ORD1", "V1"), ["applied"] * 4)
    eq([r[0] for r in svc.db.query("select from_status from voidrecon.void_case_events order by id")],
       [None, "0", "1", "3"])
    eq(svc.db.scalar("select count(*) from voidrecon.open_void_cases"), "0")
    eq(alerts(svc.db), [])


def test_first_poll_is_scheduled_from_the_settings(db):
    with Service(db, env={"VOIDRECON_POLL_FIRST_MS": "600000",
                          "VOIDRECON_POLL_CONFIRM_MS": "7000"}) as svc:
        ok(svc, void("ORD2", "V1", 0))
        ok(svc, void("ORD2", "V2", 5))
    delays = dict(db.query("select void_code, round(extract(epoch from next_poll_at - updated_at))"
                           " from voidrecon.void_cases where order_no = 'ORD2'"))
    eq(delays, {"V1": "600", "V2": "7"})


def _final_state(db, order, code):
    c = case(db, order, code)
    return (c["status"], c["open"], c["confirmed"], c["followup"], c["reason"])


def test_duplicated_and_reordered_reports_reach_the_same_state(svc):
    lifecycle = [0, 1, 3, 2]
    ok_order = "CLEAN"
    for s in lifecycle:
        ok(svc, void(ok_order, "V", s))
    want = _final_state(svc.db, ok_order, "V")
    rng = random.Random(7)
    orders = list(itertools.permutations(lifecycle))
    rng.shuffle(orders)
    for i, perm in enumerate(orders[:10]):
        reports = list(perm) + [rng.choice(lifecycle) for _ in range(3)]
        rng.shuffle(reports)
        order = "MIXED%d" % i
        for s in reports:
            eq(post(svc, void(order, "V", s))[0], 200)
        eq(_final_state(svc.db, order, "V"), want, "after %r" % reports)
        got = outcomes(svc.db, order, "V")
        eq(len(got), len(reports), "one history row per report")
        assert set(got) <= {"applied", "duplicate", "stale"}, got
    # Every delivery is kept.
    eq(svc.db.scalar("select count(*) from voidrecon.deliveries"),
       str(len(lifecycle) + sum(len(p) + 3 for p in orders[:10])))


def test_stale_reports_are_recorded_and_ignored(svc):
    ok(svc, void("ST", "V", 3))
    eq(ok(svc, void("ST", "V", 1))["outcome"], "stale")
    eq(ok(svc, void("ST", "V", 0))["outcome"], "stale")
    eq(case(svc.db, "ST", "V")["status"], 3)
    ok(svc, void("ST", "V", 5))
    eq(ok(svc, void("ST", "V", 3))["outcome"], "stale", "an open status after a closing")
    eq(case(svc.db, "ST", "V")["status"], 5)
    eq(svc.db.query("select outcome, reason from voidrecon.deliveries where outcome = 'stale'"
                    " order by id"),
       [["stale", "case was at 3 (AIRLINE_VOIDING)"], ["stale", "case was at 3 (AIRLINE_VOIDING)"],
        ["stale", "case was at 5 (COMPLETED)"]])


def test_conflicting_closings_flag_the_case_and_alert_once(svc):
    ok(svc, void("CF", "V", 2))
    eq(ok(svc, void("CF", "V", 5))["outcome"], "conflict")
    c = case(svc.db, "CF", "V")
    eq((c["status"], c["followup"], c["reason"]), (2, True, "conflict"), "not applied, flagged")
    due = svc.db.scalar("select next_poll_at <= now() from voidrecon.void_cases"
                        " where order_no = 'CF'")
    eq(due, "t", "re-polled at once")
    eq(ok(svc, void("CF", "V", 6))["outcome"], "conflict")
    got = alerts(svc.db)
    eq([(a[0], a[1], a[2]) for a in got], [("void_conflict", "CF", "V")],
       "a second conflict while flagged raises no second alert")
    eq(svc.db.query("select subject, order_no, void_code, reason from voidrecon.followups"),
       [["void_case", "CF", "V", "conflict"]])


def test_rejection_flags_followup_with_exactly_one_alert(svc):
    with PsqlSession(svc.db.url) as listener:
        listener.send("LISTEN voidrecon_alerts;\nSELECT 'listening';\n")
        listener.line_with("listening")
        ok(svc, void("TESTA20250512100600259", "202505-0012", 1))
        reply = ok(svc, sample("void_retry_failure.json"))
        eq(reply["outcome"], "applied")
        eq(ok(svc, sample("void_retry_failure.json"))["outcome"], "duplicate")
        listener.send("SELECT 'done';\n")
        out = listener.finish()
    c = case(svc.db, "TESTA20250512100600259", "202505-0012")
    eq((c["status"], c["followup"], c["reason"]), (4, True, "rejected"))
    got = alerts(svc.db)
    eq(len(got), 1, "a duplicate rejection writes no second alert")
    kind, order, code, payload = got[0]
    eq((kind, order, code), ("void_rejected", "TESTA20250512100600259", "202505-0012"))
    payload = json.loads(payload)
    eq(payload["status"], 4)
    eq(payload["status_name"], "REJECTED")
    eq(payload["message"], "Automatic void processing failed after 10 retries.")
    eq(payload["source"], "webhook")
    notes = re.findall(r'Asynchronous notification "voidrecon_alerts" with payload "(.*)" received',
                       out)
    eq(len(notes), 1, "one NOTIFY for one alert; psql said:\n" + out)
    note = json.loads(notes[0])
    eq((note["kind"], note["order_no"], note["void_code"]),
       ("void_rejected", "TESTA20250512100600259", "202505-0012"))
    eq(note["resolves_alert_id"], None, "a raise, not a resolve")


def test_rejection_as_the_first_report_alerts_too(svc):
    ok(svc, void("RJ", "V", 4, "rejected by the airline"))
    eq([a[0] for a in alerts(svc.db)], ["void_rejected"])
    eq(case(svc.db, "RJ", "V")["followup"], True)


def test_order_cancelled_in_both_spellings(svc):
    eq(ok(svc, sample("cancelled_notification.json"))["outcome"], "applied")
    schema_spelling = {"cid": "c", "type": "order.cancelled",
                       "data": {"orderNo": "TICKETERR1", "orderStatus": -3,
                                "ticketErrorCode": "613",
                                "ticketErrorMessage": "Rejected by Airline Risk Control"}}
    eq(ok(svc, schema_spelling)["outcome"], "applied")
    eq(ok(svc, sample("cancelled_hybrid_guide.json"))["outcome"], "applied")
    eq(ok(svc, sample("cancelled_notification.json"))["outcome"], "duplicate")
    rows = svc.db.query("select provider, order_ref, error_code, error_message, order_status,"
                        " needs_followup from voidrecon.order_cancellations order by id")
    eq(rows, [
        ["atlas", "BCNQL20201031184148568", "604", "Payment declined by airline", "-3", "t"],
        ["atlas", "TICKETERR1", "613", "Rejected by Airline Risk Control", "-3", "t"],
        ["atlas", "{canceled order no}", "604", "Payment declined by airline", None, "t"],
    ])
    got = alerts(svc.db, "order_cancelled")
    eq([a[1] for a in got], ["BCNQL20201031184148568", "TICKETERR1", "{canceled order no}"],
       "one alert per cancellation, none for the repeat")
    eq(json.loads(got[0][3])["error_code"], "604")
    eq(svc.db.scalar("select count(*) from voidrecon.followups where subject = 'order_cancellation'"),
       "3")
    linked = svc.db.scalar("select count(*) from voidrecon.order_cancellations c join"
                           " voidrecon.deliveries d on d.id = c.delivery_id and d.outcome = 'applied'")
    eq(linked, "3")


def test_other_event_types_are_stored_and_acknowledged(svc):
    for name in ("ticketed.json", "airline_status.json"):
        eq(ok(svc, sample(name))["outcome"], "ignored")
    ok(svc, {"type": "order.schedulechange", "data": {"anything": [1, 2]}})
    eq(svc.db.query("select event_type, outcome from voidrecon.deliveries order by id"),
       [["order.ticketed", "ignored"], ["airline.status", "ignored"],
        ["order.schedulechange", "ignored"]])
    eq(svc.db.scalar("select count(*) from voidrecon.void_cases"), "0")


def broken_bodies():
    """tests/data/atlas/broken.tsv: (line number, body, fragment the error must contain)."""
    cases = []
    with open(os.path.join(DATA, "broken.tsv"), encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if line.startswith("#") or not line.strip():
                continue
            body, fragment = line.rstrip("\n").split("\t")
            cases.append((number, body, fragment))
    return cases


BROKEN = broken_bodies()


def test_the_table_of_broken_bodies_is_read():
    assert len(BROKEN) >= 20, BROKEN


@pytest.mark.parametrize("body, fragment", [pytest.param(b, f, id="broken.tsv:%d" % n)
                                            for n, b, f in BROKEN])
def test_malformed_body_gets_400_naming_the_field_and_is_kept_as_rejected(svc, body, fragment):
    status, _, reply = post(svc, body.encode())
    eq(status, 400, "status for %s" % body)
    eq(reply["error"]["code"], "invalid_payload")
    assert fragment in reply["error"]["message"], (fragment, reply)
    rows = svc.db.query("select outcome, reason, convert_from(body, 'UTF8') from"
                        " voidrecon.deliveries order by id")
    eq(len(rows), 1)
    outcome, reason, kept = rows[0]
    eq(outcome, "rejected")
    assert fragment in reason, (fragment, reason)
    eq(kept, body)
    eq(svc.db.scalar("select count(*) from voidrecon.void_cases"), "0", "nothing else changed")
    eq(alerts(svc.db), [])


def test_wrong_content_type_gets_415_and_is_kept(svc):
    body = json.dumps(void("CT", "V", 0)).encode()
    status, _, reply = svc.request("POST", PATH, body=body, headers={"Content-Type": "text/plain"})
    eq(status, 415)
    assert "text/plain" in json.loads(reply)["error"]["message"]
    status, _, _ = svc.request("POST", PATH, body=body,
                               headers={"Content-Type": "Application/JSON; charset=utf-8"})
    eq(status, 200, "media type parameters and case are accepted")
    eq(svc.db.query("select outcome from voidrecon.deliveries order by id"),
       [["rejected"], ["applied"]])


def test_binary_body_is_rejected_and_kept_byte_for_byte(svc):
    junk = bytes(range(256)) * 4
    status, _, _ = svc.request("POST", PATH, body=junk, headers={"Content-Type": "application/json"})
    eq(status, 400)
    eq(svc.db.scalar("select encode(body, 'hex') from voidrecon.deliveries"), junk.hex())


def test_concurrent_reports_of_one_case_all_land(db):
    """Two processes on one database take reports of one case at once: within a process they
    wait for each other (one batch writes a case at a time), across processes the loser of the
    race reads the case again. Rounds go on, each with a new case, until a race was lost."""
    env = {"VOIDRECON_LOG_LEVEL": "debug", "VOIDRECON_DB_POOL_SIZE": "8"}
    statuses = [0, 1, 3, 1, 0, 3, 5, 0, 1, 3] * 3
    with Service(db, env=env) as a, Service(db, env=env) as b:
        for rnd in range(10):
            order = "RACE%d" % rnd
            results = []

            def send(svc, s):
                results.append(post(svc, void(order, "V", s))[0])

            threads = [threading.Thread(target=send, args=((a, b)[i % 2], s))
                       for i, s in enumerate(statuses)]
            for t in threads:
                t.start()
            join_all(threads, 30, "concurrent reports")
            eq(results, [200] * len(statuses))
            eq(len(outcomes(db, order, "V")), len(statuses), "every report is one history row")
            eq(case(db, order, "V")["status"], 5, "the closing wins whatever the order")
            created = db.scalar("select count(*) from voidrecon.void_case_events"
                                " where order_no = '%s' and from_status is null" % order)
            eq(created, "1", "the case was created once")
            retries = [line for svc in (a, b) for line in svc.logs()
                       if line["event"] == "store_retry"]
            if retries:
                break
        assert retries, "the race was exercised: some writes lost and were retried"


TOKEN = "s3cr3t-Token_1"


@pytest.mark.parametrize("path", [PATH, PATH + "/", PATH + "/wrong", PATH + "/" + TOKEN + "x",
                                  PATH + "/" + TOKEN[:-1]])
def test_path_token_is_required_when_configured(db, path):
    with Service(db, env={"VOIDRECON_ATLAS_WEBHOOK_TOKEN": TOKEN}) as svc:
        status, _, reply = post(svc, void("TK", "V", 0), path=path)
        eq(status, 404, path)
        eq(reply["error"]["code"], "not_found")
        eq(post(svc, void("TK", "V", 0), path=PATH + "/" + TOKEN)[0], 200)
        eq(db.scalar("select count(*) from voidrecon.deliveries"), "1", "refused posts are not kept")
        assert TOKEN not in svc.log_text(), "the token never reaches the log"


def test_token_paths_do_not_exist_without_a_token(svc):
    eq(post(svc, void("TK", "V", 1), path=PATH + "/" + TOKEN)[0], 404,
       "no token configured: token paths do not exist")


def test_source_allowlist(db):
    with Service(db, env={"VOIDRECON_ATLAS_ALLOWED_CIDRS": "10.0.0.0/8, 192.168.1.7"}) as svc:
        status, _, reply = post(svc, void("AL", "V", 0))
        eq(status, 403)
        eq(reply["error"]["code"], "forbidden")
        assert "127.0.0.1" in reply["error"]["message"]
    with Service(db, env={"VOIDRECON_ATLAS_ALLOWED_CIDRS": "10.0.0.0/8,127.0.0.0/8"}) as svc:
        eq(post(svc, void("AL", "V", 0))[0], 200)
    eq(db.scalar("select count(*) from voidrecon.deliveries"), "1")


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_webhook_endpoint_only_takes_post(svc, method):
    status, hdrs, body = svc.request(method, PATH)
    eq(status, 405, method)
    eq(hdrs["allow"], "POST")
    eq(json.loads(body)["error"]["code"], "method_not_allowed")


def test_health_and_readiness(svc):
    status, _, body = svc.get("/healthz")
    eq((status, json.loads(body)), (200, {"status": "ok"}))
    status, _, body = svc.get("/readyz")
    eq(status, 200)
    eq(json.loads(body)["status"], "ready")
    status, hdrs, body = svc.request("HEAD", "/healthz")
    eq((status, body, hdrs["content-length"]), (200, b"", "15"))
    status, _, body = svc.get("/nothing-here")
    eq(status, 404)
    eq(json.loads(body)["error"]["code"], "not_found")

