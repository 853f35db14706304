"""The Redis part of bench/run (GL_STORE=redis).

bench/run starts one private redis-server (Server) on a UNIX socket in its
temporary directory, without persistence, and stops it at the end, also
when the run fails. The decision cases are measured by bench/run like every
other case; this module adds what only Redis has: round trips per decision
(counted in-process by a probe), memory per entry (INFO memory around a fill
with realistic entries) and the server's CPU per decision (INFO cpu around a
throughput run). It talks to the server with qgrey's own RESP client.
Standard library only.
"""
import os
import random
import shutil
import subprocess
import time

from qgrey import keys, policy, settings as settings_module
from qgrey.store.redis import Connection, ErrorReply, command

PREFIX = b"qgrey:"  # GL_REDIS_PREFIX's default
DAY = 86400
TIMEOUT = 60  # seconds for any one exchange of the benchmark itself

# The plugin that counts round trips: RedisStore.round_trips is read when
# the plugin closes the store. Prints "action reason round-trips sqlite-modules".
PROBE = r"""
import posix, sys, time
sys.path.insert(0, %r)
import qgrey.store.redis as redis
trips = []
close = redis.RedisStore.close
def counted_close(self):
    trips.append(self.round_trips)
    close(self)
redis.RedisStore.close = counted_close
from qgrey.plugin import decide
decision = decide(posix.environ, int(time.time()), [])
loaded = [name for name in ("_sqlite3", "sqlite3") if name in sys.modules]
print(decision.action, decision.reason, sum(trips), ",".join(loaded) or "-")
"""


def find_server():
    found = shutil.which("redis-server")
    if found is None and os.access("/usr/bin/redis-server", os.X_OK):
        found = "/usr/bin/redis-server"
    return found


class Server:
    """One redis-server of this run alone: port 0 (no TCP), a socket in
    directory, nothing saved. .url is the GL_REDIS value."""

    def __init__(self, program, directory):
        os.makedirs(directory, mode=0o700)
        self.socket = os.path.join(directory, "redis.sock")
        self.log = os.path.join(directory, "log")
        self.url = "unix:" + self.socket
        self.conn = None
        self.process = subprocess.Popen(
            [program, "--port", "0", "--unixsocket", self.socket, "--unixsocketperm", "700",
             "--save", "", "--appendonly", "no", "--dir", directory, "--logfile", self.log,
             "--daemonize", "no"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                if self.call("PING") == b"PONG":
                    break
            except Exception:
                self.conn = None
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise SystemExit("bench: redis-server did not start: " + self.log_tail())
                time.sleep(0.02)
        self.version = self.info("server")["redis_version"]

    def log_tail(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()[-1000:]
        except OSError:
            return "(no log)"

    def call_many(self, commands):
        """Commands in one pipeline -> their replies; an error reply raises."""
        deadline = time.monotonic() + TIMEOUT
        if self.conn is None:
            self.conn = Connection(("unix", self.socket, 0), deadline, deadline)
        self.conn.deadline = deadline
        self.conn.send(b"".join(commands))
        replies = [self.conn.reply() for _ in commands]
        for reply in replies:
            if isinstance(reply, ErrorReply):
                raise SystemExit("bench: Redis answered -" + reply.text)
        return replies

    def call(self, *args):
        return self.call_many([command(*args)])[0]

    def info(self, section):
        text = self.call("INFO", section).decode()
        return dict(line.split(":", 1) for line in text.split("\r\n") if ":" in line)

    def cpu(self):
        """Seconds of CPU the server has used (all its threads)."""
        info = self.info("cpu")
        return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])

    def stop(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def set_entries(server, items):
    """[(key, (first, last, passed, tries))] as the plugin writes them: one
    string per entry with the TTL the rules give, 1000 per pipeline.
    -> total bytes of the keys as stored (prefix included)."""
    settings = settings_module.load({b"GL_DIR": b"/nonexistent"})  # the defaults
    now = int(server.call("TIME")[0])
    key_bytes, batch = 0, []
    for key, fields in items:
        entry = policy.Entry(*fields)
        ttl = policy.expires_at(entry, settings, keys.kind(key)) - now
        name = PREFIX + key.encode()
        key_bytes += len(name)
        batch.append(command(b"SET", name, b"%d %d %d %d" % fields, b"EX", max(ttl, 1)))
        if len(batch) == 1000:
            server.call_many(batch)
            batch = []
    if batch:
        server.call_many(batch)
    return key_bytes


NAMES = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "info",
         "newsletter", "noreply", "sales", "support", "j.smith", "m.mueller")
DOMAINS = ("example.org", "example.net", "example.com", "mail.example.de",
           "lists.example.co.uk", "example-shop.fr", "corp.example.nl")


def realistic(count, now):
    """count (key, fields): a mix like a live greylist's, all still of use
    under the default rules (GL_RETRY_WINDOW 2d, GL_LIFETIME 36d): 30%
    triplets waiting for their retry, 55% triplets that passed, 15%
    auto-whitelisting counts of clients."""
    rng = random.Random(count)
    for _ in range(count):
        client = "%d.%d.%d.0/24" % (rng.randrange(1, 224), rng.randrange(256), rng.randrange(256))
        kind = rng.random()
        if kind < 0.15:
            last = now - rng.randrange(30 * DAY)
            yield "client " + client, (last - rng.randrange(DAY), last, 0, 1 + rng.randrange(4))
            continue
        key = "%s %s%d@%s %s%d@%s" % (
            client, rng.choice(NAMES), rng.randrange(10000), rng.choice(DOMAINS),
            rng.choice(NAMES), rng.randrange(1000), rng.choice(DOMAINS))
        if kind < 0.45:
            first = now - rng.randrange(2 * DAY - 60)
            yield key, (first, min(now, first + rng.randrange(60)), 0, 1 + rng.randrange(3))
        else:
            first = now - 4000 - rng.randrange(30 * DAY)
            passed = first + 300 + rng.randrange(3600)
            yield key, (first, max(passed, now - rng.randrange(30 * DAY)), passed, 1)


def memory_per_entry(server, count):
    """Fill the server with count realistic entries -> (entries added,
    used_memory bytes per entry, average key length)."""
    server.call("FLUSHALL")
    before = int(server.info("memory")["used_memory"])
    entries_before = server.call("DBSIZE")
    key_bytes = set_entries(server, realistic(count, int(time.time())))
    added = server.call("DBSIZE") - entries_before
    used = int(server.info("memory")["used_memory"]) - before
    return added, used / added, key_bytes / count


def back_to_back(server, env_of_run, seconds):
    """qgrey.plugin.decide in this process, one decision after the other
    for seconds: the plugin's requests (a new connection each) without its
    process start, so that the server, not the start-up, sets the pace.
    -> (decisions, server CPU seconds)."""
    from qgrey.plugin import decide
    done = 0
    cpu = server.cpu()
    stop = time.monotonic() + seconds
    while time.monotonic() < stop:
        environ = {k.encode(): v.encode() for k, v in env_of_run().items()}
        decision = decide(environ, int(time.time()), [])
        if decision.action == "error":
            raise SystemExit("bench: decision failed: %s" % decision.detail)
        done += 1
    return done, server.cpu() - cpu


def probe(python, package_parent, env):
    """One decision in a child that counts the store's round trips
    -> (action, reason, round trips, SQLite modules loaded or "-")."""
    result = subprocess.run([python, "-I", "-S", "-c", PROBE % package_parent], env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd="/", timeout=60)
    fields = result.stdout.decode().split()
    if result.returncode != 0 or len(fields) != 4:
        raise SystemExit("bench: the round-trip probe failed: %s" % result.stderr.decode()[-500:])
    action, reason, trips, loaded = fields
    return action, reason, int(trips), loaded
