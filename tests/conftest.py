"""Running qgrey the way qmail-spp runs it: environment only, stdin closed,
cwd elsewhere, through the launcher that control/smtpplugins names."""
import os
import subprocess
import sys

import pytest

import skips
# Under CI=true a skip not listed in tests/skips.py fails (hooks defined there).
from skips import pytest_make_collect_report, pytest_runtest_makereport, pytest_terminal_summary  # noqa: F401

HERE = os.path.dirname(os.path.abspath(__file__))


def pytest_configure(config):
    """The tests run the installed package and commands: without them, one
    line that says so instead of an error per test module."""
    try:
        import qgrey  # noqa: F401
    except ImportError:
        pytest.exit("qgrey is not installed for %s: run pip install '.[test]' in a virtual "
                    "environment and its pytest (see README, Tests)" % sys.executable, 4)
    if not os.path.exists(os.path.join(os.path.dirname(sys.executable), "qgrey-admin")):
        pytest.exit("the qgrey commands are not installed beside %s: run pip install "
                    "'.[test]' with this interpreter (see README, Tests)" % sys.executable, 4)
IS_ROOT = os.geteuid() == 0
NOBODY = 65534
IN_CI = os.environ.get("CI") == "true"


def unavailable(why):
    """A component a test needs cannot run here: skip, but under CI=true
    (where .ci/run has installed everything) fail, unless tests/skips.py
    lists the reason as right here."""
    if IN_CI and not skips.allowed(why):
        pytest.fail("CI=true: %s" % why)
    pytest.skip(why)


def needs_root():
    """Tests that stand in for two users (root and the plugin's) need root."""
    if not IS_ROOT:
        unavailable("needs root to act as two users")

SPP_ENV = {
    "PROTO": "TCP",
    "TCPLOCALIP": "192.0.2.1",
    "TCPREMOTEIP": "198.51.100.7",
    "TCPREMOTEPORT": "40000",
    "SMTPHELOHOST": "mx.example.org",
    "SMTPMAILFROM": "alice@example.org",
    "SMTPRCPTTO": "bob@example.net",
    "SMTPRCPTCOUNT": "0",
    "SMTPRCPTCOUNTALL": "1",
    "SMTPRCPTHOSTSOK": "1",
}


@pytest.fixture(scope="session")
def launcher(tmp_path_factory):
    """The fast launcher, written as the README says."""
    path = str(tmp_path_factory.mktemp("bin") / "qgrey")
    subprocess.run([sys.executable, "-m", "qgrey.launcher", path], check=True, cwd="/",
                   stdout=subprocess.DEVNULL)
    if os.environ.get("QGREY_COVERAGE"):  # .ci/coverage: measure the plugin's processes too
        import qgrey_coverage_hook
        qgrey_coverage_hook.wrap_launcher(path)
    return path


@pytest.fixture
def gl_dir(tmp_path):
    path = tmp_path / "state"
    path.mkdir(mode=0o700)
    return str(path)


def installed_command():
    """The qgrey console script pip installed beside this interpreter."""
    return os.path.join(os.path.dirname(sys.executable), "qgrey")


SYSTEM_PYTHON = "/usr/bin/python3"


def system_install(top):
    """The package under test installed as the README says, with
    `/usr/bin/python3 -m qgrey.install`, into top/prefix (commands linked
    into top/links) -> top/prefix/bin. top must be root's, and reachable
    by the qmail user where it runs the plugin."""
    import shutil
    import qgrey
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        unavailable(SYSTEM_PYTHON + " is missing: qgrey.install installs for the system's Python")
    source = os.path.join(top, "src")
    shutil.copytree(os.path.dirname(os.path.abspath(qgrey.__file__)),
                    os.path.join(source, "qgrey"),
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    prefix = os.path.join(top, "prefix")
    done = subprocess.run([SYSTEM_PYTHON, "-m", "qgrey.install", "--prefix", prefix,
                           "--bin", os.path.join(top, "links")], cwd=source,
                          env={"PATH": "/usr/bin:/bin"}, preexec_fn=_close_stdin,
                          capture_output=True, timeout=300)
    assert done.returncode == 0, done
    return os.path.join(prefix, "bin")


UNDER_COVERAGE = bool(os.environ.get("QGREY_COVERAGE"))


def bare_start():
    """Seconds a bare interpreter takes to start and exit here, now."""
    import time
    started = time.monotonic()
    spp([sys.executable, "-c", "pass"], {})
    return time.monotonic() - started


def in_time(elapsed, lock_timeout):
    """The documented bound, "within GL_LOCK_TIMEOUT plus a little", with the
    little scaled by a bare interpreter's start timed right after the run:
    a loaded machine slows both alike; a plugin that overstays its deadline
    by a second or more does not pass. Under .ci/coverage every measured
    process is traced and saves its data, which no bare start shows: the
    runs without coverage hold the bound there."""
    if UNDER_COVERAGE:
        return
    bare = bare_start()
    assert elapsed < lock_timeout + 0.5 + 10 * bare, (elapsed, lock_timeout, bare)


def _close_stdin():
    os.close(0)


def spp(command, env, user=None, timeout=60):
    """Run a plugin as qmail-spp does -> CompletedProcess (bytes)."""
    command = [command] if isinstance(command, str) else command
    kwargs = {}
    if user is not None:
        kwargs["user"] = user
        kwargs["group"] = user
        kwargs["extra_groups"] = []
    return subprocess.run(
        command, env=env, cwd="/", stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        preexec_fn=_close_stdin, timeout=timeout, **kwargs)


@pytest.fixture
def run(launcher, gl_dir):
    """run(**overrides) -> CompletedProcess; None as a value unsets a variable."""
    def run(command=None, user=None, timeout=60, **overrides):
        env = dict(SPP_ENV, GL_DIR=gl_dir)
        for name, value in overrides.items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        return spp(command or launcher, env, user=user, timeout=timeout)
    return run


class read_only:
    """A directory nobody may write to, root included (chattr +i when root)."""

    def __init__(self, path):
        self.path = path

    def __enter__(self):
        if IS_ROOT:
            if subprocess.run(["chattr", "+i", self.path], stderr=subprocess.DEVNULL).returncode:
                pytest.skip("cannot make a directory read-only for root here")
        else:
            os.chmod(self.path, 0o500)
        return self.path

    def __exit__(self, *exc):
        if IS_ROOT:
            subprocess.run(["chattr", "-i", self.path])
        else:
            os.chmod(self.path, 0o700)
