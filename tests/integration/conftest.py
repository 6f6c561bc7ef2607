"""Fixtures of the integration tests: a real PostgreSQL, the service under test, the Atlas
simulator and an alert receiver. The helpers behind them are in utils.py.

- pg (session): the suite's cluster, whose voidrecon_template holds the migrated schema.
- db: a fresh database cloned from that template.
- svc: `voidrecon serve` started on db. Tests that need other settings make their own
  utils.Service(db, env={...}).
- own_cluster: a cluster of the test's own (migrated database voidrecon), for tests that stop
  and start PostgreSQL; destroyed afterwards.
- atlas_sim: the Atlas simulator (tests/atlas_sim.py) serving in this process.
- make_rig: make_rig(env=..., secret=..., webhooks=..., services=N) starts services polling
  atlas_sim on db with short timings (utils.Rig).
- receiver: an alert receiver; receiver.answer_with("fail", "hang", ...) scripts its answers.

After every test, each service it made and left running is stopped: anything but a clean exit
(a sanitizer report, a crash, a non-zero status, a hang) fails it. Every database it made is
dropped. When a test fails, the tail of each of its services' logs is printed with the failure.
Services still running when pytest exits are killed.

ctest runs each test_*.py file as one entry (integration.<file>), against the cluster that its
pg.start fixture starts (VR_TEST_PG_DIR). By hand, from the repository root, after a build:

    pytest-3 -p no:cacheprovider tests/integration/test_poller.py
    pytest-3 -p no:cacheprovider tests/integration/test_poller.py -k stuck

Without VR_TEST_PG_DIR the session starts a throwaway cluster of its own with
scripts/testdb.sh and stops it at the end; VOIDRECON_BIN names the binary under test
(default: build-test/voidrecon).
"""

import os
import shutil
import subprocess
import tempfile

import pytest

import utils


@pytest.fixture(scope="session")
def pg():
    """The suite's cluster: VR_TEST_PG_DIR's under ctest, else one of this session's own."""
    pg_dir = os.environ.get("VR_TEST_PG_DIR")
    if pg_dir:
        yield utils.TestCluster(pg_dir)
        return
    testdb = os.path.join(utils.source_dir(), "scripts", "testdb.sh")
    pg_dir = tempfile.mkdtemp(prefix="vrt-pg-")
    started = subprocess.run([testdb, "start", pg_dir, utils.voidrecon_bin()],
                             env=utils.child_env(), capture_output=True, text=True, timeout=180)
    if started.returncode != 0:
        shutil.rmtree(pg_dir, ignore_errors=True)
        pytest.exit("scripts/testdb.sh could not start a cluster:\n" + started.stderr, 3)
    try:
        yield utils.TestCluster(pg_dir)
    finally:
        subprocess.run([os.path.join(utils.source_dir(), "scripts", "pg.sh"), "destroy", pg_dir],
                       env=utils.child_env(), capture_output=True, timeout=120)
        shutil.rmtree(pg_dir, ignore_errors=True)


@pytest.fixture
def db(pg):
    """A fresh database cloned from the migrated template (dropped by _cleanup)."""
    return pg.new_db()


@pytest.fixture
def svc(db):
    """`voidrecon serve` on db with default settings (stopped and checked by _cleanup)."""
    return utils.Service(db)


@pytest.fixture
def own_cluster():
    """A started cluster of the test's own with a migrated database voidrecon; services still
    running on it are stopped (and checked) before it is destroyed."""
    cluster = utils.Cluster()
    try:
        cluster.start()
        cluster.migrate()
        yield cluster
    finally:
        _record(utils.TRACK.stop_services(cluster.services()))
        cluster.destroy()


@pytest.fixture
def atlas_sim():
    """The Atlas simulator serving on a free port of 127.0.0.1 (sim.base_url)."""
    sim, server = utils.start_atlas_sim()
    yield sim
    server.shutdown()
    server.server_close()


@pytest.fixture
def make_rig(db, atlas_sim):
    """Starts utils.Rig services polling atlas_sim on db; they are stopped, and checked, before
    the simulator."""
    rigs = []

    def make(**kw):
        rig = utils.Rig(db, atlas_sim, **kw)
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        _record(utils.TRACK.stop_services(rig.services))


@pytest.fixture
def receiver():
    """An alert receiver on a free port (receiver.url)."""
    rx = utils.Receiver()
    yield rx
    rx.close()


# ---- cleanup after each test -----------------------------------------------------------------

_problems = []  # unclean exits found by fixtures torn down before _cleanup


def _record(errors):
    _problems.extend(errors)


@pytest.fixture(autouse=True)
def _cleanup():
    """Runs before every other fixture of a test, so its teardown comes after theirs: stops the
    test's services that are still running, then drops its databases."""
    utils.TRACK.begin()
    del _problems[:]
    yield
    errors = _problems + utils.TRACK.stop_services()
    del _problems[:]
    errors += utils.TRACK.drop_dbs()
    if errors:
        pytest.fail("after the test:\n" + "\n\n".join(errors), pytrace=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Adds the tail of each service log of a failed test to its report (unless the failure
    message holds it already); removes the logs of a test that passed."""
    report = (yield).get_result()
    if report.failed:
        item.vr_failed = True
        text = str(report.longrepr)
        for svc in utils.TRACK.services:
            if svc.log_path not in text:
                report.sections.append(("voidrecon serve on port %d" % svc.port, svc.log_tail()))
    if report.when == "teardown" and not getattr(item, "vr_failed", False):
        for svc in utils.TRACK.services:
            svc.remove_log()


def pytest_unconfigure(config):
    """Kills services that are still running when pytest exits (an interrupted run)."""
    utils.TRACK.kill_leftovers()
