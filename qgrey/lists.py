"""The list files an admin edits in GL_DIR, read cheaply for every RCPT.

  whitelist-clients      IPv4 or IPv6 address or network (192.0.2.0/24,
                         2001:db8::/32; postgrey's 192.0.2 is 192.0.2.0/24,
                         192.0 is 192.0.0.0/16), host name: example.com
                         matches the client's verified host name
                         (Request.verified_host, per GL_HOST_NAMES)
                         example.com and *.example.com, .example.com only
                         *.example.com; or a regular expression between
                         slashes, /^mail\\d+\\.example\\.com$/, searched for in
                         the verified host name, case ignored (postgrey's
                         whitelist_clients works unchanged)
  whitelist-recipients   bob@example.net, @example.net, postmaster@
  whitelist-senders      alice@example.org, @example.org (spoofable!)
  greytraps              addresses that never existed: trap@example.net

One entry a line; '#' starts a comment at the start of a line or after
white space. A malformed line is reported (file and line number) and
skipped; the first SHOWN of them are reported, then how many more there
were. Matching ignores case.

A list is opened without blocking (a FIFO is refused, never waited on),
must be a regular file (a symbolic link is followed only to a file that
belongs to root or to GL_DIR's owner) of at most LIMIT bytes: a larger one
is refused whole, with one warning, and not parsed.

A list is parsed into one sorted blob searched by bisection, so a lookup
costs the same for 10 or 10,000 lines. A list longer than SMALL bytes is
parsed once into GL_DIR/.NAME.cache (keyed by the list's inode, size and
times) and the cache is read from then on; if the cache cannot be written,
the list is parsed each time. The cache is a plain format checked whole
before it is used (its size follows from its header, and the header's
numbers are bounded), so that a damaged or planted cache costs at most its
own size to read and is rebuilt, never trusted.
check_lists(request) is what the lists say of one request (qgrey.request),
which knows which of the files exist (Request.list_files): this module is
imported only when one does.
A regular expression costs nothing where a list has none. Patterns are
searched by a plain matcher of this module (search: an automaton, time in
proportion to the name, no backtracking) that takes every pattern of
postgrey's list; re is imported only for a pattern beyond it (\\b,
look-arounds, ...), and when the list is parsed, to judge such a pattern.
Python's re has no time limit, so a pattern that could backtrack for long
is refused as malformed (pattern_problem): at most MAX_PATTERN bytes, at
most MAX_REPEATS repeats (* + ? {m,n}; a pattern not anchored by a leading
^ is tried at every position, which counts as one), no repeated group, no
back-reference, at most MAX_ALTERNATIVES |. Host names are at most 253
bytes. postgrey's own list needs 3 repeats and 1 | at most; the slowest
patterns these bounds let through took re about a quarter of a second over
a 253-byte name, the plain matcher under a millisecond (docs/selective.md).
Only posix (built in) and qgrey modules are imported here (and re, as said).
"""
import posix

from qgrey import files

CLIENTS = "whitelist-clients"
RECIPIENTS = "whitelist-recipients"
SENDERS = "whitelist-senders"
GREYTRAPS = "greytraps"
# The whitelists in the order they are consulted, with the reason logged.
WHITELISTS = (
    (CLIENTS, "whitelist-client"),
    (RECIPIENTS, "whitelist-recipient"),
    (SENDERS, "whitelist-sender"),
)
SMALL = 4096
# The largest list read: some 350,000 IPv4 addresses or 180,000 e-mail
# addresses, far more than a whitelist kept by hand or built from a
# published one, and still parsed in about a second (once: then the cache
# is read), well within GL_LOCK_TIMEOUT's default. Four times that took
# five seconds and over 300 MB.
LIMIT = 4 << 20
# Malformed lines reported per list; the rest are counted.
SHOWN = 3
CACHE_MAGIC = b"qgrey list cache 4\n"
# Bounds of a regular expression in whitelist-clients (see above).
MAX_PATTERN = 128
MAX_REPEATS = 3
MAX_ALTERNATIVES = 2
# A parsed entry is at most 10 times the bytes of its line ("::1" becomes
# "6128" and 32 hex digits), so a cache larger than this is not one.
CACHE_GROWTH = 10
CACHE_HEADER = 4096
_CONTROLS = bytes(range(32)) + b"\x7f"


class List:
    """A parsed list: warnings, and the data that matching needs (see parse)."""

    def __init__(self, data, warnings):
        self.data, self.warnings = data, warnings


def _entries(text):
    """-> (line number, entry) for each line that is not blank or a comment,
    or (line number, None) for a line with more than one entry. Entries
    keep their case (a regular expression's \\d is not its \\D)."""
    start, number, size = 0, 0, len(text)
    while start <= size:  # line by line: no list of every line at once
        end = text.find(b"\n", start)
        if end < 0:
            end = size
        line = text[start:end]
        start, number = end + 1, number + 1
        words = line.split()
        if not words or words[0][:1] == b"#":
            continue
        if len(words) > 1 and words[1][:1] != b"#":
            yield number, None
        else:
            yield number, words[0]


def _name_ok(name):
    return (0 < len(name) <= 253 and not name.startswith(b".") and b".." not in name
            and not name.translate(None, b"abcdefghijklmnopqrstuvwxyz0123456789.-_")
            and not name.replace(b".", b"").isdigit())


def _address_ok(address):
    local, at, domain = address.rpartition(b"@")
    return bool(at) and bool(local) and _name_ok(domain) and not any(
        b <= 0x20 or b >= 0x7F for b in address)


class _Problems(list):
    """[(line number, problem)], keeping the first keep; count counts all."""

    def __init__(self, keep):
        list.__init__(self)
        self.keep, self.count = keep, 0

    def append(self, problem):
        self.count += 1
        if len(self) < self.keep:
            list.append(self, problem)


def parse(name, text, keep=None):
    """The text of list name -> (data, [(line number, problem)]); with
    keep, only the first keep problems are listed (.count counts all).

    data: (IPv4 prefix lengths, IPv6 prefix lengths, blob), where blob holds
    every entry, tagged by kind, sorted, one a line between newlines, for
    a binary search that creates no objects per entry (see contains)."""
    from qgrey.keys import parse_ipv4, parse_ipv6
    problems = [] if keep is None else _Problems(keep)
    entries, prefixes = set(), {32: set(), 128: set()}
    for number, entry in _entries(text):
        if entry is None:
            problems.append((number, "more than one entry on the line"))
            continue
        if name == CLIENTS and len(entry) > 2 and entry[:1] == entry[-1:] == b"/":
            pattern = entry[1:-1]
            problem = pattern_problem(pattern)
            if problem is None and compile_pattern(pattern) is None:
                import re  # a pattern beyond the plain matcher: re judges it
                try:
                    re.compile(pattern, re.IGNORECASE)
                except (re.error, OverflowError, RecursionError) as err:
                    problem = "not a regular expression: %s" % str(err)[:60]
            if problem is not None:
                problems.append((number, problem))
            else:
                entries.add(b"r" + pattern)
            continue
        entry = entry.lower()
        if name == CLIENTS:
            address, slash, length = entry.partition(b"/")
            if not slash and 1 <= address.count(b".") <= 2 and all(
                    p.isdigit() and len(p) <= 3 and int(p) <= 255 for p in address.split(b".")):
                # postgrey's partial address: 192.0.2 is 192.0.2.0/24, 192.0 a /16
                parts = address.split(b".")
                length = b"%d" % (8 * len(parts))
                address, slash = b".".join(parts + [b"0"] * (4 - len(parts))), b"/"
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


def pattern_problem(pattern):
    """What makes a regular expression (bytes, between the slashes) unsafe
    to search for on every RCPT, or None. Counts repeats and alternatives
    and refuses what could backtrack for long; re.compile judges the rest."""
    if len(pattern) > MAX_PATTERN:
        return "regular expression longer than %d bytes" % MAX_PATTERN
    if pattern.translate(None, _CONTROLS + bytes(range(0x80, 0x100))) != pattern:
        return "regular expression not in printable ASCII"
    alternatives, depth, anchored, last, i, size = 0, 0, pattern[:1] == b"^", "", 0, len(pattern)
    repeats = 0
    while i < size:
        c = pattern[i:i + 1]
        if c == b"\\":
            if pattern[i + 1:i + 2] in b"123456789" and i + 1 < size:
                return "regular expression with a back-reference"
            i, last = i + 2, "atom"
            continue
        if c == b"[":  # a class is one atom: skip to its closing bracket
            i += 1
            if pattern[i:i + 1] == b"^":
                i += 1
            if pattern[i:i + 1] == b"]":
                i += 1
            while i < size and pattern[i:i + 1] != b"]":
                i += 2 if pattern[i:i + 1] == b"\\" else 1
            i, last = i + 1, "atom"
            continue
        if c == b"(":
            if pattern[i + 1:i + 4] == b"?P=" or pattern[i + 1:i + 3] == b"?(":
                return "regular expression with a back-reference"
            i, last, depth = i + (2 if pattern[i + 1:i + 2] == b"?" else 1), "open", depth + 1
            continue
        if c == b"{":
            end = pattern.find(b"}", i)
            inside = pattern[i + 1:end] if end > 0 else b""
            if not inside or inside.translate(None, b"0123456789,") or inside.count(b",") > 1:
                i, last = i + 1, "atom"  # a literal brace, as re reads it
                continue
            c, step = b"*", end - i + 1
        else:
            step = 1
        if c in b"*+?":
            if c == b"?" and last == "repeat":  # lazy: *? +? ?? {m,n}?
                i, last = i + 1, "lazy"
                continue
            if last == "close":
                return "regular expression with a repeated group (could backtrack for long)"
            repeats += 1
            i, last = i + step, "repeat"
            continue
        if c == b"|":
            alternatives += 1
            anchored = anchored and depth > 0  # ^a|b: b is tried anywhere
        elif c == b")":
            depth -= 1
        i, last = i + 1, "close" if c == b")" else "atom"
    if not anchored:  # tried at every position: as one more repeat
        repeats += 1
    if repeats > MAX_REPEATS:
        return "regular expression with more than %d repeats (a leading ^ saves one)" % MAX_REPEATS
    if alternatives > MAX_ALTERNATIVES:
        return "regular expression with more than %d |" % MAX_ALTERNATIVES
    return None


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


def load(directory, name, owners=None):
    """The list GL_DIR/name, or None when there is no such file.

    owners: the uids a list reached through a link may belong to (default:
    root and GL_DIR's owner). Raises OSError (files.Refused: a FIFO, a
    device, a link to another user's file, larger than LIMIT) when it
    exists but cannot be read."""
    path = directory + "/" + name
    if owners is None:
        owners = (0, posix.stat(directory).st_uid)
    try:
        fd, st = files.open_regular(path, follow=True, owners=owners)
    except FileNotFoundError:
        return None
    try:
        if st.st_size > LIMIT:
            raise files.Refused(files.EFBIG, "larger than %d bytes" % LIMIT, path)
        if st.st_size <= SMALL:
            return _checked(path, parse(name, files.read_fd(fd, LIMIT, path), SHOWN))
        stamp = b"%d %d %d %d %d" % (st.st_ino, st.st_dev, st.st_size,
                                     st.st_mtime_ns, st.st_ctime_ns)
        cache = directory + "/." + name + ".cache"
        cached = read_cache(cache, stamp, st.st_size, owners)
        if cached is not None:
            return _checked(path, cached)
        parsed = parse(name, files.read_fd(fd, LIMIT, path), SHOWN)
        try:  # a read-only GL_DIR: parse every time
            files.replace(cache, encode_cache(stamp, parsed))
        except OSError:
            pass
        return _checked(path, parsed)
    finally:
        posix.close(fd)


def encode_cache(stamp, parsed):
    """The cache of a parsed list: a header of text lines, then the blob.

      qgrey list cache 3
      inode device size mtime_ns ctime_ns        (of the list)
      IPv4 prefix lengths, comma-separated
      IPv6 prefix lengths, comma-separated
      problems shown-problems blob-bytes
      line-number problem                         (shown-problems lines)
      blob                                        (blob-bytes bytes, to the end)
    """
    (prefixes4, prefixes6, blob), problems = parsed
    count = getattr(problems, "count", len(problems))
    lines = [CACHE_MAGIC, stamp, b"\n",
             b",".join(b"%d" % p for p in prefixes4), b"\n",
             b",".join(b"%d" % p for p in prefixes6), b"\n",
             b"%d %d %d\n" % (count, len(problems), len(blob))]
    lines += [b"%d %s\n" % (number, problem.encode()) for number, problem in problems]
    return b"".join(lines) + blob


def read_cache(cache, stamp, list_size, owners=None):
    """The parsed list in cache when it is one, sound, and of the list
    stamp names; None otherwise (missing, not a regular file, another
    stamp, damaged): the caller parses the list again."""
    limit = CACHE_HEADER + CACHE_GROWTH * list_size
    try:
        data = files.read_regular(cache, limit, owners=owners)
    except OSError:
        return None
    return decode_cache(data, stamp)


def _numbers(text, low, high):
    """'1,8,24' -> [1, 8, 24], strictly increasing within [low, high]; else ValueError."""
    if not text:
        return []
    values = []
    for word in text.split(b","):
        if not word.isdigit() or len(word) > 3:
            raise ValueError(word)
        value = int(word)
        if not low <= value <= high or (values and value <= values[-1]):
            raise ValueError(word)
        values.append(value)
    return values


def decode_cache(data, stamp):
    if not data.startswith(CACHE_MAGIC):
        return None
    lines = data[len(CACHE_MAGIC):CACHE_HEADER].split(b"\n", 4 + SHOWN)
    try:
        if len(lines) < 4 or lines[0] != stamp:
            return None
        prefixes4, prefixes6 = _numbers(lines[1], 0, 32), _numbers(lines[2], 0, 128)
        counts = lines[3].split(b" ")
        if len(counts) != 3 or not all(c.isdigit() and len(c) <= 12 for c in counts):
            return None
        count, shown, size = [int(c) for c in counts]
        if shown > SHOWN or shown > count or len(lines) < 5 + shown:
            return None
        problems = _Problems(SHOWN)
        for line in lines[4:4 + shown]:
            number, _, problem = line.partition(b" ")
            if not number.isdigit() or len(number) > 12 or not problem \
                    or len(problem) > 100 or not problem.isascii() \
                    or len(problem.translate(None, _CONTROLS)) != len(problem):
                return None
            problems.append((int(number), problem.decode()))
    except ValueError:
        return None
    problems.count = count
    header = len(CACHE_MAGIC) + sum(len(line) + 1 for line in lines[:4 + shown])
    blob = data[header:]
    if len(blob) != size or blob[:1] != b"\n" or blob[-1:] != b"\n":
        return None
    # Its regular expressions are held to the bounds of a list's own: a
    # damaged or planted cache cannot bring a pattern parse() refuses.
    if any(pattern_problem(p[1:]) is not None for p in patterns(blob)):
        return None
    return (prefixes4, prefixes6, blob), problems


def _checked(path, parsed):
    data, problems = parsed
    warnings = ["%s line %d: %s; skipped" % (path, number, problem)
                for number, problem in problems]
    more = getattr(problems, "count", len(problems)) - len(problems)
    if more > 0:
        warnings.append("%s: %d more malformed line%s skipped" % (path, more, "s" if more > 1 else ""))
    return List(data, warnings)


def patterns(blob):
    """The regular-expression lines of a blob ("r" + pattern), found from
    its end: "r" sorts after every other tag, so they come last and a list
    without any costs one look at its last line."""
    found, end = [], len(blob) - 1
    while end > 0:
        start = blob.rfind(b"\n", 0, end) + 1
        if blob[start:start + 1] != b"r":
            break
        found.append(blob[start:end])
        end = start - 1
    return found


def has_names(listed):
    """Whether a whitelist-clients list holds host names or patterns."""
    blob = listed.data[2]
    return b"\nn" in blob or bool(patterns(blob))


def client_listed(listed, remote_ip, remote_host):
    """Whether TCPREMOTEIP or the client's verified host name (bytes, str
    or None) is in the list: its address in a network, its name or a
    parent domain's, or a regular expression found in its name."""
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
        if isinstance(remote_host, str):
            remote_host = remote_host.encode("ascii", "replace")
        host = remote_host.strip().lower().rstrip(b".")[:253]
        if host and contains(blob, b"n" + host):
            return True
        dot = host.find(b".")
        while dot >= 0:
            if contains(blob, b"n" + host[dot + 1:]) or contains(blob, b"n" + host[dot:]):
                return True
            dot = host.find(b".", dot + 1)
        for pattern in patterns(blob) if host else ():
            if search(pattern[1:], host):
                return True
    return False


# A plain matcher for the patterns of postgrey's list, so that a list
# with patterns does not import re (about 12 ms) on every RCPT, and runs in
# time linear in the name (an automaton, no backtracking): literals,
# '.', classes ([a-z0-9], [^.], \d \w \s and their negations), the repeats
# * + ? {m} {m,} {m,n} (lazy or not: only whether it matches counts), ^ and
# $, groups (capturing or (?:...), never repeated: pattern_problem refuses
# that) with |. Anything else (\b, look-arounds, flags, ...) goes to re.
# Case is ignored as re.IGNORECASE does for bytes: ASCII letters only.

_DIGIT = frozenset(b"0123456789")
_WORD = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
_SPACE = frozenset(b" \t\n\r\f\v")
_ALL = frozenset(range(256))
_CLASSES = {ord("d"): _DIGIT, ord("w"): _WORD, ord("s"): _SPACE,
            ord("D"): _ALL - _DIGIT, ord("W"): _ALL - _WORD, ord("S"): _ALL - _SPACE}
_ALNUM = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")


class _Beyond(Exception):
    """A pattern the plain matcher does not take (or re would refuse)."""


def _folded(chars):
    return frozenset(chars) | frozenset(bytes(chars).swapcase())


class _Parser:
    def __init__(self, pattern):
        self.p, self.i = pattern, 0

    def peek(self):
        return self.p[self.i] if self.i < len(self.p) else None

    def alternatives(self):
        """-> [sequence]; a sequence is [(kind, value, low, high)]."""
        branches = [self.sequence()]
        while self.peek() == ord("|"):
            self.i += 1
            branches.append(self.sequence())
        return branches

    def sequence(self):
        items = []
        while self.peek() is not None and self.peek() not in b"|)":
            c = self.p[self.i]
            self.i += 1
            if c == ord("("):
                if self.p[self.i:self.i + 2] == b"?:":
                    self.i += 2
                elif self.peek() == ord("?"):
                    raise _Beyond()
                item = ("group", self.alternatives())
                if self.peek() != ord(")"):
                    raise _Beyond()
                self.i += 1
            elif c == ord("^") or c == ord("$"):
                item = ("at", c)
            elif c == ord("."):
                item = ("set", _ALL - {10})
            elif c == ord("["):
                item = ("set", self.klass())
            elif c == ord("\\"):
                item = ("set", self.escape())
            elif c in b"*+?{" and not (c == ord("{") and self.repeat_at(self.i - 1) is None):
                raise _Beyond()  # nothing to repeat, or a repeat of a repeat
            else:
                item = ("set", _folded([c]))
            low, high = 1, 1
            found = self.repeat_at(self.i)
            if found is not None:
                if item[0] != "set":
                    raise _Beyond()
                low, high, self.i = found
                if self.peek() == ord("?"):
                    self.i += 1
                if self.peek() is not None and self.repeat_at(self.i) is not None:
                    raise _Beyond()  # possessive (Python 3.11) or an error: re decides
            items.append((item[0], item[1], low, high))
        return items

    def repeat_at(self, i):
        """(low, high, index after) of a repeat at i, or None."""
        c = self.p[i] if i < len(self.p) else None
        if c is None:
            return None
        if c in b"*+?":
            return (0 if c != ord("+") else 1, 1 if c == ord("?") else None, i + 1)
        if c != ord("{"):
            return None
        end = self.p.find(b"}", i)
        inside = self.p[i + 1:end] if end > 0 else b""
        low, comma, high = inside.partition(b",")
        if not inside or inside.translate(None, b"0123456789,") or inside.count(b",") > 1:
            return None  # a literal brace, as re reads it
        if not low or len(inside) > 8:
            raise _Beyond()  # {,n} and {,}: read alike by every Python? re decides
        low, high = int(low), int(high) if high else (None if comma else int(low))
        if high is not None and high < low:
            raise _Beyond()
        return low, high, end + 1

    def escape(self):
        c = self.peek()
        if c is None:
            raise _Beyond()
        self.i += 1
        if c in _CLASSES:
            return _CLASSES[c]
        if c in _ALNUM or c > 0x7F:
            raise _Beyond()  # \b, \A, \x41, a back-reference...
        return _folded([c])

    def klass(self):
        negate = self.peek() == ord("^")
        self.i += negate
        chars, first = set(), True
        while True:
            c = self.peek()
            if c is None:
                raise _Beyond()
            if c == ord("]") and not first:
                self.i += 1
                break
            first = False
            self.i += 1
            if c == ord("\\"):
                d = self.peek()
                if d in _CLASSES:
                    self.i += 1
                    chars |= _CLASSES[d]
                    continue
                c = self.escape() and d
            if c == ord("[") or (self.peek() == ord("-") and self.p[self.i + 1:self.i + 2] not in (b"]", b"")):
                if c == ord("["):
                    raise _Beyond()  # [[:alpha:]] and the like
                self.i += 1
                end = self.peek()
                self.i += 1
                if end == ord("\\"):
                    d = self.peek()
                    if d is None or d in _ALNUM:
                        raise _Beyond()
                    self.i += 1
                    end = d
                if end < c:
                    raise _Beyond()
                chars.update(range(c, end + 1))
            else:
                chars.add(c)
        chars = _folded(chars)
        return _ALL - chars if negate else chars


def compile_pattern(pattern):
    """A pattern (bytes) -> its alternatives for _search, or None when the
    plain matcher does not take it (then re does)."""
    parser = _Parser(pattern)
    try:
        tree = parser.alternatives()
        if parser.peek() is not None:  # an unmatched )
            return None
    except (_Beyond, IndexError, TypeError):
        return None
    return tree


def _automaton(tree):
    """The alternatives of compile_pattern -> (states, start, final): a
    Thompson automaton, so that a search takes time in proportion to the
    name's length times the states, never backtracking. A state is
    [kind, value, out, out2]: 'set' (value: the bytes it takes), 'split'
    (out and out2, no byte), 'at' (value: ^ or $), 'final'. None when a
    repeat would need more than MAX_STATES states ({1000} and the like)."""
    states = []

    def new(kind, value=None):
        states.append([kind, value, None, None])
        return len(states) - 1

    def patch(outs, target):
        for state, slot in outs:
            states[state][slot] = target

    def empty():
        state = new("split")
        return state, [(state, 2)]

    def chain(parts):
        if not parts:
            return empty()
        first, outs = parts[0]
        for start, more in parts[1:]:
            patch(outs, start)
            outs = more
        return first, outs

    def item(kind, value, low, high):
        if kind == "at":
            state = new("at", value)
            return state, [(state, 2)]
        if kind == "group":
            return alternatives(value)
        if low + (1 if high is None else high - low) > MAX_STATES or len(states) > MAX_STATES:
            raise _Beyond()
        parts = []
        for _ in range(low):
            state = new("set", value)
            parts.append((state, [(state, 2)]))
        if high is None:
            loop, take = new("split"), new("set", value)
            states[loop][2], states[take][2] = take, loop
            parts.append((loop, [(loop, 3)]))
        else:
            for _ in range(high - low):
                skip, take = new("split"), new("set", value)
                states[skip][2] = take
                parts.append((skip, [(skip, 3), (take, 2)]))
        return chain(parts)

    def alternatives(branches):
        fragments = [chain([item(*i) for i in branch]) for branch in branches]
        start, outs = fragments[-1]
        for first, more in reversed(fragments[:-1]):
            split = new("split")
            states[split][2], states[split][3] = first, start
            start, outs = split, more + outs
        return start, outs

    try:
        start, outs = alternatives(tree)
    except _Beyond:
        return None
    final = new("final")
    patch(outs, final)
    return states, start, final


MAX_STATES = 256


def _closure(states, todo, at, size, into):
    """Add to into the states reachable from todo without taking a byte,
    at position at of a name of size bytes."""
    while todo:
        state = todo.pop()
        if state is None or state in into:
            continue
        into.add(state)
        kind, value, out, out2 = states[state]
        if kind == "split":
            todo.append(out)
            todo.append(out2)
        elif kind == "at" and at == (0 if value == ord("^") else size):
            todo.append(out)


def search(pattern, name):
    """Whether the pattern (bytes, as between the slashes) is found in name
    (bytes), case ignored: as re.search(pattern, name, re.IGNORECASE)."""
    tree = compile_pattern(pattern)
    machine = _automaton(tree) if tree is not None else None
    if machine is None:
        import re  # beyond the plain matcher
        try:
            return re.search(pattern, name, re.IGNORECASE) is not None
        except re.error:  # parse() compiled it: only a damaged cache
            return False
    states, start, final = machine
    size, current = len(name), set()
    for at in range(size + 1):  # pragma: no branch - left by the break at the end of name
        _closure(states, [start], at, size, current)  # a match may start anywhere
        if final in current:
            return True
        if at == size:
            break
        byte = name[at]
        taken = [states[s][2] for s in current if states[s][0] == "set" and byte in states[s][1]]
        current = set()
        _closure(states, taken, at + 1, size, current)
    return False


def address_listed(listed, address):
    """Whether an address (bytes, lower-cased) is in a list of addresses,
    @domains and localparts@."""
    blob = listed.data[2]
    if contains(blob, b"a" + address):
        return True
    local, at, domain = address.rpartition(b"@")
    return bool(at) and (contains(blob, b"d" + domain) or contains(blob, b"l" + local))


def _load_list(directory, name, owners, problems):
    """load(), with what is wrong said in problems: None when unreadable."""
    try:
        listed = load(directory, name, owners)
    except OSError as err:
        problems.append("cannot read %s/%s: %s; list ignored" % (directory, name, files.describe(err)))
        return None
    if listed is not None:
        problems.extend(listed.warnings)
    return listed


def check_lists(request):
    """-> (whitelist reason or None, whether the recipient is a greytrap).
    request: a qgrey.request.Request (its settings, list_files, addresses);
    what is wrong with a list goes to request.problems."""
    settings, present, problems = request.settings, request.list_files, request.problems
    directory = settings.dir
    for name, reason in WHITELISTS:
        if name not in present:
            continue
        listed = _load_list(directory, name, settings.owners, problems)
        if listed is None:
            continue
        if name == CLIENTS:
            # Names and patterns match the verified name only (GL_HOST_NAMES),
            # learned only for a list that names hosts, and only when the
            # address is not listed. With GL_HOST_NAMES=dns that means DNS
            # questions: the plugin asks them only after the database, when
            # it would refuse (request.names_deferred): a known sender never
            # waits for DNS.
            hit = client_listed(listed, request.client_ip, None)
            if not hit and has_names(listed):
                if settings.host_names == "dns":
                    request.names_deferred = listed
                else:
                    hit = client_listed(listed, None, request.verified_host)
        elif name == RECIPIENTS:
            hit = address_listed(listed, request.recipient.lower())
        else:
            sender = request.sender.lower()
            hit = bool(sender) and address_listed(listed, sender)
            if not hit and sender and settings.normalise_sender:
                from qgrey.keys import normalise_sender
                hit = address_listed(listed, normalise_sender(sender))
        if hit:
            return reason, False
    if settings.trap_time <= 0 or GREYTRAPS not in present:
        return None, False
    listed = _load_list(directory, GREYTRAPS, settings.owners, problems)
    if listed is None:
        return None, False
    trap = address_listed(listed, request.recipient.lower())
    deferred = getattr(request, "names_deferred", None)
    if trap and deferred is not None:  # a whitelisted client is never trapped
        request.names_deferred = None
        if client_listed(deferred, None, request.verified_host):
            return "whitelist-client", False
    return None, trap
