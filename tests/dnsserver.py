"""A real DNS server for the tests: Debian's nsd, authoritative for zones the
tests write, started as a child process on 127.0.0.1 and a free port with a
private configuration directory, stopped afterwards. Never a system-wide
instance (.ci/run installs the package; nothing of it runs on port 53).

And two fake servers in Python, on UDP sockets of their own: one that
reads and drops every query (a server that never answers), and one that
answers each query as a function of the test says (forged answers, SERVFAIL).

Where nsd is missing the tests skip, except where CI=true: there .ci/run
installs it, and its absence fails the run.
"""
import os
import shutil
import socket
import subprocess
import threading
import time

from servers import require

NSD_BIN = shutil.which("nsd") or ("/usr/sbin/nsd" if os.path.exists("/usr/sbin/nsd") else None)


def require_nsd():
    require(NSD_BIN, "nsd")


def free_port():
    """A port free for both UDP and TCP on 127.0.0.1."""
    for _ in range(50):
        with socket.socket() as tcp, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            tcp.bind(("127.0.0.1", 0))
            port = tcp.getsockname()[1]
            try:
                udp.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port")


class NSD:
    """nsd serving zones {origin: zone file text without $ORIGIN/SOA/NS};
    .server is 'IP:port' for GL_DNS."""

    def __init__(self, directory, zones):
        require_nsd()
        self.dir = str(directory)
        os.makedirs(self.dir, exist_ok=True)
        self.port = free_port()
        self.server = "127.0.0.1:%d" % self.port
        conf = ["server:",
                "  ip-address: 127.0.0.1@%d" % self.port,
                "  do-ip6: no",
                "  username: \"\"",
                "  chroot: \"\"",
                "  zonesdir: \"%s\"" % self.dir,
                "  pidfile: \"%s/nsd.pid\"" % self.dir,
                "  database: \"\"",
                "  zonelistfile: \"%s/zone.list\"" % self.dir,
                "  xfrdfile: \"%s/xfrd.state\"" % self.dir,
                "  xfrdir: \"%s\"" % self.dir,
                "  logfile: \"%s/log\"" % self.dir,
                "  server-count: 1",
                "  verbosity: 1",
                "remote-control:",
                "  control-enable: no"]
        for origin, text in zones.items():
            name = origin.rstrip(".") + ".zone"
            with open(os.path.join(self.dir, name), "w") as f:
                f.write("$ORIGIN %s.\n$TTL 60\n" % origin.rstrip("."))
                f.write("@ SOA ns.%s. hostmaster.%s. 1 3600 600 86400 60\n" % (origin, origin))
                f.write("@ NS ns.%s.\n" % origin)
                f.write(text + "\n")
            conf += ["zone:", "  name: %s" % origin, "  zonefile: %s" % name]
        self.conf = os.path.join(self.dir, "nsd.conf")
        with open(self.conf, "w") as f:
            f.write("\n".join(conf) + "\n")
        check = subprocess.run([os.path.join(os.path.dirname(NSD_BIN), "nsd-checkconf"), self.conf],
                               capture_output=True, text=True)
        assert check.returncode == 0, check.stderr + check.stdout
        self.process = subprocess.Popen([NSD_BIN, "-d", "-c", self.conf],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.wait_ready(origin)

    def wait_ready(self, origin):
        from qgrey import dns
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("nsd exited: %s %s" % (self.process.stderr.read(), self.log()))
            status, _ = dns.Resolver([dns.parse_server(self.server)], 0.2).query(origin, "A")
            if status in (dns.OK, dns.NODATA, dns.NXDOMAIN):
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("nsd did not answer: " + self.log())

    def log(self):
        try:
            with open(os.path.join(self.dir, "log")) as f:
                return f.read()[-2000:]
        except OSError:
            return ""

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


class FakeServer:
    """A UDP server on 127.0.0.1 answering each query with reply(query,
    peer) -> list of datagrams to send back (none: the query is dropped)."""

    def __init__(self, reply=lambda query, peer: []):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.server = "127.0.0.1:%d" % self.port
        self.reply = reply
        self.queries = []
        self.running = True
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        self.sock.settimeout(0.1)
        while self.running:
            try:
                query, peer = self.sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            self.queries.append(query)
            for datagram in self.reply(query, peer):
                self.sock.sendto(datagram, peer)

    def stop(self):
        self.running = False
        self.thread.join(2)
        self.sock.close()


def answer(query, rcode=0, records=(), ident=None, question=None):
    """A response to query: rcode, answer records [(type, rdata bytes)]
    owned by the question's name (a pointer to it); ident and question
    replace the query's own to forge one."""
    ident = query[:2] if ident is None else ident.to_bytes(2, "big")
    question = query[12:] if question is None else question
    head = ident + (0x8180 | rcode).to_bytes(2, "big") + b"\x00\x01" + \
        len(records).to_bytes(2, "big") + b"\x00\x00\x00\x00"
    body = b"".join(b"\xc0\x0c" + rtype.to_bytes(2, "big") + b"\x00\x01\x00\x00\x00\x3c"
                    + len(rdata).to_bytes(2, "big") + rdata for rtype, rdata in records)
    return head + question + body


class Recorder(FakeServer):
    """A UDP server that forwards every query to a server on 127.0.0.1
    (an NSD's port) and records it: the queries a client sent, counted at
    the server it asked. .asked() -> [(name, type number)]."""

    def __init__(self, upstream_port):
        def forward(query, peer):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as upstream:
                upstream.settimeout(2)
                upstream.sendto(query, ("127.0.0.1", upstream_port))
                try:
                    return [upstream.recv(4096)]
                except socket.timeout:
                    return []
        super().__init__(forward)

    def asked(self):
        found = []
        for query in list(self.queries):
            labels, pos = [], 12
            while query[pos]:
                labels.append(query[pos + 1:pos + 1 + query[pos]].decode("ascii", "replace"))
                pos += 1 + query[pos]
            found.append((".".join(labels).lower(), int.from_bytes(query[pos + 1:pos + 3], "big")))
        return found


def nsd_fixture(zones, name="nsd"):
    """A test module's fixture `name`: an NSD serving zones for the whole
    module.  nsd = dnsserver.nsd_fixture(ZONES)"""
    import pytest

    @pytest.fixture(scope="module", name=name)
    def nsd(tmp_path_factory):
        server = NSD(tmp_path_factory.mktemp(name), zones)
        yield server
        server.stop()
    return nsd


def fixtures(zones):
    """A test module's DNS fixtures: `nsd` (nsd_fixture), and `dns`, a
    Recorder in front of it for each test.  nsd, dns = dnsserver.fixtures(ZONES)"""
    import pytest
    nsd = nsd_fixture(zones)

    @pytest.fixture
    def dns(nsd):
        """The DNS server the plugin asks: nsd, every query recorded."""
        recorder = Recorder(nsd.port)
        yield recorder
        recorder.stop()
    return nsd, dns
