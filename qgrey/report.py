"""qgrey-report: what greylisting did, from the plugin's log lines.

    qgrey-report [--list] [--html PAGE] [FILE...]   (stdin when no FILE; - is stdin)

Reads lines as qmail's log pipeline keeps them (qgrey.tally.parse): a message
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

Where the log has decisions of GL_GREYLIST=suspicious or trial, the
report counts per mode the passes and greylistings, the clients trusted at
once, those greylisted, those passed after a delay, and the delay new mail
accepted saw (median and longest, a trusted client's as 0); under trial,
how many greylisted clients suspicious would have trusted. Each line says
its mode (mode=suspicious, mode=trial; none: all): the counts are exact
(qgrey.tally).

The counting is qgrey.tally's (a Report); this module writes it as text
and runs the command.

Exit status: 0 done; 100 usage; 111 cannot read an input file or write PAGE.
"""
import io
import sys

from qgrey import settings as settings_module, tool
from qgrey.tally import (  # noqa: F401  (qgrey.report's names, as before)
    DELAY_BUCKETS, HOUR, LEARNING, MARK, MAX_BUCKETS, MAX_LINE, TOP, Malformed, Report,
    bounded_lines, parse, span, tai64n_seconds, unescape, visible)

PROGRAM = "qgrey-report"


def write(report, out, list_pending=False):
    """The report (a tally.Report) as text."""
    import time
    out.write("qgrey report: %d decisions" % report.lines)
    if report.first is not None:
        fmt = "%Y-%m-%d %H:%M:%S"
        out.write(", %s to %s UTC" % (time.strftime(fmt, time.gmtime(report.first)),
                                      time.strftime(fmt, time.gmtime(report.last))))
    out.write("\n")
    if report.malformed:
        out.write("skipped %d qgrey lines that could not be parsed\n" % report.malformed)
    out.write("\ndecisions\n")
    for (action, reason), count in report.decision_counts():
        out.write("  %-9s %-14s %9d\n" % (visible(action), visible(reason), count))
    out.write("\ntriplets greylisted that never came back: %d\n" % len(report.pending))
    if list_pending:
        for key in sorted(report.pending):
            out.write("  %s\n" % visible(key))
    passed = report.passed()
    out.write("\ndelay of mail that passed after greylisting: %d messages" % passed)
    if passed:
        out.write(", mean %s\n" % span(report.mean_delay()))
        for (_, label), count in zip(DELAY_BUCKETS, report.delays):
            width = int(round(40.0 * count / max(report.delays)))
            out.write("  %-7s %8d %s\n" % (label, count, "#" * width))
    else:
        out.write("\n")
    out.write("\nclients greylisted most\n")
    for client, count in report.top_clients():
        out.write("  %9d %s\n" % (count, visible(client)))
    if report.pools:
        out.write("\ndelay of host pools (GL_HOST_POOLS) that passed after greylisting\n")
        for pool, (count, total, longest) in report.top_pools():
            out.write("  %9d mean %-7s longest %-7s %s\n" % (
                count, span(total / count), span(longest), visible(pool)))
    if report.learning:
        out.write("\nlearning mode: would have greylisted %d\n" % report.learned())
        for reason, count in report.learning_counts():
            out.write("  %-14s %9d\n" % (visible(reason), count))
    modes = report.mode_counts()
    if modes:
        out.write("\nby mode (GL_GREYLIST, as each line says: mode=; none: all)\n")
        out.write("  %-10s %9s %8s %10s %8s %8s %8s\n" % (
            "mode", "decisions", "trusted", "greylisted", "delayed", "median", "longest"))
        for mode, seen in modes:
            median, longest = seen.median(), seen.longest()
            out.write("  %-10s %9d %8d %10d %8d %8s %8s\n" % (
                mode, seen.decisions, seen.trusted, seen.greylisted, seen.delayed,
                "-" if median is None else span(median), "-" if longest is None else span(longest)))
        trial = dict(modes).get("trial")
        if trial is not None:
            out.write("trial: of %d greylistings, suspicious would have trusted %d "
                      "and greylisted %d\n" % (trial.greylisted, trial.would_trust,
                                                trial.would_greylist))


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
    write(report, out, list_pending)
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
