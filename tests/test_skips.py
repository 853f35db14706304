"""The skip check of tests/skips.py: under CI=true a skip not listed there
fails; a listed one is right only where its condition holds."""
import os
import subprocess
import sys

import skips

HERE = os.path.dirname(os.path.abspath(__file__))

CONFTEST = """import sys
sys.path.insert(0, %r)
from skips import pytest_make_collect_report, pytest_runtest_makereport, pytest_terminal_summary
""" % HERE

TESTS = """import pytest

def test_unlisted():
    pytest.skip("the moon is not in the right phase")

@pytest.mark.skipif(True, reason=%r)
def test_listed():
    pass

@pytest.mark.xfail(strict=True, reason="known")
def test_expected_failure():
    assert False
"""


def listed_reason():
    """A reason ALLOWED accepts on this interpreter: a kind it lacks."""
    for kind in skips.STORE_KINDS[1:]:
        if skips.allowed(skips.MISSING_KIND % kind):
            return skips.MISSING_KIND % kind
    return None


def run_pytest(tmp_path, ci, reason):
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_some.py").write_text(TESTS % reason)
    env = dict(os.environ, CI="true") if ci else {
        k: v for k, v in os.environ.items() if k != "CI"}
    env.pop("PYTEST_ADDOPTS", None)
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rs",
                           str(tmp_path)], cwd=str(tmp_path), env=env, capture_output=True,
                          text=True, timeout=120)


def test_under_ci_an_unlisted_skip_fails_and_a_listed_one_is_counted(tmp_path):
    reason = listed_reason() or "the moon is not in the right phase"
    result = run_pytest(tmp_path, True, reason)
    lines = result.stdout.splitlines()
    assert result.returncode == 1, result.stdout
    assert ("CI=true: skipped, and the reason is not one tests/skips.py allows here: "
            "the moon is not in the right phase") in lines
    if listed_reason():
        assert "CI=true: 1 skips, each allowed by tests/skips.py" in lines
        assert lines[-1].startswith("=") and " 1 failed, 1 skipped, 1 xfailed in " in lines[-1]
    else:  # no kind missing here: both skips are unlisted
        assert "CI=true: 0 skips, each allowed by tests/skips.py" in lines
        assert " 2 failed, 1 xfailed in " in lines[-1]


def test_without_ci_skips_are_skips(tmp_path):
    result = run_pytest(tmp_path, False, "anything")
    assert result.returncode == 0, result.stdout
    assert " 2 skipped, 1 xfailed in " in result.stdout.splitlines()[-1]
    assert "each allowed by tests/skips.py" not in result.stdout


def test_debian_python_may_not_lack_a_dbm_kind():
    if skips.DEBIAN_PYTHON:
        assert not skips.allowed("this Python has no dbm.gnu")
        assert not skips.allowed("this Python has no dbm.ndbm")
        assert not skips.allowed("nobody cannot run /usr/bin/python3 or read /x: the system "
                                 "Python case covers it")
    assert not skips.allowed("this Python has no dbm.gnu, nor anything")  # whole reasons only
    assert skips.allowed("this Python has no dbm.sqlite3") == (sys.version_info < (3, 13))
