"""The qgrey-report page: one HTML file, its charts inline SVG drawn here;
no script, nothing fetched from anywhere.

write(report, out) renders a qgrey.tally.Report, the one the text report
is written from: the same counters, plus its decisions per time bucket.
Every value that came from the log is escaped (control characters shown
as \\xNN, as in the text report). Series differ by pattern
and are named in text, not by colour alone; numbers are written next to
the bars.
"""
import html
import time

from qgrey.tally import DELAY_BUCKETS, span, visible

LIST = 200            # triplets listed that never came back
BARS = 168            # bars in a time chart at most (a week of hours)
STEPS = (1, 2, 3, 4, 6, 8, 12, 24, 48, 96, 168, 336, 672)  # hours a bar may cover
TICKS = ((1, "%H:00"), (2, "%H:00"), (3, "%H:00"), (6, "%H:00"), (12, "%a %H:00"),
         (24, "%b %d"), (48, "%b %d"), (168, "%b %d"), (672, "%b %d"), (8760, "%Y"))
FILLS = 6             # reasons drawn apart in a chart; more: the rest as "other"
W, H, LEFT, BOTTOM = 600, 180, 64, 28  # time chart, in viewBox units

PATTERNS = """\
<svg width="0" height="0" style="position:absolute" aria-hidden="true"><defs>
<pattern id="f1" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)">\
<rect width="6" height="6" fill="#f2c58a"/><rect width="2.2" height="6" fill="#8a4b00"/></pattern>
<pattern id="f2" width="5" height="5" patternUnits="userSpaceOnUse">\
<rect width="5" height="5" fill="#c4e6c3"/><circle cx="2.5" cy="2.5" r="1.4" fill="#1b5e20"/></pattern>
<pattern id="f3" width="4" height="4" patternUnits="userSpaceOnUse">\
<rect width="4" height="4" fill="#f5c6cc"/><rect width="4" height="1.7" fill="#8e1b2b"/></pattern>
<pattern id="f4" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)">\
<rect width="6" height="6" fill="#ddd0f0"/><rect width="1.5" height="6" fill="#4a2a7a"/>\
<rect width="6" height="1.5" fill="#4a2a7a"/></pattern>
</defs></svg>
"""
FILL = ("#1f4e79", "url(#f1)", "url(#f2)", "url(#f3)", "url(#f4)", "#c8c8c8")
FILL_NAMES = ("solid dark", "diagonal stripes", "dots", "horizontal stripes",
              "cross-hatch", "solid light grey")

STYLE = """\
body{margin:0;font:16px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:#111;background:#fff}
main{max-width:52rem;margin:0 auto;padding:0 1rem 2rem}
h1{font-size:1.5rem;margin:1rem 0 .2rem}h2{font-size:1.2rem;margin:2rem 0 .4rem;border-bottom:2px solid #111}
h3{font-size:1rem;margin:1.2rem 0 .2rem}
table{border-collapse:collapse;width:100%;margin:.4rem 0}
th,td{text-align:left;padding:.15rem .4rem;border-bottom:1px solid #ddd;vertical-align:middle}
th{font-weight:600}.n{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}
td.bar{width:45%}svg.bar{display:block;width:100%;height:.9em}
svg.chart{display:block;width:100%;height:auto}
svg.chart text{font-family:inherit;font-size:13px}
figure{margin:0}
code{font-size:.9em;word-break:break-all}
.legend{list-style:none;padding:0;margin:.2rem 0;display:flex;flex-wrap:wrap;gap:.2rem 1.2rem}
.legend svg{width:1em;height:1em;vertical-align:-.15em;margin-right:.3em}
.note{color:#444}
@media (max-width:30rem){body{font-size:15px}main{padding:0 .5rem 1rem}td.bar{width:35%}
svg.chart text{font-size:23px}svg.chart text.alt{display:none}}
@media print{body{font-size:11pt}main{max-width:none;padding:0}h2{break-after:avoid}
section,figure,table tr{break-inside:avoid}*{-webkit-print-color-adjust:exact;print-color-adjust:exact}}
"""


def write(report, out):
    out.write('<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
              '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
              '<title>qgrey report</title>\n<style>\n%s</style>\n</head>\n<body>\n%s<main>\n'
              % (STYLE, PATTERNS))
    out.write("<h1>qgrey report</h1>\n<p><span id=\"decisions-total\">%s</span> decisions"
              % number(report.lines))
    if report.first is not None:
        out.write(", %s to %s UTC" % (utc(report.first, "%Y-%m-%d %H:%M:%S"),
                                      utc(report.last, "%Y-%m-%d %H:%M:%S")))
    out.write(".</p>\n")
    if report.malformed:
        out.write('<p class="note">Skipped <span id="malformed">%s</span> qgrey lines that '
                  'could not be parsed.</p>\n' % number(report.malformed))
    for part in (hourly, decisions, delays, pending, greylisted_most, learning, modes):
        part(report, out)
    out.write("</main>\n</body>\n</html>\n")


def escape(text):
    """A value from the log, for the page."""
    return html.escape(visible(text))


def number(value):
    return "{:,}".format(value)


def utc(stamp, fmt):
    return time.strftime(fmt, time.gmtime(stamp))


def percent(part, whole):
    return "%.1f%%" % (100.0 * part / whole) if whole else "-"


def bar_cell(value, top):
    width = 100.0 * value / top if top else 0
    return ('<td class="bar"><svg class="bar" viewBox="0 0 100 10" preserveAspectRatio="none" '
            'aria-hidden="true"><rect width="%.2f" height="10" fill="#1f4e79"/></svg></td>' % width)


def swatch(fill):
    return ('<svg viewBox="0 0 14 14" aria-hidden="true"><rect x=".5" y=".5" width="13" height="13" '
            'fill="%s" stroke="#111"/></svg>' % fill)


# Decisions per time bucket, one chart per action; then the table.

def hourly(report, out):
    if not report.buckets:
        out.write('<section>\n<h2>Decisions per hour</h2>\n<p class="note" id="no-stamps">'
                  'This chart needs TAI64N stamps (multilog lines, <code>@4000...</code>); '
                  'none of these %s decisions has one.</p>\n'
                  '</section>\n' % number(report.lines))
        return
    first, last = min(report.buckets), max(report.buckets)
    for hours in STEPS:  # buckets per bar: as few as keep the bars few
        if hours * 3600 % report.width == 0:
            per = hours * 3600 // report.width
            if last // per - first // per < BARS:
                break
    else:  # a long log: as many buckets per bar as it takes
        per = -(-(last - first + 1) // (BARS - 1))
    start, count = first // per, last // per - first // per + 1
    seconds = per * report.width
    series = {}  # action -> {reason: [decisions per bar]}
    for bucket, counts in report.buckets.items():
        i = bucket // per - start
        for (action, reason), n in counts.items():
            series.setdefault(action, {}).setdefault(reason, [0] * count)[i] += n
    unit = "hour" if seconds == 3600 else _hours(seconds)
    out.write("<section>\n<h2>Decisions per %s</h2>\n<p>UTC, one chart per action, each to its "
              "own scale; a bar's title (hover it) gives its numbers.</p>\n" % unit)
    if report.unstamped:
        out.write('<p class="note"><span id="unstamped">%s</span> decisions have no TAI64N stamp: '
                  'they are counted in the table below, not in the charts.</p>\n'
                  % number(report.unstamped))
    ordered = sorted(series.items(), key=lambda i: (-sum(map(sum, i[1].values())), i[0]))
    for action, reasons in ordered:
        time_chart(out, action, reasons, start * seconds, seconds, count, unit)
    out.write("</section>\n")


def _hours(seconds):
    if seconds % 86400 == 0:
        return "day" if seconds == 86400 else "%d days" % (seconds // 86400)
    return "%d hours" % (seconds // 3600) if seconds % 3600 == 0 else "%d seconds" % seconds


def time_chart(out, action, reasons, begin, seconds, count, unit):
    ranked = sorted(reasons.items(), key=lambda i: (-sum(i[1]), i[0]))
    fills = list(zip(FILL, FILL_NAMES))
    if len(ranked) > FILLS:
        rest = ranked[FILLS - 1:]
        other = [sum(values) for values in zip(*(v for _, v in rest))]
        ranked = ranked[:FILLS - 1] + [("other: " + ", ".join(r for r, _ in rest), other)]
        fills[FILLS - 1:] = fills[-1:]
    totals = [sum(values) for values in zip(*(v for _, v in ranked))]
    top = nice(max(totals))
    plot_w, plot_h = W - LEFT - 4, H - BOTTOM - 12
    bottom = 12 + plot_h
    step = plot_w / count
    gap = step * 0.15 if step >= 3 else 0
    out.write('<figure>\n<h3>%s: %s decisions</h3>\n<svg class="chart" viewBox="0 0 %d %d" '
              'role="img" aria-label="%s decisions per %s">\n'
              % (escape(action), number(sum(totals)), W, H, escape(action), escape(unit)))
    for value in (0, top // 2, top):
        y = bottom - plot_h * value / top
        out.write('<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="%s"/>'
                  '<text x="%d" y="%.1f" text-anchor="end">%s</text>\n'
                  % (LEFT, W - 4, y, y, "#111" if value == 0 else "#bbb", LEFT - 6, y + 5,
                     short(value)))
    hours = count * seconds / 3600.0
    tick, fmt = next(((h * 3600, f) for h, f in TICKS if hours / h <= 6), (None, None))
    at, nth = (-(-begin // tick) * tick, 0) if tick else (None, 0)
    while tick and at < begin + count * seconds:
        x = LEFT + (at - begin) / seconds * step
        if x > W - 34:  # its label would be cut off
            break
        out.write('<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="#111"/>'
                  '<text%s x="%.1f" y="%d" text-anchor="middle">%s</text>\n'
                  % (x, x, bottom, bottom + 5, ' class="alt"' if nth % 2 else "", x, H - 5,
                     utc(at, fmt)))
        at, nth = at + tick, nth + 1
    for i in range(count):
        y = bottom
        for (reason, values), (fill, _) in zip(ranked, fills):
            if values[i]:
                height = plot_h * values[i] / top
                y -= height
                out.write('<rect x="%.2f" y="%.2f" width="%.2f" height="%.2f" fill="%s">'
                          '<title>%s %s: %d, %s UTC, %s</title></rect>\n'
                          % (LEFT + i * step + gap / 2, y, step - gap, height, fill, escape(action),
                             escape(reason), values[i], utc(begin + i * seconds, "%Y-%m-%d %H:%M"),
                             escape(unit)))
    out.write('</svg>\n<ul class="legend">\n')
    for (reason, values), (fill, name) in zip(ranked, fills):
        out.write('<li>%s%s <span class="n">%s</span> <span class="note">(%s)</span></li>\n'
                  % (swatch(fill), escape(reason), number(sum(values)), name))
    out.write("</ul>\n</figure>\n")


def nice(value):
    """The top of a scale, its half a whole number too: 10, 12, 16, 20,
    30, 40, 50, 60, 80, 100, 120, ... >= value."""
    scale = 1
    while True:
        for m in (10, 12, 16, 20, 30, 40, 50, 60, 80):
            if m * scale >= value:
                return m * scale
        scale *= 10


def short(value):
    """A scale's label: 800, 2.5k, 120k, 1.6M."""
    for limit, suffix in ((10 ** 6, "M"), (1000, "k")):
        if value >= limit:
            return "%g%s" % (value / float(limit), suffix)
    return str(value)


def decisions(report, out):
    out.write('<section>\n<h2>Decisions by action and reason</h2>\n')
    if not report.lines:
        out.write("<p>No qgrey decisions in this log.</p>\n</section>\n")
        return
    out.write('<table id="decisions">\n<tr><th>action</th><th>reason</th><th class="n">decisions</th>'
              '<th class="n">share</th></tr>\n')
    for (action, reason), count in report.decision_counts():
        out.write('<tr><td>%s</td><td>%s</td><td class="n">%s</td><td class="n">%s</td></tr>\n'
                  % (escape(action), escape(reason), number(count), percent(count, report.lines)))
    out.write("</table>\n</section>\n")


# Delays of mail that passed: the text report's buckets.

def delays(report, out):
    passed = report.passed()
    out.write("<section>\n<h2>Delay of mail that passed after greylisting</h2>\n"
              "<p>How long real senders waited: <span id=\"passed\">%s</span> messages"
              % number(passed))
    if passed:
        out.write(", mean <span id=\"mean\">%s</span>" % span(report.mean_delay()))
    out.write(".</p>\n")
    if passed:
        top = max(report.delays)
        out.write('<table id="delays">\n<tr><th>waited</th><th class="n">messages</th>'
                  '<th class="n">share</th><th></th></tr>\n')
        for (_, label), count in zip(DELAY_BUCKETS, report.delays):
            out.write('<tr><td>%s</td><td class="n">%s</td><td class="n">%s</td>%s</tr>\n'
                      % (escape(label), number(count), percent(count, passed), bar_cell(count, top)))
        out.write("</table>\n")
    pools = report.top_pools()
    if pools:
        out.write("<h3>Host pools (GL_HOST_POOLS)</h3>\n<p>Providers keyed by their pool, "
                  "whose mail passed after greylisting most often.</p>\n"
                  '<table id="pools">\n<tr><th>pool</th><th class="n">messages</th>'
                  '<th class="n">mean wait</th><th class="n">longest</th></tr>\n')
        for pool, (count, total, longest) in pools:
            out.write('<tr><td><code>%s</code></td><td class="n">%s</td><td class="n">%s</td>'
                      '<td class="n">%s</td></tr>\n'
                      % (escape(pool), number(count), span(total / count), span(longest)))
        out.write("</table>\n")
    out.write("</section>\n")


# Triplets greylisted that never came back.

def pending(report, out):
    left, back = len(report.pending), report.came_back
    out.write("<section>\n<h2>Greylisted triplets that never came back</h2>\n"
              "<p><span id=\"pending\">%s</span> of %s greylisted triplets (%s) never came back "
              "(no later pass of the same key in the log); %s did.</p>\n"
              % (number(left), number(left + back), percent(left, left + back), number(back)))
    if left + back:
        split = 600.0 * left / (left + back)
        out.write('<svg class="chart" viewBox="0 0 600 24" role="img" aria-label="%s never came '
                  'back">\n<rect x=".5" y=".5" width="%.2f" height="23" fill="url(#f1)" stroke="#111"/>'
                  '<rect x="%.2f" y=".5" width="%.2f" height="23" fill="#c8c8c8" stroke="#111"/>\n'
                  '</svg>\n<ul class="legend">\n<li>%snever came back %s</li>\n<li>%scame back %s</li>\n'
                  '</ul>\n' % (percent(left, left + back), max(0, split - 1), split + .5,
                                max(0, 599 - split), swatch("url(#f1)"), percent(left, left + back),
                                swatch("#c8c8c8"), percent(back, left + back)))
    if left:
        shown = report.pending_first(LIST)
        out.write("<p>%s, in the order of <code>qgrey-report --list</code>:</p>\n"
                  % ("All %s" % number(left) if left <= LIST else
                     "The first %s of %s" % (number(len(shown)), number(left))))
        out.write('<table id="pending-list">\n<tr><th>client sender recipient (key)</th>'
                  '<th class="n">greylisted</th></tr>\n')
        for key, times in shown:
            out.write('<tr><td><code>%s</code></td><td class="n">%s</td></tr>\n'
                      % (escape(key), number(times)))
        out.write("</table>\n")
    out.write("</section>\n")


# Networks and clients greylisted most.

def greylisted_most(report, out):
    out.write("<section>\n<h2>Networks greylisted most</h2>\n"
              "<p>Grouped by the client field of the plugin's key (GL_MASK_IP, "
              "GL_IPV4_PREFIX, GL_IPV6_PREFIX), or its host pool (GL_HOST_POOLS).</p>\n")
    count_table(out, "networks", "network", report.top_networks())
    out.write("<h3>Clients greylisted most</h3>\n")
    if not count_table(out, "clients", "client", report.top_clients()):
        out.write("<p>None greylisted.</p>\n")
    out.write("</section>\n")


def count_table(out, table_id, what, rows):
    """A table of (name, greylistings), largest first, with bars; -> whether any."""
    if not rows:
        return False
    top = rows[0][1]
    out.write('<table id="%s">\n<tr><th>%s</th><th class="n">greylisted</th><th></th></tr>\n'
              % (table_id, what))
    for name, count in rows:
        out.write('<tr><td><code>%s</code></td><td class="n">%s</td>%s</tr>\n'
                  % (escape(name), number(count), bar_cell(count, top)))
    out.write("</table>\n")
    return True


# Learning mode (GL_LEARN=1): what would have been greylisted.

def learning(report, out):
    out.write("<section>\n<h2>Learning mode: would have greylisted</h2>\n")
    counts = report.learning_counts()
    total = report.learned()
    if not counts:
        out.write("<p>No learning-mode decisions in this log.</p>\n</section>\n")
        return
    out.write("<p><span id=\"learning-total\">%s</span> messages passed in learning mode "
              "would have been greylisted, by the reason they would have had.</p>\n" % number(total))
    top = counts[0][1]
    out.write('<table id="learning">\n<tr><th>reason</th><th class="n">decisions</th>'
              '<th class="n">share</th><th></th></tr>\n')
    for reason, count in counts:
        out.write('<tr><td>%s</td><td class="n">%s</td><td class="n">%s</td>%s</tr>\n'
                  % (escape(reason), number(count), percent(count, total), bar_cell(count, top)))
    out.write("</table>\n</section>\n")


def modes(report, out):
    """Per GL_GREYLIST mode (only when a mode other than all is seen)."""
    counts = report.mode_counts()
    if not counts:
        return
    out.write("<section>\n<h2>Greylisting modes</h2>\n<p>Passes and greylistings by the "
              "mode they were taken under (GL_GREYLIST), as each line says: "
              "<code>mode=suspicious</code>, <code>mode=trial</code>; a line without "
              "<code>mode=</code> under all. The delay is that of new mail accepted: at once "
              "when trusted, after the wait when delayed.</p>\n")
    out.write('<table id="modes">\n<tr><th>mode</th><th class="n">decisions</th>'
              '<th class="n">trusted</th><th class="n">greylisted</th>'
              '<th class="n">passed after a delay</th><th class="n">median delay</th>'
              '<th class="n">longest delay</th></tr>\n')
    for mode, seen in counts:
        median, longest = seen.median(), seen.longest()
        out.write('<tr><td>%s</td><td class="n">%s</td><td class="n">%s</td><td class="n">%s</td>'
                  '<td class="n">%s</td><td class="n">%s</td><td class="n">%s</td></tr>\n' % (
                      mode, number(seen.decisions), number(seen.trusted),
                      number(seen.greylisted), number(seen.delayed),
                      "-" if median is None else span(median),
                      "-" if longest is None else span(longest)))
    out.write("</table>\n")
    trial = dict(counts).get("trial")
    if trial is not None:
        out.write('<p id="trial">Trial: of %s greylistings, suspicious would have trusted '
                  '<span id="trial-trusted">%s</span> (%s) and greylisted %s.</p>\n' % (
                      number(trial.greylisted), number(trial.would_trust),
                      percent(trial.would_trust, trial.greylisted), number(trial.would_greylist)))
    out.write("</section>\n")
