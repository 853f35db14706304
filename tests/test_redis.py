"""Several MX hosts sharing one greylist on a real Redis (GL_STORE=redis).

Each test starts its own redis-server(s) on private sockets; two simulated
hosts are two GL_DIRs whose plugins, run as qmail-spp runs them, share it.
"""
import concurrent.futures
import os
import re
import signal
import subprocess
import time

import pytest

from conftest import SPP_ENV, _close_stdin, spp
from redisserver import RedisServer
from test_hostile import check

GREYLISTED = b"E451 4.7.1 Greylisted, please try again later\n"
DEFERRED = b"E451 4.3.0 Greylisting is temporarily unavailable, please try again later\n"
KEY = "qgrey:198.51.100.0/24 alice@example.org bob@example.net"


@pytest.fixture
def server(tmp_path):
    s = RedisServer(tmp_path / "redis")
    yield s
    s.stop()


@pytest.fixture
def hosts(tmp_path):
    """Two MX hosts: their state directories."""
    dirs = []
    for name in ("mx1", "mx2"):
        path = tmp_path / name
        path.mkdir(mode=0o700)
        dirs.append(str(path))
    return dirs


def host_env(gl_dir, server, **extra):
    env = dict(SPP_ENV, GL_DIR=gl_dir, GL_STORE="redis",
               GL_REDIS=server if isinstance(server, str) else server.url)
    env.update(extra)
    return env


def decide(launcher, gl_dir, server, **extra):
    return spp(launcher, host_env(gl_dir, server, **extra))


def age(server, key, seconds):
    """Move an entry's times back, keeping its TTL."""
    first, last, passed, tries = map(int, server.cli("GET", key).split())
    shifted = [t - seconds if t else 0 for t in (first, last, passed)]
    server.cli("SET", key, "%d %d %d %d" % tuple(shifted + [tries]), "KEEPTTL")


def test_a_sender_refused_at_one_host_passes_at_the_other(launcher, server, hosts):
    mx1, mx2 = hosts
    started = time.time()
    check(decide(launcher, mx1, server), GREYLISTED, "greylist", "new")
    check(decide(launcher, mx2, server), GREYLISTED, "greylist", "early")
    age(server, KEY, 400)
    line = check(decide(launcher, mx2, server), action="pass", reason="delayed")
    ended = time.time()
    # 400 s moved back, plus the whole seconds the three runs took, as
    # measured here (the clock of Redis's TIME is this machine's)
    waited = int(re.search(rb" waited=(\d+)\b", line).group(1))
    assert 400 <= waited <= 400 + int(ended) + 1 - int(started), (line, ended - started)
    result = decide(launcher, mx1, server)
    assert result.stdout.startswith(b"HX-Greylist: passed (known sender) by qgrey-")
    assert server.cli("GET", KEY).split()[3] == "2"
    # Nothing was written on either host's disk.
    assert [sorted(os.listdir(d)) for d in hosts] == [[], []]


def test_every_key_carries_the_ttl_the_rules_give_it(launcher, server, hosts):
    mx1, mx2 = hosts
    decide(launcher, mx1, server, GL_RETRY_WINDOW="1d")
    assert 86400 - 5 <= server.cli("TTL", KEY) <= 86401
    age(server, KEY, 400)
    decide(launcher, mx2, server, GL_LIFETIME="10d")  # passes: lifetime from now
    assert 10 * 86400 - 5 <= server.cli("TTL", KEY) <= 10 * 86400 + 1
    assert 10 * 86400 - 5 <= server.cli("TTL", "qgrey:client 198.51.100.7") <= 10 * 86400 + 1
    # A relay client's recipient (reverse tracking) and a greytrap.
    decide(launcher, mx1, server, RELAYCLIENT="", SMTPMAILFROM="me@example.net",
           SMTPRCPTTO="friend@example.com")
    assert server.cli("TTL", "qgrey:reply friend@example.com>me@example.net") > 30 * 86400
    with open(os.path.join(mx2, "greytraps"), "w") as f:
        f.write("trap@example.net\n")
    decide(launcher, mx2, server, TCPREMOTEIP="203.0.113.9", SMTPRCPTTO="trap@example.net",
           GL_TRAP_TIME="2h")
    assert 7200 - 5 <= server.cli("TTL", "qgrey:trap 203.0.113.0/24") <= 7200
    names = server.cli("KEYS", "*")
    assert len(names) == 4 and all(server.cli("TTL", n) > 0 for n in names)


def test_a_key_prefix_keeps_qgrey_to_its_own_keys(launcher, server, hosts):
    server.cli("SET", "other:thing", "1")
    check(decide(launcher, hosts[0], server, GL_REDIS_PREFIX="mx.example:"), GREYLISTED)
    assert sorted(server.cli("KEYS", "*")) == [
        "mx.example:198.51.100.0/24 alice@example.org bob@example.net", "other:thing"]


def test_a_database_number(launcher, server, hosts):
    check(decide(launcher, hosts[0], server.url + "?db=3", GL_RETRY_WINDOW="1d"), GREYLISTED)
    check(decide(launcher, hosts[1], server.tcp + "/3", GL_RETRY_WINDOW="1d"), GREYLISTED,
          reason="early")
    assert server.cli("DBSIZE") == 0
    assert server.cli("DBSIZE", db=3) == 1
    # The retry window from first seen, a second or two ago: 86400 s (and
    # the second under way).
    assert 86400 - 5 <= server.cli("TTL", KEY, db=3) <= 86401
    # Redis's own account of it (average TTL in ms, once its expiry cycle
    # has sampled the database, ten times a second).
    deadline = time.monotonic() + 10
    while True:
        info = server.cli("INFO", "keyspace").split()
        assert info[:1] == ["#"] and len(info) == 3 and info[2].startswith("db3:"), info
        fields = dict(f.split("=") for f in info[2][4:].split(","))
        if fields["avg_ttl"] != "0" or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert (fields["keys"], fields["expires"]) == ("1", "1")
    assert (86400 - 10) * 1000 <= int(fields["avg_ttl"]) <= 86401 * 1000, fields


def run_all(launcher, envs, workers=60):
    procs = [subprocess.Popen([launcher], env=env, cwd="/", preexec_fn=_close_stdin,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for env in envs[:workers]]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=60)
        results.append((p.returncode, out, err))
    return results


def test_sixty_simultaneous_first_attempts_over_two_hosts_are_all_greylisted(launcher, server, hosts):
    envs = [host_env(hosts[i % 2], server, GL_REDIS_TIMEOUT="5") for i in range(60)]
    results = run_all(launcher, envs)
    assert [(rc, out) for rc, out, _ in results] == [(0, GREYLISTED)] * 60, [
        err for _, _, err in results if b"greylist" not in err]
    first, last, passed, tries = map(int, server.cli("GET", KEY).split())
    assert (passed, tries) == (0, 60)


def test_no_new_triplet_is_lost_when_two_hosts_write_at_once(launcher, server, hosts):
    envs = [host_env(hosts[i % 2], server, GL_REDIS_TIMEOUT="5",
                     SMTPRCPTTO="user%d@example.net" % i) for i in range(60)]
    assert [out for _, out, _ in run_all(launcher, envs)] == [GREYLISTED] * 60
    names = server.cli("KEYS", "qgrey:198.51.100.0/24 *")
    assert sorted(names) == sorted("qgrey:198.51.100.0/24 alice@example.org user%d@example.net" % i
                                   for i in range(60))
    assert all(server.cli("GET", n).split()[2:] == ["0", "1"] for n in names)


def deliveries_during(launcher, hosts, server, action, on_error, count=40, timeout="0.5"):
    """count deliveries, 8 at a time over both hosts, with action() run after
    the first few -> [(seconds, CompletedProcess)]."""
    def one(i):
        env = host_env(hosts[i % 2], server, GL_ON_ERROR=on_error, GL_REDIS_TIMEOUT=timeout,
                       SMTPRCPTTO="rcpt%d@example.net" % i)
        started = time.monotonic()
        result = spp(launcher, env)
        return time.monotonic() - started, result
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(one, i) for i in range(count)]
        time.sleep(0.15)
        action()
        return [f.result() for f in futures]


# How each failure is reported (README, failures): a killed Redis refuses
# connections or closes them mid-reply; a stopped one accepts connections
# (the kernel queues them) and never answers.
OUTAGES = {
    "SIGKILL": ("unreachable", rb"detail=(cannot connect to Redis unix:\S+: Connection refused"
                               rb"|Redis unix:\S+ closed the connection"
                               rb"|cannot (read from|write to) Redis unix:\S+: "
                               rb"(Connection reset by peer|Broken pipe)); answered defer\n$"),
    "SIGSTOP": ("timeout", rb"detail=((cannot (connect to|read from|write to) )?Redis unix:\S+: no answer in time"
                           rb"|Redis: no answer in time); answered defer\n$"),
}


@pytest.mark.parametrize("how", ["SIGKILL", "SIGSTOP"])
def test_redis_killed_or_hung_mid_run_never_stalls_a_session(launcher, server, hosts, how):
    reason, detail = OUTAGES[how]
    results = deliveries_during(launcher, hosts, server,
                                lambda: server.signal(getattr(signal, how)), "defer")
    after = [r for _, r in results[-8:]]
    for seconds, result in results:
        line = check(result)
        # GL_REDIS_TIMEOUT plus room for starting Python 8 at a time on a
        # busy machine; a stall would last until SIGCONT, after the run.
        assert seconds < 0.5 + 6, (seconds, line)
        if b"action=error" in line:
            assert result.stdout == DEFERRED
            assert b" reason=%s " % reason.encode() in line, line
            assert re.search(detail, line), line
        else:
            assert result.stdout == GREYLISTED
            assert re.match(rb"qgrey: action=greylist reason=new ", line), line
    assert all(r.stdout == DEFERRED for r in after)
    if how == "SIGSTOP":
        server.signal(signal.SIGCONT)
        check(decide(launcher, hosts[0], server), GREYLISTED)


def test_an_outage_decided_on_the_local_store(launcher, server, hosts):
    server.signal(signal.SIGKILL)
    result = decide(launcher, hosts[0], server, GL_ON_ERROR="local")
    line = check(result, GREYLISTED, "greylist", "new")
    assert b"detail=cannot connect to Redis unix:" in line and b"decided on the local store" in line
    assert "qgrey.sqlite" in os.listdir(hosts[0])
    check(decide(launcher, hosts[0], server, GL_ON_ERROR="local"), GREYLISTED, reason="early")
    # Without local: accept, one line with the reason.
    line = check(decide(launcher, hosts[1], server), b"", "error", "unreachable")
    assert line.endswith(b"answered accept\n")


def test_redis_restarted_keeps_the_greylist_with_append_only_file(launcher, tmp_path, hosts):
    server = RedisServer(tmp_path / "aof", "--appendonly", "yes", "--appendfsync", "always")
    try:
        check(decide(launcher, hosts[0], server), GREYLISTED)
        age(server, KEY, 400)
        check(decide(launcher, hosts[1], server), action="pass", reason="delayed")
        server.signal(signal.SIGKILL)
        check(decide(launcher, hosts[0], server), b"", "error", "unreachable")
        server.start()
        result = decide(launcher, hosts[0], server)
        assert result.stdout.startswith(b"HX-Greylist: passed (known sender)"), result
    finally:
        server.stop()


QGREY_ACL = ("ACL", "SETUSER", "qgrey", "on", ">s3cret pass", "~qgrey:*", "resetchannels",
             "-@all", "+watch", "+mget", "+time", "+multi", "+set", "+del", "+exec")


def write_auth(gl_dir, text, mode=0o600):
    path = os.path.join(gl_dir, "redis-auth")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    os.write(fd, text.encode())
    os.close(fd)
    os.chmod(path, mode)


def test_an_acl_user_with_only_the_commands_qgrey_needs(launcher, server, hosts):
    server.cli(*QGREY_ACL)
    server.cli("ACL", "SETUSER", "admin", "on", ">adminpw", "~*", "&*", "+@all")
    server.auth = ("admin", "adminpw")
    server.cli("ACL", "SETUSER", "default", "off")
    mx1, mx2 = hosts
    line = check(decide(launcher, mx1, server), b"", "error", "auth")
    assert b"NOAUTH" in line
    write_auth(mx1, "qgrey\ns3cret pass\n")
    write_auth(mx2, "qgrey\nwrong\n")
    check(decide(launcher, mx1, server), GREYLISTED, "greylist", "new")
    line = check(decide(launcher, mx2, server), b"", "error", "auth")
    assert b"WRONGPASS" in line
    write_auth(mx2, "qgrey\ns3cret pass")
    check(decide(launcher, mx2, server), GREYLISTED, "greylist", "early")
    age(server, KEY, 400)
    check(decide(launcher, mx2, server), action="pass", reason="delayed")
    assert decide(launcher, mx1, server).stdout.startswith(b"HX-Greylist: passed (known")
    # A user without TIME: refused with NOPERM, said in one line.
    server.cli("ACL", "SETUSER", "qgrey", "-time")
    line = check(decide(launcher, mx1, server, GL_ON_ERROR="defer"), DEFERRED, "error", "auth")
    assert b"NOPERM" in line


def test_credentials_readable_by_others_are_refused(launcher, server, hosts):
    write_auth(hosts[0], "whatever\n", 0o640)
    line = check(decide(launcher, hosts[0], server, GL_ON_ERROR="defer"), DEFERRED, "error", "auth")
    assert b"may be read by others; chmod 600 it" in line


def replica_of(tmp_path, primary, name="replica"):
    replica = RedisServer(tmp_path / name, "--replicaof", "127.0.0.1", str(primary.port))
    deadline = time.monotonic() + 10
    while "master_link_status:up" not in replica.cli("INFO", "replication"):
        assert time.monotonic() < deadline, replica.log()
        time.sleep(0.05)
    return replica


def wait_replicated(replica, key):
    deadline = time.monotonic() + 10
    while replica.cli("GET", key) is None:
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_a_read_only_replica(launcher, server, hosts, tmp_path):
    replica = replica_of(tmp_path, server)
    try:
        check(decide(launcher, hosts[0], server), GREYLISTED)
        age(server, KEY, 400)
        check(decide(launcher, hosts[0], server), action="pass", reason="delayed")
        wait_replicated(replica, "qgrey:client 198.51.100.7")
        # Known senders are read from the replica; what must be written is refused.
        known = decide(launcher, hosts[1], replica)
        assert known.stdout.startswith(b"HX-Greylist: passed (known sender)"), known
        line = check(decide(launcher, hosts[1], replica, SMTPRCPTTO="new@example.net",
                            GL_ON_ERROR="defer"), DEFERRED, "error", "readonly")
        assert b"READONLY" in line
    finally:
        replica.stop()


def test_failover_to_a_promoted_replica(launcher, server, hosts, tmp_path):
    """GL_REDIS lists the primary, then the replica: after the primary dies
    and the replica is promoted (REPLICAOF NO ONE, as Sentinel does), the
    hosts carry on on the new primary, with what was replicated."""
    replica = replica_of(tmp_path, server)
    try:
        # The primary by its socket: it comes back below on a new port.
        both = "%s,%s" % (server.url, replica.tcp)
        check(decide(launcher, hosts[0], both), GREYLISTED)
        age(server, KEY, 400)
        check(decide(launcher, hosts[1], both), action="pass", reason="delayed")
        wait_replicated(replica, KEY)
        server.signal(signal.SIGKILL)
        replica.cli("REPLICAOF", "NO", "ONE")
        known = decide(launcher, hosts[0], both)
        assert known.stdout.startswith(b"HX-Greylist: passed (known sender)"), known
        check(decide(launcher, hosts[1], both, SMTPRCPTTO="new@example.net"), GREYLISTED,
              "greylist", "new")
        assert replica.cli("EXISTS", "qgrey:198.51.100.0/24 alice@example.org new@example.net") == 1
        # The old primary comes back as a replica of the new one: READONLY
        # there sends writes on to the next server listed.
        server.options += ["--replicaof", "127.0.0.1", str(replica.port)]
        server.start()
        check(decide(launcher, hosts[0], both, SMTPRCPTTO="newer@example.net"), GREYLISTED,
              "greylist", "new")
        assert replica.cli("EXISTS", "qgrey:198.51.100.0/24 alice@example.org newer@example.net") == 1
    finally:
        replica.stop()


def test_out_of_memory_with_noeviction(launcher, server, hosts):
    check(decide(launcher, hosts[0], server), GREYLISTED)
    age(server, KEY, 400)
    check(decide(launcher, hosts[0], server), action="pass", reason="delayed")
    server.cli("CONFIG", "SET", "maxmemory-policy", "noeviction")
    server.cli("CONFIG", "SET", "maxmemory", "1")
    # Known senders still pass (reading needs no memory); a write is refused.
    assert decide(launcher, hosts[1], server).stdout.startswith(b"HX-Greylist: passed (known")
    line = check(decide(launcher, hosts[1], server, SMTPRCPTTO="new@example.net",
                        GL_ON_ERROR="defer"), DEFERRED, "error", "oom")
    assert b"OOM" in line


def test_the_per_rcpt_path_on_redis_loads_no_sqlite_nor_socket_module(launcher, server, hosts):
    from test_plugin import PROBE
    import sys
    package = os.path.dirname(os.path.dirname(os.path.abspath(__import__("qgrey").__file__)))
    env = host_env(hosts[0], server)
    for _ in range(2):  # new, then early
        result = spp([sys.executable, "-I", "-S", "-c", PROBE, package], env)
        assert result.returncode == 0, result.stderr
        loaded = set(result.stdout.split())
        assert b"qgrey.store.redis" in loaded
        assert not loaded & {b"sqlite3", b"_sqlite3", b"socket", b"selectors", b"enum",
                             b"re", b"os", b"signal", b"functools"}, loaded


# The tools on Redis

def tool(name, *args, gl_dir, server, env=None, stdin=None):
    from test_operate import command
    environment = {"GL_STORE": "redis", "GL_REDIS": server.url}
    environment.update(env or {})
    return command(name, *args, gl_dir=gl_dir, env=environment, stdin=stdin)


def test_a_site_moves_from_sqlite_to_redis_without_losing_an_entry(launcher, server, hosts):
    from test_operate import command, put
    from qgrey.policy import Entry
    mx1, mx2 = hosts
    now = int(time.time())
    live = [("198.51.100.0/24 a%d@example.org b@example.net" % i, Entry(now - 60, now - 60, 0, 1))
            for i in range(1500)]
    live += [("192.0.2.0/24 known@example.org b@example.net", Entry(now - 9 * 86400, now - 86400, now - 9 * 86400 + 300, 2)),
             ("client 192.0.2.0/24", Entry(now - 86400, now - 3600, now - 3600, 5)),
             ("reply friend@example.com>me@example.net", Entry(now, now, now, 1))]
    gone = [("203.0.113.0/24 old@example.org b@example.net", Entry(now - 5 * 86400, now - 5 * 86400, 0, 1))]
    put(mx1, live + gone)
    dumped = command("qgrey-admin", "dump", "/dev/stdout", gl_dir=mx1)
    assert dumped.returncode == 0
    loaded = tool("qgrey-admin", "load", gl_dir=mx2, server=server, stdin=dumped.stdout)
    assert (loaded.returncode, loaded.stdout) == (
        0, "loaded 1504 entries (1 no longer needed by the rules, not written)\n")
    again = tool("qgrey-admin", "dump", gl_dir=mx2, server=server)
    assert again.returncode == 0
    header, *rows = again.stdout.splitlines(True)
    expected = [line for line in dumped.stdout.splitlines(True)[1:] if "old@" not in line]
    assert header == "qgrey-dump 1\n" and sorted(rows) == sorted(expected)
    ttl = server.cli("TTL", "qgrey:192.0.2.0/24 known@example.org b@example.net")
    assert 35 * 86400 - 10 <= ttl <= 35 * 86400 + 1  # lifetime 36d from last seen, a day ago
    # The moved known sender passes at once on the other host.
    known = decide(launcher, mx2, server, TCPREMOTEIP="192.0.2.9", SMTPMAILFROM="known@example.org",
                   SMTPRCPTTO="b@example.net")
    assert known.stdout.startswith(b"HX-Greylist: passed (auto-whitelisted client)"), known


def test_admin_commands_on_redis(launcher, server, hosts):
    mx1, _ = hosts
    check(decide(launcher, mx1, server), GREYLISTED)
    listed = tool("qgrey-admin", "list", "--no-header", gl_dir=mx1, server=server)
    assert listed.returncode == 0
    assert re.match(r"waiting +\d+s ago +\d+s ago +- +1  198\.51\.100\.0/24 alice@example\.org bob@example\.net\n$",
                    listed.stdout), listed.stdout
    allowed = tool("qgrey-admin", "allow", "198.51.100.7", "alice@example.org", "bob@example.net",
                   gl_dir=mx1, server=server)
    assert allowed.stdout == "released 198.51.100.0/24 alice@example.org bob@example.net\n"
    assert decide(launcher, mx1, server).stdout.startswith(b"HX-Greylist: passed (known sender)")
    stats = tool("qgrey-admin", "stats", gl_dir=mx1, server=server)
    assert "entries 2\n" in stats.stdout and "  passed       1\n" in stats.stdout
    shown = tool("qgrey-admin", "show", "--client", "198.51.100.7", "--state", "counting",
                 gl_dir=mx1, server=server)
    assert shown.stdout.splitlines()[1].endswith("client 198.51.100.7")  # GL_AWL_UNIT=address
    deleted = tool("qgrey-admin", "delete", "--client", "198.51.100.7", gl_dir=mx1, server=server)
    assert (deleted.returncode, deleted.stdout) == (0, "deleted client 198.51.100.7\n")
    deleted = tool("qgrey-admin", "delete", "--key", KEY[6:], gl_dir=mx1, server=server)
    assert deleted.returncode == 0 and server.cli("DBSIZE") == 0
    missing = tool("qgrey-admin", "delete", "--key", KEY[6:], gl_dir=mx1, server=server)
    assert missing.returncode == 1
    expired = tool("qgrey-expire", gl_dir=mx1, server=server)
    assert (expired.returncode, expired.stdout) == (0, "nothing to remove: GL_STORE=redis expires "
                                                    "entries by itself (each key carries the TTL the rules give it)\n")


def test_admin_list_scans_in_batches_never_keys(launcher, server, hosts):
    from qgrey.policy import Entry
    from qgrey.store import open_store
    from qgrey import settings as settings_module
    store = open_store(settings_module.load({b"GL_DIR": hosts[0].encode(), b"GL_STORE": b"redis",
                                             b"GL_REDIS": server.url.encode()}))
    now = int(time.time())
    try:
        for start in range(0, 2500, 1000):
            store.put_many([("10.0.0.0/24 s%d@example.org r@example.net" % i, Entry(now, now, 0, 1))
                            for i in range(start, min(start + 1000, 2500))])
    finally:
        store.close()
    server.cli("SET", "unrelated", "x")
    server.cli("CONFIG", "RESETSTAT")
    listed = tool("qgrey-admin", "list", "--no-header", gl_dir=hosts[0], server=server)
    assert len(listed.stdout.splitlines()) == 2500
    stats = server.cli("INFO", "commandstats")
    assert "cmdstat_scan:" in stats and "cmdstat_keys:" not in stats


def test_admin_check_on_redis(launcher, server, hosts):
    mx1, _ = hosts
    check(decide(launcher, mx1, server), GREYLISTED)
    ok = tool("qgrey-admin", "check", gl_dir=mx1, server=server)
    assert ok.returncode == 0, ok.stdout
    assert ok.stdout.endswith("ok: GL_DIR=%s GL_STORE=redis\n" % mx1)
    assert "role master" in ok.stdout and "1 keys sampled, all with a TTL" in ok.stdout
    server.cli("SET", "qgrey:10.0.0.0/24 x@example.org y@example.net", "1 1 0 1")
    server.cli("CONFIG", "SET", "maxmemory", "1gb")
    server.cli("CONFIG", "SET", "maxmemory-policy", "allkeys-lru")
    bad = tool("qgrey-admin", "check", gl_dir=mx1, server=server)
    assert bad.returncode == 1
    assert "problem: 1 of 2 keys sampled under qgrey: have no TTL" in bad.stdout
    assert "warning: maxmemory-policy allkeys-lru lets Redis evict keys" in bad.stdout
    server.signal(signal.SIGKILL)
    down = tool("qgrey-admin", "check", gl_dir=mx1, server=server)
    assert down.returncode == 1
    assert "problem: cannot connect to Redis unix:" in down.stdout and "fix: start Redis" in down.stdout


def test_a_server_listed_first_that_never_answers_leaves_time_for_the_next(launcher, server, hosts, tmp_path):
    """A first server whose accept queue is full (stalled) gets its share of
    GL_REDIS_TIMEOUT; the decision is then made on the next one listed."""
    import socket
    path = str(tmp_path / "stalled.sock")
    stalled = socket.socket(socket.AF_UNIX)
    stalled.bind(path)
    stalled.listen(0)
    waiting = []
    try:
        for _ in range(4):  # fill its queue: connects now get EAGAIN
            client = socket.socket(socket.AF_UNIX)
            client.setblocking(False)
            try:
                client.connect(path)
            except BlockingIOError:
                client.close()
                break
            waiting.append(client)
        started = time.monotonic()
        result = decide(launcher, hosts[0], "unix:%s,%s" % (path, server.url))
        elapsed = time.monotonic() - started
        check(result, GREYLISTED, "greylist", "new")
        assert 0.25 <= elapsed < 0.5 + 2.5, elapsed
        assert server.cli("EXISTS", KEY) == 1
    finally:
        for client in waiting:
            client.close()
        stalled.close()
