"""Waves of new triplets: N deliveries of distinct new triplets started at
the same moment, as a spam run arrives at a busy site.

For each wave: how many were accepted (must be 0: lock contention must never
let a wave through), how many answered within GL_LOCK_TIMEOUT of the time
the same number of bare interpreters take to start, how many were recorded
(the rest are refused all the same, and are new again at their retry), and
how long the wave took. Standard library only; used by bench/run.
"""
import os
import shutil
import sqlite3
import subprocess
import tempfile
import time

LOCK_TIMEOUT = 3
GREYLISTED = b"E451 4.7.1 "


def _fire(argv, envs):
    started = time.monotonic()
    procs = [subprocess.Popen(argv, env=env, cwd="/", stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) for env in envs]
    done = []
    for p in procs:
        out, _ = p.communicate()
        done.append((time.monotonic() - started, out))
    return time.monotonic() - started, done


def _envs(gl_dir, size, base, extra):
    return [dict(base, GL_DIR=gl_dir, GL_LOCK_TIMEOUT=str(LOCK_TIMEOUT),
                 TCPREMOTEIP="10.%d.%d.1" % (i // 250, i % 250),
                 SMTPMAILFROM="wave%d@example.org" % i, SMTPRCPTTO="rcpt%d@example.net" % i,
                 **extra) for i in range(size)]


def recorded_sqlite(gl_dir):
    path = os.path.join(gl_dir, "qgrey.sqlite")
    with sqlite3.connect(path) as c:
        return c.execute("SELECT count(*) FROM entries").fetchone()[0]


def wave(python, launcher, size, base, extra, count_recorded, work=None):
    """-> dict of one wave's figures. The wave's GL_DIR is made in work
    (default: the system's temporary directory) and removed after."""
    floor, _ = _fire([python, "-I", "-S", "-c", "pass"], [{}] * size)
    gl_dir = tempfile.mkdtemp(prefix="qgrey-wave-", dir=work)
    try:
        os.chmod(gl_dir, 0o700)
        took, done = _fire([launcher], _envs(gl_dir, size, base, extra))
        return {
            "size": size,
            "accepted": sum(1 for _, out in done if not out.startswith(GREYLISTED)),
            "in time": sum(1 for t, _ in done if t <= floor + LOCK_TIMEOUT),
            "recorded": count_recorded(gl_dir),
            "took": took,
            "floor": floor,
        }
    finally:
        shutil.rmtree(gl_dir, ignore_errors=True)


def table(rows):
    lines = ["| store | wave | accepted | answered in time | recorded | wave took | "
             "bare interpreters took |", "|---|---:|---:|---:|---:|---:|---:|"]
    for store, row in rows:
        lines.append("| %s | %d | %d | %d | %d (%d%%) | %.2f s | %.2f s |" % (
            store, row["size"], row["accepted"], row["in time"], row["recorded"],
            100 * row["recorded"] // row["size"], row["took"], row["floor"]))
    return "\n".join(lines)
