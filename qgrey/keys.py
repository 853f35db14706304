"""Building the key of a triplet: address normalisation and IP masking.

A key is three fields separated by single spaces: client, sender,
recipient. Every field is printable ASCII without spaces, so keys are safe
in logs, dumps and SMTP replies alike:
- bytes outside '!'..'~' and the bytes % < > * are written as %XX;
- the null sender is '<>'; a part left out by a GL_IGNORE_* setting is '*';
- addresses are lower-cased (compared case-insensitively) and cut after
  MAX_ADDRESS bytes;
- a client is 'a.b.c.0/24' or '2001:db8:1:2::/64' when masked, the exact
  address otherwise; IPv4-mapped IPv6 counts as IPv4; a value that is not an
  IP address is kept, escaped, as it is ('-' when empty).
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


def client(raw, mask):
    """TCPREMOTEIP bytes -> client field of the key."""
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
            if mask:
                return format_ipv6(v6 >> 64 << 64) + "/64"
            return format_ipv6(v6)
    if v4 is None:
        return escape(raw[:64].lower())
    if mask:
        return format_ipv4(v4 & 0xFFFFFF00) + "/24"
    return format_ipv4(v4)


def triplet(remote_ip, sender, recipient, settings):
    """The key of a triplet, honouring GL_IGNORE_* and GL_MASK_IP."""
    return " ".join((
        IGNORED if settings.ignore_remoteip else client(remote_ip, settings.mask_ip),
        IGNORED if settings.ignore_sender else address(sender),
        IGNORED if settings.ignore_recipient else address(recipient),
    ))
