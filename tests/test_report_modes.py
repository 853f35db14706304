"""qgrey-report per GL_GREYLIST mode: trusted, greylisted, passed after a
delay, the delay new mail accepted saw (median, longest), and under trial
how many greylisted clients suspicious would have trusted. A written-out
log through the installed command; the numbers below were counted by hand
from it."""
import os
import subprocess
import sys

BIN = os.path.dirname(sys.executable)

LOG = """\
qgrey: action=greylist reason=new client=192.0.2.1 sender=a@x.org recipient=b@y.net waited=0
qgrey: action=pass reason=delayed client=192.0.2.1 sender=a@x.org recipient=b@y.net waited=900
qgrey: action=greylist reason=new client=192.0.2.2 sender=c@x.org recipient=b@y.net waited=0
qgrey: action=pass reason=delayed client=192.0.2.2 sender=c@x.org recipient=b@y.net waited=1320
qgrey: action=pass reason=known client=192.0.2.1 sender=a@x.org recipient=b@y.net waited=900
qgrey: action=greylist reason=new client=198.51.100.10 name=mail.example.com trial=trusted \
sender=d@e.org recipient=b@y.net waited=0
qgrey: action=greylist reason=new client=203.0.113.5 trial=suspicious sender=f@g.org \
recipient=b@y.net waited=0
qgrey: action=greylist reason=new client=198.51.100.11 name=mx.example.org trial=trusted \
sender=h@e.org recipient=b@y.net waited=0
qgrey: action=pass reason=trusted client=198.51.100.20 name=mail.example.com sender=i@e.org \
recipient=b@y.net waited=0
qgrey: action=pass reason=trusted client=198.51.100.21 name=x.pool.example helo=mx.example.org \
sender=j@e.org recipient=b@y.net waited=0
"""

HEAD = """\
qgrey report: 10 decisions

decisions
  greylist  new                    5
  pass      delayed                2
  pass      trusted                2
  pass      known                  1

triplets greylisted that never came back: 3

delay of mail that passed after greylisting: 2 messages, mean 18m30s
  < 5m           0 
  5-10m          0 
  10-15m         0 
  15-30m         2 ########################################
  30m-1h         0 
  1-2h           0 
  2-4h           0 
  4-12h          0 
  12-24h         0 
  >= 1d          0 

clients greylisted most
          1 192.0.2.1
          1 192.0.2.2
          1 198.51.100.10
          1 198.51.100.11
          1 203.0.113.5
"""


def report(tmp_path, *args, **env):
    log = tmp_path / "current"
    log.write_text(LOG)
    environment = {"PATH": "/usr/bin:/bin", "GL_DIR": str(tmp_path / "state")}
    environment.update(env)
    result = subprocess.run([os.path.join(BIN, "qgrey-report")] + list(args) + [str(log)],
                            env=environment, capture_output=True, stdin=subprocess.DEVNULL,
                            cwd="/")
    assert (result.returncode, result.stderr) == (0, b"")
    return result.stdout.decode()


def test_lines_without_a_mark_under_all(tmp_path):
    assert report(tmp_path) == HEAD + """
by mode (GL_GREYLIST; lines without trial= or reason=trusted: all)
  mode       decisions  trusted greylisted  delayed   median  longest
  all                5        0          2        2   15m00s   22m00s
  trial              3        0          3        0        -        -
  suspicious         2        2          0        0    0m00s    0m00s
trial: of 3 greylistings, suspicious would have trusted 2 and greylisted 1
"""


def test_lines_without_a_mark_under_the_reports_own_setting(tmp_path):
    # 7 decisions under suspicious: delays 0, 0, 900, 1320: median 0, longest 22m
    assert report(tmp_path, GL_GREYLIST="suspicious") == HEAD + """
by mode (GL_GREYLIST; lines without trial= or reason=trusted: suspicious)
  mode       decisions  trusted greylisted  delayed   median  longest
  trial              3        0          3        0        -        -
  suspicious         7        2          2        2    0m00s   22m00s
trial: of 3 greylistings, suspicious would have trusted 2 and greylisted 1
"""


def test_no_section_when_every_decision_was_under_all(tmp_path):
    log = "".join(line + "\n" for line in LOG.splitlines()[:5])
    path = tmp_path / "all"
    path.write_text(log)
    result = subprocess.run([os.path.join(BIN, "qgrey-report"), str(path)],
                            env={"GL_DIR": str(tmp_path / "state")}, capture_output=True, cwd="/")
    assert result.returncode == 0
    assert "by mode" not in result.stdout.decode()
    assert result.stdout.decode().endswith("          1 192.0.2.1\n          1 192.0.2.2\n")


def test_the_page(tmp_path):
    page = tmp_path / "report.html"
    report(tmp_path, "--html", str(page), GL_GREYLIST="suspicious")
    html = page.read_text()
    start = html.index("<section>\n<h2>Greylisting modes</h2>")
    assert html[start:html.index("</section>", start) + 11] == (
        "<section>\n<h2>Greylisting modes</h2>\n<p>Decisions by the mode they were taken under "
        "(GL_GREYLIST): a line with <code>trial=</code> under trial, <code>reason=trusted</code> "
        "under suspicious, any other under the report's own setting, "
        "<span id=\"modes-default\">suspicious</span>. The delay is that of new mail accepted: "
        "at once when trusted, after the wait when delayed.</p>\n"
        "<table id=\"modes\">\n<tr><th>mode</th><th class=\"n\">decisions</th>"
        "<th class=\"n\">trusted</th><th class=\"n\">greylisted</th>"
        "<th class=\"n\">passed after a delay</th><th class=\"n\">median delay</th>"
        "<th class=\"n\">longest delay</th></tr>\n"
        "<tr><td>trial</td><td class=\"n\">3</td><td class=\"n\">0</td><td class=\"n\">3</td>"
        "<td class=\"n\">0</td><td class=\"n\">-</td><td class=\"n\">-</td></tr>\n"
        "<tr><td>suspicious</td><td class=\"n\">7</td><td class=\"n\">2</td><td class=\"n\">2</td>"
        "<td class=\"n\">2</td><td class=\"n\">0m00s</td><td class=\"n\">22m00s</td></tr>\n"
        "</table>\n<p id=\"trial\">Trial: of 3 greylistings, suspicious would have trusted "
        "<span id=\"trial-trusted\">2</span> (66.7%) and greylisted 1.</p>\n</section>\n")


def test_median_of_an_even_count_is_the_lower_middle(tmp_path):
    """Delays 0, 300, 600, 900 (one trusted, three delayed): median 5m00s."""
    lines = ["qgrey: action=pass reason=trusted client=192.0.2.9 name=a.example sender=a@x.org "
             "recipient=b@y.net waited=0"] + [
        "qgrey: action=pass reason=delayed client=192.0.2.%d sender=a@x.org recipient=b@y.net "
        "waited=%d" % (i, w) for i, w in ((1, 900), (2, 300), (3, 600))]
    path = tmp_path / "even"
    path.write_text("".join(line + "\n" for line in lines))
    result = subprocess.run([os.path.join(BIN, "qgrey-report"), str(path)],
                            env={"GL_DIR": str(tmp_path / "state"), "GL_GREYLIST": "suspicious"},
                            capture_output=True, cwd="/")
    assert result.stdout.decode().endswith(
        "  suspicious         4        1          0        3    5m00s   15m00s\n")


def test_the_plugins_own_lines(tmp_path, run):
    """The plugin's log under trial and suspicious, read back: the field
    spellings the report counts are the plugin's."""
    lines = []
    for mode, ip, host in (("trial", "198.51.100.10", "mail.example.com"),
                           ("trial", "203.0.113.5", "dsl-203-0-113-5.dyn.example.net"),
                           ("suspicious", "192.0.2.20", "mx.example.org"),
                           ("suspicious", "233.252.0.6", None)):
        result = run(GL_GREYLIST=mode, GL_HOST_NAMES="tcpserver", TCPREMOTEIP=ip,
                     TCPREMOTEHOST=host, SMTPHELOHOST="[%s]" % ip)
        lines.append(result.stderr.decode())
    assert [line.split(" ")[1:3] for line in lines] == [
        ["action=greylist", "reason=new"], ["action=greylist", "reason=new"],
        ["action=pass", "reason=trusted"], ["action=greylist", "reason=new"]]
    path = tmp_path / "plugin"
    path.write_text("".join(lines))
    result = subprocess.run([os.path.join(BIN, "qgrey-report"), str(path)],
                            env={"GL_DIR": str(tmp_path / "state"), "GL_GREYLIST": "suspicious"},
                            capture_output=True, cwd="/")
    assert result.stdout.decode().endswith(
        "  trial              2        0          2        0        -        -\n"
        "  suspicious         2        1          1        0    0m00s    0m00s\n"
        "trial: of 2 greylistings, suspicious would have trusted 1 and greylisted 1\n")
