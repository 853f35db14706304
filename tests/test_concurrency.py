"""Simultaneous deliveries and killed writers."""
import os
import signal
import sqlite3
import subprocess
import sys

from conftest import SPP_ENV, _close_stdin, spp

GREYLISTED = b"E451 4.7.1 Greylisted, please try again later\n"


def start(launcher, env):
    """The plugin started as qmail-spp starts it (stdin closed, cwd /)."""
    return subprocess.Popen([launcher], env=env, cwd="/", preexec_fn=_close_stdin,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def rows(gl_dir):
    with sqlite3.connect(os.path.join(gl_dir, "qgrey.sqlite")) as c:
        assert c.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        return dict((k, (p, t)) for k, p, t in c.execute("SELECT key, passed, tries FROM entries"))


def test_sixty_simultaneous_deliveries_of_one_new_triplet_are_all_greylisted(launcher, gl_dir):
    env = dict(SPP_ENV, GL_DIR=gl_dir, GL_LOCK_TIMEOUT="30")
    procs = [start(launcher, env) for _ in range(60)]
    outputs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0] * 60
    assert [out for out, _ in outputs] == [GREYLISTED] * 60
    assert rows(gl_dir) == {"198.51.100.0/24 alice@example.org bob@example.net": (0, 60)}


def test_no_new_triplet_is_lost_among_many(launcher, gl_dir):
    procs = [start(launcher, dict(SPP_ENV, GL_DIR=gl_dir, GL_LOCK_TIMEOUT="30",
                                  SMTPRCPTTO="user%d@example.net" % i)) for i in range(60)]
    assert [p.communicate(timeout=60)[0] for p in procs] == [GREYLISTED] * 60
    stored = rows(gl_dir)
    assert sorted(stored) == sorted(
        "198.51.100.0/24 alice@example.org user%d@example.net" % i for i in range(60))
    assert set(stored.values()) == {(0, 1)}


WRITER = r"""
import sys, time
sys.path.insert(0, sys.argv[2])
from qgrey.store.sqlite import SqliteStore
from qgrey.policy import Entry
store = SqliteStore(sys.argv[1], 5)
store._locked(True)
store._open(True)
store._get("x")
store.db.execute("PRAGMA cache_size=1")  # spill pages into the file before the commit
for i in range(3000):
    store._put("uncommitted%d * *" % i, Entry(1, 1))
print("ready", flush=True)
time.sleep(60)
"""


def test_a_writer_killed_holding_the_lock_leaves_a_usable_database(launcher, gl_dir):
    env = dict(SPP_ENV, GL_DIR=gl_dir)
    for i in range(20):
        assert spp(launcher, dict(env, SMTPRCPTTO="c%d@example.net" % i)).stdout == GREYLISTED
    package = os.path.dirname(os.path.dirname(os.path.abspath(__import__("qgrey").__file__)))
    writer = subprocess.Popen([sys.executable, "-c", WRITER, gl_dir, package], stdout=subprocess.PIPE)
    assert writer.stdout.readline() == b"ready\n"
    assert os.path.getsize(os.path.join(gl_dir, "qgrey.sqlite-journal")) > 0
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    # The dead writer's lock went with it: the retry is decided on the
    # database (reason=early), not refused for the lock (reason=lock, after
    # GL_LOCK_TIMEOUT) nor for a corrupt file.
    result = spp(launcher, dict(env, SMTPRCPTTO="c0@example.net"))
    assert (result.returncode, result.stdout) == (0, GREYLISTED)
    assert result.stderr.startswith(b"qgrey: action=greylist reason=early "), result.stderr
    assert result.stderr.count(b"\n") == 1, result.stderr
    stored = rows(gl_dir)
    assert len(stored) == 20 and not any(k.startswith("uncommitted") for k in stored)
    assert stored["198.51.100.0/24 alice@example.org c0@example.net"] == (0, 2)
