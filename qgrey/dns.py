"""A bounded stub resolver: the few DNS questions SPF asks, over UDP (TCP on
truncation), of the name servers in /etc/resolv.conf or GL_DNS.

Only posix, time and _socket (the C module; socket would cost ~17 ms) are
imported. Every query goes from a socket bound to port 0 (a source port
the kernel picks at random) with a random 16-bit ID, and an answer is used
only when its source address and port, ID, QR bit, opcode and echoed
question all match; anything else is read and dropped until the deadline.
All the DNS work of one decision shares one deadline (GL_DNS_TIMEOUT); the
servers are tried in turn within it, each given an equal share of what is
left. Bounds: one reply (512 bytes over UDP, 64 KB over TCP), labels of at
most 63 bytes, names of at most 255, compression pointers that only point
backwards, at most MAX_RECORDS records read and MAX_CNAMES CNAMEs followed.

query(name, qtype) -> (status, records): status is one of
  OK        records of the type (after CNAMEs in the answer)
  NODATA    NOERROR, no record of the type
  NXDOMAIN  the name does not exist
  ERROR     SERVFAIL, REFUSED or another failure from every server
  TIMEOUT   no usable answer before the deadline
Records: A and AAAA as address text ('192.0.2.1', '2001:db8::1'), TXT as
one str per record (its strings joined, decoded as latin-1 so that every
byte is kept: SPF checks that a record is ASCII), MX as (preference, name),
PTR and CNAME targets as names; names are lower-case text without the
final dot. Answers are cached in the Resolver for its lifetime (one
decision or one command), errors and timeouts too: one decision never asks
the same question twice.
"""
import posix
import time

import _socket

A, PTR, MX, TXT, AAAA, CNAME = 1, 12, 15, 16, 28, 5
TYPES = {"A": A, "PTR": PTR, "MX": MX, "TXT": TXT, "AAAA": AAAA, "CNAME": CNAME}
OK, NODATA, NXDOMAIN, ERROR, TIMEOUT = "ok", "nodata", "nxdomain", "error", "timeout"

RESOLV_CONF = "/etc/resolv.conf"
RESOLV_LIMIT = 64 * 1024
MAX_NAMESERVERS = 3  # as the C library
UDP_SIZE = 512  # no EDNS: larger answers come over TCP
MAX_TCP = 65535
MAX_RECORDS = 256
MAX_CNAMES = 8
MAX_POINTERS = 64
_RCODES = {1: "formerr", 2: "servfail", 4: "notimp", 5: "refused"}


class BadName(ValueError):
    """A name that cannot be asked: an empty label inside it, a label longer
    than 63 bytes, or a name longer than 255 bytes."""


def encode_name(name):
    if isinstance(name, str):
        name = name.encode("utf-8", "surrogateescape")
    name = name.rstrip(b".") if name not in (b".", b"") else b""
    out = []
    if name:
        for label in name.split(b"."):
            if not 0 < len(label) <= 63:
                raise BadName("bad label in %r" % name)
            out.append(bytes((len(label),)) + label)
    out.append(b"\0")
    wire = b"".join(out)
    if len(wire) > 255:
        raise BadName("name longer than 255 bytes")
    return wire


def build_query(ident, name, qtype):
    return (ident.to_bytes(2, "big") + b"\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
            + encode_name(name) + qtype.to_bytes(2, "big") + b"\x00\x01")


class Malformed(ValueError):
    pass


def read_name(msg, pos):
    """-> (lower-case name text, position after the name in place)."""
    labels, end, jumps, length = [], None, 0, 0
    while True:
        if pos >= len(msg):
            raise Malformed("name runs past the end")
        n = msg[pos]
        if n & 0xC0 == 0xC0:
            if pos + 1 >= len(msg):
                raise Malformed("pointer runs past the end")
            target = (n & 0x3F) << 8 | msg[pos + 1]
            jumps += 1
            if target >= pos or jumps > MAX_POINTERS:  # only backwards: no loop
                raise Malformed("compression loop")
            if end is None:
                end = pos + 2
            pos = target
            continue
        if n & 0xC0:
            raise Malformed("unknown label type")
        pos += 1
        if n == 0:
            break
        length += n + 1
        if length > 255 or pos + n > len(msg):
            raise Malformed("name too long")
        labels.append(msg[pos:pos + n])
        pos += n
    name = b".".join(labels).lower().decode("latin-1")
    return name, (end if end is not None else pos)


def _rdata(msg, rtype, start, size):
    data = msg[start:start + size]
    if rtype == A:
        if size != 4:
            raise Malformed("A of %d bytes" % size)
        return "%d.%d.%d.%d" % tuple(data)
    if rtype == AAAA:
        if size != 16:
            raise Malformed("AAAA of %d bytes" % size)
        return _socket.inet_ntop(_socket.AF_INET6, data)
    if rtype == TXT:
        parts, pos = [], 0
        while pos < size:
            n = data[pos]
            if pos + 1 + n > size:
                raise Malformed("TXT string past its record")
            parts.append(data[pos + 1:pos + 1 + n])
            pos += 1 + n
        return b"".join(parts).decode("latin-1")
    if rtype == MX:
        if size < 3:
            raise Malformed("short MX")
        name, end = read_name(msg, start + 2)
        if end != start + size:
            raise Malformed("MX name does not fill its record")
        return (int.from_bytes(data[:2], "big"), name)
    if rtype in (PTR, CNAME):
        name, end = read_name(msg, start)
        if end != start + size:
            raise Malformed("name does not fill its record")
        return name
    return None


def parse_response(msg, ident, question, name, qtype):
    """-> None (not the answer to this query: ignore it), 'truncated', or
    (status, records). Raises Malformed for an answer that cannot be read."""
    if len(msg) < 12 or int.from_bytes(msg[:2], "big") != ident:
        return None
    flags = int.from_bytes(msg[2:4], "big")
    if not flags & 0x8000 or (flags >> 11) & 0xF != 0:  # QR, opcode QUERY
        return None
    qd, an = int.from_bytes(msg[4:6], "big"), int.from_bytes(msg[6:8], "big")
    if qd != 1 or msg[12:12 + len(question)].lower() != question.lower():
        return None
    if flags & 0x0200:
        return "truncated"
    rcode = flags & 0xF
    if rcode not in (0, 3):
        return ERROR, _RCODES.get(rcode, "rcode %d" % rcode)
    pos = 12 + len(question)
    records = []
    for _ in range(min(an, MAX_RECORDS)):
        owner, pos = read_name(msg, pos)
        if pos + 10 > len(msg):
            raise Malformed("record header past the end")
        rtype = int.from_bytes(msg[pos:pos + 2], "big")
        rclass = int.from_bytes(msg[pos + 2:pos + 4], "big")
        size = int.from_bytes(msg[pos + 8:pos + 10], "big")
        pos += 10
        if pos + size > len(msg):
            raise Malformed("record past the end")
        if rclass == 1 and rtype in (qtype, CNAME):
            records.append((owner, rtype, _rdata(msg, rtype, pos, size)))
        pos += size
    target, chained = name, 0
    while True:
        found = [value for owner, rtype, value in records if owner == target and rtype == qtype]
        if found:
            return OK, found
        alias = [value for owner, rtype, value in records if owner == target and rtype == CNAME]
        if not alias or chained >= MAX_CNAMES or qtype == CNAME:
            break
        target, chained = alias[0], chained + 1
    return (NXDOMAIN if rcode == 3 else NODATA), []


def parse_server(item):
    """'192.0.2.1', '192.0.2.1:5353', '2001:db8::1', '[2001:db8::1]:5353'
    -> (family, host, port), family an AF_ number: GL_DNS's parsing
    (settings.dns_server). IP addresses only: a name would need DNS."""
    from qgrey.settings import dns_server
    family, host, port = dns_server(item)
    return FAMILIES[family], host, port


def resolv_conf(path=RESOLV_CONF):
    """The nameserver lines of resolv.conf (at most 3), as parse_server
    gives them; 127.0.0.1 when it lists none or cannot be read."""
    servers = []
    try:
        from qgrey import files  # only when GL_DNS does not name the servers
        text = files.read_regular(path, RESOLV_LIMIT, follow=True).decode("latin-1")
    except OSError:
        text = ""
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "nameserver" and len(servers) < MAX_NAMESERVERS:
            try:
                family, host, port = parse_server(fields[1])
            except ValueError:
                continue
            servers.append((family, host, 53))
    return servers or [(_socket.AF_INET, "127.0.0.1", 53)]


FAMILIES = {"inet": _socket.AF_INET, "inet6": _socket.AF_INET6}  # as settings names them


def _same_host(family, a, b):
    try:
        return _socket.inet_pton(family, a.partition("%")[0]) == _socket.inet_pton(
            family, b.partition("%")[0])
    except (OSError, ValueError):
        return False


class Resolver:
    """servers: [(family, host, port)] (family: an AF_ number, or 'inet'
    or 'inet6' as settings.dns_servers gives them; None: /etc/resolv.conf);
    timeout: seconds for all the work until restart()."""

    def __init__(self, servers=None, timeout=2.0):
        self.servers = [(FAMILIES.get(f, f), h, p) for f, h, p in servers] if servers \
            else resolv_conf()
        self.timeout = timeout
        self.cache = {}
        self.queries = 0  # questions sent (not answered from the cache)
        self.restart()

    def restart(self):
        self.deadline = time.monotonic() + self.timeout

    def query(self, name, qtype):
        if isinstance(qtype, str):
            qtype = TYPES[qtype]
        name = name.lower().rstrip(".") if isinstance(name, str) else name
        key = (name, qtype)
        if key not in self.cache:
            self.cache[key] = self._ask(name, qtype)
        return self.cache[key]

    def _ask(self, name, qtype):
        try:
            question = encode_name(name) + qtype.to_bytes(2, "big") + b"\x00\x01"
        except BadName:
            return ERROR, "bad name"
        self.queries += 1
        failure = None
        for i, server in enumerate(self.servers):
            left = self.deadline - time.monotonic()
            if left <= 0:
                break
            share = left / (len(self.servers) - i)
            result = self._udp(server, name, qtype, question, time.monotonic() + share)
            if result == "truncated":
                result = self._tcp(server, name, qtype, question, time.monotonic() + share)
            if result is None or result == "truncated":
                continue
            if result[0] == ERROR:
                failure = result
                continue
            return result
        return failure or (TIMEOUT, "no answer")

    def _udp(self, server, name, qtype, question, until):
        family, host, port = server
        ident = int.from_bytes(posix.urandom(2), "big")
        try:
            sock = _socket.socket(family, _socket.SOCK_DGRAM | _socket.SOCK_CLOEXEC)
        except OSError:
            return None
        try:
            sock.bind(("0.0.0.0" if family == _socket.AF_INET else "::", 0))
            sock.sendto(build_query(ident, name, qtype), (host, port))
            while True:
                left = until - time.monotonic()
                if left <= 0:
                    return None
                sock.settimeout(left)
                msg, source = sock.recvfrom(UDP_SIZE * 8)
                if source[1] != port or not _same_host(family, source[0], host):
                    continue
                try:
                    result = parse_response(msg, ident, question, name, qtype)
                except Malformed:
                    continue
                if result is not None:
                    return result
        except OSError:  # timeout, unreachable
            return None
        finally:
            sock.close()

    def _tcp(self, server, name, qtype, question, until):
        family, host, port = server
        ident = int.from_bytes(posix.urandom(2), "big")
        query = build_query(ident, name, qtype)
        try:
            sock = _socket.socket(family, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
        except OSError:
            return None
        try:
            sock.settimeout(max(0.001, until - time.monotonic()))
            sock.connect((host, port))
            sock.sendall(len(query).to_bytes(2, "big") + query)
            data = b""
            while len(data) < 2 or len(data) < 2 + int.from_bytes(data[:2], "big"):
                left = until - time.monotonic()
                if left <= 0:
                    return None
                sock.settimeout(left)
                chunk = sock.recv(MAX_TCP + 2 - len(data))
                if not chunk:
                    return None
                data += chunk
            msg = data[2:2 + int.from_bytes(data[:2], "big")]
            try:
                result = parse_response(msg, ident, question, name, qtype)
            except Malformed:
                return None
            return None if result == "truncated" else result
        except OSError:
            return None
        finally:
            sock.close()
