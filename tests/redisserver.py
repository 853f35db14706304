"""Real redis-server processes for the tests: each on a private UNIX socket
in a temporary directory and a free loopback port, started and stopped by
the test that needs it, never a system-wide instance.

redis-server cannot be handed a socket nor asked for a port of its own
choosing (--port 0 turns TCP off): the port is one the kernel has just
handed out, and when another process takes it before redis-server binds
it, redis-server exits saying so and is started again on another. Every
start, restarts included, takes a fresh port: nothing is reused between
runs, and a test that restarts a server reaches it again by its socket.

Where redis-server is missing the tests skip, except where CI=true: there
.ci/run installs it, and its absence fails the run.
"""
import os
import shutil
import signal
import socket
import subprocess
import time

from servers import require

REDIS_SERVER = shutil.which("redis-server") or (
    "/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else None)


def require_redis():
    require(REDIS_SERVER, "redis-server")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


PORT_TAKEN = "Address already in use"


class RedisServer:
    """One redis-server; .socket, .port, .url and .tcp (for GL_REDIS), .cli(*args)."""

    def __init__(self, directory, *options):
        require_redis()
        self.dir = str(directory)
        os.makedirs(self.dir, exist_ok=True)
        self.socket = os.path.join(self.dir, "redis.sock")
        self.port = None
        self.options = list(options)
        self.auth = None  # AUTH arguments for cli(), once the default user is off
        self.process = None
        self.start()

    @property
    def url(self):
        return "unix:" + self.socket

    @property
    def tcp(self):
        return "127.0.0.1:%d" % self.port

    def start(self):
        """Start (or start again) on a fresh port; the socket stays."""
        for _ in range(10):
            if self._start(free_port()):
                return
        raise RuntimeError("redis-server found no free port: %s" % self.log())

    def _start(self, port):
        """-> True once it answers PING; False if port was taken meanwhile."""
        log = os.path.join(self.dir, "log")
        if os.path.exists(log):
            os.unlink(log)
        self.port = port
        args = [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1",
                "--unixsocket", self.socket, "--unixsocketperm", "700",
                "--dir", self.dir, "--save", "", "--appendonly", "no",
                "--logfile", log, "--daemonize", "no"] + self.options
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                if PORT_TAKEN in self.log():
                    return False
                raise RuntimeError("redis-server exited: %s" % self.log())
            try:
                if self.cli("PING") == "PONG":
                    return True
            except (OSError, RuntimeError):
                pass
            time.sleep(0.02)
        raise RuntimeError("redis-server did not start: %s" % self.log())

    def log(self):
        try:
            with open(os.path.join(self.dir, "log")) as f:
                return f.read()[-2000:]
        except OSError:
            return ""

    def cli(self, *args, db=None):
        """One command through a plain RESP client -> decoded reply; db:
        SELECTed first."""
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(10)
            s.connect(self.socket)
            first = []
            if self.auth:
                first.append(("AUTH",) + tuple(self.auth))
            if db is not None:
                first.append(("SELECT", db))
            s.sendall(b"".join(encode(c) for c in first + [args]))
            reader = s.makefile("rb")
            for _ in first:
                answer = read(reader)
                if isinstance(answer, Exception):
                    raise RuntimeError(str(answer))
            reply = read(reader)
        if isinstance(reply, Exception):
            raise RuntimeError(str(reply))
        return reply

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def signal(self, number):
        self.process.send_signal(number)
        if number == signal.SIGKILL:
            self.process.wait()


def encode(args):
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        arg = arg if isinstance(arg, bytes) else str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(out)


def read(reader):
    line = reader.readline()
    if not line:
        raise OSError("connection closed")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        return RuntimeError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        size = int(rest)
        if size < 0:
            return None
        data = reader.read(size + 2)[:-2]
        return data.decode("utf-8", "surrogateescape")
    if kind == b"*":
        size = int(rest)
        return None if size < 0 else [read(reader) for _ in range(size)]
    raise OSError("bad reply %r" % line)
