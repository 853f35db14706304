"""qgrey-expire, qgrey-admin and qgrey-report, run as installed commands on
databases the plugin wrote."""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import pytest

from conftest import NOBODY, SYSTEM_PYTHON, needs_root, system_install, unavailable

from qgrey import admin, report, settings as settings_module
from qgrey.policy import Entry
from qgrey.store import open_store

BIN = os.path.dirname(sys.executable)
DAY = 86400


def command(name, *args, gl_dir, env=None, stdin=None):
    environment = {"PATH": "/usr/bin:/bin", "GL_DIR": gl_dir}
    environment.update(env or {})
    return subprocess.run([os.path.join(BIN, name)] + list(args), env=environment, input=stdin,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60, text=True)


def store_for(gl_dir, kind="sqlite"):
    return open_store(settings_module.load({b"GL_DIR": gl_dir.encode(), b"GL_STORE": kind.encode()}))


def put(gl_dir, items):
    store = store_for(gl_dir)
    try:
        store.put_many(items)
    finally:
        store.close()


def dump(gl_dir):
    result = command("qgrey-admin", "dump", gl_dir=gl_dir)
    assert result.returncode == 0, result.stderr
    return result.stdout


# Pure parts

def test_ago():
    assert [admin.ago(s) for s in (0, 59, 60, 300, 7200, 86400, 2 * DAY + 5, -300)] == [
        "0s ago", "59s ago", "1m ago", "5m ago", "2h ago", "24h ago", "2d ago", "in 5m"]


def test_client_network():
    assert admin.client_network("198.51.100.7") == "198.51.100.7/32"
    assert admin.client_network("198.51.100.77/24") == "198.51.100.0/24"
    assert admin.client_network("2001:DB8:1::5/48") == "2001:db8:1::/48"
    for bad in ("example.org", "198.51.100.0/33", "1.2.3.4/x"):
        with pytest.raises(admin.Failure):
            admin.client_network(bad)


def test_dump_line_round_trip_and_errors():
    key, entry = "198.51.100.0/24 <> bob@example.net", Entry(1, 2, 3, 4)
    line = admin.dump_line(key, entry)
    assert line == "198.51.100.0/24 <> bob@example.net\t1\t2\t3\t4\n"
    assert admin.parse_dump_line(line, 2) == (key, entry)
    for bad in ("a b c\t1\t2\t3\n", "a b c\t1\t2\t3\t-4\n", "a  b\t1\t2\t3\t4\n", "ab\t1\t2\t3\t4\n"):
        with pytest.raises(admin.Failure):
            admin.parse_dump_line(bad, 7)


def test_report_parse_and_unescape():
    stamp, fields = report.parse(
        "@400000006553f1000000000a qgrey: action=error reason=io client=1.2.3.4 sender=<> "
        "recipient=a%25b@x waited=0 detail=cannot open: no such file x=y\n")
    assert stamp == 0x6553F100 - 10
    assert fields["detail"] == "cannot open: no such file x=y"
    assert fields["recipient"] == "a%25b@x" and report.unescape("a%25b@x") == b"a%b@x"
    assert report.parse("some other line\n") is None


# qgrey-expire

def test_expire_removes_exactly_the_expired_while_plugins_run(run, gl_dir, launcher):
    for rcpt in ("never", "over", "waiting", "passed", "fresh"):
        assert run(SMTPRCPTTO=rcpt + "@example.net").stdout.startswith(b"E451")
    now = int(time.time())
    key = "198.51.100.0/24 alice@example.org %s@example.net"
    aged = [
        (key % "never", Entry(now - 3 * DAY, now - 3 * DAY, 0, 2)),          # window over
        (key % "over", Entry(now - 80 * DAY, now - 40 * DAY, now - 79 * DAY, 1)),  # lifetime over
        (key % "waiting", Entry(now - DAY, now - DAY, 0, 1)),                # live
        (key % "passed", Entry(now - 60 * DAY, now - 10 * DAY, now - 59 * DAY, 1)),  # live
        ("client 192.0.2.0/24", Entry(now - 400 * DAY, now - 400 * DAY, now - 400 * DAY, 0)),
    ]
    # Enough entries for several batches, half of them expired.
    bulk = [("203.0.%d.0/24 s%d@example.com r@example.net" % (i % 250, i),
             Entry(now - (3 if i % 2 else 1) * DAY, now, 0, 1)) for i in range(3000)]
    put(gl_dir, aged + bulk)

    outputs, stop = [], threading.Event()

    def plugins():
        i = 0
        while not stop.is_set():
            i += 1
            outputs.append(run(SMTPRCPTTO="loop%d@example.net" % i))
    thread = threading.Thread(target=plugins)
    thread.start()
    try:
        result = command("qgrey-expire", gl_dir=gl_dir)
    finally:
        stop.set()
        thread.join()
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    first, second = result.stdout.splitlines()
    assert first.startswith("removed 1503: never-retried=1501 lifetime-over=1 client-over=1; kept ")
    assert second.startswith("shrink: ")
    assert outputs and all(o.stdout == b"E451 4.7.1 Greylisted, please try again later\n"
                           and b"action=greylist reason=new" in o.stderr for o in outputs)
    keys = [line.split("\t")[0] for line in dump(gl_dir).splitlines()[1:]]
    assert "client 192.0.2.0/24" not in keys  # auto-whitelisting unused for 400 days
    for name in ("waiting", "passed", "fresh"):
        assert key % name in keys
    for name in ("never", "over"):
        assert key % name not in keys
    assert len([k for k in keys if k.startswith("203.0.")]) == 1500
    assert len([k for k in keys if "loop" in k]) == len(outputs)
    # Nothing left to do the second time.
    again = command("qgrey-expire", gl_dir=gl_dir)
    assert again.stdout.startswith("removed 0: never-retried=0 lifetime-over=0; kept %d;" % len(keys))


def test_expire_errors(gl_dir):
    result = command("qgrey-expire", "--bogus", gl_dir=gl_dir)
    assert (result.returncode, result.stderr) == (100, "usage: qgrey-expire [--vacuum]\n")
    missing = command("qgrey-expire", gl_dir=gl_dir + "/missing")
    assert missing.returncode == 111
    assert missing.stderr == "qgrey-expire: fatal: GL_DIR %s/missing: No such file or directory\n" % gl_dir
    empty = command("qgrey-expire", gl_dir=gl_dir)
    assert empty.returncode == 0 and empty.stdout.startswith("removed 0:")


def test_expire_vacuum_shrinks(gl_dir):
    now = int(time.time())
    put(gl_dir, [("192.0.2.0/24 s%d@example.org r@example.net" % i, Entry(now - 9 * DAY, now, 0, 1))
                 for i in range(5000)])
    result = command("qgrey-expire", gl_dir=gl_dir)
    assert result.returncode == 0
    assert result.stdout.splitlines()[1].startswith("shrink: ") and "KiB -> " in result.stdout
    assert os.path.getsize(gl_dir + "/qgrey.sqlite") < 50000


# qgrey-admin

def test_list_allow_delete(run, gl_dir):
    run(SMTPRCPTTO="a@example.net")
    run(SMTPRCPTTO="b@example.net", SMTPMAILFROM="")
    listed = command("qgrey-admin", "list", gl_dir=gl_dir)
    assert listed.returncode == 0
    assert re.sub(r"\b[0-9]s ago", "0s ago", listed.stdout) == (
        "STATE       FIRST     LAST      PASSED    TRIES  CLIENT SENDER RECIPIENT\n"
        "waiting     0s ago    0s ago    -             1  198.51.100.0/24 <> b@example.net\n"
        "waiting     0s ago    0s ago    -             1  198.51.100.0/24 alice@example.org a@example.net\n")
    only = command("qgrey-admin", "show", "--sender", "<>", "--no-header", gl_dir=gl_dir)
    assert only.stdout.endswith("198.51.100.0/24 <> b@example.net\n") and only.stdout.count("\n") == 1
    none = command("qgrey-admin", "list", "--client", "192.0.2.1", "--no-header", gl_dir=gl_dir)
    assert none.stdout == ""

    allowed = command("qgrey-admin", "allow", "198.51.100.99", "ALICE@example.org", "a@example.net",
                      gl_dir=gl_dir)
    assert allowed.stdout == "released 198.51.100.0/24 alice@example.org a@example.net\n"
    assert run(SMTPRCPTTO="a@example.net").stdout.startswith(b"HX-Greylist: passed (known sender)")
    assert command("qgrey-admin", "list", "--state", "passed", "--no-header",
                   gl_dir=gl_dir).stdout.count("\n") == 1

    white = command("qgrey-admin", "allow", "--client", "192.0.2.9/24", gl_dir=gl_dir)
    listed = os.path.join(gl_dir, "whitelist-clients")
    assert white.stdout == "whitelisted 192.0.2.0/24 in %s\n" % listed
    assert open(listed).read() == "192.0.2.0/24\n" and os.stat(listed).st_mode & 0o777 == 0o644
    again = command("qgrey-admin", "allow", "--client", "192.0.2.0/24", gl_dir=gl_dir)
    assert again.stdout == "already whitelisted 192.0.2.0/24 in %s\n" % listed
    skipped = run(TCPREMOTEIP="192.0.2.200")
    assert skipped.stdout == b"" and b"action=skip reason=whitelist-client" in skipped.stderr

    deleted = command("qgrey-admin", "delete", "--key", "198.51.100.0/24 <> b@example.net", gl_dir=gl_dir)
    assert (deleted.returncode, deleted.stdout) == (0, "deleted 198.51.100.0/24 <> b@example.net\n")
    again = command("qgrey-admin", "delete", "--key", "198.51.100.0/24 <> b@example.net", gl_dir=gl_dir)
    assert (again.returncode, again.stdout) == (1, "no such entry 198.51.100.0/24 <> b@example.net\n")


def test_stats(gl_dir):
    now = int(time.time())
    put(gl_dir, [
        ("192.0.2.0/24 a@x b@y", Entry(now - 100, now - 100, 0, 1)),
        ("192.0.2.0/24 a@x c@y", Entry(now - 3 * DAY, now - 3 * DAY, 0, 1)),
        ("192.0.2.0/24 a@x d@y", Entry(now - 10 * DAY, now - DAY, now - 10 * DAY, 3)),
        ("client 192.0.2.0/24", Entry(now - 40 * DAY, now, now, 0)),
        ("spf 198.51.100.0/24>example.org", Entry(now - 100, now - 100, now - 100, 1)),
        ("name 192.0.2.10>mail.example.org", Entry(now - 100, now - 100, now - 100, 1)),
        ("name 192.0.2.11>old.example.org", Entry(now - 2 * DAY, now - 2 * DAY, now - 2 * DAY, 1)),
    ])
    result = command("qgrey-admin", "stats", gl_dir=gl_dir)
    assert result.stdout == (
        "entries 7\n  waiting      1\n  passed       1\n  expired      2\n  counting     0\n"
        "  whitelisted  1\n  trapped      0\n  reply        0\n  recorded     2\n"
        "never came back (retry window over, not retried) 1\n"
        "age (since first seen)\n"
        "  < 1h           3 %s\n  < 1d           0 \n  < 7d           2 %s\n"
        "  < 30d          1 %s\n  >= 30d         1 %s\n" % ("#" * 17, "#" * 11, "#" * 6, "#" * 6))


def test_list_shows_the_recorded_spf_passes_and_names_of_a_client(gl_dir):
    now = int(time.time())
    put(gl_dir, [
        ("spf 198.51.100.0/24>example.org", Entry(now - 100, now - 100, now - 100, 1)),
        ("spf 198.51.100.9>other.example", Entry(now - 100, now - 100, now - 100, 1)),
        ("spf 198.51.101.0/24>example.org", Entry(now - 100, now - 100, now - 100, 1)),
        ("name 198.51.100.9>mail.example.org", Entry(now - 100, now - 100, now - 100, 1)),
        ("name 198.51.100.10>mx.example.org", Entry(now - 100, now - 100, now - 100, 1)),
    ])

    def listed(client):
        result = command("qgrey-admin", "list", "--client", client, "--no-header", gl_dir=gl_dir)
        assert result.returncode == 0, result.stderr
        return [" ".join(line.split()[:1] + line.split()[-2:]) for line in result.stdout.splitlines()]
    # an address: its network's entries and its own
    assert listed("198.51.100.9") == [
        "recorded name 198.51.100.9>mail.example.org",
        "recorded spf 198.51.100.0/24>example.org",
        "recorded spf 198.51.100.9>other.example"]
    # a network: the entries of that network
    assert listed("198.51.101.0/24") == ["recorded spf 198.51.101.0/24>example.org"]
    assert command("qgrey-admin", "list", "--state", "recorded", "--no-header",
                   gl_dir=gl_dir).stdout.count("\n") == 5


def test_dump_load_round_trip_sqlite_to_dbm(run, gl_dir, tmp_path):
    run(SMTPRCPTTO="a@example.net")
    run(SMTPRCPTTO="b@example.net", SMTPMAILFROM="", TCPREMOTEIP="2001:db8::1")
    put(gl_dir, [("client 192.0.2.0/24", Entry(1, 2, 2, 5))])
    text = dump(gl_dir)
    assert text.startswith("qgrey-dump 1\n") and text.count("\n") == 4

    other = str(tmp_path / "copy")
    os.mkdir(other, 0o700)
    loaded = command("qgrey-admin", "load", gl_dir=other, stdin=text)
    assert (loaded.returncode, loaded.stdout) == (0, "loaded 3 entries\n")
    assert dump(other) == text

    # The dbm half: qgrey-admin as qgrey.install installs it for the
    # system's Python (Debian's, which has dbm.gnu).
    has_dbm = os.path.exists(SYSTEM_PYTHON) and subprocess.run(
        [SYSTEM_PYTHON, "-c", "import dbm.gnu"], capture_output=True).returncode == 0
    if not has_dbm:
        unavailable("%s has no dbm.gnu for the dbm half (Debian: python3-gdbm)" % SYSTEM_PYTHON)
    dbm_dir = str(tmp_path / "dbm")
    os.mkdir(dbm_dir, 0o700)
    env = {"PATH": "/usr/bin:/bin", "GL_DIR": dbm_dir, "GL_STORE": "dbm"}
    tool = [os.path.join(system_install(str(tmp_path / "installed")), "qgrey-admin")]
    subprocess.run(tool + ["load"], env=env, input=text, text=True, check=True, capture_output=True)
    assert os.path.exists(dbm_dir + "/qgrey.gdbm")
    back = subprocess.run(tool + ["dump"], env=env, text=True, capture_output=True)
    assert back.stdout == text


def test_load_refuses_a_bad_file_and_writes_nothing(gl_dir):
    bad = "qgrey-dump 1\n192.0.2.0/24 a@x b@y\t1\t2\t0\t1\n192.0.2.0/24 a@x c@y\t1\t2\n"
    result = command("qgrey-admin", "load", gl_dir=gl_dir, stdin=bad)
    assert (result.returncode, result.stderr) == (
        100, "qgrey-admin: fatal: line 3: not KEY<TAB>first<TAB>last<TAB>passed<TAB>tries\n")
    assert dump(gl_dir) == "qgrey-dump 1\n"
    header = command("qgrey-admin", "load", gl_dir=gl_dir, stdin="hello\n")
    assert header.returncode == 100 and "not a qgrey dump" in header.stderr


def test_bad_arguments_are_one_line(gl_dir):
    for args in (["bogus"], ["list", "--state", "nope"], ["allow", "a", "b"], []):
        result = command("qgrey-admin", *args, gl_dir=gl_dir)
        assert result.returncode == 100, args
        assert result.stderr.count("\n") == 1 and result.stderr.startswith("qgrey-admin: fatal: ")
    assert command("qgrey-admin", "list", "--help", gl_dir=gl_dir).returncode == 0


def test_broken_database(run, gl_dir):
    run()
    with open(gl_dir + "/qgrey.sqlite", "r+b") as db:
        db.seek(0)
        db.write(b"this is not SQLite" * 10)
    listed = command("qgrey-admin", "list", gl_dir=gl_dir)
    assert listed.returncode == 100
    assert listed.stderr.startswith("qgrey-admin: fatal: %s/qgrey.sqlite: " % gl_dir)
    assert listed.stderr.count("\n") == 1
    expired = command("qgrey-expire", gl_dir=gl_dir)
    assert expired.returncode == 100 and expired.stderr.startswith("qgrey-expire: fatal: ")
    checked = command("qgrey-admin", "check", gl_dir=gl_dir)
    assert checked.returncode == 1
    assert checked.stdout.startswith(NO_SMTPPLUGINS + "problem: database: ")
    assert "restore it from a qgrey-admin dump" in checked.stdout


# What check says first where qmail's plugin list is not at its default
# place (tests/test_check.py checks the list itself).
NO_SMTPPLUGINS = ("" if os.path.exists("/var/qmail/control/smtpplugins") else
                  "note: /var/qmail/control/smtpplugins does not exist: qgrey's entries in "
                  "qmail-spp's plugin list not checked (--smtpplugins PATH names another)\n")


def test_check(run, gl_dir):
    run()
    ok = command("qgrey-admin", "check", gl_dir=gl_dir)
    assert (ok.returncode, ok.stdout) == (0, NO_SMTPPLUGINS + "ok: GL_DIR=%s GL_STORE=sqlite\n" % gl_dir)
    bad = command("qgrey-admin", "check", gl_dir=gl_dir, env={"GL_DELAY": "soon"})
    assert bad.returncode == 1
    assert bad.stdout[len(NO_SMTPPLUGINS):].splitlines()[0] == (
        "problem: setting: GL_DELAY=soon from environment: not a duration (a number of seconds, "
        "optionally with s, m, h or d); using 300")


def test_check_as_user(run, tmp_path):
    needs_root()
    hidden = command("qgrey-admin", "check", "--user", "nobody", gl_dir=str(tmp_path))
    assert hidden.returncode == 1 and "not searchable by nobody" in hidden.stdout
    base = tempfile.mkdtemp()
    try:
        check_as_user(run, base)
    finally:
        shutil.rmtree(base)


def check_as_user(run, base):
    os.chmod(base, 0o755)
    gl_dir = base + "/state"
    os.mkdir(gl_dir, 0o700)
    run(GL_DIR=gl_dir)
    result = command("qgrey-admin", "check", "--user", "nobody", gl_dir=gl_dir)
    assert result.returncode == 1
    assert "is not writable by nobody" in result.stdout and "fix: chown nobody " in result.stdout
    for root, dirs, files in os.walk(gl_dir):
        for name in dirs + files + ["."]:
            os.chown(os.path.join(root, name), NOBODY, NOBODY)
    good = command("qgrey-admin", "check", "--user", "nobody", gl_dir=gl_dir)
    assert (good.returncode, good.stdout) == (0, NO_SMTPPLUGINS + "ok: GL_DIR=%s GL_STORE=sqlite\n" % gl_dir)
    os.chown(gl_dir + "/lock", 0, 0)
    lock = command("qgrey-admin", "check", "--user", "nobody", gl_dir=gl_dir)
    assert lock.returncode == 1
    assert lock.stdout == NO_SMTPPLUGINS + (
        "problem: {d}/lock belongs to root, not to nobody who owns GL_DIR (did root write it?); "
        "fix: chown nobody {d}/lock\nqgrey will not work as it should: 1 problem\n").format(d=gl_dir)
    unknown = command("qgrey-admin", "check", "--user", "no-such-user-x", gl_dir=gl_dir)
    assert (unknown.returncode, unknown.stderr) == (100, "qgrey-admin: fatal: no such user: no-such-user-x\n")


# qgrey-report

LOG = """\
@400000006553f1000000000a qgrey: action=greylist reason=new client=198.51.100.7 sender=alice@example.org recipient=bob@example.net waited=0
@400000006553f1010000000a qgrey: action=greylist reason=new client=192.0.2.5 sender=<> recipient=carol@example.net waited=0
@400000006553f1020000000a tcpserver: end 1234 status 0
@400000006553f1030000000a qgrey: action=greylist reason=early client=198.51.100.7 sender=alice@example.org recipient=bob@example.net waited=60
@400000006553f2000000000a qgrey: action=pass reason=delayed client=198.51.100.9 sender=Alice@example.org recipient=bob@example.net waited=400
qgrey: action=pass reason=known client=198.51.100.9 sender=alice@example.org recipient=bob@example.net waited=400
qgrey: action=skip reason=relayclient client=127.0.0.1 sender=a@b recipient=c@d
qgrey: action=error reason=lock-timeout client=192.0.2.5 sender=<> recipient=dave@example.net detail=no lock on x within the deadline; answered accept
"""


def test_report(gl_dir, tmp_path):
    path = tmp_path / "current"
    path.write_text(LOG)
    result = command("qgrey-report", "--list", str(path), gl_dir=gl_dir)
    assert result.returncode == 0, result.stderr
    assert result.stdout == """\
qgrey report: 7 decisions, 2023-11-14 22:13:10 to 2023-11-14 22:17:26 UTC

decisions
  error     lock-timeout           1
  greylist  new                    2
  greylist  early                  1
  pass      delayed                1
  pass      known                  1
  skip      relayclient            1

triplets greylisted that never came back: 1
  192.0.2.0/24 <> carol@example.net

delay of mail that passed after greylisting: 1 messages, mean 6m40s
  < 5m           0 
  5-10m          1 ########################################
  10-15m         0 
  15-30m         0 
  30m-1h         0 
  1-2h           0 
  2-4h           0 
  4-12h          0 
  12-24h         0 
  >= 1d          0 

clients greylisted most
          2 198.51.100.7
          1 192.0.2.5
"""
    exact = command("qgrey-report", gl_dir=gl_dir, env={"GL_MASK_IP": "0"}, stdin=LOG)
    assert "triplets greylisted that never came back: 2\n" in exact.stdout
    usage = command("qgrey-report", "--bogus", gl_dir=gl_dir)
    assert (usage.returncode, usage.stderr) == (100, "usage: qgrey-report [--list] [--html PAGE] [FILE...]\n")
    missing = command("qgrey-report", str(tmp_path / "nope"), gl_dir=gl_dir)
    assert missing.returncode == 111 and missing.stderr.startswith("qgrey-report: fatal: cannot read ")


def test_expire_gives_free_space_back_in_small_steps(run, gl_dir):
    now = int(time.time())
    old = Entry(now - 3 * DAY, now - 3 * DAY, 0, 1)
    put(gl_dir, [("192.0.2.0/24 s%05d@example.org r@example.net" % i, old) for i in range(20000)])
    run()  # one live triplet, written by the plugin
    path = os.path.join(gl_dir, "qgrey.sqlite")
    before = os.path.getsize(path)
    result = command("qgrey-expire", gl_dir=gl_dir)
    assert result.returncode == 0, result.stderr
    removed, shrunk = result.stdout.splitlines()
    assert removed.startswith("removed 20000: never-retried=20000 lifetime-over=0; kept 1;")
    assert re.match(r"shrink: \d+ KiB -> \d+ KiB in steps of 128 pages", shrunk), shrunk
    assert os.path.getsize(path) < before / 10
    from qgrey.store import sqlitefile
    live = b"198.51.100.0/24 alice@example.org bob@example.net"
    assert sqlitefile.lookup(path, b"entries", live)[0] == live  # read directly, no fallback
    assert b"reason=early" in run().stderr
