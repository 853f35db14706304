"""qgrey-report: what greylisting did, from the plugin's log lines.

    qgrey-report [--list] [--html PAGE] [FILE...]   (stdin when no FILE; - is stdin)

Reads lines as qmail's log pipeline keeps them: multilog lines with a
TAI64N stamp (@4000...), or plain lines; other lines are skipped. Lines are
streamed; the state kept is the counters plus, per greylisted triplet that
has not passed yet, one small entry. Triplets are grouped by the key the
plugin uses (qgrey.keys with the same settings: GL_MASK_IP, GL_IGNORE_*;
a line's pool= field, logged when GL_HOST_POOLS keyed the client by its
host pool, stands in for the network).
--html PAGE also writes the report as one HTML page (qgrey.htmlreport),
from the same counters plus decisions per hour.

Exit status: 0 done; 100 usage; 111 cannot read an input file or write PAGE.
"""
import heapq
import os
import sys

from qgrey import keys, settings as settings_module, tool

PROGRAM = "qgrey-report"
MARK = "qgrey: action="
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


def tai64n_seconds(stamp):
    """'@4000000065a1b2c3...' -> Unix seconds (leap seconds ignored), or None."""
    try:
        return int(stamp[1:17], 16) - (1 << 62) - 10
    except ValueError:
        return None


def parse(line):
    """A log line -> (stamp or None, {field: value}) or None if not a decision."""
    at = line.find(MARK)
    if at < 0:
        return None
    stamp = tai64n_seconds(line[:25]) if line.startswith("@") else None
    head, _, detail = line[at + 7:].rstrip("\r\n").partition(" detail=")
    fields = {}
    for item in head.split(" "):
        name, _, value = item.partition("=")
        fields[name] = value
    if detail:
        fields["detail"] = detail
    return stamp, fields


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

    def add(self, line):
        parsed = parse(line)
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
                try:
                    waited = int(fields.get("waited", ""))
                except ValueError:
                    return
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
        out.write("\n\ndecisions\n")
        for (action, reason), count in sorted(self.decisions.items(), key=lambda i: (i[0][0], -i[1], i[0][1])):
            out.write("  %-9s %-14s %9d\n" % (action, reason, count))
        out.write("\ntriplets greylisted that never came back: %d\n" % len(self.pending))
        if list_pending:
            for key in sorted(self.pending):
                out.write("  %s\n" % key)
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
            out.write("  %9d %s\n" % (count, client))
        if self.pools:
            out.write("\ndelay of host pools (GL_HOST_POOLS) that passed after greylisting\n")
            for pool, (count, total, longest) in self.top_pools():
                out.write("  %9d mean %-7s longest %-7s %s\n" % (
                    count, _span(total / count), _span(longest), pool))
        if self.learning:
            out.write("\nlearning mode: would have greylisted %d\n" % sum(self.learning.values()))
            for reason, count in self.learning_counts():
                out.write("  %-14s %9d\n" % (reason, count))

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
            for line in stream:
                report.add(line)
        finally:
            if stream is not sys.stdin:
                stream.close()
    report.write(out, list_pending)
    if page is not None:
        from qgrey import htmlreport
        temporary = "%s.%d.tmp" % (page, os.getpid())
        try:
            with open(temporary, "w", encoding="utf-8") as f:
                htmlreport.write(report, f)
            os.replace(temporary, page)
        except OSError as err:
            sys.stderr.write("%s: fatal: cannot write %s: %s\n" % (PROGRAM, page, err.strerror))
            try:
                os.unlink(temporary)
            except OSError:
                pass
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
