"""qgrey-report: what greylisting did, from the plugin's log lines.

    qgrey-report [--list] [--html PAGE] [FILE...]   (stdin when no FILE; - is stdin)

Reads lines as qmail's log pipeline keeps them (see parse): a message
after a multilog TAI64N stamp (@4000...), after a syslog header, or alone
(a plain line). A decision is a message that starts with the plugin's own
"qgrey: action="; other lines are skipped. A decision that cannot be read
(a stamp out of range, fields not as the plugin writes them) is skipped and
counted, and the count is said. Text output shows control characters as
\\xNN. Lines are streamed; the state kept is the counters plus, per
greylisted triplet that has not passed yet, one small entry. Triplets are grouped by the key the
plugin uses (qgrey.keys with the same settings: GL_MASK_IP, GL_IGNORE_*;
a line's pool= field, logged when GL_HOST_POOLS keyed the client by its
host pool, stands in for the network).
--html PAGE also writes the report as one HTML page (qgrey.htmlreport),
from the same counters plus decisions per hour.

Exit status: 0 done; 100 usage; 111 cannot read an input file or write PAGE.
"""
import heapq
import io
import re
import sys

from qgrey import keys, settings as settings_module, tool

PROGRAM = "qgrey-report"
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

    def write(self, out, list_pending=False):
        import time
        out.write("qgrey report: %d decisions" % self.lines)
        if self.first is not None:
            fmt = "%Y-%m-%d %H:%M:%S"
            out.write(", %s to %s UTC" % (time.strftime(fmt, time.gmtime(self.first)),
                                          time.strftime(fmt, time.gmtime(self.last))))
        out.write("\n")
        if self.malformed:
            out.write("skipped %d qgrey lines that could not be parsed\n" % self.malformed)
        out.write("\ndecisions\n")
        for (action, reason), count in sorted(self.decisions.items(), key=lambda i: (i[0][0], -i[1], i[0][1])):
            out.write("  %-9s %-14s %9d\n" % (visible(action), visible(reason), count))
        out.write("\ntriplets greylisted that never came back: %d\n" % len(self.pending))
        if list_pending:
            for key in sorted(self.pending):
                out.write("  %s\n" % visible(key))
        passed = sum(self.delays)
        out.write("\ndelay of mail that passed after greylisting: %d messages" % passed)
        if passed:
            out.write(", mean %s\n" % _span(self.delay_total / passed))
            for (_, label), count in zip(DELAY_BUCKETS, self.delays):
                width = int(round(40.0 * count / max(self.delays)))
                out.write("  %-7s %8d %s\n" % (label, count, "#" * width))
        else:
            out.write("\n")
        out.write("\nclients greylisted most\n")
        for client, count in self.top_clients():
            out.write("  %9d %s\n" % (count, visible(client)))
        if self.pools:
            out.write("\ndelay of host pools (GL_HOST_POOLS) that passed after greylisting\n")
            for pool, (count, total, longest) in self.top_pools():
                out.write("  %9d mean %-7s longest %-7s %s\n" % (
                    count, _span(total / count), _span(longest), visible(pool)))
        if self.learning:
            out.write("\nlearning mode: would have greylisted %d\n" % sum(self.learning.values()))
            for reason, count in self.learning_counts():
                out.write("  %-14s %9d\n" % (visible(reason), count))

    def top_pools(self, limit=TOP):
        """The host pools whose mail passed after greylisting most often,
        with [passes, total wait, longest wait]."""
        return heapq.nsmallest(limit, self.pools.items(), key=lambda i: (-i[1][0], i[0]))

    def learning_counts(self):
        return sorted(self.learning.items(), key=lambda i: (-i[1], i[0]))


def _span(seconds):
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


PAGE_MODE = 0o644  # for a web server to read
USAGE = "usage: qgrey-report [--list] [--html PAGE] [FILE...]"


def run(argv, environ, out):
    list_pending, page = False, None
    while argv[:1] == ["--list"] or (argv[:1] == ["--html"] and len(argv) > 1):
        if argv[0] == "--list":
            list_pending, argv = True, argv[1:]
        else:
            page, argv = argv[1], argv[2:]
    bad_page = page is not None and (page == "" or page.startswith("-"))
    if bad_page or any(a.startswith("-") and a != "-" for a in argv):
        sys.stderr.write(USAGE + "\n")
        return 100
    settings = settings_module.load(environ)
    report = Report(settings, networks=page is not None)
    for name in argv or ["-"]:
        if name == "-":
            stream = sys.stdin
        else:
            try:
                stream = open(name, encoding="ascii", errors="replace")
            except OSError as err:
                sys.stderr.write("%s: fatal: cannot read %s: %s\n" % (PROGRAM, name, err.strerror))
                return 111
        try:
            for line, whole in bounded_lines(stream):
                report.add(line, whole)
        finally:
            if stream is not sys.stdin:
                stream.close()
    report.write(out, list_pending)
    if page is not None:
        # PAGE's directory may be writable by others (a web server's): the
        # page is written under a new random name, created without following
        # links, then renamed over PAGE (a link there is replaced).
        from qgrey import files, htmlreport
        text = io.StringIO()
        htmlreport.write(report, text)
        try:
            files.replace(page, text.getvalue().encode("utf-8"), mode=PAGE_MODE)
        except OSError as err:
            sys.stderr.write("%s: fatal: cannot write %s: %s\n" % (PROGRAM, page, files.describe(err)))
            return 111
    return 0


def main():
    try:
        sys.stdin.reconfigure(encoding="ascii", errors="replace")
    except (AttributeError, ValueError):
        pass
    tool.main(PROGRAM, run)


if __name__ == "__main__":
    main()
