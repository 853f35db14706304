"""SPF (qgrey.spf): the openspf RFC 7208 test suite, whole, with its zone
data fed to check_host through a resolver over that data; then a few
records of our own.

The suite (rfc7208-tests.yml, in pyspf's source distribution) is fetched
with pip at test time into a cache shared between runs ($XDG_CACHE_HOME or
~/.cache, qgrey-tests/), never kept in the repository.
"""
import ipaddress
import os
import subprocess
import sys
import tarfile
import tempfile
import time

import pytest

from conftest import unavailable
from dnsserver import nsd_fixture
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


# The scope of a result (Result.scope): the prefix length of the client's
# network over which the evaluation is the same, because it depends on the
# address only through the networks compared. A network matched needs its
# own length; one not matched needs the client's first bit that differs from
# it (any address sharing the bits up to there is outside too); the scope is
# the most any comparison needs. PTR and the %{i} %{p} macros make the
# result the address's own. Every figure below is worked out by hand from
# the binary of the addresses, as the comments show.

SCOPE_ZONE = ZoneResolver({
    "net.test": [{"TXT": "v=spf1 ip4:198.51.100.0/24 -all"}],
    "except.test": [{"TXT": "v=spf1 -ip4:198.51.100.9 ip4:198.51.100.0/24 -all"}],
    "two.test": [{"TXT": "v=spf1 ip4:192.0.2.0/24 ip4:198.51.100.0/22 -all"}],
    "provider.test": [{"TXT": "v=spf1 include:_spf.provider.test -all"}],
    "_spf.provider.test": [{"TXT": "v=spf1 include:_net4.provider.test "
                                   "include:_net6.provider.test ~all"}],
    "_net4.provider.test": [{"TXT": "v=spf1 ip4:198.51.100.0/24 ip4:203.0.113.0/25 -all"}],
    "_net6.provider.test": [{"TXT": "v=spf1 ip6:2001:db8:100::/48 -all"}],
    "am.test": [{"TXT": "v=spf1 a:relay.am.test/30 mx/28 -all"}, {"MX": [10, "mail.am.test"]}],
    "relay.am.test": [{"A": "192.0.2.28"}],
    "mail.am.test": [{"A": "192.0.2.25"}, {"AAAA": "2001:db8:25::25"}],
    "mx6.test": [{"TXT": "v=spf1 mx//56 -all"}, {"MX": [10, "mail.am.test"]}],
    "a.test": [{"TXT": "v=spf1 a -all"}, {"A": "192.0.2.10"}],
    "ptr.test": [{"TXT": "v=spf1 ptr -all"}],
    "mail.ptr.test": [{"A": "198.51.100.7"}, {"AAAA": "2001:db8::7"}],
    "7.100.51.198.in-addr.arpa": [{"PTR": "mail.ptr.test"}],
    ipaddress.ip_address("2001:db8::7").reverse_pointer: [{"PTR": "mail.ptr.test"}],
    "exists-i.test": [{"TXT": "v=spf1 exists:%{i}.ok.exists-i.test -all"}],
    "198.51.100.7.ok.exists-i.test": [{"A": "127.0.0.2"}],
    "exists.test": [{"TXT": "v=spf1 exists:always.exists.test -all"}],
    "always.exists.test": [{"A": "127.0.0.2"}],
    "local.test": [{"TXT": "v=spf1 exists:%{l}.users.local.test -all"}],
    "x.users.local.test": [{"A": "127.0.0.2"}],
    "p.test": [{"TXT": "v=spf1 exists:%{p}.names.p.test -all"}],
    "v.test": [{"TXT": "v=spf1 exists:%{v}.v.test -all"}],
    "in-addr.v.test": [{"A": "127.0.0.2"}],
    "redirect.test": [{"TXT": "v=spf1 ip4:192.0.2.0/24 redirect=_r.redirect.test"}],
    "_r.redirect.test": [{"TXT": "v=spf1 ip4:198.51.100.0/23 -all"}],
    "v6.test": [{"TXT": "v=spf1 ip6:2001:db8:100::/48 -all"}],
    "host6.test": [{"TXT": "v=spf1 ip6:2001:db8:77::7 -all"}],
    "all.test": [{"TXT": "v=spf1 +all"}],
    "zero.test": [{"TXT": "v=spf1 ip4:0.0.0.0/0 -all"}],
    "loop.test": [{"TXT": "v=spf1 include:loop.test"}],
})

# (client, sender's domain) -> result, scope
SCOPES = [
    # one network: matched, its length; not matched, the first bit that differs
    (("198.51.100.7", "net.test"), ("pass", 24)),
    (("198.51.100.0", "net.test"), ("pass", 24)),
    (("198.51.101.7", "net.test"), ("fail", 24)),   # 3rd octet 0110010|1 vs 0110010|0: bit 24
    (("198.51.228.7", "net.test"), ("fail", 17)),   # 3rd octet 1|1100100 vs 0|1100100: bit 17
    (("203.0.113.9", "net.test"), ("fail", 5)),     # 1100|1011 vs 1100|0110: bit 5
    # several terms: the most any needs, a term not matched included
    (("198.51.100.7", "except.test"), ("pass", 29)),  # 4th octet 0000|0111 vs 0000|1001: bit 29
    (("198.51.100.8", "except.test"), ("pass", 32)),  # 0000100|0 vs 0000100|1: bit 32
    (("198.51.100.9", "except.test"), ("fail", 32)),  # -ip4:198.51.100.9 (/32) matched
    (("198.51.101.7", "two.test"), ("pass", 22)),     # 192 11000|000 vs 198 11000|110: 6; /22: 22
    (("192.0.2.7", "two.test"), ("pass", 24)),        # the first term decides alone
    # an include chain: every record evaluated counts
    (("198.51.100.7", "provider.test"), ("pass", 24)),
    (("203.0.113.9", "provider.test"), ("pass", 25)),    # 5 by the /24, 25 by the /25
    (("203.0.113.200", "provider.test"), ("fail", 25)),  # 4th octet 1|1001000 vs 0|0000000: 25
    (("2001:db8:100:5::1", "provider.test"), ("pass", 48)),  # ip4 terms compare nothing
    (("2001:db8:200::1", "provider.test"), ("fail", 39)),  # 3rd group 0000001|0 vs 0000000|1: 32+7
    (("::ffff:198.51.100.7", "provider.test"), ("pass", 24)),  # IPv4-mapped: an IPv4 client
    (("::ffff:203.0.113.9", "provider.test"), ("pass", 25)),
    # a and mx with a CIDR length: the networks of the hosts found
    (("192.0.2.30", "am.test"), ("pass", 30)),  # 192.0.2.28/30 holds .28 to .31
    (("192.0.2.20", "am.test"), ("pass", 29)),  # 000|1|0100 vs 000|1|1100: 29; .25/28: 28
    (("192.0.2.40", "am.test"), ("fail", 27)),  # 00|1|01000 vs 00|0|11100 and 00|0|11001: 27
    (("2001:db8:25::25", "am.test"), ("pass", 128)),  # no AAAA for relay; mx without //: /128
    (("2001:db8:25:ab::1", "mx6.test"), ("pass", 56)),   # the 4th group's first byte is 00
    (("2001:db8:26::1", "mx6.test"), ("fail", 47)),  # 3rd group ...0010 0|110 vs 0010 0|101: 32+15
    (("192.0.2.25", "mx6.test"), ("pass", 32)),      # mx//56 is /32 for IPv4
    (("192.0.2.10", "a.test"), ("pass", 32)),
    (("192.0.2.11", "a.test"), ("fail", 32)),        # 0000101|1 vs 0000101|0
    (("192.0.2.138", "a.test"), ("fail", 25)),       # 1|0001010 vs 0|0001010
    # names and macros of the address: the address alone
    (("198.51.100.7", "ptr.test"), ("pass", 32)),
    (("198.51.100.8", "ptr.test"), ("fail", 32)),
    (("2001:db8::7", "ptr.test"), ("pass", 128)),
    (("198.51.100.7", "exists-i.test"), ("pass", 32)),
    (("198.51.100.8", "exists-i.test"), ("fail", 32)),
    (("192.0.2.1", "p.test"), ("fail", 32)),
    (("2001:db8::1", "p.test"), ("fail", 128)),
    # names that do not depend on the address: nothing
    (("198.51.100.7", "exists.test"), ("pass", 0)),
    (("2001:db8::1", "exists.test"), ("pass", 0)),
    (("198.51.100.7", "local.test"), ("pass", 0)),   # %{l}: the sender's, not the address's
    (("192.0.2.1", "v.test"), ("pass", 0)),          # %{v}: the family only
    (("2001:db8::1", "v.test"), ("fail", 0)),
    (("198.51.100.7", "all.test"), ("pass", 0)),
    (("203.0.113.9", "zero.test"), ("pass", 0)),
    (("198.51.100.7", "nothing.test"), ("none", 0)),
    # redirect: the target's record counts with the first
    (("198.51.101.7", "redirect.test"), ("pass", 23)),  # 192 vs 198: 6; 198.51.100.0/23: 23
    (("198.51.102.7", "redirect.test"), ("fail", 23)),  # 3rd octet 011001|1|0 vs 011001|0|0
    # IPv6 networks
    (("2001:db8:100:5::1", "v6.test"), ("pass", 48)),
    (("2001:db8:77::7", "host6.test"), ("pass", 128)),
    (("2001:db8:77::8", "host6.test"), ("fail", 125)),  # last group ...|1000 vs ...|0111: 112+13
    # errors say nothing of the neighbours
    (("198.51.100.7", "loop.test"), ("permerror", None)),
    (("198.51.100.300", "net.test"), ("permerror", None)),
]


@pytest.mark.parametrize("args,expected", SCOPES, ids=["-".join(c[0]) for c in SCOPES])
def test_scope(args, expected):
    ip, domain = args
    result = spf.check_host(ip, None, "x@" + domain, "h.example", SCOPE_ZONE)
    assert (result.result, result.scope) == expected, result


def block(ip, scope):
    """The first, a middle and the last address of ip/scope (ipaddress), as
    text; an IPv4-mapped client's are mapped too."""
    address = ipaddress.ip_address(ip)
    mapped = getattr(address, "ipv4_mapped", None)
    network = ipaddress.ip_network((mapped or address, scope), strict=False)
    found = [network[0], network[network.num_addresses // 2], network[-1]]
    return [str(ipaddress.ip_address("::ffff:%s" % a) if mapped else a) for a in found]


@pytest.mark.parametrize("args,expected", [c for c in SCOPES if c[1][1] is not None],
                         ids=["-".join(c[0]) for c in SCOPES if c[1][1] is not None])
def test_every_address_of_the_scope_gets_the_same_result(args, expected):
    """What the scope promises: any address of client/scope is evaluated
    alike (the same result, by the same term)."""
    ip, domain = args
    first = spf.check_host(ip, None, "x@" + domain, "h.example", SCOPE_ZONE)
    for other in block(ip, expected[1]):
        result = spf.check_host(other, None, "x@" + domain, "h.example", SCOPE_ZONE)
        assert (result.result, result.term, result.domain) == (
            expected[0], first.term, first.domain), (other, result)


@pytest.mark.parametrize("ip, domain, scope, other, evaluated", [
    ("198.51.100.7", "net.test", 24, "198.51.101.7", ("fail", "-all")),
    ("198.51.100.7", "except.test", 29, "198.51.100.9", ("fail", "-ip4:198.51.100.9")),
    ("203.0.113.9", "provider.test", 25, "203.0.113.200", ("fail", "-all")),
    ("192.0.2.30", "am.test", 30, "192.0.2.24", ("pass", "mx/28")),
    ("192.0.2.20", "am.test", 29, "192.0.2.28", ("pass", "a:relay.am.test/30")),
    ("2001:db8:100:5::1", "v6.test", 48, "2001:db8:101::1", ("fail", "-all")),
    ("2001:db8:77::8", "host6.test", 125, "2001:db8:77::7", ("pass", "ip6:2001:db8:77::7")),
])
def test_the_network_one_bit_wider_holds_an_address_evaluated_otherwise(
        ip, domain, scope, other, evaluated):
    """The scope is no shorter than it must be: client/(scope - 1) holds an
    address whose result or deciding term differs."""
    assert ipaddress.ip_address(other) in ipaddress.ip_network((ip, scope - 1), strict=False)
    assert ipaddress.ip_address(other) not in ipaddress.ip_network((ip, scope), strict=False)
    result = spf.check_host(ip, None, "x@" + domain, "h.example", SCOPE_ZONE)
    assert result.scope == scope and (result.result, result.term) != evaluated
    result = spf.check_host(other, None, "x@" + domain, "h.example", SCOPE_ZONE)
    assert (result.result, result.term) == evaluated


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


nsd = nsd_fixture(SPF_ZONES)


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
# for a pass that proves something, the network for +all and the rest; for
# a pooling pass, what it is recorded for (recorded=): the client's network
# when the record treats all of it alike, else its address. 203.0.113.100
# matched ip4:203.0.113.0/25, half its /24; 192.0.2.77 is named alone (/32).
ADMIN_KEYS = ["spf:provider.test recorded=198.51.100.0/24",
              "spf:provider.test recorded=203.0.113.100",
              "spf:provider.test recorded=2001:db8:100:5::/64",
              "192.0.2.0/24", "192.0.2.0/24", "192.0.2.0/24",
              "spf:mx.helo.test recorded=192.0.2.77", "192.0.2.0/24"]


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
        "pass term=ip4:198.51.100.0/24 domain=_net4.provider.test key=spf:provider.test "
        "recorded=198.51.100.0/24\n", 0)
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
