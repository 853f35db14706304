"""The installed plugin, run as qmail-spp runs it: exact stdout bytes, exit status, log."""
import fcntl
import os
import re
import sqlite3
import subprocess
import sys
import time

import pytest

import conftest
from conftest import SPP_ENV, installed_command, read_only, spp

GREYLISTED = b"E451 4.7.1 Greylisted, please try again later\n"
DEFERRED = b"E451 4.3.0 Greylisting is temporarily unavailable, please try again later\n"
DELAYED = re.compile(rb"HX-Greylist: delayed (\d+) seconds by qgrey-[0-9.]+; "
                     rb"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
                     rb"\d{4} \d\d:\d\d:\d\d \+0000\n\Z")
KNOWN = re.compile(rb"HX-Greylist: passed \(known sender\) by qgrey-[0-9.]+; [^\n]+ \+0000\n\Z")
LOG_TAIL = b"client=198.51.100.7 sender=alice@example.org recipient=bob@example.net"


def db(gl_dir):
    return sqlite3.connect(os.path.join(gl_dir, "qgrey.sqlite"))


def entries(gl_dir):
    with db(gl_dir) as c:
        return c.execute("SELECT key, first, last, passed, tries FROM entries ORDER BY key").fetchall()


def age(gl_dir, seconds):
    """Move every entry back in time, as if it had been written earlier."""
    with db(gl_dir) as c:
        c.execute("UPDATE entries SET first = first - ?, last = last - ?,"
                  " passed = CASE passed WHEN 0 THEN 0 ELSE passed - ? END",
                  (seconds, seconds, seconds))


def log_lines(result):
    assert result.stderr.endswith(b"\n")
    assert b"Traceback" not in result.stderr
    return result.stderr.splitlines()


def test_a_new_triplet_is_greylisted(run, gl_dir):
    result = run()
    assert (result.returncode, result.stdout) == (0, GREYLISTED)
    assert log_lines(result) == [b"qgrey: action=greylist reason=new " + LOG_TAIL + b" waited=0"]
    [(key, first, last, passed, tries)] = entries(gl_dir)
    assert key == "198.51.100.0/24 alice@example.org bob@example.net"
    assert (passed, tries) == (0, 1) and abs(first - time.time()) < 60
    for name in os.listdir(gl_dir):
        assert os.stat(os.path.join(gl_dir, name)).st_mode & 0o777 == 0o600, name


def test_an_early_retry_is_greylisted_and_does_not_restart_the_clock(run, gl_dir):
    run()
    age(gl_dir, 100)
    first = entries(gl_dir)[0][1]
    result = run()
    assert result.stdout == GREYLISTED
    assert log_lines(result)[0].startswith(b"qgrey: action=greylist reason=early ")
    assert entries(gl_dir)[0][1] == first and entries(gl_dir)[0][4] == 2


def test_the_retry_passes_with_one_header_then_known(run, gl_dir):
    run()
    age(gl_dir, 400)
    result = run(TCPREMOTEIP="198.51.100.200")  # another host of the same /24
    match = DELAYED.match(result.stdout)
    assert result.returncode == 0 and match and 400 <= int(match.group(1)) < 460
    assert log_lines(result)[0].startswith(b"qgrey: action=pass reason=delayed client=198.51.100.200 ")
    second_recipient = run(SMTPRCPTCOUNT="1")
    assert (second_recipient.returncode, second_recipient.stdout) == (0, b"")
    known = run()
    assert KNOWN.match(known.stdout)
    assert b"action=pass reason=known" in known.stderr


def test_known_triplet_is_renewed_hourly_and_expires_after_lifetime(run, gl_dir):
    run()
    age(gl_dir, 400)
    run()
    age(gl_dir, 7200)
    before = entries(gl_dir)[0]
    assert KNOWN.match(run().stdout)
    after = entries(gl_dir)[0]
    assert after[2] > before[2] and after[3] == before[3]
    age(gl_dir, 37 * 86400)
    result = run()
    assert result.stdout == GREYLISTED and b"reason=expired" in result.stderr


@pytest.mark.parametrize("env, reason", [
    ({"GL_WHITELISTED": ""}, b"whitelisted"),
    # with GL_REVERSE=1 (the default) their recipients are recorded: test_rules_plugin
    ({"RELAYCLIENT": "", "GL_REVERSE": "0"}, b"relayclient"),
    ({"SMTPAUTHUSER": "alice", "GL_REVERSE": "0"}, b"authenticated"),
    ({"SMTPRCPTHOSTSOK": "0"}, b"rcpthosts"),
])
def test_not_our_business_gets_no_answer_and_no_write(run, gl_dir, env, reason):
    result = run(**env)
    assert (result.returncode, result.stdout) == (0, b"")
    assert log_lines(result) == [b"qgrey: action=skip reason=" + reason + b" " + LOG_TAIL]
    assert os.listdir(gl_dir) == []


def test_empty_auth_user_is_greylisted(run):
    assert run(SMTPAUTHUSER="").stdout == GREYLISTED


@pytest.mark.parametrize("missing, reason, hint", [
    ("SMTPRCPTTO", b"no-recipient", b"under [rcpt]"),
    ("TCPREMOTEIP", b"no-remoteip", b"tcpserver"),
])
def test_plugin_in_the_wrong_place_says_why(run, gl_dir, missing, reason, hint):
    result = run(**{missing: None})
    assert (result.returncode, result.stdout) == (0, b"")
    [line] = log_lines(result)
    assert line.startswith(b"qgrey: action=skip reason=" + reason) and hint in line
    assert os.listdir(gl_dir) == []


def test_ignore_remoteip_needs_no_address(run, gl_dir):
    assert run(TCPREMOTEIP=None, GL_IGNORE_REMOTEIP="1").stdout == GREYLISTED
    assert entries(gl_dir)[0][0] == "* alice@example.org bob@example.net"


def test_null_sender_and_options_shape_the_key(run, gl_dir):
    run(SMTPMAILFROM="", GL_MASK_IP="0", GL_IGNORE_RECIPIENT="1")
    assert entries(gl_dir)[0][0] == "198.51.100.7 <> *"


def test_custom_message(run):
    assert run(GL_MESSAGE="Come back in five minutes").stdout == b"E451 4.7.1 Come back in five minutes\n"


def test_bad_setting_is_reported_and_defaults_apply(run):
    result = run(GL_DELAY="later", GL_MESSAGE="two\nlines")
    assert result.stdout == GREYLISTED
    lines = log_lines(result)
    assert lines[0] == b"qgrey: warning: GL_DELAY=later from environment: not a duration " \
                       b"(a number of seconds, optionally with s, m, h or d); using 300"
    assert lines[1].startswith(b"qgrey: warning: GL_MESSAGE=two?lines from environment")
    assert lines[2].startswith(b"qgrey: action=greylist reason=new") and len(lines) == 3


@pytest.mark.parametrize("field", ["SMTPMAILFROM", "SMTPRCPTTO", "TCPREMOTEIP"])
@pytest.mark.parametrize("value", [
    b"x\r\nAthen@evil", b"\nO", b"a\x1b[2J\x7f@b", b"\xff\xfe@\xe9", b"<>", b"*", b"a b@c",
    b"A" * 70000, b"", b"::ffff:1.2.3.4", b"1.2.3.4.5", b"fe80::1%eth0",
])
def test_hostile_envelope_gets_one_clean_line(run, field, value):
    result = run(**{field: value})
    assert result.returncode == 0
    assert result.stdout in (GREYLISTED, b"")
    [line] = log_lines(result)
    assert all(32 <= b < 127 for b in line)


def test_every_way_of_starting_it_gives_the_same_answer(gl_dir, launcher):
    env = dict(SPP_ENV, GL_DIR=gl_dir)
    for command in (launcher, installed_command(), [sys.executable, "-m", "qgrey"]):
        result = spp(command, dict(env, SMTPRCPTTO="x%s@example.net" % len(str(command))))
        assert (result.returncode, result.stdout) == (0, GREYLISTED), command


def test_closed_or_broken_stdout_never_exits_120(gl_dir, launcher):
    env = dict(SPP_ENV, GL_DIR=gl_dir)
    closed = subprocess.run([launcher], env=env, cwd="/", stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            preexec_fn=lambda: os.close(1))
    assert closed.returncode == 0 and b"Traceback" not in closed.stderr
    read_end, write_end = os.pipe()
    os.close(read_end)
    broken = subprocess.run([launcher], env=env, cwd="/", stdin=subprocess.DEVNULL,
                            stdout=write_end, stderr=subprocess.PIPE)
    os.close(write_end)
    assert broken.returncode == 0 and b"Traceback" not in broken.stderr


# Failures: one log line, the reply GL_ON_ERROR asks for, no traceback.

def failure(result, reason, on_error="accept"):
    assert result.returncode == 0
    assert result.stdout == (DEFERRED if on_error == "defer" else b"")
    [line] = log_lines(result)
    assert line.startswith(b"qgrey: action=error reason=" + reason + b" " + LOG_TAIL + b" detail=")
    assert line.endswith(b"; answered " + on_error.encode())
    return line


@pytest.mark.parametrize("on_error", ["accept", "defer"])
def test_missing_directory(run, gl_dir, on_error):
    os.rmdir(gl_dir)
    line = failure(run(GL_ON_ERROR=on_error), b"directory", on_error)
    assert b"No such file or directory" in line


def test_world_writable_directory_is_refused(run, gl_dir):
    os.chmod(gl_dir, 0o777)
    assert b"writable by others" in failure(run(), b"directory")


def test_directory_through_a_symlink_is_followed(run, gl_dir, tmp_path):
    link = tmp_path / "link"
    link.symlink_to(gl_dir)
    assert run(GL_DIR=str(link)).stdout == GREYLISTED


def test_unwritable_directory(run, gl_dir):
    with read_only(gl_dir):
        failure(run(GL_ON_ERROR="defer"), b"io", "defer")


@pytest.mark.parametrize("content", [b"this is not a database" * 100, b"SQLite format 3\0" + b"\xff" * 4000])
def test_corrupt_database(run, gl_dir, content):
    with open(os.path.join(gl_dir, "qgrey.sqlite"), "wb") as f:
        f.write(content)
    failure(run(), b"database")


@pytest.mark.parametrize("on_error", ["accept", "defer"])
def test_truncated_database(run, gl_dir, on_error):
    """README, Failures: a truncated database is reason=database, answered
    as GL_ON_ERROR says."""
    for n in range(5):
        run(SMTPRCPTTO="r%d@example.net" % n)
    path = os.path.join(gl_dir, "qgrey.sqlite")
    os.truncate(path, os.path.getsize(path) // 2 + 10)
    result = run(GL_ON_ERROR=on_error)
    line = failure(result, b"database", on_error)
    assert line == (b"qgrey: action=error reason=database " + LOG_TAIL + b" detail="
                    + path.encode() + b": database disk image is malformed; answered "
                    + on_error.encode())


def test_symlinked_lock_file_is_not_followed(run, gl_dir, tmp_path):
    target = tmp_path / "elsewhere"
    target.write_text("")
    os.symlink(str(target), os.path.join(gl_dir, "lock"))
    failure(run(), b"io")


def in_time(elapsed, lock_timeout):
    assert lock_timeout <= elapsed, elapsed
    conftest.in_time(elapsed, lock_timeout)


@pytest.mark.parametrize("on_error", ["accept", "defer"])
def test_lock_held_elsewhere_times_out_within_the_deadline(run, gl_dir, on_error):
    """The read takes no flock and decides: GL_ON_ERROR plays no part, the
    same reply and line whichever it names (no "answered")."""
    fd = os.open(os.path.join(gl_dir, "lock"), os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        start = time.monotonic()
        result = run(GL_LOCK_TIMEOUT="0.5", GL_ON_ERROR=on_error)
        elapsed = time.monotonic() - start
    finally:
        os.close(fd)
    # The read takes no flock: the new triplet is refused as the read says.
    assert (result.returncode, result.stdout) == (0, GREYLISTED)
    assert log_lines(result) == [
        b"qgrey: action=greylist reason=new " + LOG_TAIL + b" waited=0 detail=not recorded: "
        b"no lock on " + os.path.join(gl_dir, "lock").encode() + b" within the deadline (lock-timeout)"]
    in_time(elapsed, 0.5)


@pytest.mark.parametrize("on_error", ["accept", "defer"])
def test_nothing_read_while_a_writer_holds_sqlite_exclusive(run, gl_dir, on_error):
    run()
    import sqlite3
    other = sqlite3.connect(os.path.join(gl_dir, "qgrey.sqlite"), isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")  # as a foreign writer committing holds it
    try:
        start = time.monotonic()
        result = run(GL_LOCK_TIMEOUT="0.5", GL_ON_ERROR=on_error)
        elapsed = time.monotonic() - start
    finally:
        other.execute("ROLLBACK")
        other.close()
    line = failure(result, b"lock-timeout", on_error)
    assert line == (b"qgrey: action=error reason=lock-timeout " + LOG_TAIL + b" detail="
                    + os.path.join(gl_dir, "qgrey.sqlite").encode()
                    + b": a writer held SQLite's lock until the deadline; answered "
                    + on_error.encode())
    in_time(elapsed, 0.5)


def test_store_without_dbm_dumb(run):
    result = run(GL_STORE="dbm.dumb")
    assert result.stdout == GREYLISTED  # a bad value: reported, and the default store used
    assert b"GL_STORE=dbm.dumb from environment: not one of" in result.stderr


PROBE = r"""
import sys, time
floor = set(sys.modules)
sys.path.insert(0, sys.argv[1])
import posix
from qgrey import plugin
plugin.decide(posix.environ, int(time.time()), [])
print(" ".join(sorted(set(sys.modules) - floor)))
"""


def imported_by_a_decision(run, gl_dir, **env):
    package = os.path.dirname(os.path.dirname(os.path.abspath(__import__("qgrey").__file__)))
    environment = dict(SPP_ENV, GL_DIR=gl_dir, **env)
    result = spp([sys.executable, "-I", "-S", "-c", PROBE, package], environment)
    assert result.returncode == 0, result.stderr
    return set(result.stdout.split())


def test_the_per_rcpt_path_imports_only_what_a_decision_needs(run, gl_dir):
    heavy = {b"os", b"re", b"sqlite3", b"_sqlite3", b"signal", b"enum", b"collections",
             b"functools", b"ipaddress", b"logging", b"argparse", b"datetime"}
    relay = imported_by_a_decision(run, gl_dir, RELAYCLIENT="", GL_REVERSE="0")
    assert relay == {b"qgrey", b"qgrey.plugin", b"qgrey.reply", b"qgrey.request", b"qgrey.settings"}
    # reverse tracking: once the pair is recorded, a relay client costs a lookup
    imported_by_a_decision(run, gl_dir, RELAYCLIENT="")
    relay = imported_by_a_decision(run, gl_dir, RELAYCLIENT="")
    assert not relay & heavy, relay & heavy
    run()
    age(gl_dir, 400)
    run()  # passes: the triplet is now known
    known = imported_by_a_decision(run, gl_dir)
    assert not known & heavy, known & heavy
    assert b"qgrey.store.sqlitefile" in known
