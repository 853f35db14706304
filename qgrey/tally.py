"""The numbers of a report: the plugin's log lines read and counted.

parse(line) reads one line as qmail's log pipeline keeps it: a message
after a multilog TAI64N stamp (@4000...), after a syslog header, or alone
(a plain line). A decision is a message that starts with the plugin's own
"qgrey: action="; other lines are not decisions. Report adds up the
decisions: counts per action and reason, per time bucket, the delays of
mail that passed, the triplets greylisted that never came back (grouped by
the key the plugin uses: qgrey.keys with the same settings; a line's pool=
field stands in for the network), the clients, networks and host pools
greylisted most, learning mode's would-be greylistings, and the modes of
GL_GREYLIST (Mode). The state kept is the counters plus, per greylisted
triplet that has not passed yet, one small entry, and per mode one count
per distinct delay (seconds).

The mode of a decision, exactly as the plugin logged it: a pass or a
greylisting decided under GL_GREYLIST=suspicious or trial carries mode=
(mode=suspicious, mode=trial); one without it was decided under all.
Lines of other actions (skip, error, the DATA stage's message) are not
counted per mode. A line written before the plugin logged mode= is placed
by what it says: trial= only under trial, reason=trusted only under
suspicious.

Both outputs render a Report and compute nothing of their own: the text of
qgrey-report (qgrey.report) and the HTML page (qgrey.htmlreport); visible()
and span() are the words both use for a value.
"""
import heapq
import re

from qgrey import keys

MARK = "qgrey: action="
MAX_LINE = 16384  # characters; the plugin's lines are shorter than 4,000
TOP = 10
HOUR = 3600
MAX_BUCKETS = 2048  # more time buckets than this: each covers twice as long
LEARNING = "would greylist: "
# Upper bounds (seconds) of the delay histogram of mail that passed.
DELAY_BUCKETS = ((300, "< 5m"), (600, "5-10m"), (900, "10-15m"), (1800, "15-30m"),
                 (3600, "30m-1h"), (7200, "1-2h"), (14400, "2-4h"), (43200, "4-12h"),
                 (86400, "12-24h"), (None, ">= 1d"))


def unescape(text):
    """A logged field (keys.escape) -> the bytes it stood for."""
    if "%" not in text:
        return text.encode("ascii", "replace")
    out, i = bytearray(), 0
    while i < len(text):
        if text[i] == "%" and i + 2 < len(text) + 0 and _hex(text[i + 1:i + 3]):
            out.append(int(text[i + 1:i + 3], 16))
            i += 3
        else:
            out.extend(text[i].encode("ascii", "replace"))
            i += 1
    return bytes(out)


def _hex(text):
    return len(text) == 2 and all(c in "0123456789abcdefABCDEF" for c in text)


# The latest time a stamp may give: 9999-12-31 23:59:59 UTC.
LATEST = 253402300799
# A syslog header as syslog daemons write files (RFC 3164 'Nov 14 22:13:10',
# or RFC 3339 '2023-11-14T22:13:10.123+00:00'), the host, the tag with its
# colon ('smtpd:', 'qmail-smtpd[812]:'); then splogger's stamp
# ('1699999990.123456 ') when qmail's splogger sent the line.
SYSLOG = re.compile(r"(?:[A-Z][a-z]{2} [ 0-9][0-9] [0-9]{2}:[0-9]{2}:[0-9]{2}"
                    r"|[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}[^ ]*)"
                    r" [^ ]+ [^ :]+: (?:[0-9]+\.[0-9]{6} )?")
# A decision as the plugin writes it: action and reason first, both words;
# then fields name=value, values without spaces; then detail=, free text
# to the end of the line.
DECISION = re.compile(r"qgrey: action=([a-z0-9_-]+) reason=([a-z0-9_-]+)"
                      r"((?: [a-z]+=[^ ]+)*?)(?: detail=(.*))?\Z")


class Malformed(ValueError):
    """A line that starts as a qgrey decision but cannot be read."""


def tai64n_seconds(stamp):
    """'@4000000065a1b2c3...' (25 characters) -> Unix seconds (leap seconds
    ignored), or None if it is not a stamp of a time from 1970 to 9999."""
    digits = stamp[1:]
    if len(digits) != 24 or not (digits.isalnum() and digits.isascii()) or stamp[:1] != "@":
        return None
    try:
        label = int(digits, 16)
    except ValueError:
        return None
    seconds = (label >> 32) - (1 << 62) - 10
    if label & 0xFFFFFFFF >= 10 ** 9 or not 0 <= seconds <= LATEST:
        return None
    return seconds


def parse(line):
    """A log line -> (stamp or None, {field: value}), or None if it is not a
    qgrey decision; raises Malformed for a decision that cannot be read.

    A line is [PREFIX] MESSAGE, PREFIX one of: a multilog stamp ('@' and 24
    hex digits, then one space); a syslog header (SYSLOG); nothing. Its
    MESSAGE is a decision when it starts with 'qgrey: action=': the plugin's
    own program field, never the same words later in someone else's line.
    Only a multilog stamp gives the time (the charts use it)."""
    line = line.rstrip("\r\n")
    stamp = None
    if line.startswith("@"):
        label, _, message = line.partition(" ")
        if not message.startswith(MARK):
            return None
        stamp = tai64n_seconds(label)
        if stamp is None:
            raise Malformed("bad stamp")
    elif not line.startswith(MARK):
        header = SYSLOG.match(line)
        message = line[header.end():] if header else line
        if not message.startswith(MARK):
            return None
    else:
        message = line
    decision = DECISION.match(message)
    if decision is None:
        raise Malformed("fields not as the plugin writes them")
    action, reason, rest, detail = decision.groups()
    fields = {"action": action, "reason": reason}
    for item in rest.split(" ")[1:]:
        name, _, value = item.partition("=")
        if name in fields:
            raise Malformed("field %s twice" % name)
        fields[name] = value
    if detail:
        fields["detail"] = detail
    waited = fields.get("waited")
    if waited is not None and not (len(waited) <= 12 and waited.isdigit() and waited.isascii()):
        raise Malformed("bad waited")
    return stamp, fields


def visible(text):
    """Log text for a terminal: printable ASCII as it is; a control
    character (C0, DEL, C1) and the backslash as \\xNN; anything else
    (what the input had outside ASCII) as '?'."""
    if text.isascii() and text.isprintable() and "\\" not in text:
        return text
    return "".join(c if " " <= c <= "~" and c != "\\" else
                   "\\x%02x" % ord(c) if ord(c) < 0xA0 else "?" for c in text)


MODES = ("all", "trial", "suspicious")


class Mode:
    """The decisions of one GL_GREYLIST mode: decisions (passes and
    greylistings), trusted (passed at once, reason=trusted), greylisted, delayed (passed after a delay); the
    delays of new mail accepted ({seconds: count}: 0 for each trusted, the
    wait of each delayed pass); would_trust, would_greylist: greylistings
    logged trial=trusted and trial=suspicious."""

    def __init__(self):
        self.decisions = self.trusted = self.greylisted = self.delayed = 0
        self.would_trust = self.would_greylist = 0
        self.waits = {}

    def accepted(self):
        """New mail accepted: trusted at once or passed after a delay."""
        return sum(self.waits.values())

    def median(self):
        """The median delay of new mail accepted (the lower middle), or None."""
        count = self.accepted()
        if not count:
            return None
        seen = 0
        for seconds in sorted(self.waits):
            seen += self.waits[seconds]
            if 2 * seen >= count:
                return seconds

    def longest(self):
        return max(self.waits) if self.waits else None


class Report:
    def __init__(self, settings, networks=False):
        self.settings = settings
        self.decisions = {}      # (action, reason) -> count
        self.pending = {}        # triplet key -> greylistings without a later pass
        self.refused = {}        # client -> greylistings
        self.networks = {} if networks else None  # client field of the key -> greylistings
        self.delays = [0] * len(DELAY_BUCKETS)
        self.delay_total = 0
        self.lines = 0
        self.malformed = 0       # lines that start as decisions but cannot be read
        self.first = self.last = None
        self.came_back = 0       # greylisted triplets that passed later
        self.learning = {}       # reason -> learning-mode passes that would have greylisted
        self.pools = {}          # host pool -> [delayed passes, total wait, longest wait]
        self.unstamped = 0       # decisions without a TAI64N stamp
        self.width = HOUR        # seconds per time bucket
        self.buckets = {}        # stamp // width -> {(action, reason): count}
        self.modes = {}          # GL_GREYLIST mode -> Mode (passes and greylistings)

    def key(self, fields):
        sender = fields.get("sender", "<>")
        return keys.triplet(unescape(fields.get("client", "-")),
                            b"" if sender == "<>" else unescape(sender),
                            unescape(fields.get("recipient", "-")), self.settings,
                            pool=fields.get("pool"))

    def add(self, line, whole=True):
        """Count one log line; whole False: it was cut, longer than any the
        plugin writes (a decision there cannot be read)."""
        try:
            parsed = parse(line)
            if parsed is not None and not whole:
                raise Malformed("longer than %d characters" % MAX_LINE)
        except Malformed:
            self.malformed += 1
            return
        if parsed is None:
            return
        stamp, fields = parsed
        self.lines += 1
        action, reason = fields.get("action", "?"), fields.get("reason", "?")
        pair = (action, reason)
        self.decisions[pair] = self.decisions.get(pair, 0) + 1
        self._count_mode(action, reason, fields)
        if stamp is None:
            self.unstamped += 1
        else:
            if self.first is None:
                self.first = stamp
            self.last = stamp
            counts = self.buckets.get(stamp // self.width)
            if counts is None:
                if len(self.buckets) >= MAX_BUCKETS:
                    self._coarsen()
                counts = self.buckets.setdefault(stamp // self.width, {})
            counts[pair] = counts.get(pair, 0) + 1
        if action == "greylist":
            key = self.key(fields)
            self.pending[key] = self.pending.get(key, 0) + 1
            client = fields.get("client", "-")
            self.refused[client] = self.refused.get(client, 0) + 1
            if self.networks is not None:
                network = key[:key.find(" ")]
                if self.settings.ignore_remoteip:
                    network = keys.client(unescape(client), self.settings)
                self.networks[network] = self.networks.get(network, 0) + 1
        elif action == "pass":
            if self.pending.pop(self.key(fields), None) is not None:
                self.came_back += 1
            if reason == "learning":
                detail = fields.get("detail", "")
                if detail.startswith(LEARNING):
                    why = detail[len(LEARNING):].partition(";")[0] or "?"
                    self.learning[why] = self.learning.get(why, 0) + 1
            elif reason == "delayed":
                if "waited" not in fields:
                    return
                waited = int(fields["waited"])
                self.delay_total += waited
                if "pool" in fields:
                    seen = self.pools.setdefault(fields["pool"], [0, 0, 0])
                    seen[0] += 1
                    seen[1] += waited
                    seen[2] = max(seen[2], waited)
                for i, (limit, _) in enumerate(DELAY_BUCKETS):
                    if limit is None or waited < limit:
                        self.delays[i] += 1
                        break

    def _count_mode(self, action, reason, fields):
        if action not in ("pass", "greylist"):
            return
        trial = fields.get("trial")
        mode = fields.get("mode") or ("trial" if trial else "suspicious" if reason == "trusted"
                                      else "all")
        if mode not in MODES:  # not as the plugin writes it
            return
        seen = self.modes.get(mode)
        if seen is None:
            seen = self.modes[mode] = Mode()
        seen.decisions += 1
        if action == "greylist":
            seen.greylisted += 1
            if trial == "trusted":
                seen.would_trust += 1
            elif trial == "suspicious":
                seen.would_greylist += 1
        elif action == "pass" and reason in ("trusted", "delayed"):
            if reason == "trusted":
                seen.trusted += 1
                waited = 0
            else:
                seen.delayed += 1
                waited = fields.get("waited")
                if waited is None:  # not as the plugin writes it: no delay to count
                    return
                waited = int(waited)
            seen.waits[waited] = seen.waits.get(waited, 0) + 1

    def mode_counts(self):
        """[(mode, Mode)] in the order all, trial, suspicious; [] when every
        decision was taken under all (nothing to compare)."""
        if set(self.modes) <= {"all"}:
            return []
        return [(mode, self.modes[mode]) for mode in MODES if mode in self.modes]

    def _coarsen(self):
        """Twice as long a time per bucket: the buckets stay few."""
        self.width *= 2
        merged = {}
        for bucket, counts in self.buckets.items():
            into = merged.setdefault(bucket // 2, {})
            for pair, count in counts.items():
                into[pair] = into.get(pair, 0) + count
        self.buckets = merged

    def pending_first(self, limit):
        """The first triplets (in --list order) that never came back, with
        the number of times each was greylisted."""
        return heapq.nsmallest(limit, self.pending.items())

    def top_clients(self, limit=TOP):
        return heapq.nsmallest(limit, self.refused.items(), key=lambda i: (-i[1], i[0]))

    def top_networks(self, limit=TOP):
        """The networks greylisted most (Report(networks=True)): the client
        field of the plugin's key (GL_MASK_IP, GL_IPV4_PREFIX, GL_IPV6_PREFIX)."""
        if self.networks is None:
            return []
        return heapq.nsmallest(limit, self.networks.items(), key=lambda i: (-i[1], i[0]))

    def top_pools(self, limit=TOP):
        """The host pools whose mail passed after greylisting most often,
        with [passes, total wait, longest wait]."""
        return heapq.nsmallest(limit, self.pools.items(), key=lambda i: (-i[1][0], i[0]))

    def decision_counts(self):
        """[((action, reason), count)]: by action, then most first, then reason."""
        return sorted(self.decisions.items(), key=lambda i: (i[0][0], -i[1], i[0][1]))

    def passed(self):
        """Messages that passed after greylisting (the delay histogram's total)."""
        return sum(self.delays)

    def mean_delay(self):
        """Mean seconds waited by the mail that passed after greylisting (0: none)."""
        passed = self.passed()
        return self.delay_total / passed if passed else 0

    def learned(self):
        """Learning-mode passes that would have been greylisted."""
        return sum(self.learning.values())

    def learning_counts(self):
        return sorted(self.learning.items(), key=lambda i: (-i[1], i[0]))


def span(seconds):
    """Seconds as '12m05s' or '3h07m'."""
    seconds = int(seconds)
    if seconds >= 3600:
        return "%dh%02dm" % (seconds // 3600, seconds % 3600 // 60)
    return "%dm%02ds" % (seconds // 60, seconds % 60)


def bounded_lines(stream):
    """(line, whole) for the lines of stream; a line longer than MAX_LINE
    (the plugin's are much shorter) is read to its end and given cut there,
    with whole False."""
    while True:
        line = stream.readline(MAX_LINE)
        if not line:
            return
        if len(line) == MAX_LINE and not line.endswith("\n"):
            while True:
                rest = stream.readline(MAX_LINE)
                if not rest or rest.endswith("\n"):
                    break
            yield line, False
        else:
            yield line, True
