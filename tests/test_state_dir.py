"""What is in GL_DIR cannot stall, bloat or fool the plugin: FIFOs, links to
devices, oversized or binary lists, damaged caches, and a directory that
another user may write. The installed plugin, run as qmail-spp runs it."""
import os
import re
import shutil
import socket
import stat
import tempfile
import time

import pytest

from conftest import NOBODY, needs_root, unavailable

GREYLISTED = b"E451 4.7.1 Greylisted, please try again later\n"
DEFERRED = b"E451 4.3.0 Greylisting is temporarily unavailable, please try again later\n"
TAIL = "client=198.51.100.7 sender=alice@example.org recipient=bob@example.net"
NEW = "qgrey: action=greylist reason=new %s waited=0\n" % TAIL
# Well under GL_LOCK_TIMEOUT=1 plus an interpreter start on a loaded machine,
# and far less than the wait for a writer that never comes.
BOUND = 10
# The plugin runs in about 20 MB of address space; reading /dev/zero, or
# trusting a length field of a hostile cache, would need far more.
MEMORY = 64 << 20


def timed(run, **env):
    """run(...) with GL_LOCK_TIMEOUT=1 -> (result, seconds)."""
    started = time.monotonic()
    result = run(timeout=BOUND, GL_LOCK_TIMEOUT="1", **env)
    elapsed = time.monotonic() - started
    assert result.returncode == 0
    return result, elapsed


def limited(run, launcher, **env):
    """run the launcher under an address-space limit of MEMORY bytes."""
    return run(["prlimit", "--as=%d" % MEMORY, launcher], timeout=BOUND, **env)


def write(gl_dir, name, data, mode=0o600):
    path = os.path.join(gl_dir, name)
    with open(path, "wb") as out:
        out.write(data)
    os.chmod(path, mode)
    return path


def long_list(extra=b""):
    """A whitelist-clients longer than 4 KB (so it is cached) without the client."""
    text = b"".join(b"10.%d.%d.0/24\n" % (i // 256, i % 256) for i in range(600)) + extra
    assert len(text) > 4096
    return text


# --- a FIFO anywhere: an answer at once, never a wait -----------------------

def warned(gl_dir, name, why, then):
    return "qgrey: warning: cannot read %s/%s: %s; %s\n" % (gl_dir, name, why, then)


@pytest.mark.parametrize("name, env", [
    ("whitelist-clients", {}),
    ("whitelist-recipients", {}),
    ("whitelist-senders", {}),
    ("greytraps", {}),
])
def test_fifo_as_a_list_is_ignored_with_one_warning(run, gl_dir, name, env):
    os.mkfifo(os.path.join(gl_dir, name))
    result, elapsed = timed(run, **env)
    assert elapsed < BOUND
    assert result.stdout == GREYLISTED
    assert result.stderr.decode() == warned(gl_dir, name, "not a regular file", "list ignored") + NEW


def test_fifo_as_config_gives_the_defaults(run, gl_dir):
    os.mkfifo(os.path.join(gl_dir, "config"))
    result, elapsed = timed(run)
    assert elapsed < BOUND
    assert result.stdout == GREYLISTED
    assert result.stderr.decode() == (
        warned(gl_dir, "config", "not a regular file", "using the defaults") + NEW)


@pytest.mark.parametrize("name, env, reason, detail", [
    ("qgrey.sqlite", {}, "database", "{dir}/qgrey.sqlite is not a regular file"),
    ("qgrey.sqlite-journal", {}, "database", "{dir}/qgrey.sqlite-journal is not a regular file"),
    ("qgrey.gdbm", {"GL_STORE": "dbm.gnu"}, "database", "{dir}/qgrey.gdbm is not a regular file"),
    ("salt", {"GL_PRIVACY": "1"}, "io", "salt: not a regular file"),
    ("lock", {}, "io", "lock file {dir}/lock is not a regular file"),
    ("lock.queue", {}, "io", "lock file {dir}/lock.queue is not a regular file"),
])
@pytest.mark.parametrize("on_error", ["accept", "defer"])
def test_fifo_in_the_store_is_an_error_answered_at_once(run, gl_dir, name, env, reason,
                                                          detail, on_error):
    if name == "qgrey.gdbm":
        try:
            import dbm.gnu  # noqa: F401
        except ImportError:
            unavailable("this Python has no dbm.gnu")
    os.mkfifo(os.path.join(gl_dir, name))
    result, elapsed = timed(run, GL_ON_ERROR=on_error, **env)
    assert elapsed < BOUND
    assert result.stdout == (DEFERRED if on_error == "defer" else b"")
    assert result.stderr.decode() == "qgrey: action=error reason=%s %s detail=%s; answered %s\n" % (
        reason, TAIL, detail.format(dir=gl_dir), on_error)


def test_fifo_as_a_cache_is_replaced(run, gl_dir):
    write(gl_dir, "whitelist-clients", long_list(b"198.51.100.0/24\n"))
    cache = os.path.join(gl_dir, ".whitelist-clients.cache")
    os.mkfifo(cache)
    result, elapsed = timed(run)
    assert elapsed < BOUND
    assert result.stdout == b""
    assert result.stderr.decode() == "qgrey: action=skip reason=whitelist-client %s\n" % TAIL
    assert stat.S_ISREG(os.lstat(cache).st_mode)  # the list's parsed form now
    with open(cache, "rb") as f:
        assert f.read(19) == b"qgrey list cache 4\n"


# --- links to devices and other users' files; sizes -----------------------------

@pytest.mark.parametrize("on_error", ["accept", "defer"])
def test_dev_zero_as_a_list_is_refused_without_reading_it(run, launcher, gl_dir, on_error):
    os.symlink("/dev/zero", os.path.join(gl_dir, "whitelist-clients"))
    result = limited(run, launcher, GL_ON_ERROR=on_error)
    assert result.returncode == 0
    assert result.stdout == GREYLISTED
    assert result.stderr.decode() == (
        warned(gl_dir, "whitelist-clients", "not a regular file", "list ignored") + NEW)


def test_a_list_may_be_a_link_to_roots_file(run, gl_dir, tmp_path):
    target = tmp_path / "clients"
    target.write_bytes(b"198.51.100.0/24\n")
    os.symlink(str(target), os.path.join(gl_dir, "whitelist-clients"))
    result = run()
    assert result.stdout == b""
    assert result.stderr.decode() == "qgrey: action=skip reason=whitelist-client %s\n" % TAIL


def test_a_link_to_another_users_file_is_not_followed(run, gl_dir, tmp_path):
    needs_root()
    target = tmp_path / "clients"
    target.write_bytes(b"0.0.0.0/0\n")
    os.chown(str(target), NOBODY, NOBODY)
    os.symlink(str(target), os.path.join(gl_dir, "whitelist-clients"))
    result = run()
    assert result.stdout == GREYLISTED
    assert result.stderr.decode() == warned(
        gl_dir, "whitelist-clients",
        "owned by uid 65534, not by root or the directory's owner", "list ignored") + NEW


def test_a_20_mb_binary_list_is_refused_with_one_warning(run, launcher, gl_dir):
    write(gl_dir, "whitelist-clients", os.urandom(20 << 20))
    for reason in ("new", "early"):  # refused whole each time, never parsed nor cached
        started = time.time()
        result = limited(run, launcher)
        assert result.stdout == GREYLISTED
        log = result.stderr.decode()
        # The early retry's wait is the seconds since the first run began.
        waited = re.search(r" waited=(\d+)\n$", log)
        assert waited and int(waited.group(1)) <= (0 if reason == "new" else
                                                   int(time.time() - first) + 1), log
        first = started if reason == "new" else first
        assert log == warned(
            gl_dir, "whitelist-clients", "larger than 4194304 bytes", "list ignored") + (
            NEW.replace("reason=new", "reason=" + reason).replace(
                "waited=0", "waited=" + waited.group(1)))
    assert not os.path.exists(os.path.join(gl_dir, ".whitelist-clients.cache"))


def test_many_malformed_lines_give_a_few_warnings_and_a_count(run, launcher, gl_dir):
    path = write(gl_dir, "whitelist-clients", b"\x00\xff two\n" * 50000 + b"198.51.100.7\n")
    for _ in range(2):  # parsed, then from the cache: the same warnings
        result = limited(run, launcher)
        assert result.stdout == b""
        assert result.stderr.decode() == (
            "qgrey: warning: %s line 1: more than one entry on the line; skipped\n"
            "qgrey: warning: %s line 2: more than one entry on the line; skipped\n"
            "qgrey: warning: %s line 3: more than one entry on the line; skipped\n"
            "qgrey: warning: %s: 49997 more malformed lines skipped\n"
            "qgrey: action=skip reason=whitelist-client %s\n" % (path, path, path, path, TAIL))


def test_warnings_of_a_run_are_bounded(run, gl_dir):
    for name in ("whitelist-clients", "whitelist-recipients", "whitelist-senders", "greytraps"):
        write(gl_dir, name, b"a b\n" * 10)
    result = run()
    assert result.stdout == GREYLISTED
    path = os.path.join(gl_dir, "whitelist-clients")
    assert result.stderr.decode() == (
        "qgrey: warning: %s line 1: more than one entry on the line; skipped\n"
        "qgrey: warning: %s line 2: more than one entry on the line; skipped\n"
        "qgrey: warning: %s line 3: more than one entry on the line; skipped\n"
        "qgrey: warning: %s: 7 more malformed lines skipped\n"
        "qgrey: warning: 12 more warnings not shown\n" % (path, path, path, path) + NEW)


def test_an_oversized_config_is_refused(run, gl_dir):
    write(gl_dir, "config", b"GL_DELAY=1\n" + b"#" * (64 << 10))
    result = run()
    assert result.stdout == GREYLISTED
    assert result.stderr.decode() == warned(
        gl_dir, "config", "larger than 65536 bytes", "using the defaults") + NEW


# --- the cache is checked, never trusted ------------------------------------

HOSTILE_CACHES = [
    # marshal: a tuple of 2**31-1 items, then filler
    b"(\xff\xff\xff\x7f" + b"\xe9" * (100 << 10),
    # the cache's own format with impossible counts
    b"qgrey list cache 4\n0 0 0 0 0\n\n\n99999999999 3 999999999999\n" + b"\xff" * (100 << 10),
]


@pytest.mark.parametrize("content", HOSTILE_CACHES, ids=["marshal", "header"])
def test_a_malformed_cache_is_rebuilt_in_bounded_memory(run, launcher, gl_dir, content):
    write(gl_dir, "whitelist-clients", long_list(b"198.51.100.0/24\n"))
    cache = write(gl_dir, ".whitelist-clients.cache", content)
    result = limited(run, launcher)
    assert result.returncode == 0
    assert result.stdout == b""
    assert result.stderr.decode() == "qgrey: action=skip reason=whitelist-client %s\n" % TAIL
    with open(cache, "rb") as f:
        assert f.read(19) == b"qgrey list cache 4\n"
    assert os.path.getsize(cache) < 20000


def test_the_cache_format_is_checked_whole():
    from qgrey import lists
    text = long_list(b"2001:db8::/32\nexample.org\nbad line\n" + b"x..y\n" * 5)
    parsed = lists.parse(lists.CLIENTS, text, lists.SHOWN)
    cache = lists.encode_cache(b"1 2 3 4 5", parsed)
    data, problems = lists.decode_cache(cache, b"1 2 3 4 5")
    assert data == parsed[0]
    assert problems == [(603, "more than one entry on the line"),
                        (604, "not an IP address, network or host name"),
                        (605, "not an IP address, network or host name")]
    assert problems.count == 6
    assert lists.decode_cache(cache, b"1 2 3 4 6") is None  # another list
    assert lists.decode_cache(cache[:-1], b"1 2 3 4 5") is None  # truncated
    assert lists.decode_cache(cache + b"x\n", b"1 2 3 4 5") is None  # longer
    assert lists.decode_cache(cache.replace(b"\n24\n", b"\n24,8\n", 1), b"1 2 3 4 5") is None


def test_a_cache_of_another_list_is_not_used(run, gl_dir):
    """A sound cache, but of other contents (its stamp): the list decides."""
    listed = os.path.join(gl_dir, "whitelist-clients")
    write(gl_dir, "whitelist-clients", long_list(b"198.51.100.0/24\n"))
    assert run().stdout == b""  # cached: the client is listed
    cache = os.path.join(gl_dir, ".whitelist-clients.cache")
    saved = open(cache, "rb").read()
    write(gl_dir, "whitelist-clients", long_list(b"203.0.113.0/24\n"))
    write(gl_dir, ".whitelist-clients.cache", saved)
    result = run()
    assert result.stdout == GREYLISTED and result.stderr.decode() == NEW
    assert open(cache, "rb").read() != saved and os.path.exists(listed)


# --- a directory that another user may write ----------------------------------

def plant(gl_dir):
    """What another user would put in a directory they may write."""
    write(gl_dir, "whitelist-clients", b"0.0.0.0/0\n::/0\n", 0o666)
    write(gl_dir, "config", b"GL_ON_ERROR=accept\nGL_DELAY=0\n", 0o666)


@pytest.mark.parametrize("mode, who", [(0o777, "others"), (0o770, "its group"),
                                       (0o1777, "others")])
@pytest.mark.parametrize("on_error", ["accept", "defer"])
def test_unsafe_directory_is_refused_before_anything_is_read(run, gl_dir, mode, who, on_error):
    plant(gl_dir)
    os.chmod(gl_dir, mode)
    result = run(GL_ON_ERROR=on_error)
    assert result.returncode == 0
    assert result.stdout == (DEFERRED if on_error == "defer" else b"")
    assert result.stderr.decode() == (
        "qgrey: action=error reason=directory %s detail=GL_DIR %s is writable by %s; "
        "chmod go-w it; answered %s\n" % (TAIL, gl_dir, who, on_error))
    assert sorted(os.listdir(gl_dir)) == ["config", "whitelist-clients"]


def test_unsafe_directory_config_does_not_choose_the_answer(run, gl_dir):
    """GL_ON_ERROR comes from the environment only then: accept by default,
    although the planted config says defer."""
    write(gl_dir, "config", b"GL_ON_ERROR=defer\n")
    os.chmod(gl_dir, 0o777)
    result = run()
    assert result.stdout == b""
    assert result.stderr.decode().endswith("; answered accept\n")


def test_directory_of_another_user_is_refused(run, gl_dir):
    needs_root()
    plant(gl_dir)
    os.chown(gl_dir, NOBODY, NOBODY)
    result = run(GL_ON_ERROR="defer")
    assert result.stdout == DEFERRED
    assert result.stderr.decode() == (
        "qgrey: action=error reason=directory %s detail=GL_DIR %s belongs to uid 65534, not to "
        "root or uid 0 (this process); chown it to the user qmail-smtpd runs as; answered defer\n"
        % (TAIL, gl_dir))


def test_relay_client_records_nothing_in_an_unsafe_directory(run, gl_dir):
    os.chmod(gl_dir, 0o777)
    result = run(RELAYCLIENT="", GL_PRIVACY="1")
    assert result.stdout == b""
    assert result.stderr.decode() == (
        "qgrey: action=skip reason=relayclient %s detail=reply not recorded: GL_DIR %s is "
        "writable by others; chmod go-w it\n" % (TAIL, gl_dir))
    assert os.listdir(gl_dir) == []


@pytest.fixture
def listener():
    """A UNIX socket that would receive what qgrey sends to a 'Redis server'."""
    top = tempfile.mkdtemp(prefix="qgrey-sock-")
    path = os.path.join(top, "redis.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.listen(8)
    sock.settimeout(0.5)
    yield sock, path
    sock.close()
    shutil.rmtree(top)


def received(sock):
    """Whatever connected and what it sent, within the socket's timeout."""
    try:
        conn, _ = sock.accept()
    except socket.timeout:
        return None
    conn.settimeout(0.5)
    data = b""
    try:
        while True:
            chunk = conn.recv(4096)
            if not chunk:
                break
            data += chunk
    except socket.timeout:
        pass
    conn.close()
    return data


@pytest.mark.parametrize("on_error", ["accept", "defer", "local"])
def test_redis_unsafe_directory_sends_nothing(run, gl_dir, listener, on_error):
    sock, path = listener
    write(gl_dir, "config", b"GL_REDIS=unix:%s\n" % path.encode(), 0o666)
    write(gl_dir, "redis-auth", b"the-real-password\n")
    os.chmod(gl_dir, 0o777)
    result = run(GL_STORE="redis", GL_ON_ERROR=on_error)
    assert received(sock) is None
    assert result.stdout == (DEFERRED if on_error == "defer" else b"")
    assert result.stderr.decode() == (
        "qgrey: action=error reason=directory %s detail=GL_DIR %s is writable by others; "
        "chmod go-w it; answered %s\n" % (TAIL, gl_dir, "defer" if on_error == "defer" else "accept"))


def test_redis_safe_directory_reads_config_and_password(run, gl_dir, listener):
    """The same files in a safe directory are used: the test above does not
    pass for want of a listener. (The listener never answers: timeout.)"""
    sock, path = listener
    write(gl_dir, "config", b"GL_REDIS=unix:%s\nGL_REDIS_TIMEOUT=0.3\n" % path.encode())
    write(gl_dir, "redis-auth", b"the-real-password\n")
    result = run(GL_STORE="redis")
    assert received(sock).startswith(b"*2\r\n$4\r\nAUTH\r\n$17\r\nthe-real-password\r\n")
    assert result.stdout == b""
    assert result.stderr.decode().startswith("qgrey: action=error reason=timeout %s " % TAIL)


def test_redis_missing_directory_has_nothing_to_read(run, tmp_path, listener):
    """GL_STORE=redis with no GL_DIR: the environment decides, no password."""
    sock, path = listener
    result = run(GL_DIR=str(tmp_path / "missing"), GL_STORE="redis",
                 GL_REDIS="unix:" + path, GL_REDIS_TIMEOUT="0.3")
    sent = received(sock)
    assert sent.startswith(b"*") and b"AUTH" not in sent
    assert result.stdout == b""
    assert result.stderr.decode().startswith("qgrey: action=error reason=timeout %s " % TAIL)
    assert not os.path.exists(str(tmp_path / "missing"))
