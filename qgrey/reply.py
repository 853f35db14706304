"""What the plugin answers and logs: the Decision, its reply line and its log line.

Replies (qmail-spp reads stdout; each line must end in exactly "\\n"):
  greylisted          E451 4.7.1 <GL_MESSAGE>
  accepted            HX-Greylist: ...   (first accepted recipient of a message)
                      nothing            (later recipients)
  not ours to decide  nothing            (relay clients, GL_WHITELISTED, whitelists, ...)
  database unusable   nothing, or E451 4.3.0 ... when GL_ON_ERROR=defer
Never A (switches plugins off), never O (relays).

Only time and the qgrey modules a reply needs are imported here.
"""
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


PASSED = {
    "known": "passed (known sender)",
    "auto-whitelist": "passed (auto-whitelisted client)",
    "reply": "passed (reply to a local sender)",
    "learning": "passed (learning mode)",
    "trusted": "passed (trusted client)",
}


def header(reason, waited, now):
    from qgrey import VERSION
    if reason == "delayed":
        what = "delayed %d seconds" % waited
    else:
        what = PASSED.get(reason, "passed")
    return ("HX-Greylist: %s by qgrey-%s; %s\n" % (what, VERSION, rfc5322_date(now))).encode()


class Decision:
    """What to answer and what to log. stage: GL_STAGE, once settings are
    read; pool: the pool the client's key was (a host pool of GL_HOST_POOLS,
    or spf:DOMAIN of GL_SPF=1) instead of its network; spf: the SPF result
    when one was evaluated (GL_SPF=1); name, helo: the evidence of a trusted
    client (GL_GREYLIST=suspicious|trial): its verified host name or '-', and
    the HELO name that confirmed it, if any; trial: under GL_GREYLIST=trial,
    for a greylisted client, what suspicious would have done ("trusted" or
    "suspicious"). consulted and identity: what the decision read (keys and
    entries) and learned (qgrey.identity.Identity), for qgrey-admin explain."""

    def __init__(self, action, reason, reply=b"", waited=None, detail=None):
        self.action, self.reason, self.reply = action, reason, reply
        self.waited, self.detail = waited, detail
        self.stage = None
        self.pool = None
        self.spf = None
        self.name = self.helo = None
        self.trial = None
        self.consulted = ()
        self.identity = None


def skip(reason, detail=None):
    return Decision("skip", reason, detail=detail)


def on_error(err, settings):
    defer = settings is not None and settings.on_error == "defer"
    return Decision("error", err.reason, DEFER_ON_ERROR if defer else b"",
                    detail="%s; answered %s" % (err.detail, "defer" if defer else "accept"))


def greylisted(settings):
    """The reply that refuses a recipient, or a message at DATA."""
    return b"E451 4.7.1 %s\n" % settings.message.encode()


def printable(text):
    """Free text for the log: printable ASCII, anything else as '?'."""
    return "".join(c if " " <= c <= "~" else "?" for c in text)


def log_line(decision, request):
    from qgrey.keys import escape
    sender = request.sender
    fields = [
        "action=" + decision.action,
        "reason=" + decision.reason,
        "client=" + escape((request.client_ip or b"")[:64] or b"-"),
    ]
    if decision.pool:  # the client's key is this pool (GL_HOST_POOLS, GL_SPF), not its network
        fields.append("pool=" + decision.pool)
    if decision.spf:  # GL_SPF=1: the SPF result, when one was evaluated
        fields.append("spf=" + decision.spf)
    if decision.name:  # the evidence of GL_GREYLIST=suspicious|trial
        fields.append("name=" + decision.name)
    if decision.helo:
        fields.append("helo=" + decision.helo)
    if decision.action in ("pass", "greylist") and "settings" in request.__dict__:
        mode = request.settings.greylist
        if mode != "all":  # the mode it was decided under (qgrey-report counts by it)
            fields.append("mode=" + mode)
    if decision.trial:  # GL_GREYLIST=trial: trusted or suspicious
        fields.append("trial=" + decision.trial)
    fields += [
        "sender=" + (escape(sender[:256]) if sender else "<>"),
        "recipient=" + escape((request.recipient or b"")[:256] or b"-"),
    ]
    if decision.waited is not None:
        # A concurrent delivery may write the entry just after this one read
        # the clock: never log a negative wait.
        fields.append("waited=%d" % max(0, decision.waited))
    if decision.detail:  # free text, always last: the rest of the line
        fields.append("detail=" + printable(decision.detail))
    return "%s: %s\n" % (PROGRAM, " ".join(fields))
