"""qgrey-report: what greylisting did, from the plugin's log lines.

    qgrey-report [FILE...]      (stdin when no FILE; - is stdin)

Reads lines as qmail's log pipeline keeps them: multilog lines with a
TAI64N stamp (@4000...), or plain lines; other lines are skipped. Lines are
streamed; the state kept is the counters plus, per greylisted triplet that
has not passed yet, one small entry. Triplets are grouped by the key the
plugin uses (qgrey.keys with the same settings: GL_MASK_IP, GL_IGNORE_*).

Exit status: 0 done; 100 usage; 111 cannot read an input file.
"""
import os
import sys

from qgrey import keys, settings as settings_module

PROGRAM = "qgrey-report"
MARK = "qgrey: action="
TOP = 10
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
    def __init__(self, settings):
        self.settings = settings
        self.decisions = {}      # (action, reason) -> count
        self.pending = {}        # triplet key -> greylistings without a later pass
        self.refused = {}        # client -> greylistings
        self.delays = [0] * len(DELAY_BUCKETS)
        self.delay_total = 0
        self.lines = 0
        self.first = self.last = None

    def key(self, fields):
        sender = fields.get("sender", "<>")
        return keys.triplet(unescape(fields.get("client", "-")),
                            b"" if sender == "<>" else unescape(sender),
                            unescape(fields.get("recipient", "-")), self.settings)

    def add(self, line):
        parsed = parse(line)
        if parsed is None:
            return
        stamp, fields = parsed
        self.lines += 1
        if stamp is not None:
            if self.first is None:
                self.first = stamp
            self.last = stamp
        action, reason = fields.get("action", "?"), fields.get("reason", "?")
        pair = (action, reason)
        self.decisions[pair] = self.decisions.get(pair, 0) + 1
        if action == "greylist":
            key = self.key(fields)
            self.pending[key] = self.pending.get(key, 0) + 1
            client = fields.get("client", "-")
            self.refused[client] = self.refused.get(client, 0) + 1
        elif action == "pass":
            self.pending.pop(self.key(fields), None)
            if reason == "delayed":
                try:
                    waited = int(fields.get("waited", ""))
                except ValueError:
                    return
                self.delay_total += waited
                for i, (limit, _) in enumerate(DELAY_BUCKETS):
                    if limit is None or waited < limit:
                        self.delays[i] += 1
                        break

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
        top = sorted(self.refused.items(), key=lambda i: (-i[1], i[0]))[:TOP]
        for client, count in top:
            out.write("  %9d %s\n" % (count, client))


def _span(seconds):
    seconds = int(seconds)
    if seconds >= 3600:
        return "%dh%02dm" % (seconds // 3600, seconds % 3600 // 60)
    return "%dm%02ds" % (seconds // 60, seconds % 60)


USAGE = "usage: qgrey-report [--list] [FILE...]"


def run(argv, environ, out):
    list_pending = False
    if argv[:1] == ["--list"]:
        list_pending, argv = True, argv[1:]
    if any(a.startswith("-") and a != "-" for a in argv):
        sys.stderr.write(USAGE + "\n")
        return 100
    settings = settings_module.load(environ)
    report = Report(settings)
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
    return 0


def main():
    try:
        sys.stdin.reconfigure(encoding="ascii", errors="replace")
    except (AttributeError, ValueError):
        pass
    try:
        status = run(sys.argv[1:], os.environb, sys.stdout)
        sys.stdout.flush()
    except BrokenPipeError:
        status = 0
        sys.stdout = None
    except KeyboardInterrupt:
        status = 111
    except OSError as err:
        sys.stderr.write("%s: fatal: %s\n" % (PROGRAM, err.strerror or err))
        status = 111
    sys.exit(status)


if __name__ == "__main__":
    main()
