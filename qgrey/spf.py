"""SPF, RFC 7208: check_host() over a resolver (qgrey.dns.Resolver, or any
object with its query(name, type) -> (status, records)).

check_host(ip, domain, sender, helo, resolver) -> Result(result, term,
domain, explanation, reason):
  result       pass, fail, softfail, neutral, none, temperror, permerror
  term         the mechanism that matched, as written in its record
               ('ip4:192.0.2.0/24', '-all'), 'redirect=...' is never one:
               a redirect's target decides; 'default' when no mechanism
               matched; None for none, temperror, permerror
  domain       the domain whose record decided (a pass through include:
               the included domain; through redirect=, its target)
  explanation  on fail, the expanded exp= text, or None
  reason       for none, temperror and permerror, why (one line)
  scope        the result holds for every address of the client's network
               of this prefix length (client/scope): the evaluation depends
               on the address only through the ip4, ip6, a and mx networks
               it was compared with (0: not at all; 32 or 128 when a
               ptr mechanism, %{p}, %{i} or %{c} made it the address's own)

Limits: 10 terms that query DNS (include, a, mx, ptr, exists, redirect),
2 lookups that find nothing, 10 MX names (more: permerror), the first 10
PTR names. A record with a syntax error anywhere is a permerror before
anything in it is evaluated. Only records of type TXT are read. An IPv4-
mapped IPv6 client (::ffff:192.0.2.1) is the IPv4 client it maps.
The null sender is checked as postmaster@HELO (pass domain=helo).

Imports only qgrey.dns (posix, time, _socket) and time: the plugin imports
this on its per-RCPT path.
"""
import time

from qgrey import dns

PASS, FAIL, SOFTFAIL, NEUTRAL = "pass", "fail", "softfail", "neutral"
NONE, TEMPERROR, PERMERROR = "none", "temperror", "permerror"
QUALIFIERS = {"+": PASS, "-": FAIL, "~": SOFTFAIL, "?": NEUTRAL}
MAX_LOOKUPS, MAX_VOID, MAX_MX, MAX_PTR = 10, 2, 10, 10
MAX_RECORD = 4096  # a TXT record longer than this is not read as SPF
_ALNUM = "abcdefghijklmnopqrstuvwxyz0123456789"
_NAME_CHARS = set(_ALNUM + "ABCDEFGHIJKLMNOPQRSTUVWXYZ-_.")
_DELIMITERS = ".-+,/_="
_UNRESERVED = set(_ALNUM + "ABCDEFGHIJKLMNOPQRSTUVWXYZ-._~")


class Result(tuple):
    __slots__ = ()
    result = property(lambda self: self[0])
    term = property(lambda self: self[1])
    domain = property(lambda self: self[2])
    explanation = property(lambda self: self[3])
    reason = property(lambda self: self[4])
    scope = property(lambda self: self[5])

    def __new__(cls, result, term=None, domain=None, explanation=None, reason=None, scope=None):
        return tuple.__new__(cls, (result, term, domain, explanation, reason, scope))


class PermError(Exception):
    pass


class TempError(Exception):
    pass


def parse_ip(text):
    """'192.0.2.1' -> (4, int); '2001:db8::1' -> (6, int); None if neither.
    An IPv4-mapped IPv6 address gives the IPv4 address."""
    for family, version, bits in ((dns._socket.AF_INET, 4, 32), (dns._socket.AF_INET6, 6, 128)):
        try:
            value = int.from_bytes(dns._socket.inet_pton(family, text), "big")
        except (OSError, ValueError):
            continue
        if version == 6 and value >> 32 == 0xFFFF:
            return 4, value & 0xFFFFFFFF
        return version, value
    return None


def _valid_domain(domain):
    """An identity check_host can evaluate: labels of 1 to 63 bytes, at least two."""
    labels = domain.rstrip(".").split(".") if domain else []
    return (len(labels) >= 2 and all(0 < len(label) <= 63 for label in labels)
            and domain.isascii() and len(domain.rstrip(".")) <= 253
            and not domain.startswith("["))


def _toplabel(label):
    if not label or not all(c in _ALNUM or c == "-" for c in label.lower()):
        return False
    if "-" in label:
        return label[0] != "-" and label[-1] != "-"
    return not label.isdigit()


def _cidr(text, most):
    if not text.isdigit() or not text.isascii() or (len(text) > 1 and text[0] == "0"):
        raise PermError("bad CIDR length /%s" % text)
    value = int(text)
    if value > most:
        raise PermError("CIDR length /%s beyond /%d" % (text, most))
    return value


def parse_macro_string(text, exp=False):
    """Checks a macro-string; -> list of parts: str (literal) or
    (letter, digits, reverse, delimiters). PermError on a syntax error."""
    parts, i, n = [], 0, len(text)
    letters = "slodiphvcrt" if exp else "slodiphv"
    while i < n:
        c = text[i]
        if c != "%":
            if not (" " <= c <= "~") or (c == " " and not exp):
                raise PermError("bad character in %r" % text)
            parts.append(c)
            i += 1
            continue
        nxt = text[i + 1:i + 2]
        if nxt == "%":
            parts.append("%")
        elif nxt == "_":
            parts.append(" ")
        elif nxt == "-":
            parts.append("%20")
        elif nxt == "{":
            end = text.find("}", i + 2)
            if end < 0:
                raise PermError("unterminated macro in %r" % text)
            body = text[i + 2:end]
            if not body or body[0].lower() not in letters:
                raise PermError("bad macro letter in %r" % text)
            j = 1
            while j < len(body) and body[j].isdigit():
                j += 1
            digits = body[1:j]
            if digits and (not digits.isascii() or int(digits) == 0):
                raise PermError("bad macro transformer in %r" % text)
            reverse = body[j:j + 1].lower() == "r"
            if reverse:
                j += 1
            delimiters = body[j:]
            if any(d not in _DELIMITERS for d in delimiters):
                raise PermError("bad macro delimiter in %r" % text)
            parts.append((body[0], int(digits) if digits else None, reverse, delimiters or "."))
            i = end + 1
            continue
        else:
            raise PermError("bad %% in %r" % text)
        i += 2
    return parts


def parse_domain_spec(text):
    parts = parse_macro_string(text)
    if not parts:
        raise PermError("empty domain-spec")
    if not isinstance(parts[-1], tuple):
        # domain-end: "." toplabel ["."], unless it ends with a macro
        literal = text[:-1] if text.endswith(".") else text
        head, dot, top = literal.rpartition(".")
        if not dot or not _toplabel(top) or "%" in top:
            raise PermError("domain-spec %r does not end in a top label" % text)
    return parts


def parse_record(record):
    """-> (mechanisms, redirect, exp); mechanisms are (qualifier, name, arg,
    cidr4, cidr6, text). PermError on any syntax error."""
    mechanisms, modifiers = [], {}
    if not all(" " <= c <= "~" for c in record):
        raise PermError("a character other than printable ASCII or space in the record")
    for term in record.split(" ")[1:]:
        if not term:
            continue
        name_end = 0
        while name_end < len(term) and term[name_end] in _NAME_CHARS:
            name_end += 1
        if term[name_end:name_end + 1] == "=" and term[0].isalpha():
            name, value = term[:name_end].lower(), term[name_end + 1:]
            if name in ("redirect", "exp"):
                if name in modifiers:
                    raise PermError("%s= twice" % name)
                modifiers[name] = parse_domain_spec(value)
            else:
                parse_macro_string(value)  # unknown modifiers: ignored, but checked
            continue
        qualifier = QUALIFIERS.get(term[0])
        body = term[1:] if qualifier else term
        qualifier = qualifier or PASS
        name = body
        for stop in (":", "/"):
            name = name.partition(stop)[0]
        rest = body[len(name):]
        name = name.lower()
        arg, cidr4, cidr6 = None, None, None
        if name in ("a", "mx"):
            if "//" in rest:
                rest, _, six = rest.rpartition("//")
                cidr6 = _cidr(six, 128)
            head, slash, four = rest.rpartition("/")
            if slash and four.isdigit():
                rest, cidr4 = head, _cidr(four, 32)
            elif slash and not rest.startswith(":"):
                raise PermError("bad term %r" % term)
            if rest:
                if not rest.startswith(":"):
                    raise PermError("bad term %r" % term)
                arg = parse_domain_spec(rest[1:])
        elif name in ("include", "exists", "ptr"):
            if rest and not rest.startswith(":") or (not rest and name != "ptr"):
                raise PermError("bad term %r" % term)
            arg = parse_domain_spec(rest[1:]) if rest else None
        elif name == "ip4":
            net, slash, length = rest[1:].partition("/")
            if not rest.startswith(":"):
                raise PermError("bad term %r" % term)
            ip = parse_ip(net) if "." in net and ":" not in net else None
            if ip is None:
                raise PermError("bad ip4 network in %r" % term)
            arg, cidr4 = ip[1], _cidr(length, 32) if slash else 32
        elif name == "ip6":
            if not rest.startswith(":"):
                raise PermError("bad term %r" % term)
            net, slash, length = rest[1:].partition("/")
            try:
                value = int.from_bytes(dns._socket.inet_pton(dns._socket.AF_INET6, net), "big")
            except (OSError, ValueError):
                raise PermError("bad ip6 network in %r" % term) from None
            arg, cidr6 = value, _cidr(length, 128) if slash else 128
        elif name == "all":
            if rest:
                raise PermError("bad term %r" % term)
        else:
            raise PermError("unknown mechanism %r" % term)
        mechanisms.append((qualifier, name, arg, cidr4, cidr6, term))
    return mechanisms, modifiers.get("redirect"), modifiers.get("exp")


class Checker:
    def __init__(self, ip, sender, helo, resolver, receiver="unknown"):
        self.version, self.ip = ip
        self.sender, self.helo, self.resolver = sender, helo, resolver
        self.local, _, self.sender_domain = sender.rpartition("@")
        self.receiver = receiver
        self.lookups = self.voids = 0
        self._ptr = None
        self.included = None
        self.bits = 32 if self.version == 4 else 128
        self.scope = 0

    def in_net(self, net, length):
        """Whether the client is in net/length. scope notes what the answer
        says of its neighbours: every address of client/scope is inside
        too when the client is, and outside when it is not."""
        shift = self.bits - length
        inside = self.ip >> shift == net >> shift
        need = length if inside else self.bits - (self.ip ^ net).bit_length() + 1
        self.scope = max(self.scope, need)
        return inside

    # DNS
    def lookup(self, name, qtype, void=True):
        labels = name.rstrip(".").split(".")
        if all(0 < len(label) <= 63 for label in labels):
            status, records = self.resolver.query(name, qtype)
        else:  # no DNS name (empty or long label): a name that does not exist
            status, records = dns.NXDOMAIN, []
        if status in (dns.ERROR, dns.TIMEOUT):
            raise TempError("DNS %s for %s %s: %s" % (status, name, qtype, records))
        if not records and void:
            self.voids += 1
            if self.voids > MAX_VOID:
                raise PermError("more than %d void lookups" % MAX_VOID)
        return records

    def count(self):
        self.lookups += 1
        if self.lookups > MAX_LOOKUPS:
            raise PermError("more than %d DNS lookups" % MAX_LOOKUPS)

    def addresses(self, name, version=None):
        version = version or self.version
        records = self.lookup(name, "A" if version == 4 else "AAAA")
        return [parse_ip(r)[1] for r in records if parse_ip(r) and parse_ip(r)[0] == version]

    def ptr_names(self):
        """The validated names of the client (at most 10 asked)."""
        self.scope = self.bits  # names are the address's own
        if self._ptr is None:
            self._ptr = []
            try:
                names = self.lookup(self.reverse_name(), "PTR")[:MAX_PTR]
                for name in names:
                    try:
                        if self.ip in self.addresses(name):
                            self._ptr.append(name)
                    except TempError:
                        pass
            except TempError:
                pass
        return self._ptr

    def reverse_name(self):
        return self.macro_i(True) + (".in-addr.arpa" if self.version == 4 else ".ip6.arpa")

    def macro_i(self, reverse=False):
        if self.version == 4:
            parts = [str(self.ip >> s & 255) for s in (24, 16, 8, 0)]
        else:
            # upper-case hex digits, as the RFC 7208 suite expects of %{ir}
            parts = ["%X" % (self.ip >> s & 15) for s in range(124, -4, -4)]
        return ".".join(parts[::-1] if reverse else parts)

    # macros
    def expand(self, parts, domain, exp=False):
        out = []
        for part in parts:
            if isinstance(part, str):
                out.append(part)
                continue
            letter, digits, reverse, delimiters = part
            value = self.macro_value(letter.lower(), domain)
            for d in delimiters[1:]:
                value = value.replace(d, delimiters[0])
            fields = value.split(delimiters[0]) if delimiters[0] else [value]
            if reverse:
                fields.reverse()
            if digits is not None:
                fields = fields[-digits:]
            value = ".".join(fields)
            if letter.isupper():
                value = "".join(c if c in _UNRESERVED else "".join(
                    "%%%02X" % b for b in c.encode("utf-8")) for c in value)
            out.append(value)
        return "".join(out)

    def macro_value(self, letter, domain):
        if letter == "s":
            return self.sender
        if letter == "l":
            return self.local
        if letter == "o":
            return self.sender_domain
        if letter == "d":
            return domain
        if letter == "i":
            self.scope = self.bits
            return self.macro_i()
        if letter == "v":
            return "in-addr" if self.version == 4 else "ip6"
        if letter == "h":
            return self.helo
        if letter == "p":
            names, domain = self.ptr_names(), domain.lower()
            for name in names:
                if name == domain or name.endswith("." + domain):
                    return name
            return names[0] if names else "unknown"
        if letter == "c":
            self.scope = self.bits
            family = dns._socket.AF_INET if self.version == 4 else dns._socket.AF_INET6
            return dns._socket.inet_ntop(family, self.ip.to_bytes(
                4 if self.version == 4 else 16, "big"))
        if letter == "r":
            return self.receiver
        if letter == "t":
            return str(int(time.time()))
        raise PermError("macro %s" % letter)

    def target(self, parts, domain):
        if parts is None:
            return domain
        name = self.expand(parts, domain)
        while len(name) > 253 and "." in name:
            name = name.partition(".")[2]
        return name

    # evaluation
    def record(self, domain):
        try:
            records = self.lookup(domain, "TXT", void=False)
        except TempError as err:
            raise TempError(str(err)) from None
        spf = [r for r in records if r[:6].lower() == "v=spf1" and r[6:7] in ("", " ")]
        if not spf:
            return None
        if len(spf) > 1:
            raise PermError("%d SPF records for %s" % (len(spf), domain))
        record = spf[0]
        if not record.isascii() or len(record) > MAX_RECORD:
            raise PermError("record of %s is not ASCII or too long" % domain)
        return record

    def check(self, domain):
        """-> Result; raises TempError, PermError."""
        record = self.record(domain)
        if record is None:
            return Result(NONE, domain=domain, reason="no SPF record for %s" % domain)
        mechanisms, redirect, exp = parse_record(record)
        for qualifier, name, arg, cidr4, cidr6, term in mechanisms:
            if self.match(name, arg, cidr4, cidr6, domain):
                explanation = None
                if qualifier == FAIL and exp is not None:
                    explanation = self.explain(exp, domain)
                decider = (term, domain)
                if name == "include":  # the included record's term decided
                    decider = self.included
                return Result(qualifier, decider[0], decider[1], explanation)
        if redirect is not None:
            self.count()
            target = self.target(redirect, domain)
            if not _valid_domain(target):
                raise PermError("redirect to %r" % target)
            result = self.check(target)
            if result.result == NONE:
                raise PermError("redirect to %s, which has no SPF record" % target)
            return result
        return Result(NEUTRAL, "default", domain)

    def match(self, name, arg, cidr4, cidr6, domain):
        if name == "all":
            return True
        if name == "ip4":
            return self.version == 4 and self.in_net(arg, cidr4)
        if name == "ip6":
            return self.version == 6 and self.in_net(arg, cidr6)
        self.count()
        target = self.target(arg, domain)
        if name == "include":
            result = self.check(target)
            if result.result == PASS:
                self.included = (result.term, result.domain)
                return True
            if result.result == NONE:
                raise PermError("include:%s has no SPF record" % target)
            return False
        length = cidr4 if self.version == 4 else cidr6
        if length is None:
            length = 32 if self.version == 4 else 128
        if name == "a":
            return any(self.in_net(a, length) for a in self.addresses(target))
        if name == "mx":
            exchanges = self.lookup(target, "MX")
            if len(exchanges) > MAX_MX:
                raise PermError("more than %d MX names for %s" % (MAX_MX, target))
            for _, exchange in sorted(exchanges):
                if exchange and any(self.in_net(a, length) for a in self.addresses(exchange)):
                    return True
            return False
        if name == "ptr":
            target = target.lower()
            return any(n == target or n.endswith("." + target) for n in self.ptr_names())
        if name == "exists":
            return bool(self.lookup(target, "A"))
        raise PermError("mechanism %s" % name)

    def explain(self, exp, domain):
        """The explanation text, or None when there is none to give."""
        try:
            target = self.target(exp, domain)
            status, records = self.resolver.query(target, "TXT")
            if status != dns.OK or len(records) != 1 or not records[0].isascii():
                return None
            return self.expand(parse_macro_string(records[0], exp=True), domain, exp=True)
        except (PermError, TempError, ValueError):
            return None


def check_host(ip, domain, sender, helo, resolver, receiver="unknown"):
    """SPF for the client ip (text) sending as sender (empty: the null
    sender, checked as postmaster@helo) from domain (None: the sender's
    domain, or helo for the null sender). -> Result."""
    if domain is None:
        domain = sender.rpartition("@")[2] if sender else helo
    if not sender:
        sender, domain = "postmaster@" + helo, helo
    elif "@" not in sender:
        sender = "postmaster@" + sender
    elif sender.startswith("@"):
        sender = "postmaster" + sender
    parsed = parse_ip(ip)
    if parsed is None:
        return Result(PERMERROR, reason="client address %r" % ip)
    domain = domain.rstrip(".").lower() if domain else ""
    if not _valid_domain(domain):
        return Result(NONE, domain=domain, reason="not a domain name: %r" % domain)
    checker = Checker(parsed, sender, helo, resolver, receiver)
    try:
        result = Result(*checker.check(domain)[:5], scope=checker.scope)
    except TempError as err:
        return Result(TEMPERROR, domain=domain, reason=str(err))
    except PermError as err:
        return Result(PERMERROR, domain=domain, reason=str(err))
    except dns.BadName as err:
        return Result(TEMPERROR, domain=domain, reason=str(err))
    return result
