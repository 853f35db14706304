"""The plugin's documented failure behaviours (qgrey(8): DESCRIPTION, GL_DIR,
GL_ON_ERROR, GL_REDIS, FILES), each run as qmail-spp runs it: environment
only, stdin closed, cwd /. Every test asserts the exact reply, the exact log
line (action, reason, detail) and the exit status (always 0).
"""
import fcntl
import os

import pytest

from conftest import SPP_ENV

GREYLISTED = b"E451 4.7.1 Greylisted, please try again later\n"
DEFERRED = b"E451 4.3.0 Greylisting is temporarily unavailable, please try again later\n"
PAIR = "client=198.51.100.7 sender=alice@example.org recipient=bob@example.net"


def error_line(reason, detail, answered="defer"):
    return ("qgrey: action=error reason=%s %s detail=%s; answered %s\n"
            % (reason, PAIR, detail, answered)).encode()


def answered(result, reply, log):
    assert (result.returncode, result.stdout, result.stderr) == (0, reply, log)


# GL_DIR and the files in it that are not what they must be.

@pytest.mark.parametrize("on_error, reply", [("defer", DEFERRED), ("accept", b"")])
def test_gl_dir_that_is_a_file_is_a_directory_error(run, tmp_path, on_error, reply):
    path = tmp_path / "plain"
    path.write_bytes(b"")
    result = run(GL_DIR=str(path), GL_ON_ERROR=on_error)
    answered(result, reply, error_line(
        "directory", "GL_DIR %s is not a directory" % path, on_error))


def test_lock_file_that_is_a_directory_is_an_io_error(run, gl_dir):
    os.mkdir(gl_dir + "/lock")
    result = run(GL_ON_ERROR="defer")
    answered(result, DEFERRED, error_line(
        "io", "cannot open lock file %s/lock: Is a directory" % gl_dir))


def test_lock_file_that_is_a_fifo_is_an_io_error_without_waiting(run, gl_dir):
    os.mkfifo(gl_dir + "/lock")
    result = run(GL_ON_ERROR="defer", timeout=20)
    answered(result, DEFERRED, error_line(
        "io", "lock file %s/lock is not a regular file" % gl_dir))


def hold(path):
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def test_deadline_spent_before_the_lock_wait_keeps_the_read_answer(run, gl_dir):
    """GL_LOCK_TIMEOUT=0 and the lock taken: no wait at all; the new triplet
    is still refused, and the log says it was not recorded."""
    fd = hold(gl_dir + "/lock.queue")
    try:
        result = run(GL_LOCK_TIMEOUT="0")
    finally:
        os.close(fd)
    answered(result, GREYLISTED, (
        "qgrey: action=greylist reason=new %s waited=0 detail=not recorded: no lock on "
        "%s/lock.queue within the deadline (lock-timeout)\n" % (PAIR, gl_dir)).encode())
    # Nothing was recorded: the next run, with the lock free, still finds it new.
    again = run()
    answered(again, GREYLISTED, (
        "qgrey: action=greylist reason=new %s waited=0\n" % PAIR).encode())


def test_lock_wait_ends_at_the_deadline(run, gl_dir):
    fd = hold(gl_dir + "/lock")
    try:
        result = run(GL_LOCK_TIMEOUT="0.3")
    finally:
        os.close(fd)
    answered(result, GREYLISTED, (
        "qgrey: action=greylist reason=new %s waited=0 detail=not recorded: no lock on "
        "%s/lock within the deadline (lock-timeout)\n" % (PAIR, gl_dir)).encode())


@pytest.mark.parametrize("make", ["directory", "fifo"])
def test_database_that_is_not_a_regular_file(run, gl_dir, make):
    path = gl_dir + "/qgrey.sqlite"
    os.mkdir(path) if make == "directory" else os.mkfifo(path)
    result = run(GL_ON_ERROR="defer", timeout=20)
    answered(result, DEFERRED, error_line(
        "database", "%s is not a regular file" % path))


# Salt, config and lists that cannot be read.

def test_salt_that_is_a_directory_is_an_io_error(run, gl_dir):
    os.mkdir(gl_dir + "/salt")
    result = run(GL_PRIVACY="1", GL_ON_ERROR="defer")
    answered(result, DEFERRED, error_line("io", "salt: not a regular file"))


def test_salt_too_short_is_an_io_error(run, gl_dir):
    with open(gl_dir + "/salt", "wb") as f:
        f.write(b"short")
    os.chmod(gl_dir + "/salt", 0o600)
    result = run(GL_PRIVACY="1", GL_ON_ERROR="defer")
    answered(result, DEFERRED, error_line(
        "io", "salt: %s/salt is shorter than 16 bytes" % gl_dir))


def test_config_that_is_a_fifo_is_ignored_with_one_warning(run, gl_dir):
    os.mkfifo(gl_dir + "/config")
    result = run(timeout=20)
    answered(result, GREYLISTED, (
        "qgrey: warning: cannot read %s/config: not a regular file; using the defaults\n"
        "qgrey: action=greylist reason=new %s waited=0\n" % (gl_dir, PAIR)).encode())


@pytest.mark.parametrize("name", ["whitelist-clients", "whitelist-recipients",
                                  "whitelist-senders", "greytraps"])
def test_list_that_is_a_directory_is_ignored_with_one_warning(run, gl_dir, name):
    os.mkdir(gl_dir + "/" + name)
    result = run()
    answered(result, GREYLISTED, (
        "qgrey: warning: cannot read %s/%s: not a regular file; list ignored\n"
        "qgrey: action=greylist reason=new %s waited=0\n" % (gl_dir, name, PAIR)).encode())


# GL_STORE=redis: what the server or GL_DIR/redis-auth does wrong.

@pytest.fixture
def server(tmp_path):
    from redisserver import RedisServer
    s = RedisServer(tmp_path / "redis")
    yield s
    s.stop()


def test_malformed_value_on_redis(run, server):
    server.cli("SET", "qgrey:198.51.100.0/24 alice@example.org bob@example.net", "not an entry")
    result = run(GL_STORE="redis", GL_REDIS=server.url, GL_ON_ERROR="defer")
    answered(result, DEFERRED, error_line("database", "malformed value b'not an entry'"))


def test_redis_write_refused_for_memory(run, server):
    server.cli("CONFIG", "SET", "maxmemory", "1")
    server.cli("CONFIG", "SET", "maxmemory-policy", "noeviction")
    result = run(GL_STORE="redis", GL_REDIS=server.url, GL_ON_ERROR="defer")
    answered(result, DEFERRED, error_line(
        "oom", "Redis %s: OOM command not allowed when used memory > 'maxmemory'." % server.url))


@pytest.mark.parametrize("mode, problem", [
    (0o640, "{path} may be read by others; chmod 600 it"),
    (None, "{path} is not a regular file"),
])
def test_unusable_redis_auth(run, gl_dir, server, mode, problem):
    path = gl_dir + "/redis-auth"
    if mode is None:
        os.mkdir(path)
    else:
        with open(path, "w") as f:
            f.write("secret\n")
        os.chmod(path, mode)
    result = run(GL_STORE="redis", GL_REDIS=server.url, GL_ON_ERROR="defer")
    answered(result, DEFERRED, error_line("auth", problem.format(path=path)))


def test_redis_auth_of_three_lines(run, gl_dir, server):
    path = gl_dir + "/redis-auth"
    with open(path, "w") as f:
        f.write("a\nb\nc\n")
    os.chmod(path, 0o600)
    result = run(GL_STORE="redis", GL_REDIS=server.url, GL_ON_ERROR="defer")
    answered(result, DEFERRED, error_line(
        "auth", "%s: want the password, or a user and a password, on one line each" % path))


@pytest.mark.parametrize("variables, reason", [
    ({"RELAYCLIENT": ""}, "relayclient"),
    ({"SMTPAUTHUSER": "alice"}, "authenticated"),
])
def test_reply_of_an_outbound_client_not_recorded_when_redis_is_down(run, tmp_path, variables,
                                                                     reason):
    missing = str(tmp_path / "no-redis.sock")
    result = run(GL_STORE="redis", GL_REDIS="unix:" + missing, GL_REVERSE="1",
                 GL_ON_ERROR="defer", **variables)
    answered(result, b"", (
        "qgrey: action=skip reason=%s %s detail=reply not recorded: cannot connect to Redis unix:%s: "
        "No such file or directory\n" % (reason, PAIR, missing)).encode())


def test_reply_not_recorded_when_the_salt_cannot_be_read(run, gl_dir):
    os.mkdir(gl_dir + "/salt")
    result = run(RELAYCLIENT="", GL_REVERSE="1", GL_PRIVACY="1")
    answered(result, b"", (
        "qgrey: action=skip reason=relayclient %s detail=reply not recorded: salt: "
        "not a regular file\n" % PAIR).encode())


def test_a_silent_first_server_leaves_time_for_the_next(run, server):
    """A first server whose connect never completes (its accept queue is
    full) gets its share of GL_REDIS_TIMEOUT; the next one decides."""
    import socket
    import time
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(8):  # fill the accept queue: later SYNs are dropped
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            fillers.append(s)
        time.sleep(0.2)
        started = time.monotonic()
        result = run(GL_STORE="redis", GL_REDIS="127.0.0.1:%d,%s" % (port, server.url),
                     GL_REDIS_TIMEOUT="2", GL_ON_ERROR="defer")
        elapsed = time.monotonic() - started
    finally:
        for s in fillers:
            s.close()
        listener.close()
    answered(result, GREYLISTED, (
        "qgrey: action=greylist reason=new %s waited=0\n" % PAIR).encode())
    # Its share: half of the 2 s (two servers), then the second answers.
    assert 0.9 < elapsed < 10



def test_oom_lets_pass_only_what_writes_nothing(run, server):
    """docs/answers.md: with OOM (maxmemory reached, noeviction) a known
    sender passes when its decision writes nothing; one whose decision
    writes (here the client's auto-whitelisting count, kept at most once
    an hour) is answered as GL_ON_ERROR says."""
    import time
    key = "qgrey:198.51.100.0/24 alice@example.org bob@example.net"
    redis = dict(GL_STORE="redis", GL_REDIS=server.url, GL_ON_ERROR="defer", SMTPRCPTCOUNT="1")
    answered(run(**redis), GREYLISTED, (
        "qgrey: action=greylist reason=new %s waited=0\n" % PAIR).encode())
    first, last, passed, tries = map(int, server.cli("GET", key).split())
    server.cli("SET", key, "%d %d 0 %d" % (first - 400, last - 400, tries), "KEEPTTL")
    result = run(**redis)
    # 400 seconds, or 401 when the run began in the second after the first.
    waited = 401 if result.stderr.endswith(b" waited=401\n") else 400
    answered(result, b"", (
        "qgrey: action=pass reason=delayed %s waited=%d\n" % (PAIR, waited)).encode())
    now = int(time.time())
    server.cli("SET", "qgrey:203.0.113.0/24 alice@example.org bob@example.net",
               "%d %d %d 3" % (now - 7200, now, now - 3600))
    server.cli("CONFIG", "SET", "maxmemory-policy", "noeviction")
    server.cli("CONFIG", "SET", "maxmemory", "1")
    answered(run(**redis), b"", (
        "qgrey: action=pass reason=known %s waited=%d\n" % (PAIR, waited)).encode())
    # Another client's passed triplet, whose client count is new (to be written).
    result = run(TCPREMOTEIP="203.0.113.9", **redis)
    assert (result.returncode, result.stdout, result.stderr) == (0, DEFERRED, (
        "qgrey: action=error reason=oom client=203.0.113.9 sender=alice@example.org "
        "recipient=bob@example.net detail=Redis %s: OOM command not allowed when used memory "
        "> 'maxmemory'.; answered defer\n" % server.url).encode())
