"""GL_GREYLIST=suspicious|trial and GL_HOST_NAMES=dns through the plugin,
run as qmail-spp runs it, against a real DNS server (nsd) serving zones of
this file, its queries recorded by a forwarding server: mail servers with
forward-confirmed static names are accepted at their first attempt;
dynamic names, no PTR, a PTR that does not resolve back, a forged
TCPREMOTEHOST, a HELO naming another host or on a dynamic-DNS domain are
greylisted; a good HELO rescues a dynamic PTR; a dead DNS server leaves a
client suspicious within the deadline; a known triplet costs no query."""
import re
import time

import pytest

from dnsserver import FakeServer, fixtures, nsd_fixture
from test_qmail_smtpd import kit, one_header, server  # noqa: F401  (the harness's fixtures)
from test_rules_plugin import GREYLISTED, age, check, delayed, header, logged, stored, write

# Names under real top-level domains (the dynamic-name rule refuses .test
# and the other reserved ones), served only by the tests' own nsd.
ZONES = {
    "2.0.192.in-addr.arpa": """
10 PTR mail.staticmail.net.
11 PTR 192-0-2-11.dyn.ispaccess.net.
13 PTR liar.staticmail.net.
14 PTR 192-0-2-14.pool.ispaccess.net.
15 PTR mail2.staticmail.net.
18 PTR 192-0-2-18.dsl.ispaccess.net.
""",
    "staticmail.net": """
@     TXT  "v=spf1 ip4:192.0.2.10 -all"
mail  A    192.0.2.10
mail2 A    192.0.2.15
liar  A    192.0.2.99
mail6 AAAA 2001:db8:5::25
forged A   192.0.2.18
""",
    "ispaccess.net": """
192-0-2-11.dyn  A 192.0.2.11
192-0-2-14.pool A 192.0.2.14
192-0-2-18.dsl  A 192.0.2.18
""",
    "rescuedmail.org": "mx A 192.0.2.14",
    "dyndns.org": "myhost A 192.0.2.17",
    "5.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa":
        "5.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0 PTR mail6.staticmail.net.",
}
SUSPICIOUS = {"GL_GREYLIST": "suspicious", "GL_HOST_NAMES": "dns", "GL_DNS_TIMEOUT": "2"}
TRUSTED = header("passed (trusted client)")


nsd, dns = fixtures(ZONES)


def send(run, dns, ip, helo="client.example", **env):
    return run(**dict(dict(SUSPICIOUS, GL_DNS=dns.server, TCPREMOTEIP=ip, SMTPHELOHOST=helo,
                           TCPREMOTEHOST=None), **env))


def test_a_server_with_a_forward_confirmed_static_name_is_accepted_at_once(run, gl_dir, dns):
    line = logged(check(send(run, dns, "192.0.2.10"), TRUSTED), "pass", "trusted")
    assert line == ("qgrey: action=pass reason=trusted client=192.0.2.10 name=mail.staticmail.net "
                    "mode=suspicious sender=alice@example.org recipient=bob@example.net waited=0")
    assert dns.asked() == [("10.2.0.192.in-addr.arpa", 12), ("mail.staticmail.net", 1)]
    entries = stored(gl_dir)
    # recorded as passed, and counted toward the auto-whitelist
    first, last, passed, tries = entries["192.0.2.0/24 alice@example.org bob@example.net"]
    assert first == last == passed and tries == 0
    assert entries["client 192.0.2.10"][3] == 1
    # and the verified name, for its address, for a day
    assert entries["name 192.0.2.10>mail.staticmail.net"] == (first, first, first, 1)
    # the same triplet again: known by its network key, no query
    logged(check(send(run, dns, "192.0.2.10", SMTPRCPTCOUNT="1"), b""), "pass", "known")
    assert len(dns.asked()) == 2


def test_an_ipv6_server_with_a_confirmed_name_is_trusted(run, gl_dir, dns):
    line = logged(check(send(run, dns, "2001:db8:5::25"), TRUSTED), "pass", "trusted")
    assert " name=mail6.staticmail.net " in line


@pytest.mark.parametrize("ip, helo, host, why", [
    ("192.0.2.11", "client.example", None, "dynamic name"),
    ("192.0.2.12", "client.example", None, "no PTR"),
    ("192.0.2.13", "client.example", None, "PTR not resolving back"),
    ("192.0.2.12", "client.example", "mail.staticmail.net", "forged TCPREMOTEHOST"),
    # a hint that resolves to the client but is not its PTR name
    ("192.0.2.18", "client.example", "forged.staticmail.net", "hint not a PTR name"),
    ("192.0.2.16", "mail.staticmail.net", None, "HELO naming another host"),
    ("192.0.2.17", "myhost.dyndns.org", None, "HELO on a dynamic-DNS domain"),
    ("192.0.2.11", "192-0-2-11.dyn.ispaccess.net", None, "HELO its own dynamic name"),
    ("192.0.2.12", "[192.0.2.12]", None, "HELO an address literal"),
])
def test_zombie_shaped_clients_are_greylisted(run, gl_dir, dns, ip, helo, host, why):
    env = {"TCPREMOTEHOST": host} if host else {}
    line = logged(check(send(run, dns, ip, helo, **env), GREYLISTED), "greylist", "new")
    assert "name=" not in line and "helo=" not in line, why
    # a dynamic name is verified all the same, and recorded for its address
    recorded = {"192.0.2.11": ["name 192.0.2.11>192-0-2-11.dyn.ispaccess.net"],
                "192.0.2.18": ["name 192.0.2.18>192-0-2-18.dsl.ispaccess.net"]}
    assert list(stored(gl_dir)) == ["192.0.2.0/24 alice@example.org bob@example.net"] + \
        recorded.get(ip, [])


def test_a_dynamic_ptr_is_rescued_by_a_good_helo(run, gl_dir, dns):
    line = logged(check(send(run, dns, "192.0.2.14", "mx.rescuedmail.org"), TRUSTED), "pass", "trusted")
    assert " client=192.0.2.14 name=192-0-2-14.pool.ispaccess.net helo=mx.rescuedmail.org " \
        "mode=suspicious " in line


def test_tcpserver_names_need_no_query(run, gl_dir, dns):
    line = logged(check(send(run, dns, "192.0.2.10", GL_HOST_NAMES="tcpserver",
                             TCPREMOTEHOST="mail.staticmail.net"), TRUSTED), "pass", "trusted")
    assert " name=mail.staticmail.net " in line
    assert dns.asked() == []
    # a dynamic TCPREMOTEHOST is suspicious, whatever tcpserver says
    check(send(run, dns, "192.0.2.11", GL_HOST_NAMES="tcpserver",
               TCPREMOTEHOST="192-0-2-11.dyn.ispaccess.net", SMTPRCPTTO="c@example.net"), GREYLISTED)


def test_a_dead_dns_server_leaves_the_client_suspicious_within_the_deadline(run, gl_dir):
    silent = FakeServer()
    try:
        start = time.monotonic()
        result = run(GL_GREYLIST="suspicious", GL_HOST_NAMES="dns", GL_DNS=silent.server,
                     GL_DNS_TIMEOUT="0.5", TCPREMOTEIP="192.0.2.10", SMTPHELOHOST="mail.staticmail.net")
        elapsed = time.monotonic() - start
    finally:
        silent.stop()
    logged(check(result, GREYLISTED), "greylist", "new")
    assert len(silent.queries) >= 1
    assert elapsed < 0.5 + 2.5  # the interpreter's start, then half a second of DNS


def test_an_spf_fail_makes_a_well_named_client_suspicious(run, gl_dir, dns):
    line = logged(check(send(run, dns, "192.0.2.15", SMTPMAILFROM="x@staticmail.net", GL_SPF="1"),
                        GREYLISTED), "greylist", "new")
    assert " spf=fail " in line
    # the same name without the forgery is trusted
    logged(check(send(run, dns, "192.0.2.15", GL_SPF="1"), TRUSTED), "pass", "trusted")


def test_greytraps_whitelists_relay_and_learning_keep_working(run, gl_dir, dns):
    write(gl_dir, "greytraps", "trap@example.net\n")
    logged(check(send(run, dns, "192.0.2.10", SMTPRCPTTO="trap@example.net"), GREYLISTED),
           "greylist", "greytrap")
    # the trap holds the network: the trusted server is refused meanwhile
    logged(check(send(run, dns, "192.0.2.10"), GREYLISTED), "greylist", "trapped")
    logged(check(send(run, dns, "192.0.2.10", RELAYCLIENT=""), b""), "skip", "relayclient")
    write(gl_dir, "whitelist-senders", "alice@example.org\n")
    check(send(run, dns, "203.0.113.5"), b"")
    # learning mode: a suspicious client (no PTR) is let through and recorded
    line = logged(check(send(run, dns, "203.0.113.5", GL_LEARN="1", SMTPMAILFROM="x@example.org"),
                        header("passed (learning mode)")), "pass", "learning")
    assert "detail=would greylist: new" in line


def test_a_trusted_client_at_the_data_stage(run, gl_dir, dns):
    result = send(run, dns, "192.0.2.10", GL_STAGE="data", QGREY_DATA="")
    assert result.returncode == 0
    assert result.stdout == b"SQGREY_DATA=1,1,0,0,trusted,-,mail\n", result.stderr
    logged(result.stderr.decode(), "pass", "trusted")


def test_all_greylists_every_new_triplet_and_asks_nothing(run, gl_dir, dns):
    check(send(run, dns, "192.0.2.10", GL_GREYLIST="all"), GREYLISTED)
    assert dns.asked() == []


@pytest.mark.parametrize("ip, helo, trial", [
    ("192.0.2.10", "client.example", "trial=trusted name=mail.staticmail.net"),
    ("192.0.2.14", "mx.rescuedmail.org",
     "trial=trusted name=192-0-2-14.pool.ispaccess.net helo=mx.rescuedmail.org"),
    ("192.0.2.12", "client.example", "trial=suspicious"),
    ("192.0.2.11", "client.example", "trial=suspicious"),
])
def test_trial_greylists_as_all_and_says_what_suspicious_would_do(run, gl_dir, dns, ip, helo, trial):
    line = logged(check(send(run, dns, ip, helo, GL_GREYLIST="trial"), GREYLISTED),
                  "greylist", "new")
    fields = " ".join(f for f in line.split(" ") if f.split("=")[0] in ("name", "helo", "trial", "mode"))
    assert sorted(fields.split()) == sorted(trial.split() + ["mode=trial"])
    # the retry after the delay passes as under all, with no verdict
    age(gl_dir, 400)
    line = logged(check(send(run, dns, ip, helo, GL_GREYLIST="trial"), delayed(400)),
                  "pass", "delayed")
    assert "trial=" not in line and " mode=trial " in line


# A verified name is recorded for the client's address for a day (name
# ADDRESS>HOST): read with the network key under the names the request gives
# without DNS (TCPREMOTEHOST, the HELO name), it spares the questions.

POOLED = {"GL_GREYLIST": "all", "GL_HOST_POOLS": "1"}


def test_a_known_pooled_sender_asks_no_question(run, gl_dir, dns):
    line = logged(check(send(run, dns, "192.0.2.10", "mail.staticmail.net", **POOLED), GREYLISTED),
                  "greylist", "new")
    assert " client=192.0.2.10 pool=staticmail.net sender=" in line and "mode=" not in line
    assert dns.asked() == [("10.2.0.192.in-addr.arpa", 12), ("mail.staticmail.net", 1)]
    age(gl_dir, 400)
    # its retry, and its next message: the name recorded, no question
    logged(check(send(run, dns, "192.0.2.10", "mail.staticmail.net", **POOLED), delayed(400)),
           "pass", "delayed")
    line = logged(check(send(run, dns, "192.0.2.10", "mail.staticmail.net", SMTPRCPTCOUNT="1",
                             **POOLED), b""), "pass", "known")
    assert line.startswith("qgrey: action=pass reason=known client=192.0.2.10 pool=staticmail.net "
                           "sender=alice@example.org recipient=bob@example.net waited=40"), line
    assert len(dns.asked()) == 2
    # a name TCPREMOTEHOST gives serves as well as the HELO name
    logged(check(send(run, dns, "192.0.2.10", "client.example", TCPREMOTEHOST="mail.staticmail.net",
                      SMTPRCPTCOUNT="1", **POOLED), b""), "pass", "known")
    assert len(dns.asked()) == 2
    # neither gives it (tcpserver -H, a HELO name of another spelling): asked again
    logged(check(send(run, dns, "192.0.2.10", "client.example", SMTPRCPTCOUNT="1", **POOLED), b""),
           "pass", "known")
    assert len(dns.asked()) == 4


def test_a_known_trusted_client_asks_no_question(run, gl_dir, dns):
    logged(check(send(run, dns, "192.0.2.10", "mail.staticmail.net"), TRUSTED), "pass", "trusted")
    assert len(dns.asked()) == 2
    # a new triplet of the same client: trusted from the recorded name
    line = logged(check(send(run, dns, "192.0.2.10", "mail.staticmail.net", SMTPRCPTTO="c@example.net"),
                        TRUSTED), "pass", "trusted")
    assert line == ("qgrey: action=pass reason=trusted client=192.0.2.10 name=mail.staticmail.net "
                    "mode=suspicious sender=alice@example.org recipient=c@example.net waited=0")
    assert len(dns.asked()) == 2


def test_a_recorded_name_is_only_its_addresss(run, gl_dir, dns):
    logged(check(send(run, dns, "192.0.2.10", "mail.staticmail.net"), TRUSTED), "pass", "trusted")
    # another client naming itself so, TCPREMOTEHOST too: verified afresh, and refused
    line = logged(check(send(run, dns, "192.0.2.12", "mail.staticmail.net", SMTPRCPTTO="c@example.net",
                             TCPREMOTEHOST="mail.staticmail.net"), GREYLISTED), "greylist", "new")
    assert "name=" not in line
    assert dns.asked()[2:] == [("12.2.0.192.in-addr.arpa", 12)]  # no PTR record


def test_a_recorded_name_lasts_a_day(run, gl_dir, dns):
    logged(check(send(run, dns, "192.0.2.10", "mail.staticmail.net"), TRUSTED), "pass", "trusted")
    age(gl_dir, 86400 - 60)
    logged(check(send(run, dns, "192.0.2.10", "mail.staticmail.net", SMTPRCPTTO="c@example.net"),
                 TRUSTED), "pass", "trusted")
    assert len(dns.asked()) == 2
    age(gl_dir, 61)  # a day after it was verified: verified again, and recorded again
    logged(check(send(run, dns, "192.0.2.10", "mail.staticmail.net", SMTPRCPTTO="d@example.net"),
                 TRUSTED), "pass", "trusted")
    assert dns.asked()[2:] == [("10.2.0.192.in-addr.arpa", 12), ("mail.staticmail.net", 1)]
    first = stored(gl_dir)["name 192.0.2.10>mail.staticmail.net"][0]
    assert abs(first - time.time()) < 60


def test_the_tools_keep_and_expire_a_recorded_name(run, gl_dir, dns):
    from test_host_pools import tool
    logged(check(send(run, dns, "192.0.2.10", "mail.staticmail.net", **POOLED), GREYLISTED),
           "greylist", "new")
    dumped = tool("qgrey-admin", "dump", gl_dir=gl_dir)
    assert dumped.returncode == 0, dumped.stderr
    assert [line.split("\t")[0] for line in dumped.stdout.splitlines() if "\t" in line] == [
        "name 192.0.2.10>mail.staticmail.net", "staticmail.net alice@example.org bob@example.net"]
    loaded = tool("qgrey-admin", "load", gl_dir=gl_dir, stdin=dumped.stdout)
    assert loaded.returncode == 0, loaded.stderr
    listed = tool("qgrey-admin", "list", "--no-header", gl_dir=gl_dir)
    assert listed.returncode == 0 and "name 192.0.2.10>mail.staticmail.net" in listed.stdout, listed
    age(gl_dir, 86400 + 1)  # the waiting triplet lives on (GL_RETRY_WINDOW)
    expired = tool("qgrey-expire", gl_dir=gl_dir)
    assert expired.returncode == 0, expired.stderr
    assert sorted(stored(gl_dir)) == ["staticmail.net alice@example.org bob@example.net"]


def test_privacy_hashes_a_recorded_name(run, gl_dir, dns):
    logged(check(send(run, dns, "192.0.2.10", "mail.staticmail.net", GL_PRIVACY="1"), TRUSTED),
           "pass", "trusted")
    names = [key for key in stored(gl_dir) if key.startswith("name ")]
    assert len(names) == 1 and len(names[0]) == len("name ") + 32, names
    logged(check(send(run, dns, "192.0.2.10", "mail.staticmail.net", GL_PRIVACY="1",
                      SMTPRCPTTO="c@example.net"), TRUSTED), "pass", "trusted")
    assert len(dns.asked()) == 2


def test_host_pools_use_the_verified_name(run, gl_dir, dns):
    # under dns, a pool comes from the verified name, never from TCPREMOTEHOST
    line = logged(check(send(run, dns, "192.0.2.10", GL_GREYLIST="all", GL_HOST_POOLS="1",
                             TCPREMOTEHOST="mail-x.google.com"), GREYLISTED), "greylist", "new")
    assert " client=192.0.2.10 pool=staticmail.net sender=" in line
    assert sorted(stored(gl_dir)) == ["name 192.0.2.10>mail.staticmail.net",
                                      "staticmail.net alice@example.org bob@example.net"]
    # no verified name: keyed by network, whatever TCPREMOTEHOST says
    line = logged(check(send(run, dns, "192.0.2.12", GL_GREYLIST="all", GL_HOST_POOLS="1",
                             TCPREMOTEHOST="mail-x.google.com", SMTPRCPTTO="c@example.net"),
                        GREYLISTED), "greylist", "new")
    assert "pool=" not in line
    assert "192.0.2.0/24 alice@example.org c@example.net" in stored(gl_dir)


# Once through the real qmail-smtpd of the harness kit (tests/test_qmail_smtpd.py):
# the client is 127.0.0.1, whose PTR name the tests' own nsd confirms.

LOOPBACK_ZONES = {
    "0.0.127.in-addr.arpa": "1 PTR mail.staticmail.net.",
    "staticmail.net": "mail A 127.0.0.1",
}


loopback_nsd = nsd_fixture(LOOPBACK_ZONES, "loopback_nsd")


def test_a_trusted_server_through_qmail_smtpd(server, loopback_nsd):
    s = server(["rcpt"], GL_GREYLIST="suspicious", GL_HOST_NAMES="dns",
               GL_DNS=loopback_nsd.server, GL_DNS_TIMEOUT="2")
    c = s.connect()
    c.ehlo()
    # accepted at its first attempt: no 451
    c.send("alice@sender.test", ["a@example.test", "b@example.test"])
    c.quit()
    (headers, body), = s.messages()
    one_header(headers, r"passed \(trusted client\)", ("a@example.test", "b@example.test"))
    assert body == "hello\n"
    lines = [line for line in s.log() if line.startswith("qgrey:")]
    assert lines == [
        "qgrey: action=pass reason=trusted client=127.0.0.1 name=mail.staticmail.net "
        "mode=suspicious sender=alice@sender.test recipient=a@example.test waited=0",
        # the second recipient is another new triplet, trusted too, without a header
        "qgrey: action=pass reason=trusted client=127.0.0.1 name=mail.staticmail.net "
        "mode=suspicious sender=alice@sender.test recipient=b@example.test waited=0"]


def test_explain_describes_a_recorded_name(run, gl_dir, dns):
    from test_host_pools import tool
    logged(check(send(run, dns, "192.0.2.10", "mail.staticmail.net"), TRUSTED), "pass", "trusted")
    env = dict(SUSPICIOUS, GL_DNS=dns.server)
    explained = tool("qgrey-admin", "explain", "192.0.2.10", "alice@example.org", "c@example.net",
                     "--helo", "mail.staticmail.net", gl_dir=gl_dir, env=env)
    assert explained.returncode == 0, explained.stderr
    lines = explained.stdout.splitlines()
    assert lines[1] == "answer: accept (reason=trusted): adds X-Greylist: passed (trusted client)"
    recorded, = [line for line in lines if line.startswith("  name ")]
    assert re.fullmatch(r"  name 192\.0\.2\.10>mail\.staticmail\.net: recorded, first (\d)s ago, "
                        r"last \1s ago, passed \1s ago, tries 1", recorded), recorded
    assert "name: mail.staticmail.net, verified by dns (recorded)" in lines
    assert "mode: GL_GREYLIST=suspicious: the client is trusted (name)" in lines
    assert len(dns.asked()) == 2  # explain asked nothing either
