"""SPF (qgrey.spf): the openspf RFC 7208 test suite, whole, with its zone
data fed to check_host through a resolver over that data; then a few
records of our own.

The suite (rfc7208-tests.yml, in pyspf's source distribution) is fetched
with pip at test time into a cache shared between runs ($XDG_CACHE_HOME or
~/.cache, qgrey-tests/), never kept in the repository.
"""
import os
import subprocess
import sys
import tarfile
import tempfile
import time

import pytest

from conftest import unavailable
from qgrey import dns, spf

PYSPF = "pyspf==2.0.14"
SUITE_NAME = "rfc7208-tests.yml"


def cache_dir():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "qgrey-tests")


def fetch_suite():
    """-> path of the suite, or raises RuntimeError saying why not."""
    path = os.path.join(cache_dir(), SUITE_NAME)
    if os.path.exists(path):
        return path
    os.makedirs(cache_dir(), exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps",
                               "--no-binary", ":all:", "--retries", "1", "--timeout", "20",
                               PYSPF, "-d", tmp],
                              capture_output=True, text=True, timeout=300)
        archives = [f for f in os.listdir(tmp) if f.endswith(".tar.gz")]
        if proc.returncode or not archives:
            raise RuntimeError("pip download %s failed: %s" % (PYSPF, proc.stderr[-300:]))
        with tarfile.open(os.path.join(tmp, archives[0])) as tar:
            member = [m for m in tar.getmembers() if m.name.endswith("/test/" + SUITE_NAME)][0]
            data = tar.extractfile(member).read()
    temporary = "%s.%d.tmp" % (path, os.getpid())  # runs at the same time
    with open(temporary, "wb") as out:
        out.write(data)
    os.replace(temporary, path)
    return path


def load_suite():
    """-> [(id, scenario zone, test)] or [(None, why, None)]."""
    try:
        import yaml
    except ImportError:
        return [(None, "pyyaml is not installed (pip install '.[test]')", None)]
    try:
        path = fetch_suite()
    except (RuntimeError, OSError, subprocess.SubprocessError, IndexError) as err:
        return [(None, "cannot obtain the RFC 7208 suite: %s" % err, None)]
    cases = []
    with open(path, "rb") as f:
        for number, scenario in enumerate(yaml.safe_load_all(f)):
            zone = ZoneResolver(scenario["zonedata"])
            name = scenario["description"].replace(" ", "-").lower()
            for test_id, test in scenario["tests"].items():
                cases.append(("%s/%s" % (name, test_id), zone, test))
    return cases


class ZoneResolver:
    """The suite's zone data as a resolver, read as the suite's own driver
    (pyspf's testspf.py) reads it: a name absent is NXDOMAIN (a name under
    error. times out), TIMEOUT makes the name (or one of its types) time
    out, SPF records stand in for TXT where a name has no TXT, NONE is no
    record, a label longer than 63 bytes times out."""

    def __init__(self, zonedata):
        self.zone = {}
        self.queries = 0
        for name, entries in zonedata.items():
            rows, spf_rows, has_txt = [], [], False
            for entry in entries:
                if entry == "TIMEOUT":
                    rows.append("TIMEOUT")
                    continue
                for rtype, value in entry.items():
                    if rtype in ("TXT", "SPF") and isinstance(value, str):
                        value = [value]
                    if rtype == "TXT":
                        has_txt = True
                    elif rtype == "SPF":
                        spf_rows.append(("TXT", value))
                    if value != ["NONE"]:
                        rows.append((rtype, value))
            if not has_txt:
                rows.extend(spf_rows)
            self.zone[name.lower().rstrip(".")] = rows

    def query(self, name, qtype, depth=0):
        self.queries += 1
        labels = [label for label in name.split(".") if label]
        if any(len(label) > 63 for label in labels):
            return dns.TIMEOUT, "label"
        name = ".".join(labels).lower()
        if name not in self.zone:
            return (dns.TIMEOUT, "error.") if name.startswith("error.") else (dns.NXDOMAIN, [])
        records, seen_type = [], False
        for row in self.zone[name]:
            if row == "TIMEOUT":
                if not seen_type:
                    return dns.TIMEOUT, "zone"
                break
            rtype, value = row
            if rtype == qtype:
                seen_type = True
                if value == "TIMEOUT":
                    return dns.TIMEOUT, "zone"
            elif value == "TIMEOUT":
                continue
            if rtype == qtype:
                records.append(self.value(rtype, value))
            elif rtype == "CNAME" and depth < 8:
                status, more = self.query(value, qtype, depth + 1)
                if status in (dns.TIMEOUT, dns.ERROR):
                    return status, more
                records.extend(more)
        return (dns.OK, records) if records else (dns.NODATA, [])

    @staticmethod
    def value(rtype, value):
        if rtype == "TXT":
            return "".join(value).encode("utf-8").decode("latin-1")
        if rtype == "MX":
            return (value[0], value[1].lower().rstrip("."))
        if rtype == "PTR":
            return value.lower().rstrip(".")
        return value


SUITE = load_suite()


@pytest.mark.parametrize("case_id,zone,test", SUITE, ids=[c[0] or "suite" for c in SUITE])
def test_rfc7208_suite(case_id, zone, test):
    if case_id is None:
        unavailable(zone)
    result = spf.check_host(test["host"], None, test.get("mailfrom", ""),
                            test.get("helo", ""), zone)
    allowed = test["result"] if isinstance(test["result"], list) else [test["result"]]
    assert result.result in allowed, (result, test.get("description"))
    if "explanation" in test:
        expected = test["explanation"]
        assert (result.explanation or "DEFAULT") == expected, result


def test_suite_is_whole():
    if SUITE[0][0] is None:
        unavailable(SUITE[0][1])
    # pyspf 2.0.14 carries the 2014.05 release: 16 scenarios, 203 tests
    assert len(SUITE) == 203


# check_host and qgrey-admin spf against a real DNS server (nsd)

SPF_ZONES = {
    "provider.test": """
@       TXT "v=spf1 include:_spf.provider.test -all"
_spf    TXT "v=spf1 include:_net4.provider.test include:_net6.provider.test ~all"
_net4   TXT "v=spf1 ip4:198.51.100.0/24 ip4:203.0.113.0/25 -all"
_net6   TXT "v=spf1 ip6:2001:db8:100::/48 -all"
""",
    "catchall.test": '@ TXT "v=spf1 +all"',
    "redirected.test": '@ TXT "v=spf1 redirect=provider.test"',
    "mxdomain.test": """
@       TXT "v=spf1 mx a:relay.mxdomain.test/30 -all"
@       MX 10 mail.mxdomain.test.
mail    A 192.0.2.25
mail    AAAA 2001:db8:25::25
relay   A 192.0.2.28
""",
    "nospf.test": '@ A 192.0.2.1\n@ TXT "just text"',
    "twice.test": '@ TXT "v=spf1 -all"\n@ TXT "v=spf1 +all"',
    "loop.test": '@ TXT "v=spf1 include:loop.test"',
    "exp.test": '@ TXT "v=spf1 -all exp=why.exp.test"\nwhy TXT "%{i} is not one of %{d}\'s hosts"',
    "helo.test": 'mx TXT "v=spf1 ip4:192.0.2.77 -all"',
}

# (client, sender, helo) -> result, term, domain: what qgrey-admin spf prints
SPF_CASES = [
    (("198.51.100.7", "alice@provider.test", "a.example"),
     "pass term=ip4:198.51.100.0/24 domain=_net4.provider.test"),
    (("203.0.113.100", "alice@provider.test", "a.example"),
     "pass term=ip4:203.0.113.0/25 domain=_net4.provider.test"),
    (("2001:db8:100:5::1", "alice@provider.test", "a.example"),
     "pass term=ip6:2001:db8:100::/48 domain=_net6.provider.test"),
    (("203.0.113.200", "alice@provider.test", "a.example"),
     "fail term=-all domain=provider.test"),
    (("192.0.2.99", "bob@redirected.test", "a.example"),
     "fail term=-all domain=provider.test"),
    (("2001:db8:100::9", "bob@redirected.test", "a.example"),
     "pass term=ip6:2001:db8:100::/48 domain=_net6.provider.test"),
    (("192.0.2.99", "anyone@catchall.test", "a.example"),
     "pass term=+all domain=catchall.test"),
    (("192.0.2.25", "x@mxdomain.test", "a.example"), "pass term=mx domain=mxdomain.test"),
    (("2001:db8:25::25", "x@mxdomain.test", "a.example"), "pass term=mx domain=mxdomain.test"),
    (("192.0.2.30", "x@mxdomain.test", "a.example"),
     "pass term=a:relay.mxdomain.test/30 domain=mxdomain.test"),
    (("192.0.2.32", "x@mxdomain.test", "a.example"), "fail term=-all domain=mxdomain.test"),
    (("192.0.2.1", "x@nospf.test", "a.example"),
     "none domain=nospf.test (no SPF record for nospf.test)"),
    (("192.0.2.1", "x@nothere.provider.test", "a.example"),
     "none domain=nothere.provider.test (no SPF record for nothere.provider.test)"),
    (("192.0.2.1", "x@refused.example", "a.example"),  # a zone nsd does not serve
     "temperror domain=refused.example (DNS error for refused.example TXT: refused)"),
    (("192.0.2.1", "x@twice.test", "a.example"),
     "permerror domain=twice.test (2 SPF records for twice.test)"),
    (("192.0.2.1", "x@loop.test", "a.example"),
     "permerror domain=loop.test (more than 10 DNS lookups)"),
    (("192.0.2.1", "x@exp.test", "a.example"),
     "fail term=-all domain=exp.test explanation=192.0.2.1 is not one of exp.test's hosts"),
    (("192.0.2.77", "<>", "mx.helo.test"), "pass term=ip4:192.0.2.77 domain=mx.helo.test"),
    (("192.0.2.78", "<>", "mx.helo.test"), "fail term=-all domain=mx.helo.test"),
]


@pytest.fixture(scope="module")
def nsd(tmp_path_factory):
    from dnsserver import NSD
    server = NSD(tmp_path_factory.mktemp("nsd"), SPF_ZONES)
    yield server
    server.stop()


@pytest.mark.parametrize("args,expected", SPF_CASES, ids=["-".join(c[0][:2]) for c in SPF_CASES])
def test_check_host_against_nsd(nsd, args, expected):
    resolver = dns.Resolver([dns.parse_server(nsd.server)], 2.0)
    ip, sender, helo = args
    result = spf.check_host(ip, None, "" if sender == "<>" else sender, helo, resolver)
    words = [result.result] + (["term=" + result.term] if result.term else []) + [
        "domain=" + result.domain] + (["(%s)" % result.reason] if result.reason else []) + (
        ["explanation=" + result.explanation] if result.explanation else [])
    assert " ".join(words) == expected


PYSPF = """
import sys, DNS, spf
DNS.defaults["server"] = ["127.0.0.1"]
DNS.defaults["port"] = int(sys.argv[1])
for line in sys.stdin:
    ip, sender, helo = line.split()
    print(spf.check2(i=ip, s="" if sender == "<>" else sender, h=helo)[0])
"""


def test_same_results_as_pyspf(nsd):
    """Debian's python3-spf on the same server gives the same results, but
    for REFUSED: RFC 7208 4.4 makes any RCODE but 0 and 3 a temperror,
    pyspf (with pydns) says none."""
    if subprocess.run(["/usr/bin/python3", "-c", "import spf, DNS"],
                      capture_output=True).returncode:
        unavailable("python3-spf (pyspf with pydns) is not installed")
    cases = [case for case in SPF_CASES if "refused" not in case[1]]
    lines = "".join(" ".join(args) + "\n" for args, _ in cases)
    proc = subprocess.run(["/usr/bin/python3", "-c", PYSPF, str(nsd.port)], input=lines,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [expected.split()[0] for _, expected in cases]


def admin(nsd_server, gl_dir, *args, timeout="2"):
    env = {"PATH": "/usr/bin:/bin", "GL_DIR": str(gl_dir), "GL_DNS": nsd_server,
           "GL_DNS_TIMEOUT": timeout}
    command = os.path.join(os.path.dirname(sys.executable), "qgrey-admin")
    return subprocess.run([command, "spf"] + list(args), env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=60, cwd="/")


# The client field qgrey-admin spf adds (key=): the sender's domain's pool
# for a pass that proves something, the network for +all and the rest.
ADMIN_KEYS = ["spf:provider.test", "spf:provider.test", "spf:provider.test",
              "192.0.2.0/24", "192.0.2.0/24", "192.0.2.0/24", "spf:mx.helo.test", "192.0.2.0/24"]


def with_key(expected, key):
    """A line of SPF_CASES with key= after domain= (before a reason)."""
    head, sep, tail = expected.partition(" (")
    head, esep, explanation = head.partition(" explanation=")
    return head + " key=" + key + esep + explanation + sep + tail


def test_admin_spf(nsd, tmp_path):
    for (args, expected), key in zip(SPF_CASES[:3] + SPF_CASES[6:7] + SPF_CASES[-4:], ADMIN_KEYS):
        proc = admin(nsd.server, tmp_path, *args)
        assert (proc.stdout, proc.stderr, proc.returncode) == (with_key(expected, key) + "\n", "", 0)
    # the HELO is optional, but the null sender needs it
    proc = admin(nsd.server, tmp_path, "198.51.100.7", "alice@provider.test")
    assert (proc.stdout, proc.returncode) == (
        "pass term=ip4:198.51.100.0/24 domain=_net4.provider.test key=spf:provider.test\n", 0)
    proc = admin(nsd.server, tmp_path, "198.51.100.7", "<>")
    assert (proc.stdout, proc.stderr, proc.returncode) == ("", (
        "qgrey-admin: fatal: usage: the null sender <> is checked as postmaster@HELO: "
        "give HELO\n"), 100)
    proc = admin(nsd.server, tmp_path, "198.51.100.300", "alice@provider.test")
    assert (proc.stdout, proc.stderr, proc.returncode) == (
        "", "qgrey-admin: fatal: usage: 198.51.100.300 is not an IP address\n", 100)


def test_admin_spf_dead_server_is_temperror_within_the_deadline(tmp_path):
    from dnsserver import FakeServer
    silent = FakeServer()
    try:
        start = time.monotonic()
        proc = admin(silent.server, tmp_path, "198.51.100.7", "alice@provider.test",
                     timeout="0.5")
        elapsed = time.monotonic() - start
    finally:
        silent.stop()
    assert (proc.stdout, proc.stderr, proc.returncode) == (
        "temperror domain=provider.test key=198.51.100.0/24 "
        "(DNS timeout for provider.test TXT: no answer)\n", "",
        111)
    assert elapsed < 0.5 + 2  # the interpreter's start, then half a second of DNS
