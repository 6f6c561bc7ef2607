"""The Atlas simulator (tests/atlas_sim.py) in this process beside voidrecon services set up to
poll it with short timings, for the poller and convergence tests."""

import json
import os
import sys

from harness import Service, wait_until

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import atlas_sim  # noqa: E402

ADMIN = "adm-token-1"
FAST = {
    "VOIDRECON_POLL_TICK_MS": "20",
    "VOIDRECON_POLL_FIRST_MS": "100",
    "VOIDRECON_POLL_CONFIRM_MS": "50",
    "VOIDRECON_POLL_MAX_INTERVAL_MS": "400",
    "VOIDRECON_POLL_RETRY_MS": "50",
    "VOIDRECON_POLL_CONCURRENCY": "16",
    "VOIDRECON_POLL_MAX_RPS": "1000",
    "VOIDRECON_ATLAS_TIMEOUT_MS": "2000",
    "VOIDRECON_ADMIN_TOKEN": ADMIN,
}


class Rig:
    """A simulator and services on one database, torn down together."""

    def __init__(self, db, env=None, secret="sim-secret", webhooks=True, services=1):
        self.sim, self.server = atlas_sim.start(client_secret="sim-secret")
        self.db = db
        settings = dict(FAST)
        settings.update({
            "VOIDRECON_ATLAS_BASE_URL": "http://127.0.0.1:%d" % self.server.server_address[1],
            "VOIDRECON_ATLAS_CLIENT_ID": "sim-id",
            "VOIDRECON_ATLAS_CLIENT_SECRET": secret,
        })
        settings.update(env or {})
        self.services = [Service(db, env=settings) for _ in range(services)]
        self.svc = self.services[0]
        if webhooks:
            self.sim.webhook_url = "http://127.0.0.1:%d/webhooks/atlas" % self.svc.port

    def faults(self, **kw):
        with self.sim.lock:
            hook = kw.pop("webhook", {})
            self.sim.faults.update(kw)
            self.sim.faults["webhook"].update(hook)

    def register(self, order, code, status=None):
        body = {"orderNo": order, "voidCode": code}
        if status is not None:
            body["voidStatus"] = status
        st, _, reply = self.svc.post_json("/v1/cases", body,
                                          headers={"Authorization": "Bearer " + ADMIN})
        assert st in (200, 201), (st, reply)
        return json.loads(reply)

    def case(self, order, code):
        rows = self.db.query(
            "select status, confirmed, reconciled_at is not null, next_poll_at is null,"
            " needs_followup, followup_reason, poll_failures, last_poll_error, cancel_reason,"
            " void_method, expected_confirmation_date, atlas_void_order"
            " from voidrecon.void_cases where order_no = :'p1' and void_code = :'p2'",
            order, code)
        if not rows:
            return None
        r = rows[0]
        return {"status": int(r[0]), "confirmed": r[1] == "t", "reconciled": r[2] == "t",
                "unscheduled": r[3] == "t", "followup": r[4] == "t", "reason": r[5],
                "failures": int(r[6]), "error": r[7], "cancel_reason": r[8], "method": r[9],
                "confirmation_date": r[10], "item": json.loads(r[11]) if r[11] else None}

    def wait(self, pred, timeout=20, what="condition"):
        return wait_until(pred, timeout, what, every=0.05)

    def close(self):
        for s in self.services:
            if s.running():
                s.stop()
        self.server.shutdown()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


