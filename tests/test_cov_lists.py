"""qgrey.lists as a library: the plain pattern matcher held to its
documented contract, re.search(pattern, name, re.IGNORECASE), over
patterns it takes and patterns it hands to re; the problems parse() reports
line by line; lookups of clients and addresses; the list cache that is not
one. Expected values are written out, or come from re."""
import os
import re
import sys

import pytest

from qgrey import lists

NAMES = [b"", b"mx1.example.org", b"MX22.Example.ORG", b"mail-out.example.net", b"a", b"aa",
         b"aaaa", b"ab", b"abab", b"b.c", b"x{2}y", b"a{,3}", b"mx.example.org.bad.test",
         b"smtp-77.mail.yahoo.com", b"mta5.am0.yahoodns.net", b"192.0.2.7", b"-", b"]", b"a-b",
         b"under_score", b"t\tab", b"x.y.z.example", b"ex]ample", b"{", b"a{2,1}b", b"1abc"]

PATTERNS = [
    # taken by the plain matcher
    rb"^mx\d+\.example\.org$", rb"example", rb"^(?:mx|mail-out)\.", rb"(mx|smtp)-?\d*\.",
    rb"a{2}", rb"^a{2,}$", rb"^a{1,3}$", rb"^a{0}b", rb"x{2", rb"x{y}", rb"{x", rb"a+?b",
    rb"a??b", rb"^[^.]+\.example", rb"[]a]", rb"[a-]$", rb"[\d.]+$", rb"[\.]", rb"[^\W\d]",
    rb"[!-\-]", rb"\S+\s", rb"\D\W", rb"\.\-", rb"^$", rb"x\{2\}", rb"a|b|$", rb"[a\-z]",
    rb"mail\.yahoo\.com$|yahoodns\.net$", rb".", rb"[A-C]B",
    # handed to re
    rb"(?i)example", rb"(?=mx)m", rb"\bexample\b", rb"(ab)*", rb"(ab)+", rb"a*+", rb"a{,3}",
    rb"[[:alpha:]]", rb"[\x41]", rb"\x41", rb"a{300}", rb"(a|b){2}", rb"a{123456789}",
    rb"[a-\x7a]",
]
# Not regular expressions at all: search() says False (parse() refuses them first).
INVALID = [rb"(ab", rb"ab)", rb"*a", rb"a**", rb"ab\\"[:-1], rb"[z-a]", rb"[abc", rb"a{3,1}",
           rb"a{1,2}{2}", rb"[a-\d]", rb"[a-\]]"]


@pytest.mark.filterwarnings("ignore:Possible nested set:FutureWarning")  # re on [[:alpha:]]
@pytest.mark.parametrize("pattern", PATTERNS)
def test_search_is_re_search_ignoring_case(pattern):
    try:
        re.compile(pattern)
    except re.error:  # a*+ (possessive) is a regular expression from Python 3.11 on only
        assert pattern == rb"a*+" and sys.version_info < (3, 11), pattern
        assert [lists.search(pattern, name) for name in NAMES] == [False] * len(NAMES)
        return
    for name in NAMES:
        expected = re.search(pattern, name, re.IGNORECASE) is not None
        assert lists.search(pattern, name) == expected, (pattern, name)


@pytest.mark.parametrize("pattern", INVALID)
def test_search_of_what_is_no_regular_expression(pattern):
    with pytest.raises(re.error):
        re.compile(pattern)
    assert [lists.search(pattern, name) for name in NAMES] == [False] * len(NAMES)


def test_which_patterns_the_plain_matcher_takes():
    # The documented subset: literals, '.', classes, \d \w \s and negations,
    # repeats (lazy or not), ^ $, unrepeated groups with |. The rest: re.
    taken = [p for p in PATTERNS + INVALID if lists.compile_pattern(p) is not None
             and lists._automaton(lists.compile_pattern(p)) is not None]
    assert taken == PATTERNS[:PATTERNS.index(rb"(?i)example")]


def problems(name, text):
    return lists.parse(name, text)[1]


def test_problems_of_whitelist_clients():
    text = b"\n".join([
        b"# comment", b"192.0.2.0/33", b"2001:db8::/129", b"192.0.2.0/x", b"::ffff:192.0.2.0/120",
        b"not_a..name", b"192.0.2.1 192.0.2.2", b"192.0.2.1 # comment", b"/(a)+/", b"/a\\1/",
        b"/(?P=x)/", b"/a*b*c*d*/", b"/^a*b*c*/", b"/a|b|c|d/", b"/" + b"a" * 129 + b"/",
        b"/\xe9/", b"/x{1,2}{3}/", b"/[a/", b"/a{2}/", b"/[]x]*/", b"/[^]x]y/", b"/\\[a]/",
        b"/x{/", b"/x{a}*/", b"/a?? b/", b"/^a+?b*?c{1,2}?$/",
    ])
    assert problems(lists.CLIENTS, text) == [
        (2, "bad prefix length"), (3, "bad prefix length"), (4, "bad prefix length"),
        (6, "not an IP address, network or host name"),
        (7, "more than one entry on the line"),
        (9, "regular expression with a repeated group (could backtrack for long)"),
        (10, "regular expression with a back-reference"),
        (11, "regular expression with a back-reference"),
        (12, "regular expression with more than 3 repeats (a leading ^ saves one)"),
        (14, "regular expression with more than 2 |"),
        (15, "regular expression longer than 128 bytes"),
        (16, "regular expression not in printable ASCII"),
        (17, "not a regular expression: multiple repeat at position 6"),
        (18, "not a regular expression: unterminated character set at position 0"),
        (25, "more than one entry on the line"),
    ]


def test_problems_of_the_address_lists():
    text = b"\n".join([b"@example.org", b"@bad..domain", b"postmaster@", b"@", b"a b@x",
                       b"abuse@example.org", b"no-at-sign", b"x@192.0.2.1", b"local\x01@x.org",
                       b"loc\x01al@"])
    assert problems(lists.RECIPIENTS, text) == [
        (2, "not a domain"), (4, "not a domain"), (5, "more than one entry on the line"),
        (7, "not an address"), (8, "not an address"), (9, "not an address"),
        (10, "not a local part")]
    # Only whitelist-recipients takes a local part; @domains both.
    assert problems(lists.SENDERS, b"@example.org\npostmaster@\n") == [(2, "not an address")]
    # Problems beyond keep are counted, not listed.
    kept = lists.parse(lists.SENDERS, b"a\nb\nc\nd\ne\n", keep=2)[1]
    assert (list(kept), kept.count) == ([(1, "not an address"), (2, "not an address")], 5)


def listed(name, text):
    data, found = lists.parse(name, text)
    assert found == []
    return lists.List(data, [])


def test_clients_by_address_network_name_and_pattern():
    clients = listed(lists.CLIENTS, b"192.0.2\n198.51.100.7\n::ffff:203.0.113.0/120\n"
                     b"2001:db8::/32\n.example.org\nexample.net\n/^mta\\d+\\.am0\\.yahoodns\\.net$/\n")
    yes = [(b"192.0.2.200", None), (b" 198.51.100.7 ", None), (b"203.0.113.9", None),
           (b"::ffff:203.0.113.9", None), (b"2001:db8:1::5", None), (b"::ffff:192.0.2.1", None),
           (None, b"mx.example.org"), (None, "MX.Example.ORG."), (None, b"example.net"),
           (None, b"a.b.example.net"), (None, b"mta5.am0.yahoodns.net")]
    no = [(b"192.0.3.1", None), (b"2001:db9::1", None), (b"not-an-ip", None), (b"", b""),
          (None, b"example.org"), (None, b"badexample.net"), (None, b"xmta5.am0.yahoodns.net.x"),
          (None, None), (b"::ffff:198.51.100.8", None)]
    assert [lists.client_listed(clients, ip, host) for ip, host in yes] == [True] * len(yes)
    assert [lists.client_listed(clients, ip, host) for ip, host in no] == [False] * len(no)
    assert lists.has_names(clients)
    assert not lists.has_names(listed(lists.CLIENTS, b"192.0.2.1\n"))
    assert lists.has_names(listed(lists.CLIENTS, b"/^mx/\n"))


def test_addresses_domains_and_local_parts():
    recipients = listed(lists.RECIPIENTS, b"Abuse@Example.ORG\n@example.net\npostmaster@\n")
    assert [lists.address_listed(recipients, a) for a in (
        b"abuse@example.org", b"anyone@example.net", b"postmaster@any.where",
        b"abuse@example.net.x", b"other@example.org", b"no-at-sign", b"postmaster")] == [
        True, True, True, False, False, False, False]


def test_load_a_missing_list_and_one_past_the_cache(tmp_path):
    directory = str(tmp_path)
    os.chmod(directory, 0o700)
    assert lists.load(directory, lists.CLIENTS) is None
    # Larger than SMALL (4096 bytes): parsed once, then read from its cache.
    text = b"".join(b"10.%d.%d.1\n" % (i // 256, i % 256) for i in range(600)) + b"bad..name\n"
    assert len(text) > 4096
    path = os.path.join(directory, lists.CLIENTS)
    with open(path, "wb") as f:
        f.write(text)
    first = lists.load(directory, lists.CLIENTS)
    cache = os.path.join(directory, "." + lists.CLIENTS + ".cache")
    assert os.path.exists(cache)
    again = lists.load(directory, lists.CLIENTS)
    warning = ["%s line 601: not an IP address, network or host name; skipped" % path]
    assert first.warnings == again.warnings == warning
    assert first.data == again.data
    assert lists.client_listed(again, b"10.2.87.1", None)
    assert not lists.client_listed(again, b"10.2.88.1", None)


def test_a_list_in_a_directory_it_cannot_write_a_cache_in(tmp_path):
    directory = str(tmp_path / "ro")
    os.mkdir(directory, 0o700)
    text = b"".join(b"10.0.%d.%d\n" % (i // 256, i % 256) for i in range(600))
    with open(os.path.join(directory, lists.CLIENTS), "wb") as f:
        f.write(text)
    from conftest import read_only
    with read_only(directory):
        parsed = lists.load(directory, lists.CLIENTS, owners=(0, os.getuid()))
    assert parsed.warnings == []
    assert lists.client_listed(parsed, b"10.0.2.87", None)
    assert os.listdir(directory) == [lists.CLIENTS]


STAMP = b"1 2 3 4 5"


def cache_of(text, name=lists.CLIENTS):
    parsed = lists.parse(name, text, lists.SHOWN)
    return lists.encode_cache(STAMP, parsed), parsed


def test_a_sound_cache_reads_back():
    data, parsed = cache_of(b"192.0.2.0/24\nbad..name\n/^mx/\n")
    decoded = lists.decode_cache(data, STAMP)
    assert decoded[0] == parsed[0]
    assert list(decoded[1]) == [(2, "not an IP address, network or host name")]
    assert decoded[1].count == 1


@pytest.mark.parametrize("change", [
    lambda d: d.replace(b"qgrey list cache", b"qgrey list kache"),      # not a cache
    lambda d: d.replace(STAMP, b"1 2 3 4 6"),                           # another list's
    lambda d: d.replace(b"\n24\n", b"\n33\n"),                          # a prefix out of range
    lambda d: d.replace(b"\n24\n", b"\n24,8\n"),                        # not increasing
    lambda d: d.replace(b"\n24\n", b"\nx\n"),                           # not a number
    lambda d: d.replace(b"\n1 1 ", b"\n1 1 x"),                         # counts
    lambda d: d.replace(b"\n1 1 ", b"\n0 1 "),                          # shown more than counted
    lambda d: d.replace(b"\n2 not an", b"\nx not an"),                  # a problem's line number
    lambda d: d.replace(b"\n2 not an", b"\n2 \x01ot an"),               # a problem's text
    lambda d: d.replace(b"\n2 not an IP address, network or host name\n", b"\n2\n"),
    lambda d: d[:-1],                                                   # the blob cut short
    lambda d: d.replace(b"r^mx\n", b"r^a*b*c*d*\n"),                    # a pattern parse() refuses
])
def test_a_damaged_cache_is_not_one(change):
    data, _ = cache_of(b"192.0.2.0/24\nbad..name\n/^mx/\n")
    damaged = change(data)
    assert damaged != data
    assert lists.decode_cache(damaged, STAMP) is None


def test_malformed_lines_past_the_shown_ones_are_counted(tmp_path):
    directory = str(tmp_path)
    path = os.path.join(directory, lists.SENDERS)
    with open(path, "wb") as f:
        f.write(b"one\ntwo\nok@example.org\nthree\nfour\nfive\n")
    loaded = lists.load(directory, lists.SENDERS)
    assert loaded.warnings == [
        "%s line 1: not an address; skipped" % path, "%s line 2: not an address; skipped" % path,
        "%s line 4: not an address; skipped" % path, "%s: 2 more malformed lines skipped" % path]
    with open(path, "ab") as f:
        f.write(b"six\n")
    assert lists.load(directory, lists.SENDERS).warnings[-1] == \
        "%s: 3 more malformed lines skipped" % path
