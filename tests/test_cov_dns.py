"""qgrey.dns's reading of answers, on messages built here byte by byte
(RFC 1035 wire format): what parse_response makes of each, the answers it
ignores, the malformed ones it refuses; encode_name's bounds; resolv.conf;
a resolver whose server does not answer (asked once)."""
import socket

import pytest

from qgrey import dns

IDENT = 0x1234
NAME = b"\x07example\x03org\x00"          # example.org
QUESTION_A = NAME + b"\x00\x01\x00\x01"   # A, IN


def message(flags=0x8180, question=QUESTION_A, answers=(), ident=IDENT, qd=1):
    return (ident.to_bytes(2, "big") + flags.to_bytes(2, "big") + qd.to_bytes(2, "big")
            + len(answers).to_bytes(2, "big") + b"\x00\x00\x00\x00" + question + b"".join(answers))


def record(rtype, rdata, owner=b"\xc0\x0c", rclass=1, size=None):
    """A resource record; owner c00c points at the question's name."""
    return (owner + rtype.to_bytes(2, "big") + rclass.to_bytes(2, "big") + b"\x00\x00\x01\x2c"
            + (len(rdata) if size is None else size).to_bytes(2, "big") + rdata)


def parse(msg, qtype=dns.A, question=QUESTION_A, name="example.org"):
    return dns.parse_response(msg, IDENT, question, name, qtype)


def question(qtype, name=NAME):
    return name + qtype.to_bytes(2, "big") + b"\x00\x01"


def test_answers_of_each_type():
    assert parse(message(answers=[record(1, b"\xc0\x00\x02\x01"), record(1, b"\xc0\x00\x02\x02")])) \
        == (dns.OK, ["192.0.2.1", "192.0.2.2"])
    q = question(28)
    assert parse(message(question=q, answers=[record(28, bytes.fromhex("20010db8" + "00" * 11 + "01"))]),
                 dns.AAAA, q) == (dns.OK, ["2001:db8::1"])
    q = question(16)
    assert parse(message(question=q, answers=[record(16, b"\x07v=spf1 \x04-all\x01\xe9")]),
                 dns.TXT, q) == (dns.OK, ["v=spf1 -all\xe9"])
    q = question(15)
    assert parse(message(question=q, answers=[record(15, b"\x00\x0a\x02mx\xc0\x0c")]), dns.MX, q) == \
        (dns.OK, [(10, "mx.example.org")])
    ptr_name = b"\x017\x012\x010\x03192\x07in-addr\x04arpa\x00"
    q = question(12, ptr_name)
    assert parse(message(question=q, answers=[record(12, b"\x04Host" + NAME)]),
                 dns.PTR, q, "7.2.0.192.in-addr.arpa") == (dns.OK, ["host.example.org"])


def test_what_an_answer_without_the_records_asked_says():
    assert parse(message()) == (dns.NODATA, [])
    assert parse(message(flags=0x8183)) == (dns.NXDOMAIN, [])
    # Records of another class or type are not the answer.
    assert parse(message(answers=[record(1, b"\xc0\x00\x02\x01", rclass=3),
                                  record(15, b"\x00\x0a\xc0\x0c")])) == (dns.NODATA, [])
    assert parse(message(flags=0x8182)) == (dns.ERROR, "servfail")
    assert parse(message(flags=0x8185)) == (dns.ERROR, "refused")
    assert parse(message(flags=0x8189)) == (dns.ERROR, "rcode 9")
    assert parse(message(flags=0x8380)) == "truncated"


def test_cnames_are_followed_within_the_answer():
    www = b"\x03www" + NAME  # www.example.org
    q = question(1, www)
    target = b"\xc0\x0c"  # the question's name, www.example.org
    answers = [record(5, b"\x04mail\xc0\x10", owner=target),          # -> mail.example.org
               record(1, b"\xc0\x00\x02\x07", owner=b"\x04mail" + NAME)]
    assert parse(message(question=q, answers=answers), dns.A, q, "www.example.org") == \
        (dns.OK, ["192.0.2.7"])
    # Asked for the CNAME itself: it is the answer.
    q5 = question(5, www)
    assert parse(message(question=q5, answers=answers[:1]), dns.CNAME, q5, "www.example.org") == \
        (dns.OK, ["mail.example.org"])
    # A chain longer than MAX_CNAMES (8) ends as no data.
    def label(i):
        text = b"a%d" % i
        return bytes((len(text),)) + text + NAME
    chain = [record(5, label(i + 1), owner=label(i) if i else target) for i in range(10)]
    chain.append(record(1, b"\xc0\x00\x02\x07", owner=label(10)))
    assert parse(message(question=q, answers=chain), dns.A, q, "www.example.org") == (dns.NODATA, [])


@pytest.mark.parametrize("changed", [
    message()[:11],                                   # shorter than a header
    message(ident=IDENT + 1),                         # another query's
    message(flags=0x0100),                            # a query, not an answer
    message(flags=0x8980),                            # opcode 1
    message(qd=2),                                    # two questions
    message(question=question(28)),                   # another question
])
def test_messages_that_are_not_the_answer_are_ignored(changed):
    assert parse(changed) is None


def test_the_question_is_matched_ignoring_case():
    assert parse(message(question=QUESTION_A.replace(b"example", b"ExAmPlE"),
                         answers=[record(1, b"\xc0\x00\x02\x01")])) == (dns.OK, ["192.0.2.1"])


@pytest.mark.parametrize("answers, qtype, why", [
    ([record(1, b"\xc0\x00\x02")], dns.A, "A of 3 bytes"),
    ([record(28, b"\x20\x01\x0d\xb8")], dns.AAAA, "AAAA of 4 bytes"),
    ([record(16, b"\x09v=spf1")], dns.TXT, "TXT string past its record"),
    ([record(15, b"\x00\x0a")], dns.MX, "short MX"),
    ([record(15, b"\x00\x0a\xc0\x0c\x00")], dns.MX, "MX name does not fill its record"),
    ([record(12, b"\xc0\x0c\x00")], dns.PTR, "name does not fill its record"),
    ([b"\x07example"], dns.A, "name runs past the end"),
    ([b"\xc0"], dns.A, "pointer runs past the end"),
    ([b"\xc0\x30"], dns.A, "compression loop"),
    ([b"\x40abc"], dns.A, "unknown label type"),
    ([b"\x3f" + b"a" * 63] * 4 + [b"\x00"], dns.A, "name too long"),
    ([b"\xc0\x0c\x00\x01"], dns.A, "record header past the end"),
    ([record(1, b"\xc0\x00\x02\x01", size=9)], dns.A, "record past the end"),
])
def test_malformed_answers(answers, qtype, why):
    q = question(qtype)
    with pytest.raises(dns.Malformed) as caught:
        dns.parse_response(message(question=q, answers=answers), IDENT, q, "example.org", qtype)
    assert str(caught.value) == why


@pytest.mark.parametrize("name, wire", [
    ("", b"\x00"), (".", b"\x00"), ("example.org.", NAME), (b"example.org", NAME),
    ("a" * 63, b"\x3f" + b"a" * 63 + b"\x00"),
])
def test_names_on_the_wire(name, wire):
    assert dns.encode_name(name) == wire


@pytest.mark.parametrize("name, why", [
    ("a" * 64, "bad label in %r" % (b"a" * 64)), ("a..b", "bad label in b'a..b'"),
    (".a", "bad label in b'.a'"), (".".join(["a" * 63] * 4), "name longer than 255 bytes"),
])
def test_names_that_cannot_be_asked(name, why):
    with pytest.raises(dns.BadName) as caught:
        dns.encode_name(name)
    assert str(caught.value) == why


def closed_udp_port():
    """A UDP port of 127.0.0.1 nothing listens on (bound, then closed)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_a_server_that_does_not_answer_is_asked_once():
    resolver = dns.Resolver([("inet", "127.0.0.1", closed_udp_port())], timeout=0.3)
    assert resolver.query("Example.ORG.", "A") == (dns.TIMEOUT, "no answer")
    assert resolver.query("example.org", dns.A) == (dns.TIMEOUT, "no answer")
    assert resolver.queries == 1  # the second answer came from the cache
    assert resolver.query("a..b", "TXT") == (dns.ERROR, "bad name")
    assert resolver.queries == 1  # a name that cannot be asked is not sent


def test_a_spent_deadline_asks_nothing():
    resolver = dns.Resolver([("inet", "127.0.0.1", closed_udp_port())], timeout=0.0)
    assert resolver.query("example.org", "MX") == (dns.TIMEOUT, "no answer")
    assert resolver.queries == 1
