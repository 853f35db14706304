"""The [data] run at GL_STAGE=data (qgrey(8), GL_STAGE), run as qmail-spp
runs the entry python3 -m qgrey.launcher --data writes, one case at a time
with a state written out: what it prints, its one log line, and the
GL_DIR/data-stage mark. And the reply after an internal error where a
state is set (qgrey.datastage.after_internal_error)."""
import os
import re
import stat
import subprocess
import sys
from types import SimpleNamespace

import pytest

from conftest import SPP_ENV, read_only, spp
from qgrey import VERSION
from qgrey.datastage import after_internal_error

GREYLISTED = b"E451 4.7.1 Greylisted, please try again later\n"
UNSET = b"UQGREY_DATA\n"
WHO = b"client=198.51.100.7 sender=alice@example.org recipient=bob@example.net"
DATE = rb"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d \+0000"
# FNV-1a (32 bits) of "alice@example.org", the sender of SPP_ENV.
ALICE_MARK = "818ec9d1"


@pytest.fixture(scope="module")
def data_launcher(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("bin") / "qgrey-data")
    subprocess.run([sys.executable, "-m", "qgrey.launcher", "--data", path], check=True, cwd="/",
                   stdout=subprocess.DEVNULL)
    if os.environ.get("QGREY_COVERAGE"):  # .ci/coverage: measure the [data] runs too
        import qgrey_coverage_hook
        qgrey_coverage_hook.wrap_launcher(path)
    return path


def at_data(data_launcher, gl_dir, state, **env):
    result = spp(data_launcher, dict(SPP_ENV, GL_DIR=gl_dir, GL_STAGE="data", QGREY_DATA=state,
                                     **env))
    assert result.returncode == 0, result
    return result


def mark_file(gl_dir):
    """The data-stage mark: an empty regular file of mode 0600."""
    st = os.lstat(os.path.join(gl_dir, "data-stage"))
    return stat.S_ISREG(st.st_mode), stat.S_IMODE(st.st_mode), st.st_size


def test_the_sender_mark_is_fnv_1a():
    # Written out from the FNV-1a definition (offset basis 0x811c9dc5, prime 0x01000193).
    value = 0x811C9DC5
    for byte in b"alice@example.org":
        value = ((value ^ byte) * 0x01000193) & 0xFFFFFFFF
    assert "%08x" % value == ALICE_MARK


def test_a_greylisted_recipient_refuses_the_message_and_marks_gl_dir(data_launcher, gl_dir):
    assert os.listdir(gl_dir) == []
    result = at_data(data_launcher, gl_dir, "1,1,1,0,-,new,mail")
    assert result.stdout == GREYLISTED
    assert result.stderr == (b"qgrey: action=message reason=greylisted " + WHO
                             + b" detail=at DATA: 1 recipient recorded, 1 greylisted (new)\n")
    assert mark_file(gl_dir) == (True, 0o600, 0)
    # Again in the same transaction (the state stays): refused again, the mark as it was.
    result = at_data(data_launcher, gl_dir, "3,3,2,0,-,early,mail")
    assert result.stdout == GREYLISTED
    assert result.stderr == (b"qgrey: action=message reason=greylisted " + WHO
                             + b" detail=at DATA: 3 recipients recorded, 2 greylisted (early)\n")
    assert os.listdir(gl_dir) == ["data-stage"]


def test_a_delayed_message_is_accepted_with_its_header(data_launcher, gl_dir):
    result = at_data(data_launcher, gl_dir, "1,1,0,300,delayed,-,mail")
    assert re.fullmatch(UNSET + rb"HX-Greylist: delayed 300 seconds by qgrey-"
                        + re.escape(VERSION.encode()) + rb"; " + DATE + rb"\n", result.stdout), \
        result.stdout
    assert result.stderr == (b"qgrey: action=message reason=passed " + WHO
                             + b" waited=300 detail=at DATA: 1 recipient recorded\n")


def test_a_known_message_is_accepted_with_its_header(data_launcher, gl_dir):
    result = at_data(data_launcher, gl_dir, "2,2,0,0,known,-,mail")
    assert re.fullmatch(UNSET + rb"HX-Greylist: passed \(known sender\) by qgrey-"
                        + re.escape(VERSION.encode()) + rb"; " + DATE + rb"\n", result.stdout), \
        result.stdout
    assert result.stderr == (b"qgrey: action=message reason=passed " + WHO
                             + b" waited=0 detail=at DATA: 2 recipients recorded\n")


@pytest.mark.parametrize("state, env, reason, detail", [
    ("1,1,0,0,-,-,mail", {}, b"nothing-recorded", b""),
    ("1,1,1,0,-,new,mail", {"RELAYCLIENT": ""}, b"relayclient", b""),
    ("1,1,1,0,-,new,mail", {"SMTPAUTHUSER": "u"}, b"authenticated", b""),
    ("1,1,1,0,-,new,mail", {"GL_WHITELISTED": ""}, b"whitelisted", b""),
    # Without the [mail] entry: a state written at a later RCPT count than this DATA's
    ("5,1,1,0,-,new," + ALICE_MARK, {}, b"stale", b" detail=a state of another transaction; cleared"),
    # or with another sender's mark
    ("1,1,1,0,-,new,00000000", {}, b"stale", b" detail=a state of another transaction; cleared"),
    ("junk", {}, b"stale", b" detail=a state of another transaction; cleared"),
])
def test_a_message_not_decided_clears_the_state(data_launcher, gl_dir, state, env, reason, detail):
    result = at_data(data_launcher, gl_dir, state, **env)
    assert result.stdout == UNSET
    assert result.stderr == b"qgrey: action=skip reason=" + reason + b" " + WHO + detail + b"\n"
    assert mark_file(gl_dir) == (True, 0o600, 0)


def test_a_state_of_this_transaction_without_the_mail_entry(data_launcher, gl_dir):
    # Written at the last RCPT (count 1, as at DATA), with this sender's mark.
    result = at_data(data_launcher, gl_dir, "1,1,1,0,-,new," + ALICE_MARK)
    assert result.stdout == GREYLISTED
    assert result.stderr == (b"qgrey: action=message reason=greylisted " + WHO
                             + b" detail=at DATA: 1 recipient recorded, 1 greylisted (new)\n")


def test_an_empty_state_starts_no_decision(data_launcher, gl_dir):
    # The launcher itself exits before Python for an empty state; the run
    # of Python (as an older launcher would start it) skips, printing nothing.
    result = spp([sys.executable, "-c", "from qgrey.plugin import main; main('data')"],
                 dict(SPP_ENV, GL_DIR=gl_dir, GL_STAGE="data", QGREY_DATA=""))
    assert (result.returncode, result.stdout) == (0, b"")
    assert result.stderr == b"qgrey: action=skip reason=no-state " + WHO + b"\n"
    assert os.listdir(gl_dir) == []


def test_a_gl_dir_that_cannot_be_marked_still_refuses(data_launcher, gl_dir):
    with read_only(gl_dir):
        result = at_data(data_launcher, gl_dir, "1,1,1,0,-,new,mail")
    assert result.stdout == GREYLISTED
    assert result.stderr == (b"qgrey: action=message reason=greylisted " + WHO
                             + b" detail=at DATA: 1 recipient recorded, 1 greylisted (new)\n")
    assert os.listdir(gl_dir) == []


def request(stage, state, count=1, sender=b"alice@example.org"):
    return SimpleNamespace(stage=stage, state=state, rcpt_count_all=count, sender=sender)


@pytest.mark.parametrize("req, reply", [
    (request("data", None), b""),            # no state: nothing to clear
    (request("rcpt", None), b""),
    (request("data", b"1,1,1,0,-,new,mail"), UNSET),   # at DATA the message passes: state goes
    (request("rcpt", b""), b""),             # emptied at MAIL: this transaction's
    (request("rcpt", b"1,1,1,0,-,new,mail"), b""),     # opened by the [mail] entry: kept
    (request("rcpt", b"junk"), UNSET),       # not qgrey's: cleared
    # without the [mail] entry: written at RCPT 1, now RCPT 2 of the same sender: kept
    (request("rcpt", ("1,1,1,0,-,new," + ALICE_MARK).encode(), count=2), b""),
    # the same count again at a RCPT: a new transaction's first RCPT: cleared
    (request("rcpt", ("1,1,1,0,-,new," + ALICE_MARK).encode(), count=1), UNSET),
    # another sender's mark: cleared
    (request("rcpt", b"1,1,1,0,-,new,00000000", count=2), UNSET),
])
def test_the_reply_after_an_internal_error(req, reply):
    assert after_internal_error(req) == reply


def test_the_reply_after_an_internal_error_when_the_state_cannot_be_read():
    class Broken:
        stage = "rcpt"

        @property
        def state(self):
            raise RuntimeError("no state")
    assert after_internal_error(Broken()) == UNSET


def test_a_mark_path_the_system_refuses_still_refuses(data_launcher, tmp_path):
    # GL_DIR (and GL_DIR/config) within PATH_MAX, GL_DIR/data-stage past it:
    # lstat fails with ENAMETOOLONG; the [data] run decides all the same.
    directory, length = str(tmp_path), 4086
    while len(directory) < length - 201:
        directory += "/" + "d" * 200
    directory += "/" + "e" * (length - len(directory) - 1)
    os.makedirs(directory, mode=0o700)
    assert len(directory + "/config") < 4096 <= len(directory + "/data-stage") + 1
    result = at_data(data_launcher, directory, "1,1,1,0,-,new,mail")
    assert result.stdout == GREYLISTED
    assert result.stderr == (b"qgrey: action=message reason=greylisted " + WHO
                             + b" detail=at DATA: 1 recipient recorded, 1 greylisted (new)\n")
    assert os.listdir(directory) == []
