"""GL_STAGE=data: a transaction's recipients decided at RCPT, the message at DATA.

At RCPT each recipient is decided and recorded as usual (plugin.decide_rcpt),
but never refused for greylisting; what the message needs is passed to the
[data] run in the variable QGREY_DATA (S), which refuses the whole message
once (E451) or accepts it with one header (H) and clears the variable (U).
The [mail] entry (":echo SQGREY_DATA=", no Python) empties it at every MAIL.

data_at_rcpt(decision, request): a RCPT's decision -> its reply at this stage.
decide_data(request, now): the [data] run.

Each step takes the request (qgrey.request): its state is request.state.
Only posix (built in) and qgrey modules are imported here.
"""
import posix

from qgrey.reply import PASSED, Decision, greylisted, header, skip
from qgrey.request import exists

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
PASS_REASONS = frozenset(("-", "delayed") + tuple(PASSED))
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


def _of_this_transaction(state, request, at_data):
    if state.mark == OPENED:
        return True
    count = request.rcpt_count_all
    # At a RCPT the count has gone up since the state was written; at DATA
    # it is still the last RCPT's.
    if state.countall > count or (state.countall == count and not at_data):
        return False
    return state.mark == sender_mark(request.sender)


def current_state(request):
    """At a RCPT: the state of this transaction, or None; and whether a state
    of an earlier transaction is set (to be cleared)."""
    raw = request.state
    if raw is None:
        return None, False
    if not raw:  # emptied by the [mail] entry: nothing recorded in this transaction yet
        return TransactionState(0, mark=OPENED), False
    state = TransactionState.decode(raw)
    if state is None or not _of_this_transaction(state, request, at_data=False):
        return None, True
    return state, False


def data_at_rcpt(decision, request):
    """A RCPT at GL_STAGE=data: record this recipient's verdict in the
    transaction's state instead of refusing it. Greytraps are still refused
    at once; a state left by an earlier transaction is cleared."""
    state, stale = current_state(request)
    prefix = UNSET if stale else b""
    if decision.stage != "data" or decision.action not in ("greylist", "pass") \
            or decision.reason in NOT_REFUSED_AT_DATA:
        decision.reply = prefix + decision.reply
        return decision
    problems = request.problems
    if state is None or state.mark != OPENED:
        problems.append(NO_MAIL_ENTRY)
    if not exists(request.directory + "/" + DATA_MARK):
        problems.append(NO_DATA_ENTRY)
    if state is None:
        state = TransactionState(0, mark=sender_mark(request.sender))
    state.countall = request.rcpt_count_all
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


def decide_data(request, now):
    """The [data] run at GL_STAGE=data: the whole message at once."""
    raw = request.state
    if not raw:  # unset, or emptied at MAIL: no RCPT of this transaction recorded anything
        return skip("no-state")
    mark_data_run(request)
    if request.whitelisted:
        return Decision("skip", "whitelisted", UNSET)
    if request.relay:
        return Decision("skip", "relayclient", UNSET)
    if request.authenticated:
        return Decision("skip", "authenticated", UNSET)
    state = TransactionState.decode(raw)
    if state is None or not _of_this_transaction(state, request, at_data=True):
        return Decision("skip", "stale", UNSET, detail="a state of another transaction; cleared")
    what = "at DATA: %d recipient%s recorded" % (state.recorded, "" if state.recorded == 1 else "s")
    if state.greylisted:
        # The state stays: a DATA repeated in this transaction is refused again.
        return Decision("message", "greylisted", greylisted(request.settings),
                        detail="%s, %d greylisted (%s)" % (what, state.greylisted, state.refused))
    if state.reason == "-":
        return Decision("skip", "nothing-recorded", UNSET)
    return Decision("message", "passed", UNSET + header(state.reason, state.waited, now),
                    state.waited, what)


def mark_data_run(request):
    """Create GL_DIR/data-stage, if missing: the [data] entry is listed and
    runs (see NO_DATA_ENTRY). An empty file, created exclusively without
    following a link; failing to create it costs only the warnings."""
    path = request.directory + "/" + DATA_MARK
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


def after_internal_error(request):
    """The reply of a run that failed inside (the command is accepted, as
    always on an internal error) where a state is set: at DATA the message
    passes, so its state goes; at a RCPT a state of an earlier transaction
    must not outlive the run to be taken for this one's later."""
    try:
        if request.state is None:
            return b""
        if request.stage == "data":
            return UNSET
        return UNSET if current_state(request)[1] else b""
    except BaseException:
        return UNSET
