"""Secrets given in connection strings and URLs never reach the output: the start-up log of the
configuration, the messages of serve, migrate and the other commands, whichever form the
database URL takes (URI with ?password=, key=value with quoted and escaped values) and whether
libpq can read it or not."""

import os
import re
import subprocess

import pytest

from utils import Service, voidrecon_bin

ALERT_USER, ALERT_PW = "alertuser-5t", "alertpw-6y"
ATLAS_USER, ATLAS_PW = "atlasuser-8u", "atlaspw-9i"


def url_parts(db):
    """host, port and database name of a test database's URL."""
    m = re.fullmatch(r"postgresql://postgres@([^:/]+):(\d+)/(\w+)", db.url)
    assert m, db.url
    return m.groups()


def hostile_env():
    return {"VOIDRECON_ALERT_URL": "http://%s:%s@127.0.0.1:9/hook" % (ALERT_USER, ALERT_PW),
            "VOIDRECON_ATLAS_BASE_URL": "http://%s:%s@127.0.0.1:9/" % (ATLAS_USER, ATLAS_PW),
            "VOIDRECON_ATLAS_CLIENT_ID": "client-id-3e",
            "VOIDRECON_ATLAS_CLIENT_SECRET": "client-secret-1q"}


def serve_and_stop(db, database_url, secrets):
    """Runs serve until start-up has finished logging, then stops it; returns its whole output
    after checking that no secret is in it."""
    svc = Service(db, database_url=database_url, env=hostile_env())
    # Every start-up line (configuration, poller, notifier) comes before "listening".
    svc.wait_log("listening", timeout=10)
    config = svc.wait_log("config")
    svc.stop()
    text = svc.log_text()
    for value in secrets + [ALERT_USER, ALERT_PW, ATLAS_USER, ATLAS_PW, "client-id-3e",
                            "client-secret-1q"]:
        assert value not in text, "%r is in the output:\n%s" % (value, text)
    return config["msg"], text


def test_uri_with_password_in_query_and_userinfo_everywhere_is_masked(db):
    host, port, name = url_parts(db)
    url = ("postgresql://postgres:uri-userpw-0p@%s:%s/%s?sslpassword=uri-sslk3y-2w"
           "&application_name=vr&password=uri-s3cret-7q" % (host, port, name))
    msg, _ = serve_and_stop(db, url, ["uri-userpw-0p", "uri-sslk3y-2w", "uri-s3cret-7q"])
    assert ("DATABASE_URL=postgresql://***@%s:%s/%s?sslpassword=***&application_name=vr"
            "&password=***" % (host, port, name)) in msg, msg
    assert "ALERT_URL=http://***@127.0.0.1:9/***" in msg, msg
    assert "ATLAS_BASE_URL=http://***@127.0.0.1:9/" in msg, msg


def test_key_value_with_sslpassword_and_quoted_password_is_masked(db):
    host, port, name = url_parts(db)
    url = ("host=%s port=%s dbname=%s user=postgres sslpassword=kv-sslk3y-4r "
           "password='kv s3cret\\'5t'" % (host, port, name))
    msg, _ = serve_and_stop(db, url, ["kv-sslk3y-4r", "s3cret", "5t'"])
    assert "sslpassword=*** password=***" in msg, msg


def run(args, database_url, timeout=30):
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOIDRECON_")}
    env.update(hostile_env())
    env["VOIDRECON_DATABASE_URL"] = database_url
    env["VOIDRECON_LISTEN"] = "127.0.0.1:0"
    return subprocess.run([voidrecon_bin()] + list(args), env=env, stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=timeout)


# What libpq cannot read: its complaint quotes the piece, which here is the secret.
UNREADABLE = [
    ("postgresql://postgres@127.0.0.1:1/x?password=bad%ZZs3cret", "bad%ZZs3cret"),
    ("postgresql://postgres:bad%ZZuserpw@127.0.0.1:1/x", "bad%ZZuserpw"),
    ("host=127.0.0.1 port=1 sslpassword=k3y-lone lone-s3cret-8k", "lone-s3cret-8k"),
]


@pytest.mark.parametrize("url,secret", UNREADABLE)
@pytest.mark.parametrize("args", [["migrate"], ["cases", "list"], ["serve"]])
def test_commands_never_echo_a_secret_of_an_unreadable_database_url(args, url, secret):
    got = run(args, url)
    assert got.returncode != 0, got.stdout
    assert "VOIDRECON_DATABASE_URL" in got.stdout or "connection string" in got.stdout, got.stdout
    for value in [secret, "k3y-lone", ALERT_USER, ALERT_PW, ATLAS_USER, ATLAS_PW]:
        assert value not in got.stdout, "%r in the output of %s:\n%s" % (value, args, got.stdout)


def test_migrate_with_passwords_in_both_forms_logs_none(db):
    host, port, name = url_parts(db)
    for url in ["postgresql://postgres:mig-userpw-3d@%s:%s/%s?password=mig-s3cret-6g"
                % (host, port, name),
                "host=%s port=%s dbname=%s user=postgres password=mig-kv-9h" % (host, port, name)]:
        got = run(["migrate"], url)
        assert got.returncode == 0, got.stdout
        assert '"event":"migrated"' in got.stdout, got.stdout
        for value in ["mig-userpw-3d", "mig-s3cret-6g", "mig-kv-9h"]:
            assert value not in got.stdout, got.stdout
