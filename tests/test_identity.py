"""qgrey.identity in-process, over a resolver of this file's (answers
written out, questions recorded): the verified name, the HELO check, when
an SPF pass pools, and the suspicious verdict, case by case."""
import pytest

from qgrey import dns, identity, request, spf


class Resolver:
    """query(name, type) from a table {(name, type): (status, records)};
    anything else NXDOMAIN. .asked: the questions."""

    def __init__(self, table):
        self.table, self.asked, self.queries = table, [], 0

    def query(self, name, qtype):
        self.asked.append((name, qtype))
        self.queries += 1
        return self.table.get((name, qtype), (dns.NXDOMAIN, []))


def make(table, ip="192.0.2.10", host=None, helo="client.example", sender=b"a@example.org", **env):
    environ = {b"TCPREMOTEIP": ip.encode(), b"SMTPHELOHOST": helo.encode() if helo else b"",
               b"SMTPMAILFROM": sender, b"GL_DIR": b"/nonexistent", b"GL_HOST_NAMES": b"dns"}
    if host:
        environ[b"TCPREMOTEHOST"] = host.encode()
    environ.update({k.encode(): v.encode() for k, v in env.items()})
    req = request.from_environ(environ)
    req.resolver = Resolver(table)
    return req


PTR10 = ("10.2.0.192.in-addr.arpa", "PTR")
GOOD = {PTR10: (dns.OK, ["mail.staticmail.net"]),
        ("mail.staticmail.net", "A"): (dns.OK, ["192.0.2.10"])}


@pytest.mark.parametrize("table, host, expected", [
    (GOOD, None, ("mail.staticmail.net", "dns")),
    ({PTR10: (dns.TIMEOUT, "no answer")}, None, (None, "PTR timeout")),
    ({PTR10: (dns.NXDOMAIN, [])}, None, (None, "PTR nxdomain")),
    ({PTR10: (dns.OK, ["mail.staticmail.net"]),
      ("mail.staticmail.net", "A"): (dns.ERROR, "servfail")}, None, (None, "forward error")),
    ({PTR10: (dns.OK, ["mail.staticmail.net"]),
      ("mail.staticmail.net", "A"): (dns.OK, ["192.0.2.99"])}, None, (None, "PTR not confirmed")),
    ({PTR10: (dns.OK, ["bad_name!", "mx.staticmail.net", "mail.staticmail.net"]),
      ("mail.staticmail.net", "A"): (dns.OK, ["192.0.2.10"]),
      ("mx.staticmail.net", "A"): (dns.OK, ["192.0.2.10"])},
     "MAIL.staticmail.net.", ("mail.staticmail.net", "dns")),  # the hint first
])
def test_verified_host(table, host, expected):
    req = make(table, host=host)
    assert identity.verified_host(req) == expected


def test_the_hint_is_asked_first_and_only_as_a_ptr_name():
    req = make({PTR10: (dns.OK, ["a.staticmail.net", "mail.staticmail.net"]),
                ("mail.staticmail.net", "A"): (dns.OK, ["192.0.2.10"])},
               host="mail.staticmail.net")
    assert identity.verified_host(req) == ("mail.staticmail.net", "dns")
    assert req.resolver.asked == [PTR10, ("mail.staticmail.net", "A")]
    req = make({PTR10: (dns.NXDOMAIN, []), ("forged.staticmail.net", "A"): (dns.OK, ["192.0.2.10"])},
               host="forged.staticmail.net")
    assert identity.verified_host(req) == (None, "PTR nxdomain")


def test_tcpserver_names_are_taken_as_they_are():
    req = make({}, host="Mail.Staticmail.NET.", GL_HOST_NAMES="tcpserver")
    assert identity.verified_host(req) == ("mail.staticmail.net", "tcpserver")
    assert identity.verified_host(make({}, GL_HOST_NAMES="tcpserver")) == (None, "no name")
    assert identity.verified_host(make({}, ip="garbage")) == (None, "no address")
    assert req.resolver.asked == []


def test_an_ipv6_client_is_asked_by_its_nibbles():
    name = "5.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.5.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa"
    req = make({(name, "PTR"): (dns.OK, ["mail6.staticmail.net"]),
                ("mail6.staticmail.net", "AAAA"): (dns.OK, ["2001:db8:5::25"])}, ip="2001:db8:5::25")
    assert identity.verified_host(req) == ("mail6.staticmail.net", "dns")


@pytest.mark.parametrize("helo, table, expected", [
    ("", {}, (False, "no HELO")),
    ("[192.0.2.10]", {}, (False, "address literal")),
    ("192.0.2.10", {}, (False, "address literal")),
    ("not a name", {}, (False, "not a host name")),
    ("mail.staticmail.net", GOOD, (False, "reverse name")),
    ("192-0-2-10.dsl.isp.net", {}, (False, "generic word")),
    ("host.dyndns.org", {}, (False, "denied domain")),
    ("mx.rescuedmail.org", {("mx.rescuedmail.org", "A"): (dns.OK, ["192.0.2.10"])},
     (True, "confirmed")),
    ("mx.rescuedmail.org", {("mx.rescuedmail.org", "A"): (dns.OK, ["192.0.2.11"])},
     (False, "not confirmed")),
    ("mx.rescuedmail.org", {("mx.rescuedmail.org", "A"): (dns.TIMEOUT, "no answer")},
     (False, "timeout")),
])
def test_helo_check(helo, table, expected):
    table = dict(table)
    table.setdefault(PTR10, (dns.NXDOMAIN, []))
    assert identity.helo_check(make(table, helo=helo)) == expected


@pytest.mark.parametrize("term, version, expected", [
    ("+all", 4, "all"), ("all", 6, "all"),
    ("ip4:198.51.0.0/16", 4, None), ("ip4:198.50.0.0/15", 4, "wide network"),
    ("ip4:192.0.2.1", 4, None), ("ip6:2001:db8::/32", 6, None),
    ("ip6:2001:db8::/31", 6, "wide network"), ("ip6:2001:db8::1", 6, None),
    ("a/8", 4, "wide network"), ("a/8", 6, None), ("a:x.example/24//16", 6, "wide network"),
    ("mx//0", 6, "wide network"), ("mx", 4, None),
    ("exists:%{i}.x.example", 4, None), ("exists:always.x.example", 4, "constant exists"),
    ("ptr:x.example", 4, None),
])
def test_passes_that_prove_nothing(term, version, expected):
    assert identity.proves_nothing(spf.Result(spf.PASS, term, "x.example"), version) == expected


def test_pool_of():
    passed = spf.Result(spf.PASS, "ip4:198.51.100.0/24", "_net4.provider.org")
    assert identity.pool_of(passed, "198.51.100.7", "provider.org") == "spf:provider.org"
    assert identity.pool_of(passed, "198.51.100.7", None) is None
    assert identity.pool_of(passed, "nonsense", "provider.org") is None
    for result in (spf.FAIL, spf.SOFTFAIL, spf.NEUTRAL, spf.NONE, spf.TEMPERROR, spf.PERMERROR):
        assert identity.pool_of(spf.Result(result, "-all", "provider.org"), "198.51.100.7",
                                "provider.org") is None


def test_check_spf_without_an_address_or_an_identity():
    assert identity.check_spf(make({}, ip="garbage")).result == spf.PERMERROR
    assert identity.check_spf(make({}, helo="", sender=b"")) == (
        spf.NONE, None, None, None, "null sender without HELO", None)


@pytest.mark.parametrize("table, helo, env, expected", [
    (GOOD, "client.example", {}, (False, "name")),
    ({PTR10: (dns.TIMEOUT, "no answer")}, "client.example", {},
     (True, "no verified name (PTR timeout)")),
    ({PTR10: (dns.OK, ["192-0-2-10.dyn.isp.net"]), ("192-0-2-10.dyn.isp.net", "A"): (dns.OK, ["192.0.2.10"])},
     "client.example", {}, (True, "name: generic word")),
    ({PTR10: (dns.OK, ["192-0-2-10.dyn.isp.net"]), ("192-0-2-10.dyn.isp.net", "A"): (dns.OK, ["192.0.2.10"]),
      ("mx.rescuedmail.org", "A"): (dns.OK, ["192.0.2.10"])}, "mx.rescuedmail.org", {}, (False, "helo")),
])
def test_the_suspicious_verdict(table, helo, env, expected):
    req = make(table, helo=helo, GL_GREYLIST="suspicious", **env)
    evidence = identity.learn(req, None)
    assert (evidence.suspicious, evidence.why) == expected
    assert evidence.queries == len(req.resolver.asked)


def test_an_spf_fail_is_suspicious_whatever_the_name():
    table = dict(GOOD)
    table[("staticmail.net", "TXT")] = (dns.OK, ["v=spf1 -all"])
    req = make(table, sender=b"x@staticmail.net", GL_GREYLIST="suspicious", GL_SPF="1")
    evidence = identity.learn(req, None)
    assert (evidence.suspicious, evidence.why, evidence.spf_text, evidence.pool) == (
        True, "spf fail", "fail", None)
    # a pass through +all: not pooled, and why
    table[("staticmail.net", "TXT")] = (dns.OK, ["v=spf1 +all"])
    req = make(table, sender=b"x@staticmail.net", GL_SPF="1")
    evidence = identity.learn(req, None)
    assert (evidence.spf_text, evidence.pool, evidence.pool_reason) == ("pass", None, "all")
