"""GL_SPF=1 through the plugin, run as qmail-spp runs it, against a real DNS
server (nsd) serving zones of this file, its queries recorded by a
forwarding server: a provider's hosts over several networks and both
families behind an include chain (hosts without names) are one client,
spf:provider.test; forgers, catch-all and too wide records stay keyed by
network; known senders send no query; a dead server answers in time."""
import os
import time

import pytest

from dnsserver import NSD, FakeServer, Recorder
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
}
ON = {"GL_SPF": "1", "GL_DNS_TIMEOUT": "2"}
ALICE = "alice@provider.test"
PROVIDER_V4 = ("198.51.100.7", "203.0.113.9", "198.51.100.200")
PROVIDER_V6 = "2001:db8:100:5::1"
FORGER = "192.0.2.66"


@pytest.fixture(scope="module")
def nsd(tmp_path_factory):
    server = NSD(tmp_path_factory.mktemp("nsd"), ZONES)
    yield server
    server.stop()


@pytest.fixture
def dns(nsd):
    """The DNS server the plugin asks: nsd, every query recorded."""
    recorder = Recorder(nsd.port)
    yield recorder
    recorder.stop()


def send(run, dns, ip, sender=ALICE, **env):
    return run(**dict(ON, GL_DNS=dns.server, TCPREMOTEIP=ip, SMTPMAILFROM=sender,
                      TCPREMOTEHOST=None, **env))


def triplets(gl_dir):
    return sorted(key for key in stored(gl_dir) if len(key.split(" ")) == 3)


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
    # the pool counts toward its auto-whitelist; each pooling pass is recorded per address
    assert entries["client spf:provider.test"][3] == 1
    assert {key for key in entries if key.startswith("spf ")} == {
        "spf 198.51.100.7>provider.test", "spf 203.0.113.9>provider.test",
        "spf 2001:db8:100:5::/64>provider.test"}


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


def test_a_pooled_sender_pays_one_evaluation_per_address(run, gl_dir, dns):
    check(send(run, dns, PROVIDER_V4[0]), GREYLISTED)
    assert dns.asked() == [("provider.test", 16), ("_spf.provider.test", 16),
                           ("_net4.provider.test", 16)]  # TXT, until _net4 matched
    asked = 3
    # another recipient from the same address: the recorded pass pools it, no query
    line = logged(check(send(run, dns, PROVIDER_V4[0], SMTPRCPTTO="carol@example.net"),
                        GREYLISTED), "greylist", "new")
    assert " pool=spf:provider.test spf=pass " in line
    assert len(dns.asked()) == asked
    # a retry of a known pooled triplet from the same address: no query either
    age(gl_dir, 400)
    check(send(run, dns, PROVIDER_V4[0]), delayed(400))
    assert len(dns.asked()) == asked
    # another address of the provider: one evaluation
    check(send(run, dns, PROVIDER_V4[2], SMTPRCPTTO="dave@example.net"), GREYLISTED)
    assert len(dns.asked()) > asked


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
        "spf 198.51.100.7>provider.test"]
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
