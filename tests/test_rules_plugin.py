"""The rules through the installed plugin, run exactly as qmail-spp runs it."""
import os
import re
import sqlite3
import stat
import time

import pytest

GREYLISTED = b"E451 4.7.1 Greylisted, please try again later\n"
DATE = rb"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d \+0000"


def header(what):
    return re.compile(rb"HX-Greylist: " + re.escape(what.encode()) + rb" by qgrey-[0-9.]+; " + DATE + rb"\n")


def delayed(seconds):
    """The header of a delayed delivery; runs take time, so a few seconds more."""
    waited = b"|".join(b"%d" % (seconds + i) for i in range(5))
    return re.compile(rb"HX-Greylist: delayed (" + waited + rb") seconds by qgrey-[0-9.]+; "
                      + DATE + rb"\n")


def check(result, stdout):
    """Exit status 0 and exactly this stdout (bytes, or a compiled pattern)."""
    assert result.returncode == 0, result.stderr
    if isinstance(stdout, bytes):
        assert result.stdout == stdout, result.stderr
    else:
        assert stdout.fullmatch(result.stdout), (result.stdout, result.stderr)
    for line in result.stdout.splitlines():
        assert line[:1] in (b"E", b"H"), result.stdout
    return result.stderr.decode()


def logged(stderr, action, reason):
    line = stderr.strip().splitlines()[-1]
    assert line.startswith("qgrey: action=%s reason=%s " % (action, reason)), stderr
    return line


def age(gl_dir, seconds):
    """Move every stored time back, as if that much time had passed."""
    db = sqlite3.connect(os.path.join(gl_dir, "qgrey.sqlite"), isolation_level=None)
    db.execute("UPDATE entries SET first = first - ?, last = last - ?, "
               "passed = CASE WHEN passed > 0 THEN passed - ? ELSE 0 END",
               (seconds, seconds, seconds))
    db.close()


def stored(gl_dir):
    path = os.path.join(gl_dir, "qgrey.sqlite")
    if not os.path.exists(path):
        return {}
    db = sqlite3.connect(path)
    rows = {row[0]: row[1:] for row in db.execute("SELECT * FROM entries")}
    db.close()
    return rows


def write(gl_dir, name, text):
    with open(os.path.join(gl_dir, name), "w") as out:
        out.write(text)


# --- whitelists ---------------------------------------------------------------

@pytest.mark.parametrize("name, text, env, reason", [
    ("whitelist-clients", "# ours\n198.51.100.0/24\n", {}, "whitelist-client"),
    ("whitelist-clients", "2001:db8::/32\n", {"TCPREMOTEIP": "2001:db8:5::1"}, "whitelist-client"),
    ("whitelist-clients", "example.org\n", {"TCPREMOTEHOST": "mx2.Example.org"}, "whitelist-client"),
    ("whitelist-recipients", "postmaster@\n", {"SMTPRCPTTO": "PostMaster@example.net"},
     "whitelist-recipient"),
    ("whitelist-recipients", "@example.net\n", {}, "whitelist-recipient"),
    ("whitelist-senders", "alice@example.org\n", {"SMTPMAILFROM": "alice+x@example.org"},
     "whitelist-sender"),
    ("whitelist-senders", "@example.org\n", {}, "whitelist-sender"),
])
def test_whitelisted_requests_are_skipped_without_a_write(run, gl_dir, name, text, env, reason):
    write(gl_dir, name, text)
    stderr = check(run(**env), b"")
    logged(stderr, "skip", reason)
    assert stored(gl_dir) == {}


def test_host_name_match_needs_tcpremotehost_and_a_dot_boundary(run, gl_dir):
    write(gl_dir, "whitelist-clients", "example.org\n")
    check(run(), GREYLISTED)
    check(run(TCPREMOTEHOST="badexample.org", SMTPRCPTTO="c@example.net"), GREYLISTED)


def test_malformed_lines_are_reported_and_skipped(run, gl_dir):
    write(gl_dir, "whitelist-clients", "192.0.2.0/24\n999.1.2.3\n198.51.100.7 extra\n")
    stderr = check(run(), GREYLISTED)
    path = os.path.join(gl_dir, "whitelist-clients")
    assert "qgrey: warning: %s line 2: not an IP address, network or host name; skipped\n" % path in stderr
    assert "qgrey: warning: %s line 3: more than one entry on the line; skipped\n" % path in stderr
    logged(stderr, "greylist", "new")


def test_a_long_list_is_cached_and_the_cache_follows_edits(run, gl_dir):
    lines = ["10.%d.%d.0/24" % (i // 256, i % 256) for i in range(10000)]
    write(gl_dir, "whitelist-clients", "\n".join(lines) + "\n")
    check(run(), GREYLISTED)
    cache = os.path.join(gl_dir, ".whitelist-clients.cache")
    assert stat.S_IMODE(os.stat(cache).st_mode) == 0o600
    check(run(), GREYLISTED)
    with open(os.path.join(gl_dir, "whitelist-clients"), "a") as out:
        out.write("198.51.100.7\n")
    logged(check(run(), b""), "skip", "whitelist-client")


def test_unreadable_cache_is_rebuilt(run, gl_dir):
    write(gl_dir, "whitelist-clients", "# pad\n" * 1000 + "198.51.100.0/24\n")
    check(run(), b"")
    write(gl_dir, ".whitelist-clients.cache", "garbage")
    logged(check(run(), b""), "skip", "whitelist-client")


# --- normalisation ----------------------------------------------------------------

def test_batv_sender_matches_its_retry(run, gl_dir):
    check(run(SMTPMAILFROM="prvs=1234abcdef=alice@example.org"), GREYLISTED)
    age(gl_dir, 400)
    check(run(SMTPMAILFROM="prvs=1235fedcba=alice@example.org"), delayed(400))
    assert "198.51.100.0/24 alice@example.org bob@example.net" in stored(gl_dir)


def test_people_with_hex_shaped_names_stay_apart(run, gl_dir):
    check(run(SMTPMAILFROM="ada2@smallcorp.example"), GREYLISTED)
    age(gl_dir, 400)
    check(run(SMTPMAILFROM="ada2@smallcorp.example"), delayed(400))
    logged(check(run(SMTPMAILFROM="deb42@smallcorp.example"), GREYLISTED), "greylist", "new")
    assert sorted(stored(gl_dir))[:2] == ["198.51.100.0/24 ada2@smallcorp.example bob@example.net",
                                          "198.51.100.0/24 deb42@smallcorp.example bob@example.net"]


@pytest.mark.parametrize("listed, sender, reason", [
    # a normalised entry takes in the tags it stands for...
    ("alerts-#@monitor.example", "alerts-4411@monitor.example", "whitelist-sender"),
    ("bounce-md_#.#.v1-#@mandrillapp.com",
     "bounce-md_30850198.5f3b2a9e.v1-1a2b3c4d5e6f@mandrillapp.com", "whitelist-sender"),
    ("ada2@smallcorp.example", "ada2@smallcorp.example", "whitelist-sender"),
    # ...and no person whose name looks like hex ('#' first would be a comment)
    ("staff.#@smallcorp.example", "staff.deb42@smallcorp.example", None),
    ("staff.#@smallcorp.example", "staff.abba1@smallcorp.example", None),
    ("staff.#@smallcorp.example", "staff.becca1987@smallcorp.example", None),
    ("ada2@smallcorp.example", "deb42@smallcorp.example", None),
])
def test_whitelist_senders_after_normalisation(run, gl_dir, listed, sender, reason):
    write(gl_dir, "whitelist-senders", listed + "\n")
    result = run(SMTPMAILFROM=sender)
    assert b"warning" not in result.stderr, result.stderr
    if reason:
        logged(check(result, b""), "skip", reason)
    else:
        logged(check(result, GREYLISTED), "greylist", "new")


def test_normalisation_switched_off(run, gl_dir):
    check(run(SMTPMAILFROM="bounce-123@example.org", GL_NORMALISE_SENDER="0"), GREYLISTED)
    age(gl_dir, 400)
    stderr = check(run(SMTPMAILFROM="bounce-124@example.org", GL_NORMALISE_SENDER="0"), GREYLISTED)
    logged(stderr, "greylist", "new")


# --- auto-whitelisting --------------------------------------------------------------

def earn_auto_whitelist(run, gl_dir, **env):
    """Five deliveries an hour apart from one client (198.51.100.7 unless env says)."""
    check(run(**env), GREYLISTED)
    age(gl_dir, 400)
    check(run(**env), delayed(400))
    for count in range(2, 6):
        age(gl_dir, 3600)
        logged(check(run(SMTPRCPTCOUNT="1", **env), b""), "pass", "known")


def test_client_is_auto_whitelisted_by_its_own_address(run, gl_dir):
    check(run(), GREYLISTED)
    age(gl_dir, 400)
    check(run(), delayed(400))
    for count in range(2, 6):
        age(gl_dir, 3600)
        logged(check(run(SMTPRCPTCOUNT="1"), b""), "pass", "known")
        assert stored(gl_dir)["client 198.51.100.7"][3] == count
    # any sender, any recipient, from that address
    stderr = check(run(SMTPMAILFROM="x@elsewhere.example", SMTPRCPTTO="carol@example.net"),
                   header("passed (auto-whitelisted client)"))
    logged(stderr, "pass", "auto-whitelist")
    assert sorted(stored(gl_dir)) == [
        "198.51.100.0/24 alice@example.org bob@example.net", "client 198.51.100.7"]
    # A bot in the same /24 gains nothing from it.
    stderr = check(run(TCPREMOTEIP="198.51.100.225", SMTPMAILFROM="sales1202@promo871.example",
                       SMTPRCPTTO="judy@example.net"), GREYLISTED)
    logged(stderr, "greylist", "new")
    check(run(GL_AWL_COUNT="0", SMTPRCPTTO="dave@example.net"), GREYLISTED)


def test_network_unit_keeps_the_old_behaviour(run, gl_dir):
    earn_auto_whitelist(run, gl_dir, GL_AWL_UNIT="network")
    assert stored(gl_dir)["client 198.51.100.0/24"][3] == 5
    stderr = check(run(GL_AWL_UNIT="network", TCPREMOTEIP="198.51.100.225",
                       SMTPMAILFROM="x@elsewhere.example", SMTPRCPTTO="carol@example.net"),
                   header("passed (auto-whitelisted client)"))
    logged(stderr, "pass", "auto-whitelist")


def test_ipv6_client_is_auto_whitelisted_by_its_64(run, gl_dir):
    earn_auto_whitelist(run, gl_dir, TCPREMOTEIP="2001:db8:5:6::25")
    assert stored(gl_dir)["client 2001:db8:5:6::/64"][3] == 5
    # the same host's next privacy address passes; the next /64 does not
    logged(check(run(TCPREMOTEIP="2001:db8:5:6:a:b:c:d", SMTPRCPTTO="carol@example.net"),
                 header("passed (auto-whitelisted client)")), "pass", "auto-whitelist")
    logged(check(run(TCPREMOTEIP="2001:db8:5:7::25", SMTPRCPTTO="carol@example.net"),
                 GREYLISTED), "greylist", "new")


def test_network_entries_of_before_pass_until_they_expire(run, gl_dir):
    """An entry "client NETWORK" written before GL_AWL_UNIT is read as
    before, not renewed; the deliveries it passes count toward the address."""
    from test_operate import put
    from qgrey.policy import Entry
    now = int(time.time())
    old = Entry(now - 30 * 86400, now - 86400, now - 29 * 86400, 9)
    put(gl_dir, [("client 198.51.100.0/24", old)])
    for hour in range(3):
        stderr = check(run(TCPREMOTEIP="198.51.100.99", SMTPRCPTTO="r%d@example.net" % hour),
                       header("passed (auto-whitelisted client)"))
        logged(stderr, "pass", "auto-whitelist")
        age(gl_dir, 3600)
    entries = stored(gl_dir)
    assert entries["client 198.51.100.0/24"] == (old.first - 3 * 3600, old.last - 3 * 3600,
                                                 old.passed - 3 * 3600, 9)  # never written
    assert entries["client 198.51.100.99"][2:] == (0, 3)  # counting: 3 of 5
    # Gone by GL_LIFETIME after its last renewal, before GL_AWL_UNIT: a
    # neighbour that has not earned its own is greylisted again.
    age(gl_dir, 35 * 86400)
    logged(check(run(TCPREMOTEIP="198.51.100.99", SMTPRCPTTO="z@example.net"), GREYLISTED),
           "greylist", "new")


def test_admin_finds_and_deletes_the_address_entry(run, gl_dir):
    from test_operate import command
    earn_auto_whitelist(run, gl_dir)
    shown = command("qgrey-admin", "list", "--no-header", "--client", "198.51.100.7",
                    "--state", "whitelisted", gl_dir=gl_dir)
    assert shown.returncode == 0 and shown.stdout.endswith("  client 198.51.100.7\n"), shown
    assert len(shown.stdout.splitlines()) == 1
    deleted = command("qgrey-admin", "delete", "--client", "198.51.100.7", gl_dir=gl_dir)
    assert (deleted.returncode, deleted.stdout) == (0, "deleted client 198.51.100.7\n")
    assert "client 198.51.100.7" not in stored(gl_dir)


# --- greytraps ---------------------------------------------------------------------

def test_greytrap_hit_refuses_the_client_for_trap_time(run, gl_dir):
    write(gl_dir, "greytraps", "trap@example.net\n")
    check(run(), GREYLISTED)
    age(gl_dir, 400)
    check(run(SMTPRCPTCOUNT="1"), b"")  # bob's triplet has passed
    stderr = check(run(SMTPRCPTTO="Trap@example.net"), GREYLISTED)
    logged(stderr, "greylist", "greytrap")
    stderr = check(run(SMTPRCPTCOUNT="1"), GREYLISTED)
    logged(stderr, "greylist", "trapped")
    age(gl_dir, 86400)
    logged(check(run(SMTPRCPTCOUNT="1"), b""), "pass", "known")


def test_trap_holds_the_network_but_not_an_auto_whitelisted_address(run, gl_dir):
    write(gl_dir, "greytraps", "trap@example.net\n")
    earn_auto_whitelist(run, gl_dir)
    # a bot in the same /24 hits the trap: the network is held...
    logged(check(run(TCPREMOTEIP="198.51.100.225", SMTPRCPTTO="trap@example.net"), GREYLISTED),
           "greylist", "greytrap")
    assert stored(gl_dir)["trap 198.51.100.0/24"][3] == 1
    logged(check(run(TCPREMOTEIP="198.51.100.50", SMTPRCPTTO="carol@example.net"), GREYLISTED),
           "greylist", "trapped")
    # ...but the server that earned its auto-whitelist is not
    logged(check(run(SMTPRCPTTO="carol@example.net"), header("passed (auto-whitelisted client)")),
           "pass", "auto-whitelist")


def test_whitelisted_client_is_not_trapped(run, gl_dir):
    write(gl_dir, "greytraps", "trap@example.net\n")
    write(gl_dir, "whitelist-clients", "198.51.100.7\n")
    logged(check(run(SMTPRCPTTO="trap@example.net"), b""), "skip", "whitelist-client")
    assert stored(gl_dir) == {}


def test_traps_off(run, gl_dir):
    write(gl_dir, "greytraps", "trap@example.net\n")
    logged(check(run(SMTPRCPTTO="trap@example.net", GL_TRAP_TIME="0"), GREYLISTED), "greylist", "new")


# --- punishing fast retries -------------------------------------------------------------

def test_hammering_client_waits_longer(run, gl_dir):
    for reason in ("new", "early", "early", "early", "early", "punished"):
        logged(check(run(), GREYLISTED), "greylist", reason)
    age(gl_dir, 400)  # GL_DELAY has run, but not GL_DELAY + one GL_PUNISH_STEP
    logged(check(run(), GREYLISTED), "greylist", "punished")
    age(gl_dir, 300)
    check(run(), delayed(700))


def test_exchange_schedule_through_the_plugin(run, gl_dir):
    check(run(), GREYLISTED)
    age(gl_dir, 60)
    check(run(), GREYLISTED)
    age(gl_dir, 60)
    logged(check(run(), GREYLISTED), "greylist", "early")
    age(gl_dir, 1200)
    check(run(), delayed(1320))


# --- reverse tracking ----------------------------------------------------------------

@pytest.mark.parametrize("local", [{"RELAYCLIENT": ""}, {"SMTPAUTHUSER": "alice"}])
def test_reply_to_a_local_sender_passes(run, gl_dir, local):
    outbound = dict(local, TCPREMOTEIP="192.0.2.10", SMTPMAILFROM="alice@example.net",
                    SMTPRCPTTO="Bob@remote.example")
    stderr = check(run(**outbound), b"")
    assert "action=skip" in stderr
    stderr = check(run(TCPREMOTEIP="203.0.113.5", SMTPMAILFROM="bob@remote.example",
                       SMTPRCPTTO="alice@example.net"), header("passed (reply to a local sender)"))
    logged(stderr, "pass", "reply")
    # not for someone else
    check(run(TCPREMOTEIP="203.0.113.5", SMTPMAILFROM="bob@remote.example",
              SMTPRCPTTO="carol@example.net"), GREYLISTED)


def test_reverse_tracking_off(run, gl_dir):
    check(run(RELAYCLIENT="", SMTPMAILFROM="alice@example.net", SMTPRCPTTO="bob@remote.example",
              GL_REVERSE="0"), b"")
    assert stored(gl_dir) == {}


# --- learning, privacy, bounces ---------------------------------------------------------

def test_learning_mode(run, gl_dir):
    stderr = check(run(GL_LEARN="1"), header("passed (learning mode)"))
    line = logged(stderr, "pass", "learning")
    assert line.endswith(" detail=would greylist: new")
    logged(check(run(SMTPRCPTCOUNT="1"), b""), "pass", "known")


def test_privacy_mode_stores_hashes(run, gl_dir):
    check(run(GL_PRIVACY="1"), GREYLISTED)
    salt = os.path.join(gl_dir, "salt")
    assert stat.S_IMODE(os.stat(salt).st_mode) == 0o600
    keys = list(stored(gl_dir))
    assert keys and not any("example" in k or "198.51" in k for k in keys)
    age(gl_dir, 400)
    check(run(GL_PRIVACY="1"), delayed(400))
    with open(salt, "rb") as f:
        assert len(f.read()) == 32


def test_null_sender_pass_does_not_last(run, gl_dir):
    check(run(SMTPMAILFROM=""), GREYLISTED)
    assert "198.51.100.0/24 <> bob@example.net" in stored(gl_dir)
    age(gl_dir, 400)
    check(run(SMTPMAILFROM=""), delayed(400))
    age(gl_dir, 3601)
    logged(check(run(SMTPMAILFROM=""), GREYLISTED), "greylist", "expired")


def test_envelope_text_never_reaches_stdout(run, gl_dir):
    write(gl_dir, "greytraps", "trap@example.net\n")
    for env in ({"SMTPMAILFROM": "a\nO@x"}, {"SMTPRCPTTO": "b\nA@x"},
                {"TCPREMOTEHOST": "h\nO"}, {"SMTPMAILFROM": "prvs=1234abcdef=\nA@x"}):
        check(run(**env), GREYLISTED)


def test_hot_path_imports_nothing_heavy(run, gl_dir):
    """Without list files, no privacy and a known triplet: a failed stat per
    list, and none of re, os, hashlib, ipaddress or the list reader."""
    import sys
    check(run(), GREYLISTED)
    age(gl_dir, 400)
    check(run(), delayed(400))
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = ("import sys, posix, time; sys.path.insert(0, %r)\n"
            "from qgrey import plugin\n"
            "d = plugin.decide(posix.environ, int(time.time()), [])\n"
            "print(d.reason, ' '.join(sorted(sys.modules)))\n" % root)
    result = run(command=[sys.executable, "-I", "-S", "-c", code])
    reason, modules = result.stdout.decode().split(" ", 1)
    assert reason == "known", result.stderr
    modules = set(modules.split())
    assert not modules & {"re", "os", "hashlib", "ipaddress", "qgrey.lists", "qgrey.salt",
                          "sqlite3", "_sqlite3", "signal", "enum"}, modules
