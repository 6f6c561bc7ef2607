"""deploy/prometheus/voidrecon.rules.yml: valid for promtool, its unit tests pass, every alert
carries what an operator needs, and every metric it names is one a running voidrecon really
exposes (so a rule can never watch a metric that does not exist); and the ages it alerts on
measure what they say."""

import os
import re
import shutil
import subprocess

import pytest
import yaml

from utils import Service, eq, metrics_of, source_dir, wait_until

RULES_DIR = os.path.join(source_dir(), "deploy", "prometheus")
RULES = os.path.join(RULES_DIR, "voidrecon.rules.yml")
RULES_TEST = os.path.join(RULES_DIR, "voidrecon.rules.test.yml")
# Series the rules may use that Prometheus makes itself, not voidrecon.
PROMETHEUS_OWN = {"up"}


def promtool():
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool not found: scripts/setup.sh installs it (Debian package prometheus)")
    return path


def rules_of(path):
    with open(path, encoding="utf-8") as f:
        return [r for g in yaml.safe_load(f)["groups"] for r in g["rules"]]


def metric_names(expr):
    """The series names an expression selects: identifiers not followed by '(' (a function)
    nor inside a label matcher or a range/duration."""
    expr = re.sub(r"\{[^}]*\}", "{}", expr)     # label matchers
    expr = re.sub(r"\[[^\]]*\]", "[]", expr)    # ranges
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    names = set()
    for m in re.finditer(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b(\s*\()?", expr):
        word, call = m.group(1), m.group(2)
        if call or word in ("and", "or", "unless", "bool", "offset", "by", "without"):
            continue
        if re.fullmatch(r"\d+[smhdwy]?", word):
            continue
        names.add(word)
    return names


def exposed_names(svc):
    """Every series name in svc's /metrics (histogram parts by their own names)."""
    return {re.sub(r"\{.*", "", key) for key in metrics_of(svc)}


def missing_metrics(rules_path, exposed):
    """(alert, name) of every series a rule selects that the service does not expose."""
    return sorted((r["alert"], n) for r in rules_of(rules_path)
                  for n in metric_names(r["expr"]) - PROMETHEUS_OWN if n not in exposed)


def test_promtool_checks_the_rules():
    p = subprocess.run([promtool(), "check", "rules", RULES], capture_output=True, text=True,
                       timeout=60)
    eq(p.returncode, 0, p.stdout + p.stderr)
    assert "SUCCESS" in p.stdout, p.stdout


def test_promtool_unit_tests_fire_and_hold_every_alert():
    p = subprocess.run([promtool(), "test", "rules", os.path.basename(RULES_TEST)],
                       capture_output=True, text=True, timeout=120, cwd=RULES_DIR)
    eq(p.returncode, 0, p.stdout + p.stderr)
    with open(RULES_TEST, encoding="utf-8") as f:
        tests = yaml.safe_load(f)["tests"]
    fired, held = set(), set()
    for t in tests:
        for check in t["alert_rule_test"]:
            (fired if check["exp_alerts"] else held).add(check["alertname"])
    alerts = {r["alert"] for r in rules_of(RULES)}
    eq(sorted(alerts - fired), [], "alerts never seen firing in the unit tests")
    eq(sorted(alerts - held), [], "alerts never seen holding back in the unit tests")


def test_every_alert_has_for_severity_summary_description_and_runbook():
    for rule in rules_of(RULES):
        assert "alert" in rule, rule
        assert re.fullmatch(r"\d+[smh]", rule.get("for", "")), rule["alert"]
        assert rule.get("labels", {}).get("severity") in ("critical", "warning"), rule["alert"]
        for key in ("summary", "description", "runbook"):
            assert rule.get("annotations", {}).get(key), (rule["alert"], key)


def test_every_metric_of_the_rules_is_exposed_by_a_running_service(db, tmp_path):
    with Service(db, env={"VOIDRECON_GAUGE_REFRESH_MS": "100"}) as svc:
        wait_until(lambda: "voidrecon_gauges_age_seconds" in exposed_names(svc), timeout=10,
                   what="the counts read once")
        exposed = exposed_names(svc)
    used = set().union(*(metric_names(r["expr"]) for r in rules_of(RULES)))
    assert len(used - PROMETHEUS_OWN) >= 10, used
    eq(missing_metrics(RULES, exposed), [], "rules naming metrics voidrecon does not expose")
    # The check itself: one name broken in a copy of the rules is caught.
    with open(RULES, encoding="utf-8") as f:
        text = f.read()
    broken = tmp_path / "broken.rules.yml"
    broken.write_text(text.replace("voidrecon_poll_lag_seconds", "voidrecon_poll_lag_secs"))
    eq(missing_metrics(str(broken), exposed), [("VoidreconPollLag", "voidrecon_poll_lag_secs")])


def test_metric_names_reads_expressions_as_promql_does():
    eq(metric_names('max by (job) (voidrecon_a{job="x",le="0.5"}) > 900'), {"voidrecon_a"})
    eq(metric_names("voidrecon_a > 10 and max by (job) (delta(voidrecon_b[30m])) > 0"),
       {"voidrecon_a", "voidrecon_b"})
    eq(metric_names('up{job="voidrecon"} == 0'), {"up"})


def test_the_oldest_undelivered_alert_and_follow_up_are_measured(db):
    db.query("insert into voidrecon.void_cases (order_no, void_code, status)"
             " values ('OLD', 'V1', 0);"
             "insert into voidrecon.case_followups (order_no, void_code, reason, raised_at)"
             " values ('OLD', 'V1', 'stuck', now() - interval '2 hours');"
             "insert into voidrecon.alerts (kind, order_no, void_code, payload, created_at)"
             " values ('void_stuck', 'OLD', 'V1', '{}', now() - interval '1 hour'),"
             "        ('void_stuck', 'OLD', 'V1', '{}', now() - interval '1 minute')")
    with Service(db, env={"VOIDRECON_GAUGE_REFRESH_MS": "100"}) as svc:
        wait_until(lambda: "voidrecon_followup_oldest_seconds" in metrics_of(svc), timeout=10,
                   what="the ages read")
        m = metrics_of(svc)
        assert 7200 <= m["voidrecon_followup_oldest_seconds"] < 7300, m
        assert 3600 <= m["voidrecon_alert_oldest_undelivered_seconds"] < 3700, m
        eq(m["voidrecon_alert_backlog"], 2)
        db.query("update voidrecon.alerts set delivered_at = now();"
                 "delete from voidrecon.case_followups")
        wait_until(lambda: metrics_of(svc)["voidrecon_alert_oldest_undelivered_seconds"] == 0
                   and metrics_of(svc)["voidrecon_followup_oldest_seconds"] == 0, timeout=10,
                   what="ages back to 0 when nothing waits")
