"""The skips that are right under CI=true, in one place, and the check that
holds every other skip to a failure there.

.ci/run installs everything the tests need and runs them with CI=true, as
root. A skip there means a part of the suite did not run, so any skip
whose reason is not listed in ALLOWED below fails the test instead (the
hook in conftest.py, make_report below), and conftest.unavailable() skips
rather than fails only for a listed reason. Each entry is right only on
some interpreter or machine, and says which: `when` must hold for the skip
to be accepted (Debian's Python, for one, must have dbm.gnu and dbm.ndbm).

The store kinds: every test that runs over the kinds of store takes them
from kind_params(), all four kinds on every interpreter, so that a kind
this Python lacks is a visible skip with its reason (listed here), never a
parametrisation that silently vanishes.
"""
import importlib
import os
import re
import sys

import pytest

IN_CI = os.environ.get("CI") == "true"
# Debian's /usr/bin/python3 (in a virtual environment or not).
DEBIAN_PYTHON = sys.base_prefix == "/usr"
SITE_PYTHON = "/usr/bin/python3"


def has_module(name):
    try:
        importlib.import_module(name)
        return True
    except ImportError:
        return False


STORE_KINDS = ("sqlite", "dbm.gnu", "dbm.ndbm", "dbm.sqlite3")
MISSING_KIND = "this Python has no %s"


def kind_params():
    """Every store kind, as pytest parameters; a kind this Python lacks is
    skipped with the reason MISSING_KIND (listed in ALLOWED)."""
    return [pytest.param(kind, marks=pytest.mark.skipif(
        kind != "sqlite" and not has_module(kind), reason=MISSING_KIND % kind))
        for kind in STORE_KINDS]


# (pattern the whole skip reason must match, why it is right, when it is).
ALLOWED = [
    (r"this Python has no dbm\.gnu|dbm\.gnu is not in this Python\b.*",
     "dbm.gnu is an optional module: pyenv's builds here have none; Debian's "
     "Python has it from python3-gdbm, which .ci/run installs",
     lambda: not DEBIAN_PYTHON and not has_module("dbm.gnu")),
    (r"this Python has no dbm\.ndbm",
     "dbm.ndbm is an optional module (Berkeley DB): pyenv's builds here have "
     "none; Debian's Python has it",
     lambda: not DEBIAN_PYTHON and not has_module("dbm.ndbm")),
    (r"this Python has no dbm\.sqlite3",
     "dbm.sqlite3 is new in Python 3.13",
     lambda: sys.version_info < (3, 13)),
    (r"nobody cannot run \S+ or read \S+: the system Python case covers it",
     "an interpreter under /root (pyenv) is out of reach of the user nobody; "
     "the same test runs with Debian's Python, which nobody can run",
     lambda: not DEBIAN_PYTHON),
    (r"this host has /var/qmail/control/smtpplugins",
     "the test is of a host without qmail; on a host with qmail the other "
     "qgrey-admin check tests cover the file",
     lambda: os.path.exists("/var/qmail/control/smtpplugins")),
    (r"no Python of another version under ~/\.pyenv to make the earlier install with",
     "the upgrade test needs a second interpreter, which a machine may not have",
     lambda: not os.path.isdir(os.path.expanduser("~/.pyenv/versions"))),
]


def allowed(reason):
    """-> whether a skip for reason is one listed above, right here."""
    return any(re.fullmatch(pattern, reason) and when() for pattern, _, when in ALLOWED)


def skip_reason(report):
    """The reason of a skipped report, as the skip gave it."""
    longrepr = report.longrepr
    text = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    return text[len("Skipped: "):] if text.startswith("Skipped: ") else text


def checked(report):
    """Under CI=true, a skipped report whose reason is not allowed -> failed.
    (An xfail is reported as skipped too: it carries wasxfail, and is left
    to its strict mark.) -> report."""
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        reason = skip_reason(report)
        if allowed(reason):
            counted.append(reason)
        else:
            report.outcome = "failed"
            report.longrepr = ("CI=true: skipped, and the reason is not one tests/skips.py "
                               "allows here: %s" % reason)
    return report


counted = []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    checked(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    checked(outcome.get_result())


def pytest_terminal_summary(terminalreporter):
    """The line .ci/run looks for: without it, the check above did not run."""
    if IN_CI:
        terminalreporter.write_line("CI=true: %d skips, each allowed by tests/skips.py" % len(counted))
