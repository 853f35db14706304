"""The tools' documented failures and the dbm kinds under the tools, run as
processes: qgrey-expire(8), qgrey-admin(8) EXIT STATUS (0 done, 100 usage or
a damaged database, 111 temporary failure; every failure one line
"TOOL: fatal: ..." on stderr), qgrey-expire --vacuum and SQLite files made
before incremental vacuum. Databases are written here with the sqlite3 and
dbm modules, not through qgrey.
"""
import fcntl
import os
import pathlib
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from skips import kind_params

BIN = os.path.dirname(sys.executable)
DAY = 86400
KEY = "198.51.100.0/24 alice@example.org bob@example.net"
DBM_FILES = {"dbm.gnu": "qgrey.gdbm", "dbm.ndbm": "qgrey.ndbm"}


def dbm_kinds():
    """dbm.gnu and dbm.ndbm; one this Python lacks is a listed skip (skips.py)."""
    return [param for param in kind_params() if param.values[0] in DBM_FILES]


def tool(name, *args, gl_dir, env=None, **kwargs):
    environment = {"GL_DIR": gl_dir}
    environment.update(env or {})
    return subprocess.run([os.path.join(BIN, name)] + list(args), env=environment, cwd="/",
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=120, **kwargs)


def sqlite_file(gl_dir, rows, incremental=True):
    """GL_DIR/qgrey.sqlite with rows (key, first, last, passed, tries)."""
    db = sqlite3.connect(gl_dir + "/qgrey.sqlite")
    db.execute("PRAGMA auto_vacuum=%s" % ("INCREMENTAL" if incremental else "NONE"))
    db.execute("CREATE TABLE entries (key TEXT PRIMARY KEY, first INTEGER NOT NULL, "
               "last INTEGER NOT NULL, passed INTEGER NOT NULL, tries INTEGER NOT NULL) "
               "WITHOUT ROWID")
    db.executemany("INSERT INTO entries VALUES (?, ?, ?, ?, ?)", rows)
    db.commit()
    db.close()


def auto_vacuum(gl_dir):
    db = sqlite3.connect(gl_dir + "/qgrey.sqlite")
    try:
        return db.execute("PRAGMA auto_vacuum").fetchone()[0]
    finally:
        db.close()


def never_retried(count, now):
    """Triplets still waiting, first seen 9 days ago: past GL_RETRY_WINDOW (2d)."""
    return [("192.0.2.0/24 s%05d@example.org r@example.net" % i, now - 9 * DAY, now - 9 * DAY, 0, 1)
            for i in range(count)]


def kib(text):
    return int(text.split()[0])


# qgrey-expire --vacuum, and files made before incremental vacuum.

def test_expire_vacuum_rewrites_the_file_whatever_it_frees(gl_dir):
    now = int(time.time())
    live = [("192.0.2.0/24 live%05d@example.org r@example.net" % i, now, now, now, 2)
            for i in range(3000)]
    sqlite_file(gl_dir, never_retried(300, now) + live)
    before = os.path.getsize(gl_dir + "/qgrey.sqlite")
    plain = tool("qgrey-expire", gl_dir=gl_dir)
    # About 9% freed: a plain run releases the free pages in steps.
    lines = plain.stdout.decode().splitlines()
    assert (plain.returncode, plain.stderr, len(lines)) == (0, b"", 2)
    assert lines[0].startswith("removed 300: never-retried=300 lifetime-over=0; kept 3000; ")
    assert lines[1].startswith("shrink: %d KiB -> " % (before >> 10))
    assert " in steps of 128 pages, " in lines[1]
    forced = tool("qgrey-expire", "--vacuum", gl_dir=gl_dir)
    lines = forced.stdout.decode().splitlines()
    assert (forced.returncode, forced.stderr, len(lines)) == (0, b"", 2)
    assert lines[0].startswith("removed 0: never-retried=0 lifetime-over=0; kept 3000; ")
    # --vacuum rewrites (VACUUM), not in steps.
    assert lines[1].startswith("shrink: ") and " in steps of " not in lines[1]
    assert lines[1].endswith(" s")
    assert auto_vacuum(gl_dir) == 2


def test_old_non_incremental_file_is_vacuumed_when_a_quarter_is_free(gl_dir):
    now = int(time.time())
    live = [("192.0.2.0/24 live%05d@example.org r@example.net" % i, now, now, now, 2)
            for i in range(1000)]
    sqlite_file(gl_dir, never_retried(3000, now) + live, incremental=False)
    assert auto_vacuum(gl_dir) == 0
    before = os.path.getsize(gl_dir + "/qgrey.sqlite")
    result = tool("qgrey-expire", gl_dir=gl_dir)
    lines = result.stdout.decode().splitlines()
    assert (result.returncode, result.stderr, len(lines)) == (0, b"", 2)
    assert lines[0].startswith("removed 3000: never-retried=3000 lifetime-over=0; kept 1000; ")
    head, _, tail = lines[1].partition(" -> ")
    assert head == "shrink: %d KiB" % (before >> 10)
    after = os.path.getsize(gl_dir + "/qgrey.sqlite")
    assert after < before / 2 and tail.startswith("%d KiB in " % (after >> 10))
    assert " in steps of " not in tail
    assert auto_vacuum(gl_dir) == 2  # converted: steps from now on


def test_old_non_incremental_file_with_little_free_is_left_alone(gl_dir):
    now = int(time.time())
    live = [("192.0.2.0/24 live%05d@example.org r@example.net" % i, now, now, now, 2)
            for i in range(2000)]
    sqlite_file(gl_dir, never_retried(100, now) + live, incremental=False)
    result = tool("qgrey-expire", gl_dir=gl_dir)
    lines = result.stdout.decode().splitlines()
    assert (result.returncode, result.stderr, len(lines)) == (0, b"", 2)
    assert lines[1].startswith("shrink: not needed (") and "% free of " in lines[1]
    assert auto_vacuum(gl_dir) == 0


# The dbm kinds under the tools.

def dbm_file(gl_dir, kind, items):
    module = __import__(kind, fromlist=["open"])
    db = module.open(gl_dir + "/" + DBM_FILES[kind], "c", 0o600)
    for key, value in items:
        db[key.encode()] = value.encode()
    db.close()


@pytest.mark.parametrize("kind", dbm_kinds())
def test_expire_on_dbm(gl_dir, kind):
    now = int(time.time())
    items = [("192.0.2.0/24 s%d@example.org r@example.net" % i,
              "%d %d 0 1" % (now - 9 * DAY, now - 9 * DAY)) for i in range(40)]
    items.append((KEY, "%d %d %d 2" % (now, now, now)))
    dbm_file(gl_dir, kind, items)
    env = {"GL_STORE": kind}
    result = tool("qgrey-expire", gl_dir=gl_dir, env=env)
    lines = result.stdout.decode().splitlines()
    assert (result.returncode, result.stderr, len(lines)) == (0, b"", 2)
    assert lines[0].startswith("removed 40: never-retried=40 lifetime-over=0; kept 1; ")
    # dbm has no free-page count: the share removed (40 of 41) decides.
    assert lines[1].startswith("shrink: ")
    dumped = tool("qgrey-admin", "dump", gl_dir=gl_dir, env=env)
    assert (dumped.returncode, dumped.stderr) == (0, b"")
    assert dumped.stdout == ("qgrey-dump 1\n%s\t%d\t%d\t%d\t2\n" % (KEY, now, now, now)).encode()
    forced = tool("qgrey-expire", "--vacuum", gl_dir=gl_dir, env=env)
    lines = forced.stdout.decode().splitlines()
    assert (forced.returncode, forced.stderr, len(lines)) == (0, b"", 2)
    assert lines[0].startswith("removed 0: never-retried=0 lifetime-over=0; kept 1; ")
    assert lines[1].startswith("shrink: ")


@pytest.mark.parametrize("kind", dbm_kinds())
def test_malformed_value_on_dbm(gl_dir, run, kind):
    dbm_file(gl_dir, kind, [(KEY, "not an entry")])
    result = run(GL_STORE=kind, GL_ON_ERROR="defer")
    assert (result.returncode, result.stdout, result.stderr) == (
        0, b"E451 4.3.0 Greylisting is temporarily unavailable, please try again later\n",
        b"qgrey: action=error reason=database client=198.51.100.7 sender=alice@example.org "
        b"recipient=bob@example.net detail=malformed value b'not an entry'; answered defer\n")
    listed = tool("qgrey-admin", "dump", gl_dir=gl_dir, env={"GL_STORE": kind})
    assert (listed.returncode, listed.stdout, listed.stderr) == (
        100, b"qgrey-dump 1\n", b"qgrey-admin: fatal: malformed value b'not an entry'\n")


@pytest.mark.parametrize("kind", dbm_kinds())
def test_dbm_database_that_is_not_a_regular_file(gl_dir, run, kind):
    path = gl_dir + "/" + DBM_FILES[kind]
    os.mkdir(path + (".db" if kind == "dbm.ndbm" else ""))
    result = run(GL_STORE=kind, GL_ON_ERROR="defer")
    shown = path + (".db" if kind == "dbm.ndbm" else "")
    assert (result.returncode, result.stdout, result.stderr) == (
        0, b"E451 4.3.0 Greylisting is temporarily unavailable, please try again later\n",
        ("qgrey: action=error reason=database client=198.51.100.7 sender=alice@example.org "
         "recipient=bob@example.net detail=%s is not a regular file; answered defer\n"
         % shown).encode())
    expired = tool("qgrey-expire", gl_dir=gl_dir, env={"GL_STORE": kind})
    assert (expired.returncode, expired.stdout, expired.stderr) == (
        100, b"", ("qgrey-expire: fatal: %s is not a regular file\n" % shown).encode())


@pytest.mark.parametrize("kind", dbm_kinds())
def test_dbm_read_waits_for_the_lock_until_the_deadline(gl_dir, run, kind):
    """dbm reads take a shared flock on GL_DIR/lock: held, the read fails."""
    dbm_file(gl_dir, kind, [])
    fd = os.open(gl_dir + "/lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        result = run(GL_STORE=kind, GL_LOCK_TIMEOUT="0", GL_ON_ERROR="defer")
    finally:
        os.close(fd)
    assert (result.returncode, result.stdout, result.stderr) == (
        0, b"E451 4.3.0 Greylisting is temporarily unavailable, please try again later\n",
        ("qgrey: action=error reason=lock-timeout client=198.51.100.7 sender=alice@example.org "
         "recipient=bob@example.net detail=no lock on %s/lock within the deadline; "
         "answered defer\n" % gl_dir).encode())


# tool.main: each fatal error, its one line and its exit status.

def test_fatal_store_error_lock_timeout_is_111(gl_dir):
    sqlite_file(gl_dir, never_retried(3, int(time.time())))
    fd = os.open(gl_dir + "/lock.queue", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        result = tool("qgrey-expire", gl_dir=gl_dir, env={"GL_LOCK_TIMEOUT": "0"})
    finally:
        os.close(fd)
    assert (result.returncode, result.stdout, result.stderr) == (
        111, b"", ("qgrey-expire: fatal: no lock on %s/lock.queue within the deadline\n"
                   % gl_dir).encode())


def test_fatal_missing_gl_dir_is_111(tmp_path):
    missing = str(tmp_path / "missing")
    result = tool("qgrey-expire", gl_dir=missing)
    assert (result.returncode, result.stdout, result.stderr) == (
        111, b"", ("qgrey-expire: fatal: GL_DIR %s: No such file or directory\n"
                   % missing).encode())


def test_fatal_usage_is_100(gl_dir):
    result = tool("qgrey-expire", "--now", gl_dir=gl_dir)
    assert (result.returncode, result.stdout, result.stderr) == (
        100, b"", b"usage: qgrey-expire [--vacuum]\n")


def test_fatal_failure_is_100(gl_dir):
    result = tool("qgrey-admin", "allow", gl_dir=gl_dir)
    assert (result.returncode, result.stdout, result.stderr) == (
        100, b"", b"qgrey-admin: fatal: give CLIENT SENDER RECIPIENT (as in the envelope; <> "
        b"for the null sender) or --key\n")


def test_fatal_os_error_names_the_file_and_is_111(gl_dir, tmp_path):
    missing = str(tmp_path / "no-such-dump")
    result = tool("qgrey-admin", "load", missing, gl_dir=gl_dir)
    assert (result.returncode, result.stdout, result.stderr) == (
        111, b"", ("qgrey-admin: fatal: No such file or directory: %s\n" % missing).encode())


def test_fatal_not_ascii_is_100(gl_dir, tmp_path):
    sqlite_file(gl_dir, [("192.0.2.0/24 caf\u00e9@example.org r@example.net", 1, 1, 0, 1)])
    out = str(tmp_path / "dump")
    result = tool("qgrey-admin", "dump", out, gl_dir=gl_dir)
    assert result.returncode == 100 and result.stdout == b""
    assert result.stderr.startswith(b"qgrey-admin: fatal: not ASCII text: 'ascii' codec can't "
                                    b"encode character '\\xe9' in position ")
    assert result.stderr.count(b"\n") == 1 and result.stderr.endswith(b"\n")


def test_reader_gone_is_no_error(gl_dir):
    now = int(time.time())
    sqlite_file(gl_dir, [("192.0.2.0/24 s%05d@example.org r@example.net" % i, now, now, now, 2)
                         for i in range(20000)])
    read, write = os.pipe()
    os.close(read)  # the reader (head, say) has gone before the first write
    try:
        result = subprocess.run([os.path.join(BIN, "qgrey-admin"), "dump"], env={"GL_DIR": gl_dir},
                                cwd="/", stdin=subprocess.DEVNULL, stdout=write,
                                stderr=subprocess.PIPE, timeout=120)
    finally:
        os.close(write)
    assert (result.returncode, result.stderr) == (0, b"")


def test_interrupted_is_111(gl_dir):
    sqlite_file(gl_dir, never_retried(3, int(time.time())))
    fd = os.open(gl_dir + "/lock.queue", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        # --vacuum waits for the lock as long as it takes (at least 600 s).
        # ^C as at a terminal: started with SIGINT's default action, which a
        # run in the background (a shell's `&`) would have ignored.
        process = subprocess.Popen([os.path.join(BIN, "qgrey-expire"), "--vacuum"],
                                   env={"GL_DIR": gl_dir}, cwd="/", stdin=subprocess.DEVNULL,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # until it waits in flock
            with open("/proc/%d/wchan" % process.pid) as f:
                if "flock" in f.read() or _waits_on_lock(process.pid):
                    break
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        os.close(fd)
    assert (process.returncode, out, err) == (111, b"", b"qgrey-expire: fatal: interrupted\n")


def _waits_on_lock(pid):
    """Whether pid has GL_DIR's lock.queue open (it is then in its lock wait)."""
    try:
        return any(os.readlink("/proc/%d/fd/%s" % (pid, fd)).endswith("/lock.queue")
                   for fd in os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return False


@pytest.fixture
def reachable_tmp():
    """A directory other users can reach (pytest's tmp_path is under a 0700 one)."""
    import shutil
    import tempfile
    path = tempfile.mkdtemp(prefix="qgrey-tools-")
    os.chmod(path, 0o755)
    yield pathlib.Path(path)
    shutil.rmtree(path)


def test_modules_are_loaded_before_taking_gl_dirs_owners_ids(reachable_tmp):
    """Run as root, a tool takes the ids of GL_DIR's owner first, having
    loaded what it may import later: qgrey here is a copy in a directory
    that user cannot read (a Python under /root, say), and explain, which
    imports the rules, keys and identity modules only when it runs, still
    answers."""
    from conftest import NOBODY, needs_root
    needs_root()
    import shutil
    import qgrey
    tmp_path = reachable_tmp
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    shutil.copytree(os.path.dirname(qgrey.__file__), str(private / "qgrey"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    gl_dir = tmp_path / "state"
    gl_dir.mkdir(mode=0o700)
    os.chown(str(gl_dir), NOBODY, NOBODY)
    os.chmod(str(tmp_path), 0o755)
    code = "import sys; sys.path.insert(0, %r); from qgrey.admin import main; sys.exit(main())" % (
        str(private))
    if os.environ.get("QGREY_COVERAGE"):  # .ci/coverage: -S reads no .pth
        import qgrey_coverage_hook
        code = "import sys; sys.path.insert(0, %r); import qgrey_coverage_hook; " \
            "qgrey_coverage_hook.start(); " % os.path.dirname(qgrey_coverage_hook.__file__) + code
    # -S: no site-packages, so that qgrey is this copy's (an editable install's
    # finder would take it from the checkout).
    result = subprocess.run([sys.executable, "-I", "-S", "-c", code, "explain", "192.0.2.1",
                             "a@example.org", "b@example.net"],
                            env={"GL_DIR": str(gl_dir)}, cwd="/", stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    assert (result.returncode, result.stderr) == (0, b""), result
    lines = result.stdout.decode().splitlines()
    assert lines[0].startswith("explain: client 192.0.2.1 sender a@example.org recipient "
                               "b@example.net at "), lines
    assert lines[1] == "answer: greylist (reason=new): 451 4.7.1 Greylisted, please try again later"


def test_a_module_that_cannot_be_loaded_is_one_line_and_111(capsys):
    """The tools' boundary: an ImportError (a module out of reach) is one
    fatal line and exit status 111, never a traceback."""
    from qgrey import tool

    def run(argv, environ, out):
        raise ImportError("No module named 'gone'")
    with pytest.raises(SystemExit) as stop:
        tool.main("qgrey-admin", run)
    assert stop.value.code == 111
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == (
        "", "qgrey-admin: fatal: cannot load a module: No module named 'gone'\n")


# More of the dbm kinds: what a damaged file, a bad entry or a missing
# module costs.

def dbm_gnu():
    return [param for param in kind_params() if param.values[0] == "dbm.gnu"]


@pytest.mark.parametrize("kind", dbm_gnu())
def test_damaged_dbm_file_is_a_database_error(gl_dir, run, kind):
    path = gl_dir + "/qgrey.gdbm"
    with open(path, "wb") as f:
        f.write(b"\xa5" * 5000)
    result = run(GL_STORE=kind, GL_ON_ERROR="defer")
    assert (result.returncode, result.stdout, result.stderr) == (
        0, b"E451 4.3.0 Greylisting is temporarily unavailable, please try again later\n",
        ("qgrey: action=error reason=database client=198.51.100.7 sender=alice@example.org "
         "recipient=bob@example.net detail=%s: Bad magic number; answered defer\n"
         % path).encode())
    expired = tool("qgrey-expire", gl_dir=gl_dir, env={"GL_STORE": kind})
    assert (expired.returncode, expired.stdout, expired.stderr) == (
        100, b"", ("qgrey-expire: fatal: %s: Bad magic number\n" % path).encode())


@pytest.mark.parametrize("kind", dbm_kinds())
def test_check_names_a_bad_dbm_entry_and_delete_works(gl_dir, kind):
    dbm_file(gl_dir, kind, [(KEY, "bad"), ("192.0.2.0/24 x@example.org y@example.net", "1 1 0 1")])
    env = {"GL_STORE": kind}
    checked = tool("qgrey-admin", "check", "--smtpplugins", "/nonexistent", gl_dir=gl_dir, env=env)
    assert checked.returncode == 1
    assert ("problem: database %s/%s: bad entry b'%s': b'bad'\n"
            % (gl_dir, DBM_FILES[kind], KEY)).encode() in checked.stdout + checked.stderr
    deleted = tool("qgrey-admin", "delete", "192.0.2.1", "x@example.org", "y@example.net",
                   gl_dir=gl_dir, env=env)
    assert (deleted.returncode, deleted.stdout, deleted.stderr) == (
        0, b"deleted 192.0.2.0/24 x@example.org y@example.net\n", b"")
    again = tool("qgrey-admin", "delete", "192.0.2.1", "x@example.org", "y@example.net",
                 gl_dir=gl_dir, env=env)
    assert (again.returncode, again.stdout, again.stderr) == (
        1, b"no such entry 192.0.2.0/24 x@example.org y@example.net\n", b"")


def test_a_dbm_kind_this_python_lacks_is_a_database_error(gl_dir, run):
    """GL_STORE=dbm.sqlite3 needs Python 3.13; before, the store says so."""
    result = run(GL_STORE="dbm.sqlite3", GL_ON_ERROR="defer")
    try:
        import dbm.sqlite3  # noqa: F401
    except ImportError:
        pass
    else:  # present: it decides
        assert (result.returncode, result.stdout, result.stderr) == (
            0, b"E451 4.7.1 Greylisted, please try again later\n",
            b"qgrey: action=greylist reason=new client=198.51.100.7 sender=alice@example.org "
            b"recipient=bob@example.net waited=0\n")
        return
    assert (result.returncode, result.stdout, result.stderr) == (
        0, b"E451 4.3.0 Greylisting is temporarily unavailable, please try again later\n",
        b"qgrey: action=error reason=database client=198.51.100.7 sender=alice@example.org "
        b"recipient=bob@example.net detail=GL_STORE=dbm.sqlite3: this Python has not "
        b"dbm.sqlite3 (dbm.dumb is not safe enough); use GL_STORE=sqlite; answered defer\n")


# qgrey-admin(8) and qgrey-report(8), EXIT STATUS.

def test_admin_redis_unreachable_is_111(gl_dir, tmp_path):
    missing = str(tmp_path / "no-redis.sock")
    result = tool("qgrey-admin", "dump", gl_dir=gl_dir,
                  env={"GL_STORE": "redis", "GL_REDIS": "unix:" + missing})
    assert (result.returncode, result.stdout, result.stderr) == (
        111, b"qgrey-dump 1\n", ("qgrey-admin: fatal: cannot connect to Redis unix:%s: "
                                 "No such file or directory\n" % missing).encode())


def test_admin_allow_client_refuses_a_list_it_will_not_edit(gl_dir):
    path = gl_dir + "/whitelist-clients"
    os.mkdir(path)
    result = tool("qgrey-admin", "allow", "--client", "192.0.2.4", gl_dir=gl_dir)
    assert (result.returncode, result.stdout, result.stderr) == (
        100, b"", ("qgrey-admin: fatal: cannot read %s: not a regular file\n" % path).encode())
    os.rmdir(path)
    target = gl_dir + "/elsewhere"
    with open(target, "w") as f:
        f.write("192.0.2.9\n")
    os.symlink(target, path)
    result = tool("qgrey-admin", "allow", "--client", "192.0.2.4", gl_dir=gl_dir)
    assert (result.returncode, result.stdout, result.stderr) == (
        100, b"", ("qgrey-admin: fatal: %s is a symbolic link to %s: add 192.0.2.4/32 to that "
                   "file instead (qgrey-admin does not write through links)\n"
                   % (path, target)).encode())
    with open(target) as f:
        assert f.read() == "192.0.2.9\n"


def test_report_exit_statuses(tmp_path):
    missing = str(tmp_path / "no-log")
    unread = tool("qgrey-report", missing, gl_dir=str(tmp_path))
    assert (unread.returncode, unread.stdout, unread.stderr) == (
        111, b"", ("qgrey-report: fatal: cannot read %s: No such file or directory\n"
                   % missing).encode())
    page = str(tmp_path / "no-dir" / "page.html")
    unwritten = tool("qgrey-report", "--html", page, "/dev/null", gl_dir=str(tmp_path))
    assert unwritten.returncode == 111
    assert unwritten.stdout.startswith(b"qgrey report: 0 decisions\n")
    assert unwritten.stderr == ("qgrey-report: fatal: cannot write %s: No such file or "
                                "directory\n" % page).encode()
    usage = tool("qgrey-report", "--bogus", gl_dir=str(tmp_path))
    assert (usage.returncode, usage.stdout, usage.stderr) == (
        100, b"", b"usage: qgrey-report [--list] [--html PAGE] [FILE...]\n")


def test_gl_dir_owner_without_a_passwd_entry(tmp_path):
    """qgrey-expire(8): run as root, it takes the ids of GL_DIR's owner; an
    owner without a passwd entry gets the directory's group and no other."""
    from conftest import needs_root
    needs_root()
    import pwd
    uid = 4242
    while True:  # a uid with no passwd entry
        try:
            pwd.getpwuid(uid)
        except KeyError:
            break
        uid += 1
    import tempfile
    top = tempfile.mkdtemp(prefix="qgrey-owner-")
    try:
        os.chmod(top, 0o755)
        gl_dir = os.path.join(top, "state")
        os.mkdir(gl_dir, 0o700)
        os.chown(gl_dir, uid, 4243)
        result = tool("qgrey-expire", gl_dir=gl_dir)
        lines = result.stdout.decode().splitlines()
        assert (result.returncode, result.stderr, len(lines)) == (0, b"", 2)
        assert lines[0].startswith("removed 0: never-retried=0 lifetime-over=0; kept 0; ")
        assert lines[1] == "shrink: not needed (no entries)"
        made = os.stat(gl_dir + "/lock")
        assert (made.st_uid, made.st_gid) == (uid, 4243)
    finally:
        import shutil
        shutil.rmtree(top)
