"""A spam wave must not open the gate: 200 deliveries of distinct new
triplets at the same moment, on every store kind, through the launcher as
qmail-spp runs it. None may be accepted for lock contention; every answer
comes within the deadline; the retries of those recorded pass."""
import os
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


def fire(command, envs):
    """Start every process at once -> [(seconds, CompletedProcess-like)]."""
    started = time.monotonic()
    procs = [subprocess.Popen(command, env=env, cwd="/", stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for env in envs]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        results.append((time.monotonic() - started, subprocess.CompletedProcess(
            p.args, p.returncode, out, err)))
    return results


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
    # The floor: as many bare interpreters started at once on this machine.
    floor = max(t for t, _ in fire([sys.executable, "-I", "-S", "-c", "pass"],
                                   [{}] * WAVE))
    results = fire([launcher], wave_envs(gl_dir, kind, extra))
    slowest = max(t for t, _ in results)
    lines = [check(result) for _, result in results]
    accepted = [line for (_, result), line in zip(results, lines) if result.stdout != GREYLISTED]
    assert accepted == [], accepted[:3]
    not_recorded = sum(b"detail=not recorded: " in line for line in lines)
    assert all(b" reason=new " in line for line in lines), [
        line for line in lines if b" reason=new " not in line][:3]
    assert slowest < floor + LOCK_TIMEOUT + 2, (slowest, floor)

    time.sleep(3.5)  # past GL_DELAY: the recorded triplets' retries pass
    retries = fire([launcher], wave_envs(gl_dir, kind, extra))
    passed = sum(result.stdout.startswith(b"HX-Greylist: delayed ") for _, result in retries)
    refused = sum(result.stdout == GREYLISTED for _, result in retries)
    assert passed + refused == WAVE
    assert passed >= WAVE - not_recorded  # every triplet recorded passes at its retry
    assert passed >= WAVE // 2, "only %d of %d recorded" % (passed, WAVE)
    print("%s: wave of %d: 0 accepted, %d recorded, %d not recorded; slowest answer %.2f s "
          "(bare interpreters %.2f s); retries: %d passed" % (
              kind, WAVE, WAVE - not_recorded, not_recorded, slowest, floor, passed))
