"""The per-RCPT program that qmail-smtpd runs through qmail-spp.

environment -> request -> key -> store (read) -> policy -> store (write)
-> one reply on stdout and one log line on stderr.

Replies (qmail-spp reads stdout; each line must end in exactly "\\n"):
  greylisted          E451 4.7.1 <GL_MESSAGE>
  accepted            HX-Greylist: ...   (first accepted recipient of a message)
                      nothing            (later recipients)
  not ours to decide  nothing            (relay clients, GL_WHITELISTED, whitelists, ...)
  database unusable   nothing, or E451 4.3.0 ... when GL_ON_ERROR=defer
Never A (switches plugins off), never O (relays), never an exit status of
120 or a death by signal (both make qmail-smtpd answer a second time).

GL_STAGE=data: at RCPT each recipient is decided and recorded as above, but
never refused for greylisting; what the message needs is passed to the
[data] run in the variable QGREY_DATA (S), which refuses the whole message
once (E451) or accepts it with one header (H) and clears the variable (U).
The [mail] entry (":echo SQGREY_DATA=", no Python) empties it at every MAIL.
See data_at_rcpt() and decide_data().

Only posix, time and the qgrey modules a decision needs are imported here.
"""
import posix
import time

PROGRAM = "qgrey"
# At most this many warning lines a run (the last may count the rest).
MAX_WARNINGS = 5
DEFER_ON_ERROR = b"E451 4.3.0 Greylisting is temporarily unavailable, please try again later\n"
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun",
           "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def rfc5322_date(now):
    t = time.gmtime(now)
    return "%s, %02d %s %d %02d:%02d:%02d +0000" % (
        _DAYS[t.tm_wday], t.tm_mday, _MONTHS[t.tm_mon - 1], t.tm_year,
        t.tm_hour, t.tm_min, t.tm_sec)


_PASSED = {
    "known": "passed (known sender)",
    "auto-whitelist": "passed (auto-whitelisted client)",
    "reply": "passed (reply to a local sender)",
    "learning": "passed (learning mode)",
}


def header(reason, waited, now):
    from qgrey import VERSION
    if reason == "delayed":
        what = "delayed %d seconds" % waited
    else:
        what = _PASSED.get(reason, "passed")
    return ("HX-Greylist: %s by qgrey-%s; %s\n" % (what, VERSION, rfc5322_date(now))).encode()


class Decision:
    """What to answer and what to log. stage: GL_STAGE, once settings are read."""

    def __init__(self, action, reason, reply=b"", waited=None, detail=None):
        self.action, self.reason, self.reply = action, reason, reply
        self.waited, self.detail = waited, detail
        self.stage = None
        self.pool = None


def skip(reason, detail=None):
    return Decision("skip", reason, detail=detail)


def on_error(err, settings):
    defer = settings is not None and settings.on_error == "defer"
    return Decision("error", err.reason, DEFER_ON_ERROR if defer else b"",
                    detail="%s; answered %s" % (err.detail, "defer" if defer else "accept"))


# The list files in GL_DIR, in the order they are consulted (see lists.py).
WHITELISTS = (
    ("whitelist-clients", "whitelist-client"),
    ("whitelist-recipients", "whitelist-recipient"),
    ("whitelist-senders", "whitelist-sender"),
)
GREYTRAPS = "greytraps"


def _present(directory, name):
    """A failed stat is all a missing list costs: lists.py is not imported."""
    try:
        posix.stat(directory + "/" + name)
        return True
    except FileNotFoundError:
        return False
    except OSError:
        return True  # let lists.load say what is wrong


def _load_list(directory, name, owners, problems):
    from qgrey import files, lists
    try:
        listed = lists.load(directory, name, owners)
    except OSError as err:
        problems.append("cannot read %s/%s: %s; list ignored" % (directory, name, files.describe(err)))
        return None
    if listed is not None:
        problems.extend(listed.warnings)
    return listed


def check_lists(environ, settings, problems):
    """-> (whitelist reason or None, whether the recipient is a greytrap)."""
    directory = settings.dir
    for name, reason in WHITELISTS:
        if not _present(directory, name):
            continue
        listed = _load_list(directory, name, settings.owners, problems)
        if listed is None:
            continue
        from qgrey import lists
        if name == "whitelist-clients":
            hit = lists.client_listed(listed, environ.get(b"TCPREMOTEIP"),
                                      environ.get(b"TCPREMOTEHOST"))
        elif name == "whitelist-recipients":
            hit = lists.address_listed(listed, environ[b"SMTPRCPTTO"].lower())
        else:
            sender = environ.get(b"SMTPMAILFROM", b"").lower()
            hit = bool(sender) and lists.address_listed(listed, sender)
            if not hit and sender and settings.normalise_sender:
                from qgrey.keys import normalise_sender
                hit = lists.address_listed(listed, normalise_sender(sender))
        if hit:
            return reason, False
    if settings.trap_time <= 0 or not _present(directory, GREYTRAPS):
        return None, False
    listed = _load_list(directory, GREYTRAPS, settings.owners, problems)
    if listed is None:
        return None, False
    from qgrey import lists
    return None, lists.address_listed(listed, environ[b"SMTPRCPTTO"].lower())


def key_hasher(settings):
    """None, or the salted hash of GL_PRIVACY=1. Raises OSError (salt file)."""
    if not settings.privacy:
        return None
    from qgrey import keys, salt
    return keys.hasher(salt.load(settings.dir))


def outbound(environ, now, problems, reason):
    """A relay client or authenticated user: not greylisted; with GL_REVERSE
    the pair is recorded so that the remote address's reply passes."""
    sender = environ.get(b"SMTPMAILFROM", b"")
    recipient = environ.get(b"SMTPRCPTTO")
    if not sender or not recipient:
        return skip(reason)
    from qgrey import settings as settings_module
    settings = settings_module.load(environ)
    problems.extend(settings.problems)
    if not settings.reverse:
        return skip(reason)
    if settings.directory_error is not None:  # not even the salt is read
        return skip(reason, "reply not recorded: " + settings.directory_error.detail)
    from qgrey import keys, policy
    from qgrey.store import StoreError, open_store
    store = None
    try:
        hashed = key_hasher(settings)
        key = keys.reply_key(recipient, sender, settings, hashed)
        store = open_store(settings, fallback=True)
        store.change_many([key], lambda entries, now: (None, [policy.record_reply(entries[0], now, settings)]), now)
    except StoreError as err:
        return skip(reason, "reply not recorded: " + err.detail)
    except OSError as err:
        return skip(reason, "reply not recorded: salt: %s" % err.strerror)
    finally:
        if store is not None:
            store.close()
    return skip(reason)


def decide(environ, now, problems):
    """The whole decision for one RCPT; environ is a bytes mapping."""
    if b"GL_WHITELISTED" in environ:
        return skip("whitelisted")
    if b"RELAYCLIENT" in environ:
        return outbound(environ, now, problems, "relayclient")
    if environ.get(b"SMTPAUTHUSER"):
        return outbound(environ, now, problems, "authenticated")
    if environ.get(b"SMTPRCPTHOSTSOK") == b"0":
        return skip("rcpthosts")
    if b"SMTPRCPTTO" not in environ:
        return skip("no-recipient", "SMTPRCPTTO is not set: list qgrey under [rcpt] in control/smtpplugins")

    from qgrey import settings as settings_module
    settings = settings_module.load(environ)
    problems.extend(settings.problems)
    if settings.directory_error is not None:
        # Another user could have written the lists, config or salt: nothing
        # in GL_DIR is read, and GL_ON_ERROR (from the environment) answers.
        return on_error(settings.directory_error, settings)
    remote_ip = environ.get(b"TCPREMOTEIP")
    if remote_ip is None and not settings.ignore_remoteip:
        return skip("no-remoteip", "TCPREMOTEIP is not set: run qmail-smtpd under tcpserver")
    whitelisted, greytrap = check_lists(environ, settings, problems)
    if whitelisted:
        return skip(whitelisted)

    from qgrey import keys, policy
    from qgrey.store import StoreError, open_store
    try:
        hashed = key_hasher(settings)
    except OSError as err:
        return on_error(StoreError("io", "salt: %s" % err.strerror), settings)
    sender = environ.get(b"SMTPMAILFROM", b"")
    recipient = environ[b"SMTPRCPTTO"]
    pool = keys.host_pool(environ.get(b"TCPREMOTEHOST"), remote_ip, settings)
    triplet = keys.triplet(remote_ip or b"", sender, recipient, settings, hashed, pool)
    client = awl = legacy = None
    if not settings.ignore_remoteip:
        client = pool or keys.client(remote_ip, settings)  # traps hold the network
        awl = pool or keys.awl_client(remote_ip, settings)  # GL_AWL_UNIT
        if awl != client:  # the network's entry of before GL_AWL_UNIT: read until it expires
            legacy = client
        if hashed is not None:
            client, awl, legacy = hashed(client), hashed(awl), legacy and hashed(legacy)
    reply = None
    if settings.reverse and sender:
        reply = keys.reply_key(sender, recipient, settings, hashed)
    wanted = [
        triplet,
        keys.client_key(awl) if awl and settings.awl_count > 0 else None,
        keys.trap_key(client) if client and settings.trap_time > 0
        and (greytrap or _present(settings.dir, GREYTRAPS)) else None,
        reply,
        keys.client_key(legacy) if legacy and settings.awl_count > 0 else None,
    ]
    kind = keys.kind(triplet)

    def change(entries, now):
        action, reason, new, waited, note = policy.decide_request(
            entries, now, settings, kind, greytrap)
        return (action, reason, waited, note), new

    store = None
    try:
        store = open_store(settings, fallback=True)
        action, reason, waited, note = store.change_many(wanted, change, now)
    except StoreError as err:
        return on_error(err, settings)
    finally:
        if store is not None:
            store.close()
    if store.degraded:
        note = "; ".join(filter(None, (note, store.degraded)))
    if action == policy.GREYLIST:
        decision = Decision(action, reason, b"E451 4.7.1 %s\n" % settings.message.encode(),
                            waited, note)
    else:
        first_recipient = environ.get(b"SMTPRCPTCOUNT", b"0") == b"0"
        decision = Decision(action, reason, header(reason, waited, now) if first_recipient else b"",
                            waited, note)
    decision.stage = settings.stage
    decision.pool = pool
    return decision


# GL_STAGE=data: the state of the current transaction, passed from RCPT to
# DATA in qmail-smtpd's environment. qmail-spp keeps such variables for the
# whole connection (RSET, HELO and a new MAIL do not clear them), so the
# state must be tied to its transaction:
# - The [mail] entry, the line ":echo SQGREY_DATA=" listed last under [mail],
#   empties QGREY_DATA at every MAIL that qmail-smtpd accepts. A state built
#   on that (its mark is OPENED) belongs to the transaction until the next
#   such MAIL, whatever the counts say: a MAIL refused by a [mail] plugin
#   leaves the open transaction going, with SMTPRCPTCOUNTALL counting from 0
#   again and SMTPMAILFROM set to the refused address.
# - Without it (qgrey listed under [rcpt] and [data] only), the state names
#   its transaction by the RCPT count it was written at (a new transaction
#   counts again) and a mark of the envelope sender. That fails when the
#   first RCPT of the next transaction never reaches qgrey, so qgrey warns.
STATE = b"QGREY_DATA"
UNSET = b"U" + STATE + b"\n"
OPENED = "mail"  # the mark of a state in a transaction the [mail] entry opened
NO_MAIL_ENTRY = ("GL_STAGE=data without the [mail] entry: list the line ':echo SQGREY_DATA=' "
                 "last under [mail] in control/smtpplugins")
# The [data] entry leaves a mark: the empty file GL_DIR/data-stage, created
# by its first run. While it is missing, every recorded RCPT warns: without
# the entry a greylisted message is accepted, with nothing else in the log.
DATA_MARK = "data-stage"
NO_DATA_ENTRY = ("GL_STAGE=data without the [data] entry (no [data] run has created GL_DIR/%s "
                 "yet): list the entry written by python3 -m qgrey.launcher --data last under "
                 "[data] in control/smtpplugins, or greylisted messages are accepted" % DATA_MARK)
NOT_REFUSED_AT_DATA = ("greytrap", "trapped")


def sender_mark(sender):
    """FNV-1a of the envelope sender, as 8 hex digits."""
    value = 0x811C9DC5
    for byte in sender:
        value = ((value ^ byte) * 0x01000193) & 0xFFFFFFFF
    return "%08x" % value


def _is_mark(text):
    return text == OPENED or (len(text) == 8 and all(c in "0123456789abcdef" for c in text))


# The only words qgrey writes in a state's text fields: a state with any
# other text is not qgrey's, and nothing of it is ever printed.
PASS_REASONS = frozenset(("-", "delayed") + tuple(_PASSED))
GREYLIST_REASONS = frozenset(("-", "new", "expired", "early", "punished"))


class TransactionState:
    """countall,recorded,greylisted,waited,reason,first-greylisting-reason,mark
    (mark: OPENED, or the sender mark when there is no [mail] entry)"""

    def __init__(self, countall, recorded=0, greylisted=0, waited=0, reason="-", refused="-",
                 mark=""):
        self.countall, self.recorded, self.greylisted = countall, recorded, greylisted
        self.waited, self.reason, self.refused, self.mark = waited, reason, refused, mark

    def encode(self):
        return ("%d,%d,%d,%d,%s,%s,%s" % (self.countall, self.recorded, self.greylisted,
                                         self.waited, self.reason, self.refused,
                                         self.mark)).encode()

    @classmethod
    def decode(cls, raw):
        """None when raw is not a state qgrey wrote."""
        fields = raw.decode("ascii", "replace").split(",")
        if len(fields) != 7 or not all(f.isdigit() and f.isascii() and len(f) < 10
                                       for f in fields[:4]) \
                or fields[4] not in PASS_REASONS or fields[5] not in GREYLIST_REASONS \
                or not _is_mark(fields[6]):
            return None
        return cls(*[int(f) for f in fields[:4]] + fields[4:])


def _count(environ, name):
    value = environ.get(name, b"")
    return int(value) if value.isdigit() and len(value) < 10 else 0


def _of_this_transaction(state, environ, at_data):
    if state.mark == OPENED:
        return True
    count = _count(environ, b"SMTPRCPTCOUNTALL")
    # At a RCPT the count has gone up since the state was written; at DATA
    # it is still the last RCPT's.
    if state.countall > count or (state.countall == count and not at_data):
        return False
    return state.mark == sender_mark(environ.get(b"SMTPMAILFROM", b""))


def current_state(environ):
    """At a RCPT: the state of this transaction, or None; and whether a state
    of an earlier transaction is set (to be cleared)."""
    raw = environ.get(STATE)
    if raw is None:
        return None, False
    if not raw:  # emptied by the [mail] entry: nothing recorded in this transaction yet
        return TransactionState(0, mark=OPENED), False
    state = TransactionState.decode(raw)
    if state is None or not _of_this_transaction(state, environ, at_data=False):
        return None, True
    return state, False


def data_at_rcpt(decision, environ, problems):
    """A RCPT at GL_STAGE=data: record this recipient's verdict in the
    transaction's state instead of refusing it. Greytraps are still refused
    at once; a state left by an earlier transaction is cleared."""
    state, stale = current_state(environ)
    prefix = UNSET if stale else b""
    if decision.stage != "data" or decision.action not in ("greylist", "pass") \
            or decision.reason in NOT_REFUSED_AT_DATA:
        decision.reply = prefix + decision.reply
        return decision
    if state is None or state.mark != OPENED:
        problems.append(NO_MAIL_ENTRY)
    from qgrey.settings import directory
    if not _present(directory(environ), DATA_MARK):
        problems.append(NO_DATA_ENTRY)
    if state is None:
        state = TransactionState(0, mark=sender_mark(environ.get(b"SMTPMAILFROM", b"")))
    state.countall = _count(environ, b"SMTPRCPTCOUNTALL")
    state.recorded += 1
    if decision.action == "greylist":
        state.greylisted += 1
        if state.refused == "-":
            state.refused = decision.reason
    elif decision.reason == "delayed":  # the header tells the longest delay
        if state.reason != "delayed" or decision.waited > state.waited:
            state.reason, state.waited = "delayed", max(0, decision.waited)
    elif state.reason == "-":
        state.reason, state.waited = decision.reason, max(0, decision.waited or 0)
    decision.reply = b"S" + STATE + b"=" + state.encode() + b"\n"
    decision.detail = "; ".join(filter(None, (decision.detail, "the message is decided at DATA")))
    return decision


def decide_data(environ, now, problems):
    """The [data] run at GL_STAGE=data: the whole message at once."""
    raw = environ.get(STATE)
    if not raw:  # unset, or emptied at MAIL: no RCPT of this transaction recorded anything
        return skip("no-state")
    mark_data_run(environ)
    for name, reason in ((b"GL_WHITELISTED", "whitelisted"), (b"RELAYCLIENT", "relayclient")):
        if name in environ:
            return Decision("skip", reason, UNSET)
    if environ.get(b"SMTPAUTHUSER"):
        return Decision("skip", "authenticated", UNSET)
    state = TransactionState.decode(raw)
    if state is None or not _of_this_transaction(state, environ, at_data=True):
        return Decision("skip", "stale", UNSET, detail="a state of another transaction; cleared")
    what = "at DATA: %d recipient%s recorded" % (state.recorded, "" if state.recorded == 1 else "s")
    if state.greylisted:
        from qgrey import settings as settings_module
        settings = settings_module.load(environ)
        problems.extend(settings.problems)
        # The state stays: a DATA repeated in this transaction is refused again.
        return Decision("message", "greylisted", b"E451 4.7.1 %s\n" % settings.message.encode(),
                        detail="%s, %d greylisted (%s)" % (what, state.greylisted, state.refused))
    if state.reason == "-":
        return Decision("skip", "nothing-recorded", UNSET)
    return Decision("message", "passed", UNSET + header(state.reason, state.waited, now),
                    state.waited, what)


def mark_data_run(environ):
    """Create GL_DIR/data-stage, if missing: the [data] entry is listed and
    runs (see NO_DATA_ENTRY). An empty file, created exclusively without
    following a link; failing to create it costs only the warnings."""
    from qgrey.settings import directory
    path = directory(environ) + "/" + DATA_MARK
    try:
        posix.lstat(path)
        return
    except FileNotFoundError:
        pass
    except OSError:
        return
    try:
        posix.close(posix.open(path, posix.O_WRONLY | posix.O_CREAT | posix.O_EXCL
                               | posix.O_NOFOLLOW | posix.O_NONBLOCK | posix.O_CLOEXEC, 0o600))
    except OSError:
        pass


def after_internal_error(stage, environ):
    """The reply of a run that failed inside (the command is accepted, as
    always on an internal error) where a state is set: at DATA the message
    passes, so its state goes; at a RCPT a state of an earlier transaction
    must not outlive the run to be taken for this one's later."""
    try:
        if STATE not in environ:
            return b""
        if stage == "data":
            return UNSET
        return UNSET if current_state(environ)[1] else b""
    except BaseException:
        return UNSET


def log_line(decision, environ):
    from qgrey.keys import escape
    sender = environ.get(b"SMTPMAILFROM", b"")
    fields = [
        "action=" + decision.action,
        "reason=" + decision.reason,
        "client=" + escape(environ.get(b"TCPREMOTEIP", b"")[:64] or b"-"),
    ]
    if decision.pool:  # the client's key is this pool (GL_HOST_POOLS), not its network
        fields.append("pool=" + decision.pool)
    fields += [
        "sender=" + (escape(sender[:256]) if sender else "<>"),
        "recipient=" + escape(environ.get(b"SMTPRCPTTO", b"")[:256] or b"-"),
    ]
    if decision.waited is not None:
        # A concurrent delivery may write the entry just after this one read
        # the clock: never log a negative wait.
        fields.append("waited=%d" % max(0, decision.waited))
    if decision.detail:  # free text, always last: the rest of the line
        fields.append("detail=" + "".join(c if " " <= c <= "~" else "?" for c in decision.detail))
    return "%s: %s\n" % (PROGRAM, " ".join(fields))


def _write(fd, data):
    try:
        while data:
            data = data[posix.write(fd, data):]
    except OSError:  # stdout or stderr closed: nothing better to do
        pass


def main(stage="rcpt"):
    """stage: "rcpt", or "data" for the [data] launcher (GL_STAGE=data)."""
    posix.umask(0o077)
    # A file size limit must fail a write, not kill the process: a death by
    # signal makes qmail-smtpd answer a second time. (_signal is loaded at
    # start-up already; the signal module would import enum and more.)
    import _signal
    _signal.signal(_signal.SIGXFSZ, _signal.SIG_IGN)
    environ = posix.environ
    problems = []
    try:
        if stage == "data":
            decision = decide_data(environ, int(time.time()), problems)
        else:
            decision = decide(environ, int(time.time()), problems)
            if decision.stage == "data" or STATE in environ:
                decision = data_at_rcpt(decision, environ, problems)
        log = log_line(decision, environ)
    except BaseException as err:  # never a traceback: accept, say why in one line
        decision = Decision("error", "internal", after_internal_error(stage, environ))
        try:
            detail = "".join(c if " " <= c <= "~" else "?" for c in repr(err)[:200])
        except BaseException:
            detail = type(err).__name__
        log = "%s: action=error reason=internal detail=%s\n" % (PROGRAM, detail)
    shown = problems if len(problems) <= MAX_WARNINGS else problems[:MAX_WARNINGS - 1] + [
        "%d more warnings not shown" % (len(problems) - MAX_WARNINGS + 1)]
    for problem in shown:
        _write(2, ("%s: warning: %s\n" % (PROGRAM, problem)).encode("ascii", "replace"))
    _write(2, log.encode("ascii", "replace"))
    _write(1, decision.reply)
    # No buffered stdout to flush at exit, so no exit status 120.
    posix._exit(0)
