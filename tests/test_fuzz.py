"""Property-based fuzzing of the environment qgrey is given.

In-process (many examples): keys.triplet, plugin.decide and reply.log_line.
As a process (a bounded number): the installed launcher.
"""
import ipaddress
import os
import re

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from conftest import SPP_ENV, spp
from qgrey import keys, plugin, reply, request
from qgrey import settings as settings_module

REPLY = re.compile(rb"^(E451 [ -~]*|H[ -~]*)\n$")
KEY_FIELD = re.compile(r"^[!-~]+$")

# Environment values: no NUL (execve cannot pass it), otherwise anything.
value = st.binary(max_size=300).map(lambda b: b.replace(b"\0", b""))
ip_like = st.one_of(
    value,
    st.from_regex(rb"\A[0-9a-fA-F:.%]{0,45}\Z"),
    st.ip_addresses().map(lambda a: str(a).encode()),
    st.sampled_from([b"::ffff:1.2.3.4", b"1.2.3.4.5", b"300.1.1.1", b"fe80::1%eth0", b"::"]),
)
names = st.sampled_from([
    b"TCPREMOTEIP", b"SMTPMAILFROM", b"SMTPRCPTTO", b"SMTPRCPTCOUNT", b"SMTPRCPTHOSTSOK",
    b"RELAYCLIENT", b"GL_WHITELISTED", b"SMTPAUTHUSER", b"GL_DELAY", b"GL_MESSAGE",
    b"GL_MASK_IP", b"GL_IGNORE_SENDER", b"GL_IGNORE_RECIPIENT", b"GL_IGNORE_REMOTEIP",
    b"GL_ON_ERROR", b"GL_RETRY_WINDOW", b"GL_LIFETIME", b"GL_STORE", b"GL_LOCK_TIMEOUT",
])
overrides = st.dictionaries(names, value, max_size=6)


class Flags:
    def __init__(self, mask_ip, ignore_sender, ignore_recipient, ignore_remoteip):
        self.mask_ip, self.ignore_sender = mask_ip, ignore_sender
        self.ignore_recipient, self.ignore_remoteip = ignore_recipient, ignore_remoteip


@settings(max_examples=3000, deadline=None)
@given(ip_like, value, value, st.tuples(st.booleans(), st.booleans(), st.booleans(), st.booleans()))
def test_triplet_is_three_printable_fields(ip, sender, recipient, flags):
    key = keys.triplet(ip, sender, recipient, Flags(*flags))
    fields = key.split(" ")
    assert len(fields) == 3
    if not ip.strip():  # an empty TCPREMOTEIP makes an empty client field
        fields[0] = fields[0] or "-"
    assert all(KEY_FIELD.match(f) for f in fields), key


class Masked:
    mask_ip = True


# Dotted quads, with the leading zeros and odd part counts a fuzzer rarely makes.
dotted = st.from_regex(rb"\A[0-9]{1,4}(\.[0-9]{1,4}){2,4}\Z")


def ipv4_oracle(text):
    """The standard library's reading of a dotted quad -> int or None.

    One documented difference, handled here: ipaddress refuses leading
    zeros (since 3.9.5, against octal readings), while qgrey reads each
    part of one to three ASCII digits as decimal ('010' is 10, as
    tcpserver and qmail read it). So each part is checked to be 1-3 ASCII
    digits and written without its leading zeros before ipaddress judges."""
    try:
        parts = text.decode("ascii").split(".")
    except UnicodeDecodeError:
        return None
    if len(parts) != 4 or not all(1 <= len(p) <= 3 and set(p) <= set("0123456789")
                                  for p in parts):
        return None
    try:
        return int(ipaddress.IPv4Address(".".join(str(int(p)) for p in parts)))
    except ValueError:
        return None


@settings(max_examples=3000, deadline=None)
@given(st.one_of(ip_like, dotted))
def test_parse_ipv4_agrees_with_ipaddress(ip):
    assert keys.parse_ipv4(ip) == ipv4_oracle(ip)


@pytest.mark.parametrize("text, value", [
    (b"192.0.2.1", 0xC0000201), (b"010.0.0.1", 0x0A000001), (b"0.0.0.0", 0),
    (b"255.255.255.255", 0xFFFFFFFF), (b"256.0.0.1", None), (b"1.2.3.0004", None),
    (b"1.2.3", None), (b"1..3.4", None), (b" 1.2.3.4", None), (b"1.2.3.+4", None),
])
def test_ipv4_oracle_itself(text, value):
    assert ipv4_oracle(text) == value


@settings(max_examples=2000, deadline=None)
@given(st.one_of(ip_like, dotted))
def test_client_masks_parseable_addresses(ip):
    client = keys.client(ip, Masked)
    assert KEY_FIELD.match(client) or not ip.strip()
    value = ipv4_oracle(ip.strip())
    if value is not None:
        assert client == "%s/24" % ipaddress.IPv4Address(value & 0xFFFFFF00)


@pytest.fixture(scope="module")
def state(tmp_path_factory):
    path = tmp_path_factory.mktemp("fuzz-state")
    os.chmod(str(path), 0o700)
    return str(path)


def environ_with(state_dir, extra):
    environ = {k.encode(): v.encode() for k, v in SPP_ENV.items()}
    environ[b"GL_DIR"] = state_dir.encode()
    environ.update(extra)
    if b"GL_STORE" in extra:  # only kinds this Python has; the rest is the launcher test's
        environ[b"GL_STORE"] = b"sqlite"
    environ[b"GL_LOCK_TIMEOUT"] = b"5"
    return environ


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(overrides, st.integers(min_value=0, max_value=2 ** 33))
def test_decide_in_process(state, extra, now):
    environ = environ_with(state, extra)
    problems = []
    decision = plugin.decide(environ, now, problems)
    assert decision.reply == b"" or REPLY.match(decision.reply), decision.reply
    assert decision.action in ("greylist", "pass", "skip", "error")
    line = reply.log_line(decision, request.from_environ(environ))
    assert line.endswith("\n") and "\n" not in line[:-1]
    assert all(" " <= c <= "~" for c in line[:-1]), line
    for problem in problems:
        assert "\n" not in problem


@settings(max_examples=int(os.environ.get("QGREY_FUZZ_PROCESSES", "60")), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(overrides)
def test_launcher_under_fuzzed_environment(launcher, state, extra):
    env = environ_with(state, extra)
    result = spp(launcher, env)
    assert result.returncode == 0
    assert b"Traceback" not in result.stderr, result.stderr
    assert result.stdout == b"" or REPLY.match(result.stdout), result.stdout
    lines = result.stderr.splitlines(True)
    assert lines and all(line.startswith(b"qgrey: ") for line in lines), result.stderr
    assert sum(not line.startswith(b"qgrey: warning: ") for line in lines) == 1, result.stderr
