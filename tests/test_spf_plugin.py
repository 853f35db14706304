"""GL_SPF=1 through the plugin, run as qmail-spp runs it, against a real DNS
server (nsd) serving zones of this file, its queries recorded by a
forwarding server: a provider's hosts over several networks and both
families behind an include chain (hosts without names) are one client,
spf:provider.test; forgers, catch-all and too wide records stay keyed by
network; known senders send no query; a pooling pass is recorded for the
client's network when the record treats the whole network alike, else for
its address, and a client recorded asks nothing; a dead server answers in
time."""
import os
import time

import pytest

from dnsserver import FakeServer, fixtures
from test_rules_plugin import GREYLISTED, age, check, delayed, header, logged, stored

ZONES = {
    "provider.test": """
@       TXT "v=spf1 include:_spf.provider.test -all"
_spf    TXT "v=spf1 include:_net4.provider.test include:_net6.provider.test ~all"
_net4   TXT "v=spf1 ip4:198.51.100.0/24 ip4:203.0.113.0/25 -all"
_net6   TXT "v=spf1 ip6:2001:db8:100::/48 -all"
""",
    "customer.test": '@ TXT "v=spf1 include:_spf.provider.test -all"',
    "soft.test": '@ TXT "v=spf1 include:_net4.provider.test ~all"',
    "catchall.test": '@ TXT "v=spf1 +all"',
    "wide.test": '@ TXT "v=spf1 ip4:198.0.0.0/15 ip6:2001:db8::/31 -all"',
    "edge.test": '@ TXT "v=spf1 ip4:192.0.0.0/16 ip6:2001:db9::/32 -all"',
    "exists.test": '@ TXT "v=spf1 exists:always.exists.test -all"\nalways A 127.0.0.2',
    "loop.test": '@ TXT "v=spf1 include:loop.test"',
    "helo.test": 'mx TXT "v=spf1 ip4:192.0.2.77 -all"',
    "except.test": '@ TXT "v=spf1 -ip4:198.51.100.9 ip4:198.51.100.0/24 -all"',
    "host.test": '@ TXT "v=spf1 ip4:192.0.2.77 ip6:2001:db8:77::7 -all"',
}
ON = {"GL_SPF": "1", "GL_DNS_TIMEOUT": "2"}
ALICE = "alice@provider.test"
PROVIDER_V4 = ("198.51.100.7", "203.0.113.9", "198.51.100.200")
PROVIDER_V6 = "2001:db8:100:5::1"
FORGER = "192.0.2.66"


nsd, dns = fixtures(ZONES)


def send(run, dns, ip, sender=ALICE, **env):
    return run(**dict(ON, GL_DNS=dns.server, TCPREMOTEIP=ip, SMTPMAILFROM=sender,
                      TCPREMOTEHOST=None, **env))


def triplets(gl_dir):
    return sorted(key for key in stored(gl_dir) if len(key.split(" ")) == 3)


def recorded(gl_dir):
    """The SPF passes stored."""
    return sorted(key for key in stored(gl_dir) if key.startswith("spf "))


def line_of(ip, pool_spf, sender, recipient):
    """The log line of a new triplet greylisted."""
    return ("qgrey: action=greylist reason=new client=%s %s sender=%s recipient=%s waited=0"
            % (ip, pool_spf, sender, recipient))


def test_the_provider_retrying_from_another_network_and_over_ipv6_passes_at_its_first_retry(
        run, gl_dir, dns):
    line = logged(check(send(run, dns, PROVIDER_V4[0]), GREYLISTED), "greylist", "new")
    assert " client=198.51.100.7 pool=spf:provider.test spf=pass sender=alice@provider.test " in line
    assert triplets(gl_dir) == ["spf:provider.test alice@provider.test bob@example.net"]
    # too early, from another network of the provider: the same triplet, waiting
    logged(check(send(run, dns, PROVIDER_V4[1]), GREYLISTED), "greylist", "early")
    age(gl_dir, 400)
    # the first retry after GL_DELAY comes over IPv6: it passes
    line = logged(check(send(run, dns, PROVIDER_V6), delayed(400)), "pass", "delayed")
    assert " client=2001:db8:100:5::1 pool=spf:provider.test spf=pass " in line
    assert triplets(gl_dir) == ["spf:provider.test alice@provider.test bob@example.net"]
    entries = stored(gl_dir)
    # the pool counts toward its auto-whitelist; each pooling pass is recorded
    # for the client's network where the record covers all of it alike (a /24
    # of ip4:198.51.100.0/24, a /64 of ip6:2001:db8:100::/48), else for the
    # address (203.0.113.0/25 is half of 203.0.113.9's /24)
    assert entries["client spf:provider.test"][3] == 1
    assert recorded(gl_dir) == [
        "spf 198.51.100.0/24>provider.test", "spf 2001:db8:100:5::/64>provider.test",
        "spf 203.0.113.9>provider.test"]


def test_a_customer_of_the_provider_pools_by_its_own_domain(run, gl_dir, dns):
    check(send(run, dns, PROVIDER_V4[0], sender="eve@customer.test"), GREYLISTED)
    age(gl_dir, 400)
    check(send(run, dns, PROVIDER_V6, sender="eve@customer.test"), delayed(400))
    assert triplets(gl_dir) == ["spf:customer.test eve@customer.test bob@example.net"]


@pytest.mark.parametrize("ip, sender, result", [
    (FORGER, ALICE, "fail"),                  # not the provider's host
    (FORGER, "alice@soft.test", "softfail"),  # ~all
])
def test_forgers_stay_keyed_by_their_network(run, gl_dir, dns, ip, sender, result):
    # the real sender has passed already
    check(send(run, dns, PROVIDER_V4[0], sender=sender), GREYLISTED)
    age(gl_dir, 400)
    check(send(run, dns, PROVIDER_V4[1], sender=sender), delayed(400))
    # a forger of the same sender from elsewhere gains nothing
    line = logged(check(send(run, dns, ip, sender=sender), GREYLISTED), "greylist", "new")
    assert " client=192.0.2.66 spf=%s sender=" % result in line and "pool=" not in line
    assert "192.0.2.0/24 %s bob@example.net" % sender in triplets(gl_dir)


@pytest.mark.parametrize("ip, sender, key", [
    ("192.0.2.99", "x@catchall.test", "192.0.2.0/24"),        # +all proves nothing
    ("198.1.2.3", "x@wide.test", "198.1.2.0/24"),             # a /15: wider than /16
    ("2001:db9:1::1", "x@wide.test", "2001:db9:1::/64"),      # outside it: a fail
    ("2001:db8:7::1", "x@wide.test", "2001:db8:7::/64"),      # a /31: wider than /32
    ("192.0.5.5", "x@edge.test", "spf:edge.test"),            # a /16 pools
    ("2001:db9:5::1", "x@edge.test", "spf:edge.test"),        # a /32 pools
    ("192.0.2.99", "x@exists.test", "192.0.2.0/24"),          # exists without a macro
])
def test_passes_that_prove_nothing_key_by_network(run, gl_dir, dns, ip, sender, key):
    line = logged(check(send(run, dns, ip, sender=sender), GREYLISTED), "greylist", "new")
    assert triplets(gl_dir) == ["%s %s bob@example.net" % (key, sender)]
    assert ("pool=" + key in line) == key.startswith("spf:")


def test_the_null_sender_is_checked_by_its_helo_name(run, gl_dir, dns):
    line = logged(check(send(run, dns, "192.0.2.77", sender="", SMTPHELOHOST="mx.helo.test"),
                        GREYLISTED), "greylist", "new")
    assert " pool=spf:mx.helo.test spf=pass sender=<> " in line
    assert triplets(gl_dir) == ["spf:mx.helo.test <> bob@example.net"]


def test_a_known_sender_sends_no_query(run, gl_dir, dns):
    # keyed by network (a forger's triplet passes by its network like any other)
    check(send(run, dns, FORGER), GREYLISTED)
    age(gl_dir, 400)
    check(send(run, dns, FORGER), delayed(400))
    before = len(dns.asked())
    line = logged(check(send(run, dns, FORGER, SMTPRCPTCOUNT="1"), b""), "pass", "known")
    assert "spf=" not in line
    assert len(dns.asked()) == before
    # a new triplet of the same client is a miss: SPF is evaluated
    check(send(run, dns, FORGER, SMTPRCPTTO="carol@example.net"), GREYLISTED)
    assert len(dns.asked()) > before


TXT = 16  # DNS type numbers
PROVIDER_V4_QUERIES = [("provider.test", TXT), ("_spf.provider.test", TXT),
                       ("_net4.provider.test", TXT)]  # TXT, until _net4 matched


def test_a_pooled_sender_pays_one_evaluation_per_network_its_record_covers_alike(
        run, gl_dir, dns):
    check(send(run, dns, PROVIDER_V4[0]), GREYLISTED)
    assert dns.asked() == PROVIDER_V4_QUERIES
    # ip4:198.51.100.0/24 treats the whole /24 alike: the pass is recorded for it
    assert recorded(gl_dir) == ["spf 198.51.100.0/24>provider.test"]
    # another recipient from the same address: the recorded pass pools it, no query
    assert logged(check(send(run, dns, PROVIDER_V4[0], SMTPRCPTTO="carol@example.net"),
                        GREYLISTED), "greylist", "new") == line_of(
        "198.51.100.7", "pool=spf:provider.test spf=pass", ALICE, "carol@example.net")
    assert dns.asked() == PROVIDER_V4_QUERIES
    # a retry of a known pooled triplet from the same address: no query either
    age(gl_dir, 400)
    check(send(run, dns, PROVIDER_V4[0]), delayed(400))
    assert dns.asked() == PROVIDER_V4_QUERIES
    # a new address of the same /24 with a new triplet: pooled, no query
    assert logged(check(send(run, dns, PROVIDER_V4[2], SMTPRCPTTO="dave@example.net"),
                        GREYLISTED), "greylist", "new") == line_of(
        "198.51.100.200", "pool=spf:provider.test spf=pass", ALICE, "dave@example.net")
    assert dns.asked() == PROVIDER_V4_QUERIES
    # and an IPv4-mapped address of it, as an IPv6 listener gives it
    assert logged(check(send(run, dns, "::ffff:198.51.100.99", SMTPRCPTTO="erin@example.net"),
                        GREYLISTED), "greylist", "new") == line_of(
        "::ffff:198.51.100.99", "pool=spf:provider.test spf=pass", ALICE, "erin@example.net")
    assert dns.asked() == PROVIDER_V4_QUERIES
    assert triplets(gl_dir) == ["spf:provider.test alice@provider.test %s@example.net" % name
                                for name in ("bob", "carol", "dave", "erin")]
    # another network, which the record covers only in part (ip4:203.0.113.0/25
    # of 203.0.113.0/24): one evaluation per address, each address recorded
    check(send(run, dns, PROVIDER_V4[1], SMTPRCPTTO="frank@example.net"), GREYLISTED)
    assert dns.asked() == PROVIDER_V4_QUERIES * 2
    assert logged(check(send(run, dns, "203.0.113.10", SMTPRCPTTO="grace@example.net"),
                        GREYLISTED), "greylist", "new") == line_of(
        "203.0.113.10", "pool=spf:provider.test spf=pass", ALICE, "grace@example.net")
    assert dns.asked() == PROVIDER_V4_QUERIES * 3
    check(send(run, dns, PROVIDER_V4[1], SMTPRCPTTO="heidi@example.net"), GREYLISTED)
    assert dns.asked() == PROVIDER_V4_QUERIES * 3
    assert recorded(gl_dir) == ["spf 198.51.100.0/24>provider.test",
                                "spf 203.0.113.10>provider.test", "spf 203.0.113.9>provider.test"]


def test_a_neighbour_the_record_excepts_never_inherits_the_pass(run, gl_dir, dns):
    sender = "x@except.test"  # v=spf1 -ip4:198.51.100.9 ip4:198.51.100.0/24 -all
    assert logged(check(send(run, dns, "198.51.100.7", sender=sender), GREYLISTED),
                  "greylist", "new") == line_of(
        "198.51.100.7", "pool=spf:except.test spf=pass", sender, "bob@example.net")
    assert dns.asked() == [("except.test", TXT)]
    # .7 and .9 differ from the 29th bit: the pass holds for 198.51.100.7/29 only
    assert recorded(gl_dir) == ["spf 198.51.100.7>except.test"]
    # the excepted host asks DNS, fails and stays keyed by its network
    assert logged(check(send(run, dns, "198.51.100.9", sender=sender), GREYLISTED),
                  "greylist", "new") == line_of(
        "198.51.100.9", "spf=fail", sender, "bob@example.net")
    assert dns.asked() == [("except.test", TXT)] * 2
    # a host the record does let pass is evaluated too, and recorded alone (a
    # new triplet: bob's by the network key waits already, from .9)
    check(send(run, dns, "198.51.100.8", sender=sender, SMTPRCPTTO="carol@example.net"),
          GREYLISTED)
    assert dns.asked() == [("except.test", TXT)] * 3
    assert recorded(gl_dir) == ["spf 198.51.100.7>except.test", "spf 198.51.100.8>except.test"]
    # the address recorded asks nothing for a new triplet
    assert logged(check(send(run, dns, "198.51.100.7", sender=sender,
                             SMTPRCPTTO="dave@example.net"), GREYLISTED),
                  "greylist", "new") == line_of(
        "198.51.100.7", "pool=spf:except.test spf=pass", sender, "dave@example.net")
    assert dns.asked() == [("except.test", TXT)] * 3
    assert triplets(gl_dir) == ["198.51.100.0/24 x@except.test bob@example.net",
                                "spf:except.test x@except.test bob@example.net",
                                "spf:except.test x@except.test carol@example.net",
                                "spf:except.test x@except.test dave@example.net"]


@pytest.mark.parametrize("host, neighbour, network", [
    ("192.0.2.77", "192.0.2.78", "192.0.2.0/24"),              # ip4:192.0.2.77: a /32
    ("2001:db8:77::7", "2001:db8:77::8", "2001:db8:77::/64"),  # ip6:2001:db8:77::7: a /128
])
def test_a_record_naming_one_host_records_its_address(run, gl_dir, dns, host, neighbour,
                                                      network):
    sender = "x@host.test"
    assert logged(check(send(run, dns, host, sender=sender), GREYLISTED),
                  "greylist", "new") == line_of(
        host, "pool=spf:host.test spf=pass", sender, "bob@example.net")
    assert recorded(gl_dir) == ["spf %s>host.test" % host]
    assert dns.asked() == [("host.test", TXT)]
    # a neighbour of the same network is evaluated: a fail, keyed by the network
    assert logged(check(send(run, dns, neighbour, sender=sender), GREYLISTED),
                  "greylist", "new") == line_of(neighbour, "spf=fail", sender, "bob@example.net")
    assert dns.asked() == [("host.test", TXT)] * 2
    assert recorded(gl_dir) == ["spf %s>host.test" % host]
    assert triplets(gl_dir) == ["%s x@host.test bob@example.net" % network,
                                "spf:host.test x@host.test bob@example.net"]


def test_an_ipv6_pass_of_a_wider_network_is_recorded_for_the_client_s_64(run, gl_dir, dns):
    check(send(run, dns, PROVIDER_V6), GREYLISTED)  # ip6:2001:db8:100::/48
    queries = PROVIDER_V4_QUERIES + [("_net6.provider.test", TXT)]
    assert dns.asked() == queries
    assert recorded(gl_dir) == ["spf 2001:db8:100:5::/64>provider.test"]
    # another address of the /64: pooled without a query
    assert logged(check(send(run, dns, "2001:db8:100:5:a:b:c:d", SMTPRCPTTO="carol@example.net"),
                        GREYLISTED), "greylist", "new") == line_of(
        "2001:db8:100:5:a:b:c:d", "pool=spf:provider.test spf=pass", ALICE, "carol@example.net")
    assert dns.asked() == queries
    # another /64 of the /48: evaluated, and recorded for its own /64
    check(send(run, dns, "2001:db8:100:6::1", SMTPRCPTTO="dave@example.net"), GREYLISTED)
    assert dns.asked() == queries * 2
    assert recorded(gl_dir) == ["spf 2001:db8:100:5::/64>provider.test",
                                "spf 2001:db8:100:6::/64>provider.test"]


@pytest.mark.parametrize("env, unit", [
    ({"GL_MASK_IP": "0"}, "198.51.100.7"),         # the key's client is the address
    ({"GL_IPV4_PREFIX": "16"}, "198.51.100.7"),     # /16: wider than the record's /24
    ({"GL_IPV4_PREFIX": "28"}, "198.51.100.0/28"),  # /28: inside it
])
def test_the_network_recorded_is_the_key_s_own(run, gl_dir, dns, env, unit):
    check(send(run, dns, PROVIDER_V4[0], **env), GREYLISTED)
    assert recorded(gl_dir) == ["spf %s>provider.test" % unit]


def test_admin_spf_and_explain_say_what_a_pass_is_recorded_for(gl_dir, dns):
    from test_host_pools import tool
    env = dict(ON, GL_DNS=dns.server)
    for args, line in [
            (("198.51.100.7", ALICE), "pass term=ip4:198.51.100.0/24 domain=_net4.provider.test "
             "key=spf:provider.test recorded=198.51.100.0/24"),
            (("::ffff:198.51.100.7", ALICE), "pass term=ip4:198.51.100.0/24 "
             "domain=_net4.provider.test key=spf:provider.test recorded=198.51.100.0/24"),
            (("203.0.113.9", ALICE), "pass term=ip4:203.0.113.0/25 domain=_net4.provider.test "
             "key=spf:provider.test recorded=203.0.113.9"),
            ((PROVIDER_V6, ALICE), "pass term=ip6:2001:db8:100::/48 domain=_net6.provider.test "
             "key=spf:provider.test recorded=2001:db8:100:5::/64"),
            (("198.51.100.7", "x@except.test"), "pass term=ip4:198.51.100.0/24 "
             "domain=except.test key=spf:except.test recorded=198.51.100.7"),
            (("198.51.100.9", "x@except.test"), "fail term=-ip4:198.51.100.9 "
             "domain=except.test key=198.51.100.0/24"),
            (("2001:db8:77::7", "x@host.test"), "pass term=ip6:2001:db8:77::7 "
             "domain=host.test key=spf:host.test recorded=2001:db8:77::7"),
            (("192.0.2.99", "x@catchall.test"), "pass term=+all domain=catchall.test "
             "key=192.0.2.0/24"),
            (("192.0.2.99", "x@exists.test"), "pass term=exists:always.exists.test "
             "domain=exists.test key=192.0.2.0/24")]:
        result = tool("qgrey-admin", "spf", *args, gl_dir=gl_dir, env=env)
        assert (result.stdout, result.stderr, result.returncode) == (line + "\n", "", 0)
    # explain's SPF line after a fresh evaluation, network and address
    for ip, sender, line in [
            ("198.51.100.7", ALICE, "SPF: pass term=ip4:198.51.100.0/24 "
             "domain=_net4.provider.test recorded=198.51.100.0/24"),
            ("198.51.100.7", "x@except.test", "SPF: pass term=ip4:198.51.100.0/24 "
             "domain=except.test recorded=198.51.100.7"),
            ("198.51.100.9", "x@except.test", "SPF: fail term=-ip4:198.51.100.9 "
             "domain=except.test")]:
        result = tool("qgrey-admin", "explain", ip, sender, "bob@example.net", gl_dir=gl_dir,
                      env=env)
        assert result.returncode == 0 and result.stderr == "", result.stderr
        assert [text for text in result.stdout.splitlines() if text.startswith("SPF:")] == [line]
    assert stored(gl_dir) == {}  # nothing written


def test_a_recorded_pass_lasts_a_day(run, gl_dir, dns):
    check(send(run, dns, PROVIDER_V4[0]), GREYLISTED)
    asked = len(dns.asked())
    age(gl_dir, 86400 + 1)
    check(send(run, dns, PROVIDER_V4[0], SMTPRCPTTO="carol@example.net"), GREYLISTED)
    assert len(dns.asked()) == 2 * asked


def test_a_dead_dns_server_answers_within_the_deadline_as_without_spf(run, gl_dir):
    silent = FakeServer()
    try:
        start = time.monotonic()
        result = run(GL_SPF="1", GL_DNS=silent.server, GL_DNS_TIMEOUT="0.5")
        elapsed = time.monotonic() - start
    finally:
        silent.stop()
    line = logged(check(result, GREYLISTED), "greylist", "new")
    assert " client=198.51.100.7 spf=temperror sender=alice@example.org " in line
    assert triplets(gl_dir) == ["198.51.100.0/24 alice@example.org bob@example.net"]
    assert len(silent.queries) >= 1
    assert elapsed < 0.5 + 2.5  # the interpreter's start, then half a second of DNS


def test_a_hostile_record_is_a_permerror_and_keys_by_network(run, gl_dir, dns):
    line = logged(check(send(run, dns, FORGER, sender="x@loop.test"), GREYLISTED),
                  "greylist", "new")
    assert " spf=permerror sender=x@loop.test " in line
    assert triplets(gl_dir) == ["192.0.2.0/24 x@loop.test bob@example.net"]


def test_spf_off_asks_nothing(run, gl_dir, dns):
    line = logged(check(send(run, dns, PROVIDER_V4[0], GL_SPF="0"), GREYLISTED), "greylist", "new")
    assert "spf=" not in line and "pool=" not in line
    assert dns.asked() == []


def test_privacy_hashes_the_pool_and_the_recorded_pass(run, gl_dir, dns):
    check(send(run, dns, PROVIDER_V4[0], GL_PRIVACY="1"), GREYLISTED)
    keys = stored(gl_dir)
    assert not any("provider" in key for key in keys), keys
    assert sorted(len(key.split(" ")) for key in keys) == [2, 3]
    recorded = next(key for key in keys if len(key.split(" ")) == 2)
    assert recorded.startswith("spf ") and len(recorded) == len("spf ") + 32


def test_a_wave_of_new_triplets_with_spf_is_refused_whole_and_recorded(launcher, gl_dir, nsd):
    from test_wave import LOCK_TIMEOUT, RATIO, WAVE, wave_envs, wave_with_floor
    envs = wave_envs(gl_dir, "sqlite", dict(GL_SPF="1", GL_DNS=nsd.server))
    for i, env in enumerate(envs):  # half the provider's hosts, half forgers of it
        env["SMTPMAILFROM"] = "user%d@provider.test" % i
        if i % 2 == 0:
            env["TCPREMOTEIP"] = "198.51.100.%d" % (i // 2 % 250)
    results, floor = wave_with_floor(launcher, envs)
    slowest = max(t for t, _ in results)
    lines = [result.stderr for _, result in results]
    assert [r.stdout for _, r in results] == [GREYLISTED] * WAVE, [
        line for (_, r), line in zip(results, lines) if r.stdout != GREYLISTED][:3]
    assert all(b" reason=new " in line for line in lines), lines[:3]
    passes = sum(b" pool=spf:provider.test spf=pass " in line for line in lines)
    fails = sum(b" spf=fail " in line and b"pool=" not in line for line in lines)
    assert (passes, fails) == (WAVE // 2, WAVE - WAVE // 2)
    not_recorded = sum(b"detail=not recorded: " in line for line in lines)
    assert len(triplets(gl_dir)) == WAVE - not_recorded
    # the DNS deadline adds to the lock's: both bound every answer (but
    # under .ci/coverage, whose plugins are instrumented and the bare
    # interpreters not, the ratio to them means nothing)
    if not os.environ.get("QGREY_COVERAGE"):
        assert slowest < RATIO * floor + LOCK_TIMEOUT + 2, (slowest, floor)


def test_the_tools_keep_and_expire_the_recorded_pass(run, gl_dir, dns):
    from test_host_pools import tool
    check(send(run, dns, PROVIDER_V4[0]), GREYLISTED)
    dumped = tool("qgrey-admin", "dump", gl_dir=gl_dir)
    assert dumped.returncode == 0, dumped.stderr
    assert [line.split("\t")[0] for line in dumped.stdout.splitlines() if line.startswith("spf ")] == [
        "spf 198.51.100.0/24>provider.test"]
    # a dump loads back, the recorded pass with it
    loaded = tool("qgrey-admin", "load", gl_dir=gl_dir, stdin=dumped.stdout)
    assert loaded.returncode == 0, loaded.stderr
    # a day later qgrey-expire removes it (the waiting triplet lives on: GL_RETRY_WINDOW 2d)
    age(gl_dir, 86400 + 1)
    expired = tool("qgrey-expire", gl_dir=gl_dir)
    assert expired.returncode == 0, expired.stderr
    assert sorted(stored(gl_dir)) == ["spf:provider.test alice@provider.test bob@example.net"]


def test_greytraps_hold_the_pool_and_spare_an_auto_whitelisted_one(run, gl_dir, dns):
    from test_rules_plugin import write
    write(gl_dir, "greytraps", "trap@example.net\n")
    # the pool earns its auto-whitelist (one counted delivery is enough here)
    check(send(run, dns, PROVIDER_V4[0], GL_AWL_COUNT="1"), GREYLISTED)
    age(gl_dir, 400)
    check(send(run, dns, PROVIDER_V6, GL_AWL_COUNT="1"), delayed(400))
    # one of its hosts mails a greytrap: refused, but nothing is trapped
    line = logged(check(send(run, dns, PROVIDER_V4[1], GL_AWL_COUNT="1", SMTPRCPTTO="trap@example.net"),
                        GREYLISTED), "greylist", "greytrap")
    assert " pool=spf:provider.test spf=pass " in line
    assert not [key for key in stored(gl_dir) if key.startswith("trap ")]
    # and its next message from that host's network passes as the pool's
    logged(check(send(run, dns, PROVIDER_V4[1], GL_AWL_COUNT="1", SMTPRCPTTO="carol@example.net"),
                 header("passed (auto-whitelisted client)")), "pass",
           "auto-whitelist")
    # a pool without the auto-whitelist is trapped whole, by its pool
    check(send(run, dns, FORGER, sender="x@catchall.test", SMTPRCPTTO="trap@example.net"),
          GREYLISTED)
    check(send(run, dns, PROVIDER_V4[2], sender="eve@customer.test", SMTPRCPTTO="trap@example.net"),
          GREYLISTED)
    assert sorted(key for key in stored(gl_dir) if key.startswith("trap ")) == [
        "trap 192.0.2.0/24", "trap spf:customer.test"]
