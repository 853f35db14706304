"""Whitelists, normalisation, auto-whitelisting, greytraps, punishing fast
retries, reverse tracking, learning, privacy and bounces, through the pure
functions."""
import pytest

from qgrey import keys, lists, policy, settings as settings_module
from qgrey.policy import GREYLIST, PASS, Entry


def make_settings(**values):
    environ = {b"GL_DIR": b"/nonexistent"}
    for name, value in values.items():
        environ[("GL_" + name.upper()).encode()] = str(value).encode()
    found = settings_module.load(environ)
    assert found.problems == []
    return found


DEFAULT = make_settings()


# --- sender normalisation -------------------------------------------------

@pytest.mark.parametrize("raw, normal", [
    # BATV (RFC draft: prvs=KDDDSSSSSS=user; an early draft put the tag last)
    (b"prvs=1234abcdef=user@example.com", b"user@example.com"),
    (b"PRVS=0123456789=User@Example.COM", b"user@example.com"),
    (b"prvs=user=1234abcdef@example.com", b"user@example.com"),
    (b"btv1==0123456789a==user@example.com", b"user@example.com"),
    (b"msprvs1=19345xNfzYCnI=bounces-12345@notifications.example", b"bounces-#@notifications.example"),
    # SRS: the original address
    (b"SRS0=HHH=TT=example.org=alice@forwarder.example", b"alice@example.org"),
    (b"SRS0+x3Ua=2Z=example.org=alice@forwarder.example", b"alice@example.org"),
    (b"SRS1=HHH=fwd1.example==HHH=TT=example.org=alice@fwd2.example", b"alice@example.org"),
    (b"SRS0=HHH=TT=example.org=prvs=1234abcdef=alice@fwd.example", b"alice@example.org"),
    # +extension, VERP
    (b"bob+news@example.org", b"bob@example.org"),
    (b"owner-list+bob=example.net@lists.example.org", b"owner-list@lists.example.org"),
    (b"list-return-1234-bob=example.net@lists.example.org",
     b"list-return-#-bob=example.net@lists.example.org"),
    # numeric and hex tags
    (b"bounce-12345@example.com", b"bounce-#@example.com"),
    (b"bounces-5f3b2a9e@example.com", b"bounces-#@example.com"),
    (b"0100018b2d6c3a91-7c1e0a8e-5f62-4b7a-9e2f-1234567890ab-000000@amazonses.com",
     b"#-#-#-#-#-#-#@amazonses.com"),
    (b"bounce-md_30850198.5f3b2a9e.v1-1a2b3c4d5e6f@mandrillapp.com",
     b"bounce-md_#.#.v1-#@mandrillapp.com"),
    # left alone
    (b"alice@example.org", b"alice@example.org"),
    (b"deadbeef@example.org", b"deadbeef@example.org"),
    (b"", b""),
    (b"+x@example.org", b"+x@example.org"),
    (b'"a+1"@example.org', b'"a+1"@example.org'),
    (b"no-at-sign", b"no-at-sign"),
])
def test_normalise_sender(raw, normal):
    assert keys.normalise_sender(raw) == normal


# Real senders' per-message tags: two messages of one sender, one key.
@pytest.mark.parametrize("first, second, normal", [
    # Amazon SES: 16 hex digits, a UUID, a 6-digit counter
    (b"0100018c6a0b1a2e-5d0e6f2a-9b3c-4c1e-8f3e-1a2b3c4d5e6f-000000@us-west-2.amazonses.com",
     b"0100018c6a0d77f1-e0aa41b2-1f07-4d9a-bb60-0c9e8d7f6a5b-000000@us-west-2.amazonses.com",
     b"#-#-#-#-#-#-#@us-west-2.amazonses.com"),
    (b"00000331b8b1d648-b8302192-701f-124d-a1d5-d268912677de-135246@email-bounces.amazonses.com",
     b"00000331b8b2a001-cafebabe-dead-beef-face-0123456789ab-135247@email-bounces.amazonses.com",
     b"#-#-#-#-#-#-#@email-bounces.amazonses.com"),
    # Mailchimp: account (25 hex), campaign and recipient ids (10 hex)
    (b"bounce-mc.us1_b00ccdbb39a8456492b99ae9e.a8d0ad03b7-be24ad69fc@mail16.sea31.mcsv.net",
     b"bounce-mc.us1_b00ccdbb39a8456492b99ae9e.5f0e1d2c3b-be24ad69fc@mail16.sea31.mcsv.net",
     b"bounce-mc.us1_#.#-#@mail16.sea31.mcsv.net"),
    # Mandrill: account number, 8-hex message id, 32-hex hash
    (b"bounce-md_30850198.5f3b2a9e.v1-1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d@mandrillapp.com",
     b"bounce-md_30850198.64c0ffee.v1-0f9e8d7c6b5a49382716051f2e3d4c5b@mandrillapp.com",
     b"bounce-md_#.#.v1-#@mandrillapp.com"),
    # SparkPost: BATV-like msprvs1= tag, then customer and message numbers
    (b"msprvs1=19345xNfzYCnI=bounces-12345-17@sparkpostmail.com",
     b"msprvs1=19346aBcDeFgH=bounces-12345-982@sparkpostmail.com",
     b"bounces-#-#@sparkpostmail.com"),
    # SendGrid, Mailgun, Google Groups, Mailman: the tag after '+'
    (b"bounces+1234567-ab12-bob=example.net@em123.example.com",
     b"bounces+1234567-cd34-bob=example.net@em123.example.com", b"bounces@em123.example.com"),
    (b"bounce+5f3b2a.1234-bob=example.net@mg.example.com",
     b"bounce+9e8d7c.1235-bob=example.net@mg.example.com", b"bounce@mg.example.com"),
    (b"list+bncBDX3Q5WT4EHRBXUMQ2VQMGQE6Z3PX2Y@googlegroups.com",
     b"list+bncBCY7L4PT6YHRBQ7KQ2VQMGQEQ4R4Y3A@googlegroups.com", b"list@googlegroups.com"),
    (b"dev-bounces+bob=example.net@lists.example.org",
     b"dev-bounces+bob=example.net@lists.example.org", b"dev-bounces@lists.example.org"),
    # ezmlm VERP: message number between delimiters
    (b"list-return-1234-bob=example.net@lists.example.org",
     b"list-return-1299-bob=example.net@lists.example.org",
     b"list-return-#-bob=example.net@lists.example.org"),
    # BATV, SRS
    (b"prvs=1234abcdef=alice@example.com", b"prvs=1241fedcba=alice@example.com",
     b"alice@example.com"),
    (b"SRS0=ab1c=TT=example.org=alice@fwd.example", b"SRS0=zz9y=UU=example.org=alice@fwd.example",
     b"alice@example.org"),
    # a ticket system's 8-hex message id
    (b"notify-3fa85f64@tickets.example", b"notify-a1b2c3d4@tickets.example",
     b"notify-#@tickets.example"),
])
def test_real_tags_merge(first, second, normal):
    assert keys.normalise_sender(first) == normal
    assert keys.normalise_sender(second) == normal


# People whose names look like hex, or end in a number: each stays itself.
@pytest.mark.parametrize("person", [
    b"ada2", b"deb42", b"cafe", b"dead", b"face", b"bead", b"abba1", b"john.smith2", b"t1000",
    b"ada3", b"deb43", b"becca1987", b"abbe2000", b"deadbeef", b"bea2001", b"dee-dee.ramone",
    b"ed.2b", b"fab4",
])
def test_people_are_not_merged(person):
    assert keys.normalise_sender(person + b"@smallcorp.example") == person + b"@smallcorp.example"


def test_normalisation_bound():
    # 8 hex digits with a digit among them are an id; 7 are not
    assert keys.normalise_sender(b"x-1a2b3c4d@e.example") == b"x-#@e.example"
    assert keys.normalise_sender(b"x-1a2b3c4@e.example") == b"x-1a2b3c4@e.example"
    # letters then five digits is not a name and a year
    assert keys.normalise_sender(b"abcd12345@e.example") == b"#@e.example"
    # a UUID's groups only together: alone, a 4-digit group is a name
    assert keys.normalise_sender(b"b8302192-701f-124d-a1d5@e.example") == b"#-701f-124d-a1d5@e.example"


def test_normalisation_can_be_switched_off():
    off = make_settings(normalise_sender=0)
    assert keys.triplet(b"192.0.2.1", b"bob+1@x.example", b"c@y.example", DEFAULT) == \
        "192.0.2.0/24 bob@x.example c@y.example"
    assert keys.triplet(b"192.0.2.1", b"bob+1@x.example", b"c@y.example", off) == \
        "192.0.2.0/24 bob+1@x.example c@y.example"


def test_key_kinds_never_collide():
    assert keys.kind("192.0.2.0/24 a@b c@d") == keys.TRIPLET
    assert keys.kind("192.0.2.0/24 <> c@d") == keys.BOUNCE
    assert keys.kind(keys.client_key("192.0.2.0/24")) == keys.CLIENT
    assert keys.kind(keys.trap_key("192.0.2.0/24")) == keys.TRAP
    assert keys.kind(keys.reply_key(b"a@b", b"c@d", settings_module.load({b"GL_DIR": b"/nonexistent"}))) == keys.REPLY
    # A client field that is not an IP address is escaped but kept: still
    # three fields, so never a client, trap or reply key.
    odd = keys.triplet(b"client", b"a@b", b"c@d", DEFAULT)
    assert odd == "client a@b c@d" and keys.kind(odd) == keys.TRIPLET
    # '>' never appears inside an address field
    assert keys.address(b"a>b@c") == "a%3Eb@c"


def test_privacy_hashes_every_field_but_markers():
    hashed = keys.hasher(b"s" * 32)
    key = keys.triplet(b"192.0.2.1", b"", b"bob@example.net", DEFAULT, hashed)
    client, sender, recipient = key.split(" ")
    assert sender == "<>" and len(client) == len(recipient) == 32
    assert "bob" not in key and "192" not in key
    assert keys.kind(key) == keys.BOUNCE
    assert hashed("x") != keys.hasher(b"t" * 32)("x")
    assert hashed("x") == keys.hasher(b"s" * 32)("x")


# --- punishing fast retries -------------------------------------------------

def attempts(times, settings=DEFAULT):
    """Run one triplet through decide() at the given times -> [(action, reason)]."""
    entry, out = None, []
    for now in times:
        action, reason, entry, _ = policy.decide(entry, now, settings)
        out.append((action, reason))
    return out


SCHEDULES = {  # real MTAs, seconds after the first attempt
    "sendmail": [0, 900],
    "exim": [0, 900],
    "postfix": [0, 996],
    "qmail": [0, 400, 1600],
    "courier": [0, 300, 600, 900, 1800],
    "exchange": [0, 60, 120, 1320, 2520, 3720],
}


@pytest.mark.parametrize("mta", sorted(SCHEDULES))
def test_real_retry_schedules_are_never_punished(mta):
    start = 1_700_000_000
    times = [start + t for t in SCHEDULES[mta]]
    result = attempts(times)
    first_due = next(i for i, t in enumerate(SCHEDULES[mta]) if t >= DEFAULT.delay)
    assert result[0] == (GREYLIST, "new")
    assert result[1:first_due] == [(GREYLIST, "early")] * (first_due - 1)
    assert result[first_due] == (PASS, "delayed")
    assert all(r == (PASS, "known") for r in result[first_due + 1:])


def test_hammering_gets_a_longer_delay_capped():
    start = 1_700_000_000
    times = [start + t for t in range(0, 4000, 10)]  # every 10 s
    result = attempts(times)
    reasons = [reason for _, reason in result]
    # up to GL_PUNISH_AFTER early retries are tolerated
    assert reasons[:5] == ["new", "early", "early", "early", "early"]
    assert reasons[5] == "punished"
    passed_at = reasons.index("delayed") * 10
    # GL_DELAY + GL_PUNISH_MAX
    assert passed_at == DEFAULT.delay + DEFAULT.punish_max


def test_punishment_grows_with_early_retries():
    base = DEFAULT.delay
    entry = Entry(0, 40, 0, 5)  # four early retries, 10 s apart
    assert policy.required_delay(entry, DEFAULT) == base + DEFAULT.punish_step
    entry = Entry(0, 80, 0, 9)
    assert policy.required_delay(entry, DEFAULT) == base + 5 * DEFAULT.punish_step
    entry = Entry(0, 1000, 0, 200)
    assert policy.required_delay(entry, DEFAULT) == base + DEFAULT.punish_max
    off = make_settings(punish_max=0)
    assert policy.required_delay(entry, off) == base


def test_a_burst_of_messages_is_forgiven_at_the_normal_retry():
    # ten messages from one sender to one recipient within 20 s, then the
    # sender's queue retries them 15 minutes later
    start = 1_700_000_000
    times = [start + 2 * i for i in range(10)] + [start + 900 + 2 * i for i in range(10)]
    result = attempts(times)
    assert result[10] == (GREYLIST, "punished")
    assert result[11] == (PASS, "delayed")


# --- the whole request ------------------------------------------------------

NOW = 1_700_000_000


def request(entries, settings=DEFAULT, kind=keys.TRIPLET, greytrap=False, now=NOW):
    return policy.decide_request(list(entries), now, settings, kind, greytrap)


def test_plain_triplet_and_client_counting():
    action, reason, new, waited, note = request([None, None, None, None])
    assert (action, reason, note) == (GREYLIST, "new", None)
    assert new[0] == Entry(NOW, NOW) and new[1] is None
    action, reason, new, waited, _ = request([Entry(NOW - 400, NOW - 400), None, None, None])
    assert (action, reason, waited) == (PASS, "delayed", 400)
    assert new[1] == Entry(NOW, NOW, 0, 1)


def test_auto_whitelisting_after_n_deliveries_one_an_hour():
    client = None
    known = Entry(NOW - 10 * 86400, NOW, NOW - 10 * 86400 + 300, 1)
    for hour in range(DEFAULT.awl_count):
        for minute in (0, 10, 20):  # only one delivery an hour is counted
            now = NOW + hour * 3600 + minute * 60
            action, reason, new, _, _ = request([known, client, None, None], now=now)
            whitelisted = client is not None and client.passed
            assert (action, reason) == (PASS, "auto-whitelist" if whitelisted else "known")
            client = new[1]
        assert client.tries == hour + 1
    assert client.tries == DEFAULT.awl_count and client.passed
    # any sender, any recipient, no triplet needed
    now = NOW + 6 * 3600
    action, reason, new, _, _ = request([None, client, None, None], now=now)
    assert (action, reason) == (PASS, "auto-whitelist") and new[0] is None
    # until the client has not been seen for the lifetime
    later = client.last + DEFAULT.lifetime + 1
    action, reason, _, _, _ = request([None, client, None, None], now=later)
    assert (action, reason) == (GREYLIST, "new")


def test_greytrap_traps_the_client_for_trap_time():
    action, reason, new, _, _ = request([None, None, None, None], greytrap=True)
    assert (action, reason) == (GREYLIST, "greytrap")
    trap = new[2]
    assert trap == Entry(NOW, NOW, 0, 1) and new[0] is None
    # everything else from that client is refused, even a known triplet
    known = Entry(NOW - 86400, NOW - 60, NOW - 86400 + 300, 1)
    action, reason, new, _, _ = request([known, None, trap, None], now=NOW + 3600)
    assert (action, reason) == (GREYLIST, "trapped") and new[2] is trap
    # until GL_TRAP_TIME has run
    action, reason, _, _, _ = request([known, None, trap, None], now=NOW + DEFAULT.trap_time)
    assert (action, reason) == (PASS, "known")


def test_auto_whitelisted_client_is_not_trapped():
    client = Entry(NOW - 86400, NOW - 60, NOW - 3600, 5)
    action, reason, new, _, _ = request([None, client, None, None], greytrap=True)
    assert (action, reason) == (GREYLIST, "greytrap") and new[2] is None


def test_auto_whitelisted_address_is_not_held_by_its_networks_trap():
    client = Entry(NOW - 86400, NOW - 60, NOW - 3600, 5)
    trap = Entry(NOW - 600, NOW - 600, 0, 1)
    action, reason, new, _, _ = request([None, client, trap, None])
    assert (action, reason) == (PASS, "auto-whitelist") and new[2] is trap
    counting = Entry(NOW - 86400, NOW - 7200, 0, 3)
    action, reason, new, _, _ = request([None, counting, trap, None])
    assert (action, reason) == (GREYLIST, "trapped") and new[1] is counting


def test_network_entry_of_before_passes_without_renewal_and_counts_the_address():
    legacy = Entry(NOW - 20 * 86400, NOW - 86400, NOW - 19 * 86400, 12)
    action, reason, new, _, _ = policy.decide_request([None, None, None, None, legacy], NOW,
                                                      DEFAULT)
    assert (action, reason) == (PASS, "auto-whitelist")
    assert new[4] is legacy and new[1] == Entry(NOW, NOW, 0, 1)
    # expired: not read as passing any more
    later = legacy.last + DEFAULT.lifetime + 1
    action, reason, new, _, _ = policy.decide_request([None, None, None, None, legacy], later,
                                                      DEFAULT)
    assert (action, reason) == (GREYLIST, "new") and new[4] is legacy


def test_reply_to_local_sender_passes():
    reply = policy.record_reply(None, NOW - 86400, DEFAULT)
    action, reason, new, _, _ = request([None, None, None, reply])
    assert (action, reason) == (PASS, "reply") and new[0] is None
    assert new[3].last == NOW  # renewed
    assert policy.record_reply(new[3], NOW + 60, DEFAULT) is new[3]
    old = Entry(NOW - 100 * 86400, NOW - 40 * 86400, NOW - 100 * 86400, 1)
    assert request([None, None, None, old])[:2] == (GREYLIST, "new")


def test_learning_refuses_nothing_and_records_a_pass():
    learn = make_settings(learn=1)
    action, reason, new, waited, note = request([None, None, None, None], learn)
    assert (action, reason, waited, note) == (PASS, "learning", 0, "would greylist: new")
    assert new[0] == Entry(NOW, NOW, NOW, 0) and new[1] == Entry(NOW, NOW, 0, 1)
    # afterwards, with learning off, the triplet is known
    assert request([new[0], None, None, None], now=NOW + 60)[:2] == (PASS, "known")
    # a greytrap is noted but not recorded
    action, reason, new, _, note = request([None, None, None, None], learn, greytrap=True)
    assert (action, reason, note) == (PASS, "learning", "would greylist: greytrap")
    assert new[2] is None


def test_bounce_pass_does_not_last():
    key = keys.triplet(b"192.0.2.1", b"", b"bob@example.net", DEFAULT)
    kind = keys.kind(key)
    assert kind == keys.BOUNCE
    entry = Entry(NOW - 400, NOW - 400)
    action, reason, entry, _, _ = request([entry, None, None, None], kind=kind)
    assert (action, reason) == (PASS, "delayed")
    entry = entry[0]
    assert request([entry, None, None, None], kind=kind, now=NOW + 600)[:2] == (PASS, "known")
    later = NOW + DEFAULT.bounce_lifetime + 1
    assert request([entry, None, None, None], kind=kind, now=later)[:2] == (GREYLIST, "expired")
    # an ordinary triplet that passed lasts GL_LIFETIME
    assert request([entry, None, None, None], now=later)[:2] == (PASS, "known")


def test_expiry_by_kind():
    s = DEFAULT
    assert policy.expired(Entry(0, 0, 0, 1), s.trap_time, s, keys.TRAP)
    assert not policy.expired(Entry(0, 0, 0, 1), s.trap_time - 1, s, keys.TRAP)
    assert policy.expired(Entry(0, 0, 0, 1), s.lifetime + 1, s, keys.CLIENT)
    assert not policy.expired(Entry(0, 0, 0, 1), s.lifetime, s, keys.CLIENT)
    assert policy.expired(Entry(0, 10, 10, 1), 10 + s.bounce_lifetime + 1, s, keys.BOUNCE)


# --- list files ---------------------------------------------------------------

def test_client_list_parsing_and_matching():
    text = (b"# comment\n"
            b"192.0.2.0/24\n"
            b"198.51.100.7   # one host\n"
            b"2001:db8:1::/48\n"
            b"::ffff:203.0.113.0/120\n"
            b"Mail.Example.COM\n"
            b".pool.example.net\n"
            b"\n"
            b"300.1.1.1\n"
            b"192.0.2.0/33\n"
            b"two words\n")
    data, problems = lists.parse(lists.CLIENTS, text)
    assert problems == [(9, "not an IP address, network or host name"),
                        (10, "bad prefix length"), (11, "more than one entry on the line")]
    listed = lists.List(data, [])
    hit = lists.client_listed
    assert hit(listed, b"192.0.2.200", None)
    assert hit(listed, b"198.51.100.7", None) and not hit(listed, b"198.51.100.8", None)
    assert hit(listed, b"2001:db8:1:ffff::1", None) and not hit(listed, b"2001:db8:2::1", None)
    assert hit(listed, b"::ffff:192.0.2.9", None)
    assert hit(listed, b"203.0.113.9", None)
    assert hit(listed, b"10.0.0.1", b"mail.example.com")
    assert hit(listed, b"10.0.0.1", b"mx1.MAIL.example.com.")
    assert not hit(listed, b"10.0.0.1", b"evilmail.example.com")
    assert hit(listed, b"10.0.0.1", b"a.pool.example.net")
    assert not hit(listed, b"10.0.0.1", b"pool.example.net")
    assert not hit(listed, b"10.0.0.1", None)


def test_address_lists():
    data, problems = lists.parse(lists.RECIPIENTS, b"bob@example.net\n@example.org\npostmaster@\n"
                                 b"@bad..domain\nnot-an-address\n")
    assert [n for n, _ in problems] == [4, 5]
    listed = lists.List(data, [])
    assert lists.address_listed(listed, b"bob@example.net")
    assert lists.address_listed(listed, b"anyone@example.org")
    assert lists.address_listed(listed, b"postmaster@example.com")
    assert not lists.address_listed(listed, b"carol@example.net")
    data, problems = lists.parse(lists.SENDERS, b"postmaster@\n")
    assert problems == [(1, "not an address")]


def test_bisection_agrees_with_a_set():
    from hypothesis import given, strategies as st
    word = st.binary(min_size=1, max_size=6).map(lambda b: b.replace(b"\n", b"x"))

    @given(st.sets(word, max_size=40), word)
    def agree(entries, probe):
        blob = b"\n" + b"".join(e + b"\n" for e in sorted(entries))
        assert lists.contains(blob, probe) == (probe in entries)
        for entry in entries:
            assert lists.contains(blob, entry)
    agree()


def test_privacy_keeps_a_bounce_a_bounce():
    s = settings_module.load({b"GL_DIR": b"/nonexistent"})
    hashed = keys.hasher(b"salt" * 8)
    key = keys.triplet(b"192.0.2.1", b"", b"bob@example.net", s, hashed)
    assert keys.kind(key) == keys.BOUNCE and "bob" not in key
