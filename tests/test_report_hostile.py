"""qgrey-report and qgrey-admin load on hostile input, run as installed
commands: the page is never written through a link planted beside it; the
report counts only the plugin's own lines, shows control characters
visibly, and skips (counting them) lines it cannot parse; load checks the
whole dump before it writes anything."""
import os
import stat
import subprocess
import sys

from conftest import NOBODY, needs_root

BIN = os.path.dirname(sys.executable)
SECRET = b"root only: never overwritten\n"


def command(name, *args, gl_dir, stdin=None):
    """An installed tool -> CompletedProcess (bytes): environment only, cwd /."""
    return subprocess.run([os.path.join(BIN, name)] + list(args), cwd="/", input=stdin,
                          env={"PATH": "/usr/bin:/bin", "GL_DIR": gl_dir},
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)


LOG = b"""\
@400000006553f1000000000a qgrey: action=greylist reason=new client=198.51.100.7 sender=a@example.org recipient=b@example.net waited=0
"""


# --html PAGE in a directory another user can write

def spray(page, target, first_pid, count):
    """Links at PAGE.<pid>.tmp for count pids from first_pid, made by nobody."""
    names = []
    for pid in range(first_pid, first_pid + count):
        name = "%s.%d.tmp" % (page, pid)
        os.symlink(target, name)
        os.lchown(name, NOBODY, NOBODY)
        names.append(os.path.basename(name))
    return names


def test_page_never_follows_links_sprayed_at_temporary_names(tmp_path, gl_dir):
    needs_root()
    secret = tmp_path / "secret"
    secret.write_bytes(SECRET)
    secret.chmod(0o600)
    log = tmp_path / "current"
    log.write_bytes(LOG)
    for attempt in range(5):  # until the report's pid is among the sprayed ones
        www = tmp_path / ("www%d" % attempt)  # the web server's directory, nobody's
        www.mkdir(mode=0o755)
        os.chown(www, NOBODY, NOBODY)
        page = str(www / "qgrey.html")
        with open("/proc/sys/kernel/ns_last_pid") as f:
            last = int(f.read())
        links = spray(page, str(secret), last + 1, 300)
        os.symlink(str(secret), page)  # and one at PAGE itself
        os.lchown(page, NOBODY, NOBODY)
        child = subprocess.Popen([os.path.join(BIN, "qgrey-report"), "--html", page, str(log)],
                                 cwd="/", env={"PATH": "/usr/bin:/bin", "GL_DIR": gl_dir},
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = child.communicate(timeout=120)
        assert (child.returncode, err) == (0, b"")
        assert out.startswith(b"qgrey report: 1 decisions, 2023-11-14 22:13:10 to ")
        if last < child.pid <= last + 300:
            break
    else:
        raise AssertionError("the report's pid was never among the 300 sprayed")
    assert secret.read_bytes() == SECRET
    st = os.stat(secret)
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_nlink) == (0o600, 0, 1)
    st = os.lstat(page)
    assert stat.S_ISREG(st.st_mode) and (stat.S_IMODE(st.st_mode), st.st_uid) == (0o644, 0)
    with open(page, "rb") as f:
        assert f.read(16) == b"<!DOCTYPE html>\n"
    assert sorted(os.listdir(www)) == sorted(links + ["qgrey.html"])  # nothing left behind
    for name in links:
        assert os.readlink(www / name) == str(secret)


def test_page_is_0644_whatever_the_umask(tmp_path, gl_dir):
    page = tmp_path / "page.html"
    result = subprocess.run(["sh", "-c", 'umask 077; exec "$0" "$@"', os.path.join(BIN, "qgrey-report"),
                             "--html", str(page)], input=LOG, env={"PATH": "/usr/bin:/bin", "GL_DIR": gl_dir},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
    assert (result.returncode, result.stderr) == (0, b"")
    assert stat.S_IMODE(os.stat(page).st_mode) == 0o644
    assert sorted(os.listdir(tmp_path)) == ["page.html", "state"]


# Which lines count

OWN = b"""\
@400000006553f1000000000a qgrey: action=greylist reason=new client=198.51.100.7 sender=a@example.org recipient=b@example.net waited=0
@400000006553f1010000000a rblsmtpd: 192.0.2.9 pid 4242: 451 qgrey: action=pass reason=known client=192.0.2.9
@400000006553f1020000000a tcpserver: status: 1/40 qgrey: action=pass reason=known
Nov 14 22:13:15 mx smtpd: 1699999995.123456 qgrey: action=pass reason=known client=192.0.2.10 sender=c@example.org recipient=d@example.net waited=0
2023-11-14T22:13:16.000000+00:00 mx qmail-smtpd[812]: qgrey: action=skip reason=relayclient client=127.0.0.1 sender=e@x recipient=f@y
qgrey: action=greylist reason=new client=203.0.113.5 sender=<> recipient=g@example.net waited=0
Nov 14 22:13:17 mx smtpd: something qgrey: action=pass reason=known
qgrey: warning: GL_DIR/config line 3: unknown setting; skipped
helo qgrey: action=pass reason=known client=192.0.2.11 sender=h@x recipient=i@y
"""


def test_only_lines_whose_program_is_qgrey_count(gl_dir):
    result = command("qgrey-report", "--list", gl_dir=gl_dir, stdin=OWN)
    assert (result.returncode, result.stderr) == (0, b"")
    assert result.stdout == b"""\
qgrey report: 4 decisions, 2023-11-14 22:13:10 to 2023-11-14 22:13:10 UTC

decisions
  greylist  new                    2
  pass      known                  1
  skip      relayclient            1

triplets greylisted that never came back: 2
  198.51.100.0/24 a@example.org b@example.net
  203.0.113.0/24 <> g@example.net

delay of mail that passed after greylisting: 0 messages

clients greylisted most
          1 198.51.100.7
          1 203.0.113.5
"""


# Control characters reach no terminal

TERMINAL = (
    b"@400000006553f1000000000a qgrey: action=greylist reason=new client=\x1b]0;owned\x07 "
    b"sender=a@x recipient=b@x waited=0\n"
    b"@400000006553f1010000000a qgrey: action=greylist reason=new client=\x1b[2J\x7f "
    b"sender=a@x recipient=b@x waited=0\n"
    b"@400000006553f1020000000a qgrey: action=greylist reason=new client=\xc2\x9b31m\\x1b "
    b"sender=a@x recipient=b@x waited=0\n"
    b"@400000006553f1030000000a qgrey: action=pass reason=delayed client=192.0.2.1 "
    b"pool=\x1b[31mred sender=a@x recipient=b@x waited=400\n"
    b"@400000006553f1040000000a qgrey: action=pass reason=learning client=192.0.2.1 "
    b"sender=a@x recipient=b@x waited=0 detail=would greylist: \x1b[5mnew\x1b[0m; x\n"
)


def test_control_characters_are_shown_visibly(gl_dir):
    result = command("qgrey-report", "--list", gl_dir=gl_dir, stdin=TERMINAL)
    assert (result.returncode, result.stderr) == (0, b"")
    assert result.stdout == b"""\
qgrey report: 5 decisions, 2023-11-14 22:13:10 to 2023-11-14 22:13:14 UTC

decisions
  greylist  new                    3
  pass      delayed                1
  pass      learning               1

triplets greylisted that never came back: 3
  %1B[2j%7F a@x b@x
  %1B]0;owned%07 a@x b@x
  ??31m\\x5cx1b a@x b@x

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
          1 \\x1b[2J\\x7f
          1 \\x1b]0;owned\\x07
          1 ??31m\\x5cx1b

delay of host pools (GL_HOST_POOLS) that passed after greylisting
          1 mean 6m40s   longest 6m40s   \\x1b[31mred

learning mode: would have greylisted 1
  \\x1b[5mnew\\x1b[0m         1
"""


# Lines that cannot be parsed: skipped, counted, never a traceback

BROKEN = (
    b"@ffffffffffffffffffffffff qgrey: action=pass reason=known client=192.0.2.1 sender=a@x recipient=b@x\n"
    b"@4000000000000000ffffffff qgrey: action=pass reason=known client=192.0.2.1 sender=a@x recipient=b@x\n"
    b"@400000006553f100 qgrey: action=pass reason=known client=192.0.2.1 sender=a@x recipient=b@x\n"
    b"@+00000006553f1000000000a qgrey: action=pass reason=known client=192.0.2.1 sender=a@x recipient=b@x\n"
    b"@400000006553f1000000000a qgrey: action=pass reason=delayed client=192.0.2.1 sender=a@x "
    b"recipient=b@x waited=" + b"9" * 5000 + b"\n"
    b"@400000006553f1000000000a qgrey: action=pass reason=known  client=192.0.2.1\n"
    b"qgrey: action=pass reason=known client=192.0.2.1 client=192.0.2.2 sender=a@x recipient=b@x\n"
    b"qgrey: action=pass client=192.0.2.1 sender=a@x recipient=b@x\n"
    b"qgrey: action=\x1b[2J reason=known client=192.0.2.1 sender=a@x recipient=b@x\n"
    b"qgrey: action=pass reason=known client=192.0.2.1 detail=" + b"x" * 20000 + b"\n"
    b"@400000006553f1000000000a qgrey: action=pass reason=known client=192.0.2.1 sender=a@x recipient=b@x\n"
    b"@ffffffffffffffffffffffff tcpserver: end 1 status 0\n"
)


def test_lines_that_cannot_be_parsed_are_skipped_and_counted(tmp_path, gl_dir):
    page = tmp_path / "page.html"
    result = command("qgrey-report", "--html", str(page), gl_dir=gl_dir, stdin=BROKEN)
    assert (result.returncode, result.stderr) == (0, b"")
    assert result.stdout == b"""\
qgrey report: 1 decisions, 2023-11-14 22:13:10 to 2023-11-14 22:13:10 UTC
skipped 10 qgrey lines that could not be parsed

decisions
  pass      known                  1

triplets greylisted that never came back: 0

delay of mail that passed after greylisting: 0 messages

clients greylisted most
"""
    assert b'Skipped <span id="malformed">10</span> qgrey lines that could not be parsed.' \
        in page.read_bytes()


# qgrey-admin load: the whole file is checked before anything is written

def dump(lines):
    return ("qgrey-dump 1\n" + "".join(lines)).encode()


def entry(i, first="1700000000"):
    return "198.51.100.0/24 s%d@example.org r@example.net\t%s\t1700000100\t0\t1\n" % (i, first)


KEPT = b"qgrey-dump 1\n198.51.100.0/24 s2@example.org r@example.net\t1600000000\t1600000000\t0\t7\n"


def test_load_refuses_a_bad_value_at_line_1200_before_writing_anything(tmp_path, gl_dir):
    loaded = command("qgrey-admin", "load", gl_dir=gl_dir, stdin=KEPT)
    assert (loaded.returncode, loaded.stdout, loaded.stderr) == (0, b"loaded 1 entries\n", b"")
    for line, value, error in (
            ("first", "99999999999999999999999", b"first=99999999999999999999999 is more than "
             b"253402300799 (9999-12-31 23:59:59 UTC)"),
            ("last", "18446744073709551616", b"last=18446744073709551616 is more than "
             b"253402300799 (9999-12-31 23:59:59 UTC)"),
            ("passed", "253402300800", b"passed=253402300800 is more than 253402300799 "
             b"(9999-12-31 23:59:59 UTC)"),
            ("tries", "2147483648", b"tries=2147483648 is more than 2147483647"),
            ("first", "9" * 30, b"first=99999999999999999999... is more than 253402300799 "
             b"(9999-12-31 23:59:59 UTC)"),
            ("key", None, b"key longer than 4096 characters")):
        lines = [entry(i) for i in range(2, 1500)]
        fields = lines[1198].rstrip("\n").split("\t")  # line 1200 of the file
        if value is None:
            fields[0] = "198.51.100.0/24 %s@example.org r@example.net" % ("s" * 4055)  # 4,097
        else:
            fields[("first", "last", "passed", "tries").index(line) + 1] = value
        lines[1198] = "\t".join(fields) + "\n"
        path = tmp_path / "dump"
        path.write_bytes(dump(lines))
        result = command("qgrey-admin", "load", str(path), gl_dir=gl_dir)
        assert (result.returncode, result.stdout, result.stderr) == (
            100, b"", b"qgrey-admin: fatal: line 1200: " + error + b"\n")
        after = command("qgrey-admin", "dump", gl_dir=gl_dir)
        assert (after.returncode, after.stdout) == (0, KEPT)
    ok = tmp_path / "ok"
    ok.write_bytes(dump([entry(2, "253402300799")]))
    result = command("qgrey-admin", "load", str(ok), gl_dir=gl_dir)
    assert (result.returncode, result.stdout, result.stderr) == (0, b"loaded 1 entries\n", b"")
    assert command("qgrey-admin", "dump", gl_dir=gl_dir).stdout == (
        b"qgrey-dump 1\n198.51.100.0/24 s2@example.org r@example.net\t253402300799\t1700000100\t0\t1\n")


def test_load_refuses_a_line_longer_than_any_dump_has(tmp_path, gl_dir):
    path = tmp_path / "dump"
    path.write_bytes(b"qgrey-dump 1\n" + b"x" * 100000)
    result = command("qgrey-admin", "load", str(path), gl_dir=gl_dir)
    assert (result.returncode, result.stdout, result.stderr) == (
        100, b"", b"qgrey-admin: fatal: line 2: longer than 4160 characters\n")
    assert os.listdir(gl_dir) == []
