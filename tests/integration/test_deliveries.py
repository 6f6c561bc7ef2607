"""Deliveries as an operator sees them: the listing and one delivery under /v1 and the CLI,
replay of a stored body through today's code, and what a delivery keeps of its request (the
headers a provider's verification needs, Atlas's cid)."""

import base64
import hashlib
import json
import os
import subprocess

from utils import Service, eq, source_dir, voidrecon_bin

DATA = os.path.join(source_dir(), "tests", "data")
ADMIN = "deliveries-admin-token"
AUTH = {"Authorization": "Bearer " + ADMIN}
SECRET = "xsolla-project-secret"


def sample(rel):
    with open(os.path.join(DATA, rel), "rb") as f:
        return f.read()


def signed(body, secret=SECRET):
    return {"Content-Type": "application/json",
            "Authorization": "Signature " + hashlib.sha1(body + secret.encode()).hexdigest()}


def service(db, secret=SECRET, **extra):
    env = {"VOIDRECON_ADMIN_TOKEN": ADMIN, "VOIDRECON_XSOLLA_SECRET": secret}
    env.update(extra)
    return Service(db, env=env)


def cli(db, *args, secret=SECRET):
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOIDRECON_")}
    env["VOIDRECON_DATABASE_URL"] = db.url
    env["VOIDRECON_XSOLLA_SECRET"] = secret
    return subprocess.run([voidrecon_bin()] + list(args), env=env,
                          capture_output=True, text=True, timeout=30)


def api(svc, method, path):
    status, _, body = svc.request(method, path, headers=AUTH)
    return status, json.loads(body) if body else None


def get_ok(svc, path):
    status, doc = api(svc, "GET", path)
    eq(status, 200, "GET %s: %s" % (path, doc))
    return doc


def void(order, status, code="V1", cid=None):
    body = {"type": "order.void", "data": {"orderNo": order, "voidCode": code,
                                           "voidStatus": status}}
    if cid is not None:
        body["cid"] = cid
    return body


def last_delivery_id(db):
    return int(db.scalar("select max(id) from voidrecon.deliveries"))


# ---- the listing ----------------------------------------------------------------------------


def test_listing_newest_first_with_filters_and_cursor(db):
    with service(db) as svc:
        for i in range(5):
            eq(svc.post_json("/webhooks/atlas", void("L%d" % i, 0))[0], 200)
        eq(svc.post_json("/webhooks/atlas", {"type": "order.ticketed", "data": {}})[0], 200)
        eq(svc.post_json("/webhooks/xendbridge", sample("xendbridge/order_canceled.json"))[0], 200)
        eq(svc.post_json("/webhooks/atlas", {"type": "order.void"})[0], 400)
        ids = [int(r[0]) for r in db.query("select id from voidrecon.deliveries order by id")]

        doc = get_ok(svc, "/v1/deliveries")
        eq([d["id"] for d in doc["deliveries"]], ids[::-1], "newest first")
        eq(doc["next_cursor"], None)
        first = doc["deliveries"][0]
        eq((first["provider"], first["outcome"], first["event_type"]),
           ("atlas", "rejected", "order.void"))
        assert first["reason"].startswith("data:"), first
        assert "body" not in first, "a listing does not carry bodies"

        atlas = get_ok(svc, "/v1/deliveries?provider=atlas")["deliveries"]
        eq([d["id"] for d in atlas], [i for i in ids[::-1] if i != ids[6]])
        eq({d["provider"] for d in atlas}, {"atlas"})
        applied = get_ok(svc, "/v1/deliveries?provider=atlas&outcome=applied")["deliveries"]
        eq([d["id"] for d in applied], ids[:5][::-1])
        eq([d["id"] for d in get_ok(svc, "/v1/deliveries?outcome=ignored")["deliveries"]],
           [ids[5]])

        seen, cursor, pages = [], None, 0
        while True:
            page = get_ok(svc, "/v1/deliveries?provider=atlas&limit=2" +
                          ("&cursor=" + cursor if cursor else ""))
            seen += [d["id"] for d in page["deliveries"]]
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None:
                break
            assert pages < 10, "the cursor does not move"
        eq(seen, [d["id"] for d in atlas], "every atlas delivery once, newest first")
        eq(pages, 4)

        p = cli(db, "deliveries", "list", "--provider", "atlas", "--outcome", "applied",
                "--limit", "2", "--json")
        eq(p.returncode, 0, p.stderr)
        eq(json.loads(p.stdout), get_ok(svc, "/v1/deliveries?provider=atlas&outcome=applied"
                                        "&limit=2"))
        p = cli(db, "deliveries", "list")
        eq(p.returncode, 0, p.stderr)
        lines = p.stdout.splitlines()
        eq(lines[0].split()[:4], ["ID", "PROVIDER", "TYPE", "OUTCOME"])
        eq(len(lines), 1 + len(ids))


def test_listing_refuses_bad_parameters_naming_each(db):
    with service(db) as svc:
        for query, name in (("provider=nope", "provider"), ("outcome=lost", "outcome"),
                            ("limit=0", "limit"), ("limit=501", "limit"), ("limit=x", "limit"),
                            ("cursor=abc", "cursor"), ("cursor=-5", "cursor"),
                            ("provider=%ff", "provider")):
            status, doc = api(svc, "GET", "/v1/deliveries?" + query)
            eq(status, 400, query)
            eq(doc["error"]["code"], "invalid_query", query)
            assert doc["error"]["message"].startswith(name + ":"), (query, doc)
        for path in ("/v1/deliveries/abc", "/v1/deliveries/0", "/v1/deliveries/1x",
                     "/v1/deliveries/99999999999999999999"):
            status, doc = api(svc, "GET", path)
            eq(status, 400, path)
            assert doc["error"]["message"].startswith("id:"), (path, doc)
        eq(api(svc, "GET", "/v1/deliveries/12345")[0], 404)
        eq(svc.get("/v1/deliveries")[0], 401, "the /v1 bearer is required")
        eq(api(svc, "DELETE", "/v1/deliveries")[0], 405)
        eq(api(svc, "GET", "/v1/deliveries/1/replay")[0], 405)
        p = cli(db, "deliveries", "list", "--outcome", "lost")
        eq(p.returncode, 2)
        assert "--outcome" in p.stderr, p.stderr


# ---- one delivery ---------------------------------------------------------------------------


def test_show_gives_body_headers_hash_and_effects(db):
    with service(db) as svc:
        body = sample("xsolla/order_canceled.json")
        eq(svc.request("POST", "/webhooks/xsolla", body=body,
                       headers=dict(signed(body), **{"X-Other": "not kept"}))[0], 204)
        xs = last_delivery_id(db)
        eq(svc.post_json("/webhooks/atlas", void("SHOW1", 0, cid="acct-7"))[0], 200)
        at = last_delivery_id(db)
        raw = b'{"type": "order.void", "data": {"orderNo": "\xff\xfe"}}'
        eq(svc.request("POST", "/webhooks/atlas", body=raw,
                       headers={"Content-Type": "application/json"})[0], 400)
        bad = last_delivery_id(db)

        d = get_ok(svc, "/v1/deliveries/%d" % xs)
        dl = d["delivery"]
        eq((dl["id"], dl["provider"], dl["outcome"], dl["event_type"], dl["replay_of"]),
           (xs, "xsolla", "applied", "order_canceled", None))
        eq((dl["body_encoding"], dl["body"]), ("text", body.decode()))
        eq((dl["body_length"], dl["body_complete"]), (len(body), True))
        eq(dl["body_sha256"], hashlib.sha256(body).hexdigest())
        eq(dl["headers"], {"authorization": signed(body)["Authorization"]},
           "only the header the signature needs is kept")
        eq(d["cancellation"]["order_ref"], "1")
        eq(d["cancellation"]["delivery_id"], xs)
        eq(d["case_events"], [])

        d = get_ok(svc, "/v1/deliveries/%d" % at)
        eq(d["delivery"]["headers"], {}, "Atlas verifies no header: none is kept")
        eq(d["delivery"]["cid"], "acct-7")
        eq([(e["order_no"], e["void_code"], e["outcome"], e["to_status"])
            for e in d["case_events"]], [("SHOW1", "V1", "applied", 0)])
        eq(d["cancellation"], None)

        d = get_ok(svc, "/v1/deliveries/%d" % bad)["delivery"]
        eq(d["outcome"], "rejected")
        eq(d["body_encoding"], "base64", "not UTF-8: base64")
        eq(base64.b64decode(d["body"]), raw)

        # No header of any request is kept but the signature: not the /v1 bearer either.
        eq(db.scalar("select count(*) from voidrecon.deliveries"
                     " where headers::text ilike '%bearer%' or headers::text ilike '%other%'"
                     "    or headers::text ilike '%content-type%'"), "0")

        p = cli(db, "deliveries", "show", str(xs), "--json")
        eq(p.returncode, 0, p.stderr)
        eq(json.loads(p.stdout), get_ok(svc, "/v1/deliveries/%d" % xs))
        p = cli(db, "deliveries", "show", str(at))
        eq(p.returncode, 0, p.stderr)
        assert "acct-7" in p.stdout and "SHOW1" in p.stdout, p.stdout


# ---- replay ---------------------------------------------------------------------------------


def test_refused_xsolla_cancellation_replays_once_the_secret_is_set_right(db):
    body = sample("xsolla/order_canceled.json")
    with service(db, secret="the-wrong-secret") as svc:
        status, _, reply = svc.request("POST", "/webhooks/xsolla", body=body, headers=signed(body))
        eq((status, json.loads(reply)["error"]["code"]), (400, "INVALID_SIGNATURE"))
        refused = last_delivery_id(db)
        d = get_ok(svc, "/v1/deliveries/%d" % refused)["delivery"]
        eq((d["outcome"], d["body_complete"]), ("rejected", True))
        eq(d["headers"], {"authorization": signed(body)["Authorization"]})
        # Replayed with the wrong secret still: refused again, as a new delivery.
        status, doc = api(svc, "POST", "/v1/deliveries/%d/replay" % refused)
        eq((status, doc["outcome"], doc["replay_of"]), (200, "rejected", refused))
        assert "signature" in doc["reason"], doc
        eq(db.scalar("select count(*) from voidrecon.order_cancellations"), "0")

    with service(db) as svc:
        status, doc = api(svc, "POST", "/v1/deliveries/%d/replay" % refused)
        eq(status, 200, doc)
        eq((doc["outcome"], doc["replay_of"]), ("applied", refused))
        new = doc["delivery_id"]
        assert new > refused, doc
        eq(db.query("select provider, order_ref, delivery_id::text, verified"
                    " from voidrecon.order_cancellations"),
           [["xsolla", "1", str(new), "t"]])
        eq(db.scalar("select count(*) from voidrecon.alerts where kind = 'order_cancelled'"), "1")
        shown = get_ok(svc, "/v1/deliveries/%d" % new)
        eq((shown["delivery"]["replay_of"], shown["delivery"]["outcome"]), (refused, "applied"))
        eq(shown["cancellation"]["delivery_id"], new)
        eq(get_ok(svc, "/v1/deliveries/%d" % refused)["delivery"]["replays"][-1], new)
        # Once more: the state machine has it already.
        status, doc = api(svc, "POST", "/v1/deliveries/%d/replay" % refused)
        eq((status, doc["outcome"]), (200, "duplicate"))
        svc.wait_log(lambda line: line.get("event") == "webhook" and
                     "replay_of=%d" % refused in line.get("msg", ""))
    # Pruning the original leaves its replays in place, still telling what they replayed.
    db.query("delete from voidrecon.deliveries where id = :'p1'", str(refused))
    eq(db.query("select replay_of from voidrecon.deliveries where id = :'p1'", str(new)),
       [[str(refused)]])


def test_the_same_replay_through_the_cli(db):
    body = sample("xsolla/order_canceled.json")
    with service(db, secret="the-wrong-secret") as svc:
        eq(svc.request("POST", "/webhooks/xsolla", body=body, headers=signed(body))[0], 400)
        eq(svc.post_json("/webhooks/atlas", void("CLI1", 0, cid="c-1"))[0], 200)
    refused, atlas = [int(r[0]) for r in
                      db.query("select id from voidrecon.deliveries order by id")]
    p = cli(db, "deliveries", "replay", str(refused), str(atlas), "--json")
    eq(p.returncode, 0, p.stderr)
    answers = [json.loads(line) for line in p.stdout.splitlines()]
    eq([(a["replay_of"], a["outcome"]) for a in answers],
       [(refused, "applied"), (atlas, "duplicate")])
    eq(db.query("select order_ref, delivery_id::text from voidrecon.order_cancellations"),
       [["1", str(answers[0]["delivery_id"])]])
    eq(db.query("select replay_of::text, cid from voidrecon.deliveries where id = :'p1'",
                str(answers[1]["delivery_id"])), [[str(atlas), "c-1"]])
    p = cli(db, "deliveries", "replay", str(refused))
    eq(p.returncode, 0, p.stderr)
    assert "duplicate" in p.stdout and ("replay of %d" % refused) in p.stdout, p.stdout
    p = cli(db, "deliveries", "replay", str(refused), secret="the-wrong-secret")
    eq(p.returncode, 0, p.stderr)
    assert "rejected" in p.stdout, p.stdout


def test_a_prefix_only_delivery_cannot_be_replayed_and_an_unknown_one_is_404(db):
    with service(db) as svc:
        big = json.dumps({"type": "order.void", "data": {"pad": "x" * 6000}}).encode()
        eq(svc.request("POST", "/webhooks/atlas", body=big,
                       headers={"Content-Type": "application/json"})[0], 400)
        cut = last_delivery_id(db)
        d = get_ok(svc, "/v1/deliveries/%d" % cut)["delivery"]
        eq((d["body_length"], d["body_complete"], len(d["body"])), (len(big), False, 4096))
        eq(d["body_sha256"], hashlib.sha256(big).hexdigest())
        status, doc = api(svc, "POST", "/v1/deliveries/%d/replay" % cut)
        eq((status, doc["error"]["code"]), (409, "body_incomplete"))
        assert "4096 of %d bytes" % len(big) in doc["error"]["message"], doc
        status, doc = api(svc, "POST", "/v1/deliveries/987654/replay")
        eq((status, doc["error"]["code"]), (404, "not_found"))
        eq(db.scalar("select count(*) from voidrecon.deliveries"), "1", "nothing was written")
    p = cli(db, "deliveries", "replay", str(cut))
    eq(p.returncode, 1)
    assert "4096 of" in p.stderr, p.stderr
    p = cli(db, "deliveries", "replay", "987654")
    eq(p.returncode, 1)
    assert "no such delivery" in p.stderr, p.stderr


def test_replay_rechecks_the_source_allowlist_against_the_stored_address(db):
    with service(db, VOIDRECON_ATLAS_ALLOWED_CIDRS="127.0.0.0/8") as svc:
        eq(svc.post_json("/webhooks/atlas", void("ACL1", 0))[0], 200)
        first = last_delivery_id(db)
    with service(db, VOIDRECON_ATLAS_ALLOWED_CIDRS="10.0.0.0/8") as svc:
        status, doc = api(svc, "POST", "/v1/deliveries/%d/replay" % first)
        eq((status, doc["error"]["code"]), (409, "source_not_allowed"))
        assert "127.0.0.1" in doc["error"]["message"], doc
    with service(db) as svc:
        status, doc = api(svc, "POST", "/v1/deliveries/%d/replay" % first)
        eq((status, doc["outcome"], doc["replay_of"]), (200, "duplicate", first))


# ---- the small contract fixes ---------------------------------------------------------------


def test_xendbridge_envelope_key_checksum_in_either_spelling(db):
    canceled = json.loads(sample("xendbridge/order_canceled.json"))
    table_spelling = {"Checksum": canceled["CheckSum"], "Data": dict(canceled["Data"])}
    table_spelling["Data"]["OrderReference"] = "XB_table_spelling"
    both = {"CheckSum": "A", "Checksum": "B", "Data": canceled["Data"]}
    with service(db) as svc:
        status, _, reply = svc.post_json("/webhooks/xendbridge", table_spelling)
        eq((status, json.loads(reply)["outcome"]), (200, "applied"))
        eq(svc.post_json("/webhooks/xendbridge", canceled)[0], 200)
        status, _, reply = svc.post_json("/webhooks/xendbridge", both)
        eq(status, 400)
        assert "Checksum" in json.loads(reply)["error"]["message"], reply
    rows = db.query("select order_ref, details->>'checksum' from voidrecon.order_cancellations"
                    " order by id")
    eq(rows, [["XB_table_spelling", canceled["CheckSum"]],
              ["XB_0cb80c382cd343ae9600cf6b177be55a", canceled["CheckSum"]]])


def test_atlas_cid_is_kept_with_the_delivery_and_the_case(db):
    with service(db) as svc:
        eq(svc.post_json("/webhooks/atlas", sample("atlas/void_success.json"))[0], 200)
        eq(svc.post_json("/webhooks/atlas", void("TESTA20250512100600259", 2, "202505-0012",
                                                 cid="another-account"))[0], 200)
        eq(svc.post_json("/webhooks/atlas", sample("atlas/cancelled_notification.json"))[0], 200)
        eq(svc.post_json("/webhooks/atlas", void("NOCID", 0))[0], 200)
        eq(db.query("select cid from voidrecon.deliveries order by id"),
           [["XXXXXXX"], ["another-account"], ["pxmhg93103"], [None]])
        eq(db.query("select order_no, cid from voidrecon.void_cases order by order_no"),
           [["NOCID", None], ["TESTA20250512100600259", "XXXXXXX"]],
           "a case keeps the cid of the first webhook that named it")
        shown = get_ok(svc, "/v1/cases/TESTA20250512100600259/202505-0012")
        eq(shown["case"]["cid"], "XXXXXXX")
        eq([d["cid"] for d in get_ok(svc, "/v1/deliveries")["deliveries"]],
           [None, "pxmhg93103", "another-account", "XXXXXXX"])
        # As with errorCode, a number is kept as its text rather than lose the webhook.
        eq(svc.post_json("/webhooks/atlas", void("NUMCID", 0, cid=7))[0], 200)
        eq(db.scalar("select cid from voidrecon.void_cases where order_no = 'NUMCID'"), "7")
        # A cid that is neither, or too long, is not kept; the report it came with is.
        eq(svc.post_json("/webhooks/atlas", void("BADCID", 0, cid=[7]))[0], 200)
        eq(svc.post_json("/webhooks/atlas", void("LONGCID", 0, cid="c" * 129))[0], 200)
        eq(db.query("select order_no, status, cid from voidrecon.void_cases"
                    " where order_no in ('BADCID', 'LONGCID') order by 1"),
           [["BADCID", "0", None], ["LONGCID", "0", None]])
