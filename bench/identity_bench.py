#!/usr/bin/env python3
"""qgrey benchmark of the decisions that learn the client's identity from
DNS (GL_SPF=1, GL_GREYLIST=suspicious, GL_HOST_NAMES=dns), against a bare
interpreter start-up, with the DNS questions each decision sent.

    python3 bench/identity_bench.py [--runs N]

Run with the interpreter qgrey is installed for (a virtual environment
with the package and pytest: the DNS server is the tests' nsd, from
tests/dnsserver.py). nsd answers from its zones at once, as a warm local
caching resolver does; every query passes through a forwarding server that
counts it. Each case alternates with the floor (`python -I -S -c pass`);
the ratio is median(CPU of the decision's process) / median(CPU of the
floor), CPU being user + system time from wait4.

Cases:
  known                 a known triplet, GL_SPF=0 (today's known path)
  known spf             the same with GL_SPF=1 (a sender without SPF, keyed by
                        network): must send 0 queries, at known's ratio
  known spf pooled      a known triplet keyed spf:provider.org: read by network
                        (a miss), then by its pool (its pass recorded): 0 queries
  new                   a new triplet, GL_SPF=0
  new spf               a new triplet with GL_SPF=1 from a network not seen
                        before, the sender's SPF evaluated (a provider's
                        include chain: 3 TXT questions)
  new spf network recorded  a new triplet from another host of a network whose
                        pooling pass is recorded: no question
  new spf recorded      a new triplet of a client whose pooling pass is recorded
  trusted               GL_GREYLIST=suspicious, GL_HOST_NAMES=dns: a server
                        with a forward-confirmed static name, accepted at once
  suspicious            the same settings, a client with a dynamic PTR name
  evaluator             CPU per SPF evaluation in-process, qgrey.spf against
                        pyspf (Debian's python3-spf) on the same records
It reports the ratios and queries, and exits 1 when "known spf" sends a
query or its ratio exceeds known's by more than 0.05 (figures: docs/spf.md
and docs/selective.md).

bench/run measures its own DNS cases with run_cases() (RUN_CASES: with its
installed launcher, the queries per decision checked exactly, budgets in
bench/run's DNS_BUDGETS); tests/dnsserver.py is used without pytest.
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))

from dnsserver import NSD, NSD_BIN, Recorder  # noqa: E402  (needs no pytest)

PYTHON = sys.executable
FLOOR = [PYTHON, "-I", "-S", "-c", "pass"]
ZONES = {
    "provider.org": """
@       TXT "v=spf1 include:_spf.provider.org -all"
_spf    TXT "v=spf1 include:_net4.provider.org include:_net6.provider.org ~all"
_net4   TXT "v=spf1 ip4:198.51.0.0/16 -all"
_net6   TXT "v=spf1 ip6:2001:db8:100::/48 -all"
""",
    "2.0.192.in-addr.arpa": "10 PTR mail.staticmail.net.\n11 PTR 192-0-2-11.dyn.ispaccess.net.",
    "staticmail.net": "mail A 192.0.2.10",
    "nospf.org": '@ TXT "just text"',
    "ispaccess.net": "192-0-2-11.dyn A 192.0.2.11",
}
BASE = {
    "PROTO": "TCP", "TCPLOCALIP": "192.0.2.1", "TCPREMOTEPORT": "40000",
    "SMTPHELOHOST": "client.example", "SMTPRCPTCOUNT": "0", "SMTPRCPTCOUNTALL": "1",
    "SMTPRCPTHOSTSOK": "1", "GL_DELAY": "1d", "GL_DNS_TIMEOUT": "2",
}


def cpu_of(argv, env):
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        pid = os.posix_spawn(argv[0], argv, env, file_actions=[
            (os.POSIX_SPAWN_DUP2, null, 1), (os.POSIX_SPAWN_DUP2, null, 2),
            (os.POSIX_SPAWN_CLOSE, 0)])
    finally:
        os.close(null)
    _, status, usage = os.wait4(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, argv
    return usage.ru_utime + usage.ru_stime


PYSPF = """
import sys, time, DNS, spf
DNS.defaults["server"] = ["127.0.0.1"]
DNS.defaults["port"] = int(sys.argv[1])
n = int(sys.argv[2])
assert spf.check2(i="198.51.100.7", s="alice@provider.org", h="x.example")[0] == "pass"
start = time.process_time()
for _ in range(n):
    spf.check2(i="198.51.100.7", s="alice@provider.org", h="x.example")
print((time.process_time() - start) / n)
"""


def evaluator(nsd, count=300):
    """CPU seconds per evaluation of the provider's include chain (3 TXT
    questions, no cache between evaluations): qgrey.spf, and pyspf
    (Debian's python3-spf) on the same server, or None without it."""
    from qgrey import dns, spf
    server = [dns.parse_server(nsd.server)]
    assert spf.check_host("198.51.100.7", None, "alice@provider.org", "x.example",
                          dns.Resolver(server, 2.0)).result == "pass"
    start = time.process_time()
    for _ in range(count):
        spf.check_host("198.51.100.7", None, "alice@provider.org", "x.example",
                       dns.Resolver(server, 2.0))
    ours = (time.process_time() - start) / count
    done = subprocess.run(["/usr/bin/python3", "-c", PYSPF, str(nsd.port), str(count)],
                          capture_output=True, text=True)
    return ours, float(done.stdout) if done.returncode == 0 else None


# The cases bench/run measures and budgets (BUDGETS_DNS there), each with
# the start of the log line it must write and the DNS questions it must
# ask per decision: (name, settings, what varies per run, log, queries).
SELECTIVE = {"GL_GREYLIST": "suspicious", "GL_HOST_NAMES": "dns"}


def _new_rcpt(n):
    return {"SMTPRCPTTO": "r%d@example.net" % n}


def _new_network(n):
    """A new triplet from a /24 of the provider's not seen before (its pass
    is recorded for the /24 that ip4:198.51.0.0/16 covers alike): one of
    256, so at most 255 runs of a case."""
    return {"SMTPRCPTTO": "r%d@example.net" % n, "TCPREMOTEIP": "198.51.%d.7" % (n % 256)}


def _new_neighbour(n):
    """A new triplet from another host of 198.51.100.0/24, whose pass is
    recorded (by the first decision of the case, from 198.51.100.7)."""
    return {"SMTPRCPTTO": "r%d@example.net" % n, "TCPREMOTEIP": "198.51.100.%d" % (n % 200 + 20)}


RUN_CASES = (
    ("known spf", {"GL_SPF": "1", "SMTPMAILFROM": "alice@nospf.org"}, None,
     "action=pass reason=known client=198.51.100.7 sender=", 0),
    ("known spf pooled", {"GL_SPF": "1"}, None,
     "action=pass reason=known client=198.51.100.7 pool=spf:provider.org spf=pass ", 0),
    ("new spf", {"GL_SPF": "1"}, _new_network,
     "action=greylist reason=new client=198.51.", 3),
    ("new spf network recorded", {"GL_SPF": "1"}, _new_neighbour,
     "action=greylist reason=new client=198.51.100.", 0),
    ("known pool dns", {"GL_HOST_POOLS": "1", "GL_HOST_NAMES": "dns", "TCPREMOTEIP": "192.0.2.10",
                        "SMTPHELOHOST": "mail.staticmail.net"}, None,
     "action=pass reason=known client=192.0.2.10 pool=staticmail.net sender=", 0),
    ("trusted", dict(SELECTIVE, TCPREMOTEIP="192.0.2.10"), _new_rcpt,
     "action=pass reason=trusted client=192.0.2.10 name=mail.staticmail.net mode=suspicious ", 2),
    ("trusted recorded", dict(SELECTIVE, TCPREMOTEIP="192.0.2.10", SMTPHELOHOST="mail.staticmail.net"),
     _new_rcpt,
     "action=pass reason=trusted client=192.0.2.10 name=mail.staticmail.net mode=suspicious ", 0),
    ("suspicious", dict(SELECTIVE, TCPREMOTEIP="192.0.2.11"), _new_rcpt,
     "action=greylist reason=new client=192.0.2.11 mode=suspicious ", 2),
)


COUNTED = 5  # decisions of each case whose queries are counted


def run_cases(launcher, runs, work, floor=FLOOR, cases=RUN_CASES):
    """bench/run's DNS cases with its installed launcher, against nsd on a
    loopback port (a warm local caching resolver) -> [(name, CPU ratio,
    queries per decision, expected queries, log line or None when it was
    the intended one)], or None when nsd is missing.

    The timed decisions ask nsd itself. The queries are counted on COUNTED
    more decisions of each case, which ask through a Recorder (a Python
    forwarder that would slow the answers, and with them the CPU figures:
    a decision woken later runs on colder caches)."""
    if NSD_BIN is None:
        return None
    nsd = NSD(os.path.join(work, "nsd"), ZONES)
    dns = Recorder(nsd.port)
    rows = []
    counter = iter(range(10 ** 9))
    try:
        for name, fixed, vary, intended, expected in cases:
            gl_dir = tempfile.mkdtemp(prefix="dns-%s-" % name.replace(" ", "-"), dir=work)
            base = dict(dict(BASE, GL_DIR=gl_dir, GL_DNS=nsd.server,
                             SMTPMAILFROM="alice@provider.org", SMTPRCPTTO="bob@example.net",
                             TCPREMOTEIP="198.51.100.7"), **fixed)

            def env(**more):
                return dict(base, **dict(vary(next(counter)) if vary else {}, **more))
            cpu_of([launcher], dict(base, GL_LEARN="1"))  # the known triplet, as passed
            done = subprocess.run([launcher], env=env(GL_DNS=dns.server), stdin=subprocess.DEVNULL,
                                  capture_output=True, text=True, cwd="/")
            wrong = None if done.stderr.startswith("qgrey: " + intended) else done.stderr
            asked = len(dns.queries)
            for _ in range(COUNTED):
                cpu_of([launcher], env(GL_DNS=dns.server))
            queries = (len(dns.queries) - asked) / COUNTED
            floors, subjects = [], []
            for _ in range(runs):
                floors.append(cpu_of(floor, {}))
                subjects.append(cpu_of([launcher], env()))
            rows.append((name, statistics.median(subjects) / statistics.median(floors), queries,
                         expected, wrong))
    finally:
        dns.stop()
        nsd.stop()
    return rows


# The standalone run's cases: bench/run's, with the plain known and new
# triplets (GL_SPF=0) to compare with.
MAIN_CASES = (
    ("known", {}, None, "action=pass reason=known client=198.51.100.7 sender=", 0),
    ("new", {}, _new_network, "action=greylist reason=new client=198.51.", 0),
    ("new spf recorded", {"GL_SPF": "1"}, _new_rcpt,
     "action=greylist reason=new client=198.51.100.7 pool=spf:provider.org spf=pass ", 0),
) + RUN_CASES


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=40)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="qgrey-identity-bench.")
    try:
        launcher = os.path.join(work, "qgrey")
        subprocess.run([PYTHON, "-m", "qgrey.launcher", launcher], check=True,
                       stdout=subprocess.DEVNULL, cwd="/")
        rows = run_cases(launcher, args.runs, work, cases=MAIN_CASES)
        if rows is None:
            print("nsd is not installed (Debian: apt-get install nsd)")
            return 1
        ratios = {}
        for name, ratio, queries, expected, wrong in rows:
            ratios[name] = ratio
            print("%-26s CPU ratio %.2fx  queries/decision %.2f (expected %d)%s" % (
                name, ratio, queries, expected, "" if wrong is None else "; logged " + wrong.strip()),
                flush=True)
        nsd = NSD(os.path.join(work, "nsd-evaluator"), ZONES)
        try:
            ours, pyspf = evaluator(nsd)
        finally:
            nsd.stop()
        print("evaluator                  qgrey.spf %.3f ms per evaluation, pyspf %s" % (
            1000 * ours, "%.3f ms" % (1000 * pyspf) if pyspf else "not installed"))
    finally:
        subprocess.run(["rm", "-rf", work])
    known_spf = [row for row in rows if row[0] == "known spf"][0]
    failed = known_spf[2] != 0 or ratios["known spf"] > ratios["known"] + 0.05
    print("known spf: %s" % ("FAILED" if failed else "ok (no query, ratio within 0.05 of known)"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
