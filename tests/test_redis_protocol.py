"""GL_STORE=redis against a misbehaving server.

1. The RESP2 client of qgrey/store/redis.py on its own: command() encoding
   and Connection.reply() over every reply type, partial reads, a closed
   connection and malformed input (only StoreError may come out).
2. The plugin, run as qmail-spp runs it, against a fake Redis on a UNIX
   socket that answers according to a script: each misbehaviour must give
   one clean answer, one log line with the right reason, and honour
   GL_ON_ERROR (accept, defer, local) within GL_REDIS_TIMEOUT.
3. GL_DIR/redis-auth: AUTH pipelined before WATCH in the first round trip,
   a file others may read refused before anything is sent, and never
   credentials from the environment.

No real Redis is needed.
"""
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from qgrey.reply import DEFER_ON_ERROR
from qgrey.store import FallbackStore, Store, StoreError
from qgrey.store import redis as qredis
from qgrey.store.redis import MAX_LINE, Connection, ErrorReply, command
from test_hostile import GREYLISTED, check

TIMEOUT = 0.5  # GL_REDIS_TIMEOUT's default, set explicitly in every run
SLACK = 2.5    # interpreter start-up and the local store, on a loaded machine


# --- 1. the pure parsing ----------------------------------------------------

class FakeSocket:
    """Hands out the given bytes in chunks of `step` (all at once: None),
    then b"" (the peer closed), or raises `then` instead of closing."""

    def __init__(self, data, step=None, then=None):
        self.data = bytes(data)
        self.step = step
        self.then = then
        self.recvs = 0
        self.timeouts = []

    def settimeout(self, value):
        self.timeouts.append(value)

    def recv(self, size):
        self.recvs += 1
        if not self.data:
            if self.then is not None:
                raise self.then
            return b""
        n = min(size, self.step or size)
        chunk, self.data = self.data[:n], self.data[n:]
        return chunk


def conn_for(data, step=None, then=None, deadline=60.0):
    """A Connection that never connected, reading from a FakeSocket."""
    conn = Connection.__new__(Connection)
    conn.name = "unix:/fake"
    conn.deadline = time.monotonic() + deadline
    conn.buf = bytearray()
    conn.pos = 0
    conn.received = 0
    conn.sock = FakeSocket(data, step, then)
    return conn


def parse(data, step=None):
    return conn_for(data, step).reply()


def parse_error(data, step=None):
    """The StoreError reply() raises on data (nothing else may come out)."""
    with pytest.raises(StoreError) as info:
        parse(data, step)
    return info.value


def test_command_encoding():
    assert command(b"GET", b"k") == b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
    assert command(b"TIME") == b"*1\r\n$4\r\nTIME\r\n"
    assert command() == b"*0\r\n"
    assert command(b"SET", "qgrey:k", b"1 2 3 4", b"EX", 3600) == (
        b"*5\r\n$3\r\nSET\r\n$7\r\nqgrey:k\r\n$7\r\n1 2 3 4\r\n$2\r\nEX\r\n$4\r\n3600\r\n")
    # Binary-safe: empty, CRLF inside, NUL; str as UTF-8 (length in bytes).
    assert command(b"", b"a\r\nb", b"\x00") == b"*3\r\n$0\r\n\r\n$4\r\na\r\nb\r\n$1\r\n\x00\r\n"
    assert command("\u00e9") == b"*1\r\n$2\r\n\xc3\xa9\r\n"
    assert command(b"SELECT", 0) == b"*2\r\n$6\r\nSELECT\r\n$1\r\n0\r\n"
    assert command(b"X", -5) == b"*2\r\n$1\r\nX\r\n$2\r\n-5\r\n"


def test_command_round_trips_through_reply():
    args = [b"WATCH", b"qgrey:198.51.100.0/24 a@b c@d", b"", b"\r\n\r\n", bytes(range(256))]
    assert parse(command(*args)) == args


@pytest.mark.parametrize("data, value", [
    (b"+OK\r\n", b"OK"),
    (b"+\r\n", b""),
    (b"+QUEUED\r\n", b"QUEUED"),
    (b":0\r\n", 0),
    (b":1000\r\n", 1000),
    (b":-1\r\n", -1),
    (b":-42\r\n", -42),
    (b":9223372036854775807\r\n", (1 << 63) - 1),
    (b":-9223372036854775808\r\n", -(1 << 63)),
    (b"$5\r\nhello\r\n", b"hello"),
    (b"$0\r\n\r\n", b""),
    (b"$-1\r\n", None),
    (b"$4\r\na\r\nb\r\n", b"a\r\nb"),
    (b"$3\r\n\x00\xff\r\r\n", b"\x00\xff\r"),
    (b"*0\r\n", []),
    (b"*-1\r\n", None),
    (b"*2\r\n$10\r\n1700000000\r\n$6\r\n123456\r\n", [b"1700000000", b"123456"]),
    (b"*3\r\n$7\r\n1 2 3 4\r\n$-1\r\n$0\r\n\r\n", [b"1 2 3 4", None, b""]),
    (b"*2\r\n*2\r\n:1\r\n+a\r\n*0\r\n", [[1, b"a"], []]),
    (b"*1\r\n*-1\r\n", [None]),
    # Four levels of arrays are allowed (MAX_DEPTH).
    (b"*1\r\n*1\r\n*1\r\n*1\r\n:7\r\n", [[[[7]]]]),
])
def test_reply_types(data, value):
    assert parse(data) == value
    assert parse(data, step=1) == value  # one byte per recv
    # What follows a reply stays for the next one.
    conn = conn_for(data + b"+NEXT\r\n", step=3)
    assert conn.reply() == value
    assert conn.reply() == b"NEXT"


@pytest.mark.parametrize("line, reason", [
    (b"-ERR unknown command 'FOO'", "redis"),
    (b"-ERR", "redis"),
    (b"-NOSCRIPT No matching script. Please use EVAL.", "redis"),
    (b"-READONLY You can't write against a read only replica.", "readonly"),
    (b"-OOM command not allowed when used memory > 'maxmemory'.", "oom"),
    (b"-NOAUTH Authentication required.", "auth"),
    (b"-WRONGPASS invalid username-password pair or user is disabled.", "auth"),
    (b"-LOADING Redis is loading the dataset in memory", "loading"),
    (b"-NOPERM this user has no permissions to run the 'set' command", "auth"),
    (b"-EXECABORT Transaction discarded because of previous errors.", "redis"),
    (b"-MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.",
     "readonly"),
    (b"-", "redis"),
    (b"-\xff\xfe binary", "redis"),
])
def test_error_replies(line, reason):
    for step in (None, 1):
        value = parse(line + b"\r\n", step)
        assert isinstance(value, ErrorReply)
        assert value.reason == reason
        assert value.text == line[1:].decode("utf-8", "replace")


def test_error_reply_inside_an_array_is_a_value():
    """EXEC's array may hold an error of one command; the reply reads on."""
    conn = conn_for(b"*2\r\n+OK\r\n-OOM no room\r\n+after\r\n")
    first, second = conn.reply()
    assert first == b"OK" and isinstance(second, ErrorReply) and second.reason == "oom"
    assert conn.reply() == b"after"


def test_check_raises_error_replies():
    conn = conn_for(b"")
    assert qredis.check(b"OK", conn) == b"OK"
    assert qredis.check(None, conn) is None
    with pytest.raises(StoreError) as info:
        qredis.check(ErrorReply("WRONGPASS invalid username-password pair"), conn)
    assert info.value.reason == "auth" and "unix:/fake" in info.value.detail


def test_partial_reads_one_byte_at_a_time():
    data = (b"+OK\r\n" b":-12\r\n" b"$6\r\nab\r\ncd\r\n" b"$-1\r\n"
            b"*3\r\n$7\r\n1 2 3 4\r\n$-1\r\n*1\r\n:5\r\n" b"-LOADING wait\r\n")
    conn = conn_for(data, step=1)
    assert conn.reply() == b"OK"
    assert conn.reply() == -12
    assert conn.reply() == b"ab\r\ncd"
    assert conn.reply() is None
    assert conn.reply() == [b"1 2 3 4", None, [5]]
    error = conn.reply()
    assert isinstance(error, ErrorReply) and error.reason == "loading"
    assert conn.sock.recvs >= len(data)  # it really did read byte by byte


def test_partial_reads_across_a_compaction():
    """More than 64 KiB of replies through one connection: the buffer is
    compacted between reads, values stay intact."""
    value = bytes(range(256)) * 100  # 25,600 bytes
    one = b"$%d\r\n%s\r\n" % (len(value), value)
    conn = conn_for(one * 6, step=4099)
    for _ in range(6):
        assert conn.reply() == value


@pytest.mark.parametrize("data", [
    b"+OK",                      # simple string without CRLF
    b"+OK\r",
    b":12",
    b"$5\r\nhel",                # bulk cut short
    b"$5\r\nhello",              # bulk without its CRLF
    b"$5\r\nhello\r",
    b"*3\r\n:1\r\n",             # array cut short
    b"*2\r\n*2\r\n:1\r\n",
    b"",
])
def test_closed_mid_reply(data):
    for step in (None, 1):
        err = parse_error(data, step)
        assert err.reason == "unreachable", err.detail
        assert "closed the connection" in err.detail


@pytest.mark.parametrize("exc, reason", [
    (TimeoutError("timed out"), "timeout"),
    (socket.timeout("timed out"), "timeout"),
    (ConnectionResetError(104, "Connection reset by peer"), "unreachable"),
    (OSError(9, "Bad file descriptor"), "unreachable"),
])
def test_socket_errors_mid_reply(exc, reason):
    conn = conn_for(b"*2\r\n:1\r\n", then=exc)
    with pytest.raises(StoreError) as info:
        conn.reply()
    assert info.value.reason == reason


def test_deadline_passed_is_a_timeout():
    conn = conn_for(b"+OK\r\n", deadline=-1)
    with pytest.raises(StoreError) as info:
        conn.reply()
    assert info.value.reason == "timeout"
    assert conn.sock.recvs == 0


def test_reads_are_bounded_by_the_deadline():
    conn = conn_for(b"+O" + b"K" * 10 + b"\r\n", step=1, deadline=30)
    conn.reply()
    assert conn.sock.timeouts and all(0 < t <= 30 for t in conn.sock.timeouts)


@pytest.mark.parametrize("data", [
    b"?what\r\n",                        # unknown type byte
    b"hello\r\n",
    b"\r\n",                             # empty line
    b"\x00\x01\x02\r\n",
    b"HTTP/1.1 400 Bad Request\r\n",
    b"_\r\n",                            # RESP3 null: not RESP2
    b"#t\r\n",                           # RESP3 boolean
    b"%1\r\n+a\r\n+b\r\n",               # RESP3 map
    b":abc\r\n",                         # bad integers
    b":\r\n",
    b":-\r\n",
    b":--1\r\n",
    b":+1\r\n",
    b": 1\r\n",
    b":1 \r\n",
    b":1.5\r\n",
    b":1e3\r\n",
    b":0x10\r\n",
    b":\xd9\xa1\r\n",
    b":9223372036854775808\r\n",        # one past the 64-bit range
    b":-9223372036854775809\r\n",
    b":99999999999999999999999\r\n",
    b"$999999999999\r\n",                # huge bulk lengths
    b"$99999999999999999999\r\n",
    b"$%d\r\n" % (qredis.MAX_BULK + 1),
    b"$-2\r\n",
    b"$x\r\n",
    b"$\r\n",
    b"$3\r\nabcXY",                      # bulk not ended by CRLF
    b"$3\r\nabc\n\r",
    b"$0\r\nxx",
    b"$1\r\nab\r\n",
    b"*%d\r\n" % (qredis.MAX_ARRAY + 1),  # array too long
    b"*999999999999\r\n",
    b"*-2\r\n",
    b"*x\r\n",
    b"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n",  # nested too deep
    b"*1\r\n*1\r\n*1\r\n*1\r\n*0\r\n",
    b"*2\r\n:1\r\n?bad\r\n",             # a bad element inside an array
    b"*1\r\n$3\r\nabcd\r\n",
])
def test_malformed_replies(data):
    for step in (None, 1):
        err = parse_error(data, step)
        assert err.reason == "protocol", (data, err.reason, err.detail)
        assert err.detail.startswith("Redis unix:/fake: ")


@pytest.mark.parametrize("first", [b"+", b"-", b":", b"$", b"*", b"x"])
def test_line_longer_than_max_line(first):
    """No CRLF in sight: it stops after MAX_LINE bytes, not at the end of
    whatever the server cares to send (nor when it closes)."""
    data = first + b"7" * (4 * MAX_LINE)
    for step in (None, 4096):
        conn = conn_for(data, step)
        with pytest.raises(StoreError) as info:
            conn.reply()
        assert info.value.reason == "protocol", info.value.detail
        assert len(conn.buf) <= MAX_LINE + 65536 + 1
        assert conn.sock.data  # it did not read everything


def test_line_of_exactly_max_line_is_read():
    data = b"+" + b"a" * (MAX_LINE - 1) + b"\r\n"
    assert parse(data, step=5000) == b"a" * (MAX_LINE - 1)


# Hypothesis: valid replies parse to what they encode, in any chunking, and
# any bytes at all either parse or raise StoreError.

def encode(value):
    if isinstance(value, ErrorReply):
        return b"-%s\r\n" % value.text.encode()
    if isinstance(value, tuple):  # ("simple", bytes)
        return b"+%s\r\n" % value[1]
    if isinstance(value, int):
        return b":%d\r\n" % value
    if isinstance(value, bytes):
        return b"$%d\r\n%s\r\n" % (len(value), value)
    if value is None:
        return b"$-1\r\n"
    return b"*%d\r\n%s" % (len(value), b"".join(encode(v) for v in value))


def expected(value):
    if isinstance(value, tuple):
        return value[1]
    if isinstance(value, list):
        return [expected(v) for v in value]
    if isinstance(value, ErrorReply):
        return ("error", value.text)
    return value


def normal(value):
    if isinstance(value, list):
        return [normal(v) for v in value]
    if isinstance(value, ErrorReply):
        return ("error", value.text)
    return value


simple = st.binary(max_size=30).filter(lambda b: b"\r" not in b and b"\n" not in b)
error_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=30)
scalars = st.one_of(
    st.tuples(st.just("simple"), simple),
    st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1),
    st.binary(max_size=80),
    st.none(),
    error_text.map(ErrorReply),
)


def _nested(depth):
    if depth == 0:
        return scalars
    return st.one_of(scalars, st.lists(_nested(depth - 1), max_size=5))


replies = _nested(qredis.MAX_DEPTH)
HYPOTHESIS = settings(max_examples=300, deadline=None,
                      suppress_health_check=[HealthCheck.too_slow])


@HYPOTHESIS
@given(st.lists(replies, min_size=1, max_size=4), st.integers(min_value=1, max_value=17))
def test_property_valid_replies_parse(values, step):
    conn = conn_for(b"".join(encode(v) for v in values), step=step)
    for value in values:
        assert normal(conn.reply()) == expected(value)
    with pytest.raises(StoreError) as info:  # and then the peer has closed
        conn.reply()
    assert info.value.reason == "unreachable"


def _read_all(data, step):
    conn = conn_for(data, step=step)
    for _ in range(len(data) + 2):  # each reply consumes at least one byte
        try:
            conn.reply()
        except StoreError as err:
            assert err.reason in ("protocol", "unreachable"), err.reason
            assert isinstance(err.detail, str)
            return
    raise AssertionError("reply() never stopped on %r" % data)


RESP_ALPHABET = st.sampled_from([b"+", b"-", b":", b"$", b"*", b"\r\n", b"\r", b"\n", b"0",
                                 b"1", b"-1", b"9", b"99999999999", b"OK", b" ", b"\x00",
                                 b"\xff"])


@HYPOTHESIS
@given(st.one_of(st.binary(max_size=200),
                 st.lists(RESP_ALPHABET, max_size=60).map(b"".join),
                 st.tuples(replies, st.binary(max_size=20), st.integers(0, 200)).map(
                     lambda t: encode(t[0])[:t[2]] + t[1])),
       st.one_of(st.none(), st.integers(min_value=1, max_value=7)))
def test_property_any_bytes_parse_or_raise_store_error(data, step):
    """Nothing but StoreError (protocol, or unreachable once the bytes run
    out) ever escapes reply()."""
    _read_all(data, step)


# --- 2. the plugin against a fake Redis ----------------------------------

CLOSE = object()  # script actions besides bytes: close the connection,
HANG = object()   # or never answer again (until the test ends)


def parse_commands(buf):
    """Complete RESP commands (arrays of bulk strings) in buf -> (commands, used)."""
    commands, pos = [], 0
    while True:
        start = pos
        end = buf.find(b"\r\n", pos)
        if end < 0:
            return commands, start
        assert buf[pos:pos + 1] == b"*", buf[pos:pos + 40]
        count, pos = int(buf[pos + 1:end]), end + 2
        args = []
        for _ in range(count):
            end = buf.find(b"\r\n", pos)
            if end < 0:
                return commands, start
            assert buf[pos:pos + 1] == b"$", buf[pos:pos + 40]
            size, pos = int(buf[pos + 1:end]), end + 2
            if len(buf) < pos + size + 2:
                return commands, start
            args.append(bytes(buf[pos:pos + size]))
            pos += size + 2
        commands.append(args)


def bulk(value):
    return b"$-1\r\n" if value is None else b"$%d\r\n%s\r\n" % (len(value), value)


class FakeRedis:
    """A threaded Redis stand-in on a UNIX socket: a well-behaved subset
    (AUTH SELECT WATCH MGET TIME MULTI SET DEL EXEC) unless script(cmd)
    returns other actions (bytes, CLOSE, HANG; callables get the command).
    Records each connection and every batch of commands read in one recv."""

    def __init__(self, path, script=None, on_connect=None, listen=True):
        self.path = path
        self.script = script
        self.on_connect = on_connect
        self.data = {}
        self.batches = []    # [[command, ...] per round trip]
        self.received = []   # raw bytes, as read
        self.connections = 0
        self.stop = threading.Event()
        self.clients = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        if not listen:  # a socket file nobody listens on: connect is refused
            self.sock.close()
            return
        self.sock.listen(16)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            self.clients.append(conn)
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn):
        state = {"multi": None, "aborted": False}
        try:
            if self.on_connect is CLOSE:
                return
            if self.on_connect is HANG:
                self.stop.wait()
                return
            buf = b""
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                self.received.append(data)
                buf += data
                commands, used = parse_commands(buf)
                buf = buf[used:]
                if not commands:
                    continue
                self.batches.append(commands)
                out = b""
                for cmd in commands:
                    actions = self.script(cmd) if self.script else None
                    if actions is None:
                        actions = [self.answer(cmd, state)]
                    elif cmd[0].upper() in (b"EXEC", b"DISCARD"):
                        state["multi"] = None  # a scripted answer ends the transaction too
                    for action in actions:
                        if callable(action):
                            action = action(cmd)
                        if action is CLOSE:
                            conn.sendall(out)
                            return
                        if action is HANG:
                            conn.sendall(out)
                            self.stop.wait()
                            return
                        if state["multi"] is not None and action.startswith(b"-"):
                            state["aborted"] = True  # a queueing error: EXEC aborts
                        out += action
                        if len(out) >= 65536:  # big answers are streamed
                            conn.sendall(out)
                            out = b""
                conn.sendall(out)
        except OSError:
            pass
        finally:
            conn.close()

    def answer(self, cmd, state):
        name = cmd[0].upper()
        if state["multi"] is not None and name not in (b"EXEC", b"MULTI", b"DISCARD"):
            if name not in (b"SET", b"DEL"):
                return b"-ERR unknown command in this fake\r\n"
            state["multi"].append(cmd)
            return b"+QUEUED\r\n"
        if name in (b"AUTH", b"SELECT", b"WATCH"):
            return b"+OK\r\n"
        if name == b"MGET":
            return b"*%d\r\n" % (len(cmd) - 1) + b"".join(bulk(self.data.get(k))
                                                           for k in cmd[1:])
        if name == b"TIME":
            now = time.time()
            return b"*2\r\n" + bulk(b"%d" % now) + bulk(b"%d" % ((now % 1) * 1e6))
        if name == b"MULTI":
            state["multi"], state["aborted"] = [], False
            return b"+OK\r\n"
        if name == b"EXEC":
            queued, state["multi"] = state["multi"], None
            if queued is None:
                return b"-ERR EXEC without MULTI\r\n"
            if state["aborted"]:
                return b"-EXECABORT Transaction discarded because of previous errors.\r\n"
            out = []
            for q in queued:
                if q[0].upper() == b"SET":
                    self.data[q[1]] = q[2]
                    out.append(b"+OK\r\n")
                else:
                    out.append(b":%d\r\n" % (self.data.pop(q[1], None) is not None))
            return b"*%d\r\n%s" % (len(out), b"".join(out))
        return b"-ERR unknown command '%s'\r\n" % name

    def commands(self):
        return [cmd for batch in self.batches for cmd in batch]

    def close(self):
        self.stop.set()
        try:
            self.sock.close()
        except OSError:
            pass
        for conn in self.clients:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


@pytest.fixture
def sock_path(tmp_path):
    """A UNIX socket path in tmp_path (GL_REDIS allows 100 characters)."""
    path = str(tmp_path / "redis.sock")
    if len(path) <= 100:
        yield path
        return
    short = tempfile.mkdtemp(prefix="qgrey-", dir="/tmp")
    yield os.path.join(short, "redis.sock")
    for name in os.listdir(short):
        os.unlink(os.path.join(short, name))
    os.rmdir(short)


@pytest.fixture
def fake(sock_path):
    """fake(script=None, on_connect=None, listen=True) -> a started FakeRedis."""
    servers = []

    def start(script=None, on_connect=None, listen=True):
        server = FakeRedis(sock_path, script, on_connect, listen)
        servers.append(server)
        return server
    yield start
    for server in servers:
        server.close()


def redis_run(run, sock_path, on_error="accept", timeout=30, **extra):
    """The plugin with GL_STORE=redis at sock_path -> (result, seconds)."""
    started = time.monotonic()
    result = run(GL_STORE="redis", GL_REDIS="unix:" + sock_path, GL_ON_ERROR=on_error,
                 GL_REDIS_TIMEOUT=str(TIMEOUT), timeout=timeout, **extra)
    return result, time.monotonic() - started


def on(name, *actions):
    """A script: answer commands called name with actions, the rest as Redis."""
    def script(cmd):
        if cmd[0].upper() == name:
            return list(actions)
        return None
    return script


def every(*actions):
    return lambda cmd: list(actions)


def mget_array(element):
    """An MGET answer with as many elements as keys asked, each element."""
    return lambda cmd: b"*%d\r\n" % (len(cmd) - 1) + element * (len(cmd) - 1)


# name -> (script, on_connect, listen, reason, hangs)
MISBEHAVIOURS = {
    # Reads answered, then the reply is cut off.
    "mget-truncated-then-close": (on(b"MGET", b"*3\r\n$7\r\n1 2 ", CLOSE), None, True,
                                  "unreachable", False),
    "exec-truncated-then-close": (on(b"EXEC", b"*1\r\n+O", CLOSE), None, True,
                                  "unreachable", False),
    # Wrong reply types.
    "mget-integer": (on(b"MGET", b":3\r\n"), None, True, "protocol", False),
    "mget-array-of-integers": (on(b"MGET", mget_array(b":1\r\n")), None, True,
                               "protocol", False),
    "mget-nested-arrays": (on(b"MGET", mget_array(b"*0\r\n")), None, True, "protocol", False),
    "mget-too-few": (on(b"MGET", b"*1\r\n$-1\r\n"), None, True, "protocol", False),
    "mget-null-array": (on(b"MGET", b"*-1\r\n"), None, True, "protocol", False),
    "mget-simple-string": (on(b"MGET", b"+OK\r\n"), None, True, "protocol", False),
    "time-integers": (on(b"TIME", b"*2\r\n:1\r\n:2\r\n"), None, True, "protocol", False),
    "time-bulk": (on(b"TIME", b"$10\r\n1700000000\r\n"), None, True, "protocol", False),
    "time-negative": (on(b"TIME", b"*2\r\n$2\r\n-5\r\n$1\r\n0\r\n"), None, True,
                      "protocol", False),
    "exec-integer": (on(b"EXEC", b":5\r\n"), None, True, "protocol", False),
    "exec-too-many": (on(b"EXEC", b"*3\r\n+OK\r\n+OK\r\n+OK\r\n"), None, True,
                      "protocol", False),
    # Malformed bytes.
    "mget-huge-bulk": (on(b"MGET", mget_array(b"$999999999999\r\n")), None, True,
                       "protocol", False),
    "garbage": (every(b"\x00\x17garbage \xff\xfe\r\n"), None, True, "protocol", False),
    "http": (every(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n", CLOSE), None, True,
             "protocol", False),
    "resp3-null": (on(b"MGET", b"_\r\n"), None, True, "protocol", False),
    "endless-line": (every(b"+" + b"x" * (MAX_LINE + 4096)), None, True, "protocol", False),
    "nested-too-deep": (on(b"MGET", b"*1\r\n" * 6 + b":1\r\n"), None, True, "protocol", False),
    # Silence and closes.
    "never-answers": (every(HANG), None, True, "timeout", True),
    "accepts-never-reads": (None, HANG, True, "timeout", True),
    "partial-reply-then-hangs": (on(b"MGET", b"*3\r\n$-1\r\n", HANG), None, True,
                                 "timeout", True),
    "closes-immediately": (None, CLOSE, True, "unreachable", False),
    "closes-after-reading": (every(CLOSE), None, True, "unreachable", False),
    "refused": (None, None, False, "unreachable", False),
    # Error replies, where Redis gives them.
    "NOAUTH": (every(b"-NOAUTH Authentication required.\r\n"), None, True, "auth", False),
    "READONLY": (on(b"SET", b"-READONLY You can't write against a read only replica.\r\n"),
                 None, True, "readonly", False),
    "OOM": (on(b"SET", b"-OOM command not allowed when used memory > 'maxmemory'.\r\n"),
            None, True, "oom", False),
    "LOADING": (every(b"-LOADING Redis is loading the dataset in memory\r\n"), None, True,
                "loading", False),
    "ERR": (on(b"WATCH", b"-ERR unknown command 'WATCH', with args beginning with:\r\n"),
            None, True, "redis", False),
    "ERR-on-TIME": (on(b"TIME", b"-ERR TIME is disabled\r\n"), None, True, "redis", False),
    "NOPERM": (on(b"MGET", b"-NOPERM this user has no permissions to access one of the keys "
                           b"used as arguments\r\n"), None, True, "auth", False),
    "EXEC-error-element": (on(b"EXEC", b"*1\r\n-OOM command not allowed\r\n"), None, True,
                           "oom", False),
}
ON_ERROR = ["accept", "defer", "local"]


def expect(result, elapsed, on_error, reason, hangs):
    """The answer qmail-smtpd gets when Redis cannot be used."""
    assert elapsed < TIMEOUT + SLACK, elapsed
    if hangs:
        assert elapsed >= TIMEOUT, elapsed
    if on_error == "local":
        line = check(result, reply=GREYLISTED, action="greylist", reason="new")
        detail = line.split(b" detail=", 1)[1]
        assert re.match(rb"^.*Redis.*\(%s\); decided on the local store\n$" % reason.encode(),
                        detail, re.I), line
        return line
    return check(result, reply=DEFER_ON_ERROR if on_error == "defer" else b"",
                 action="error", reason=reason)


def test_fake_server_is_redis_enough(run, fake, sock_path, gl_dir):
    """The baseline that makes the misbehaviours below mean something:
    well answered, a new triplet is greylisted in two round trips, its
    retry is early, and nothing is written to GL_DIR."""
    server = fake()
    result, _ = redis_run(run, sock_path, GL_DELAY="1h")
    check(result, reply=GREYLISTED, action="greylist", reason="new")
    first, second = server.batches
    assert [c[0] for c in first] == [b"WATCH", b"MGET", b"TIME"]
    assert first[0][1:] == first[1][1:] and all(k.startswith(b"qgrey:") for k in first[0][1:])
    assert [c[0] for c in second] == [b"MULTI", b"SET", b"EXEC"]
    assert second[1][3] == b"EX" and int(second[1][4]) > 0
    assert len(server.data) == 1
    result, _ = redis_run(run, sock_path, GL_DELAY="1h")
    check(result, reply=GREYLISTED, action="greylist", reason="early")
    assert os.listdir(gl_dir) == []
    # With GL_ON_ERROR=local and Redis well, the local store is not used.
    result, _ = redis_run(run, sock_path, "local", GL_DELAY="0")
    check(result, action="pass", reason="delayed")
    assert b"detail=" not in result.stderr
    assert os.listdir(gl_dir) == []


@pytest.mark.parametrize("on_error", ON_ERROR)
@pytest.mark.parametrize("name", list(MISBEHAVIOURS))
def test_misbehaving_server(run, fake, sock_path, gl_dir, name, on_error):
    script, on_connect, listen, reason, hangs = MISBEHAVIOURS[name]
    server = fake(script, on_connect, listen)
    result, elapsed = redis_run(run, sock_path, on_error)
    expect(result, elapsed, on_error, reason, hangs)
    if listen:
        assert server.connections >= 1
    if on_error == "local":
        # Decided, and recorded, on the SQLite store in GL_DIR: the retry is early.
        assert os.path.exists(os.path.join(gl_dir, "qgrey.sqlite"))
        result, elapsed = redis_run(run, sock_path, on_error)
        line = check(result, reply=GREYLISTED, action="greylist", reason="early")
        assert b"decided on the local store" in line
    else:
        assert os.listdir(gl_dir) == []  # no local database behind the admin's back


@pytest.mark.parametrize("on_error", ON_ERROR)
def test_missing_socket(run, sock_path, gl_dir, on_error):
    assert not os.path.exists(sock_path)
    result, elapsed = redis_run(run, sock_path, on_error)
    line = expect(result, elapsed, on_error, "unreachable", False)
    assert sock_path.encode() in line


@pytest.mark.parametrize("on_error", ON_ERROR)
def test_refused_names_the_server(run, fake, sock_path, on_error):
    fake(listen=False)
    result, elapsed = redis_run(run, sock_path, on_error)
    line = expect(result, elapsed, on_error, "unreachable", False)
    assert b"cannot connect to Redis unix:" + sock_path.encode() in line


def test_full_listen_backlog(run, sock_path):
    """A server too busy to accept: connect on a UNIX socket whose accept
    queue is full answers EAGAIN at once; the plugin waits for room until
    GL_REDIS_TIMEOUT, then says the server gave no answer in time."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(sock_path)
    server.listen(0)
    waiting = []
    try:
        for _ in range(64):
            client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            client.setblocking(False)
            waiting.append(client)
            try:
                client.connect(sock_path)
            except BlockingIOError:
                break
        else:
            pytest.fail("the listen backlog of 0 never filled up")
        result, elapsed = redis_run(run, sock_path, "defer")
        line = check(result, reply=DEFER_ON_ERROR, action="error", reason="timeout")
        assert line.endswith(b" detail=cannot connect to Redis unix:%s: no answer in time; "
                             b"answered defer\n" % sock_path.encode()), line
        assert TIMEOUT <= elapsed < TIMEOUT + SLACK, elapsed
    finally:
        for client in waiting:
            client.close()
        server.close()


def test_wrongpass_on_auth(run, fake, sock_path, gl_dir):
    write_auth(gl_dir, b"not-the-password\n")
    server = fake(on(b"AUTH", b"-WRONGPASS invalid username-password pair or user is "
                              b"disabled.\r\n"))
    for on_error in ON_ERROR:
        result, elapsed = redis_run(run, sock_path, on_error)
        line = expect(result, elapsed, on_error, "auth", False)
        assert b"not-the-password" not in result.stderr + result.stdout
        assert b"WRONGPASS" in line
    assert server.batches[0][0] == [b"AUTH", b"not-the-password"]


def test_exec_conflict_is_decided_again(run, fake, sock_path):
    """EXEC null (a watched key changed): read and decide again, once more."""
    execs = []

    def script(cmd):
        if cmd[0] == b"EXEC" and not execs:
            execs.append(cmd)
            return [b"*-1\r\n"]
        return None
    server = fake(script)
    result, _ = redis_run(run, sock_path, "defer")
    check(result, reply=GREYLISTED, action="greylist", reason="new")
    assert [[c[0] for c in batch] for batch in server.batches] == [
        [b"WATCH", b"MGET", b"TIME"], [b"MULTI", b"SET", b"EXEC"]] * 2
    assert server.connections == 1


@pytest.mark.parametrize("on_error", ON_ERROR)
def test_hung_after_the_read_answers_what_the_read_implies(run, fake, sock_path, gl_dir, on_error):
    """Redis answered the read, then hangs on the write: as for a lock not
    obtained, the read's answer stands (refused), logged as not recorded,
    within GL_REDIS_TIMEOUT, whatever GL_ON_ERROR says."""
    fake(on(b"MULTI", HANG))
    result, elapsed = redis_run(run, sock_path, on_error)
    assert TIMEOUT <= elapsed < TIMEOUT + SLACK, elapsed
    line = check(result, reply=GREYLISTED, action="greylist", reason="new")
    assert line.endswith(b"no answer to the write until the deadline (timeout)\n"), line
    assert os.listdir(gl_dir) == []


@pytest.mark.parametrize("on_error", ON_ERROR)
def test_exec_conflict_forever(run, fake, sock_path, on_error):
    """Every EXEC answered null at once (the entries keep changing): retried
    until GL_REDIS_TIMEOUT, then, as for a lock not obtained, the answer the
    read implies stands, logged as not recorded (conflict), whatever
    GL_ON_ERROR says. The same every time: where the deadline happens to
    strike (inside a round trip or after an EXEC) must not decide between
    greylisting and accepting. Three runs, since it is a matter of timing."""
    server = fake(on(b"EXEC", b"*-1\r\n"))
    lines = []
    for _ in range(3):
        result, elapsed = redis_run(run, sock_path, on_error)
        assert TIMEOUT <= elapsed < TIMEOUT + SLACK, elapsed
        lines.append(check(result))
    assert len(server.batches) > 6
    for line in lines:
        assert line.startswith(b"qgrey: action=greylist reason=new "), lines
        assert line.endswith(b"until the deadline (conflict)\n"), lines
        assert b"not recorded: Redis unix:" in line, lines


def test_local_fallback_keeps_the_shared_store_note():
    """GL_ON_ERROR=local wraps the Redis store: a note the Redis store leaves
    on a decision it served (not recorded: conflict) must reach the log as
    it does without the wrapper (the plugin logs store.degraded)."""
    class Shared(Store):
        degraded = None

        def change_many(self, keys, change, now):
            result, _ = change([None] * len(keys), now)
            self.degraded = "not recorded: Redis unix:/fake: the entries kept changing (conflict)"
            return result

    def no_local():
        raise AssertionError("the shared store answered: no local store needed")
    store = FallbackStore(Shared(), no_local)
    assert store.change_many(["k"], lambda entries, now: ("greylist", [None]), 0) == "greylist"
    assert store.degraded == store.shared.degraded


SOFTLIMIT = 32000000  # README: qmail-smtpd under softlimit -m 32000000
LIMITED = """
import os, resource, sys
for name in ("RLIMIT_AS", "RLIMIT_DATA", "RLIMIT_STACK", "RLIMIT_MEMLOCK"):
    which = getattr(resource, name)
    soft, hard = resource.getrlimit(which)
    limit = int(sys.argv[1]) if hard == resource.RLIM_INFINITY else min(int(sys.argv[1]), hard)
    resource.setrlimit(which, (limit, hard))
os.execv(sys.argv[2], sys.argv[2:])
"""


def under_softlimit(command):
    """command under the limits softlimit -m sets (address space, data,
    stack, locked memory), as qmail-smtpd's run script would start it."""
    return [sys.executable, "-I", "-S", "-c", LIMITED, str(SOFTLIMIT), command]


# The limits on what a reply may claim, written out: each part (an array's
# length, a bulk string's) and the bytes of one round trip's replies.
LIMIT_ARRAY = 65536
LIMIT_BULK = 512 * 1024
LIMIT_ROUND_TRIP = 2 * 1024 * 1024
FIXED_TIME = b"*2\r\n$10\r\n1700000000\r\n$1\r\n0\r\n"  # TIME, always of this length


def test_the_limits_are_the_ones_tested_here():
    assert (qredis.MAX_ARRAY, qredis.MAX_BULK, qredis.MAX_ROUND_TRIP) == (
        LIMIT_ARRAY, LIMIT_BULK, LIMIT_ROUND_TRIP)


def sized_bulks(count, total):
    """An array of count bulk strings of "x", the last sized so that the
    array takes exactly total bytes; the others LIMIT_BULK each."""
    head = b"*%d\r\n" % count + (b"$%d\r\n" % LIMIT_BULK + b"x" * LIMIT_BULK + b"\r\n") * (count - 1)
    size = total - len(head) - 2
    while len(head) + len(b"$%d\r\n" % size) + size + 2 != total:
        size = total - len(head) - len(b"$%d\r\n" % size) - 2
    assert size <= LIMIT_BULK
    return head + b"$%d\r\n" % size + b"x" * size + b"\r\n"


def round_trip_of(total):
    """An MGET answer that makes the first round trip's replies (+OK for
    WATCH, this, FIXED_TIME) exactly total bytes: every part within its
    limit."""
    return sized_bulks(4, total - len(b"+OK\r\n") - len(FIXED_TIME))


# name -> (MGET answer for its keys, the detail after "Redis unix:SOCKET: ").
# Just inside a limit the reply is read whole and refused only for what it
# says (more values than keys asked, or a value that is no entry); just over,
# it is refused by the limit, before the rest is read.
LIMIT_CASES = {
    "array-inside": (lambda keys: b"*%d\r\n" % LIMIT_ARRAY + b"$-1\r\n" * LIMIT_ARRAY,
                     "protocol", "MGET answered '[None, None, None, None, None, None, None, "
                     "None, None, None,'"),
    "array-over": (lambda keys: b"*%d\r\n" % (LIMIT_ARRAY + 1) + b"$-1\r\n" * (LIMIT_ARRAY + 1),
                   "protocol", "array length 65537 out of range"),
    "bulk-inside": (lambda keys: b"*%d\r\n" % keys + b"$%d\r\n" % LIMIT_BULK + b"1 " * (LIMIT_BULK // 2)
                     + b"\r\n" + b"$-1\r\n" * (keys - 1),
                     "database", "malformed value b'%s'" % ("1 " * 20)),
    "bulk-over": (lambda keys: b"*%d\r\n" % keys + (b"$%d\r\n" % (LIMIT_BULK + 1) + b"1" * (LIMIT_BULK + 1)
                                                   + b"\r\n") * keys,
                  "protocol", "bulk length 524289 out of range"),
    "round-trip-inside": (lambda keys: round_trip_of(LIMIT_ROUND_TRIP),
                          "database", "malformed value b'%s'" % ("x" * 40)),
    "round-trip-over": (lambda keys: round_trip_of(LIMIT_ROUND_TRIP + 1),
                        "protocol", "more than 2097152 bytes of replies in one round trip"),
}


def limits_script(answer):
    def script(cmd):
        if cmd[0] == b"MGET":
            return [answer(len(cmd) - 1)]
        if cmd[0] == b"TIME":
            return [FIXED_TIME]
        return None
    return script


@pytest.mark.parametrize("on_error", ["defer", "local"])
@pytest.mark.parametrize("name", list(LIMIT_CASES))
def test_reply_limits_under_the_documented_softlimit(run, launcher, fake, sock_path, name,
                                                     on_error):
    """Replies just inside and just over each limit, the plugin under the
    documented softlimit: each gives the reason and detail written here,
    never reason=internal (out of memory) nor a timeout."""
    answer, reason, detail = LIMIT_CASES[name]
    server = fake(limits_script(answer))
    started = time.monotonic()
    result = run(command=under_softlimit(launcher), GL_STORE="redis",
                 GL_REDIS="unix:" + sock_path, GL_ON_ERROR=on_error,
                 GL_REDIS_TIMEOUT=str(TIMEOUT), timeout=30)
    elapsed = time.monotonic() - started
    assert elapsed < TIMEOUT + SLACK + 1, elapsed
    assert [c[0] for c in server.batches[0]] == [b"WATCH", b"MGET", b"TIME"]
    keys = len(server.batches[0][1]) - 1
    assert keys == 4, server.batches[0][1]  # triplet, client (address, network), reply
    if name == "round-trip-inside":
        assert len(b"+OK\r\n" + answer(keys) + FIXED_TIME) == LIMIT_ROUND_TRIP
    where = "" if reason == "database" else "Redis unix:%s: " % sock_path
    if on_error == "local":
        line = check(result, reply=GREYLISTED, action="greylist", reason="new")
        assert line.endswith((" detail=%s%s (%s); decided on the local store\n" % (
            where, detail, reason)).encode()), line
    else:
        line = check(result, reply=DEFER_ON_ERROR, action="error", reason=reason)
        assert line.endswith((" detail=%s%s; answered defer\n" % (where, detail)).encode()), line


def test_softlimit_baseline(run, launcher, fake, sock_path):
    """The documented softlimit is enough for a decision on a well-behaved
    Redis: what the test above sees is the reply, not the limit."""
    fake()
    result = run(command=under_softlimit(launcher), GL_STORE="redis",
                 GL_REDIS="unix:" + sock_path, GL_ON_ERROR="defer",
                 GL_REDIS_TIMEOUT=str(TIMEOUT))
    check(result, reply=GREYLISTED, action="greylist", reason="new")


@pytest.mark.parametrize("on_error", ON_ERROR)
def test_timeout_is_gl_redis_timeout(run, fake, sock_path, on_error):
    """A longer GL_REDIS_TIMEOUT is waited for, and no longer."""
    fake(every(HANG))
    started = time.monotonic()
    result = run(GL_STORE="redis", GL_REDIS="unix:" + sock_path, GL_ON_ERROR=on_error,
                 GL_REDIS_TIMEOUT="1.2", timeout=30)
    elapsed = time.monotonic() - started
    assert 1.2 <= elapsed < 1.2 + SLACK, elapsed
    if on_error == "local":
        check(result, reply=GREYLISTED, action="greylist", reason="new")
    else:
        check(result, reply=DEFER_ON_ERROR if on_error == "defer" else b"",
              action="error", reason="timeout")


# --- 3. GL_DIR/redis-auth ----------------------------------------------------

class Listener:
    """A socket at sock_path that listens and never accepts: whatever
    connected to it, even a client gone since, waits in its accept queue."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(16)
        self.sock.setblocking(False)

    def queued(self):
        """-> how many connections were ever made (taken off the queue)."""
        count = 0
        while True:
            try:
                conn, _ = self.sock.accept()
            except BlockingIOError:
                return count
            conn.close()
            count += 1


@pytest.fixture
def listener(sock_path):
    sock = Listener(sock_path)
    # The count is the kernel's: a connection made and closed is counted.
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.connect(sock_path)
    probe.close()
    assert sock.queued() == 1 and sock.queued() == 0
    yield sock
    sock.sock.close()


def write_auth(gl_dir, data, mode=0o600):
    path = os.path.join(gl_dir, "redis-auth")
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, mode)
    return path


@pytest.mark.parametrize("data, auth", [
    (b"s3cret pass\n", [b"AUTH", b"s3cret pass"]),
    (b"s3cret", [b"AUTH", b"s3cret"]),
    (b"s3cret\r\n", [b"AUTH", b"s3cret"]),
    (b"mx1\ns3cret\n", [b"AUTH", b"mx1", b"s3cret"]),
    (b"mx1\r\ns3cret\r\n", [b"AUTH", b"mx1", b"s3cret"]),
])
def test_auth_pipelined_before_watch(run, fake, sock_path, gl_dir, data, auth):
    write_auth(gl_dir, data)
    server = fake()
    result, _ = redis_run(run, sock_path)
    check(result, reply=GREYLISTED, action="greylist", reason="new")
    first = server.batches[0]
    assert first[0] == auth
    assert [c[0] for c in first[1:]] == [b"WATCH", b"MGET", b"TIME"]
    # Once per connection: not again in the second round trip.
    assert [c[0] for c in server.batches[1]] == [b"MULTI", b"SET", b"EXEC"]
    assert server.connections == 1
    assert auth[-1] not in result.stderr + result.stdout


def test_auth_then_select_then_watch(run, fake, sock_path, gl_dir):
    write_auth(gl_dir, b"mx1\ns3cret\n")
    server = fake()
    result = run(GL_STORE="redis", GL_REDIS="unix:%s?db=3" % sock_path,
                 GL_REDIS_TIMEOUT=str(TIMEOUT))
    check(result, reply=GREYLISTED, action="greylist", reason="new")
    assert server.batches[0][:2] == [[b"AUTH", b"mx1", b"s3cret"], [b"SELECT", b"3"]]
    assert server.batches[0][2][0] == b"WATCH"


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660, 0o606, 0o610, 0o601])
@pytest.mark.parametrize("on_error", ON_ERROR)
def test_auth_file_readable_by_others_is_refused(run, listener, sock_path, gl_dir, mode, on_error):
    path = write_auth(gl_dir, b"s3cret\n", mode)
    result, elapsed = redis_run(run, sock_path, on_error)
    if on_error == "local":
        line = check(result, reply=GREYLISTED, action="greylist", reason="new")
        assert b"(auth); decided on the local store" in line
    else:
        line = check(result, reply=DEFER_ON_ERROR if on_error == "defer" else b"",
                     action="error", reason="auth")
    assert path.encode() in line and b"chmod 600" in line
    assert b"s3cret" not in result.stderr + result.stdout
    assert listener.queued() == 0  # refused before any connection


@pytest.mark.parametrize("data", [b"", b"\n", b"a\nb\nc\n", b"\npassword\n", b"user\n\n"])
def test_auth_file_malformed(run, listener, sock_path, gl_dir, data):
    write_auth(gl_dir, data)
    result, _ = redis_run(run, sock_path, "defer")
    line = check(result, reply=DEFER_ON_ERROR, action="error", reason="auth")
    assert b"redis-auth" in line
    assert listener.queued() == 0


def test_auth_file_symlink_is_refused(run, listener, sock_path, gl_dir, tmp_path):
    target = tmp_path / "elsewhere"
    target.write_bytes(b"s3cret\n")
    os.chmod(target, 0o600)
    os.symlink(str(target), os.path.join(gl_dir, "redis-auth"))
    result, _ = redis_run(run, sock_path, "defer")
    check(result, reply=DEFER_ON_ERROR, action="error", reason="auth")
    assert listener.queued() == 0


@pytest.mark.parametrize("on_error", ["defer", "local"])
def test_auth_file_fifo_does_not_stall(run, listener, sock_path, gl_dir, on_error):
    """GL_DIR/redis-auth a FIFO with no writer: refused as not a regular
    file, within GL_REDIS_TIMEOUT; opening it must not wait for a writer."""
    os.mkfifo(os.path.join(gl_dir, "redis-auth"), 0o600)
    try:
        result, elapsed = redis_run(run, sock_path, on_error, timeout=TIMEOUT + SLACK + 1)
    except subprocess.TimeoutExpired:
        result = None
    if result is None:
        pytest.fail("the plugin blocked opening the FIFO GL_DIR/redis-auth "
                    "(killed after %.1f s)" % (TIMEOUT + SLACK + 1), pytrace=False)
    assert elapsed < TIMEOUT + SLACK, elapsed
    if on_error == "local":
        line = check(result, reply=GREYLISTED, action="greylist", reason="new")
        assert b"(auth); decided on the local store" in line
    else:
        line = check(result, reply=DEFER_ON_ERROR, action="error", reason="auth")
    assert b"not a regular file" in line
    assert listener.queued() == 0


ENV_CREDENTIALS = {
    "REDIS_PASSWORD": "envpass1", "REDISCLI_AUTH": "envpass2", "GL_REDIS_PASSWORD": "envpass3",
    "GL_REDIS_AUTH": "envpass4", "GL_REDIS_USER": "envuser5", "REDIS_USERNAME": "envuser6",
    "GL_REDIS_AUTH_FILE": "/etc/passwd",
}


def test_credentials_never_from_the_environment(run, fake, sock_path, gl_dir):
    server = fake()
    result, _ = redis_run(run, sock_path, GL_DELAY="1h", **ENV_CREDENTIALS)
    check(result, reply=GREYLISTED, action="greylist", reason="new")
    assert all(c[0] != b"AUTH" for c in server.commands())
    received = b"".join(server.received)
    for value in ENV_CREDENTIALS.values():
        assert value.encode() not in received


def test_credentials_never_from_the_config_file(run, fake, sock_path, gl_dir):
    """GL_DIR/config is for settings; it is no place for a password."""
    with open(os.path.join(gl_dir, "config"), "w") as f:
        f.write("GL_REDIS_PASSWORD=cfgpass\nREDISCLI_AUTH=cfgpass2\n")
    server = fake()
    result, _ = redis_run(run, sock_path)
    assert result.returncode == 0 and b"Traceback" not in result.stderr
    assert all(c[0] != b"AUTH" for c in server.commands())
    assert b"cfgpass" not in b"".join(server.received)


def test_env_credentials_do_not_replace_the_file(run, fake, sock_path, gl_dir):
    write_auth(gl_dir, b"filepass\n")
    server = fake()
    result, _ = redis_run(run, sock_path, **ENV_CREDENTIALS)
    check(result, reply=GREYLISTED, action="greylist", reason="new")
    auths = [c for c in server.commands() if c[0] == b"AUTH"]
    assert auths == [[b"AUTH", b"filepass"]]
