"""qgrey-admin explain IP SENDER RECIPIENT: the plugin's own decision,
written out with its reasons, and nothing written to the database.

Run as real processes under a frozen clock (libfaketime): the plugin
records attempts at chosen times, explain answers at others; every output
is written out in full here. The database's dump (bytes) is the same
before and after each explain.
"""
import calendar
import glob
import os
import subprocess
import sys

import pytest

from conftest import SPP_ENV, spp, unavailable

LIBFAKETIME = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1")
                     + glob.glob("/usr/lib/faketime/libfaketime.so.1"))
T0 = calendar.timegm((2026, 9, 1, 0, 0, 0))
ADMIN = os.path.join(os.path.dirname(sys.executable), "qgrey-admin")
SETTINGS = {"GL_DELAY": "300", "GL_HOST_NAMES": "tcpserver", "GL_GREYLIST": "all", "GL_SPF": "0"}


def clock(at):
    if not LIBFAKETIME:
        unavailable("libfaketime is not installed (Debian: faketime)")
    stamp = "%04d-%02d-%02d %02d:%02d:%02d" % tuple(__import__("time").gmtime(at)[:6])
    return {"LD_PRELOAD": LIBFAKETIME[0], "FAKETIME": stamp, "TZ": "UTC",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1"}


@pytest.fixture
def at(launcher, gl_dir):
    """at(seconds after T0).plugin(**env) / .explain(*args, **env) / .dump()"""
    class At:
        def __init__(self, offset):
            self.env = dict(clock(T0 + offset), GL_DIR=gl_dir, PATH="/usr/bin:/bin", **SETTINGS)

        def plugin(self, **env):
            result = spp(launcher, dict(SPP_ENV, **dict(self.env, **env)))
            assert result.returncode == 0
            return result

        def explain(self, *args, **env):
            before = dump(gl_dir)
            result = subprocess.run([ADMIN, "explain"] + list(args), env=dict(self.env, **env),
                                    capture_output=True, stdin=subprocess.DEVNULL, cwd="/")
            assert dump(gl_dir) == before  # nothing written
            assert result.stderr == b"" and result.returncode == 0
            return result.stdout.decode()
    return At


def dump(gl_dir):
    result = subprocess.run([ADMIN, "dump"], env={"GL_DIR": gl_dir, "PATH": "/usr/bin:/bin"},
                            capture_output=True, stdin=subprocess.DEVNULL, cwd="/")
    assert result.returncode == 0, result.stderr
    return result.stdout


ARGS = ("198.51.100.7", "alice@example.org", "bob@example.net")
KEYS = """\
  triplet 198.51.100.0/24 alice@example.org bob@example.net: {triplet}
  client 198.51.100.7: {client}
  reply alice@example.org>bob@example.net: none
  client 198.51.100.0/24: none
"""
IDENTITY = """\
identity: not needed for this answer; learned by explain alone
name: mx.example.org, verified by tcpserver
dynamic-name rule: not dynamic
HELO: mx.example.org: not checked (the verified name is enough)
SPF: not evaluated (GL_SPF=0)
pool: none: keyed by the network 198.51.100.0/24
mode: GL_GREYLIST=all: every new triplet is greylisted; suspicious would find the client trusted (name)
"""


def test_a_new_triplet(at):
    assert dump_lines(at(0)) == ["qgrey-dump 1"]
    assert at(0).explain(*ARGS, "--host", "mx.example.org", "--helo", "mx.example.org") == (
        "explain: client 198.51.100.7 sender alice@example.org recipient bob@example.net "
        "at 2026-09-01 00:00:00 UTC\n"
        "answer: greylist (reason=new): 451 4.7.1 Greylisted, please try again later\n"
        "delay left: 5m00s from this attempt (GL_DELAY; explain records nothing)\n"
        "keys read:\n" + KEYS.format(triplet="none", client="none") + IDENTITY)


def dump_lines(moment):
    return dump(moment.env["GL_DIR"]).decode().splitlines()


def test_a_waiting_triplet_and_its_delay_left(at):
    assert at(0).plugin().stdout == b"E451 4.7.1 Greylisted, please try again later\n"
    assert at(130).explain(*ARGS, "--host", "mx.example.org", "--helo", "mx.example.org") == (
        "explain: client 198.51.100.7 sender alice@example.org recipient bob@example.net "
        "at 2026-09-01 00:02:10 UTC\n"
        "answer: greylist (reason=early): 451 4.7.1 Greylisted, please try again later\n"
        "delay left: 2m50s (a retry from 2026-09-01 00:05:00 UTC passes)\n"
        "keys read:\n"
        + KEYS.format(triplet="waiting, first 2m ago, last 2m ago, passed -, tries 1",
                      client="none") + IDENTITY)


def test_a_passed_triplet(at):
    at(0).plugin()
    assert at(400).plugin().stderr.decode().startswith("qgrey: action=pass reason=delayed ")
    assert at(4000).explain(*ARGS, "--host", "mx.example.org", "--helo", "mx.example.org") == (
        "explain: client 198.51.100.7 sender alice@example.org recipient bob@example.net "
        "at 2026-09-01 01:06:40 UTC\n"
        "answer: accept (reason=known): adds X-Greylist: passed (known sender)\n"
        "delay left: none\n"
        "keys read:\n"
        + KEYS.format(triplet="passed, first 1h ago, last 1h ago, passed 1h ago, tries 1",
                      client="counting, first 1h ago, last 1h ago, passed -, tries 1")
        + IDENTITY)


def test_a_whitelisted_client(at, gl_dir):
    with open(os.path.join(gl_dir, "whitelist-clients"), "w") as f:
        f.write("/^mx\\d*\\.example\\.org$/\n")
    at(0).plugin(SMTPRCPTTO="carol@example.net")  # a database with something in it
    assert at(60).explain(*ARGS, "--host", "mx.example.org", "--helo", "mx.example.org") == (
        "explain: client 198.51.100.7 sender alice@example.org recipient bob@example.net "
        "at 2026-09-01 00:01:00 UTC\n"
        "answer: not greylisted (reason=whitelist-client): no answer, qmail-smtpd decides\n"
        "delay left: none\n"
        "keys read: none (decided before the database)\n" + IDENTITY)


def test_a_dynamic_name_under_suspicious(at):
    at(0).plugin(SMTPRCPTTO="carol@example.net")
    assert at(10).explain("198.51.100.9", "<>", "bob@example.net", "--host",
                          "dsl-198-51-100-9.dyn.example.com", "--helo", "[198.51.100.9]",
                          GL_GREYLIST="suspicious") == (
        "explain: client 198.51.100.9 sender <> recipient bob@example.net "
        "at 2026-09-01 00:00:10 UTC\n"
        "answer: greylist (reason=new): 451 4.7.1 Greylisted, please try again later\n"
        "delay left: 5m00s from this attempt (GL_DELAY; explain records nothing)\n"
        "keys read:\n"
        "  triplet 198.51.100.0/24 <> bob@example.net: none\n"
        "  client 198.51.100.9: none\n"
        "  client 198.51.100.0/24: none\n"
        "name: dsl-198-51-100-9.dyn.example.com, verified by tcpserver\n"
        "dynamic-name rule: refused: generic word\n"
        "HELO: [198.51.100.9]: address literal\n"
        "SPF: not evaluated (GL_SPF=0)\n"
        "pool: none: keyed by the network 198.51.100.0/24\n"
        "mode: GL_GREYLIST=suspicious: the client is suspicious (name: generic word)\n")


def test_usage(at):
    result = subprocess.run([ADMIN, "explain", "mx.example.org", "a@b", "c@d"],
                            env=at(0).env, capture_output=True, stdin=subprocess.DEVNULL)
    assert (result.returncode, result.stdout, result.stderr) == (
        100, b"", b"qgrey-admin: fatal: usage: mx.example.org is not an IP address\n")


def test_at_the_data_stage(at):
    out = at(0).explain(*ARGS, "--host", "mx.example.org", GL_STAGE="data")
    assert out.splitlines()[1:4] == [
        "answer: greylist (reason=new): 451 4.7.1 Greylisted, please try again later",
        "stage: GL_STAGE=data: the RCPT is accepted and this answer given at DATA",
        "delay left: 5m00s from this attempt (GL_DELAY; explain records nothing)"]


def test_spf_without_a_domain_to_check(at):
    """GL_SPF=1, the null sender and no HELO: SPF has nothing to check (no
    DNS question), and the name lines are explain's own."""
    out = at(0).explain("2001:db8::5", "<>", "bob@example.net", GL_SPF="1",
                        GL_DNS="127.0.0.1:9", GL_DNS_TIMEOUT="0.3")
    assert out.splitlines()[3:] == [
        "keys read:",
        "  triplet 2001:db8::/64 <> bob@example.net: none",
        "  client 2001:db8::/64: none",
        "name: none verified (no name)",
        "dynamic-name rule: no verified name to judge",
        "HELO: none given",
        "SPF: none (null sender without HELO)",
        "pool: none: keyed by the network 2001:db8::/64",
        "mode: GL_GREYLIST=all: every new triplet is greylisted; suspicious would find the "
        "client suspicious (no verified name (no name))"]
