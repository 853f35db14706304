"""qgrey under the softlimit that qmail-smtpd runs with.

README documents softlimit -m 32000000 (32 MB) as enough: a decision needs
about 13 MB (known triplet) to 16 MB (new triplet, SQLite loaded) on 64-bit
CPython 3.9-3.13. Below that, qgrey still answers cleanly until the
interpreter itself cannot start.
"""
import re
import shutil
import subprocess
import sys

import pytest

from conftest import SPP_ENV, spp, unavailable

DOCUMENTED = 32000000
REPLY = re.compile(rb"^(E451 [ -~]*|H[ -~]*)\n$")



@pytest.fixture(autouse=True)
def softlimit():
    """daemontools' softlimit: skipped where it is missing, failed under CI=true."""
    if shutil.which("softlimit") is None:
        unavailable("softlimit (daemontools) is not installed")


def decision(launcher, gl_dir, limit, recipient, **extra):
    env = dict(SPP_ENV, GL_DIR=gl_dir, SMTPRCPTTO=recipient, SMTPRCPTCOUNT="0", **extra)
    return spp(["softlimit", "-m", str(limit), launcher], env)


def test_documented_limit_is_enough(launcher, gl_dir):
    result = decision(launcher, gl_dir, DOCUMENTED, "known@example.net", GL_DELAY="0")
    assert b"action=greylist reason=new" in result.stderr, result.stderr
    result = decision(launcher, gl_dir, DOCUMENTED, "known@example.net", GL_DELAY="0")
    assert b"action=pass reason=delayed" in result.stderr, result.stderr
    result = decision(launcher, gl_dir, DOCUMENTED, "known@example.net", GL_DELAY="0")
    assert b"action=pass reason=known" in result.stderr, result.stderr
    assert result.stdout.startswith(b"HX-Greylist: passed")
    result = decision(launcher, gl_dir, DOCUMENTED, "new@example.net")
    assert result.stdout == b"E451 4.7.1 Greylisted, please try again later\n", result


def interpreter_starts(limit):
    """Whether the bare interpreter starts under this limit. (Below about
    12 MB some CPythons fail at start-up, and 3.12.1 hangs there.)"""
    try:
        return subprocess.run(["softlimit", "-m", str(limit), sys.executable, "-I", "-S", "-c", "pass"],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, timeout=10).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def test_below_the_limit_answers_cleanly(launcher, gl_dir):
    """Down in 1 MB steps: every run that got as far as qgrey exits 0 with at
    most one valid line and one log line, never a traceback."""
    decision(launcher, gl_dir, DOCUMENTED, "known@example.net", GL_DELAY="0")
    decision(launcher, gl_dir, DOCUMENTED, "known@example.net", GL_DELAY="0")
    failed_cleanly = 0
    for step, limit in enumerate(range(DOCUMENTED, 4000000, -1000000)):
        if not interpreter_starts(limit):
            break  # qgrey cannot run where Python itself cannot
        for recipient in ("known@example.net", "new%d@example.net" % step):
            result = decision(launcher, gl_dir, limit, recipient)
            if result.returncode != 0 and b"qgrey:" not in result.stderr:
                break  # the interpreter itself could not start: qgrey never ran
            assert result.returncode == 0, (limit, result)
            assert b"Traceback" not in result.stderr, (limit, result.stderr)
            assert result.stdout == b"" or REPLY.match(result.stdout), (limit, result.stdout)
            lines = result.stderr.splitlines()
            assert len(lines) == 1 and lines[0].startswith(b"qgrey: action="), (limit, lines)
            failed_cleanly += b"action=error reason=internal" in lines[0]
        else:
            continue
        break
    assert failed_cleanly, "no limit made a decision fail; lower the floor of the search"
