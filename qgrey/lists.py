"""The list files an admin edits in GL_DIR, read cheaply for every RCPT.

  whitelist-clients      IPv4 or IPv6 address or network (192.0.2.0/24,
                         2001:db8::/32), or host name: example.com matches
                         TCPREMOTEHOST example.com and *.example.com,
                         .example.com only *.example.com
  whitelist-recipients   bob@example.net, @example.net, postmaster@
  whitelist-senders      alice@example.org, @example.org (spoofable!)
  greytraps              addresses that never existed: trap@example.net

One entry a line; '#' starts a comment at the start of a line or after
white space. A malformed line is reported (file and line number) and
skipped. Matching ignores case.

A list is parsed into one sorted blob searched by bisection, so a lookup
costs the same for 10 or 10,000 lines. A list longer than SMALL bytes is
parsed once into GL_DIR/.NAME.cache (marshal, keyed by the list's inode,
size and times) and the cache is read from then on; if the cache cannot be
written, the list is parsed each time.
Only posix and marshal (both built in) are imported here.
"""
import marshal
import posix

CLIENTS = "whitelist-clients"
RECIPIENTS = "whitelist-recipients"
SENDERS = "whitelist-senders"
GREYTRAPS = "greytraps"
SMALL = 4096
CACHE_VERSION = 2


class List:
    """A parsed list: warnings, and the data that matching needs (see parse)."""

    def __init__(self, data, warnings):
        self.data, self.warnings = data, warnings


def _read(fd):
    chunks = []
    while True:
        chunk = posix.read(fd, 1 << 20)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _entries(text):
    """-> (line number, entry) for each line that is not blank or a comment,
    or (line number, None) for a line with more than one entry."""
    for number, line in enumerate(text.split(b"\n"), 1):
        words = line.split()
        if not words or words[0][:1] == b"#":
            continue
        if len(words) > 1 and words[1][:1] != b"#":
            yield number, None
        else:
            yield number, words[0].lower()


def _name_ok(name):
    return (0 < len(name) <= 253 and not name.startswith(b".") and b".." not in name
            and not name.translate(None, b"abcdefghijklmnopqrstuvwxyz0123456789.-_")
            and not name.replace(b".", b"").isdigit())


def _address_ok(address):
    local, at, domain = address.rpartition(b"@")
    return bool(at) and bool(local) and _name_ok(domain) and not any(
        b <= 0x20 or b >= 0x7F for b in address)


def parse(name, text):
    """The text of list name -> (data, [(line number, problem)]).

    data: (IPv4 prefix lengths, IPv6 prefix lengths, blob), where blob holds
    every entry, tagged by kind, sorted, one a line between newlines, for
    a binary search that creates no objects per entry (see contains)."""
    from qgrey.keys import parse_ipv4, parse_ipv6
    problems = []
    entries, prefixes = set(), {32: set(), 128: set()}
    for number, entry in _entries(text):
        if entry is None:
            problems.append((number, "more than one entry on the line"))
            continue
        if name == CLIENTS:
            address, slash, length = entry.partition(b"/")
            v4 = parse_ipv4(address) if b":" not in address else None
            v6 = parse_ipv6(address) if b":" in address else None
            if v4 is not None or v6 is not None:
                bits = 32 if v4 is not None else 128
                if slash and (not length.isdigit() or int(length) > bits):
                    problems.append((number, "bad prefix length"))
                    continue
                prefix = int(length) if slash else bits
                if v6 is not None and v6 >> 32 == 0xFFFF and prefix >= 96:
                    v4, v6, bits, prefix = v6 & 0xFFFFFFFF, None, 32, prefix - 96
                value = v4 if v4 is not None else v6
                prefixes[bits].add(prefix)
                entries.add(_network(bits, prefix, value >> (bits - prefix)))
            elif not slash and _name_ok(entry[1:] if entry[:1] == b"." else entry):
                entries.add(b"n" + entry)
            else:
                problems.append((number, "not an IP address, network or host name"))
        elif entry.startswith(b"@") and name in (RECIPIENTS, SENDERS):
            if _name_ok(entry[1:]):
                entries.add(b"d" + entry[1:])
            else:
                problems.append((number, "not a domain"))
        elif entry.endswith(b"@") and name == RECIPIENTS:
            if len(entry) > 1 and _address_ok(entry + b"x"):
                entries.add(b"l" + entry[:-1])
            else:
                problems.append((number, "not a local part"))
        elif _address_ok(entry):
            entries.add(b"a" + entry)
        else:
            problems.append((number, "not an address"))
    blob = b"\n" + b"".join(e + b"\n" for e in sorted(entries))
    return (sorted(prefixes[32]), sorted(prefixes[128]), blob), problems


def _network(bits, prefix, network):
    if bits == 32:
        return b"4%02d%08x" % (prefix, network)
    return b"6%03d%032x" % (prefix, network)


def contains(blob, entry):
    """Binary search of blob ("\n" + sorted lines each ending in "\n")."""
    low, high = 0, len(blob) - 1  # newlines around the lines still in question
    while low < high:
        start = blob.rfind(b"\n", low, (low + high) // 2 + 1)
        end = blob.find(b"\n", start + 1)
        line = blob[start + 1:end]
        if line == entry:
            return True
        if line < entry:
            low = end
        else:
            high = start
    return False


def load(directory, name):
    """The list GL_DIR/name, or None when there is no such file.

    Raises OSError when it exists but cannot be read."""
    path = directory + "/" + name
    try:
        fd = posix.open(path, posix.O_RDONLY | posix.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        st = posix.fstat(fd)
        if st.st_size <= SMALL:
            return _checked(path, parse(name, _read(fd)))
        stamp = (CACHE_VERSION, st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        cache = directory + "/." + name + ".cache"
        try:
            cfd = posix.open(cache, posix.O_RDONLY | posix.O_CLOEXEC | posix.O_NOFOLLOW)
            try:
                cached = marshal.loads(_read(cfd))
            finally:
                posix.close(cfd)
            if cached[0] == stamp:
                return _checked(path, cached[1])
        except (OSError, ValueError, EOFError, TypeError, IndexError):
            pass
        parsed = parse(name, _read(fd))
        _write_cache(cache, (stamp, parsed))
        return _checked(path, parsed)
    finally:
        posix.close(fd)


def _write_cache(cache, value):
    temporary = "%s.%d" % (cache, posix.getpid())
    try:
        fd = posix.open(temporary, posix.O_WRONLY | posix.O_CREAT | posix.O_TRUNC
                        | posix.O_NOFOLLOW | posix.O_CLOEXEC, 0o600)
        try:
            data = marshal.dumps(value)
            while data:
                data = data[posix.write(fd, data):]
        finally:
            posix.close(fd)
        posix.rename(temporary, cache)
    except OSError:  # a read-only GL_DIR: parse every time
        try:
            posix.unlink(temporary)
        except OSError:
            pass


def _checked(path, parsed):
    data, problems = parsed
    return List(data, ["%s line %d: %s; skipped" % (path, number, problem)
                       for number, problem in problems])


def client_listed(listed, remote_ip, remote_host):
    """Whether TCPREMOTEIP or TCPREMOTEHOST (bytes or None) is in the list."""
    from qgrey.keys import parse_ipv4, parse_ipv6
    prefixes4, prefixes6, blob = listed.data
    if remote_ip:
        remote_ip = remote_ip.strip()
        if b":" in remote_ip:
            v6 = parse_ipv6(remote_ip)
            v4 = v6 & 0xFFFFFFFF if v6 is not None and v6 >> 32 == 0xFFFF else None
        else:
            v4, v6 = parse_ipv4(remote_ip), None
        if v4 is not None:
            value, bits, prefixes = v4, 32, prefixes4
        else:
            value, bits, prefixes = v6, 128, prefixes6
        if value is not None:
            for prefix in prefixes:
                if contains(blob, _network(bits, prefix, value >> (bits - prefix))):
                    return True
    if remote_host:
        host = remote_host.strip().lower().rstrip(b".")
        if host and contains(blob, b"n" + host):
            return True
        dot = host.find(b".")
        while dot >= 0:
            if contains(blob, b"n" + host[dot + 1:]) or contains(blob, b"n" + host[dot:]):
                return True
            dot = host.find(b".", dot + 1)
    return False


def address_listed(listed, address):
    """Whether an address (bytes, lower-cased) is in a list of addresses,
    @domains and localparts@."""
    blob = listed.data[2]
    if contains(blob, b"a" + address):
        return True
    local, at, domain = address.rpartition(b"@")
    return bool(at) and (contains(blob, b"d" + domain) or contains(blob, b"l" + local))
