"""GL_STAGE=data through its three entries, run as qmail-spp runs them.

No qmail here: Smtpd below plays qmail-smtpd's part in running plugins, as
qmail-spp.c does it (see ../shared/docs/qmail-spp.md and the behaviour
observed in ../shared/docs/qmail-spp-data-stage.md): the [mail] line
(/bin/sh -c 'echo SQGREY_DATA=') at each MAIL, the [rcpt] launcher at each
RCPT and the [data] launcher at DATA, each with the connection's
environment; S sets and U unsets a variable in that environment for the
rest of the connection (RSET and a new MAIL do not clear it); H lines go
into one header buffer emptied only by RSET and an accepted DATA;
SMTPMAILFROM (set before the [mail] plugins run, even for a MAIL they
refuse), SMTPRCPTCOUNT (recipients accepted before this RCPT),
SMTPRCPTCOUNTALL (RCPTs in this transaction, this one included; MAIL and
RSET start again, a refused MAIL too), SMTPRCPTHOSTSOK and SMTPRCPTTO (the
last RCPT attempted) as qmail-smtpd sets them; a MAIL refused by a plugin
leaves the open transaction going. tests/test_qmail_smtpd.py runs the same
against the real qmail-smtpd.
"""
import os
import re
import shutil
import subprocess
import sys

import pytest

from conftest import SPP_ENV, spp
import qgrey
from qgrey import VERSION
from qgrey.launcher import MAIL_ENTRY
from qgrey.datastage import NO_DATA_ENTRY, NO_MAIL_ENTRY
from redisserver import RedisServer
from test_rules_plugin import age, stored, write

MESSAGE = b"Greylisted, please try again later"
GREYLISTED = b"E451 4.7.1 " + MESSAGE + b"\n"
UNSET = b"UQGREY_DATA\n"
OPENED = b"SQGREY_DATA=\n"   # all the [mail] line ever prints
MAIL_COMMAND = ["/bin/sh", "-c", MAIL_ENTRY[1:]]  # how qmail-spp runs a line starting with ':'
WARNING = ("qgrey: warning: %s\n" % NO_MAIL_ENTRY).encode()
# At a recorded RCPT while no [data] run has marked GL_DIR (a new GL_DIR: the
# first transaction, before its DATA; or no [data] entry at all).
DATA_WARNING = ("qgrey: warning: %s\n" % NO_DATA_ENTRY).encode()
DATE = rb"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d \+0000"
# Every line a plugin may print, each ending in exactly "\n".
OUTPUT_LINE = re.compile(rb"(SQGREY_DATA=[0-9]+,[0-9]+,[0-9]+,[0-9]+,[a-z-]+,[a-z-]+,(mail|[0-9a-f]{8})"
                         rb"|UQGREY_DATA|E451 4\.[37]\.[01] [ -~]+|HX-Greylist: [ -~]+)\n")
LOG = re.compile(
    rb"qgrey: action=(greylist|pass|skip|error|message) reason=([a-z-]+) client=(\S*) "
    rb"sender=(\S+) recipient=(\S*)(?: waited=(\d+))?(?: detail=([ -~]*))?\n")
AT_DATA = "the message is decided at DATA"
INTERNAL = re.compile(rb"qgrey: action=error reason=internal detail=[ -~]*\n")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Where the package under test is installed (its site-packages in CI).
PACKAGE = os.path.dirname(os.path.abspath(qgrey.__file__))

CLIENT = "198.51.100.7"
ALICE = "alice@example.org"
RECIPIENTS = ("bob@example.net", "carol@example.net", "dave@example.net")


def mark(sender):
    """The sender mark the state carries: FNV-1a (32 bits) of SMTPMAILFROM, 8 hex digits."""
    value = 0x811C9DC5
    for byte in sender.encode():
        value = ((value ^ byte) * 0x01000193) & 0xFFFFFFFF
    return "%08x" % value


def state(countall, recorded, greylisted, waited, reason, refused, tag="mail"):
    """A state line; tag: "mail" (a transaction the [mail] entry opened) or
    mark(sender) (no [mail] entry)."""
    return b"SQGREY_DATA=%d,%d,%d,%d,%s,%s,%s\n" % (
        countall, recorded, greylisted, waited, reason.encode(), refused.encode(), tag.encode())


def tag(c, sender=ALICE):
    """The mark a state of connection c carries."""
    return b"mail" if c.mail_entry else mark(sender).encode()


def header(what):
    return re.compile(rb"HX-Greylist: " + re.escape(what.encode()) + rb" by qgrey-"
                      + re.escape(VERSION.encode()) + rb"; " + DATE + rb"\n")


def delayed_header(low, high):
    """The header of a delayed message that waited low..high seconds."""
    waited = b"|".join(b"%d" % s for s in range(low, high + 1))
    return re.compile(rb"HX-Greylist: delayed (" + waited + rb") seconds by qgrey-"
                      + re.escape(VERSION.encode()) + rb"; " + DATE + rb"\n")


def check_run(result):
    """What qmail-smtpd relies on from every run: exit status 0, each stdout
    line valid and ending in exactly "\\n", never A/O/N/R/D, no traceback,
    only log lines on stderr (one per Python run, none from the shell)."""
    assert result.returncode == 0, result
    assert b"Traceback" not in result.stderr, result.stderr
    out = result.stdout
    assert out == b"" or out.endswith(b"\n"), out
    for line in out.splitlines(True):
        assert OUTPUT_LINE.fullmatch(line), out
    assert out.count(b"\nE") + out.startswith(b"E") <= 1, out  # one terminal command at most
    if b"E451" in out:
        assert out.split(b"\n")[-2].startswith(b"E451"), out  # and nothing after it
    lines = result.stderr.splitlines(True)
    warned = False
    for warning in (WARNING, DATA_WARNING):  # at a recorded RCPT (GL_STAGE=data), in this order
        if lines[:1] == [warning]:
            lines, warned = lines[1:], True
    if warned:
        assert len(lines) == 1 and lines[0].endswith(b"the message is decided at DATA\n"), result.stderr
    assert len(lines) <= 1, result.stderr
    for line in lines:
        assert LOG.fullmatch(line) or INTERNAL.fullmatch(line), line


class Smtpd:
    """One SMTP connection: qmail-smtpd and qmail-spp's handling of the
    plugins and of their output. Each command returns the SMTP reply."""

    def __init__(self, rcpt_plugin, data_plugin, gl_dir, remote_ip=CLIENT,
                 rcpthosts=("example.net",), before=(), mail_entry=True, before_mail=(), **env):
        self.plugins = {"rcpt": rcpt_plugin, "data": data_plugin}
        self.before = list(before)  # other [rcpt] plugins, listed before qgrey
        self.mail_entry = mail_entry  # qgrey's [mail] line, listed last under [mail]
        self.before_mail = list(before_mail)  # other [mail] plugins, listed before it
        self.mail_runs = []    # CompletedProcess of every run of qgrey's [mail] line
        self.env = {name: value for name, value in SPP_ENV.items() if not name.startswith("SMTP")}
        self.env.update(TCPREMOTEIP=remote_ip, GL_DIR=gl_dir)
        self.env.update(env)
        self.rcpthosts = rcpthosts
        self.seenmail = False
        self.count = self.countall = 0
        self.recipients = []
        self.headers = []      # qmail-spp's header buffer
        self.messages = []     # (headers, recipients) of each accepted message
        self.runs = []         # (stage, CompletedProcess) of every plugin run

    def helo(self, host="mx.example.org"):
        self.env["SMTPHELOHOST"] = host
        self.seenmail = False
        return "250 harness.test"

    def rset(self):
        self.headers = []
        self.count = self.countall = 0
        self.seenmail = False
        return "250 flushed"

    def mail(self, sender):
        self.count = self.countall = 0  # qmail-spp resets its counts before the plugins run
        self.env["SMTPMAILFROM"] = sender
        accepted = False  # by a plugin's N: later [mail] plugins are not run
        for plugin in self.before_mail:
            result = spp(plugin, dict(self.env))
            assert result.returncode == 0, result
            refused = self._apply(result.stdout)
            if refused:  # the MAIL is refused; an open transaction goes on
                return refused
            if b"N\n" in result.stdout.splitlines(True):
                accepted = True
                break
        if self.mail_entry and not accepted:
            result = spp(MAIL_COMMAND, dict(self.env))
            assert (result.returncode, result.stdout, result.stderr) == (0, OPENED, b""), result
            self.mail_runs.append(result)
            self._apply(result.stdout)
        self.seenmail = True
        self.recipients = []
        return "250 ok"

    def rcpt(self, recipient):
        if not self.seenmail:
            return "503 MAIL first (#5.5.1)"
        allowed = "RELAYCLIENT" in self.env or \
            recipient.rpartition("@")[2].lower() in self.rcpthosts
        self.env["SMTPRCPTCOUNT"] = str(self.count)
        self.countall += 1
        self.env["SMTPRCPTCOUNTALL"] = str(self.countall)
        self.env["SMTPRCPTHOSTSOK"] = "1" if allowed else "0"
        self.env["SMTPRCPTTO"] = recipient
        for plugin in self.before:  # qmail-spp runs them in order until a terminal command
            result = spp(plugin, dict(self.env))
            assert result.returncode == 0, result
            terminal = [line for line in result.stdout.decode().splitlines()
                        if line[:1] and line[:1] in "ENAOD"]
            if terminal and terminal[0][:1] == "E":
                return terminal[0][1:]
            if terminal:  # N: accepted, qgrey is not run; qmail's own checks follow
                break
        else:
            refused = self._run("rcpt")
            if refused:
                return refused
        if not allowed:
            return "553 sorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)"
        self.count += 1
        self.recipients.append(recipient)
        return "250 ok"

    def data(self):
        if not self.seenmail:
            return "503 MAIL first (#5.5.1)"
        if not self.recipients:
            return "503 RCPT first (#5.5.1)"
        refused = self._run("data")
        if refused:
            return refused
        self.seenmail = False
        self.messages.append((self.headers, self.recipients))
        self.headers = []
        self.count = self.countall = 0
        return "250 ok"

    def send(self, sender, recipients):
        """MAIL, a RCPT each, DATA -> the replies."""
        return [self.mail(sender)] + [self.rcpt(r) for r in recipients] + [self.data()]

    def _run(self, stage):
        result = spp(self.plugins[stage], dict(self.env))
        check_run(result)
        self.runs.append((stage, result))
        return self._apply(result.stdout)

    def _apply(self, stdout):
        """qmail-spp's reading of a plugin's output -> the E text, or None."""
        for line in stdout.splitlines():
            if len(line) < 1:
                continue
            command, rest = line[:1], line[1:].decode("ascii")
            if command == b"S":
                name, _, value = rest.partition("=")
                self.env[name] = value
            elif command == b"U":
                self.env.pop(rest, None)
            elif command == b"H":
                self.headers.append(rest)
            elif command == b"E":
                return rest
        return None

    def out(self, index=-1):
        return self.runs[index][1].stdout

    def log(self, index=-1):
        """The run's log line, parsed: (action, reason, client, sender, recipient, waited, detail)."""
        stderr = self.runs[index][1].stderr
        if not self.mail_entry and stderr.startswith(WARNING):
            stderr = stderr[len(WARNING):]
        if stderr.startswith(DATA_WARNING):  # a new GL_DIR, before the first [data] run
            stderr = stderr[len(DATA_WARNING):]
        match = LOG.fullmatch(stderr)
        assert match, stderr
        return tuple(g.decode() if g is not None else None for g in match.groups())

    def outputs(self, stage):
        return [result.stdout for s, result in self.runs if s == stage]


def write_data_launcher(path, python=None):
    subprocess.run([sys.executable, "-m", "qgrey.launcher", "--data", path], check=True, cwd="/",
                   stdout=subprocess.DEVNULL)
    if python is not None:  # the same script, pointing at another interpreter
        with open(path) as f:
            text = f.read()
        assert text.count("exec %s -IS -c " % sys.executable) == 1, text
        with open(path, "w") as f:
            f.write(text.replace("exec %s " % sys.executable, "exec %s " % python))
    if os.environ.get("QGREY_COVERAGE"):  # .ci/coverage: measure the [data] runs too
        import qgrey_coverage_hook
        qgrey_coverage_hook.wrap_launcher(path)
    return path


@pytest.fixture(scope="session")
def data_launcher(tmp_path_factory):
    """The [data] entry, written as the README says."""
    return write_data_launcher(str(tmp_path_factory.mktemp("bin") / "qgrey-data"))


@pytest.fixture(scope="session")
def no_python_data_launcher(tmp_path_factory):
    """The [data] entry with an interpreter that does not exist: it can
    only stay silent and exit 0 if it never starts Python."""
    return write_data_launcher(str(tmp_path_factory.mktemp("bin") / "qgrey-data"),
                               python="/nonexistent/qgrey-test/python3")


@pytest.fixture
def smtpd(launcher, data_launcher, gl_dir):
    """smtpd(**env) -> a new connection, with the three entries listed as the
    README says (GL_STAGE=data unless overridden; mail_entry=False: without
    the [mail] line)."""
    def connect(data_plugin=None, **env):
        env.setdefault("GL_STAGE", "data")
        return Smtpd(launcher, data_plugin or data_launcher, gl_dir, **env)
    return connect


def make_known(smtpd, gl_dir, sender=ALICE, recipients=RECIPIENTS, **env):
    """Triplets that have passed greylisting (their retry came 400 s later)."""
    c = smtpd(**env)
    c.helo()
    assert c.send(sender, recipients)[-1] == "451 4.7.1 Greylisted, please try again later"
    age(gl_dir, 400)
    c = smtpd(**env)
    c.helo()
    assert c.send(sender, recipients)[-1] == "250 ok"


# --- the core scenario, on SQLite and on Redis ----------------------------------------

@pytest.fixture(params=["sqlite", "redis"])
def store(request, tmp_path, gl_dir):
    """-> (settings for the connection, age(seconds))."""
    if request.param == "sqlite":
        yield {}, lambda seconds: age(gl_dir, seconds)
        return
    server = RedisServer(tmp_path / "redis")

    def age_redis(seconds):
        for key in server.cli("KEYS", "qgrey:*"):
            first, last, passed, tries = map(int, server.cli("GET", key).split())
            shifted = [t - seconds if t else 0 for t in (first, last, passed)]
            server.cli("SET", key, "%d %d %d %d" % tuple(shifted + [tries]), "KEEPTTL")
    try:
        yield {"GL_STORE": "redis", "GL_REDIS": server.url}, age_redis
    finally:
        server.stop()


def test_a_new_sender_is_refused_once_at_data_and_its_retry_accepted_whole(smtpd, gl_dir, store):
    settings, age_store = store
    c = smtpd(**settings)
    c.helo()
    assert c.mail(ALICE) == "250 ok"
    for n, recipient in enumerate(RECIPIENTS, 1):
        assert c.rcpt(recipient) == "250 ok"  # never refused at RCPT
        assert c.out() == state(n, n, n, 0, "-", "new")  # exact bytes: the state, no header
        assert c.log() == ("greylist", "new", CLIENT, ALICE, recipient, "0", AT_DATA)
    assert c.data() == "451 4.7.1 Greylisted, please try again later"
    assert c.out() == GREYLISTED
    assert c.log() == ("message", "greylisted", CLIENT, ALICE, "dave@example.net", None,
                       "at DATA: 3 recipients recorded, 3 greylisted (new)")
    # DATA again in the same transaction: refused again, the state stays.
    assert c.data() == "451 4.7.1 Greylisted, please try again later"
    assert c.out() == GREYLISTED and c.env["QGREY_DATA"] == "3,3,3,0,-,new,mail"
    assert c.headers == [] and c.messages == []
    if not settings:
        assert len(stored(gl_dir)) == 3

    # The retry, after the delay, in a new connection: accepted whole, one header.
    age_store(400)
    c = smtpd(**settings)
    c.helo()
    assert c.send(ALICE, RECIPIENTS) == ["250 ok"] * 5
    for n, (stage, result) in enumerate(c.runs[:3], 1):
        assert stage == "rcpt"
        match = re.fullmatch(rb"SQGREY_DATA=%d,%d,0,(40[0-9]),delayed,-,%s\n"
                             % (n, n, b"mail"), result.stdout)
        assert match, result.stdout
        action, reason, _, _, recipient, waited, detail = c.log(n - 1)
        assert (action, reason, recipient, detail) == ("pass", "delayed", RECIPIENTS[n - 1], AT_DATA)
        assert 400 <= int(waited) <= 409
    out = c.out()
    assert out.startswith(UNSET) and delayed_header(400, 409).fullmatch(out[len(UNSET):]), out
    action, reason, _, _, recipient, waited, detail = c.log()
    assert (action, reason, recipient, detail) == ("message", "passed", "dave@example.net",
                                                   "at DATA: 3 recipients recorded")
    assert 400 <= int(waited) <= 409
    assert "QGREY_DATA" not in c.env
    [(headers, recipients)] = c.messages
    assert recipients == list(RECIPIENTS)
    assert len(headers) == 1 and headers[0].startswith("X-Greylist: delayed 40")
    assert not any(r in headers[0] for r in RECIPIENTS)

    # The next message of the connection (no RSET): known, one header of its own.
    assert c.send(ALICE, RECIPIENTS[:2]) == ["250 ok"] * 4
    assert re.fullmatch(rb"SQGREY_DATA=1,1,0,40[0-9],known,-,mail\n", c.out(-3))
    assert re.fullmatch(rb"SQGREY_DATA=2,2,0,40[0-9],known,-,mail\n", c.out(-2))
    out = c.out()
    assert out.startswith(UNSET) and header("passed (known sender)").fullmatch(out[len(UNSET):])
    assert [h for h, _ in c.messages][1] == [out[len(UNSET) + 1:-1].decode()]
    # The [mail] line ran at each MAIL, printing the same line, and started no Python.
    assert [r.stdout for r in c.mail_runs] == [OPENED] * 2
    # Never a header at RCPT.
    assert not any(b"\nH" in o or o.startswith(b"H") for o in c.outputs("rcpt"))


# --- transactions: nothing carried from one into the next -----------------------------

WITH_AND_WITHOUT_MAIL_ENTRY = pytest.mark.parametrize(
    "mail_entry", [True, False], ids=["mail-entry", "no-mail-entry"])


@WITH_AND_WITHOUT_MAIL_ENTRY
@pytest.mark.parametrize("between", ["rset", "mail", "helo", "abandoned", "abandoned-rset"])
@pytest.mark.parametrize("first_sender", [ALICE, "new@example.com"])
def test_a_known_message_right_after_a_refused_one_is_accepted(smtpd, gl_dir, between, first_sender,
                                                               mail_entry):
    """A refused transaction (DATA 451) or one abandoned after its RCPT, then
    RSET, a new MAIL without RSET, or HELO: the next transaction, fully
    known, is accepted with its own header alone. The [mail] line empties
    the state at the MAIL; without it, with the same sender, the state can
    only tell the transactions apart by the RCPT count."""
    make_known(smtpd, gl_dir)
    c = smtpd(mail_entry=mail_entry)
    c.helo()
    assert c.mail(first_sender) == "250 ok"
    assert c.rcpt("erin@example.net") == "250 ok"
    assert c.out() == state(1, 1, 1, 0, "-", "new", tag(c, first_sender).decode())
    if not between.startswith("abandoned"):
        assert c.data() == "451 4.7.1 Greylisted, please try again later"
    if between.endswith("rset"):
        assert c.rset() == "250 flushed"
    elif between == "helo":
        c.helo("mx2.example.org")
    assert c.env["QGREY_DATA"].startswith("1,1,1,")  # qmail-smtpd keeps it
    assert c.send(ALICE, RECIPIENTS[:2]) == ["250 ok"] * 4
    assert re.fullmatch(rb"SQGREY_DATA=1,1,0,40[0-9],known,-,%s\n" % tag(c), c.out(-3))
    assert re.fullmatch(rb"SQGREY_DATA=2,2,0,40[0-9],known,-,%s\n" % tag(c), c.out(-2))
    out = c.out()
    assert out.startswith(UNSET) and header("passed (known sender)").fullmatch(out[len(UNSET):]), out
    assert c.log()[:2] == ("message", "passed")
    [(headers, recipients)] = c.messages
    assert recipients == list(RECIPIENTS[:2]) and len(headers) == 1
    assert "QGREY_DATA" not in c.env


@WITH_AND_WITHOUT_MAIL_ENTRY
@pytest.mark.parametrize("previous", [1, 3])
def test_a_stale_state_is_cleared_by_a_recipient_qgrey_does_not_record(smtpd, gl_dir, previous,
                                                                       mail_entry):
    """The first RCPT of the next transaction goes to a foreign domain (553):
    qgrey records nothing for it. The [mail] line has emptied the state
    already; without it, qgrey clears the earlier transaction's state (U).
    The known recipient after it starts a state of its own."""
    make_known(smtpd, gl_dir)
    c = smtpd(mail_entry=mail_entry)
    c.helo()
    c.mail(ALICE)
    for n in range(previous):
        assert c.rcpt("new%d@example.net" % n) == "250 ok"
    assert c.data().startswith("451 ")
    c.rset()
    c.mail(ALICE)
    assert c.rcpt("x@elsewhere.invalid").startswith("553 ")
    assert c.log()[:2] == ("skip", "rcpthosts")
    if mail_entry:
        assert c.out() == b"" and c.env["QGREY_DATA"] == ""
    else:
        assert c.out() == UNSET and "QGREY_DATA" not in c.env
    assert c.rcpt("bob@example.net") == "250 ok"
    assert re.fullmatch(rb"SQGREY_DATA=2,1,0,40[0-9],known,-,%s\n" % tag(c), c.out())
    assert c.data() == "250 ok"
    assert header("passed (known sender)").fullmatch(c.out()[len(UNSET):])


def test_one_new_recipient_holds_the_whole_message(smtpd, gl_dir):
    """Known and new recipients together: the message is refused once; its
    retry passes all of them with one header telling the delay."""
    make_known(smtpd, gl_dir, recipients=("bob@example.net",))
    c = smtpd()
    c.helo()
    assert c.send(ALICE, ["bob@example.net", "x@elsewhere.invalid", "carol@example.net"]) == [
        "250 ok", "250 ok", "553 sorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)",
        "250 ok", "451 4.7.1 Greylisted, please try again later"]
    assert re.fullmatch(rb"SQGREY_DATA=3,2,1,40[0-9],known,new,mail\n", c.out(-2))
    assert c.log()[6] == "at DATA: 2 recipients recorded, 1 greylisted (new)"
    assert c.out(-3) == b""  # rcpthosts: not recorded, state untouched
    age(gl_dir, 500)
    c = smtpd()
    c.helo()
    assert c.send(ALICE, ["bob@example.net", "carol@example.net"]) == ["250 ok"] * 4
    assert delayed_header(500, 509).fullmatch(c.out()[len(UNSET):]), c.out()


def test_which_state_the_data_run_uses(data_launcher, no_python_data_launcher, gl_dir):
    """The [data] run alone. A state in a transaction the [mail] line opened
    is this transaction's whatever the counts and SMTPMAILFROM say (after a
    MAIL refused by a plugin both are the refused MAIL's). Without the [mail]
    line, a state of another transaction is cleared."""
    env = dict(SPP_ENV, GL_DIR=gl_dir, GL_STAGE="data", SMTPRCPTCOUNTALL="2")
    for value in ("2,2,1,0,-,new,mail", "3,3,3,0,-,new,mail",
                  "1,1,1,0,-,new," + mark(ALICE), "2,2,1,0,-,new," + mark(ALICE)):
        for sender in (ALICE, "refused@example.com"):
            result = spp(data_launcher, dict(env, QGREY_DATA=value, SMTPMAILFROM=sender))
            check_run(result)
            if value.endswith(",mail") or sender == ALICE:
                assert result.stdout == GREYLISTED, (value, sender)
                assert LOG.fullmatch(result.stderr).group(1, 2) == (b"message", b"greylisted")
            else:
                assert result.stdout == UNSET, (value, sender)
                assert LOG.fullmatch(result.stderr).group(2) == b"stale"
    for value in ("3,3,3,0,-,new," + mark(ALICE),          # written later than this RCPT count
                  "1,1,1,0,-,new," + mark(ALICE)[:7],     # not one qgrey wrote
                  "1,1,1,0,-,new,Mail", "1,1,1,0,-,new,mail,", "garbage", " "):
        result = spp(data_launcher, dict(env, QGREY_DATA=value))
        check_run(result)
        assert result.stdout == UNSET, value
        assert LOG.fullmatch(result.stderr).group(2) == b"stale"
    # Emptied at MAIL and nothing recorded since, or never set: no Python.
    for value in ("", None):
        result = spp(no_python_data_launcher, dict(env, **({} if value is None else {"QGREY_DATA": value})))
        assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")
    # A [data] launcher written before the [mail] line existed starts Python
    # for an empty state: it answers nothing.
    result = spp([sys.executable, "-IS", "-c", "import sys; sys.path.insert(0, %r); "
                  "from qgrey.plugin import main; main('data')" % os.path.dirname(PACKAGE)],
                 dict(env, QGREY_DATA=""))
    check_run(result)
    assert result.stdout == b"" and LOG.fullmatch(result.stderr).group(1, 2) == (b"skip", b"no-state")


def test_the_mail_entry_as_qmail_spp_runs_it(gl_dir):
    """The line ':echo SQGREY_DATA=' (qmail-spp runs it with /bin/sh -c, no
    stdin, cwd elsewhere): one line, whatever the environment, no Python."""
    assert MAIL_ENTRY == ":echo SQGREY_DATA="
    for value in (None, "", "1,1,1,0,-,new,mail", "garbage\nN"):
        env = dict(SPP_ENV, GL_DIR=gl_dir, GL_STAGE="data")
        if value is not None:
            env["QGREY_DATA"] = value
        result = spp(MAIL_COMMAND, env)
        assert (result.returncode, result.stdout, result.stderr) == (0, OPENED, b""), value
    # With an empty environment too: no PATH is needed, echo is the shell's own.
    result = spp(MAIL_COMMAND, {})
    assert (result.returncode, result.stdout, result.stderr) == (0, OPENED, b"")


def test_examples_smtpplugins_lists_the_entries_in_order():
    """examples/smtpplugins, with its GL_STAGE=data lines uncommented, lists
    the [mail] line last under [mail], qgrey last under [rcpt] and
    qgrey-data last under [data]."""
    with open(os.path.join(REPO, "examples", "smtpplugins")) as f:
        text = f.read()
    sections, current = {}, None
    for line in text.splitlines():
        line = line[1:] if line.startswith("#[") or line.startswith("#/") or line.startswith("#:") else line
        if line.startswith("#") or not line.strip():
            continue
        if line.startswith("["):
            current = sections.setdefault(line[1], [])
        else:
            current.append(line)
    assert sections["m"][-1] == MAIL_ENTRY, sections
    assert sections["r"][-1] == "/opt/qgrey/bin/qgrey", sections
    assert sections["d"][-1] == "/opt/qgrey/bin/qgrey-data", sections


def test_the_docs_and_the_man_page_list_the_three_entries():
    with open(os.path.join(REPO, "docs", "data-stage.md")) as f:
        section = f.read()
    assert ("```\n[mail]\n%s\n[rcpt]\n/opt/qgrey/bin/qgrey\n[data]\n/opt/qgrey/bin/qgrey-data\n```\n"
            % MAIL_ENTRY) in section
    assert NO_MAIL_ENTRY.startswith("GL_STAGE=data without the [mail] entry: ")
    assert "`qgrey: warning: GL_STAGE=data without the [mail] entry: ...`" in section
    with open(os.path.join(REPO, "man", "qgrey.8")) as f:
        man = f.read()
    assert man.count("\n.B %s\n" % MAIL_ENTRY) == 2


@pytest.fixture(scope="session")
def check_recipient(tmp_path_factory):
    """A recipient check of the site's own, listed before qgrey under [rcpt]
    as examples/smtpplugins advises: unknown@ refused for good, postmaster@
    accepted at once (N: no later plugin runs for it)."""
    path = str(tmp_path_factory.mktemp("bin") / "check-recipient")
    with open(path, "w") as f:
        f.write('#!/bin/sh\ncase "$SMTPRCPTTO" in\n'
                '  unknown@*) echo "E550 sorry, no mailbox here by that name (#5.1.1)" ;;\n'
                '  postmaster@*) echo N ;;\nesac\n')
    os.chmod(path, 0o755)
    return path


class CarriedOver(AssertionError):
    """The limit below, observed: the earlier transaction's state counted."""


@pytest.mark.parametrize("mail_entry", [True, pytest.param(False, marks=pytest.mark.xfail(
    strict=True, raises=CarriedOver, reason=(
        "without the [mail] line the state names its transaction by SMTPRCPTCOUNTALL and the "
        "sender: when the next transaction's first RCPT never reaches qgrey (refused or accepted "
        "by a plugin listed before it), the earlier transaction's state counts as this one's and "
        "its greylisted recipient refuses a fully known message at DATA")))],
    ids=["mail-entry", "no-mail-entry"])
@pytest.mark.parametrize("first", ["unknown@example.net", "postmaster@example.net"])
def test_a_recipient_decided_before_qgrey_carries_nothing_over(smtpd, check_recipient, gl_dir, first,
                                                               mail_entry):
    make_known(smtpd, gl_dir, recipients=("bob@example.net",))
    c = smtpd(before=[check_recipient], mail_entry=mail_entry)
    c.helo()
    assert c.send(ALICE, ["new@example.net"])[-1] == "451 4.7.1 Greylisted, please try again later"
    assert c.rset() == "250 flushed"
    assert c.mail(ALICE) == "250 ok"
    assert c.rcpt(first) == ("550 sorry, no mailbox here by that name (#5.1.1)"
                             if first.startswith("unknown") else "250 ok")
    assert c.rcpt("bob@example.net") == "250 ok"
    assert c.log()[:2] == ("pass", "known")
    state = c.out()
    if not mail_entry and re.fullmatch(rb"SQGREY_DATA=2,2,1,40[0-9],known,new,%s\n" % tag(c), state):
        raise CarriedOver(state)  # the one failure expected here, and only it
    assert re.fullmatch(rb"SQGREY_DATA=2,1,0,40[0-9],known,-,%s\n" % tag(c), state)
    assert c.data() == "250 ok", c.log()
    assert header("passed (known sender)").fullmatch(c.out()[len(UNSET):])
    assert c.messages == [([c.out()[len(UNSET) + 1:-1].decode()], [first, "bob@example.net"][
        first.startswith("unknown"):])]


@pytest.fixture(scope="session")
def check_sender(tmp_path_factory):
    """A sender check of the site's own under [mail], listed before qgrey's
    line: refused@ refused, trusted@ accepted at once (N)."""
    path = str(tmp_path_factory.mktemp("bin") / "check-sender")
    with open(path, "w") as f:
        f.write('#!/bin/sh\ncase "$SMTPMAILFROM" in\n'
                '  refused@*) echo "E553 sorry, your envelope sender is refused (#5.7.1)" ;;\n'
                '  trusted@*) echo N ;;\nesac\n')
    os.chmod(path, 0o755)
    return path


def test_a_mail_refused_by_a_plugin_leaves_the_transaction_going(smtpd, check_sender, gl_dir):
    """qmail-smtpd keeps the open transaction when a [mail] plugin refuses a
    new MAIL, but qmail-spp has set SMTPMAILFROM to the refused address and
    counts RCPTs from 0 again: its greylisted recipient still holds the
    message, however the client goes on."""
    make_known(smtpd, gl_dir, recipients=("bob@example.net",))
    c = smtpd(before_mail=[check_sender])
    c.helo()
    assert c.mail(ALICE) == "250 ok"
    assert c.rcpt("new@example.net") == "250 ok"
    assert c.mail("refused@example.com") == "553 sorry, your envelope sender is refused (#5.7.1)"
    assert len(c.mail_runs) == 1  # the [mail] line, listed after the check, did not run
    assert c.data() == "451 4.7.1 Greylisted, please try again later"
    assert c.log()[6] == "at DATA: 1 recipient recorded, 1 greylisted (new)"
    assert c.mail("refused@example.com").startswith("553 ")
    assert c.rcpt("carol@example.net") == "250 ok"  # recorded under the refused sender: new too
    assert c.out() == state(1, 2, 2, 0, "-", "new")
    assert c.data() == "451 4.7.1 Greylisted, please try again later"
    assert c.messages == []
    # A MAIL the [mail] line sees opens a new transaction.
    assert c.send(ALICE, ["bob@example.net"]) == ["250 ok"] * 3
    assert len(c.messages) == 1


def test_without_the_mail_entry_qgrey_warns(smtpd, gl_dir):
    """GL_STAGE=data without the [mail] line works as well as the RCPT count
    and the sender mark allow, and each recorded RCPT says what is missing."""
    c = smtpd(mail_entry=False)
    c.helo()
    assert c.send(ALICE, ["bob@example.net", "x@elsewhere.invalid"])[-1].startswith("451 ")
    first, foreign, at_data = (r.stderr for _, r in c.runs)
    assert first.startswith(WARNING + DATA_WARNING)  # a new GL_DIR: no [data] run yet
    assert LOG.fullmatch(first[len(WARNING + DATA_WARNING):])
    assert NO_MAIL_ENTRY == ("GL_STAGE=data without the [mail] entry: list the line "
                             "':echo SQGREY_DATA=' last under [mail] in control/smtpplugins")
    assert b"warning" not in foreign + at_data
    c = smtpd()
    c.helo()
    assert c.send(ALICE, ["bob@example.net"])[-1].startswith("451 ")
    assert not any(b"warning" in r.stderr for _, r in c.runs)


# --- internal errors ------------------------------------------------------------------------

@pytest.fixture(scope="session")
def broken(tmp_path_factory):
    """Launchers of a copy of qgrey whose settings module cannot be imported:
    every decision that reads settings fails inside (reason=internal)."""
    from qgrey import launcher
    top = tmp_path_factory.mktemp("broken")
    shutil.copytree(PACKAGE, str(top / "qgrey"),
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (top / "qgrey" / "settings.py").write_text('raise RuntimeError("broken for a test")\n')
    paths = {}
    for stage in ("rcpt", "data"):
        path = top / ("qgrey-" + stage)
        path.write_text(launcher.launcher_text(stage=stage, package_parent=str(top)))
        path.chmod(0o755)
        if os.environ.get("QGREY_COVERAGE"):  # .ci/coverage: the error path is measured too
            import qgrey_coverage_hook
            qgrey_coverage_hook.wrap_launcher(str(path))
        paths[stage] = str(path)
    return paths


@WITH_AND_WITHOUT_MAIL_ENTRY
def test_an_internal_error_at_the_first_rcpt_leaves_no_stale_state(smtpd, broken, launcher, gl_dir,
                                                                  mail_entry):
    """The first RCPT of the next transaction fails inside qgrey (accepted,
    as every internal error): the earlier transaction's state must not
    survive it to be taken for this transaction's at the next RCPT."""
    make_known(smtpd, gl_dir, recipients=("bob@example.net",))
    c = smtpd(mail_entry=mail_entry)
    c.helo()
    assert c.send(ALICE, ["new@example.net"])[-1].startswith("451 ")
    assert c.mail(ALICE) == "250 ok"
    c.plugins["rcpt"] = broken["rcpt"]
    assert c.rcpt("carol@example.net") == "250 ok"
    assert re.fullmatch(rb"qgrey: action=error reason=internal detail=RuntimeError\('broken for a test'\)\n",
                        c.runs[-1][1].stderr)
    if mail_entry:
        assert c.out() == b"" and c.env["QGREY_DATA"] == ""
    else:
        assert c.out() == UNSET and "QGREY_DATA" not in c.env
    c.plugins["rcpt"] = launcher
    assert c.rcpt("bob@example.net") == "250 ok"
    assert re.fullmatch(rb"SQGREY_DATA=2,1,0,40[0-9],known,-,%s\n" % tag(c), c.out())
    assert c.data() == "250 ok"
    assert header("passed (known sender)").fullmatch(c.out()[len(UNSET):])


def test_an_internal_error_at_data_accepts_and_clears(smtpd, broken, gl_dir):
    c = smtpd()
    c.helo()
    assert c.send(ALICE, ["new@example.net"])[-1].startswith("451 ")
    c.plugins["data"] = broken["data"]
    assert c.data() == "250 ok"  # every internal error accepts
    assert c.out() == UNSET and "QGREY_DATA" not in c.env
    assert c.runs[-1][1].stderr.startswith(b"qgrey: action=error reason=internal ")
    assert c.messages == [([], ["new@example.net"])]


# --- greytraps --------------------------------------------------------------------------

def test_a_greytrap_is_refused_at_rcpt(smtpd, gl_dir):
    write(gl_dir, "greytraps", "trap@example.net\n")
    c = smtpd()
    c.helo()
    c.mail(ALICE)
    assert c.rcpt("bob@example.net") == "250 ok"
    assert c.out() == state(1, 1, 1, 0, "-", "new")
    assert c.rcpt("Trap@example.net") == "451 4.7.1 Greylisted, please try again later"
    assert c.out() == GREYLISTED
    action, reason, _, _, recipient, _, detail = c.log()
    assert (action, reason, recipient, detail) == ("greylist", "greytrap", "Trap@example.net", None)
    # The client is trapped now: every later recipient is refused at RCPT.
    assert c.rcpt("carol@example.net") == "451 4.7.1 Greylisted, please try again later"
    assert c.out() == GREYLISTED and c.log()[:2] == ("greylist", "trapped")
    assert c.env["QGREY_DATA"] == "1,1,1,0,-,new,mail"
    assert c.data() == "451 4.7.1 Greylisted, please try again later"
    assert c.log()[6] == "at DATA: 1 recipient recorded, 1 greylisted (new)"
    # A message to the trap alone has no recipient: qmail-smtpd answers DATA itself.
    c = smtpd(remote_ip="203.0.113.9")
    c.helo()
    assert c.send("x@example.com", ["trap@example.net"]) == [
        "250 ok", "451 4.7.1 Greylisted, please try again later", "503 RCPT first (#5.5.1)"]
    assert [s for s, _ in c.runs] == ["rcpt"]


# --- relay clients, authenticated users, GL_WHITELISTED: no Python at DATA ------------

def test_the_data_launcher_starts_python_only_for_a_state(no_python_data_launcher, gl_dir):
    env = dict(SPP_ENV, GL_DIR=gl_dir, GL_STAGE="data")
    result = spp(no_python_data_launcher, env)
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")
    # The premise: with a state set, the same script does try that interpreter.
    result = spp(no_python_data_launcher, dict(env, QGREY_DATA="1,1,1,0,-,new," + mark(ALICE)))
    assert result.returncode != 0 and b"/nonexistent/qgrey-test/python3" in result.stderr
    # Emptied by the [mail] line, nothing recorded since: no Python either.
    result = spp(no_python_data_launcher, dict(env, QGREY_DATA=""))
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")


@pytest.mark.parametrize("env", [{"RELAYCLIENT": ""}, {"GL_WHITELISTED": "1"},
                                 {"RELAYCLIENT": "", "SMTPAUTHUSER": "me"}])
def test_not_ours_no_python_at_data(smtpd, no_python_data_launcher, gl_dir, env):
    c = smtpd(data_plugin=no_python_data_launcher, **env)
    c.helo()
    replies = c.send("me@example.net", ["friend@example.com", "bob@example.net"])
    if "RELAYCLIENT" in env:
        assert replies == ["250 ok"] * 4
    else:
        assert replies == ["250 ok", "553 sorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)",
                           "250 ok", "250 ok"]
    assert c.outputs("rcpt") == [b"", b""] and c.outputs("data") == [b""]
    assert c.runs[-1][1].stderr == b""  # the shell alone: no log line, no Python
    reason = "whitelisted" if "GL_WHITELISTED" in env else "relayclient"
    assert [c.log(i)[:2] for i in (0, 1)] == [("skip", reason)] * 2
    [(headers, _)] = c.messages
    assert headers == []


@WITH_AND_WITHOUT_MAIL_ENTRY
@pytest.mark.parametrize("env, reason", [({"RELAYCLIENT": ""}, "relayclient"),
                                         ({"GL_WHITELISTED": "1"}, "whitelisted"),
                                         ({"SMTPAUTHUSER": "me"}, "authenticated")])
def test_not_ours_with_a_stale_state_unsets_it(smtpd, data_launcher, no_python_data_launcher,
                                               gl_dir, env, reason, mail_entry):
    """A state left by an earlier transaction (say before AUTH): the [mail]
    line empties it, or else the RCPT clears it, so DATA starts no Python; a
    [data] run that finds one clears it."""
    c = smtpd(mail_entry=mail_entry)
    c.helo()
    assert c.send("new@example.com", ["bob@example.net"])[-1].startswith("451 ")
    c.plugins["data"] = no_python_data_launcher
    c.env.update(env)
    if reason == "authenticated":
        c.env["RELAYCLIENT"] = ""  # auth-patched builds set it after AUTH
    assert c.send("me@example.net", ["bob@example.net"]) == ["250 ok"] * 3
    assert c.outputs("rcpt")[-1] == (b"" if mail_entry else UNSET)
    assert c.log(-2)[:2] == ("skip", "relayclient" if reason == "authenticated" else reason)
    assert c.out() == b"" and c.runs[-1][1].stderr == b""
    assert c.messages == [([], ["bob@example.net"])]
    # The [data] run itself, should it meet a state.
    result = spp(data_launcher, dict(SPP_ENV, GL_DIR=gl_dir, GL_STAGE="data",
                                     QGREY_DATA="1,1,1,0,-,new," + mark(ALICE), **env))
    check_run(result)
    assert result.stdout == UNSET
    assert LOG.fullmatch(result.stderr).group(2) == reason.encode()


def test_gl_stage_rcpt_is_unchanged(smtpd, no_python_data_launcher, gl_dir):
    """GL_STAGE=rcpt with the [data] entry listed too: refused at RCPT, no state."""
    c = smtpd(data_plugin=no_python_data_launcher, GL_STAGE="rcpt")
    c.helo()
    assert c.send(ALICE, ["bob@example.net"]) == [
        "250 ok", "451 4.7.1 Greylisted, please try again later", "503 RCPT first (#5.5.1)"]
    assert c.out() == GREYLISTED and c.env["QGREY_DATA"] == ""  # emptied at MAIL, nothing recorded


# --- the rules, at GL_STAGE=data ----------------------------------------------------------

def test_learning_mode(smtpd, gl_dir):
    c = smtpd(GL_LEARN="1")
    c.helo()
    assert c.send(ALICE, RECIPIENTS[:2]) == ["250 ok"] * 4
    assert c.out(0) == state(1, 1, 0, 0, "learning", "-")
    assert c.out(1) == state(2, 2, 0, 0, "learning", "-")
    assert c.log(0) == ("pass", "learning", CLIENT, ALICE, "bob@example.net", "0",
                        "would greylist: new; " + AT_DATA)
    assert c.out().startswith(UNSET)
    assert header("passed (learning mode)").fullmatch(c.out()[len(UNSET):])
    assert len(c.messages[0][0]) == 1
    # Switched off: what it learnt passes.
    c = smtpd()
    c.helo()
    assert c.send(ALICE, RECIPIENTS[:2]) == ["250 ok"] * 4
    assert header("passed (known sender)").fullmatch(c.out()[len(UNSET):])


def test_auto_whitelisted_client(smtpd, gl_dir):
    make_known(smtpd, gl_dir, recipients=("bob@example.net",), GL_AWL_COUNT="1")
    c = smtpd(GL_AWL_COUNT="1")  # the same address: GL_AWL_UNIT=address
    c.helo()
    assert c.send("someone@elsewhere.example", ["carol@example.net"]) == ["250 ok"] * 3
    assert c.out(0) == state(1, 1, 0, 0, "auto-whitelist", "-")
    assert header("passed (auto-whitelisted client)").fullmatch(c.out()[len(UNSET):])


def test_reply_to_a_local_sender(smtpd, gl_dir):
    c = smtpd(RELAYCLIENT="", remote_ip="192.0.2.10")
    c.helo()
    assert c.send("me@example.net", ["Friend@remote.example"]) == ["250 ok"] * 3
    assert c.outputs("rcpt") == [b""] and "reply friend@remote.example>me@example.net" in stored(gl_dir)
    c = smtpd(remote_ip="203.0.113.5")
    c.helo()
    assert c.send("friend@remote.example", ["me@example.net"]) == ["250 ok"] * 3
    assert c.out(0) == state(1, 1, 0, 0, "reply", "-")
    assert header("passed (reply to a local sender)").fullmatch(c.out()[len(UNSET):])
    # Not for another local address in the same message: the whole message waits.
    c = smtpd(remote_ip="203.0.113.5")
    c.helo()
    assert c.send("friend@remote.example", ["me@example.net", "other@example.net"])[-1] == \
        "451 4.7.1 Greylisted, please try again later"


def test_bounce_with_the_null_sender(smtpd, gl_dir):
    c = smtpd()
    c.helo()
    assert c.send("", ["bob@example.net"]) == ["250 ok", "250 ok",
                                               "451 4.7.1 Greylisted, please try again later"]
    assert c.out(0) == state(1, 1, 1, 0, "-", "new")
    c = smtpd(mail_entry=False)
    c.helo()
    assert c.send("", ["bob@example.net"])[-1].startswith("451 ")
    assert c.out(0) == state(1, 1, 1, 0, "-", "early", mark("")) and mark("") == "811c9dc5"
    assert c.log(0)[3] == "<>"
    assert "198.51.100.0/24 <> bob@example.net" in stored(gl_dir)
    age(gl_dir, 400)
    c = smtpd()
    c.helo()
    assert c.send("", ["bob@example.net"]) == ["250 ok"] * 3
    assert delayed_header(400, 409).fullmatch(c.out()[len(UNSET):])
    # A bounce right after another sender's refused message in the same connection.
    c = smtpd()
    c.helo()
    assert c.send("new@example.com", ["bob@example.net"])[-1].startswith("451 ")
    assert c.send("", ["bob@example.net"]) == ["250 ok"] * 3


def test_privacy(smtpd, gl_dir):
    c = smtpd(GL_PRIVACY="1")
    c.helo()
    assert c.send(ALICE, RECIPIENTS)[-1] == "451 4.7.1 Greylisted, please try again later"
    keys = list(stored(gl_dir))
    assert len(keys) == 3 and not any("example" in k or "198.51" in k for k in keys)
    age(gl_dir, 400)
    c = smtpd(GL_PRIVACY="1")
    c.helo()
    assert c.send(ALICE, RECIPIENTS) == ["250 ok"] * 5
    assert delayed_header(400, 409).fullmatch(c.out()[len(UNSET):])
    assert os.path.exists(os.path.join(gl_dir, "salt"))


def test_whitelisted_recipient_alone_needs_no_python_at_data(smtpd, no_python_data_launcher, gl_dir):
    write(gl_dir, "whitelist-recipients", "postmaster@\n")
    c = smtpd(data_plugin=no_python_data_launcher)
    c.helo()
    assert c.send("new@example.com", ["postmaster@example.net"]) == ["250 ok"] * 3
    assert c.outputs("rcpt") == [b""] and c.log(0)[:2] == ("skip", "whitelist-recipient")
    assert c.runs[-1][1].stderr == b"" and c.messages == [([], ["postmaster@example.net"])]
    # With a new recipient beside it, the message is held.
    c = smtpd()
    c.helo()
    assert c.send("new@example.com", ["postmaster@example.net", "bob@example.net"])[-1] == \
        "451 4.7.1 Greylisted, please try again later"
    assert c.out(1) == state(2, 1, 1, 0, "-", "new")


@WITH_AND_WITHOUT_MAIL_ENTRY
def test_envelope_text_never_reaches_stdout(smtpd, gl_dir, mail_entry):
    c = smtpd(mail_entry=mail_entry)
    c.helo()
    for sender in ("a\nO@x", "b\nSQGREY_DATA=1,1,0,0,known,-,00000000@x", "c,1,1@x\nA"):
        replies = c.send(sender, ["bob@example.net", "d\nO@example.net"])
        assert replies[-1] == "451 4.7.1 Greylisted, please try again later"
        assert c.out(-3).endswith(b",%s\n" % tag(c, sender))


# --- the [data] entry missing, and states qgrey did not write ----------------------------

def test_without_the_data_entry_every_recorded_rcpt_warns(smtpd, gl_dir):
    """[mail] and [rcpt] listed, no [data] entry (played by /bin/true: a
    [data] section with nothing of qgrey's): the new triplet is logged
    greylisted and the message accepted, so every recorded RCPT warns, in
    every transaction and connection, naming the missing entry. Once a
    [data] run has happened in GL_DIR, no more warnings."""
    assert NO_DATA_ENTRY == (
        "GL_STAGE=data without the [data] entry (no [data] run has created GL_DIR/data-stage "
        "yet): list the entry written by python3 -m qgrey.launcher --data last under [data] in "
        "control/smtpplugins, or greylisted messages are accepted")
    for connection, (first, second, third) in enumerate((("bob", "carol", "dave"),
                                                         ("bill", "cora", "dan")), 1):
        c = smtpd(data_plugin="/bin/true")
        c.helo()
        assert c.send(ALICE, [first + "@example.net", "x@elsewhere.invalid",
                              second + "@example.net"]) == [
            "250 ok", "250 ok", "553 sorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)",
            "250 ok", "250 ok"]
        assert c.send(ALICE, [third + "@example.net"]) == ["250 ok"] * 3
        one, foreign, two, accepted, three, accepted_too = (r for _, r in c.runs)
        for result, recipient in ((one, first), (two, second), (three, third)):
            assert result.stderr.startswith(DATA_WARNING), result.stderr
            assert LOG.fullmatch(result.stderr[len(DATA_WARNING):]).group(1, 2, 5) == (
                b"greylist", b"new", b"%s@example.net" % recipient.encode())
        assert foreign.stderr.startswith(b"qgrey: action=skip reason=rcpthosts ")
        assert accepted.stdout == accepted_too.stdout == b""
        assert len(c.messages) == 2, connection
    assert not os.path.exists(os.path.join(gl_dir, "data-stage"))
    # The [data] entry listed: its first run marks GL_DIR.
    c = smtpd()
    c.helo()
    assert c.send(ALICE, ["erin@example.net"])[-1] == "451 4.7.1 Greylisted, please try again later"
    assert c.runs[0][1].stderr.startswith(DATA_WARNING)  # before the first [data] run
    st = os.lstat(os.path.join(gl_dir, "data-stage"))
    assert (st.st_mode & 0o7777, st.st_size, st.st_uid) == (0o600, 0, os.geteuid())
    assert c.send(ALICE, ["frank@example.net"])[-1] == "451 4.7.1 Greylisted, please try again later"
    assert not any(b"warning" in r.stderr for _, r in c.runs[2:])


def test_the_data_mark_is_never_followed(data_launcher, gl_dir, tmp_path):
    """A link at GL_DIR/data-stage is left as it is: nothing is created
    through it."""
    target = str(tmp_path / "target")
    os.symlink(target, os.path.join(gl_dir, "data-stage"))
    env = dict(SPP_ENV, GL_DIR=gl_dir, GL_STAGE="data", QGREY_DATA="1,1,1,0,-,new,mail")
    result = spp(data_launcher, env)
    check_run(result)
    assert result.stdout == GREYLISTED
    assert not os.path.lexists(target) and os.readlink(os.path.join(gl_dir, "data-stage")) == target


@pytest.mark.parametrize("value", [
    "1,1,0,0,known\nAHIJACK,-,mail", "1,1,0,0,known,-\nO,mail", "1,1,1,0,-,new\nN,mail",
    "1,1,0,0,Known,-,mail", "1,1,0,0,known ,-,mail", "1,1,1,0,-,greytrap,mail",
    "1,1,1,0,-,known,mail", "1,1,0,0,new,-,mail", "1,1,0,0,,-,mail", "1,1,0,0,passed,-,mail",
    "1,1,0,0,kn\x7fown,-,mail", "1,1,1,0,-,new,mail\nA", "1,1,0,0,known,-,mail\n"])
def test_a_state_with_text_qgrey_does_not_write_is_cleared(launcher, data_launcher, gl_dir, value):
    """QGREY_DATA's text fields hold only the reasons qgrey writes (passed:
    known, delayed, auto-whitelist, reply, learning; greylisted: new,
    expired, early, punished; or -). Any other state is not qgrey's: at a
    RCPT a new one is started, at DATA it is cleared; nothing
    of it is printed: at a RCPT the new state replaces it (S), at DATA
    it is cleared (U)."""
    open(os.path.join(gl_dir, "data-stage"), "w").close()
    env = dict(SPP_ENV, GL_DIR=gl_dir, GL_STAGE="data", QGREY_DATA=value, SMTPRCPTCOUNTALL="2",
               SMTPRCPTCOUNT="1", SMTPRCPTTO="carol@example.net")
    result = spp(launcher, env)
    check_run(result)
    assert result.stdout == b"SQGREY_DATA=2,1,1,0,-,new,%s\n" % mark(ALICE).encode()
    assert result.stderr.startswith(WARNING)  # no [mail] entry opened the new state
    result = spp(data_launcher, env)
    check_run(result)
    assert result.stdout == b"UQGREY_DATA\n"
    assert LOG.fullmatch(result.stderr).group(1, 2, 7) == (
        b"skip", b"stale", b"a state of another transaction; cleared")
    result = spp(launcher, dict(env, GL_STAGE="rcpt", SMTPRCPTTO="dave@example.net"))
    check_run(result)
    assert result.stdout == b"UQGREY_DATA\n" + GREYLISTED


def test_every_reason_qgrey_writes_is_read_back(data_launcher, gl_dir):
    open(os.path.join(gl_dir, "data-stage"), "w").close()
    env = dict(SPP_ENV, GL_DIR=gl_dir, GL_STAGE="data", SMTPRCPTCOUNTALL="2")
    for refused in ("new", "expired", "early", "punished"):
        result = spp(data_launcher, dict(env, QGREY_DATA="2,2,1,0,-,%s,mail" % refused))
        check_run(result)
        assert result.stdout == GREYLISTED, refused
        assert result.stderr.endswith(b" greylisted (%s)\n" % refused.encode())
    for reason, what in (("known", "passed (known sender)"), ("learning", "passed (learning mode)"),
                         ("auto-whitelist", "passed (auto-whitelisted client)"),
                         ("reply", "passed (reply to a local sender)")):
        result = spp(data_launcher, dict(env, QGREY_DATA="2,2,0,0,%s,-,mail" % reason))
        check_run(result)
        assert result.stdout.startswith(UNSET), reason
        assert header(what).fullmatch(result.stdout[len(UNSET):]), result.stdout
    result = spp(data_launcher, dict(env, QGREY_DATA="2,2,0,42,delayed,-,mail"))
    check_run(result)
    assert delayed_header(42, 42).fullmatch(result.stdout[len(UNSET):]), result.stdout
