"""The one table of settings: name, parser, default, meaning.

Values come from the environment (tcprules, the run script, cron) and from
the optional file GL_DIR/config of NAME=value lines; the environment wins.
A bad value is reported with its name and source, and its default is used.
GL_DIR is checked first (qgrey.store.check_directory): when another user
could have written config, it is not read, the values come from the
environment only, and Settings.directory_error says why.
Only posix (built in) and qgrey modules are imported: this module is on
the per-RCPT path.
"""
import posix

DEFAULT_DIR = "/var/qmail/qgrey"
CONFIG_NAME = "config"
# A config file is a few dozen lines; anything larger is not one.
CONFIG_LIMIT = 64 * 1024
MAX_DURATION = 10 * 365 * 86400
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration(text):
    """'300', '5m', '2d', '1.5s' -> seconds (float)."""
    number, unit = text, 1
    if text[-1:] in _UNITS:
        number, unit = text[:-1], _UNITS[text[-1]]
    if not number or not number.replace(".", "", 1).isdigit() or not number.isascii():
        raise ValueError("not a duration (a number of seconds, optionally with s, m, h or d)")
    value = float(number) * unit
    if value > MAX_DURATION:
        raise ValueError("longer than ten years")
    return value


def whole_duration(text):
    return int(duration(text))


def count(text):
    if not text.isdigit() or not text.isascii() or len(text) > 6:
        raise ValueError("not a whole number from 0 to 999999")
    return int(text)


def boolean(text):
    if text in ("1", "yes", "on", "true"):
        return True
    if text in ("0", "no", "off", "false"):
        return False
    raise ValueError("not 0 or 1")


def bounded(low, high):
    def parse(text):
        if not text.isdigit() or not text.isascii() or not low <= int(text) <= high:
            raise ValueError("not a whole number from %d to %d" % (low, high))
        return int(text)
    return parse


def choice(*allowed):
    def parse(text):
        if text not in allowed:
            raise ValueError("not one of " + ", ".join(allowed))
        return text
    return parse


def positive_duration(text):
    value = duration(text)
    if value <= 0:
        raise ValueError("must be more than 0")
    return value


def _ipv4(text):
    parts = text.split(".")
    return len(parts) == 4 and all(p.isdigit() and p.isascii() and len(p) <= 3
                                   and int(p) <= 255 for p in parts)


def _port(text):
    if not (text.isdigit() and text.isascii() and 0 < int(text) < 65536):
        raise ValueError("bad port %s" % sanitise(text))
    return int(text)


def _db(text):
    if not (text.isdigit() and text.isascii() and int(text) < 100000):
        raise ValueError("bad database number %s" % sanitise(text))
    return int(text)


def redis_servers(text):
    """'unix:/path[?db=N]', 'IPv4:port[/N]', '[IPv6]:port[/N]', comma-separated
    (tried in order) -> tuple of (family, address, db); family is 'unix',
    'inet' or 'inet6'. IP addresses only: a DNS lookup could not be bounded."""
    servers = []
    for item in text.split(","):
        item = item.strip()
        if item.startswith("unix:"):
            path, _, db = item[5:].partition("?db=")
            if not path.startswith("/") or len(path) > 100 or not path.isprintable():
                raise ValueError("unix: needs an absolute socket path (at most 100 characters)")
            servers.append(("unix", path, _db(db) if db else 0))
            continue
        address, _, db = item.partition("/")
        host, colon, port = address.rpartition(":")
        if not colon:
            raise ValueError("%s: want unix:/path, IPv4:port or [IPv6]:port" % sanitise(item))
        if host.startswith("[") and host.endswith("]"):
            from qgrey.keys import parse_ipv6
            if parse_ipv6(host[1:-1].encode()) is None:
                raise ValueError("%s is not an IPv6 address" % sanitise(host))
            family, host = "inet6", host[1:-1]
        elif _ipv4(host):
            family = "inet"
        else:
            raise ValueError("%s: an IP address, not a host name (a DNS lookup "
                             "could not be bounded in time)" % sanitise(host))
        servers.append((family, (host, _port(port)), _db(db) if db else 0))
    return tuple(servers)


def dns_servers(text):
    """'resolv.conf' or '' (() : the nameserver lines of /etc/resolv.conf)
    or a comma-separated list of IPv4, IPv4:port, IPv6 or [IPv6]:port ->
    tuple of (family, host, port), family 'inet' or 'inet6' (qgrey.dns
    takes them; it is not imported here, so that a decision that asks no
    DNS question loads no resolver). IP addresses only: a server given by
    name would need DNS to be found."""
    if text.strip() in ("", "resolv.conf"):
        return ()
    items = text.split(",")
    if len(items) > 8:
        raise ValueError("more than 8 servers")
    return tuple(dns_server(item) for item in items)


def dns_server(item):
    """One name server of GL_DNS (or of resolv.conf) -> (family, host, port)."""
    item = item.strip()
    shown = sanitise(item[:80])
    host, port = item, 53
    if item.startswith("["):
        host, sep, rest = item[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError("%s: want [IPv6]:port" % shown)
        if rest:
            port = _port(rest[1:])
    elif item.count(":") == 1:
        host, _, port = item.partition(":")
        port = _port(port)
    if _ipv4(host):
        return "inet", host, port
    from qgrey.keys import parse_ipv6
    # An IPv6 address may carry its zone (fe80::1%eth0), as resolv.conf allows.
    if ":" in host and parse_ipv6(host.partition("%")[0].encode("ascii", "replace")) is not None:
        return "inet6", host, port
    raise ValueError("%s: an IP address, not a host name (it would need DNS)" % shown)


def prefix(text):
    if len(text) > 64 or not all(" " < c <= "~" for c in text):
        raise ValueError("must be at most 64 printable ASCII characters without spaces")
    return text


def message(text):
    if not text or len(text) > 400 or not all(" " <= c <= "~" for c in text):
        raise ValueError("must be 1 to 400 printable ASCII characters")
    return text


# name, parser, default (as text, parsed like any other value), meaning
TABLE = (
    ("GL_DELAY", whole_duration, "300",
     "how long a new triplet is refused before its retry is accepted"),
    ("GL_RETRY_WINDOW", whole_duration, "2d",
     "a first retry later than this after the first attempt starts over"),
    ("GL_LIFETIME", whole_duration, "36d",
     "a triplet that passed is accepted without delay until this long after it was last seen"),
    ("GL_IGNORE_SENDER", boolean, "0", "1: leave the envelope sender out of the triplet"),
    ("GL_IGNORE_RECIPIENT", boolean, "0", "1: leave the recipient out of the triplet"),
    ("GL_IGNORE_REMOTEIP", boolean, "0", "1: leave the client address out of the triplet"),
    ("GL_MASK_IP", boolean, "1",
     "1: key clients by network (GL_IPV4_PREFIX, GL_IPV6_PREFIX); 0: by exact address"),
    ("GL_IPV4_PREFIX", bounded(8, 32), "24",
     "with GL_MASK_IP=1, the prefix length of an IPv4 client's network"),
    ("GL_IPV6_PREFIX", bounded(16, 128), "64",
     "with GL_MASK_IP=1, the prefix length of an IPv6 client's network"),
    ("GL_HOST_POOLS", boolean, "0",
     "1: key a client whose forward-confirmed host name (TCPREMOTEHOST, tcpserver -p) names "
     "a provider's sending pool by that pool instead of its network"),
    ("GL_LOCK_TIMEOUT", duration, "3",
     "longest wait for the database lock; then GL_ON_ERROR applies"),
    ("GL_ON_ERROR", choice("accept", "defer", "local"), "accept",
     "when the database cannot be used: accept (mail flows), defer (451), or local "
     "(GL_STORE=redis: decide on the host's own SQLite store in GL_DIR)"),
    ("GL_STORE", choice("sqlite", "dbm", "dbm.gnu", "dbm.ndbm", "dbm.sqlite3", "redis"), "sqlite",
     "database kind: sqlite, dbm (the first of dbm.gnu, dbm.ndbm, dbm.sqlite3 present), "
     "or redis (shared by several MX hosts)"),
    ("GL_REDIS", redis_servers, "127.0.0.1:6379",
     "GL_STORE=redis: the server, unix:/path[?db=N], IPv4:port[/N] or [IPv6]:port[/N]; "
     "several, comma-separated, are tried in order until one accepts writes"),
    ("GL_REDIS_PREFIX", prefix, "qgrey:",
     "GL_STORE=redis: prefix of every key qgrey writes"),
    ("GL_REDIS_TIMEOUT", positive_duration, "0.5",
     "GL_STORE=redis: longest time a decision spends on Redis (connect, replies, retries)"),
    ("GL_HOST_NAMES", choice("tcpserver", "dns"), "tcpserver",
     "where a client's verified host name comes from: tcpserver (TCPREMOTEHOST as it is, "
     "forward-confirmed by tcpserver -p) or dns (qgrey confirms the PTR name by its A/AAAA "
     "records itself)"),
    ("GL_GREYLIST", choice("all", "suspicious", "trial"), "all",
     "whom to greylist: all new triplets; suspicious clients only (no verified static host "
     "name nor confirmed HELO name, or an SPF fail); trial: as all, logging what "
     "suspicious would have done"),
    ("GL_SPF", boolean, "0",
     "1: a new triplet whose sender's domain passes SPF is keyed by spf:DOMAIN instead of "
     "the client's network, so a retry from any host the domain authorises matches"),
    ("GL_DNS", dns_servers, "resolv.conf",
     "name servers for SPF and host names, IPv4[:port] or [IPv6]:port, comma-separated, tried in turn; "
     "resolv.conf: the nameserver lines of /etc/resolv.conf"),
    ("GL_DNS_TIMEOUT", positive_duration, "2",
     "longest time one decision spends on DNS in all (every query, every server)"),
    ("GL_MESSAGE", message, "Greylisted, please try again later",
     "text of the 451 reply, after '451 4.7.1 '"),
    ("GL_NORMALISE_SENDER", boolean, "1",
     "1: key senders without per-message tags (BATV, SRS, +extension, digit and hex runs)"),
    ("GL_AWL_COUNT", count, "5",
     "deliveries (at most one an hour) after which a client passes without delay; 0: never"),
    ("GL_AWL_UNIT", choice("address", "network"), "address",
     "what counts toward and gains the auto-whitelist: address (the IPv4 address, the IPv6 /64, "
     "or the host pool) or network (the triplet's GL_IPV4_PREFIX/GL_IPV6_PREFIX network)"),
    ("GL_TRAP_TIME", whole_duration, "1d",
     "how long a client that mailed a greytrap is refused everything; 0: traps off"),
    ("GL_PUNISH_AFTER", count, "3",
     "refused retries of a triplet tolerated before early retries lengthen its delay"),
    ("GL_PUNISH_GAP", whole_duration, "60",
     "retries closer than this on average count as hammering"),
    ("GL_PUNISH_STEP", whole_duration, "5m",
     "delay added per early retry beyond GL_PUNISH_AFTER"),
    ("GL_PUNISH_MAX", whole_duration, "1h",
     "most delay added for early retries; 0: never punish"),
    ("GL_REVERSE", boolean, "1",
     "1: record recipients of relay clients and authenticated users; their replies pass"),
    ("GL_BOUNCE_LIFETIME", whole_duration, "1h",
     "a null-sender triplet that passed is accepted without delay this long, then greylisted again"),
    ("GL_LEARN", boolean, "0",
     "1: learning mode: record everything as if it had passed, refuse nothing"),
    ("GL_STAGE", choice("rcpt", "data"), "rcpt",
     "rcpt: refuse each new recipient at RCPT; data: record at RCPT, refuse the whole "
     "message once at DATA (list qgrey under [rcpt] and [data])"),
    ("GL_PRIVACY", boolean, "0",
     "1: store keys as salted hashes (salt in GL_DIR/salt) instead of addresses"),
)
NAMES = frozenset(row[0] for row in TABLE)


class Settings:
    """Parsed values as attributes: GL_DELAY -> .delay, and so on.

    directory_error: the DirectoryError of an unsafe GL_DIR (the values
    then come from the environment only; qgrey.store.open_store raises it
    as a StoreError); directory_checked: GL_DIR was found
    safe; owners: the uids a file in it may belong to (root, its owner)."""

    directory_error = None
    directory_checked = False
    owners = None

    def __init__(self, directory, values, problems):
        self.dir = directory
        self.problems = problems
        for name, value in values.items():
            setattr(self, name[3:].lower(), value)


def directory(environ):
    """GL_DIR, from the environment only (it says where the file is)."""
    value = environ.get(b"GL_DIR")
    return value.decode("utf-8", "surrogateescape") if value else DEFAULT_DIR


def read_file(path, owners=None):
    """-> ({name: (value, source)}, problems). A missing file is no problem.
    The file must be a regular file of at most CONFIG_LIMIT bytes; a link
    is followed only to a file that belongs to one of owners (None: any)."""
    try:  # a missing file costs no import
        posix.lstat(path)
    except FileNotFoundError:
        return {}, []
    except OSError:
        pass
    from qgrey import files
    try:
        data = files.read_regular(path, CONFIG_LIMIT, follow=True, owners=owners)
    except FileNotFoundError:
        return {}, []
    except OSError as err:
        return {}, ["cannot read %s: %s; using the defaults" % (path, files.describe(err))]
    found, problems = {}, []
    text = data.decode("utf-8", "replace")
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        where = "%s line %d" % (path, number)
        name, equals, value = line.partition("=")
        name = name.strip()
        if not equals:
            problems.append("%s: not NAME=value; ignored" % where)
        elif name not in NAMES:
            problems.append("%s: unknown setting %s; ignored" % (where, sanitise(name)))
        else:
            found[name] = (value.strip(), where)
    return found, problems


def sanitise(text):
    return "".join(c if " " < c <= "~" else "?" for c in text[:80])


def load(environ):
    """Settings from the environment (bytes mapping) over GL_DIR/config."""
    gl_dir = directory(environ)
    error, missing, owners = _check_directory(gl_dir)
    if error is None:
        found, problems = read_file(gl_dir + "/" + CONFIG_NAME, owners)
    else:  # nothing in an unsafe GL_DIR is read: the environment decides
        found, problems = {}, []
    values = {}
    for name, parse, default, _ in TABLE:
        raw = environ.get(name.encode())
        if raw is not None:
            text, source = raw.decode("utf-8", "replace").strip(), "environment"
        else:
            text, source = found.get(name, (default, None))
        try:
            values[name] = parse(text)
        except ValueError as err:
            problems.append("%s=%s from %s: %s; using %s" % (
                name, sanitise(text), source, err, default))
            values[name] = parse(default)
    if values["GL_RETRY_WINDOW"] <= values["GL_DELAY"]:
        values["GL_RETRY_WINDOW"] = max(whole_duration("2d"), values["GL_DELAY"] + 1)
        problems.append("GL_RETRY_WINDOW must be longer than GL_DELAY; using %s" % (
            "2d" if values["GL_RETRY_WINDOW"] == whole_duration("2d")
            else "%d" % values["GL_RETRY_WINDOW"]))
    settings = Settings(gl_dir, values, problems)
    if missing and values["GL_STORE"] == "redis":
        # The database is elsewhere and there is nothing to read: no config,
        # no lists, no redis-auth. (GL_ON_ERROR=local and GL_PRIVACY=1 still
        # need the directory, and fail when they use it.)
        error = None
    settings.directory_error = error
    settings.directory_checked = owners is not None
    settings.owners = owners
    return settings


def directory_problem(path, st):
    """Why the directory path (st: its stat) cannot be trusted with the files
    qgrey reads, as one line with the fix; None when it can: a directory,
    owned by root or this process's effective user, that no one else may
    write (whoever may write it may replace any file in it)."""
    if st.st_mode & 0o170000 != 0o040000:
        return "%s is not a directory" % path
    if st.st_mode & 0o022:
        return "%s is writable by %s; chmod go-w it" % (
            path, "others" if st.st_mode & 0o002 else "its group")
    euid = posix.geteuid()
    if st.st_uid not in (0, euid):
        return ("%s belongs to uid %d, not to root or uid %d (this process); chown it to "
                "the user qmail-smtpd runs as" % (path, st.st_uid, euid))
    return None


class DirectoryError(Exception):
    """GL_DIR cannot be trusted: reason and detail as a StoreError's (this
    module imports no store: the store imports it)."""

    reason = "directory"

    def __init__(self, detail):
        Exception.__init__(self, detail)
        self.detail = detail


def _check_directory(gl_dir):
    """-> (DirectoryError or None, whether GL_DIR is missing, (0, its owner) when
    safe); as qgrey.store.check_directory, without importing the store."""
    try:
        st = posix.stat(gl_dir)
    except OSError as err:
        problem, missing = "%s: %s" % (gl_dir, err.strerror), isinstance(err, FileNotFoundError)
    else:
        problem, missing = directory_problem(gl_dir, st), False
    if problem is None:
        return None, False, (0, st.st_uid)
    return DirectoryError("GL_DIR " + problem), missing, None
