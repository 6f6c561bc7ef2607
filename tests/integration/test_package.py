"""What an operations team installs: the cmake --install layout, the systemd unit (it verifies
clean and its sandbox keeps a low exposure score), the settings file (every setting, no
secret), the man page, and the Debian package built by cpack from the build under test: its
control fields, conffiles and contents, and, as root on a machine without the package, a real
dpkg -i, the unit's own command lines run by hand as the voidrecon user against the test's
database, and dpkg --purge.

The unit's checks run against a staged install (DESTDIR, prefix /usr): systemd-analyze verify
needs the unit's ExecStart binaries to exist, so the staged copy that it reads has them
rewritten to the staged binary, and MANPATH finds the staged man page; after the real dpkg -i,
the installed unit is verified as it is."""

import gzip
import http.client
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time

import pytest

from utils import Db, eq, free_port, voidrecon_bin, wait_until

# The exposure score of systemd-analyze security that the unit must not exceed: it reaches 1.1
# ("OK"); what is left is what a network service cannot give up (its network, AF_INET/AF_UNIX,
# no IP allowlist since the peers are configured, the host's root).
MAX_EXPOSURE = 1.2
PACKAGE = "voidrecon"


def build_dir():
    return os.path.dirname(os.path.abspath(voidrecon_bin()))


def cache_value(name):
    """A variable of the build's CMakeCache.txt, or None."""
    try:
        with open(os.path.join(build_dir(), "CMakeCache.txt"), encoding="utf-8") as f:
            for line in f:
                m = re.match(r"%s:[A-Z]+=(.*)$" % re.escape(name), line.rstrip("\n"))
                if m:
                    return m.group(1)
    except OSError:
        pass
    return None


def run(cmd, timeout=120, check=True, **kw):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if check and p.returncode != 0:
        raise AssertionError("%s exited %d\nstdout:\n%s\nstderr:\n%s"
                             % (" ".join(cmd), p.returncode, p.stdout, p.stderr))
    return p


def need_build_dir():
    if not os.path.exists(os.path.join(build_dir(), "cmake_install.cmake")):
        pytest.skip("%s is not a CMake build directory (VOIDRECON_BIN points elsewhere)"
                    % build_dir())


@pytest.fixture(scope="module")
def stage():
    """DESTDIR=<tmp> cmake --install <build> --prefix /usr: the package's layout."""
    need_build_dir()
    root = tempfile.mkdtemp(prefix="vr-stage-")
    try:
        run(["cmake", "--install", build_dir(), "--prefix", "/usr"],
            env=dict(os.environ, DESTDIR=root))
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def unit_fields(text):
    """The [Service] section's settings as {key: [values]}."""
    fields, section = {}, None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line
            continue
        if section == "[Service]" and "=" in line:
            key, value = line.split("=", 1)
            fields.setdefault(key, []).append(value)
    return fields


def read_env_file(path):
    """An EnvironmentFile as systemd reads this one: KEY=VALUE lines, a value in double quotes
    taken without them, comments and blank lines skipped."""
    env = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith(("#", ";")):
                continue
            key, value = line.split("=", 1)
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            env[key] = value
    return env


def security_score(unit_path):
    p = run(["systemd-analyze", "security", "--offline=yes", "--no-pager", unit_path])
    m = re.search(r"Overall exposure level for \S+: ([0-9.]+) (\S+)", p.stdout)
    assert m, p.stdout
    return float(m.group(1)), m.group(2)


# ---- the install layout and the unit -------------------------------------------------------


def test_install_lays_out_binary_unit_settings_and_man_page(stage):
    for rel, mode in (("usr/bin/voidrecon", 0o755), ("lib/systemd/system/voidrecon.service", 0o644),
                      ("etc/voidrecon/voidrecon.env", 0o640),
                      ("usr/share/man/man1/voidrecon.1.gz", 0o644)):
        path = os.path.join(stage, rel)
        assert os.path.isfile(path), "%s missing from the install" % rel
        eq(stat.S_IMODE(os.stat(path).st_mode), mode, "mode of %s" % rel)
    with open(os.path.join(stage, "lib/systemd/system/voidrecon.service")) as f:
        unit = unit_fields(f.read())
    eq(unit["ExecStartPre"], ["/usr/bin/voidrecon migrate"], "ExecStartPre")
    eq(unit["ExecStart"], ["/usr/bin/voidrecon serve"], "ExecStart")
    eq(unit["EnvironmentFile"], ["/etc/voidrecon/voidrecon.env"], "EnvironmentFile")
    eq(unit["Type"], ["notify"], "Type")
    eq(unit["User"], ["voidrecon"], "User")


def test_install_under_another_prefix_points_the_unit_there():
    """A non-Debian layout (--prefix /opt/voidrecon) keeps everything under the prefix, and the
    unit names the binary and the settings where they went; that unit verifies as it is."""
    need_build_dir()
    root = tempfile.mkdtemp(prefix="vr-opt-")
    try:
        prefix = os.path.join(root, "opt", "voidrecon")
        run(["cmake", "--install", build_dir(), "--prefix", prefix])
        unit_path = os.path.join(prefix, "lib/systemd/system/voidrecon.service")
        with open(unit_path) as f:
            unit = unit_fields(f.read())
        eq(unit["ExecStart"], ["%s/bin/voidrecon serve" % prefix], "ExecStart")
        eq(unit["EnvironmentFile"], ["%s/etc/voidrecon/voidrecon.env" % prefix],
           "EnvironmentFile")
        assert os.path.isfile(os.path.join(prefix, "etc/voidrecon/voidrecon.env"))
        assert os.path.isfile(os.path.join(prefix, "share/man/man1/voidrecon.1.gz"))
        p = run(["systemd-analyze", "verify", unit_path], check=False,
                env=dict(os.environ, MANPATH=os.path.join(prefix, "share/man")))
        eq((p.returncode, p.stdout + p.stderr), (0, ""), "systemd-analyze verify")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def staged_unit_copy(stage, dest_dir):
    """The staged unit with its absolute paths moved into the stage, for verify only."""
    with open(os.path.join(stage, "lib/systemd/system/voidrecon.service")) as f:
        text = f.read()
    text = text.replace("/usr/bin/voidrecon", os.path.join(stage, "usr/bin/voidrecon"))
    text = text.replace("/etc/voidrecon/", os.path.join(stage, "etc/voidrecon") + "/")
    path = os.path.join(dest_dir, "voidrecon.service")
    with open(path, "w") as f:
        f.write(text)
    return path


def test_unit_verifies_without_a_warning(stage, tmp_path):
    unit = staged_unit_copy(stage, str(tmp_path))
    p = run(["systemd-analyze", "verify", unit], check=False,
            env=dict(os.environ, MANPATH=os.path.join(stage, "usr/share/man")))
    eq((p.returncode, p.stdout + p.stderr), (0, ""), "systemd-analyze verify")


def test_unit_sandbox_keeps_exposure_low(stage):
    score, level = security_score(os.path.join(stage, "lib/systemd/system/voidrecon.service"))
    print("systemd-analyze security: exposure %.1f %s" % (score, level))
    assert score <= MAX_EXPOSURE, "exposure %.1f %s, above %.1f" % (score, level, MAX_EXPOSURE)
    with open(os.path.join(stage, "lib/systemd/system/voidrecon.service")) as f:
        unit = unit_fields(f.read())
    # Settings the score weighs little but the brief of the unit promises.
    eq(unit["CapabilityBoundingSet"], [""], "CapabilityBoundingSet")
    assert unit["MemoryMax"][0], unit
    assert unit["RestartSec"][0] and unit["TimeoutStopSec"][0], unit
    eq(unit["Restart"], ["on-failure"], "Restart")


# ---- the settings file and the man page ----------------------------------------------------

SECRET = re.compile(r"_(SECRET|TOKEN)$|_CLIENT_ID$")


def help_settings():
    p = run([voidrecon_bin(), "serve", "--help"])
    return set(re.findall(r"^  (VOIDRECON_[A-Z0-9_]+)", p.stdout, re.M))


def test_settings_file_names_every_setting_and_holds_no_secret(stage):
    path = os.path.join(stage, "etc/voidrecon/voidrecon.env")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    named = set(re.findall(r"^#?(VOIDRECON_[A-Z0-9_]+)=", text, re.M))
    settings = help_settings()
    assert settings, "serve --help lists no setting"
    eq(sorted(settings - named), [], "settings of serve --help missing from the settings file")
    eq(sorted(named - settings), [], "names in the settings file that serve does not know")
    active = read_env_file(path)
    eq(sorted(k for k in active if SECRET.search(k)), [], "secrets set in the shipped file")
    assert ":" not in active["VOIDRECON_DATABASE_URL"].split("@")[0].replace("postgresql:", ""), \
        "a password in the shipped database URL"
    for name, value in re.findall(r"^#(VOIDRECON_[A-Z0-9_]+)=(.*)$", text, re.M):
        if SECRET.search(name):
            assert re.search(r"<[^>]+>", value), "%s shows a value, not a placeholder" % name


def test_man_page_has_every_commands_help(stage):
    with gzip.open(os.path.join(stage, "usr/share/man/man1/voidrecon.1.gz"), "rt") as f:
        roff = f.read()
    commands = re.findall(r"^  ([a-z]+)  ", run([voidrecon_bin(), "--help"]).stdout, re.M)
    assert "serve" in commands and "migrate" in commands, commands
    for name in set(commands) - {"help", "version"}:
        assert '.SS "voidrecon %s"' % name in roff, "no section for voidrecon %s" % name
    assert "VOIDRECON_DATABASE_URL" in roff and "/etc/voidrecon/voidrecon.env" in roff
    page = run(["man", "-l", os.path.join(stage, "usr/share/man/man1/voidrecon.1.gz")],
               env=dict(os.environ, MANWIDTH="100"))
    for heading in ("NAME", "DESCRIPTION", "COMMANDS IN DETAIL", "FILES"):
        assert re.search(r"^%s$" % heading, page.stdout, re.M), heading


# ---- the Debian package --------------------------------------------------------------------


@pytest.fixture(scope="module")
def deb():
    """cpack -G DEB from the build under test, into a directory of the test's own."""
    need_build_dir()
    if cache_value("SANITIZE"):
        pytest.skip("packaging is checked in the release-like build, not the sanitizer build "
                    "(SANITIZE=%s), whose binary never ships" % cache_value("SANITIZE"))
    out = tempfile.mkdtemp(prefix="vr-deb-")
    try:
        run(["cpack", "-G", "DEB", "-B", out], cwd=build_dir(), timeout=300)
        debs = [n for n in os.listdir(out) if n.endswith(".deb")]
        eq(len(debs), 1, "packages made: %r" % debs)
        yield os.path.join(out, debs[0])
    finally:
        shutil.rmtree(out, ignore_errors=True)


def control(deb_path):
    text = run(["dpkg-deb", "--field", deb_path]).stdout
    fields, key = {}, None
    for line in text.splitlines():
        if line.startswith(" ") and key:
            fields[key] += "\n" + line.strip()
        else:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields


def test_package_control_fields(deb):
    c = control(deb)
    version = run([voidrecon_bin(), "--version"]).stdout.split()[-1]
    eq(c["Package"], PACKAGE, "Package")
    eq(c["Version"], version, "Version")
    eq(c["Architecture"], run(["dpkg", "--print-architecture"]).stdout.strip(), "Architecture")
    eq(c["Section"], "net", "Section")
    eq(c["Priority"], "optional", "Priority")
    assert re.fullmatch(r".+ <[^@>]+@[^>]+>", c["Maintainer"]), c["Maintainer"]
    assert c["Description"].splitlines()[0].strip(), c
    assert len(c["Description"].splitlines()) > 1, "no long description"
    # dpkg-shlibdeps found the libraries; adduser is what postinst calls.
    depends = {d.split()[0] for d in c["Depends"].split(", ")}
    for lib in ("adduser", "libc6", "libpq5", "libuv1", "libcurl4", "libssl3", "libcjson1",
                "libsystemd0"):
        assert lib in depends, "%s not in Depends: %s" % (lib, c["Depends"])
    print("Installed-Size: %s KiB, package %d bytes" % (c["Installed-Size"], os.path.getsize(deb)))


def test_package_contents_and_conffiles(deb, tmp_path):
    listing = run(["dpkg-deb", "--contents", deb]).stdout
    files = {}
    for line in listing.splitlines():
        parts = line.split()
        files[parts[-1].lstrip(".")] = (parts[0], parts[1])
    eq(files.get("/usr/bin/voidrecon"), ("-rwxr-xr-x", "root/root"), "the binary")
    eq(files.get("/lib/systemd/system/voidrecon.service"), ("-rw-r--r--", "root/root"), "the unit")
    eq(files.get("/etc/voidrecon/voidrecon.env"), ("-rw-r-----", "root/root"),
       "the settings (postinst gives them to group voidrecon)")
    eq(files.get("/usr/share/man/man1/voidrecon.1.gz"), ("-rw-r--r--", "root/root"), "the man page")
    ctl = str(tmp_path / "control")
    run(["dpkg-deb", "--control", deb, ctl])
    with open(os.path.join(ctl, "conffiles")) as f:
        eq(f.read().split(), ["/etc/voidrecon/voidrecon.env"], "conffiles")
    for script in ("postinst", "prerm", "postrm"):
        path = os.path.join(ctl, script)
        eq(stat.S_IMODE(os.stat(path).st_mode), 0o755, "mode of %s" % script)
        run(["sh", "-n", path])
    with open(os.path.join(ctl, "postinst")) as f:
        code = [line for line in f.read().splitlines() if not line.lstrip().startswith("#")]
    # Nothing is enabled or started before the settings are written (an upgrade restarts a
    # service that runs: try-restart).
    starts = [line for line in code
              if re.search(r"\b(enable|start|restart|reload-or-restart)\b",
                           line.replace("try-restart", ""))]
    eq(starts, [], "postinst lines that enable or start the service")


# ---- a real install ------------------------------------------------------------------------


def installed():
    p = subprocess.run(["dpkg-query", "-W", "-f=${Status}", PACKAGE], capture_output=True,
                       text=True, timeout=30)
    return p.returncode == 0 and "installed" in p.stdout and "not-installed" not in p.stdout


def voidrecon_processes():
    """Processes running the installed binary."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            if os.readlink("/proc/%s/exe" % pid) == "/usr/bin/voidrecon":
                found.append(int(pid))
        except OSError:
            continue
    return found


def real_install_skip_reason():
    if os.geteuid() != 0:
        return "dpkg -i needs root"
    if not shutil.which("dpkg") or not shutil.which("setpriv"):
        return "not a Debian system with dpkg and setpriv"
    if installed() or os.path.exists("/usr/bin/voidrecon") or os.path.exists("/etc/voidrecon"):
        return "voidrecon is installed on this machine already: not replacing it"
    return None


class Notify:
    """A datagram socket the voidrecon user may send to (the unit's NOTIFY_SOCKET)."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="vr-notify-")
        os.chmod(self.dir, 0o711)
        self.path = os.path.join(self.dir, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        os.chmod(self.path, 0o666)

    def wait_ready(self, proc, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError("serve exited with %s before READY=1" % proc.returncode)
            self.sock.settimeout(0.2)
            try:
                if "READY=1" in self.sock.recv(4096).decode().split("\n"):
                    return
            except socket.timeout:
                continue
        raise AssertionError("no READY=1 within %ss" % timeout)

    def close(self):
        self.sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def as_voidrecon(command_line):
    """A unit's command line run as User=/Group= voidrecon would run it."""
    return ["setpriv", "--reuid=voidrecon", "--regid=voidrecon", "--clear-groups", "--"] + \
        command_line.split()


def test_dpkg_install_run_as_the_unit_would_and_purge(deb, pg):
    reason = real_install_skip_reason()
    if reason:
        pytest.skip(reason)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    db = Db(pg.url_base, pg.template)
    serve = None
    notify = Notify()
    try:
        run(["dpkg", "-i", deb], env=env)
        # Again, as an upgrade: postinst is idempotent (the user exists, the modes are set).
        run(["dpkg", "-i", deb], env=env)

        user = run(["getent", "passwd", "voidrecon"]).stdout.strip().split(":")
        group = run(["getent", "group", "voidrecon"]).stdout.strip().split(":")
        assert int(user[2]) < 1000, "not a system user: %r" % user
        eq(user[3], group[2], "the user's primary group is voidrecon")
        eq(user[6], "/usr/sbin/nologin", "login shell")
        st = os.stat("/etc/voidrecon/voidrecon.env")
        eq((oct(stat.S_IMODE(st.st_mode)), st.st_uid, st.st_gid), ("0o640", 0, int(group[2])),
           "mode, owner and group of the settings")
        man = subprocess.run(["man", "-w", "voidrecon"], capture_output=True, text=True,
                             timeout=30)
        assert man.stdout.strip() == "/usr/share/man/man1/voidrecon.1.gz" or \
            os.path.isfile("/usr/share/man/man1/voidrecon.1.gz"), man
        eq(voidrecon_processes(), [], "voidrecon processes after dpkg -i")

        # The installed unit, as it is, now that its binary and man page are in place.
        p = run(["systemd-analyze", "verify", "/lib/systemd/system/voidrecon.service"],
                check=False)
        eq((p.returncode, p.stdout + p.stderr), (0, ""), "verify of the installed unit")

        # What the administrator does: the settings, then the unit's command lines.
        port = free_port()
        with open("/etc/voidrecon/voidrecon.env", "a") as f:
            f.write('VOIDRECON_DATABASE_URL="%s"\nVOIDRECON_LISTEN=127.0.0.1:%d\n' % (db.url, port))
        with open("/lib/systemd/system/voidrecon.service") as f:
            unit = unit_fields(f.read())
        service_env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "NOTIFY_SOCKET": notify.path}
        for path in unit["EnvironmentFile"]:
            service_env.update(read_env_file(path))
        for line in unit["ExecStartPre"]:
            run(as_voidrecon(line), env=service_env, timeout=60)
        serve = subprocess.Popen(as_voidrecon(unit["ExecStart"][0]), env=service_env,
                                 stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT)
        notify.wait_ready(serve)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            conn.request("POST", "/webhooks/atlas", body=json.dumps(
                {"type": "order.void", "status": -1,
                 "data": {"orderNo": "PKG1", "voidCode": "V1", "voidStatus": 2}}),
                headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            body = resp.read()
            eq(resp.status, 200, "webhook answer %r" % body[:300])
        finally:
            conn.close()
        eq(db.scalar("select count(*) from voidrecon.void_cases where order_no = 'PKG1'"), "1",
           "the case stored")
        eq(run(["ps", "-o", "user=", "-p", str(serve.pid)]).stdout.strip(), "voidrecon",
           "serve runs as")
        serve.send_signal(signal.SIGTERM)
        eq(serve.wait(20), 0, "serve's exit status after SIGTERM")
    finally:
        if serve is not None and serve.poll() is None:
            serve.kill()
            serve.wait(10)
        notify.close()
        purged = subprocess.run(["dpkg", "--purge", PACKAGE], capture_output=True, text=True,
                                timeout=120, env=env)
        db.drop()
    eq(purged.returncode, 0, "dpkg --purge: %s" % purged.stderr)
    for path in ("/usr/bin/voidrecon", "/lib/systemd/system/voidrecon.service",
                 "/usr/share/man/man1/voidrecon.1.gz", "/etc/voidrecon"):
        assert not os.path.exists(path), "%s left after dpkg --purge" % path
    assert not installed()
    wait_until(lambda: voidrecon_processes() == [], timeout=5, what="no voidrecon process left")
