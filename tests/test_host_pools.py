"""GL_HOST_POOLS through the installed plugin and tools, run as qmail-spp
and cron run them: a provider's pool is one client whatever network each
attempt comes from; dynamic and residential names never are."""
import os
import re
import subprocess
import sys

import pytest

from test_rules_plugin import GREYLISTED, age, check, delayed, header, logged, stored

POOLS = {"GL_HOST_POOLS": "1"}
GMAIL = "sender@gmail.com"

# One Gmail message, each attempt from another host, network and family.
GOOGLE = [
    ("209.85.208.41", "mail-ed1-f41.google.com"),
    ("209.85.221.66", "mail-wr1-f66.google.com"),
    ("2a00:1450:4864:20::42f", "mail-wr1-x42f.google.com"),
    ("209.85.128.53", "mail-wm1-f53.google.com"),
]

OUTLOOK = [
    ("40.107.22.83", "mail-am6eur05on2083.outbound.protection.outlook.com"),
    ("40.107.3.94", "mail-vi1eur04on2094.outbound.protection.outlook.com"),
]


def attempt(run, ip, host, **env):
    return run(**dict(dict(POOLS, TCPREMOTEIP=ip, TCPREMOTEHOST=host, SMTPMAILFROM=GMAIL), **env))


def triplets(gl_dir):
    return sorted(key for key in stored(gl_dir) if len(key.split(" ")) == 3)


def test_a_pool_retrying_from_another_network_passes_at_its_first_retry(run, gl_dir):
    (ip1, host1), (ip2, host2), (ip3, host3), (ip4, host4) = GOOGLE
    stderr = check(attempt(run, ip1, host1), GREYLISTED)
    line = logged(stderr, "greylist", "new")
    assert " client=209.85.208.41 pool=google.com sender=" in line
    assert triplets(gl_dir) == ["google.com sender@gmail.com bob@example.net"]
    # too early, from another /24: the same triplet, still waiting
    logged(check(attempt(run, ip2, host2), GREYLISTED), "greylist", "early")
    age(gl_dir, 400)
    # the first retry after GL_DELAY, over IPv6, passes
    logged(check(attempt(run, ip3, host3), delayed(400)), "pass", "delayed")
    # and later attempts from yet another network are known
    logged(check(attempt(run, ip4, host4, SMTPRCPTCOUNT="1"), b""), "pass", "known")
    assert triplets(gl_dir) == ["google.com sender@gmail.com bob@example.net"]
    assert stored(gl_dir)["client google.com"][3] == 1  # the pool counts to its auto-whitelisting


def test_outlook_hosts_share_their_pool(run, gl_dir):
    (ip1, host1), (ip2, host2) = OUTLOOK
    check(attempt(run, ip1, host1, SMTPMAILFROM="a@contoso.example"), GREYLISTED)
    age(gl_dir, 400)
    check(attempt(run, ip2, host2, SMTPMAILFROM="a@contoso.example"), delayed(400))
    assert triplets(gl_dir) == ["outbound.protection.outlook.com a@contoso.example bob@example.net"]


def dynamic_bots(count):
    """Bots of one ISP's customer ranges, one per /24, named as ISPs do."""
    forms = ("%d-%d-%d-%d.dsl.isp.example", "dynamic-%d-%d-%d-%d.cable.isp.example",
             "ppp%d-%d-%d-%d.pool.isp.example", "c-%d-%d-%d-%d.hsd1.ca.comcast.net",
             "host%d-%d-%d-%d.range86-150.btcentralplus.com", "%d.%d.%d.%d.static.isp.example",
             "cpe-%d-%d-%d-%d.customer.isp.example", "dhcp-%d-%d-%d-%d.broadband.isp.example")
    for i in range(count):
        ip = (86, 150, i, 7 + i)
        form = forms[i % len(forms)]
        yield "%d.%d.%d.%d" % ip, form % (ip if i % 2 else ip[::-1])


def test_bots_with_dynamic_names_never_pass_on_each_others_attempts(run, gl_dir):
    bots = list(dynamic_bots(16))
    for ip, host in bots:
        stderr = check(attempt(run, ip, host, SMTPMAILFROM="forged@bank.example"), GREYLISTED)
        line = logged(stderr, "greylist", "new")
        assert " pool=" not in line
    age(gl_dir, 400)
    # after the delay, a bot of yet another /24 is still new
    check(attempt(run, "86.150.99.9", "dsl-86-150-99-9.isp.example", SMTPMAILFROM="forged@bank.example"),
          GREYLISTED)
    assert sorted(key.split()[0] for key in triplets(gl_dir)) == sorted(
        ["86.150.%d.0/24" % i for i in range(16)] + ["86.150.99.0/24"])


def test_auto_whitelisting_a_pool_never_takes_in_a_customer_range(run, gl_dir):
    (ip1, host1), (ip2, host2), (ip3, host3), _ = GOOGLE
    check(attempt(run, ip1, host1), GREYLISTED)
    age(gl_dir, 400)
    check(attempt(run, ip2, host2), delayed(400))
    for count in range(2, 6):
        age(gl_dir, 3600)
        check(attempt(run, ip2, host2, SMTPRCPTCOUNT="1"), b"")
    assert stored(gl_dir)["client google.com"][3] == 5
    # the pool is whitelisted: any sender, any recipient, any of its hosts
    stderr = check(attempt(run, ip3, host3, SMTPMAILFROM="other@gmail.com", SMTPRCPTTO="carol@example.net"),
                   header("passed (auto-whitelisted client)"))
    logged(stderr, "pass", "auto-whitelist")
    # a dynamic host of the same provider domain is not the pool
    check(attempt(run, "209.85.9.9", "209-85-9-9.dsl.google.com", SMTPRCPTTO="carol@example.net"),
          GREYLISTED)


@pytest.mark.parametrize("env", [{"GL_HOST_POOLS": "0"}, {}], ids=["off", "default"])
def test_without_the_setting_names_change_nothing(run, gl_dir, env):
    (ip1, host1), (ip2, host2) = GOOGLE[:2]
    run_env = dict(TCPREMOTEHOST=host1, TCPREMOTEIP=ip1, SMTPMAILFROM=GMAIL, **env)
    line = logged(check(run(**run_env), GREYLISTED), "greylist", "new")
    assert " pool=" not in line
    age(gl_dir, 400)
    logged(check(run(**dict(run_env, TCPREMOTEIP=ip2, TCPREMOTEHOST=host2)), GREYLISTED),
           "greylist", "new")
    assert triplets(gl_dir) == ["209.85.208.0/24 sender@gmail.com bob@example.net",
                                      "209.85.221.0/24 sender@gmail.com bob@example.net"]


@pytest.mark.parametrize("host", [
    "", "209.85.208.41", "localhost", "mail-ed1-f41.google", "-bad-.google.com",
    "a" * 300 + ".google.com", "mail\xe9.google.com", "mail ed1.google.com", "mail%0a.google.com",
    "mail-ed1-f41.google.com.evil\n", "..", "."])
def test_names_that_are_not_host_names_keep_network_keying(run, gl_dir, host):
    result = run(TCPREMOTEIP="209.85.208.41", TCPREMOTEHOST=host or None, SMTPMAILFROM=GMAIL,
                 GL_HOST_POOLS="1")
    line = logged(check(result, GREYLISTED), "greylist", "new")
    assert " pool=" not in line
    assert triplets(gl_dir) == ["209.85.208.0/24 sender@gmail.com bob@example.net"]


def test_ignore_remoteip_and_privacy(run, gl_dir):
    ip, host = GOOGLE[0]
    check(attempt(run, ip, host, GL_IGNORE_REMOTEIP="1"), GREYLISTED)
    assert triplets(gl_dir) == ["* sender@gmail.com bob@example.net"]
    check(attempt(run, ip, host, GL_PRIVACY="1", SMTPRCPTTO="carol@example.net"), GREYLISTED)
    hashed = [key for key in triplets(gl_dir) if not key.startswith("*")]
    assert len(hashed) == 1 and "google" not in hashed[0]


# --- the tools ----------------------------------------------------------------

BIN = os.path.dirname(sys.executable)


def tool(name, *args, gl_dir, env=None, stdin=None):
    environment = {"PATH": "/usr/bin:/bin", "GL_DIR": gl_dir}
    environment.update(env or {})
    return subprocess.run([os.path.join(BIN, name)] + list(args), env=environment, input=stdin,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60, text=True)


def test_admin_knows_pools(run, gl_dir):
    ip, host = GOOGLE[0]
    check(attempt(run, ip, host), GREYLISTED)
    check(run(SMTPMAILFROM=GMAIL), GREYLISTED)  # 198.51.100.7, no name
    listed = tool("qgrey-admin", "list", "--no-header", "--client", "google.com", gl_dir=gl_dir)
    assert listed.returncode == 0, listed.stderr
    assert [line.split()[-3:] for line in listed.stdout.splitlines()] == [
        ["google.com", GMAIL, "bob@example.net"]]
    released = tool("qgrey-admin", "allow", "Google.COM", GMAIL, "bob@example.net", gl_dir=gl_dir)
    assert (released.returncode, released.stdout) == (
        0, "released google.com sender@gmail.com bob@example.net\n"), released.stderr
    # a pool whitelisted by deliveries is forgotten by its name
    for _ in range(5):
        check(attempt(run, *GOOGLE[1], SMTPRCPTCOUNT="1"), re.compile(rb""))
        age(gl_dir, 3600)
    assert "client google.com" in stored(gl_dir)
    deleted = tool("qgrey-admin", "delete", "--client", "google.com", gl_dir=gl_dir)
    assert (deleted.returncode, deleted.stdout) == (0, "deleted client google.com\n")
    assert "client google.com" not in stored(gl_dir)


def test_report_groups_by_pool_and_shows_the_delay_pools_saw(tmp_path, gl_dir):
    log = "".join([
        "qgrey: action=greylist reason=new client=209.85.208.41 pool=google.com "
        "sender=a@gmail.com recipient=b@example.net\n",
        "qgrey: action=greylist reason=early client=209.85.221.66 pool=google.com "
        "sender=a@gmail.com recipient=b@example.net\n",
        "qgrey: action=pass reason=delayed client=2a00:1450:4864:20::42f pool=google.com "
        "sender=a@gmail.com recipient=b@example.net waited=420\n",
        "qgrey: action=greylist reason=new client=40.107.22.83 pool=outbound.protection.outlook.com "
        "sender=x@contoso.example recipient=b@example.net\n",
        "qgrey: action=pass reason=delayed client=40.107.3.94 pool=outbound.protection.outlook.com "
        "sender=x@contoso.example recipient=b@example.net waited=900\n",
        "qgrey: action=greylist reason=new client=40.107.22.83 pool=outbound.protection.outlook.com "
        "sender=y@contoso.example recipient=b@example.net\n",
        "qgrey: action=pass reason=delayed client=40.107.3.94 pool=outbound.protection.outlook.com "
        "sender=y@contoso.example recipient=b@example.net waited=360\n",
        "qgrey: action=greylist reason=new client=86.150.1.7 sender=f@bank.example recipient=b@example.net\n",
    ])
    page = str(tmp_path / "report.html")
    result = tool("qgrey-report", "--list", "--html", page, gl_dir=gl_dir, stdin=log)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    # every greylisted pool triplet came back, though from other networks
    assert "triplets greylisted that never came back: 1\n  86.150.1.0/24 f@bank.example b@example.net\n" in out
    assert ("delay of host pools (GL_HOST_POOLS) that passed after greylisting\n"
            "          2 mean 10m30s  longest 15m00s  outbound.protection.outlook.com\n"
            "          1 mean 7m00s   longest 7m00s   google.com\n") in out
    with open(page) as f:
        html = f.read()
    assert "<td><code>outbound.protection.outlook.com</code></td><td class=\"n\">2</td>" \
           "<td class=\"n\">10m30s</td><td class=\"n\">15m00s</td>" in html
    # the networks greylisted most are the keys' client fields: pools and networks
    networks = html[html.index('<table id="networks">'):]
    networks = networks[:networks.index("</table>")]
    # two greylistings each for the pools, one for the network
    assert networks.index("google.com") < networks.index("outbound.protection.outlook.com") \
        < networks.index("86.150.1.0/24")
