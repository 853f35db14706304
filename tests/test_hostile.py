"""qgrey under hostile conditions, run as qmail-spp runs it (through the launcher).

Every test asserts what qmail-smtpd would see: exit status 0, stdout empty
or exactly one valid reply line, never A or O, no traceback, and exactly
one log line of the documented shape, within the lock deadline.
"""
import concurrent.futures
import errno
import fcntl
import importlib
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time

import pytest

from conftest import IS_ROOT, NOBODY, SPP_ENV, _close_stdin, in_time, spp, unavailable
from qgrey.reply import DEFER_ON_ERROR
from skips import kind_params

REPLY = re.compile(rb"^(E451 [ -~]*|H[ -~]*)\n$")
LOG = re.compile(
    rb"^qgrey: action=(greylist|pass|skip|error) reason=[a-z-]+ client=\S* sender=\S+ "
    rb"recipient=\S*( waited=-?\d+)?( detail=[ -~]*)?\n$")
GREYLISTED = b"E451 4.7.1 Greylisted, please try again later\n"
CLIENT_NET = "198.51.100.0/24"

# Heavier tests scale with QGREY_STRESS (decisions in the concurrency test).
STRESS_DECISIONS = int(os.environ.get("QGREY_STRESS", "1000"))


def available_kinds():
    kinds = ["sqlite"]
    for kind in ("dbm.gnu", "dbm.ndbm", "dbm.sqlite3"):
        try:
            importlib.import_module(kind)
        except ImportError:
            continue
        kinds.append(kind)
    return kinds


KINDS = available_kinds()
DB_FILES = {"sqlite": "qgrey.sqlite", "dbm.gnu": "qgrey.gdbm", "dbm.ndbm": "qgrey.ndbm.db",
            "dbm.sqlite3": "qgrey.dbm-sqlite3"}


@pytest.fixture(params=kind_params())  # every kind: one this Python lacks is a listed skip
def kind(request):
    return request.param


def check(result, reply=None, action=None, reason=None):
    """The invariants qmail-smtpd relies on, plus the expected reply/log."""
    assert result.returncode == 0, result
    assert b"Traceback" not in result.stderr, result.stderr
    out = result.stdout
    assert out == b"" or REPLY.match(out), out
    lines = result.stderr.splitlines(True)
    assert len(lines) == 1, result.stderr
    match = LOG.match(lines[0])
    assert match, lines[0]
    if reply is not None:
        assert out == reply
    if action is not None:
        assert match.group(1).decode() == action, lines[0]
    if reason is not None:
        assert (b" reason=%s " % reason.encode()) in lines[0], lines[0]
    return lines[0]


def env_for(gl_dir, sender="alice@example.org", recipient="bob@example.net", **extra):
    env = dict(SPP_ENV, GL_DIR=gl_dir, SMTPMAILFROM=sender, SMTPRCPTTO=recipient)
    env.update(extra)
    return env


def key(sender, recipient="bob@example.net"):
    return "%s %s %s" % (CLIENT_NET, sender, recipient)


def read_entries(gl_dir, kind):
    """{key: (first, last, passed, tries)} straight from the database file."""
    if kind == "sqlite":
        db = sqlite3.connect(os.path.join(gl_dir, DB_FILES[kind]))
        try:
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            return {row[0]: tuple(row[1:]) for row in db.execute("SELECT * FROM entries")}
        finally:
            db.close()
    module = importlib.import_module(kind)
    path = os.path.join(gl_dir, {"dbm.gnu": "qgrey.gdbm", "dbm.ndbm": "qgrey.ndbm",
                                 "dbm.sqlite3": "qgrey.dbm-sqlite3"}[kind])
    db = module.open(path, "r")
    try:
        return {k.decode(): tuple(map(int, db[k].split())) for k in db.keys()}
    finally:
        db.close()


# --- many deliveries at once ---------------------------------------------

def test_concurrent_deliveries(launcher, gl_dir, kind):
    """STRESS_DECISIONS decisions, 32 at a time, over distinct and repeated
    triplets: no lost update, no pass before the delay, database intact.
    (waited may be -1 in the log: the clock is read before the lock.)"""
    decisions = STRESS_DECISIONS if kind == "sqlite" else STRESS_DECISIONS // 4
    distinct = max(1, decisions // 10)
    senders = ["s%d@example.org" % (i % distinct) for i in range(decisions)]
    random.Random(5).shuffle(senders)
    extra = dict(GL_STORE=kind, GL_DELAY="1d", GL_RETRY_WINDOW="3d", GL_LOCK_TIMEOUT="60")

    def one(sender):
        return spp(launcher, env_for(gl_dir, sender, **extra), timeout=120)

    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        results = list(pool.map(one, senders))
    for result in results:
        check(result, reply=GREYLISTED, action="greylist")
    entries = read_entries(gl_dir, kind)
    expected = {}
    for sender in senders:
        expected[key(sender)] = expected.get(key(sender), 0) + 1
    assert set(entries) == set(expected)
    for k, count in expected.items():
        first, last, passed, tries = entries[k]
        assert passed == 0 and first <= last
        assert tries == count, (k, tries, count)


# --- killed while holding the lock ---------------------------------------

def test_sigkill_at_random_points(launcher, gl_dir, kind):
    """Writers killed at random points, many times: nothing committed is
    lost, the database stays intact and the next decision works."""
    extra = dict(GL_STORE=kind, GL_DELAY="1d", GL_RETRY_WINDOW="3d")
    committed = []
    for i in range(5):
        sender = "seed%d@example.org" % i
        check(spp(launcher, env_for(gl_dir, sender, **extra)), reply=GREYLISTED)
        committed.append(key(sender))
    started = time.monotonic()
    check(spp(launcher, env_for(gl_dir, "timing@example.org", **extra)), reply=GREYLISTED)
    committed.append(key("timing@example.org"))
    span = time.monotonic() - started
    rng = random.Random(kind)
    killed = 0
    for i in range(150):  # until 25 kills landed at random points of a run
        if killed >= 25:
            break
        sender = "victim%d@example.org" % i
        process = subprocess.Popen([launcher], env=env_for(gl_dir, sender, **extra), cwd="/",
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   preexec_fn=_close_stdin)
        time.sleep(rng.uniform(0.1, 1.0) * span)
        process.send_signal(signal.SIGKILL)
        out, err = process.communicate()
        if process.returncode == 0:  # finished before the kill: aim earlier
            assert out == GREYLISTED and b"Traceback" not in err
            committed.append(key(sender))
            span *= 0.8
        else:
            killed += 1
        after = "after%d@example.org" % i
        check(spp(launcher, env_for(gl_dir, after, **extra)), reply=GREYLISTED, action="greylist")
        committed.append(key(after))
    assert killed >= 25
    entries = read_entries(gl_dir, kind)
    missing = [k for k in committed if k not in entries]
    assert not missing


# --- a lock that is never released ---------------------------------------

HOLDER = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
sys.stdout.write("locked\\n"); sys.stdout.flush()
time.sleep(600)
"""


@pytest.mark.parametrize("on_error", ["accept", "defer"])
def test_lock_held_forever(launcher, gl_dir, kind, on_error):
    extra = dict(GL_STORE=kind, GL_LOCK_TIMEOUT="1", GL_ON_ERROR=on_error)
    check(spp(launcher, env_for(gl_dir, "known@example.org", GL_DELAY="0", **extra)))
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, os.path.join(gl_dir, "lock")],
                              stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline() == b"locked\n"
        for sender in ("known@example.org", "new@example.org"):
            started = time.monotonic()
            result = spp(launcher, env_for(gl_dir, sender, GL_DELAY="0", **extra))
            elapsed = time.monotonic() - started
            if kind != "sqlite":  # dbm reads under the flock: nothing could be read
                check(result, reply=DEFER_ON_ERROR if on_error == "defer" else b"",
                      action="error", reason="lock-timeout")
                assert 0.9 <= elapsed, elapsed
                in_time(elapsed, 1)
            elif sender.startswith("known"):  # SQLite reads take SQLite's lock: its retry passes
                line = check(result, reply=None, action="pass", reason="delayed")
                assert b"detail=not recorded: " in line
            else:  # decided on the read, refused, and said not recorded
                line = check(result, reply=GREYLISTED, action="greylist", reason="new")
                assert b"detail=not recorded: no lock on " in line and line.endswith(b" (lock-timeout)\n")
                assert 0.9 <= elapsed, elapsed
                in_time(elapsed, 1)
    finally:
        holder.kill()
        holder.wait()


# --- broken state directories and files ----------------------------------

def seeded(launcher, gl_dir, kind, count=60):
    """A database with count entries written by qgrey itself."""
    for i in range(count):
        check(spp(launcher, env_for(gl_dir, "seed%d@example.org" % i, GL_STORE=kind)))
    return os.path.join(gl_dir, DB_FILES[kind])


def expect_error(result, on_error, reason):
    check(result, reply=DEFER_ON_ERROR if on_error == "defer" else b"",
          action="error", reason=reason)


def error_line(reason, sender, path, detail, on_error):
    """The documented log line of a store error, written out."""
    return ("qgrey: action=error reason=%s client=198.51.100.7 sender=%s "
            "recipient=bob@example.net detail=%s: %s; answered %s\n"
            % (reason, sender, path, detail, on_error)).encode()


def check_error(result, on_error, line):
    """Exactly the reply GL_ON_ERROR names and exactly this log line."""
    check(result)
    assert result.stdout == (DEFER_ON_ERROR if on_error == "defer" else b"")
    assert result.stderr == line


def check_chatty(result):
    """What holds on dbm.ndbm too, whose Berkeley DB writes its own BDBnnnn
    diagnostics to stderr: exit 0, no traceback, no reply or one valid reply,
    and qgrey's one log line last."""
    assert result.returncode == 0, result
    assert b"Traceback" not in result.stderr, result.stderr
    assert result.stdout == b"" or REPLY.match(result.stdout), result.stdout
    lines = result.stderr.splitlines(True)
    assert lines and LOG.match(lines[-1]), result.stderr
    assert all(line.startswith(b"BDB") for line in lines[:-1]), result.stderr
    return lines[-1]


ON_ERROR = pytest.mark.parametrize("on_error", ["accept", "defer"])


@ON_ERROR
def test_corrupt_database(launcher, gl_dir, kind, on_error):
    path = seeded(launcher, gl_dir, kind)
    with open(path, "r+b") as f:
        f.write(random.Random(1).randbytes(4096) if hasattr(random.Random, "randbytes")
                else os.urandom(4096))
    started = time.monotonic()
    result = spp(launcher, env_for(gl_dir, GL_STORE=kind, GL_ON_ERROR=on_error))
    in_time(time.monotonic() - started, 3)
    if kind == "dbm.ndbm":
        line = check_chatty(result)
        if len(result.stderr.splitlines()) > 1:
            pytest.xfail("Berkeley DB (dbm.ndbm here) writes its own diagnostics to stderr "
                         "on a damaged file")
    expect_error(result, on_error, "database")


# What each kind says of a file truncated to a third (dbm.sqlite3: 1000 bytes).
TRUNCATED = {"sqlite": "database disk image is malformed",
             "dbm.sqlite3": "database disk image is malformed",
             "dbm.gnu": None,  # GDBM's own words, which vary with its version
             "dbm.ndbm": None}


@ON_ERROR
def test_truncated_database(launcher, gl_dir, kind, on_error):
    """README, Failures: a truncated database file is reason=database, and
    the reply is GL_ON_ERROR's."""
    path = seeded(launcher, gl_dir, kind)
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(size // 3 if kind != "dbm.sqlite3" else 1000)
    started = time.monotonic()
    result = spp(launcher, env_for(gl_dir, "seed59@example.org", GL_STORE=kind,
                                   GL_ON_ERROR=on_error))
    in_time(time.monotonic() - started, 3)
    line = check_chatty(result)
    if kind == "dbm.ndbm" and b" action=greylist reason=new " in line:
        pytest.xfail("Berkeley DB (dbm.ndbm here) reads a truncated hash file as one with "
                     "fewer entries and reports no error: the seeded sender is new again")
    if TRUNCATED[kind] is not None:
        check_error(result, on_error, error_line("database", "seed59@example.org", path,
                                                 TRUNCATED[kind], on_error))
    else:
        check(result, reply=DEFER_ON_ERROR if on_error == "defer" else b"",
              action="error", reason="database")
        assert line.startswith(("qgrey: action=error reason=database client=198.51.100.7 "
                                "sender=seed59@example.org recipient=bob@example.net "
                                "detail=%s: " % path).encode()), line
        assert line.endswith(b"; answered %s\n" % on_error.encode()), line


@ON_ERROR
def test_missing_state_directory(launcher, tmp_path, on_error):
    gl_dir = str(tmp_path / "does-not-exist")
    result = spp(launcher, env_for(gl_dir, GL_ON_ERROR=on_error))
    expect_error(result, on_error, "directory")
    assert not os.path.exists(gl_dir)


@ON_ERROR
def test_world_writable_directory_is_refused(launcher, gl_dir, on_error):
    os.chmod(gl_dir, 0o777)
    result = spp(launcher, env_for(gl_dir, GL_ON_ERROR=on_error))
    expect_error(result, on_error, "directory")
    assert os.listdir(gl_dir) == []


def test_directory_that_is_a_symlink_is_followed(launcher, gl_dir, tmp_path, kind):
    link = str(tmp_path / "link")
    os.symlink(gl_dir, link)
    check(spp(launcher, env_for(link, GL_STORE=kind)), reply=GREYLISTED, action="greylist")
    check(spp(launcher, env_for(link, GL_STORE=kind)), reply=GREYLISTED, reason="early")
    assert key("alice@example.org") in read_entries(gl_dir, kind)


@pytest.fixture(scope="module")
def public(tmp_path_factory):
    """A launcher and a place for state that another user can reach."""
    top = tempfile.mkdtemp(prefix="qgrey-public-")
    os.chmod(top, 0o755)
    launcher = os.path.join(top, "qgrey")
    subprocess.run([sys.executable, "-m", "qgrey.launcher", launcher], check=True, cwd="/",
                   stdout=subprocess.DEVNULL)
    yield top, launcher
    shutil.rmtree(top)


def can_run_as_nobody(launcher):
    try:
        spp(launcher, dict(SPP_ENV, GL_WHITELISTED=""), user=NOBODY)
    except PermissionError:  # the interpreter lives where nobody may not go (/root/.pyenv)
        return False
    return True


def read_only_bind(path):
    """Make path a read-only bind mount of itself -> undo function, or None."""
    if not IS_ROOT or subprocess.run(["mount", "--bind", path, path],
                                     stderr=subprocess.DEVNULL).returncode:
        return None
    if subprocess.run(["mount", "-o", "remount,ro,bind", path, path],
                      stderr=subprocess.DEVNULL).returncode:
        subprocess.run(["umount", path])
        return None
    return lambda: subprocess.run(["umount", path])


@ON_ERROR
def test_read_only_directory(public, kind, on_error):
    """The plugin's user cannot write GL_DIR: as uid 65534 on a directory
    owned by root where that user can run this Python, else (the
    interpreter is out of its reach) as root on a read-only bind mount.
    Decisions answer as GL_ON_ERROR says; nothing is created."""
    if not IS_ROOT:
        unavailable("needs root to run as another user or to mount")
    top, launcher = public
    gl_dir = tempfile.mkdtemp(dir=top)
    seeded(launcher, gl_dir, kind, count=1)
    check(spp(launcher, env_for(gl_dir, "seed0@example.org", GL_STORE=kind, GL_DELAY="0")),
          action="pass")
    os.chmod(gl_dir, 0o755)
    for name in os.listdir(gl_dir):
        os.chmod(os.path.join(gl_dir, name), 0o644)
    before = sorted(os.listdir(gl_dir))
    user, undo = None, None
    if can_run_as_nobody(launcher):
        user = NOBODY
    else:
        undo = read_only_bind(gl_dir)
        if undo is None:
            unavailable("cannot run as another user nor mount read-only here")
    try:
        result = spp(launcher, env_for(gl_dir, "new@example.org", GL_STORE=kind,
                                       GL_ON_ERROR=on_error), user=user)
        expect_error(result, on_error, "io")
        known = spp(launcher, env_for(gl_dir, "seed0@example.org", GL_STORE=kind, GL_DELAY="0"),
                    user=user)
        # A lookup needs no write access (SQLite behind dbm.sqlite3 wants it).
        check(known, action="pass" if kind != "dbm.sqlite3" else None)
    finally:
        if undo is not None:
            undo()
    assert sorted(os.listdir(gl_dir)) == before


@pytest.fixture
def small_filesystem(tmp_path):
    """A file system qgrey can fill: a 256 KiB tmpfs mounted for the test."""
    mount_point = str(tmp_path / "small")
    os.mkdir(mount_point)
    if not IS_ROOT or not shutil.which("mount"):
        unavailable("needs root to mount a small tmpfs")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k,mode=0700", "tmpfs", mount_point],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if mounted.returncode:
        unavailable("cannot mount a tmpfs here: %s" % mounted.stdout.decode(errors="replace"))
    yield mount_point
    subprocess.run(["umount", "-l", mount_point])


def fill(directory):
    """Write until the file system says ENOSPC (and nothing else)."""
    fd = os.open(os.path.join(directory, "filler"), os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as err:
        assert err.errno == errno.ENOSPC, err
    finally:
        os.close(fd)


# What each kind says of a full disk, after "detail=<database>: ".
DISK_FULL = {"sqlite": "database or disk is full", "dbm.sqlite3": "disk I/O error",
             "dbm.gnu": "No space left on device", "dbm.ndbm": None}


@ON_ERROR
def test_full_disk(launcher, small_filesystem, kind, on_error):
    """A full file system (a small tmpfs, filled): README, Failures promises
    reason=disk-full and the reply GL_ON_ERROR names."""
    extra = dict(GL_STORE=kind, GL_ON_ERROR=on_error)
    gl_dir = os.path.join(small_filesystem, "state")
    os.mkdir(gl_dir, 0o700)
    path = seeded(launcher, gl_dir, kind, count=3)
    fill(small_filesystem)
    # A dbm file may have room inside for a few more entries: write new
    # triplets until the disk says no; each answer is clean either way.
    for n in range(300):
        sender = "new%d@example.org" % n
        started = time.monotonic()
        result = spp(launcher, env_for(gl_dir, sender, **extra))
        in_time(time.monotonic() - started, 3)
        line = check_chatty(result)
        if result.stdout != GREYLISTED:
            break
        assert line.startswith(b"qgrey: action=greylist reason=new "), line
    else:
        if kind == "dbm.ndbm":
            pytest.xfail("Berkeley DB (dbm.ndbm here) reports success for writes it could "
                         "not flush on a full disk (and writes its own diagnostics to stderr)")
        pytest.fail("300 new triplets written on a full disk without an error")
    check_error(result, on_error, error_line("disk-full", sender, path, DISK_FULL[kind], on_error))
    # Nothing half-written: once there is room again, what was there still reads.
    os.unlink(os.path.join(small_filesystem, "filler"))
    assert key("seed0@example.org") in read_entries(gl_dir, kind)


# --- hostile envelopes -----------------------------------------------------

IPS = [b"198.51.100.7", b"::ffff:1.2.3.4", b"1.2.3.4.5", b"300.1.1.1", b"fe80::1%eth0", b"::",
       b"", b" ", b"garbage", b"1.2.3", b"::1", b"2001:db8::1", b"2001:db8:::1", b"1:2:3:4:5:6:7:8:9",
       b"\xff\xfe", b"1.2.3.4\n", b"01.02.03.004", b"::ffff:300.1.1.1", b"%", b"[1.2.3.4]"]
ADDRESSES = [b"", b"<>", b"bob@example.net", b"a\rb@example.org", b"a\nE451 injected@x",
             b"a\nA\n", b"O", b"\x01\x02\x1b[31m@x", b"\xe9l\xe8ve@\xc3\xa9cole.fr",
             b"x" * 5000, b'"quoted local"@example.org', b"with space@example.org",
             b"@", b"%41%42", b"<bob@example.net>", b"\x7f", b"*", b"UPPER@EXAMPLE.ORG"]


def hostile_env(gl_dir, ip, sender, recipient, extra):
    env = {k.encode(): v.encode() for k, v in SPP_ENV.items()}
    env[b"GL_DIR"] = gl_dir.encode()
    for name, value in ((b"TCPREMOTEIP", ip), (b"SMTPMAILFROM", sender), (b"SMTPRCPTTO", recipient)):
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    env.update(extra)
    return env


def B(**values):
    return {k.encode(): v for k, v in values.items()}


def check_hostile(result):
    assert result.returncode == 0, result
    assert b"Traceback" not in result.stderr, result.stderr
    assert result.stdout == b"" or REPLY.match(result.stdout), result.stdout
    assert all(line.startswith(b"qgrey: ") for line in result.stderr.splitlines(True))
    assert all(LOG.match(line) for line in result.stderr.splitlines(True)
               if not line.startswith(b"qgrey: warning: ")), result.stderr


def test_envelope_corpus(launcher, gl_dir):
    rng = random.Random(5)
    cases = [(ip, b"alice@example.org", b"bob@example.net") for ip in IPS]
    cases += [(b"198.51.100.7", a, b"bob@example.net") for a in ADDRESSES]
    cases += [(b"198.51.100.7", b"alice@example.org", a) for a in ADDRESSES]
    cases += [(rng.choice(IPS), rng.choice(ADDRESSES), rng.choice(ADDRESSES)) for _ in range(15)]
    cases += [(None, b"a@b", b"c@d"), (b"1.2.3.4", None, b"c@d")]
    for ip, sender, recipient in cases:
        for extra in ({}, B(GL_DELAY=b"0"), B(SMTPRCPTCOUNT=b"\n")):
            result = spp(launcher, hostile_env(gl_dir, ip, sender, recipient, extra))
            check_hostile(result)


def test_hostile_settings(launcher, gl_dir):
    for name in (b"GL_DELAY", b"GL_LOCK_TIMEOUT", b"GL_MESSAGE", b"GL_STORE", b"GL_ON_ERROR",
                 b"GL_MASK_IP", b"GL_RETRY_WINDOW"):
        for value in (b"", b"\n", b"-1", b"1e999", b"nan", b"\xff", b"x" * 1000, b"A\nO",
                      b"99999999999999999999d", b"0x10"):
            result = spp(launcher, hostile_env(gl_dir, b"1.2.3.4", b"a@b", b"c@d", {name: value}))
            check_hostile(result)
            assert b"\nA" not in result.stdout and b"\nO" not in result.stdout
