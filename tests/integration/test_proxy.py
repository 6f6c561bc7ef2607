"""HTTPS through the shipped nginx site (deploy/nginx/voidrecon.conf) and the PROXY protocol:
the client address a trusted proxy gives is what the allowlists, the stored remote_addr and the
logs see; what an untrusted peer claims is ignored.

Loopback gives distinct addresses: the test's clients bind 127.0.0.2 or 127.0.0.5, nginx reaches
voidrecon from 127.0.0.1, the only trusted proxy (VOIDRECON_TRUSTED_PROXIES=127.0.0.1/32)."""

import contextlib
import hashlib
import http.client
import json
import os
import shutil
import socket
import ssl
import struct
import subprocess
import tempfile
import time

import pytest

from utils import ADMIN_TOKEN, Service, ServiceError, eq, free_port, recv_to_close, source_dir, wait_until

SITE = os.path.join(source_dir(), "deploy", "nginx", "voidrecon.conf")
DATA = os.path.join(source_dir(), "tests", "data")
SECRET = "xsolla-project-secret"
CLIENT = "127.0.0.2"    # the sender the Xsolla allowlist admits
OUTSIDER = "127.0.0.5"  # anyone else
ENV = {"VOIDRECON_XSOLLA_SECRET": SECRET,
       "VOIDRECON_XSOLLA_ALLOWED_CIDRS": CLIENT + "/32",
       "VOIDRECON_TRUSTED_PROXIES": "127.0.0.1/32"}

with open(os.path.join(DATA, "xsolla", "order_canceled.json"), "rb") as _f:
    BODY = _f.read()
SIGNED = {"Content-Type": "application/json",
          "Authorization": "Signature " + hashlib.sha1(BODY + SECRET.encode()).hexdigest()}


def deliveries(db):
    return db.query("select provider, event_type, outcome, remote_addr from voidrecon.deliveries"
                    " order by id")


def forbidden_message(reply):
    return json.loads(reply)["error"]["message"]


# ---- nginx with the shipped site ---------------------------------------------------------------

def _need(tool):
    if shutil.which(tool) is None and not os.path.exists("/usr/sbin/" + tool):
        pytest.skip("%s is not installed (scripts/setup.sh installs it)" % tool)
    return shutil.which(tool) or "/usr/sbin/" + tool


@pytest.fixture(scope="module")
def cert():
    """A self-signed certificate for 127.0.0.1 made by openssl: (directory, cert, key)."""
    openssl = _need("openssl")
    tmp = tempfile.mkdtemp(prefix="vr-proxy-cert-")
    crt, key = os.path.join(tmp, "server.pem"), os.path.join(tmp, "server.key")
    try:
        subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj",
                        "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                        "-keyout", key, "-out", crt],
                       check=True, capture_output=True, timeout=60)
        yield crt, key
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def site_text(port, crt, key, upstream, logdir):
    """The shipped site with only its listen port, certificate paths and upstream replaced;
    each replacement must find what it replaces, or the shipped file has drifted."""
    with open(SITE) as f:
        text = f.read()
    for old, new, count in (("listen 443 ssl;", "listen %d ssl;" % port, 1),
                            ("listen [::]:443 ssl;", "listen [::]:%d ssl;" % port, 1),
                            ("/etc/ssl/certs/voidrecon.pem;", crt + ";", 1),
                            ("/etc/ssl/private/voidrecon.key;", key + ";", 1),
                            ("server 127.0.0.1:8080;", "server %s;" % upstream, 1),
                            ("/var/log/nginx/voidrecon.access.log",
                             os.path.join(logdir, "voidrecon.access.log"), 1)):
        eq(text.count(old), count, "%r in %s" % (old, SITE))
        text = text.replace(old, new)
    return text


class Nginx:
    """Debian's nginx in the foreground on the shipped site, everything it writes under tmp."""

    def __init__(self, tmp, port, proc):
        self.tmp, self.port, self.proc = tmp, port, proc

    def error_log(self):
        with contextlib.suppress(OSError), open(os.path.join(self.tmp, "error.log")) as f:
            return f.read()
        return ""

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _tcp_open(port):
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False


@pytest.fixture
def nginx(cert):
    """start(svc) runs nginx in front of svc; stopped after the test, whatever happens."""
    binary = _need("nginx")
    tmp = tempfile.mkdtemp(prefix="vr-proxy-nginx-")
    started = []

    def start(svc):
        port = free_port()
        with open(os.path.join(tmp, "site.conf"), "w") as f:
            f.write(site_text(port, cert[0], cert[1], "127.0.0.1:%d" % svc.port, tmp))
        temp = "".join("%s_temp_path %s/%s;\n" % (kind, tmp, kind)
                       for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        with open(os.path.join(tmp, "nginx.conf"), "w") as f:
            f.write("%spid %s/nginx.pid;\nerror_log %s/error.log info;\nworker_processes 1;\n"
                    "events { worker_connections 64; }\n"
                    "http {\n access_log %s/access.log;\n%s include %s/site.conf;\n}\n"
                    % ("user root;\n" if os.geteuid() == 0 else "", tmp, tmp, tmp, temp, tmp))
        proc = subprocess.Popen([binary, "-p", tmp, "-c", os.path.join(tmp, "nginx.conf"),
                                 "-g", "daemon off;"], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        ng = Nginx(tmp, port, proc)
        started.append(ng)
        deadline = time.monotonic() + 10
        while not _tcp_open(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("nginx did not start (exit %s):\n%s"
                                     % (proc.poll(), ng.error_log()))
            time.sleep(0.05)
        return ng

    try:
        yield start
    finally:
        for ng in started:
            ng.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def https_post(ng, cert, source, headers=None, body=BODY):
    """POST to nginx over verified HTTPS from source; (status, reply bytes)."""
    ctx = ssl.create_default_context(cafile=cert[0])
    conn = http.client.HTTPSConnection("127.0.0.1", ng.port, context=ctx, timeout=10,
                                       source_address=(source, 0))
    try:
        conn.request("POST", "/webhooks/xsolla", body=body, headers=dict(SIGNED, **(headers or {})))
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def http_post(svc, source, headers=None):
    """POST straight to voidrecon from source; (status, reply bytes)."""
    conn = http.client.HTTPConnection("127.0.0.1", svc.port, timeout=10, source_address=(source, 0))
    try:
        conn.request("POST", "/webhooks/xsolla", body=BODY, headers=dict(SIGNED, **(headers or {})))
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


# ---- through nginx -----------------------------------------------------------------------------

def test_client_behind_nginx_passes_the_allowlist_and_is_stored(db, nginx, cert):
    with Service(db, env=ENV) as svc:
        ng = nginx(svc)
        status, reply = https_post(ng, cert, CLIENT)
        eq(status, 204, "a signed cancellation from the allowed client, through nginx (%r)" % reply)
        eq(deliveries(db), [["xsolla", "order_canceled", "applied", CLIENT]])
        eq(db.scalar("select count(*) from voidrecon.order_cancellations"), "1")
        # nginx keeps its connections to voidrecon open and sends different clients' requests
        # on them: each request is judged by its own sender.
        status, reply = https_post(ng, cert, OUTSIDER)
        eq(status, 403)
        eq(forbidden_message(reply), "source address %s is not allowed" % OUTSIDER)
        eq(https_post(ng, cert, CLIENT)[0], 204, "the allowed client again")
        eq([d[2:] for d in deliveries(db)], [["applied", CLIENT], ["duplicate", CLIENT]])
        # nginx's access log names the sender, never the path (it may carry a secret token).
        with open(os.path.join(ng.tmp, "voidrecon.access.log")) as f:
            logged = f.read()
        assert '%s [' % CLIENT in logged and '"POST" 204' in logged, logged
        assert "/webhooks" not in logged, logged
        # The probes and the API are not published.
        ctx = ssl.create_default_context(cafile=cert[0])
        for path in ("/healthz", "/metrics", "/v1/cases"):
            conn = http.client.HTTPSConnection("127.0.0.1", ng.port, context=ctx, timeout=10)
            try:
                conn.request("GET", path)
                eq(conn.getresponse().status, 404, path + " through nginx")
            finally:
                conn.close()


def test_a_forged_forwarded_for_through_nginx_is_refused_by_its_real_address(db, nginx, cert):
    with Service(db, env=ENV) as svc:
        ng = nginx(svc)
        status, reply = https_post(ng, cert, OUTSIDER, {"X-Forwarded-For": CLIENT})
        eq(status, 403, "an outsider claiming to be the allowed client (%r)" % reply)
        eq(forbidden_message(reply), "source address %s is not allowed" % OUTSIDER)
        line = svc.wait_log("webhook_forbidden")
        assert "peer=%s:" % OUTSIDER in line["msg"], line
    # Refused from its head: the body was never read by voidrecon, so nothing is stored.
    eq(deliveries(db), [])


def test_what_a_sender_writes_in_forwarded_for_is_not_read_behind_nginx(db, nginx, cert):
    # A sender's own outgoing proxy may write "unknown" or an address with a port; nginx keeps
    # it on the left and appends the sender's address, where the walk stops.
    with Service(db, env=ENV) as svc:
        ng = nginx(svc)
        status, reply = https_post(ng, cert, CLIENT,
                                   {"X-Forwarded-For": "unknown, 192.0.2.1:443"})
        eq(status, 204, repr(reply))
    eq(deliveries(db), [["xsolla", "order_canceled", "applied", CLIENT]])


def test_a_malformed_forwarded_for_from_a_trusted_proxy_gets_400_naming_it(db):
    with Service(db, env=ENV) as svc:
        status, reply = http_post(svc, "127.0.0.1", {"X-Forwarded-For": "unknown"})
        eq(status, 400)
        eq(json.loads(reply)["error"]["message"],
           'X-Forwarded-For: "unknown" is not an IP address')
    eq(deliveries(db), [])


def test_dot_segments_reach_neither_the_api_through_nginx_nor_any_route(db, nginx, cert):
    # nginx matches /webhooks/ on the normalised path; voidrecon must not be handed the raw
    # one, which it would route to /v1, and refuses dot segments itself.
    with Service(db, env=dict(ENV, VOIDRECON_ADMIN_TOKEN=ADMIN_TOKEN)) as svc:
        ng = nginx(svc)
        ctx = ssl.create_default_context(cafile=cert[0])
        for path in ("/v1/../webhooks/x", "/webhooks/../v1/cases", "/v1/events/../../webhooks/"):
            conn = http.client.HTTPSConnection("127.0.0.1", ng.port, context=ctx, timeout=10)
            try:
                conn.request("GET", path)
                resp = conn.getresponse()
                reply = resp.read()
            finally:
                conn.close()
            assert resp.status in (400, 404), (path, resp.status, reply)
            assert b"Bearer" not in reply, (path, "reached the API", reply)
        conn = http.client.HTTPConnection("127.0.0.1", svc.port, timeout=10)
        try:
            conn.request("POST", "/webhooks/../v1/cases", body=b"{}",
                         headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            eq(resp.status, 400)
            eq(json.loads(resp.read())["error"]["message"],
               "the request path has a dot segment (. or ..)")
        finally:
            conn.close()


def test_a_forged_forwarded_for_straight_from_an_untrusted_peer_is_ignored(db):
    with Service(db, env=ENV) as svc:
        status, reply = http_post(svc, OUTSIDER, {"X-Forwarded-For": CLIENT})
        eq(status, 403)
        eq(forbidden_message(reply), "source address %s is not allowed" % OUTSIDER)
        svc.wait_log("webhook_forbidden")
        # Garbage is not even parsed when the peer is not a trusted proxy.
        eq(http_post(svc, OUTSIDER, {"X-Forwarded-For": "unknown"})[0], 403)
        assert CLIENT.encode() not in reply, reply
        # Only the configuration line (the allowlist itself) names the allowed client.
        named = [line for line in svc.logs()
                 if line.get("event") != "config" and CLIENT in json.dumps(line)]
        eq(named, [], "log lines naming the forged address")
    eq(deliveries(db), [])


# ---- PROXY protocol ----------------------------------------------------------------------------

PP_ENV = dict(ENV, VOIDRECON_PROXY_PROTOCOL="on",
              VOIDRECON_XSOLLA_ALLOWED_CIDRS="127.0.0.2/31")  # 127.0.0.2 and 127.0.0.3


def request_bytes(extra=b""):
    head = "".join("%s: %s\r\n" % kv for kv in SIGNED.items()).encode()
    return (b"POST /webhooks/xsolla HTTP/1.1\r\nHost: t\r\nConnection: close\r\n" + head + extra
            + b"Content-Length: " + str(len(BODY)).encode() + b"\r\n\r\n" + BODY)


def exchange(svc, data, source="127.0.0.1"):
    """Sends data on a new connection from source; every byte until the server closes."""
    with socket.create_connection(("127.0.0.1", svc.port), timeout=5,
                                  source_address=(source, 0)) as s:
        s.sendall(data)
        return recv_to_close(s)


def status_of(resp):
    assert resp.startswith(b"HTTP/1.1 "), resp[:200]
    return int(resp.split(b" ", 2)[1])


def v2_header(src, dst, sport, dport, tlvs=b""):
    addrs = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport)
    return (b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11])
            + struct.pack("!H", len(addrs) + len(tlvs)) + addrs + tlvs)


def test_proxy_protocol_v1_and_v2_give_the_client(db):
    with Service(db, env=PP_ENV) as svc:
        v1 = b"PROXY TCP4 127.0.0.2 127.0.0.1 40001 %d\r\n" % svc.port
        eq(status_of(exchange(svc, v1 + request_bytes())), 204)
        # The longest v1 header there is (TCP6, every group written out): 104 bytes.
        v1_long = (b"PROXY TCP6 0000:0000:0000:0000:0000:ffff:127.0.0.2 "
                   b"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n")
        eq(len(v1_long), 104)
        eq(status_of(exchange(svc, v1_long + request_bytes())), 204)
        # v2 with a TLV (an authority) that is skipped, the request in the same segment.
        tlv = b"\x02" + struct.pack("!H", 9) + b"localhost"
        eq(status_of(exchange(svc, v2_header("127.0.0.3", "127.0.0.1", 40002, svc.port, tlv)
                              + request_bytes())), 204)
        # PROXY then X-Forwarded-For: the header's source is not a trusted proxy, so its
        # X-Forwarded-For counts for nothing.
        v1_out = b"PROXY TCP4 %s 127.0.0.1 40003 %d\r\n" % (OUTSIDER.encode(), svc.port)
        resp = exchange(svc, v1_out + request_bytes(b"X-Forwarded-For: 127.0.0.2\r\n"))
        eq(status_of(resp), 403)
        assert b"source address %s is not allowed" % OUTSIDER.encode() in resp, resp
        # LOCAL (a proxy's own health check) keeps the peer, which is trusted, so its
        # X-Forwarded-For names the client.
        local = b"\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00"
        eq(status_of(exchange(svc, local + request_bytes(b"X-Forwarded-For: 127.0.0.2\r\n"))),
           204)
        # A header arriving in pieces, its TLVs (3000 bytes) spread over several reads.
        head = v2_header("127.0.0.3", "127.0.0.1", 40004, svc.port,
                         b"\xee" + struct.pack("!H", 2997) + b"x" * 2997)
        data = head + request_bytes()
        with socket.create_connection(("127.0.0.1", svc.port), timeout=5) as s:
            for cut in ((0, 5), (5, 20), (20, 60), (60, 1000), (1000, 3020), (3020, len(data))):
                s.sendall(data[cut[0]:cut[1]])
                time.sleep(0.05)
            eq(status_of(recv_to_close(s)), 204)
    eq([d[3] for d in deliveries(db)],
       ["127.0.0.2", "127.0.0.2", "127.0.0.3", "127.0.0.2", "127.0.0.3"])


def test_proxy_protocol_refuses_a_trusted_peer_without_a_good_header(db):
    with Service(db, env=dict(PP_ENV, VOIDRECON_HEADER_TIMEOUT_MS="500")) as svc:
        for bad in (request_bytes(),                                   # no header at all
                    b"PROXY TCP4 127.0.0.2 127.0.0.1 99999 80\r\n" + request_bytes(),
                    b"PROXY TCP4 127.0.0.2\r\n" + request_bytes(),
                    b"PROXY TCP4 127.0.0.2 127.0.0.1 1 2"):            # and then nothing
            eq(exchange(svc, bad), b"", "a trusted peer's connection without a good header")
        def refused():
            return [line["msg"] for line in svc.logs()
                    if line.get("event") == "proxy_header_refused"]
        wait_until(lambda: len(refused()) == 4, what="four proxy_header_refused lines")
        for i, want in enumerate(("no PROXY header", "a port is not a number",
                                  "not \"PROXY TCP4|TCP6", "no whole PROXY header within 500 ms")):
            assert want in refused()[i], refused()
        # An untrusted peer needs no header: it is served, as itself.
        resp = exchange(svc, request_bytes(), source=OUTSIDER)
        eq(status_of(resp), 403)
        assert b"source address %s is not allowed" % OUTSIDER.encode() in resp, resp
    eq(deliveries(db), [])


def test_proxy_settings_are_checked_at_start(db):
    for env, message in (({"VOIDRECON_TRUSTED_PROXIES": "10.0.0.0/33"},
                          'VOIDRECON_TRUSTED_PROXIES: "10.0.0.0/33" is not an IP address'),
                         ({"VOIDRECON_PROXY_PROTOCOL": "yes"},
                          'VOIDRECON_PROXY_PROTOCOL: "yes" is not on or off'),
                         ({"VOIDRECON_PROXY_PROTOCOL": "on"},
                          "VOIDRECON_PROXY_PROTOCOL: on needs VOIDRECON_TRUSTED_PROXIES")):
        svc = Service(db, env=env, start=False)
        with pytest.raises(ServiceError):
            svc.start()
        eq([line["msg"] for line in svc.logs() if line.get("event") == "config_invalid"
             and message in line["msg"]] != [], True, "%s in\n%s" % (message, svc.log_tail()))
