"""The stub resolver (qgrey.dns) against a real DNS server (nsd, started by
the tests on a loopback port) and against fake servers that never answer,
fail, or forge answers; the GL_DNS forms and resolv.conf."""
import os
import socket
import time

import pytest

from dnsserver import FakeServer, answer, nsd_fixture
from qgrey import dns, settings

BIG_TXT = " ".join('"%s"' % ("t%02d" % i * 25) for i in range(8))  # 8 x 75 bytes

ZONES = {
    "example.test": """
a       A     192.0.2.1
a       A     192.0.2.2
aaaa    AAAA  2001:db8::1
both    A     192.0.2.3
both    AAAA  2001:db8::3
txt     TXT   "v=spf1 " "ip4:192.0.2.0/24" " -all"
txt2    TXT   "first"
txt2    TXT   "second"
mx      MX    10 mx1.example.test.
mx      MX    20 MX2.Example.Test.
MiXeD   A     192.0.2.9
c1      CNAME c2
c2      CNAME a
cext    CNAME a.other.test.
cgone   CNAME a.elsewhere.test.
loop1   CNAME loop2
loop2   CNAME loop1
big     TXT   %s
empty   TXT   "x"
""" % BIG_TXT,
    "2.0.192.in-addr.arpa": "1 PTR a.example.test.\n1 PTR MAIL.example.test.",
    "other.test": "a A 198.51.100.1",
}


nsd = nsd_fixture(ZONES)


def resolver(*servers, timeout=2.0):
    return dns.Resolver([dns.parse_server(s) for s in servers], timeout)


def test_record_types(nsd):
    r = resolver(nsd.server)
    assert r.query("a.example.test", "A") == (dns.OK, ["192.0.2.1", "192.0.2.2"])
    assert r.query("aaaa.example.test", "AAAA") == (dns.OK, ["2001:db8::1"])
    assert r.query("both.example.test", "AAAA") == (dns.OK, ["2001:db8::3"])
    assert r.query("txt.example.test", "TXT") == (dns.OK, ["v=spf1 ip4:192.0.2.0/24 -all"])
    assert sorted(r.query("txt2.example.test", "TXT")[1]) == ["first", "second"]
    assert r.query("mx.example.test", "MX") == (dns.OK, [(10, "mx1.example.test"),
                                                       (20, "mx2.example.test")])
    assert sorted(r.query("1.2.0.192.in-addr.arpa", "PTR")[1]) == [
        "a.example.test", "mail.example.test"]
    # names are matched and returned in lower case, a trailing dot is no matter
    assert r.query("mixed.EXAMPLE.test.", "A") == (dns.OK, ["192.0.2.9"])


def test_cname_chains(nsd):
    r = resolver(nsd.server)
    assert r.query("c1.example.test", "A") == (dns.OK, ["192.0.2.1", "192.0.2.2"])
    assert r.query("cext.example.test", "A") == (dns.OK, ["198.51.100.1"])
    # a CNAME out of the server's zones: an authoritative server gives only
    # the CNAME, and there is nothing of the type in the answer
    assert r.query("cgone.example.test", "A") == (dns.NODATA, [])
    # a loop ends (bounded) with nothing found
    assert r.query("loop1.example.test", "A") == (dns.NODATA, [])


def test_nxdomain_nodata_refused(nsd):
    r = resolver(nsd.server)
    assert r.query("nothere.example.test", "A") == (dns.NXDOMAIN, [])
    assert r.query("empty.example.test", "A") == (dns.NODATA, [])
    assert r.query("a.example.test", "MX") == (dns.NODATA, [])
    # a zone the server does not serve: REFUSED
    assert r.query("example.org", "A") == (dns.ERROR, "refused")


def test_servfail_then_next_server(nsd):
    failing = FakeServer(lambda query, peer: [answer(query, rcode=2)])
    try:
        assert resolver(failing.server).query("a.example.test", "A") == (dns.ERROR, "servfail")
        # servers are tried in turn: the next one answers
        r = resolver(failing.server, nsd.server)
        assert r.query("a.example.test", "A") == (dns.OK, ["192.0.2.1", "192.0.2.2"])
    finally:
        failing.stop()


def test_truncated_answer_is_asked_again_over_tcp(nsd):
    r = resolver(nsd.server)
    status, records = r.query("big.example.test", "TXT")
    assert status == dns.OK
    assert records == ["".join("t%02d" % i * 25 for i in range(8))]
    assert len(records[0]) == 600  # more than a 512-byte UDP answer holds


def test_server_that_never_answers_holds_the_deadline():
    silent = FakeServer()
    try:
        r = resolver(silent.server, timeout=0.5)
        start = time.monotonic()
        assert r.query("a.example.test", "A") == (dns.TIMEOUT, "no answer")
        # one deadline for all of a decision's DNS work: nothing is left
        assert r.query("b.example.test", "A") == (dns.TIMEOUT, "no answer")
        assert r.query("c.example.test", "TXT") == (dns.TIMEOUT, "no answer")
        elapsed = time.monotonic() - start
        assert 0.45 < elapsed < 0.5 + 0.4
        assert len(silent.queries) == 1
    finally:
        silent.stop()


def test_dead_server_then_live_one_within_the_deadline(nsd):
    silent = FakeServer()
    try:
        r = resolver(silent.server, nsd.server, timeout=1.0)
        start = time.monotonic()
        assert r.query("a.example.test", "A") == (dns.OK, ["192.0.2.1", "192.0.2.2"])
        assert time.monotonic() - start < 1.0 + 0.3
    finally:
        silent.stop()


def test_forged_answers_are_ignored():
    forger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    forger.bind(("127.0.0.1", 0))
    a_record = [(1, bytes([192, 0, 2, 66]))]

    def reply(query, peer):
        ident = int.from_bytes(query[:2], "big")
        other_question = dns.encode_name("evil.example.test") + b"\x00\x01\x00\x01"
        # from another port of the same host: the right answer, wrong source
        forger.sendto(answer(query, records=[(1, bytes([192, 0, 2, 99]))]), peer)
        time.sleep(0.05)
        not_a_response = bytearray(answer(query, records=[(1, bytes([192, 0, 2, 98]))]))
        not_a_response[2] &= 0x7F  # QR clear
        return [answer(query, records=[(1, bytes([192, 0, 2, 97]))], ident=ident ^ 1),
                answer(query, records=[(1, bytes([192, 0, 2, 96]))], question=other_question),
                bytes(not_a_response),
                b"\x00",  # not DNS at all
                answer(query, records=a_record)]

    fake = FakeServer(reply)
    try:
        assert resolver(fake.server).query("a.example.test", "A") == (dns.OK, ["192.0.2.66"])
    finally:
        fake.stop()
        forger.close()


def test_each_query_random_id_and_source_port():
    peers = []
    fake = FakeServer(lambda query, peer: peers.append(peer) or [answer(query)])
    try:
        r = resolver(fake.server)
        for i in range(8):
            assert r.query("n%d.example.test" % i, "A") == (dns.NODATA, [])
        idents = {q[:2] for q in fake.queries}
        assert len(idents) >= 6 and len({port for _, port in peers}) >= 6
    finally:
        fake.stop()


def test_one_question_asked_once():
    fake = FakeServer(lambda query, peer: [answer(query, rcode=3)])
    try:
        r = resolver(fake.server)
        for _ in range(3):
            assert r.query("x.example.test", "TXT") == (dns.NXDOMAIN, [])
            assert r.query("X.example.test.", "TXT") == (dns.NXDOMAIN, [])
        assert len(fake.queries) == 1 and r.queries == 1
    finally:
        fake.stop()


def test_hostile_answers_are_bounded():
    question = dns.encode_name("a.example.test") + b"\x00\x01\x00\x01"
    query = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + question
    # a compression pointer to itself, and one pointing forward
    loop = bytearray(answer(query, records=[(1, b"\x01\x02\x03\x04")]))
    at = 12 + len(question)
    loop[at:at + 2] = (0xC000 | at).to_bytes(2, "big")
    with pytest.raises(dns.Malformed):
        dns.parse_response(bytes(loop), 0x1234, question, "a.example.test", dns.A)
    loop[at:at + 2] = (0xC000 | (at + 4)).to_bytes(2, "big")
    with pytest.raises(dns.Malformed):
        dns.parse_response(bytes(loop), 0x1234, question, "a.example.test", dns.A)
    # an A record of 5 bytes, a record running past the end
    bad = answer(query, records=[(1, b"\x01\x02\x03\x04\x05")])
    with pytest.raises(dns.Malformed):
        dns.parse_response(bad, 0x1234, question, "a.example.test", dns.A)
    with pytest.raises(dns.Malformed):
        dns.parse_response(bad[:-3], 0x1234, question, "a.example.test", dns.A)
    # names: a label over 63 bytes, a name over 255, cannot be asked
    with pytest.raises(dns.BadName):
        dns.encode_name("x" * 64 + ".example.test")
    with pytest.raises(dns.BadName):
        dns.encode_name(".".join(["x" * 60] * 5))
    assert resolver("127.0.0.1:9").query("a..example.test", "A") == (dns.ERROR, "bad name")


def test_gl_dns_forms():
    assert settings.dns_servers("") == () == settings.dns_servers("resolv.conf")
    assert settings.dns_servers("192.0.2.1, 192.0.2.2:5353,2001:db8::1,[2001:db8::2]:53535") == (
        ("inet", "192.0.2.1", 53), ("inet", "192.0.2.2", 5353),
        ("inet6", "2001:db8::1", 53), ("inet6", "2001:db8::2", 53535))
    assert settings.dns_servers("[::1]") == (("inet6", "::1", 53),)
    # the resolver takes them as the address families they name
    assert dns.Resolver(settings.dns_servers("192.0.2.1,[::1]:5353")).servers == [
        (socket.AF_INET, "192.0.2.1", 53), (socket.AF_INET6, "::1", 5353)]
    for bad in ("dns.example.com", "192.0.2.1:0", "192.0.2.1:65536", "[::1", "[::1]x",
                "192.0.2.256", "1.2.3.4:53:53", ",", "192.0.2.1:port"):
        with pytest.raises(ValueError):
            settings.dns_servers(bad)


def test_gl_dns_setting_reports_a_host_name(tmp_path):
    loaded = settings.load({b"GL_DIR": str(tmp_path).encode(), b"GL_DNS": b"dns.example.com",
                            b"GL_DNS_TIMEOUT": b"0.5"})
    assert loaded.dns == () and loaded.dns_timeout == 0.5
    assert loaded.problems == [
        "GL_DNS=dns.example.com from environment: dns.example.com: an IP address, not a host "
        "name (it would need DNS); using resolv.conf"]


def test_resolv_conf(tmp_path):
    path = tmp_path / "resolv.conf"
    path.write_text("# comment\nsearch example.test\nnameserver 192.0.2.1\n"
                    "nameserver dns.example.test\nnameserver  2001:db8::53\n"
                    "options ndots:2\nnameserver 192.0.2.3\nnameserver 192.0.2.4\n")
    assert dns.resolv_conf(str(path)) == [(socket.AF_INET, "192.0.2.1", 53),
                                          (socket.AF_INET6, "2001:db8::53", 53),
                                          (socket.AF_INET, "192.0.2.3", 53)]
    path.write_text("# comment\nsearch example.org\nnameserver\nnameserver not-an-address\n"
                    "nameserver 192.0.2.53\nnameserver 2001:db8::53\n"
                    "nameserver 198.51.100.53\nnameserver 203.0.113.53\n")
    assert dns.resolv_conf(str(path)) == [(socket.AF_INET, "192.0.2.53", 53),
                                          (socket.AF_INET6, "2001:db8::53", 53),
                                          (socket.AF_INET, "198.51.100.53", 53)]
    path.write_text("search example.test\n")
    assert dns.resolv_conf(str(path)) == [(socket.AF_INET, "127.0.0.1", 53)]
    path.write_text("domain example.org\n")
    assert dns.resolv_conf(str(path)) == [(socket.AF_INET, "127.0.0.1", 53)]
    assert dns.resolv_conf(str(tmp_path / "missing")) == [(socket.AF_INET, "127.0.0.1", 53)]
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # never blocks
    start = time.monotonic()
    assert dns.resolv_conf(str(fifo)) == [(socket.AF_INET, "127.0.0.1", 53)]
    assert time.monotonic() - start < 1
