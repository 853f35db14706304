"""One run of the plugin as qgrey sees it: the request, read once.

from_environ() is the one place that reads qmail-smtpd's environment; the
settings read their GL_* variables from it too, once, through
Request.settings. Every step after it takes the request, never the
environment: the lists (lists.check_lists), the keys (keys.wanted), the
host pool (pools), the store, the rules (policy), the DATA stage
(datastage) and the reply and log line (reply).

What the environment says is a plain attribute, read at once. What costs
something to learn is an attribute computed on its first use and then kept
(lazy): the settings, which list files exist and what they say, the key
hasher of GL_PRIVACY=1 (the salt), the host pool. A known sender pays only
for what its decision reads. The client's identity from DNS is learned
the same way (see Request: verified_host, helo_check, spf; qgrey.identity).

Only posix (built in) is imported here; each lazy fact imports the qgrey
module it needs when it is first used.
"""
import posix

# The list files an admin may put in GL_DIR (qgrey.lists: WHITELISTS and
# GREYTRAPS). A failed stat each is all a missing one costs: qgrey.lists
# is imported only when one of them exists.
LIST_FILES = ("whitelist-clients", "whitelist-recipients", "whitelist-senders", "greytraps")


class lazy:
    """A method -> an attribute computed on its first use, then kept in the
    instance (functools.cached_property, without importing functools). An
    exception is not kept: the next use computes again."""

    def __init__(self, compute):
        self.compute = compute
        self.name = compute.__name__
        self.__doc__ = compute.__doc__

    def __get__(self, request, owner=None):
        if request is None:
            return self
        value = self.compute(request)
        request.__dict__[self.name] = value
        return value


def exists(path):
    """Whether something is at path: a failed stat is all a missing file
    costs. A stat failing otherwise says yes (its reader says what is wrong)."""
    try:
        posix.stat(path)
        return True
    except FileNotFoundError:
        return False
    except OSError:
        return True


def _count(value):
    return int(value) if value is not None and value.isdigit() and len(value) < 10 else 0


class Request:
    """From the environment (bytes; None when the variable is not set):

      stage             "rcpt", or "data" for the [data] run (GL_STAGE=data)
      client_ip         TCPREMOTEIP
      client_host       TCPREMOTEHOST (tcpserver -h -p; not checked by qgrey)
      helo              SMTPHELOHOST
      sender            SMTPMAILFROM (b"": the null sender, or not set)
      recipient         SMTPRCPTTO (None: not set, as at [data])
      first_recipient   SMTPRCPTCOUNT is 0: no recipient of this message accepted yet
      rcpt_count_all    SMTPRCPTCOUNTALL as a number (0 when it is not one)
      relay             RELAYCLIENT is set
      authenticated     SMTPAUTHUSER is set and not empty
      outside_rcpthosts SMTPRCPTHOSTSOK is 0
      whitelisted       GL_WHITELISTED is set (tcprules)
      state             QGREY_DATA: the transaction's state at GL_STAGE=data
                        (b"": emptied by the [mail] entry; see datastage)
      problems          the warnings of this run, for the log

    Computed on first use (lazy): settings, directory, list_files, listed,
    hashed, pool; and the client's identity from DNS (qgrey.identity):
    resolver, verified_host (and verified_how), helo_check, spf.
    """

    def __init__(self, environ, stage, problems):
        self._environ = environ  # for settings.load only: the GL_* variables
        self.stage = stage
        self.problems = problems
        get = environ.get
        self.client_ip = get(b"TCPREMOTEIP")
        self.client_host = get(b"TCPREMOTEHOST")
        self.helo = get(b"SMTPHELOHOST")
        self.sender = get(b"SMTPMAILFROM", b"")
        self.recipient = get(b"SMTPRCPTTO")
        self.first_recipient = get(b"SMTPRCPTCOUNT", b"0") == b"0"
        self.rcpt_count_all = _count(get(b"SMTPRCPTCOUNTALL"))
        self.relay = b"RELAYCLIENT" in environ
        self.authenticated = bool(get(b"SMTPAUTHUSER"))
        self.outside_rcpthosts = get(b"SMTPRCPTHOSTSOK") == b"0"
        self.whitelisted = b"GL_WHITELISTED" in environ
        self.state = get(b"QGREY_DATA")

    @lazy
    def settings(self):
        """The settings (qgrey.settings.load), loaded once; their warnings
        join the run's."""
        from qgrey import settings
        loaded = settings.load(self._environ)
        self.problems.extend(loaded.problems)
        return loaded

    @lazy
    def directory(self):
        """GL_DIR from the environment alone, without loading the settings."""
        from qgrey.settings import directory
        return directory(self._environ)

    @lazy
    def list_files(self):
        """The names in LIST_FILES that exist in GL_DIR."""
        directory = self.settings.dir
        return frozenset(name for name in LIST_FILES if exists(directory + "/" + name))

    @lazy
    def listed(self):
        """(whitelist reason or None, whether the recipient is a greytrap):
        qgrey.lists.check_lists, when a list file exists."""
        if not self.list_files:
            return None, False
        from qgrey import lists
        return lists.check_lists(self)

    @lazy
    def hashed(self):
        """None, or the salted hash of GL_PRIVACY=1 (keys.hasher). Raises
        OSError (the salt file)."""
        if not self.settings.privacy:
            return None
        from qgrey import keys, salt
        return keys.hasher(salt.load(self.settings.dir))

    @lazy
    def pool(self):
        """The pool the client's keys use instead of its network, as far as
        it is known without DNS: the host pool (qgrey.pools) that
        TCPREMOTEHOST puts the client in with GL_HOST_POOLS=1 and
        GL_HOST_NAMES=tcpserver, or None. pools is imported only then.
        A pool learned from DNS (GL_HOST_NAMES=dns, GL_SPF=1) is set here
        by the plugin once it is learned (qgrey.identity)."""
        settings = self.settings
        if not self.client_host or not settings.host_pools or settings.ignore_remoteip \
                or settings.host_names != "tcpserver":
            return None
        from qgrey.pools import pool
        return pool(self.client_host, self.client_ip)

    # The client's identity learned from DNS (qgrey.identity): computed on
    # first use only, which the plugin makes only on a miss (a triplet not
    # known by its network key) and qgrey-admin for its answers.

    @lazy
    def resolver(self):
        """The qgrey.dns.Resolver of this decision: one deadline, one cache."""
        from qgrey import identity
        return identity.resolver(self.settings)

    @lazy
    def verified_host(self):
        """The client's host name, forward-confirmed, per GL_HOST_NAMES
        (lower case, no final dot), or None; verified_how says how
        ('tcpserver', 'dns') or why there is none."""
        from qgrey import identity
        name, how = identity.verified_host(self)
        self.verified_how = how
        return name

    @lazy
    def helo_check(self):
        """What the HELO name says of the client: (True, 'confirmed') when
        it vouches for it (qgrey.identity.helo_check), else (False, why)."""
        from qgrey import identity
        return identity.helo_check(self)

    @lazy
    def spf(self):
        """The SPF result (RFC 7208, a qgrey.spf.Result) of the sender (the
        HELO name for <>) for client_ip with GL_SPF=1, or None."""
        if not self.settings.spf:
            return None
        from qgrey import identity
        return identity.check_spf(self)


def from_environ(environ, stage="rcpt", problems=None):
    """The request of this run; environ is a bytes mapping (posix.environ)."""
    return Request(environ, stage, [] if problems is None else problems)
