"""Secret settings read from files: VOIDRECON_<NAME>_FILE and systemd credentials
($CREDENTIALS_DIRECTORY/<name>), proved by what the secret then does (the admin token lets /v1
in, the Xsolla secret verifies a signature); and what the start says when a file is missing,
too large, readable by everyone, or given twice, never with the secret itself."""

import hashlib
import json
import os
import re
import subprocess

import pytest

from utils import Service, child_env, eq, source_dir, voidrecon_bin

ADMIN = "file-admin-5q7w9e"
XSOLLA_SECRET = "file-xsolla-8r6t4y"


def write_secret(directory, name, content, mode=0o600):
    path = os.path.join(str(directory), name)
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(content)
    os.chmod(path, mode)
    return path


def auth(token):
    return {"Authorization": "Bearer " + token}


def config_line(svc):
    return svc.wait_log("config")["msg"]


def start_failure(env, args=(), timeout=30):
    """voidrecon serve with env (and nothing else of ours); returns (status, stderr)."""
    p = subprocess.run([voidrecon_bin(), "serve", *args], capture_output=True, text=True,
                       timeout=timeout,
                       env=child_env(dict({"VOIDRECON_LISTEN": "127.0.0.1:0",
                                           "CREDENTIALS_DIRECTORY": None}, **env)))
    return p.returncode, p.stderr


def last_error(stderr):
    line = json.loads(stderr.strip().splitlines()[-1])
    eq(line["level"], "error")
    return line["msg"]


def test_admin_token_from_a_file_lets_v1_in_without_its_trailing_newline(db, tmp_path):
    path = write_secret(tmp_path, "admin_token", ADMIN + "\n")
    with Service(db, env={"VOIDRECON_ADMIN_TOKEN_FILE": path,
                          "CREDENTIALS_DIRECTORY": None}) as svc:
        eq(svc.get("/v1/cases", headers=auth(ADMIN))[0], 200, "the token without its newline")
        eq(svc.get("/v1/cases", headers=auth(ADMIN + "x"))[0], 403)
        assert "ADMIN_TOKEN=***(file)" in config_line(svc), config_line(svc)
        assert "DATABASE_URL=" in config_line(svc)
    assert "config_unknown" not in svc.log_text(), "ADMIN_TOKEN_FILE is a setting"
    assert ADMIN not in svc.log_text()


def test_a_crlf_ending_is_removed_and_only_one_newline(db, tmp_path):
    crlf = write_secret(tmp_path, "crlf", ADMIN + "\r\n")
    with Service(db, env={"VOIDRECON_ADMIN_TOKEN_FILE": crlf}) as svc:
        eq(svc.get("/v1/cases", headers=auth(ADMIN))[0], 200)
    # A second newline is part of the secret: an Authorization header cannot carry it.
    two = write_secret(tmp_path, "two", ADMIN + "\n\n")
    with Service(db, env={"VOIDRECON_ADMIN_TOKEN_FILE": two}) as svc:
        eq(svc.get("/v1/cases", headers=auth(ADMIN))[0], 403)


def xsolla_post(svc, secret):
    with open(os.path.join(source_dir(), "tests", "data", "xsolla", "order_canceled.json"),
              "rb") as f:
        body = f.read()
    sig = hashlib.sha1(body + secret.encode()).hexdigest()
    return svc.request("POST", "/webhooks/xsolla", body=body,
                       headers={"Content-Type": "application/json",
                                "Authorization": "Signature " + sig})[0]


def test_provider_secret_from_a_file_verifies_signatures(db, tmp_path):
    path = write_secret(tmp_path, "xsolla_secret", XSOLLA_SECRET + "\n")
    with Service(db, env={"VOIDRECON_XSOLLA_SECRET_FILE": path}) as svc:
        eq(xsolla_post(svc, "some-other-secret"), 400)
        eq(xsolla_post(svc, XSOLLA_SECRET), 204)
        assert "XSOLLA_SECRET=***(file)" in config_line(svc)
    eq(db.scalar("select count(*) from voidrecon.order_cancellations where verified"), "1")
    assert XSOLLA_SECRET not in svc.log_text()


def test_systemd_credentials_are_read_by_lower_case_name(db, tmp_path):
    creds = tmp_path / "creds"
    creds.mkdir()
    write_secret(creds, "admin_token", ADMIN + "\n", mode=0o400)
    write_secret(creds, "xsolla_secret", XSOLLA_SECRET, mode=0o400)
    write_secret(creds, "database_url", db.url + "\n", mode=0o400)
    with Service(database_url="", env={"CREDENTIALS_DIRECTORY": str(creds),
                                       "VOIDRECON_DATABASE_URL": None}) as svc:
        eq(svc.get("/v1/cases", headers=auth(ADMIN))[0], 200)
        eq(xsolla_post(svc, XSOLLA_SECRET), 204, "the database from its credential too")
        line = config_line(svc)
        for name in ("ADMIN_TOKEN", "XSOLLA_SECRET"):
            assert name + "=***(credential)" in line, line
        assert "(credential)" in line.split("DATABASE_URL=")[1].split(" ")[0], line
    assert ADMIN not in svc.log_text() and XSOLLA_SECRET not in svc.log_text()
    assert "secret_file_readable" not in svc.log_text()


@pytest.mark.parametrize("places", [("env", "file"), ("file", "credential"),
                                    ("env", "credential"), ("env", "file", "credential")])
def test_a_secret_in_two_places_is_refused_naming_them(db, tmp_path, places):
    creds = tmp_path / "creds"
    creds.mkdir()
    env = {"VOIDRECON_DATABASE_URL": db.url, "CREDENTIALS_DIRECTORY": str(creds)}
    if "env" in places:
        env["VOIDRECON_ADMIN_TOKEN"] = ADMIN
    if "file" in places:
        env["VOIDRECON_ADMIN_TOKEN_FILE"] = write_secret(tmp_path, "tok", ADMIN)
    if "credential" in places:
        write_secret(creds, "admin_token", ADMIN)
    rc, err = start_failure(env)
    eq(rc, 2, err)
    msg = last_error(err)
    named = {"env": r"VOIDRECON_ADMIN_TOKEN\b(?!_FILE)", "file": "VOIDRECON_ADMIN_TOKEN_FILE",
             "credential": "credential admin_token"}
    by = msg.split("set by ", 1)[1]
    for place in places:
        assert re.search(named[place], by), (place, msg)
    assert ADMIN not in err


def test_a_missing_file_stops_the_start_naming_the_variable_and_the_path(db, tmp_path):
    path = str(tmp_path / "no-such-file")
    rc, err = start_failure({"VOIDRECON_DATABASE_URL": db.url,
                             "VOIDRECON_ATLAS_CLIENT_SECRET_FILE": path})
    eq(rc, 2, err)
    msg = last_error(err)
    assert "VOIDRECON_ATLAS_CLIENT_SECRET_FILE" in msg and path in msg, msg
    assert "No such file" in msg, msg


def test_an_unreadable_or_oversized_file_is_refused_without_its_content(db, tmp_path):
    big = write_secret(tmp_path, "big", "S3CR3T" * 20000)
    rc, err = start_failure({"VOIDRECON_DATABASE_URL": db.url, "VOIDRECON_ADMIN_TOKEN_FILE": big})
    eq(rc, 2, err)
    msg = last_error(err)
    assert "VOIDRECON_ADMIN_TOKEN_FILE" in msg and big in msg and "65536" in msg, msg
    assert "S3CR3T" not in err
    empty = write_secret(tmp_path, "empty", "\n")
    rc, err = start_failure({"VOIDRECON_DATABASE_URL": db.url,
                             "VOIDRECON_ADMIN_TOKEN_FILE": empty})
    eq(rc, 2, err)
    assert "is empty" in last_error(err) and empty in last_error(err), err
    rc, err = start_failure({"VOIDRECON_DATABASE_URL": db.url,
                             "VOIDRECON_ADMIN_TOKEN_FILE": str(tmp_path)})
    eq(rc, 2, err)
    assert str(tmp_path) in last_error(err), err


@pytest.mark.parametrize("kind", ["fifo", "terminal", "fifo credential"])
def test_a_fifo_or_a_terminal_is_refused_at_once_instead_of_blocking_the_start(db, tmp_path,
                                                                              kind):
    """Reading a FIFO without a writer, or a terminal, would wait forever: the start must stop
    promptly naming the place and saying it is not a regular file."""
    creds = tmp_path / "creds"
    creds.mkdir()
    env = {"VOIDRECON_DATABASE_URL": db.url}
    master = slave = None
    if kind == "terminal":
        master, slave = os.openpty()
        path = os.ttyname(slave)
        os.write(master, b"pty-typed-5u2i8o\n")  # waiting input that must not be read
    else:
        path = str(creds / "admin_token") if kind == "fifo credential" else str(tmp_path / "p")
        os.mkfifo(path, 0o600)
    if kind == "fifo credential":
        env["CREDENTIALS_DIRECTORY"] = str(creds)
    else:
        env["VOIDRECON_ADMIN_TOKEN_FILE"] = path
    try:
        rc, err = start_failure(env, timeout=10)
    except subprocess.TimeoutExpired:
        pytest.fail("the start blocked on " + kind + " " + path)
    finally:
        for fd in (master, slave):
            if fd is not None:
                os.close(fd)
    eq(rc, 2, err)
    msg = last_error(err)
    assert path in msg and "is not a regular file" in msg, msg
    assert ("credential admin_token" if kind == "fifo credential"
            else "VOIDRECON_ADMIN_TOKEN_FILE") in msg, msg
    assert "pty-typed" not in err


@pytest.mark.parametrize("value", ["s3cr3t-token-value", "secrets/admin_token", "./tok"])
def test_a_file_variable_that_is_not_an_absolute_path_is_refused_without_its_value(db, value):
    """A secret pasted into the _FILE variable by mistake must not reach the log as a path."""
    rc, err = start_failure({"VOIDRECON_DATABASE_URL": db.url,
                             "VOIDRECON_ADMIN_TOKEN_FILE": value})
    eq(rc, 2, err)
    msg = last_error(err)
    assert "VOIDRECON_ADMIN_TOKEN_FILE" in msg and "not an absolute path" in msg, msg
    assert value not in err, err


def test_a_credentials_directory_that_is_not_a_directory_is_named_not_blamed_on_secrets(
        db, tmp_path):
    """With $CREDENTIALS_DIRECTORY at a file, every secret set in the environment was refused
    as given twice; the start must name the directory instead."""
    not_dir = write_secret(tmp_path, "creds", "x")
    for creds in (not_dir, str(tmp_path / "missing")):
        rc, err = start_failure({"VOIDRECON_DATABASE_URL": db.url,
                                 "VOIDRECON_ADMIN_TOKEN": ADMIN,
                                 "CREDENTIALS_DIRECTORY": creds})
        eq(rc, 2, err)
        msg = last_error(err)
        assert "CREDENTIALS_DIRECTORY" in msg and creds in msg, msg
        assert "set by" not in msg and "keep one" not in msg, msg
        assert ADMIN not in err


def test_a_credential_that_cannot_be_looked_at_is_named_with_its_error(db, tmp_path):
    """Any stat error other than "no such file" (here a symlink loop) is told as it is, not
    taken for a second copy of a secret given in the environment."""
    creds = tmp_path / "creds"
    creds.mkdir()
    loop = creds / "admin_token"
    os.symlink(str(loop), str(loop))
    rc, err = start_failure({"VOIDRECON_DATABASE_URL": db.url, "VOIDRECON_ADMIN_TOKEN": ADMIN,
                             "CREDENTIALS_DIRECTORY": str(creds)})
    eq(rc, 2, err)
    msg = last_error(err)
    assert str(loop) in msg and "symbolic links" in msg, msg
    assert "set by" not in msg, msg
    assert ADMIN not in err


def test_a_flag_does_not_hide_a_conflict_or_an_unreadable_file(db, tmp_path):
    """What the help says: a flag overrides the value, but the places are still read and
    checked first."""
    path = write_secret(tmp_path, "tok", ADMIN)
    rc, err = start_failure({"VOIDRECON_DATABASE_URL": db.url, "VOIDRECON_ADMIN_TOKEN": ADMIN,
                             "VOIDRECON_ADMIN_TOKEN_FILE": path}, args=["--admin-token=flag-x"])
    eq(rc, 2, err)
    assert "keep one of them" in last_error(err), err
    rc, err = start_failure({"VOIDRECON_DATABASE_URL": db.url,
                             "VOIDRECON_ADMIN_TOKEN_FILE": str(tmp_path / "none")},
                            args=["--admin-token=flag-x"])
    eq(rc, 2, err)
    assert "No such file" in last_error(err), err
    assert ADMIN not in err and "flag-x" not in err


def test_a_file_every_user_may_read_is_warned_of_and_the_start_goes_on(db, tmp_path):
    path = write_secret(tmp_path, "admin_token", ADMIN + "\n", mode=0o644)
    with Service(db, env={"VOIDRECON_ADMIN_TOKEN_FILE": path}) as svc:
        line = svc.wait_log("secret_file_readable")
        eq(line["level"], "warn")
        assert "VOIDRECON_ADMIN_TOKEN_FILE" in line["msg"] and path in line["msg"], line
        eq(svc.get("/v1/cases", headers=auth(ADMIN))[0], 200)
    assert ADMIN not in svc.log_text()


def test_a_file_variable_of_a_setting_that_is_not_secret_is_named_in_a_warning(db, tmp_path):
    path = write_secret(tmp_path, "listen", "127.0.0.1:1")
    with Service(db, env={"VOIDRECON_LISTEN_FILE": path}) as svc:
        line = svc.wait_log("config_unknown")
        assert "VOIDRECON_LISTEN_FILE" in line["msg"], line
        assert "only secret settings" in line["msg"], line


def test_commands_read_secret_files_too(db, tmp_path):
    """migrate (and every command) loads the same settings: the database URL from a file."""
    path = write_secret(tmp_path, "database_url", db.url + "\n")
    p = subprocess.run([voidrecon_bin(), "migrate"], capture_output=True, text=True, timeout=60,
                       env=child_env({"VOIDRECON_DATABASE_URL_FILE": path}))
    eq(p.returncode, 0, p.stderr)
    assert '"migrated"' in p.stderr, p.stderr


def test_help_explains_secret_files():
    p = subprocess.run([voidrecon_bin(), "serve", "--help"], capture_output=True, text=True,
                       timeout=30, env=child_env())
    eq(p.returncode, 0)
    for text in ("_FILE", "CREDENTIALS_DIRECTORY", "ADMIN_TOKEN", "XSOLLA_SECRET"):
        assert text in p.stdout, text
    text = " ".join(p.stdout.split())
    assert "overrides all three" not in text, "a conflict is refused even with a flag"
    assert "still read and checked first" in text, text
