"""The per-RCPT program that qmail-smtpd runs through qmail-spp.

environment -> request -> key -> store (read) -> policy -> store (write)
-> one reply on stdout and one log line on stderr.

Replies (qmail-spp reads stdout; each line must end in exactly "\\n"):
  greylisted          E451 4.7.1 <GL_MESSAGE>
  accepted            HX-Greylist: ...   (first accepted recipient of a message)
                      nothing            (later recipients)
  not ours to decide  nothing            (relay clients, GL_WHITELISTED, ...)
  database unusable   nothing, or E451 4.3.0 ... when GL_ON_ERROR=defer
Never A (switches plugins off), never O (relays), never an exit status of
120 or a death by signal (both make qmail-smtpd answer a second time).

Only posix, time and the qgrey modules a decision needs are imported here.
"""
import posix
import time

PROGRAM = "qgrey"
DEFER_ON_ERROR = b"E451 4.3.0 Greylisting is temporarily unavailable, please try again later\n"
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun",
           "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def rfc5322_date(now):
    t = time.gmtime(now)
    return "%s, %02d %s %d %02d:%02d:%02d +0000" % (
        _DAYS[t.tm_wday], t.tm_mday, _MONTHS[t.tm_mon - 1], t.tm_year,
        t.tm_hour, t.tm_min, t.tm_sec)


def header(reason, waited, now):
    from qgrey import VERSION
    if reason == "delayed":
        what = "delayed %d seconds" % waited
    else:
        what = "passed (known sender)"
    return ("HX-Greylist: %s by qgrey-%s; %s\n" % (what, VERSION, rfc5322_date(now))).encode()


class Decision:
    """What to answer and what to log."""

    def __init__(self, action, reason, reply=b"", waited=None, detail=None):
        self.action, self.reason, self.reply = action, reason, reply
        self.waited, self.detail = waited, detail


def skip(reason, detail=None):
    return Decision("skip", reason, detail=detail)


def on_error(err, settings):
    defer = settings is not None and settings.on_error == "defer"
    return Decision("error", err.reason, DEFER_ON_ERROR if defer else b"",
                    detail="%s; answered %s" % (err.detail, "defer" if defer else "accept"))


def decide(environ, now, problems):
    """The whole decision for one RCPT; environ is a bytes mapping."""
    if b"GL_WHITELISTED" in environ:
        return skip("whitelisted")
    if b"RELAYCLIENT" in environ:
        return skip("relayclient")
    if environ.get(b"SMTPAUTHUSER"):
        return skip("authenticated")
    if environ.get(b"SMTPRCPTHOSTSOK") == b"0":
        return skip("rcpthosts")
    if b"SMTPRCPTTO" not in environ:
        return skip("no-recipient", "SMTPRCPTTO is not set: list qgrey under [rcpt] in control/smtpplugins")

    from qgrey import settings as settings_module
    settings = settings_module.load(environ)
    problems.extend(settings.problems)
    remote_ip = environ.get(b"TCPREMOTEIP")
    if remote_ip is None and not settings.ignore_remoteip:
        return skip("no-remoteip", "TCPREMOTEIP is not set: run qmail-smtpd under tcpserver")

    from qgrey import keys, policy
    from qgrey.store import StoreError, open_store
    key = keys.triplet(remote_ip or b"", environ.get(b"SMTPMAILFROM", b""),
                       environ[b"SMTPRCPTTO"], settings)

    def change(entry):
        action, reason, new, waited = policy.decide(entry, now, settings)
        return (action, reason, waited), new

    store = None
    try:
        store = open_store(settings)
        entry = store.lookup(key)
        (action, reason, waited), new = change(entry)
        if new is not entry:
            action, reason, waited = store.update(key, change)
    except StoreError as err:
        return on_error(err, settings)
    finally:
        if store is not None:
            store.close()
    if action == policy.GREYLIST:
        return Decision(action, reason, b"E451 4.7.1 %s\n" % settings.message.encode(), waited)
    first_recipient = environ.get(b"SMTPRCPTCOUNT", b"0") == b"0"
    return Decision(action, reason, header(reason, waited, now) if first_recipient else b"", waited)


def log_line(decision, environ):
    from qgrey.keys import escape
    sender = environ.get(b"SMTPMAILFROM", b"")
    fields = [
        "action=" + decision.action,
        "reason=" + decision.reason,
        "client=" + escape(environ.get(b"TCPREMOTEIP", b"-")[:64]),
        "sender=" + (escape(sender[:256]) if sender else "<>"),
        "recipient=" + escape(environ.get(b"SMTPRCPTTO", b"-")[:256]),
    ]
    if decision.waited is not None:
        fields.append("waited=%d" % decision.waited)
    if decision.detail:  # free text, always last: the rest of the line
        fields.append("detail=" + "".join(c if " " <= c <= "~" else "?" for c in decision.detail))
    return "%s: %s\n" % (PROGRAM, " ".join(fields))


def _write(fd, data):
    try:
        while data:
            data = data[posix.write(fd, data):]
    except OSError:  # stdout or stderr closed: nothing better to do
        pass


def main():
    posix.umask(0o077)
    environ = posix.environ
    problems = []
    try:
        decision = decide(environ, int(time.time()), problems)
        log = log_line(decision, environ)
    except BaseException as err:  # never a traceback: accept, say why in one line
        decision = Decision("error", "internal")
        log = "%s: action=error reason=internal detail=%s\n" % (
            PROGRAM, type(err).__name__)
    for problem in problems:
        _write(2, ("%s: warning: %s\n" % (PROGRAM, problem)).encode("ascii", "replace"))
    _write(2, log.encode("ascii", "replace"))
    _write(1, decision.reply)
    # No buffered stdout to flush at exit, so no exit status 120.
    posix._exit(0)
