"""End to end: qgrey under a real qmail-smtpd with qmail-spp.

The harness kit (shared/qmail-spp-harness next to the repository, or
/work/shared/qmail-spp-harness) builds notqmail's qmail-smtpd with the
qmail-spp patch once per session into a directory of that session's own
(removed at its end: no queue or server outlives it, none is shared with
another run) and runs it under tcpserver on 127.0.0.1 as nobody. qgrey is
installed as the README says, `/usr/bin/python3 -m qgrey.install` into a
prefix nobody can reach, and each test starts a server with its own state
directory and settings, holds real SMTP sessions and checks the exact
replies and the queued messages.

The kit needs root; without root or without the kit these tests skip,
except where CI=true: there they fail.
"""
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time

import pytest

from conftest import SYSTEM_PYTHON, system_install
from qgrey.launcher import MAIL_ENTRY
from qgrey.datastage import NO_DATA_ENTRY

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
KITS = (os.path.join(os.path.dirname(REPO), "shared", "qmail-spp-harness", "harness"),
        "/work/shared/qmail-spp-harness/harness")
PYTHON = SYSTEM_PYTHON
DELAY = 2  # GL_DELAY of these servers, in seconds

GREYLISTED = "451 4.7.1 Greylisted, please try again later"
NOGATEWAY = "553 sorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)"
QUEUED = re.compile(r"250 ok \d+ qp \d+")
DATE = (r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
        r"\d{4} \d\d:\d\d:\d\d \+0000")
LOG = re.compile(r"qgrey: action=(greylist|pass|skip|error|message) reason=[a-z-]+ client=\S* "
                 r"sender=\S+ recipient=\S*( waited=\d+)?( detail=[ -~]*)?")
ALICE = "alice@sender.test"
RECIPIENTS = ("a@example.test", "b@example.test", "c@example.test")
# A recipient check of the site's own, listed before qgrey under [rcpt] as
# examples/smtpplugins advises: unknown@ refused for good, postmaster@
# accepted at once (N: no later plugin runs for that RCPT).
CHECK_RECIPIENT = """#!/bin/sh
case "$SMTPRCPTTO" in
  unknown@*) echo "E550 sorry, no mailbox here by that name (#5.1.1)" ;;
  postmaster@*) echo N ;;
esac
"""
# A sender check of the site's own under [mail], before qgrey's line.
CHECK_SENDER = """#!/bin/sh
case "$SMTPMAILFROM" in
  refused@*) echo "E553 sorry, your envelope sender is refused (#5.7.1)" ;;
esac
"""
# A content check of the site's own under [data]: refuses mail from blocked@.
CHECK_MESSAGE = """#!/bin/sh
case "$SMTPMAILFROM" in
  blocked@*) echo "E554 sorry, this message is refused (#5.7.1)" ;;
esac
"""


DATA_WARNING = "qgrey: warning: " + NO_DATA_ENTRY


def unavailable(why):
    if os.environ.get("CI") == "true":
        pytest.fail(why + "; CI=true: the end-to-end tests must run")
    pytest.skip(why)


def x_greylist(what):
    return re.compile(r"X-Greylist: " + what + r" by qgrey-[0-9.]+; " + DATE)


class Kit:
    """The harness built for this session (dir) and qgrey installed where
    nobody can run it."""

    def __init__(self, harness, root, commands):
        self.harness, self.root = harness, root
        self.dir = os.path.join(root, "harness")
        self.rcpt = os.path.join(commands, "qgrey")
        self.data = os.path.join(commands, "qgrey-data")
        self.check_recipient = os.path.join(root, "bin", "check-recipient")
        self.check_sender = os.path.join(root, "bin", "check-sender")
        self.check_message = os.path.join(root, "bin", "check-message")
        entry = pwd.getpwnam("nobody")
        self.nobody = (entry.pw_uid, entry.pw_gid)
        self.count = 0

    def run(self, *args, env=None):
        return subprocess.run([self.harness] + list(args), env=env, capture_output=True,
                              text=True, timeout=600)

    def queue(self):
        result = self.run("queue", self.dir)
        assert result.returncode == 0, result.stderr
        return result.stdout.split()


@pytest.fixture(scope="session")
def kit():
    harness = next((k for k in KITS if os.path.isfile(k) and os.access(k, os.X_OK)), None)
    if harness is None:
        unavailable("the qmail-spp harness kit is not here (%s)" % " or ".join(KITS))
    if os.geteuid() != 0:
        unavailable("the qmail-spp harness kit needs root")
    if not os.access(PYTHON, os.X_OK):
        unavailable(PYTHON + " is missing: the plugins run as nobody and need the system's Python")
    try:
        pwd.getpwnam("nobody")
    except KeyError:
        unavailable("there is no user nobody")
    # A directory of this session's own, reachable by nobody; the kit takes
    # only A-Za-z0-9._+-/ in its path (no '_', which mkdtemp may choose).
    root = "/var/tmp/qgrey-e2e." + os.urandom(6).hex()
    os.mkdir(root, 0o755)
    os.chmod(root, 0o755)
    k = None
    try:
        k = Kit(harness, root, system_install(root))
        result = k.run("build", k.dir)
        if result.returncode != 0:
            unavailable("harness build %s failed: %s" % (k.dir, (result.stdout + result.stderr)[-2000:]))
        os.mkdir(os.path.join(root, "bin"), 0o755)
        for path, text in ((k.check_recipient, CHECK_RECIPIENT), (k.check_sender, CHECK_SENDER),
                           (k.check_message, CHECK_MESSAGE)):
            with open(path, "w") as f:
                f.write(text)
            os.chmod(path, 0o755)
        with open(k.rcpt) as f:  # the installed launcher, on the system's Python
            assert f.readline() == "#!%s/prefix/bin/python3 -IS\n" % root
        assert os.readlink(os.path.join(root, "prefix", "bin", "python3")) == PYTHON
        yield k
    finally:
        if k is not None and os.path.isdir(k.dir):
            stopped = k.run("stop", k.dir)
            assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        shutil.rmtree(root, ignore_errors=True)


class Server:
    """One tcpserver + qmail-smtpd of the kit, with its own qgrey state."""

    def __init__(self, kit, sections, settings):
        kit.count += 1
        self.kit = kit
        name = "t%d" % kit.count
        self.gl_dir = os.path.join(kit.root, "state-" + name)
        os.mkdir(self.gl_dir)
        os.chown(self.gl_dir, *kit.nobody)
        os.chmod(self.gl_dir, 0o700)
        self.conf = os.path.join(kit.root, "plugins-%s.conf" % name)
        with open(self.conf, "w") as f:
            for section in sections:  # "mail", "rcpt", "data", or (section, another plugin)
                if isinstance(section, tuple):
                    f.write("[%s]\n%s\n" % section)
                else:
                    f.write("[%s]\n%s\n" % (section, {"mail": MAIL_ENTRY, "rcpt": kit.rcpt,
                                                        "data": kit.data}[section]))
        os.chmod(self.conf, 0o644)
        self.log_path = os.path.join(kit.dir, "log", "smtpd.log")
        self.log_start = os.path.getsize(self.log_path) if os.path.exists(self.log_path) else 0
        self.queue_before = set(kit.queue())
        env = {k: v for k, v in os.environ.items() if k != "PASSENV"}
        env["SMTPD_ENV"] = " ".join("%s=%s" % item for item in dict(GL_DIR=self.gl_dir, **settings).items())
        result = kit.run("start", kit.dir, "0", self.conf, env=env)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "warning" not in result.stderr, result.stderr  # nobody can run every plugin
        self.port = int(result.stdout.strip())

    def stop(self):
        result = self.kit.run("stop", self.kit.dir, str(self.port))
        assert result.returncode == 0, result.stdout + result.stderr

    def connect(self):
        return Client(self.port)

    def write(self, name, text):
        path = os.path.join(self.gl_dir, name)
        with open(path, "w") as f:
            f.write(text)
        os.chown(path, *self.kit.nobody)

    def messages(self):
        """The messages queued since the server started, oldest first: [(headers, body)]."""
        out = []
        for path in self.kit.queue():
            if path in self.queue_before:
                continue
            with open(path) as f:
                head, _, body = f.read().partition("\n\n")
            out.append((head.split("\n"), body))
        return out

    def log(self):
        """The lines qmail-smtpd and the plugins wrote to stderr since the start."""
        with open(self.log_path, "rb") as f:
            f.seek(self.log_start)
            return f.read().decode("utf-8", "replace").splitlines()

    def qgrey_log(self):
        """qgrey's log lines, without the warning of a GL_DIR that no [data]
        run has marked yet (at GL_STAGE=data, the first transaction's RCPTs)."""
        lines = self.log()
        assert not any("Traceback" in line or "qmail-spp failure" in line for line in lines), lines
        mine = [line for line in lines if line.startswith("qgrey:") and line != DATA_WARNING]
        for line in mine:
            assert LOG.fullmatch(line), line
        return mine


@pytest.fixture
def server(kit):
    """server(sections, **settings) -> a running Server; stopped after the test."""
    started = []

    def start(sections, **settings):
        settings.setdefault("GL_DELAY", str(DELAY))
        settings.setdefault("GL_AWL_COUNT", "0")
        s = Server(kit, sections, settings)
        started.append(s)
        return s
    yield start
    for s in started:
        s.stop()


class Client:
    """A raw SMTP session: each command's exact reply, and a transcript."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.file = self.sock.makefile("rb")
        self.transcript = []
        assert self.reply() == "220 harness.test ESMTP", self.text()

    def text(self):
        return "\n".join(self.transcript)

    def reply(self):
        lines = []
        while True:
            line = self.file.readline()
            assert line.endswith(b"\r\n"), (line, self.text())
            lines.append(line[:-2].decode("ascii"))
            if line[3:4] != b"-":
                break
        reply = "\n".join(lines)
        self.transcript.append("S: " + reply.replace("\n", "\nS: "))
        assert "qmail-spp failure" not in reply, self.text()
        return reply

    def cmd(self, line, expect=None):
        self.transcript.append("C: " + line)
        self.sock.sendall(line.encode() + b"\r\n")
        reply = self.reply()
        if expect is not None:
            if isinstance(expect, str):
                assert reply == expect, self.text()
            else:
                assert expect.fullmatch(reply), self.text()
        return reply

    def refused(self, line, expect):
        """A refusal, and the dialogue still in step: NOOP answers 250."""
        self.cmd(line, expect)
        self.cmd("NOOP", "250 ok")

    def body(self, text, expect=QUEUED):
        self.transcript.append("C: <message>")
        self.sock.sendall(text.replace("\n", "\r\n").encode() + b".\r\n")
        reply = self.reply()
        assert expect.fullmatch(reply) if not isinstance(expect, str) else reply == expect, self.text()
        return reply

    def send(self, sender, recipients, replies=None):
        """MAIL, RCPTs (each answered 250 unless replies says otherwise), DATA, the message."""
        self.cmd("MAIL FROM:<%s>" % sender, "250 ok")
        for recipient in recipients:
            self.cmd("RCPT TO:<%s>" % recipient, (replies or {}).get(recipient, "250 ok"))
        self.cmd("DATA", "354 go ahead")
        self.body(message(sender, recipients))

    def ehlo(self):
        self.cmd("EHLO client.test", "250-harness.test\n250-PIPELINING\n250 8BITMIME")

    def quit(self):
        self.cmd("QUIT", "221 harness.test")
        assert self.file.read() == b"", self.text()  # nothing more: the dialogue ended in step
        self.sock.close()


def message(sender, recipients, subject="test"):
    return "From: <%s>\nTo: %s\nSubject: %s\n\nhello\n" % (
        sender, ", ".join("<%s>" % r for r in recipients), subject)


def wait_delay(after):
    """Sleep until GL_DELAY has passed for a triplet first seen by `after` (time.time())."""
    time.sleep(max(0.0, int(after) + DELAY + 0.05 - time.time()))


def one_header(headers, what, recipients=RECIPIENTS):
    """Exactly one X-Greylist header, after qmail's Received lines and before
    the client's headers, naming no recipient."""
    found = [h for h in headers if h.lower().startswith("x-greylist")]
    assert len(found) == 1, headers
    assert x_greylist(what).fullmatch(found[0]), found[0]
    assert not any(r.split("@")[0] + "@" in found[0] for r in recipients), found[0]
    index = headers.index(found[0])
    assert headers[index - 1].startswith("  by harness.test with SMTP"), headers
    assert headers[index + 1].startswith("From: "), headers
    return found[0]


# --- GL_STAGE=rcpt ------------------------------------------------------------------------

def test_stage_rcpt(server):
    s = server(["rcpt"], GL_STAGE="rcpt")
    c = s.connect()
    c.ehlo()
    c.cmd("MAIL FROM:<%s>" % ALICE, "250 ok")
    c.refused("RCPT TO:<a@example.test>", GREYLISTED)
    c.refused("RCPT TO:<b@example.test>", GREYLISTED)
    c.refused("RCPT TO:<x@elsewhere.invalid>", NOGATEWAY)  # rcpthosts still refuses: never a relay
    first_seen = time.time()
    c.refused("DATA", "503 RCPT first (#5.5.1)")
    # A callout probe is refused at this stage (the reason for GL_STAGE=data).
    c.cmd("RSET", "250 flushed")
    c.cmd("MAIL FROM:<>", "250 ok")
    c.refused("RCPT TO:<c@example.test>", GREYLISTED)
    c.quit()
    assert s.messages() == []

    wait_delay(first_seen)
    c = s.connect()
    c.ehlo()
    c.send(ALICE, ["a@example.test", "x@elsewhere.invalid", "b@example.test"],
           {"x@elsewhere.invalid": NOGATEWAY})
    # The next message of the connection, without RSET, then with RSET.
    c.send(ALICE, ["b@example.test", "a@example.test"])
    c.cmd("RSET", "250 flushed")
    c.send(ALICE, ["a@example.test"])
    c.quit()
    first, second, third = s.messages()
    one_header(first[0], r"delayed [2-9] seconds")
    one_header(second[0], r"passed \(known sender\)")
    one_header(third[0], r"passed \(known sender\)")
    log = s.qgrey_log()
    assert [line.split()[1:3] for line in log] == [
        ["action=greylist", "reason=new"], ["action=greylist", "reason=new"],
        ["action=skip", "reason=rcpthosts"], ["action=greylist", "reason=new"],
        ["action=pass", "reason=delayed"], ["action=skip", "reason=rcpthosts"],
        ["action=pass", "reason=delayed"]] + [["action=pass", "reason=known"]] * 3
    assert not any("message" in line for line in log)


class TwoHeaders(AssertionError):
    """The limit of qmail-spp below, observed: two X-Greylist headers."""


@pytest.mark.xfail(strict=True, raises=TwoHeaders, reason=(
    "a limit of qmail-spp, documented in the README: GL_STAGE=rcpt prints its header at the "
    "first accepted RCPT, into qmail-spp's header buffer, which only RSET and DATA empty (not "
    "MAIL); the client abandons the transaction with a new MAIL and no RSET, and the next "
    "transaction's first accepted RCPT adds another header: two X-Greylist headers in one "
    "message. No plugin can tell this from RSET then MAIL (buffer emptied, a header needed): "
    "RSET runs no plugin and changes no variable. GL_STAGE=data prints its header at DATA "
    "and has no such leak (test_stage_data)"))
def test_stage_rcpt_transaction_abandoned_without_rset(server):
    s = server(["rcpt"], GL_STAGE="rcpt")
    c = s.connect()
    c.ehlo()
    c.cmd("MAIL FROM:<%s>" % ALICE, "250 ok")
    c.refused("RCPT TO:<a@example.test>", GREYLISTED)
    c.refused("RCPT TO:<b@example.test>", GREYLISTED)
    first_seen = time.time()
    wait_delay(first_seen)
    c.cmd("RSET", "250 flushed")
    c.cmd("MAIL FROM:<%s>" % ALICE, "250 ok")
    c.cmd("RCPT TO:<a@example.test>", "250 ok")  # abandoned: a new MAIL, no RSET
    c.send(ALICE, ["b@example.test"])
    c.quit()
    [(headers, _)] = s.messages()
    found = [h for h in headers if h.lower().startswith("x-greylist")]
    if len(found) == 2 and all(x_greylist(r"delayed [2-9] seconds").fullmatch(h) for h in found):
        raise TwoHeaders(found)  # the one failure expected here, and only it
    one_header(headers, r"delayed [2-9] seconds")


# --- GL_STAGE=data --------------------------------------------------------------------------

def test_stage_data(server):
    s = server(["mail", "rcpt", "data"], GL_STAGE="data")
    c = s.connect()
    c.ehlo()
    c.cmd("MAIL FROM:<%s>" % ALICE, "250 ok")
    for recipient in RECIPIENTS:
        c.cmd("RCPT TO:<%s>" % recipient, "250 ok")  # every RCPT answered 250
    c.refused("RCPT TO:<x@elsewhere.invalid>", NOGATEWAY)
    first_seen = time.time()
    c.refused("DATA", GREYLISTED)
    c.refused("DATA", GREYLISTED)  # the same transaction: refused again
    c.cmd("RSET", "250 flushed")
    c.refused("DATA", "503 MAIL first (#5.5.1)")
    c.quit()
    assert s.messages() == []

    wait_delay(first_seen)
    c = s.connect()
    c.ehlo()
    c.send(ALICE, RECIPIENTS)  # the retry, whole
    # A new sender refused at DATA, then a known message without RSET: no leak.
    c.cmd("MAIL FROM:<new1@sender.test>", "250 ok")
    c.cmd("RCPT TO:<a@example.test>", "250 ok")
    c.refused("DATA", GREYLISTED)
    c.send(ALICE, ["b@example.test", "a@example.test"])
    # A transaction abandoned after its RCPT (new MAIL, no RSET), then EHLO in between.
    c.cmd("MAIL FROM:<new2@sender.test>", "250 ok")
    c.cmd("RCPT TO:<b@example.test>", "250 ok")
    c.send(ALICE, ["c@example.test"])
    c.cmd("MAIL FROM:<%s>" % ALICE, "250 ok")
    c.cmd("RCPT TO:<c@example.test>", "250 ok")
    c.cmd("RCPT TO:<new3@example.test>", "250 ok")
    c.refused("DATA", GREYLISTED)
    c.ehlo()
    c.send(ALICE, ["a@example.test"])
    # Refused, RSET, then the same sender to known recipients.
    c.cmd("MAIL FROM:<%s>" % ALICE, "250 ok")
    c.cmd("RCPT TO:<new4@example.test>", "250 ok")
    c.refused("DATA", GREYLISTED)
    c.cmd("RSET", "250 flushed")
    c.send(ALICE, ["a@example.test", "x@elsewhere.invalid", "c@example.test"],
           {"x@elsewhere.invalid": NOGATEWAY})
    c.quit()
    messages = s.messages()
    assert len(messages) == 5, c.text()
    one_header(messages[0][0], r"delayed [2-9] seconds")
    for headers, _ in messages[1:]:
        one_header(headers, r"passed \(known sender\)")

    log = s.qgrey_log()
    at_data = [line for line in log if "action=message" in line]
    assert [line.split()[1:3] for line in at_data] == [
        ["action=message", "reason=greylisted"]] * 2 + [
        ["action=message", "reason=passed"], ["action=message", "reason=greylisted"],
        ["action=message", "reason=passed"], ["action=message", "reason=passed"],
        ["action=message", "reason=greylisted"], ["action=message", "reason=passed"],
        ["action=message", "reason=greylisted"], ["action=message", "reason=passed"]]
    assert at_data[0].endswith(" detail=at DATA: 3 recipients recorded, 3 greylisted (new)")
    assert re.search(r" waited=[2-9] detail=at DATA: 3 recipients recorded$", at_data[2])
    per_recipient = [line for line in log if "action=message" not in line]
    for line in per_recipient:
        assert line.endswith(" detail=the message is decided at DATA") or "reason=rcpthosts" in line, line


def test_stage_data_callout_probe(server):
    """A sender verification callout (MAIL, RCPT, QUIT) is answered 250; a
    new message from the same client is then held at DATA only."""
    s = server(["mail", "rcpt", "data"], GL_STAGE="data")
    c = s.connect()
    c.cmd("HELO verifier.test", "250 harness.test")
    c.cmd("MAIL FROM:<>", "250 ok")
    c.cmd("RCPT TO:<a@example.test>", "250 ok")
    c.quit()
    c = s.connect()
    c.cmd("HELO verifier.test", "250 harness.test")
    c.cmd("MAIL FROM:<>", "250 ok")
    c.cmd("RCPT TO:<b@example.test>", "250 ok")
    c.cmd("RSET", "250 flushed")
    c.cmd("MAIL FROM:<verify@verifier.test>", "250 ok")
    c.cmd("RCPT TO:<b@example.test>", "250 ok")
    c.refused("DATA", GREYLISTED)
    c.quit()
    assert s.messages() == []
    log = s.qgrey_log()
    assert [line.split()[1:3] for line in log] == [["action=greylist", "reason=new"]] * 3 + [
        ["action=message", "reason=greylisted"]]


def test_stage_data_greytrap_refused_at_rcpt(server):
    s = server(["mail", "rcpt", "data"], GL_STAGE="data")
    s.write("greytraps", "trap@example.test\n")
    c = s.connect()
    c.ehlo()
    c.cmd("MAIL FROM:<%s>" % ALICE, "250 ok")
    c.cmd("RCPT TO:<a@example.test>", "250 ok")
    c.refused("RCPT TO:<trap@example.test>", GREYLISTED)
    c.refused("RCPT TO:<b@example.test>", GREYLISTED)  # the client is trapped now
    c.refused("DATA", GREYLISTED)
    c.quit()
    assert s.messages() == []
    assert [line.split()[1:3] for line in s.qgrey_log()] == [
        ["action=greylist", "reason=new"], ["action=greylist", "reason=greytrap"],
        ["action=greylist", "reason=trapped"], ["action=message", "reason=greylisted"]]


@pytest.mark.parametrize("first, reply", [
    ("unknown@example.test", "550 sorry, no mailbox here by that name (#5.1.1)"),
    ("postmaster@example.test", "250 ok")], ids=["refused-before", "accepted-before"])
def test_stage_data_recipient_decided_before_qgrey(server, kit, first, reply):
    """The next transaction's first RCPT is refused or accepted by a plugin
    listed before qgrey: the [mail] line has emptied the earlier
    transaction's state at MAIL, so nothing of it is taken for this one's."""
    s = server([("rcpt", kit.check_recipient), "mail", "rcpt", "data"], GL_STAGE="data")
    c = s.connect()
    c.ehlo()
    c.cmd("MAIL FROM:<%s>" % ALICE, "250 ok")
    c.cmd("RCPT TO:<a@example.test>", "250 ok")
    first_seen = time.time()
    c.refused("DATA", GREYLISTED)
    c.quit()
    wait_delay(first_seen)
    c = s.connect()
    c.ehlo()
    c.send(ALICE, ["a@example.test"])  # a@ is known from now on
    c.cmd("MAIL FROM:<%s>" % ALICE, "250 ok")
    c.cmd("RCPT TO:<new@example.test>", "250 ok")
    c.refused("DATA", GREYLISTED)
    c.cmd("RSET", "250 flushed")
    c.cmd("MAIL FROM:<%s>" % ALICE, "250 ok")
    c.cmd("RCPT TO:<%s>" % first, reply)
    c.cmd("RCPT TO:<a@example.test>", "250 ok")
    c.cmd("DATA", "354 go ahead")  # a fully known message
    c.body(message(ALICE, ["a@example.test"]))
    c.quit()
    first_message, second = s.messages()
    one_header(first_message[0], r"delayed [2-9] seconds")
    one_header(second[0], r"passed \(known sender\)")
    assert [line.split()[1:3] for line in s.qgrey_log()][-3:] == [
        ["action=message", "reason=greylisted"], ["action=pass", "reason=known"],
        ["action=message", "reason=passed"]]


def test_stage_data_mail_refused_by_a_plugin(server, kit):
    """A [mail] plugin listed before qgrey's line refuses a new MAIL:
    qmail-smtpd keeps the open transaction, and qgrey's line, not run, keeps
    its state: the greylisted recipient still holds the message."""
    s = server([("mail", kit.check_sender), "mail", "rcpt", "data"], GL_STAGE="data")
    c = s.connect()
    c.ehlo()
    c.cmd("MAIL FROM:<%s>" % ALICE, "250 ok")
    c.cmd("RCPT TO:<a@example.test>", "250 ok")
    c.refused("MAIL FROM:<refused@sender.test>", "553 sorry, your envelope sender is refused (#5.7.1)")
    c.refused("DATA", GREYLISTED)
    c.cmd("RCPT TO:<b@example.test>", "250 ok")
    c.refused("DATA", GREYLISTED)
    c.quit()
    assert s.messages() == []
    log = s.qgrey_log()
    assert [line.split()[1:3] for line in log] == [
        ["action=greylist", "reason=new"], ["action=message", "reason=greylisted"],
        ["action=greylist", "reason=new"], ["action=message", "reason=greylisted"]]
    # qmail-spp has set SMTPMAILFROM to the refused address for what follows.
    assert " sender=refused@sender.test recipient=b@example.test " in log[2]
    assert log[3].endswith(" detail=at DATA: 2 recipients recorded, 2 greylisted (new)")


def test_stage_data_order_of_the_plugins(server, kit):
    """What examples/smtpplugins warns about, on the real qmail-smtpd (with
    GL_LEARN=1, so that qgrey passes every message with its header):
    qgrey-data listed before a [data] plugin that refuses the message leaves
    its header in qmail-spp's buffer, and the next message of the connection
    carries two; listed last, the next message carries one. qgrey's [mail]
    line listed before a [mail] plugin that refuses a MAIL forgets the open
    transaction's state: its greylisted recipient no longer holds it."""
    def session(s):
        c = s.connect()
        c.ehlo()
        c.cmd("MAIL FROM:<blocked@sender.test>", "250 ok")
        c.cmd("RCPT TO:<a@example.test>", "250 ok")
        c.refused("DATA", "554 sorry, this message is refused (#5.7.1)")
        c.send(ALICE, ["b@example.test"])  # no RSET
        c.quit()
        [(headers, _)] = s.messages()
        return [h for h in headers if h.startswith("X-Greylist: ")]
    last = server(["mail", "rcpt", ("data", kit.check_message), "data"], GL_STAGE="data", GL_LEARN="1")
    [found] = session(last)
    assert x_greylist(r"passed \(learning mode\)").fullmatch(found)
    first = server(["mail", "rcpt", "data", ("data", kit.check_message)], GL_STAGE="data", GL_LEARN="1")
    assert len(session(first)) == 2

    s = server(["mail", ("mail", kit.check_sender), "rcpt", "data"], GL_STAGE="data")
    c = s.connect()
    c.ehlo()
    c.cmd("MAIL FROM:<%s>" % ALICE, "250 ok")
    c.cmd("RCPT TO:<a@example.test>", "250 ok")
    c.refused("MAIL FROM:<refused@sender.test>", "553 sorry, your envelope sender is refused (#5.7.1)")
    c.cmd("DATA", "354 go ahead")
    c.body(message(ALICE, ["a@example.test"]))
    c.quit()
    assert len(s.messages()) == 1
    assert [line.split()[1:3] for line in s.qgrey_log()] == [["action=greylist", "reason=new"]]


@pytest.mark.parametrize("env", ["RELAYCLIENT=", "GL_WHITELISTED=1"])
def test_stage_data_not_ours(server, env):
    """Relay clients and GL_WHITELISTED: 250, no header, and no Python at
    DATA (no log line from the [data] entry)."""
    name, _, value = env.partition("=")
    s = server(["mail", "rcpt", "data"], GL_STAGE="data", **{name: value})
    c = s.connect()
    c.ehlo()
    relay = name == "RELAYCLIENT"
    c.send("me@example.test", ["friend@elsewhere.invalid", "a@example.test"],
           {} if relay else {"friend@elsewhere.invalid": NOGATEWAY})
    c.send("me@example.test", ["b@example.test"])
    c.quit()
    messages = s.messages()
    assert len(messages) == 2
    for headers, _ in messages:
        assert not any(h.lower().startswith("x-greylist") for h in headers), headers
    reason = "relayclient" if relay else "whitelisted"
    assert [line.split()[1:3] for line in s.qgrey_log()] == [["action=skip", "reason=" + reason]] * 3


def test_stage_rcpt_with_the_data_entries_listed(server):
    """GL_STAGE=rcpt with the [mail] line and the [data] entry listed too:
    refused at RCPT, and the [data] entry stays silent."""
    s = server(["mail", "rcpt", "data"], GL_STAGE="rcpt")
    c = s.connect()
    c.ehlo()
    c.cmd("MAIL FROM:<%s>" % ALICE, "250 ok")
    c.refused("RCPT TO:<a@example.test>", GREYLISTED)
    c.cmd("RCPT TO:<friend@elsewhere.invalid>", NOGATEWAY)
    c.quit()
    assert [line.split()[1:3] for line in s.qgrey_log()] == [
        ["action=greylist", "reason=new"], ["action=skip", "reason=rcpthosts"]]


def test_stage_data_without_the_data_entry(server):
    """GL_STAGE=data with the [mail] line and qgrey under [rcpt] but no
    [data] entry: the new triplets are recorded as greylisted and the
    message is queued (nothing at DATA refuses it), so every recorded RCPT
    logs a warning naming the missing entry, in every transaction."""
    s = server(["mail", "rcpt"], GL_STAGE="data")
    c = s.connect()
    c.ehlo()
    c.send(ALICE, ["a@example.test", "x@elsewhere.invalid", "b@example.test"],
           {"x@elsewhere.invalid": NOGATEWAY})
    c.send(ALICE, ["c@example.test"])  # the next message of the connection
    c.quit()
    messages = s.messages()
    assert len(messages) == 2
    for headers, _ in messages:
        assert not any(h.lower().startswith("x-greylist") for h in headers), headers
    lines = [line for line in s.log() if line.startswith("qgrey:")]
    assert [line.split(" detail=")[0] for line in lines] == [
        DATA_WARNING,
        "qgrey: action=greylist reason=new client=127.0.0.1 sender=%s recipient=a@example.test waited=0" % ALICE,
        "qgrey: action=skip reason=rcpthosts client=127.0.0.1 sender=%s recipient=x@elsewhere.invalid" % ALICE,
        DATA_WARNING,
        "qgrey: action=greylist reason=new client=127.0.0.1 sender=%s recipient=b@example.test waited=0" % ALICE,
        DATA_WARNING,
        "qgrey: action=greylist reason=new client=127.0.0.1 sender=%s recipient=c@example.test waited=0" % ALICE]
    assert DATA_WARNING == (
        "qgrey: warning: GL_STAGE=data without the [data] entry (no [data] run has created "
        "GL_DIR/data-stage yet): list the entry written by python3 -m qgrey.launcher --data last "
        "under [data] in control/smtpplugins, or greylisted messages are accepted")
    assert not os.path.exists(os.path.join(s.gl_dir, "data-stage"))

    # With the [data] entry: the first message's RCPT still warns (a new
    # GL_DIR), its refused DATA marks GL_DIR, and nothing warns after.
    s = server(["mail", "rcpt", "data"], GL_STAGE="data")
    c = s.connect()
    c.ehlo()
    c.cmd("MAIL FROM:<%s>" % ALICE, "250 ok")
    c.cmd("RCPT TO:<a@example.test>", "250 ok")
    c.refused("DATA", GREYLISTED)
    c.cmd("RSET", "250 flushed")
    c.cmd("MAIL FROM:<%s>" % ALICE, "250 ok")
    c.cmd("RCPT TO:<b@example.test>", "250 ok")
    c.refused("DATA", GREYLISTED)
    c.quit()
    lines = [line for line in s.log() if line.startswith("qgrey:")]
    assert [line.split()[1] for line in lines] == [
        "warning:", "action=greylist", "action=message", "action=greylist", "action=message"]
    assert lines[0] == DATA_WARNING
    st = os.lstat(os.path.join(s.gl_dir, "data-stage"))
    assert (st.st_uid, st.st_size, st.st_mode & 0o7777) == (s.kit.nobody[0], 0, 0o600)
