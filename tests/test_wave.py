"""A spam wave must not open the gate: 200 deliveries of distinct new
triplets at the same moment, on every store kind, through the launcher as
qmail-spp runs it. None may be accepted for lock contention; every answer
comes within the deadline; the retries of those recorded pass.

Time is measured against bare interpreters started in the same burst,
alternately with the plugins, so that both see the same load: a bound in
seconds measured once beforehand is missed as soon as the machine gets
busier in between."""
import os
import selectors
import subprocess
import sys
import time

import pytest

from conftest import SPP_ENV
from skips import kind_params
from test_hostile import check

WAVE = int(os.environ.get("QGREY_WAVE", "200"))
GREYLISTED = b"E451 4.7.1 Greylisted, please try again later\n"
LOCK_TIMEOUT = 3
BARE = [sys.executable, "-I", "-S", "-c", "pass"]
# The slowest plugin answer may take GL_LOCK_TIMEOUT (a wait for the lock
# that ends at the deadline, counted from the plugin's start) plus this many
# times the slowest bare interpreter of the same burst (its own start-up and
# answer). Measured with the load average at 18 to 36 (other test runs):
# 0.9 to 1.7 times, the highest where no plugin waited for the lock at all;
# a deadline overstayed by GL_LOCK_TIMEOUT (measured 6.9 s against a bound
# of 5.7 s) fails.
RATIO = 2.5


# Through sh, which closes stdin and execs the command: the parent need not
# fork itself for each (preexec_fn), so the burst starts much faster.
CLOSED_STDIN = ["/bin/sh", "-c", 'exec "$@" <&-', "sh"]


def fire(runs):
    """Start every (command, env) at once, as qmail-spp does (stdin closed,
    cwd /) -> [(seconds from its start to its exit, CompletedProcess)], in
    order. A process's exit is seen when its output pipes close, watched
    between one start and the next as well as after the last."""
    procs, started, ended, out, open_pipes = [], {}, {}, {}, {}
    with selectors.DefaultSelector() as selector:
        def watch(timeout):
            for key, _ in selector.select(timeout):
                data = os.read(key.fd, 65536)
                if data:
                    out[key.fd].append(data)
                    continue
                selector.unregister(key.fileobj)
                pid = key.data.pid
                open_pipes[pid] -= 1
                if not open_pipes[pid]:
                    del open_pipes[pid]
                    ended[pid] = time.monotonic()
        for command, env in runs:
            p = subprocess.Popen(CLOSED_STDIN + command, env=env, cwd="/",
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            started[p.pid] = time.monotonic()
            procs.append(p)
            open_pipes[p.pid] = 2
            for pipe in (p.stdout, p.stderr):
                out[pipe.fileno()] = []
                selector.register(pipe, selectors.EVENT_READ, p)
            watch(0)
        deadline = time.monotonic() + 120
        while open_pipes:
            assert time.monotonic() < deadline, "%d processes still running" % len(open_pipes)
            watch(1)
    results = []
    for p in procs:
        stdout, stderr = (b"".join(out[pipe.fileno()]) for pipe in (p.stdout, p.stderr))
        p.stdout.close()
        p.stderr.close()
        p.wait(120)
        results.append((ended[p.pid] - started[p.pid],
                        subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr)))
    return results


def wave_with_floor(launcher, envs):
    """The wave, each plugin started just after a bare interpreter ->
    (the plugins' results, the slowest bare interpreter's seconds)."""
    results = fire([run for env in envs for run in ((BARE, {}), ([launcher], env))])
    return results[1::2], max(t for t, _ in results[0::2])


def wave_envs(gl_dir, kind, extra):
    return [dict(SPP_ENV, GL_DIR=gl_dir, GL_STORE=kind, GL_DELAY="3",
                 GL_LOCK_TIMEOUT=str(LOCK_TIMEOUT), TCPREMOTEIP="10.%d.%d.1" % (i // 250, i % 250),
                 SMTPMAILFROM="sender%d@example.org" % i, SMTPRCPTTO="rcpt%d@example.net" % i,
                 **extra) for i in range(WAVE)]


@pytest.fixture(params=kind_params() + ["redis"])  # a kind this Python lacks: a listed skip
def store_kind(request, tmp_path):
    if request.param != "redis":
        yield request.param, {}
        return
    from redisserver import RedisServer
    server = RedisServer(tmp_path / "redis")
    try:
        yield "redis", {"GL_REDIS": server.url, "GL_REDIS_TIMEOUT": "3"}
    finally:
        server.stop()


def test_a_wave_of_new_triplets_is_refused_whole(launcher, gl_dir, store_kind):
    kind, extra = store_kind
    results, floor = wave_with_floor(launcher, wave_envs(gl_dir, kind, extra))
    slowest = max(t for t, _ in results)
    lines = [check(result) for _, result in results]
    accepted = [line for (_, result), line in zip(results, lines) if result.stdout != GREYLISTED]
    assert accepted == [], accepted[:3]
    not_recorded = sum(b"detail=not recorded: " in line for line in lines)
    assert all(b" reason=new " in line for line in lines), [
        line for line in lines if b" reason=new " not in line][:3]
    # A second more than the lock's deadline: a store that writes beside its
    # file (dbm.sqlite3's WAL) ends a wave later; a deadline overstayed by
    # seconds still does not pass.
    assert slowest < RATIO * floor + LOCK_TIMEOUT + 1, (slowest, floor)

    time.sleep(3.5)  # past GL_DELAY: the recorded triplets' retries pass
    retries = fire([([launcher], env) for env in wave_envs(gl_dir, kind, extra)])
    passed = sum(result.stdout.startswith(b"HX-Greylist: delayed ") for _, result in retries)
    refused = sum(result.stdout == GREYLISTED for _, result in retries)
    assert passed + refused == WAVE
    assert passed >= WAVE - not_recorded  # every triplet recorded passes at its retry
    assert passed >= WAVE // 2, "only %d of %d recorded" % (passed, WAVE)
    print("%s: wave of %d: 0 accepted, %d recorded, %d not recorded; slowest answer %.2f s "
          "(bare interpreters %.2f s); retries: %d passed" % (
              kind, WAVE, WAVE - not_recorded, not_recorded, slowest, floor, passed))
