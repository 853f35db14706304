"""Building the key of a triplet: address normalisation and IP masking.

A key is three fields separated by single spaces: client, sender,
recipient. Every field is printable ASCII without spaces, so keys are safe
in logs, dumps and SMTP replies alike:
- bytes outside '!'..'~' and the bytes % < > * are written as %XX;
- the null sender is '<>'; a part left out by a GL_IGNORE_* setting is '*';
- addresses are lower-cased (compared case-insensitively) and cut after
  MAX_ADDRESS bytes;
- a client is 'a.b.c.0/24' or '2001:db8:1:2::/64' when masked, the exact
  address otherwise (auto-whitelisting entries: awl_client); IPv4-mapped IPv6 counts as IPv4; a value that is not an
  IP address is kept, escaped, as it is ('-' when empty); with
  GL_HOST_POOLS=1 a client whose host name names a provider's pool is that
  pool ('google.com', 'outbound.protection.outlook.com');
- the sender is normalised (normalise_sender) unless GL_NORMALISE_SENDER=0.
Keys of clients, traps and replies have two fields (see below).
"""

MAX_ADDRESS = 256
NULL_SENDER = "<>"
IGNORED = "*"
_UNSAFE = b"%<>*"
_SAFE = bytes(b for b in range(0x21, 0x7F) if b not in _UNSAFE)


def escape(raw):
    """bytes -> printable ASCII without spaces."""
    if not raw.translate(None, _SAFE):
        return raw.decode("ascii")
    return "".join(chr(b) if b in _SAFE else "%%%02X" % b for b in raw)


def address(raw):
    return escape(raw[:MAX_ADDRESS].lower()) if raw else NULL_SENDER


def parse_ipv4(text):
    parts = text.split(b".")
    if len(parts) != 4:
        return None
    value = 0
    for part in parts:
        if not part.isdigit() or len(part) > 3 or int(part) > 255:
            return None
        value = value << 8 | int(part)
    return value


def parse_ipv6(text):
    text = text.partition(b"%")[0]  # zone index: fe80::1%eth0
    head, gap, tail = text.partition(b"::")
    if b"::" in tail:
        return None
    groups = []
    for is_tail, side in ((False, head), (True, tail)):
        side_groups = []
        if side:
            fields = side.split(b":")
            if is_tail or not gap:
                last = fields[-1]
                if b"." in last:  # ::ffff:192.0.2.1
                    v4 = parse_ipv4(last)
                    if v4 is None:
                        return None
                    fields[-1:] = [b"%x" % (v4 >> 16), b"%x" % (v4 & 0xFFFF)]
            for field in fields:
                if not 1 <= len(field) <= 4 or field.strip(b"0123456789abcdefABCDEF"):
                    return None
                side_groups.append(int(field, 16))
        groups.append(side_groups)
    head_groups, tail_groups = groups
    missing = 8 - len(head_groups) - len(tail_groups)
    if (gap and missing < 1) or (not gap and missing != 0):
        return None
    value = 0
    for group in head_groups + [0] * missing + tail_groups:
        value = value << 16 | group
    return value


def format_ipv6(value):
    """RFC 5952 text: lower case, no leading zeros, longest zero run as '::'."""
    groups = [(value >> (16 * (7 - i))) & 0xFFFF for i in range(8)]
    best_start, best_len, start = -1, 1, None
    for i, group in enumerate(groups + [1]):
        if group == 0 and i < 8:
            if start is None:
                start = i
        elif start is not None:
            if i - start > best_len:
                best_start, best_len = start, i - start
            start = None
    text = ["%x" % g for g in groups]
    if best_start < 0:
        return ":".join(text)
    return ":".join(text[:best_start]) + "::" + ":".join(text[best_start + best_len:])


def format_ipv4(value):
    return "%d.%d.%d.%d" % (value >> 24, value >> 16 & 255, value >> 8 & 255, value & 255)


def _client(raw, v4_bits, v6_bits):
    """TCPREMOTEIP bytes -> 'network/bits', or the exact address where the
    bits are None."""
    raw = raw.strip()
    if not raw:
        return "-"
    if b":" not in raw:
        v4 = parse_ipv4(raw)
    else:
        v6 = parse_ipv6(raw)
        if v6 is None:
            return escape(raw[:64].lower())
        if v6 >> 32 == 0xFFFF:  # IPv4-mapped
            v4 = v6 & 0xFFFFFFFF
        else:
            if v6_bits is not None:
                return format_ipv6(v6 >> (128 - v6_bits) << (128 - v6_bits)) + "/%d" % v6_bits
            return format_ipv6(v6)
    if v4 is None:
        return escape(raw[:64].lower())
    if v4_bits is not None:
        return format_ipv4(v4 >> (32 - v4_bits) << (32 - v4_bits)) + "/%d" % v4_bits
    return format_ipv4(v4)


def client(raw, settings):
    """TCPREMOTEIP bytes -> client field of the key: the network
    (GL_MASK_IP, GL_IPV4_PREFIX, GL_IPV6_PREFIX) or the exact address."""
    if not settings.mask_ip:
        return _client(raw, None, None)
    return _client(raw, getattr(settings, "ipv4_prefix", 24), getattr(settings, "ipv6_prefix", 64))


# GL_AWL_UNIT: what a client counts toward and gains the auto-whitelist by.
ADDRESS, NETWORK = "address", "network"


def awl_client(raw, settings):
    """TCPREMOTEIP bytes -> the client field of its auto-whitelisting entry.

    GL_AWL_UNIT=address (the default): the sender's own identity, the exact
    IPv4 address or the IPv6 /64 (one host's, or one site's, privacy
    addresses), never wider than the triplet's client field; a bot in the
    same /24 as a good server gains nothing from the server's record.
    GL_AWL_UNIT=network: the triplet's client field (client()), as qgrey
    did before: the whole /24 (or /64) gains the auto-whitelist together.
    A host pool (Request.pool) replaces either; the caller passes it instead."""
    if getattr(settings, "awl_unit", ADDRESS) == NETWORK or not settings.mask_ip:
        return client(raw, settings)
    v6_bits = getattr(settings, "ipv6_prefix", 64)
    return _client(raw, None, v6_bits if v6_bits > 64 else 64)


def sender_field(sender, settings):
    if getattr(settings, "normalise_sender", False):
        sender = normalise_sender(sender)
    return address(sender)


def triplet(remote_ip, sender, recipient, settings, hashed=None, pool=None):
    """The key of a triplet, honouring GL_IGNORE_*, GL_MASK_IP and
    GL_NORMALISE_SENDER; hashed (see hasher) for GL_PRIVACY; pool (see
    qgrey.request.Request.pool) in place of the client's network."""
    fields = (
        IGNORED if settings.ignore_remoteip else pool or client(remote_ip, settings),
        IGNORED if settings.ignore_sender else sender_field(sender, settings),
        IGNORED if settings.ignore_recipient else address(recipient),
    )
    if hashed is not None:  # keeps '<>' and '*': kind() tells a bounce by them
        fields = map(hashed, fields)
    return " ".join(fields)


# Keys of the other kinds have two fields, "kind value", so they never
# collide with a triplet's three:
#   client 198.51.100.7             auto-whitelisting count of a client (awl_client:
#                                   its address, IPv6 /64 or pool; its network with
#                                   GL_AWL_UNIT=network, as every such entry was
#                                   before GL_AWL_UNIT: see the plugin's legacy read)
#   trap 198.51.100.0/24            a client's network caught by a greytrap
#   reply bob@remote>alice@local    bob may answer alice without delay
#   spf 198.51.100.0/24>example.com the client's network (client()) passed SPF
#   spf 198.51.100.7>example.com    for example.com in a way that pools it
#                                   (GL_SPF=1), or only its exact address when
#                                   the record does not cover the whole network
#                                   alike (spf_unit): the next new triplets of
#                                   any address of it are keyed spf:example.com
#                                   without asking DNS again (policy.SPF_CACHE)
#   name 192.0.2.10>mail.example.com  the client (its exact address) has this host
#                                   name, forward-confirmed by qgrey
#                                   (GL_HOST_NAMES=dns): read again without DNS
#                                   when TCPREMOTEHOST or the HELO name gives
#                                   it (policy.NAME_CACHE)
TRIPLET, BOUNCE, CLIENT, TRAP, REPLY, SPF, NAME = (
    "triplet", "bounce", "client", "trap", "reply", "spf", "name")


def kind(key):
    """The kind of a key: triplet, bounce (a triplet with the null sender),
    client, trap, reply, spf or name."""
    fields = key.split(" ")
    if len(fields) == 3:
        return BOUNCE if fields[1] == NULL_SENDER else TRIPLET
    return fields[0]


def client_key(client_field):
    return CLIENT + " " + client_field


def trap_key(client_field):
    return TRAP + " " + client_field


def reply_key(remote, local, settings, hashed=None):
    """remote may answer local without delay: raw addresses (bytes).
    '>' is always escaped within the address fields."""
    value = sender_field(remote, settings) + ">" + address(local)
    return REPLY + " " + (value if hashed is None else hashed(value))


_LDH = b"abcdefghijklmnopqrstuvwxyz0123456789-."


def host_name(raw):
    """bytes or str -> a plausible host name (lower case, no final dot, a
    dot inside, letters, digits, '-' and '.' only), or None."""
    if raw is None:
        return None
    if isinstance(raw, str):
        raw = raw.encode("ascii", "replace")
    name = raw.strip().lower()
    if name.endswith(b"."):
        name = name[:-1]
    if not name or len(name) > 253 or name.translate(None, _LDH) or b"." not in name \
            or b".." in name or name[:1] in b".-":
        return None
    return name.decode("ascii")


def spf_domain(sender, helo):
    """The domain SPF checks (GL_SPF=1): the envelope sender's, or the HELO
    name for the null sender (bytes) -> lower-case str, or None."""
    return host_name(sender.rpartition(b"@")[2] if sender else helo)


def spf_pool(domain):
    """The pool a pooling SPF pass keys the client by: 'spf:example.com'."""
    return "spf:" + domain


def spf_units(raw, settings):
    """TCPREMOTEIP bytes -> the client fields an SPF pass of the client may
    be recorded for: (its network, its exact address), or (its address,)
    where the two are the same (GL_MASK_IP=0)."""
    network, exact = client(raw, settings), _client(raw, None, None)
    return (network,) if network == exact else (network, exact)


def spf_unit(raw, settings, scope):
    """The client field a pooling SPF pass is recorded for: the client's
    network when the result holds for the whole of it (spf.Result.scope no
    longer than the network's prefix length), so that its other hosts are
    pooled without an evaluation; else the exact address, so that a
    neighbour the record does not name never inherits the pass."""
    units = spf_units(raw, settings)
    length = units[0].rpartition("/")[2]
    return units[0] if length.isdigit() and scope <= int(length) else units[-1]


def spf_key(unit, domain, hashed=None):
    """The SPF cache entry of a client unit (spf_unit) and a domain."""
    value = unit + ">" + escape(domain.encode("ascii", "replace"))
    return SPF + " " + (value if hashed is None else hashed(value))


def name_key(remote_ip, name, hashed=None):
    """The entry of a host name verified for the client's exact address
    (TCPREMOTEIP bytes; name: str, as keys.host_name gives it)."""
    value = _client(remote_ip, None, None) + ">" + escape(name.encode("ascii", "replace"))
    return NAME + " " + (value if hashed is None else hashed(value))


def wanted(request, greytrap):
    """The keys one RCPT reads (qgrey.request.Request; greytrap: its
    recipient is listed in GL_DIR/greytraps) -> ([triplet, client, trap,
    reply, legacy client], the triplet's kind), as policy.decide_request
    takes their entries; None where a key is not looked up.

    Uses request.settings, .hashed (may raise OSError: the salt), .pool and
    .list_files (the trap is read only while GL_DIR/greytraps exists)."""
    settings, hashed, pool = request.settings, request.hashed, request.pool
    remote_ip, sender = request.client_ip, request.sender
    key = triplet(remote_ip or b"", sender, request.recipient, settings, hashed, pool)
    network = awl = legacy = None
    if not settings.ignore_remoteip:
        network = pool or client(remote_ip, settings)  # traps hold the network
        awl = pool or awl_client(remote_ip, settings)  # GL_AWL_UNIT
        if awl != network:  # the network's entry of before GL_AWL_UNIT: read until it expires
            legacy = network
        if hashed is not None:
            network, awl, legacy = hashed(network), hashed(awl), legacy and hashed(legacy)
    reply = None
    if settings.reverse and sender:
        reply = reply_key(sender, request.recipient, settings, hashed)
    keys = [
        key,
        client_key(awl) if awl and settings.awl_count > 0 else None,
        trap_key(network) if network and settings.trap_time > 0
        and (greytrap or "greytraps" in request.list_files) else None,
        reply,
        client_key(legacy) if legacy and settings.awl_count > 0 else None,
    ]
    return keys, kind(key)


# Sender normalisation: one sender, one key, even when its address carries
# a per-message or per-recipient tag (as postgrey and sqlgrey do).

_HEX = frozenset(b"0123456789abcdef")
_DIGITS = frozenset(b"0123456789")


def _batv_tag(tag):
    """BATV prvs tag: one key digit, three day digits, six hex digits."""
    return len(tag) == 10 and tag[:4].isdigit() and all(b in _HEX for b in tag[4:])


def _unbatv(local):
    for prefix in (b"prvs=", b"msprvs1="):
        if local.startswith(prefix):
            rest = local[len(prefix):]
            first, sep, second = rest.partition(b"=")
            if not sep or not first or not second:
                return local
            # prvs=TAG=user is the standard; prvs=user=TAG an early draft.
            if _batv_tag(second) and not _batv_tag(first):
                return first
            return second
    if local.startswith(b"btv1=="):
        tag, sep, user = local[6:].partition(b"==")
        if sep and user:
            return user
    return local


def _unsrs(local):
    """SRS0=HHH=TT=domain=local and SRS1=HHH=fwd==HHH=TT=domain=local
    -> the original address, or None."""
    if len(local) < 6 or local[:3] != b"srs" or local[3:4] not in (b"0", b"1") \
            or local[4:5] not in (b"=", b"+", b"-"):
        return None
    body = local[5:]
    if local[3:4] == b"1":
        _, sep, body = body.partition(b"==")
        if not sep:
            return None
    fields = body.split(b"=", 3)
    if len(fields) != 4 or not fields[2] or not fields[3]:
        return None
    return fields[3] + b"@" + fields[2]


# A run of hex digits between delimiters is a machine-made id, and becomes
# '#', when it is at least TAG_HEX_MIN long, has a digit, and is not shaped
# like a name: letters then at most four digits ('becca1987', 'abbe2000').
# The shortest ids real senders put in the envelope sender are 8 hex digits
# (Mandrill's message ids, a UUID's first group); Mailchimp's are 10, Amazon
# SES's 16. Shorter runs are people as often as not: ada2, deb42, abba1 (and
# cafe, dead, face without a digit). A UUID (8-4-4-4-12 hex digits joined
# by '-', as in Amazon SES's bounce addresses) is an id as a whole, its
# 4-digit groups too. Digit runs of any length between delimiters are tags.
TAG_HEX_MIN = 8
_UUID = (8, 4, 4, 4, 12)


def _hex_id(token):
    if len(token) < TAG_HEX_MIN or token.strip(b"0123456789abcdef"):
        return False
    letters = token.rstrip(b"0123456789")
    digits = len(token) - len(letters)
    if letters.strip(b"abcdef"):  # a digit among the letters: machine-made
        return True
    # Letters, then digits: without a digit a word ('deadbeef'); a name
    # and at most four digits a person ('becca1987').
    return digits > 0 and not (len(letters) >= 2 and digits <= 4)


def _is_tag(token):
    return bool(token) and (token.isdigit() or _hex_id(token))


def _is_uuid(parts, i):
    """parts[i], parts[i+2], ... are the five groups of a UUID."""
    if i + 9 > len(parts):
        return False
    for n, size in enumerate(_UUID):
        group = parts[i + 2 * n]
        if len(group) != size or group.strip(b"0123456789abcdef"):
            return False
        if n and parts[i + 2 * n - 1] != b"-":
            return False
    return True


def _untag(local):
    """Digit runs, UUIDs and machine-made hex ids (see TAG_HEX_MIN) between
    delimiters -> '#'."""
    parts, token = [], bytearray()
    for b in local:  # tokens [0-9a-z]+ at even positions, delimiters between
        if 0x30 <= b <= 0x39 or 0x61 <= b <= 0x7A:
            token.append(b)
        else:
            parts.append(bytes(token))
            parts.append(bytes((b,)))
            token = bytearray()
    parts.append(bytes(token))
    i = 0
    while i < len(parts):
        if _is_uuid(parts, i):
            for n in range(5):
                parts[i + 2 * n] = b"#"
            i += 10
            continue
        if _is_tag(parts[i]):
            parts[i] = b"#"
        i += 2
    return b"".join(parts)


def normalise_sender(raw):
    """The envelope sender without per-message tags (bytes -> bytes):
    BATV (prvs=, msprvs1=, btv1==), SRS0/SRS1 (-> the original address),
    +extension, then digit runs, UUIDs and machine-made hex ids as '#' (_untag).
    The null sender and addresses without '@' are only lower-cased."""
    sender = raw.lower()
    local, at, domain = sender.rpartition(b"@")
    if not at or not local or local.startswith(b'"'):
        return sender
    original = _unsrs(local)
    if original is not None:
        local, _, domain = original.rpartition(b"@")
    local = _unbatv(local)
    base = local.partition(b"+")[0]
    if base:
        local = base
    return _untag(local) + b"@" + domain


# Privacy (GL_PRIVACY=1): every key field but '*' and '<>' is stored as a
# salted hash. hashlib is imported only then.

def hasher(salt):
    """-> function(field) -> 32 hex digits, keyed by the installation's salt."""
    import hashlib

    def hashed(field):
        if field in (IGNORED, NULL_SENDER):
            return field
        return hashlib.blake2b(field.encode(), digest_size=16, key=salt[:64]).hexdigest()
    return hashed
