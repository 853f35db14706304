"""The shared store: one Redis greylist for several MX hosts (GL_STORE=redis).

The plugin speaks Redis's protocol (RESP2) itself over the C socket module:
the redis package, or even the socket module (enum, selectors), would cost
more than the decision. Only what qgrey uses is implemented: the five RESP2
reply types, error replies, pipelining.

One key per entry: GL_REDIS_PREFIX + the qgrey key, value
b"first last passed tries", written with the TTL after which the rules no
longer need it (the store is given expiry(key, entry) -> the first second
the entry is of no use), so Redis expires entries by itself.

A request is one optimistic transaction, retried on conflict:
  round trip 1: [AUTH] [SELECT] WATCH keys; MGET keys; TIME
  round trip 2 (only when something changes): MULTI; SET/DEL ...; EXEC
EXEC fails (a null reply) when another host or process changed a watched
key in between; the request is then read and decided again. A known sender
costs one round trip. The clock of every decision is the Redis server's
(TIME): hosts whose clocks differ cannot shorten or lengthen a delay.

Every connect, send and reply is bounded by one deadline per operation
(GL_REDIS_TIMEOUT): qmail-spp has no timeout of its own.
"""
import posix
import time

import _socket

from qgrey.store import Store, StoreError, decode_entry, encode_entry

AUTH_FILE = "redis-auth"
# Limits on what a reply may claim: qgrey's values are < 100 bytes, its
# keys < 1 KB, its batches 1000 keys; anything far beyond is not Redis, and
# must not exhaust the memory qmail-smtpd's softlimit leaves the plugin.
MAX_LINE = 64 * 1024
MAX_BULK = 512 * 1024
MAX_ARRAY = 65536
MAX_DEPTH = 4
MAX_ROUND_TRIP = 2 << 20  # bytes received for the replies of one round trip
BATCH = 1000

# Error reply prefixes -> the log reason. Any other error reply: "redis".
_REASONS = {
    "NOAUTH": "auth", "WRONGPASS": "auth", "NOPERM": "auth",
    "READONLY": "readonly", "OOM": "oom", "LOADING": "loading",
    "MASTERDOWN": "readonly",
}
# Worth trying the next server listed in GL_REDIS (after a failover).
_NEXT_SERVER = ("unreachable", "readonly", "loading")


class ErrorReply(Exception):
    """An error reply (-...), returned in place of a value."""

    def __init__(self, text):
        Exception.__init__(self, text)
        self.text = text
        self.reason = _REASONS.get(text.split(" ", 1)[0], "redis")


def command(*args):
    """One command in RESP: an array of bulk strings."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        if not isinstance(arg, bytes):
            arg = str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(out)


class Connection:
    """One connection to one server; every wait ends at self.deadline."""

    @staticmethod
    def describe(server):
        family, address, _ = server
        if family == "unix":
            return "unix:" + address
        return ("[%s]:%d" if family == "inet6" else "%s:%d") % address

    def __init__(self, server, deadline, connect_deadline):
        family, address, _ = server
        self.name = self.describe(server)
        self.deadline = deadline
        self.buf = bytearray()
        self.pos = 0
        self.received = 0
        self.sock = None
        af = {"unix": _socket.AF_UNIX, "inet": _socket.AF_INET, "inet6": _socket.AF_INET6}[family]
        try:
            self.sock = _socket.socket(af, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
            while True:
                self.sock.settimeout(max(0.001, connect_deadline - time.monotonic()))
                try:
                    self.sock.connect(address)
                    break
                except BlockingIOError:
                    # A UNIX socket whose accept queue is full answers EAGAIN
                    # at once, where TCP would wait: a busy Redis is waited
                    # for until the deadline, not taken for a dead one.
                    if time.monotonic() >= connect_deadline:
                        raise TimeoutError()
                    time.sleep(0.002)
            if family != "unix":
                self.sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
        except OSError as err:
            self.close()
            raise self._error(err, "cannot connect to")

    def _error(self, err, what):
        if isinstance(err, (TimeoutError, _socket.timeout)):
            return StoreError("timeout", "%s Redis %s: no answer in time" % (what, self.name))
        return StoreError("unreachable", "%s Redis %s: %s" % (what, self.name, err.strerror or err))

    def _remaining(self):
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise StoreError("timeout", "Redis %s: no answer in time" % self.name)
        return left

    def send(self, data):
        self.received = 0
        try:
            self.sock.settimeout(self._remaining())
            self.sock.sendall(data)
        except OSError as err:
            raise self._error(err, "cannot write to")

    def _fill(self):
        if self.pos > 65536:
            del self.buf[:self.pos]
            self.pos = 0
        try:
            self.sock.settimeout(self._remaining())
            data = self.sock.recv(65536)
        except OSError as err:
            raise self._error(err, "cannot read from")
        if not data:
            raise StoreError("unreachable", "Redis %s closed the connection" % self.name)
        self.received += len(data)
        if self.received > MAX_ROUND_TRIP:
            raise self._protocol("more than %d bytes of replies in one round trip" % MAX_ROUND_TRIP)
        self.buf += data

    def _protocol(self, what):
        return StoreError("protocol", "Redis %s: %s" % (self.name, what))

    def _line(self):
        while True:
            end = self.buf.find(b"\r\n", self.pos)
            if end >= 0:
                line = bytes(self.buf[self.pos:end])
                self.pos = end + 2
                return line
            if len(self.buf) - self.pos > MAX_LINE:
                raise self._protocol("reply line longer than %d bytes" % MAX_LINE)
            self._fill()

    def _number(self, text, low, high, what):
        digits = text[1:] if text[:1] == b"-" else text
        if not digits.isdigit() or len(digits) > 19:
            raise self._protocol("bad %s %r" % (what, text[:40]))
        value = int(text)
        if not low <= value <= high:
            raise self._protocol("%s %d out of range" % (what, value))
        return value

    def reply(self, depth=0):
        """One reply: bytes (simple or bulk string), int, None (null), list,
        or an ErrorReply object (not raised: a pipeline reads on)."""
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest
        if kind == b"-":
            return ErrorReply(rest.decode("utf-8", "replace"))
        if kind == b":":
            return self._number(rest, -(1 << 63), (1 << 63) - 1, "integer")
        if kind == b"$":
            size = self._number(rest, -1, MAX_BULK, "bulk length")
            if size < 0:
                return None
            while len(self.buf) - self.pos < size + 2:
                self._fill()
            end = self.pos + size
            if self.buf[end:end + 2] != b"\r\n":
                raise self._protocol("bulk string not ended by CRLF")
            value = bytes(self.buf[self.pos:end])
            self.pos = end + 2
            return value
        if kind == b"*":
            size = self._number(rest, -1, MAX_ARRAY, "array length")
            if size < 0:
                return None
            if depth >= MAX_DEPTH:
                raise self._protocol("arrays nested too deep")
            return [self.reply(depth + 1) for _ in range(size)]
        raise self._protocol("unexpected reply %r" % line[:40])

    def close(self):
        if self.sock is not None:
            sock, self.sock = self.sock, None
            sock.close()


def read_credentials(directory):
    """GL_DIR/redis-auth -> [] or the AUTH arguments: one line, the password
    (requirepass or the default user); two lines, user then password. The
    file must be readable by its owner only (tcprules' files are
    world-readable, so credentials never come from the environment)."""
    path = directory + "/" + AUTH_FILE
    try:  # O_NONBLOCK: a FIFO there must not stall the session
        fd = posix.open(path, posix.O_RDONLY | posix.O_NOFOLLOW | posix.O_CLOEXEC | posix.O_NONBLOCK)
    except FileNotFoundError:
        return []
    except OSError as err:
        raise StoreError("auth", "cannot read %s: %s" % (path, err.strerror))
    try:
        st = posix.fstat(fd)
        if st.st_mode & 0o170000 != 0o100000:
            raise StoreError("auth", "%s is not a regular file" % path)
        if st.st_mode & 0o077:
            raise StoreError("auth", "%s may be read by others; chmod 600 it" % path)
        data = posix.read(fd, 4096)
    except OSError as err:
        raise StoreError("auth", "cannot read %s: %s" % (path, err.strerror))
    finally:
        posix.close(fd)
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    lines = [line[:-1] if line.endswith(b"\r") else line for line in lines]
    if len(lines) not in (1, 2) or not all(lines):
        raise StoreError("auth", "%s: want the password, or a user and a password, "
                         "on one line each" % path)
    return lines


class RedisStore(Store):
    expires_by_itself = True

    def __init__(self, settings, expiry, deadline=None):
        self.dir = settings.dir
        self.servers = settings.redis
        self.prefix = settings.redis_prefix.encode()
        self.timeout = settings.redis_timeout
        self.expiry = expiry
        self.deadline = deadline if deadline is not None else time.monotonic() + self.timeout
        self.index = 0
        self.conn = None
        self.preamble = None
        self.round_trips = 0

    # Connection and pipelines

    def _renew(self):
        """A fresh deadline: each batch of the tools is one operation."""
        self.deadline = time.monotonic() + self.timeout
        if self.conn is not None:
            self.conn.deadline = self.deadline

    def _connect(self):
        if self.preamble is None:
            self.preamble = []
            credentials = read_credentials(self.dir)
            if credentials:
                self.preamble.append(command(b"AUTH", *credentials))
        while True:
            server = self.servers[self.index]
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise StoreError("timeout", "Redis: no answer in time")
            # A dead server listed first must leave time for the next one.
            share = left / (len(self.servers) - self.index)
            try:
                self.conn = Connection(server, self.deadline, time.monotonic() + share)
                self.pending = list(self.preamble)
                if server[2]:
                    self.pending.append(command(b"SELECT", server[2]))
                return
            except StoreError as err:  # refused or no answer in its share of time
                if not self._next_server(err, connecting=True):
                    raise

    def _next_server(self, err, connecting=False):
        """After err, move on to the next server in GL_REDIS, if any."""
        self.close()
        if not connecting and err.reason not in _NEXT_SERVER:
            return False
        if self.index + 1 >= len(self.servers):
            return False
        self.index += 1
        return True

    def _pipeline(self, commands):
        """Send commands in one round trip -> their replies (ErrorReply
        objects included). Connects first if need be; the replies of AUTH
        and SELECT are checked here."""
        if self.conn is None:
            self._connect()
        first, self.pending = self.pending, []
        self.conn.send(b"".join(first + commands))
        self.round_trips += 1
        for _ in first:
            check(self.conn.reply(), self.conn)
        return [self.conn.reply() for _ in commands]

    def _run(self, operation):
        """operation() on the current server, again on the next one listed
        after a failover (refused, READONLY, LOADING)."""
        while True:
            try:
                return operation()
            except StoreError as err:
                if not self._next_server(err):
                    raise

    def _names(self, keys):
        return [self.prefix + key.encode() for key in keys]

    def _decode(self, values, count):
        if not isinstance(values, list) or len(values) != count:
            raise StoreError("protocol", "Redis %s: MGET answered %r" % (
                self.conn.name, repr(values)[:60]))
        entries = []
        for value in values:
            if value is not None and not isinstance(value, bytes):
                raise StoreError("protocol", "Redis %s: MGET answered a %s" % (
                    self.conn.name, type(value).__name__))
            entries.append(None if value is None else decode_entry(value))
        return entries

    def _server_time(self, reply):
        if (not isinstance(reply, list) or len(reply) != 2
                or not all(isinstance(v, bytes) and v.isdigit() for v in reply)):
            check(reply, self.conn)
            raise StoreError("protocol", "Redis %s: TIME answered %r" % (
                self.conn.name, repr(reply)[:60]))
        return int(reply[0])

    def _writes(self, pairs, now):
        """SET (with the TTL the rules give) or DEL for [(key, entry)]."""
        commands = []
        for key, entry in pairs:
            name = self.prefix + key.encode()
            ttl = None if entry is None else self.expiry(key, entry) - now
            if ttl is None or ttl <= 0:
                commands.append(command(b"DEL", name))
            else:
                commands.append(command(b"SET", name, encode_entry(entry), b"EX", ttl))
        return commands

    # The Store interface

    def _transact(self, keys, change):
        """The optimistic transaction of one request (see the module text)."""
        wanted = [key for key in keys if key is not None]
        names = self._names(wanted)
        decided = None  # the result of the last read, once EXEC has refused
        while True:
            try:
                replies = self._pipeline([command(b"WATCH", *names), command(b"MGET", *names),
                                          command(b"TIME")])
            except StoreError as err:
                if decided is None or err.reason != "timeout":
                    raise
                return self._not_recorded(decided, "conflict")
            check(replies[0], self.conn)
            found = iter(self._decode(check(replies[1], self.conn), len(names)))
            now = self._server_time(replies[2])
            entries = [None if key is None else next(found) for key in keys]
            result, new = change(entries, now)
            changed = [(key, n) for key, e, n in zip(keys, entries, new)
                       if key is not None and n is not e]
            if not changed:
                return result
            writes = self._writes(changed, now)
            try:
                replies = self._pipeline([command(b"MULTI")] + writes + [command(b"EXEC")])
            except StoreError as err:
                if err.reason != "timeout":
                    raise
                return self._not_recorded(result, "timeout" if decided is None else "conflict")
            for reply in replies[:-1]:  # an error while queueing: EXEC aborts
                check(reply, self.conn)
            done = check(replies[-1], self.conn)
            if done is not None:
                if not isinstance(done, list) or len(done) != len(writes):
                    raise StoreError("protocol", "Redis %s: EXEC answered %r" % (
                        self.conn.name, repr(done)[:60]))
                for reply in done:
                    check(reply, self.conn)
                return result
            decided = result
            if time.monotonic() >= self.deadline:
                return self._not_recorded(decided, "conflict")

    def _not_recorded(self, result, reason):
        """The entries were read, but the write could not be done by the
        deadline (the keys kept changing, or no answer): as for a lock not
        obtained, the answer the read implies stands."""
        what = {"conflict": "the entries kept changing under this decision",
                "timeout": "no answer to the write"}[reason]
        self.degraded = "not recorded: Redis %s: %s until the deadline (%s)" % (
            Connection.describe(self.servers[self.index]), what, reason)
        return result

    def change_many(self, keys, change, now=None):
        """The clock is the server's: now is ignored."""
        return self._run(lambda: self._transact(keys, change))

    def update_many(self, keys, change):
        return self._run(lambda: self._transact(keys, lambda entries, now: change(entries)))

    def lookup_many(self, keys):
        wanted = [key for key in keys if key is not None]
        if not wanted:
            return [None] * len(keys)

        def read():
            reply = self._pipeline([command(b"MGET", *self._names(wanted))])[0]
            found = iter(self._decode(check(reply, self.conn), len(wanted)))
            return [None if key is None else next(found) for key in keys]
        return self._run(read)

    def entries(self, batch=BATCH):
        """Every (key, entry) under the prefix, SCAN batch by batch (never
        KEYS, which blocks the server); in no particular order."""
        pattern = b"".join(b"\\" + bytes((c,)) if c in b"*?[]\\" else bytes((c,))
                           for c in self.prefix) + b"*"
        cursor = b"0"
        while True:
            self._renew()
            reply = self._run(lambda: check(self._pipeline(
                [command(b"SCAN", cursor, b"MATCH", pattern, b"COUNT", batch)])[0], self.conn))
            if (not isinstance(reply, list) or len(reply) != 2 or not isinstance(reply[0], bytes)
                    or not isinstance(reply[1], list)):
                raise StoreError("protocol", "Redis: SCAN answered %r" % repr(reply)[:60])
            cursor, names = reply
            names = [n for n in names if isinstance(n, bytes) and n.startswith(self.prefix)]
            if names:
                keys = [n[len(self.prefix):].decode("ascii", "surrogateescape") for n in names]
                for key, entry in zip(keys, self.lookup_many(keys)):
                    if entry is not None:  # expired since the SCAN
                        yield key, entry
            if cursor == b"0":
                return

    def put_many(self, items):
        """Write [(key, entry)] in one round trip, each with its TTL; an
        entry the rules no longer need is not written. -> how many written."""
        self._renew()

        def write():
            now = self._server_time(self._pipeline([command(b"TIME")])[0])
            writes = self._writes(items, now)
            for reply in self._pipeline(writes):
                check(reply, self.conn)
            return sum(1 for w in writes if w.startswith(b"*5"))
        return self._run(write)

    def call(self, *args):
        """One command, for the tools -> its reply (errors raised)."""
        self._renew()
        return self._run(lambda: check(self._pipeline([command(*args)])[0], self.conn))

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def check(reply, conn):
    """reply, unless it is an error reply: then a StoreError."""
    if isinstance(reply, ErrorReply):
        raise StoreError(reply.reason, "Redis %s: %s" % (conn.name, reply.text[:200]))
    return reply
